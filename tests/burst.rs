//! Market open: a burst of large ndjson batches from several publishers at
//! once, and a reconnect storm with Last-Event-ID while publishing goes on.
//! Healthy subscribers are neither disconnected nor given a gap; a stalled
//! one is still closed.
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Mutex};

use support::*;

/// Opens `/events?{query}` and returns the socket once the response head
/// has arrived.
fn open_raw(addr: SocketAddr, query: &str, last_event_id: Option<u64>) -> (TcpStream, Vec<u8>) {
    let mut s = connect(addr);
    let mut req = format!("GET /events?{query} HTTP/1.1\r\nHost: t\r\n");
    if let Some(id) = last_event_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response head");
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", &got[..end]);
    (s, got.split_off(end))
}

/// A subscriber that reads as fast as the socket allows and keeps only the
/// ids of the events it received (frames are split on the blank line).
struct FastReader {
    s: TcpStream,
    carry: Vec<u8>,
    ids: Vec<u64>,
    /// The reason of any `resync` frame seen.
    resyncs: Vec<String>,
}

impl FastReader {
    fn open(addr: SocketAddr, query: &str, last_event_id: Option<u64>) -> FastReader {
        let (s, carry) = open_raw(addr, query, last_event_id);
        let mut r = FastReader {
            s,
            carry: Vec::new(),
            ids: Vec::new(),
            resyncs: Vec::new(),
        };
        r.feed(&carry);
        r
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.carry.extend_from_slice(bytes);
        // `str::find` runs core's optimised searcher even in debug builds,
        // so the reader keeps up with the server in every build.
        let text = std::str::from_utf8(&self.carry).expect("ASCII frames");
        let mut start = 0;
        while let Some(end) = text[start..].find("\n\n") {
            let frame = &text[start..start + end];
            if let Some(rest) = frame.strip_prefix("id: ") {
                let id = rest.split('\n').next().unwrap();
                self.ids.push(id.parse().unwrap());
            } else if let Some(i) = frame.find("data: {\"reason\"") {
                self.resyncs.push(frame[i..].to_owned());
            }
            start += end + 2;
        }
        self.carry.drain(..start);
    }

    /// Reads until `n` ids have arrived; false when the server closed the
    /// stream (or nothing came for the support timeout) first.
    fn read_until(&mut self, n: usize) -> bool {
        self.s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        while self.ids.len() < n {
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.feed(&buf[..k]),
            }
        }
        true
    }
}

/// One ndjson body of `n` events of `size` bytes on `topic`.
fn batch(topic: &str, n: usize, size: usize, tag: usize) -> Vec<u8> {
    let data = "x".repeat(size - 8);
    let mut body = Vec::with_capacity(n * (size + 48));
    for i in 0..n {
        body.extend_from_slice(
            format!("{{\"topic\":\"{topic}\",\"data\":\"{tag:03}{i:05}{data}\"}}\n").as_bytes(),
        );
    }
    body
}

#[test]
fn a_burst_of_large_batches_reaches_fast_readers_whole_and_a_stalled_reader_is_still_closed() {
    // Default bounds: 1 MiB of unsent bytes per subscriber.
    let s = Server::start("");
    let addr = s.addr();
    const PUBLISHERS: usize = 8;
    const BATCHES: usize = 3;
    const PER_BATCH: usize = 480;
    const SIZE: usize = 2000;
    let total = PUBLISHERS * BATCHES * PER_BATCH;
    let stalled = open_raw(addr, "topic=burst", None);
    let readers: Vec<FastReader> = (0..4)
        .map(|_| FastReader::open(addr, "topic=burst", None))
        .collect();
    wait_subscribers(&s, 5);
    let reading: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let whole = r.read_until(total);
                (whole, r.ids)
            })
        })
        .collect();
    // Every publisher sends its 1 MB batches back to back, all at once.
    let start = Arc::new(Barrier::new(PUBLISHERS));
    let publishing: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let start = start.clone();
            std::thread::spawn(move || {
                let bodies: Vec<Vec<u8>> = (0..BATCHES)
                    .map(|b| batch("burst", PER_BATCH, SIZE, p * BATCHES + b))
                    .collect();
                assert!(bodies
                    .iter()
                    .all(|b| b.len() <= 1 << 20 && b.len() > 900_000));
                start.wait();
                bodies
                    .iter()
                    .flat_map(|b| post(addr, "/publish", "application/x-ndjson", b).batch_ids())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut published: Vec<u64> = publishing
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    published.sort_unstable();
    assert_eq!(published.len(), total);
    for (i, h) in reading.into_iter().enumerate() {
        let (whole, got) = h.join().unwrap();
        assert!(
            whole,
            "fast reader {i} was cut off after {} of {total} events",
            got.len()
        );
        assert_eq!(got, published, "fast reader {i}: every event, in order");
    }
    assert_eq!(
        s.metric_until("ringcast_slow_disconnects_total", |v| v >= 1.0),
        1.0,
        "only the stalled reader is closed as slow"
    );
    drop(stalled);
}

#[test]
fn a_reconnect_storm_with_last_event_id_resumes_every_client_exactly() {
    let s = Server::start("");
    let addr = s.addr();
    const CLIENTS: usize = 120;
    const VENUES: usize = 4;
    const SYMBOLS: usize = 10;
    const EVENTS: usize = 4000;
    // Client c watches one symbol on every venue through a wildcard, plus
    // one exact topic, so replays mix both kinds of pattern.
    let query = |c: usize| {
        format!(
            "topic=storm.%2A.s{}&topic=storm.v0.s{}",
            c % SYMBOLS,
            (c + 1) % SYMBOLS
        )
    };
    let wants = |c: usize, topic: &str| {
        topic.ends_with(&format!(".s{}", c % SYMBOLS))
            || topic == format!("storm.v0.s{}", (c + 1) % SYMBOLS)
    };
    let readers: Vec<FastReader> = (0..CLIENTS)
        .map(|c| FastReader::open(addr, &query(c), None))
        .collect();
    wait_subscribers(&s, CLIENTS);
    // Publishing goes on through the whole storm, one event at a time.
    let log: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let publisher = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut p = Publisher::new(addr);
            for i in 0..EVENTS {
                let topic = format!("storm.v{}.s{}", i % VENUES, (i / VENUES) % SYMBOLS);
                let id = p.publish(&topic, &format!("e{i}"));
                log.lock().unwrap().push((id, topic));
            }
        })
    };
    // Each client reads a share of its stream, then all drop their
    // connections together and reconnect together with their last id.
    let storm = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(c, mut r)| {
            let storm = storm.clone();
            let query = query(c);
            std::thread::spawn(move || {
                assert!(r.read_until(40), "client {c}: stream ended early");
                let before = std::mem::take(&mut r.ids);
                drop(r);
                storm.wait();
                let last = *before.last().unwrap();
                let r = FastReader::open(addr, &query, Some(last));
                (before, r)
            })
        })
        .collect();
    let resumed: Vec<(Vec<u64>, FastReader)> =
        clients.into_iter().map(|h| h.join().unwrap()).collect();
    publisher.join().unwrap();
    let log = log.lock().unwrap().clone();
    for (c, (before, mut r)) in resumed.into_iter().enumerate() {
        let want: Vec<u64> = log
            .iter()
            .filter(|(_, t)| wants(c, t))
            .map(|(id, _)| *id)
            .collect();
        assert!(
            r.read_until(want.len() - before.len()),
            "client {c}: got {} of {} after resuming",
            r.ids.len(),
            want.len() - before.len()
        );
        assert!(r.resyncs.is_empty(), "client {c}: {:?}", r.resyncs);
        let mut all = before;
        all.extend(&r.ids);
        assert_eq!(all, want, "client {c}: no gap, no duplicate, in order");
    }
    assert_eq!(s.metric("ringcast_resyncs_total"), 0.0);
}
