//! One subscriber, from connect to close: it opens its event stream (time
//! to first byte), reads and checks it until it has every event it expects,
//! then holds the connection open until the run is measured (`hang_up`),
//! so that closing is not counted as delivery work. A stalled subscriber
//! reads nothing; a resumer of a storm drops its stream at the drop and
//! reopens it with `Last-Event-ID` at the reconnect.

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use flate2::write::GzDecoder;

use crate::args::Args;
use crate::net::connect_from;
use crate::plan::SubSpec;
use crate::sse::{head_end, Dechunk};
use crate::stats::{record, Stats, DROP, RECONNECT};
use crate::tracker::Tracker;

/// An open event stream: the response head read, the body so far.
struct Stream {
    rd: OwnedReadHalf<TcpStream>,
    /// Kept open: dropping the write half shuts the connection down.
    _wr: OwnedWriteHalf<TcpStream>,
    chunked: bool,
    dechunk: Dechunk,
    /// A gzip body's decoder (its output is taken after every read).
    gz: Option<GzDecoder<Vec<u8>>>,
    body: Vec<u8>,
}

impl Stream {
    /// Connects subscriber `idx` and reads the response head; with
    /// `last_id`, resumes after it (the `Last-Event-ID` header).
    async fn open(
        args: &Args,
        stats: &Stats,
        (idx, throttled): (usize, bool),
        source: Option<std::net::Ipv4Addr>,
        rcvbuf: Option<usize>,
        last_id: Option<&[u8]>,
    ) -> Option<Stream> {
        let node = args.node(idx / args.load.topics);
        let stream = connect_from(node, source, rcvbuf).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let rate = match (throttled, args.load.max_rate) {
            (true, Some(r)) => format!("&max_rate={r}"),
            _ => String::new(),
        };
        let mut req = format!(
            "GET {}{rate} HTTP/1.1\r\nHost: load\r\nAccept: text/event-stream\r\n{}{}",
            args.sub_path(idx),
            Args::bearer(&args.target.sub_token),
            match args.load.gzip {
                true => "Accept-Encoding: gzip\r\n",
                false => "",
            }
        );
        if let Some(id) = last_id.filter(|id| !id.is_empty()) {
            req.push_str("Last-Event-ID: ");
            req.push_str(&String::from_utf8_lossy(id));
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        if wr.write_all(req.into_bytes()).await.0.is_err() {
            return None;
        }
        let mut buf = Vec::with_capacity(4096);
        let mut end = None;
        while end.is_none() {
            let (res, b) = rd.read(buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                return None;
            }
            end = head_end(&buf);
            if buf.len() == buf.capacity() {
                buf.reserve(4096);
            }
        }
        let end = end.unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let mut stream = Stream {
            rd,
            _wr: wr,
            chunked: head.contains("transfer-encoding: chunked"),
            dechunk: Dechunk::default(),
            gz: head
                .contains("content-encoding: gzip")
                .then(|| GzDecoder::new(Vec::new())),
            body: Vec::new(),
        };
        let rest = buf.split_off(end);
        stream.push(stats, &rest);
        Some(stream)
    }

    /// Appends bytes read to the body, de-chunked and decoded if need be,
    /// and counts them: as read, and as decoded.
    fn push(&mut self, stats: &Stats, bytes: &[u8]) {
        stats
            .wire_bytes
            .set(stats.wire_bytes.get() + bytes.len() as u64);
        let before = self.body.len();
        let Some(gz) = self.gz.as_mut() else {
            match self.chunked {
                true => self.dechunk.feed(bytes, &mut self.body),
                false => self.body.extend_from_slice(bytes),
            }
            stats
                .plain_bytes
                .set(stats.plain_bytes.get() + (self.body.len() - before) as u64);
            return;
        };
        let mut raw = Vec::new();
        let raw = match self.chunked {
            true => {
                self.dechunk.feed(bytes, &mut raw);
                &raw[..]
            }
            false => bytes,
        };
        // A sync-flushed stream decodes whole: every byte written comes
        // out at the flush. A corrupt stream ends the decoding, and the
        // tracker then sees the events missing.
        if gz.write_all(raw).and_then(|_| gz.flush()).is_err() {
            self.gz = None;
            return;
        }
        self.body.append(gz.get_mut());
        stats
            .plain_bytes
            .set(stats.plain_bytes.get() + (self.body.len() - before) as u64);
    }
}

/// How reading a stream ended.
enum Pump {
    /// Every expected event received.
    Done,
    /// The server closed the stream first.
    Closed,
    /// A resumer dropped it for the storm.
    Dropped,
}

/// Reads `s` until the subscriber has every expected event, the stream
/// ends, or (a resumer before its resume) the storm's drop.
async fn pump(
    stats: &Stats,
    s: &mut Stream,
    t: &mut Tracker,
    idx: usize,
    expected: u64,
    base: Instant,
) -> Pump {
    t.take_frames(&mut s.body, stats, base);
    let watch = t.awaits_drop();
    let mut rbuf = vec![0u8; 0];
    rbuf.reserve(64 * 1024);
    while t.received < expected {
        if watch && stats.phase.get() >= DROP {
            return Pump::Dropped;
        }
        rbuf.clear();
        let (res, b) = if watch {
            monoio::select! {
                biased;
                _ = stats.storm.until(idx, || stats.phase.get() >= DROP) => return Pump::Dropped,
                r = s.rd.read(rbuf) => r,
            }
        } else {
            s.rd.read(rbuf).await
        };
        rbuf = b;
        match res {
            Ok(n) if n > 0 => {
                s.push(stats, &rbuf[..n]);
                t.take_frames(&mut s.body, stats, base);
            }
            _ => return Pump::Closed,
        }
    }
    Pump::Done
}

/// Connects `specs` on this thread with at most --connect-concurrency
/// connects in progress, spawning one `subscriber` task each.
pub(crate) async fn connect_all(
    args: &Rc<Args>,
    stats: &Rc<Stats>,
    specs: Vec<SubSpec>,
    base: Instant,
) {
    let gate = Rc::new(Cell::new(0usize));
    let limit = args.load.connect_concurrency;
    for spec in specs {
        while gate.get() >= limit {
            let g = gate.clone();
            stats.changed.until(move || g.get() < limit).await;
        }
        gate.set(gate.get() + 1);
        monoio::spawn(subscriber(
            args.clone(),
            stats.clone(),
            spec,
            base,
            gate.clone(),
        ));
    }
}

/// Subscriber `spec`, to its end; `gate` counts connects in progress (the
/// caller's bound on concurrent connects).
pub(crate) async fn subscriber(
    args: Rc<Args>,
    stats: Rc<Stats>,
    spec: SubSpec,
    base: Instant,
    gate: Rc<Cell<usize>>,
) {
    let SubSpec {
        idx,
        expected,
        stalled,
        throttled,
        source,
        role,
    } = spec;
    let t0 = Instant::now();
    let rcvbuf = stalled.then_some(4096);
    let Some(mut stream) =
        Stream::open(&args, &stats, (idx, throttled), source, rcvbuf, None).await
    else {
        stats.connect_errors.set(stats.connect_errors.get() + 1);
        gate.set(gate.get() - 1);
        stats.changed.notify();
        return;
    };
    record(&stats.ttfb_us, t0.elapsed().as_micros() as u64);
    stats.connected.set(stats.connected.get() + 1);
    gate.set(gate.get() - 1);
    stats.changed.notify();
    if stalled || args.load.connect_only {
        // Hold the connection open, reading nothing, until the run ends.
        // (Not `std::future::pending()`: a monoio task that no waker refers
        // to is freed, which would drop, and so close, the connection. The
        // timer keeps this one's waker past the run's end.)
        monoio::time::sleep(Duration::from_secs(args.load.timeout_s + 60)).await;
    }
    if throttled {
        count_until_hang_up(&stats, idx, stream).await;
        return;
    }
    let mut tracker = Tracker::new(role, &args.sub_topics(idx), args.load.inflight);
    // The stream, once it has delivered every event.
    let mut open = None;
    loop {
        match pump(&stats, &mut stream, &mut tracker, idx, expected, base).await {
            Pump::Done => {
                open = Some(stream);
                break;
            }
            Pump::Closed => {
                let missing = expected.saturating_sub(tracker.received);
                stats.ended_short.set(stats.ended_short.get() + missing);
                stats.disconnected.set(stats.disconnected.get() + 1);
                if tracker.resumed_at_us.is_some() && !tracker.caught_up {
                    stats.resume_failed.set(stats.resume_failed.get() + 1);
                }
                break;
            }
            Pump::Dropped => {
                drop(stream);
                match resume(&args, &stats, &mut tracker, idx, source, base).await {
                    Some(s) => stream = s,
                    None => {
                        let missing = expected.saturating_sub(tracker.received);
                        stats.ended_short.set(stats.ended_short.get() + missing);
                        stats.resume_failed.set(stats.resume_failed.get() + 1);
                        stats.changed.notify();
                        break;
                    }
                }
            }
        }
    }
    if tracker.resumed_at_us.is_some()
        && tracker.faults == 0
        && tracker.resyncs == 0
        && tracker.received == expected
    {
        stats.resumers_exact.set(stats.resumers_exact.get() + 1);
    }
    let open = open.filter(|_| !args.storm.on());
    if open.is_some() {
        stats.holding.set(stats.holding.get() + 1);
    }
    stats.done_subscribers.set(stats.done_subscribers.get() + 1);
    stats.changed.notify();
    if let Some(stream) = open {
        // The closing is measured apart from the deliveries (see `hang_up`).
        stats.hang_up_wait.until(idx, || stats.hang_up.get()).await;
        drop(stream);
        stats.hung_up.set(stats.hung_up.get() + 1);
        stats.changed.notify();
    }
}

/// A resumer that dropped its stream: waits for the storm's reconnect and
/// reopens the stream after the last event it had (none if that fails).
async fn resume(
    args: &Args,
    stats: &Stats,
    tracker: &mut Tracker,
    idx: usize,
    source: Option<std::net::Ipv4Addr>,
    base: Instant,
) -> Option<Stream> {
    stats.resumers_dropped.set(stats.resumers_dropped.get() + 1);
    stats
        .storm
        .until(idx, || stats.phase.get() >= RECONNECT)
        .await;
    tracker.resumed_at_us = Some(base.elapsed().as_micros() as u64);
    let t1 = Instant::now();
    let last_id = std::mem::take(&mut tracker.last_id);
    let stream = Stream::open(args, stats, (idx, false), source, None, Some(&last_id)).await?;
    record(&stats.resume_ttfb_us, t1.elapsed().as_micros() as u64);
    stats
        .resumers_reconnected
        .set(stats.resumers_reconnected.get() + 1);
    Some(stream)
}

/// A throttled subscriber (--max-rate): reads its stream and counts the
/// events in it until the publish phase is measured, then closes.
async fn count_until_hang_up(stats: &Stats, idx: usize, mut s: Stream) {
    // Counts the `id:` lines of whole lines; a partial last line waits.
    let count = |s: &mut Stream| {
        let cut = s
            .body
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let ids = s.body[..cut]
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"id:"))
            .count();
        s.body.drain(..cut);
        let n = stats.throttled_received.get() + ids as u64;
        stats.throttled_received.set(n);
    };
    count(&mut s);
    let mut rbuf = Vec::with_capacity(16 * 1024);
    while !stats.hang_up.get() {
        rbuf.clear();
        let (res, b) = monoio::select! {
            biased;
            _ = stats.hang_up_wait.until(idx, || stats.hang_up.get()) => break,
            r = s.rd.read(rbuf) => r,
        };
        rbuf = b;
        match res {
            Ok(n) if n > 0 => {
                s.push(stats, &rbuf[..n]);
                count(&mut s);
            }
            _ => break,
        }
    }
}
