//! Compressed event streams (SPEC §3 "Compression"), against the real
//! binary with a decoder that is not ringcast's (flate2): a client that
//! accepts gzip gets one gzip member in which every event, heartbeat and
//! `retry:` decodes as soon as its bytes arrive; identity otherwise; a
//! graceful end closes the member with a valid trailer; subscribers that
//! share their topic's compressor all decode exactly their events, however
//! they joined; and the bytes on the wire are a fraction of identity's.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::auth::{claims, hs256, hs256_config};
use support::*;

/// A subscriber that reads raw bytes and decodes the gzip member as it
/// goes, so each decoded byte is there as soon as its compressed bytes are.
struct GzipSub {
    s: TcpStream,
    head: String,
    /// Body bytes not decoded yet (the 10-byte header first).
    pending: Vec<u8>,
    header_done: bool,
    inflate: flate2::Decompress,
    /// Everything decoded so far.
    text: String,
    /// The body as received (compressed).
    body: Vec<u8>,
}

impl GzipSub {
    fn open(addr: std::net::SocketAddr, query: &str, extra: &str) -> GzipSub {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        write!(
            s,
            "GET /events?{query} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate, br\r\n{extra}\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        let start = Instant::now();
        let head_end = loop {
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => panic!("closed in the head"),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(start.elapsed() < TIMEOUT, "no head");
        };
        GzipSub {
            s,
            head: String::from_utf8_lossy(&raw[..head_end]).into_owned(),
            pending: raw[head_end..].to_vec(),
            header_done: false,
            inflate: flate2::Decompress::new(false),
            text: String::new(),
            body: raw[head_end..].to_vec(),
        }
    }

    /// Decodes what has arrived; false at EOF.
    fn pump(&mut self) -> bool {
        let mut buf = [0u8; 65536];
        let open = match self.s.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.body.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => true,
        };
        if !self.header_done {
            if self.pending.len() < 10 {
                return open;
            }
            assert_eq!(&self.pending[..3], &[0x1f, 0x8b, 8], "a gzip member");
            self.pending.drain(..10);
            self.header_done = true;
        }
        let mut out = vec![0u8; 1 << 20];
        let before_in = self.inflate.total_in();
        let before_out = self.inflate.total_out();
        self.inflate
            .decompress(&self.pending, &mut out, flate2::FlushDecompress::Sync)
            .expect("valid deflate");
        let took = (self.inflate.total_in() - before_in) as usize;
        let made = (self.inflate.total_out() - before_out) as usize;
        self.pending.drain(..took);
        self.text
            .push_str(std::str::from_utf8(&out[..made]).expect("UTF-8 events"));
        open
    }

    /// Waits until the decoded text contains `needle`; how long it took.
    fn until(&mut self, needle: &str, within: Duration) -> Duration {
        let start = Instant::now();
        while !self.text.contains(needle) {
            assert!(self.pump(), "EOF before {needle:?}; got {:?}", self.text);
            assert!(
                start.elapsed() < within,
                "{needle:?} not decoded within {within:?}: {:?}",
                self.text
            );
        }
        start.elapsed()
    }

    /// The data lines decoded so far.
    fn data(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_owned))
            .collect()
    }
}

fn quote(i: usize) -> String {
    format!(
        r#"{{"topic":"quotes.NASDAQ.AAPL","symbol":"AAPL","bid":{:.2},"ask":{:.2},"last":{:.2},"volume":{},"ts":{}}}"#,
        189.0 + (i % 17) as f64 * 0.07,
        189.02 + (i % 17) as f64 * 0.07,
        189.01 + (i % 13) as f64 * 0.05,
        1000 + i * 37,
        1_796_691_403_518u64 + i as u64 * 5
    )
}

#[test]
fn each_event_decodes_as_soon_as_it_arrives() {
    let s = Server::start("");
    let mut sub = GzipSub::open(s.addr(), "topic=g.a", "");
    assert!(
        sub.head.contains("Content-Encoding: gzip\r\n"),
        "{}",
        sub.head
    );
    assert!(
        sub.head.contains("Vary: Accept-Encoding\r\n"),
        "{}",
        sub.head
    );
    sub.until("retry: ", TIMEOUT);
    wait_subscribers(&s, 1);
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let data = quote(i);
        let t = Instant::now();
        publish(s.addr(), "g.a", Some("quote"), &data);
        sub.until(&data, Duration::from_secs(2));
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("slowest publish-to-decoded: {slowest:?}");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    assert_eq!(sub.data(), (0..20).map(quote).collect::<Vec<_>>());
}

#[test]
fn identity_unless_gzip_is_accepted_and_on() {
    let s = Server::start("");
    let plain = Sse::open(s.addr(), "topic=g.b");
    assert!(plain.header("content-encoding").is_none());
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    let refused = Sse::open_with(
        s.addr(),
        "topic=g.b",
        &[("Accept-Encoding", "gzip;q=0, identity")],
    );
    assert!(refused.header("content-encoding").is_none());
    let off = Server::start("[sse]\ncompression = \"off\"\n");
    let mut sub = Sse::open_with(off.addr(), "topic=g.b", &[("Accept-Encoding", "gzip")]);
    assert!(sub.header("content-encoding").is_none() && sub.header("vary").is_none());
    wait_subscribers(&off, 1);
    let id = publish(off.addr(), "g.b", None, "plain");
    assert_eq!(sub.next_event().unwrap().id_u64(), id);
}

/// A heartbeat decodes as it comes, and a graceful end (SIGTERM) closes
/// the member: the whole body is one valid gzip file (CRC and length).
#[test]
fn heartbeats_decode_and_a_graceful_end_writes_the_trailer() {
    let mut s = Server::start("[sse]\nheartbeat_ms = 300\n");
    let mut sub = GzipSub::open(s.addr(), "topic=g.c", "");
    wait_subscribers(&s, 1);
    publish(s.addr(), "g.c", None, "before the silence");
    sub.until("before the silence", TIMEOUT);
    let t = Instant::now();
    sub.until(":\n\n", Duration::from_secs(3));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a heartbeat decoded after the silence"
    );
    publish(s.addr(), "g.c", None, "after it");
    sub.until("after it", TIMEOUT);
    s.kill_term();
    sub.s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    sub.s.read_to_end(&mut rest).unwrap();
    assert_eq!(s.wait_exit(TIMEOUT).and_then(|x| x.code()), Some(0));
    sub.body.extend_from_slice(&rest);
    // The whole body, read by a gzip decoder that checks the trailer.
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&sub.body[..])
        .read_to_string(&mut decoded)
        .expect("one complete gzip member, its CRC and length right");
    assert!(decoded.contains("data: before the silence\n") && decoded.contains("data: after it\n"));
    assert!(decoded.contains(":\n\n"), "the heartbeat");
    assert!(
        decoded
            .trim_end()
            .rsplit('\n')
            .next()
            .unwrap()
            .starts_with("retry: "),
        "ends with retry: {decoded:?}"
    );
}

/// Subscribers of one topic share its compressor: they join at different
/// times (one resuming with a catch-up), get heartbeats of their own, and
/// every one decodes exactly its events; a wildcard subscriber compresses
/// on its own, an identity one gets plain bytes; all agree.
#[test]
fn subscribers_sharing_a_compressor_each_decode_exactly_their_events() {
    let s = Server::start("[sse]\nheartbeat_ms = 250\n[server]\nworkers = 1\n");
    let mut a = GzipSub::open(s.addr(), "topic=s.x", "");
    let mut wild = GzipSub::open(s.addr(), "topic=s.%3E", "");
    let mut plain = Sse::open(s.addr(), "topic=s.x");
    wait_subscribers(&s, 3);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(s.addr(), "s.x", None, &quote(i)));
    }
    a.until(&quote(4), TIMEOUT);
    // b joins now, resuming after the second event: its catch-up is its
    // own, then it shares the group's segments.
    let mut b = GzipSub::open(
        s.addr(),
        "topic=s.x",
        &format!("Last-Event-ID: {}\r\n", ids[1]),
    );
    wait_subscribers(&s, 4);
    for i in 5..10 {
        ids.push(publish(s.addr(), "s.x", None, &quote(i)));
    }
    // A silence long enough for heartbeats, then more events.
    a.until(":\n\n", Duration::from_secs(3));
    let mut c = GzipSub::open(s.addr(), "topic=s.x", "");
    wait_subscribers(&s, 5);
    for i in 10..15 {
        ids.push(publish(s.addr(), "s.x", None, &quote(i)));
    }
    for sub in [&mut a, &mut b, &mut wild, &mut c] {
        sub.until(&quote(14), TIMEOUT);
    }
    let all: Vec<String> = (0..15).map(quote).collect();
    assert_eq!(a.data(), all);
    assert_eq!(wild.data(), all);
    assert_eq!(
        b.data(),
        all[2..].to_vec(),
        "catch-up after the second, then live"
    );
    assert_eq!(c.data(), all[10..].to_vec());
    let got: Vec<u64> = plain.take(15).iter().map(Event::id_u64).collect();
    assert_eq!(got, ids);
}

/// Market data compresses well: a stream of quotes takes at most about a
/// third of its identity bytes on the wire.
#[test]
fn quotes_take_a_fraction_of_their_identity_bytes() {
    let s = Server::start("");
    let mut z = GzipSub::open(s.addr(), "topic=quotes.%3E", "");
    let mut plain = Sse::open(s.addr(), "topic=quotes.%3E");
    wait_subscribers(&s, 2);
    let mut p = Publisher::new(s.addr());
    for i in 0..300 {
        p.publish("quotes.NASDAQ.AAPL", &quote(i));
    }
    plain.take(300);
    z.until(&quote(299), TIMEOUT);
    let identity = plain.raw.len();
    let ratio = z.body.len() as f64 / identity as f64;
    eprintln!(
        "gzip {} bytes / identity {identity} = {ratio:.3}",
        z.body.len()
    );
    assert!(ratio <= 0.35, "{ratio}");
}

/// curl with --compressed reads the stream as it comes.
#[test]
fn curl_compressed_reads_the_stream() {
    if !require(
        std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok(),
        "curl",
        "apt-get install curl",
    ) {
        return;
    }
    let s = Server::start("");
    let url = format!("http://{}/events?topic=c.u", s.addr());
    let mut curl = std::process::Command::new("curl")
        .args(["-sN", "--compressed", "-m", "5", "-D", "-", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_subscribers(&s, 1);
    let ids: Vec<u64> = (0..3)
        .map(|i| publish(s.addr(), "c.u", None, &format!("over curl {i}")))
        .collect();
    let mut out = String::new();
    let mut stdout = curl.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    while !out.contains("data: over curl 2") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "curl ended early: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = curl.kill();
    let _ = curl.wait();
    assert!(
        out.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{out}"
    );
    for id in ids {
        assert!(out.contains(&format!("id: {id}\n")), "{out}");
    }
}

/// A throttled compressed stream (its own compressor, held frames released
/// by the timer): the first event and the newest of the burst, each
/// decoded as it arrives, and nothing between.
#[test]
fn a_throttled_stream_compresses_what_it_is_sent() {
    let s = Server::start("");
    let mut sub = GzipSub::open(s.addr(), "topic=t.%3E&max_rate=2", "");
    assert!(sub
        .head
        .to_ascii_lowercase()
        .contains("content-encoding: gzip"));
    wait_subscribers(&s, 1);
    let quotes: Vec<String> = (0..6).map(quote).collect();
    publish_burst(s.addr(), "t.a", &quotes, &[]);
    sub.until(&quotes[5], Duration::from_secs(2));
    assert_eq!(sub.data(), vec![quotes[0].clone(), quotes[5].clone()]);
}

/// A delayed view compressed (its own compressor; the events come from the
/// delay line, `auth.delay_ms` late): every event decodes, in order, no
/// earlier than the delay.
#[test]
fn a_delayed_view_compresses_its_events() {
    let s = Server::start(&hs256_config("delay_ms = 500\n"));
    let delayed = hs256(&claims(json!({"subscribe_delayed": ["v.>"]})));
    let writer = hs256(&claims(json!({"publish": ["v.>"]})));
    let mut sub = GzipSub::open(
        s.addr(),
        "topic=v.%3E",
        &format!("Authorization: Bearer {delayed}\r\n"),
    );
    assert!(sub
        .head
        .to_ascii_lowercase()
        .contains("content-encoding: gzip"));
    wait_subscribers(&s, 1);
    let quotes: Vec<String> = (0..4).map(quote).collect();
    let t0 = Instant::now();
    publish_burst(
        s.addr(),
        "v.a",
        &quotes,
        &[("Authorization", &format!("Bearer {writer}"))],
    );
    sub.until(&quotes[3], Duration::from_secs(3));
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "not before the delay"
    );
    assert_eq!(sub.data(), quotes);
}
