//! One publishing connection: it publishes every `conns`-th event of the
//! run (round-robin over the topics), paced by --rate or flat out,
//! pipelining up to --pipeline requests of one event (or an ndjson batch).
//! Each event carries this connection's index, its own per-topic sequence
//! number and its send time, for the subscribers' `Tracker`. A second task
//! reads the answers and times them (the acknowledgement latency).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRentExt, OwnedReadHalf, Splitable};
use monoio::net::TcpStream;

use crate::args::Args;
use crate::net::read_appending;
use crate::notify::LocalNotify;
use crate::sse::{content_length, head_end};
use crate::stats::{record, Stats};

/// What the writer and the answer reader of one connection share.
#[derive(Default)]
struct InFlight {
    /// Requests awaiting their answer, in order: (when the ack clock
    /// started, µs since base; events in the request).
    outstanding: RefCell<VecDeque<(u64, u64)>>,
    /// Woken on every answer, and when the writer is finished.
    acked: LocalNotify,
    /// The writer has sent everything it will send.
    finished: Cell<bool>,
    /// Requests sent.
    sent: Cell<u64>,
}

/// Publishing connection `conn_idx` of `conns`, keeping `window` requests
/// in flight.
pub(crate) async fn publisher(
    args: Rc<Args>,
    stats: Rc<Stats>,
    conn_idx: usize,
    conns: usize,
    base: Instant,
    window: usize,
) {
    let Ok(stream) = TcpStream::connect_addr(args.node(conn_idx)).await else {
        stats.publish_errors.set(stats.publish_errors.get() + 1);
        return;
    };
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let flight = Rc::new(InFlight::default());
    let reader = monoio::spawn(read_answers(rd, flight.clone(), stats.clone(), base));
    let pad = "x".repeat(args.load.size.saturating_sub(40));
    let per_request = args.per_request();
    let mut seqs = vec![0u64; args.load.topics];
    let mut own = (conn_idx as u64..args.load.events)
        .step_by(conns)
        .peekable();
    let start = Instant::now();
    while own.peek().is_some() {
        let chunk: Vec<u64> = own.by_ref().take(per_request).collect();
        let mut due_us = None;
        if let Some(ns) = (chunk[0] * 1_000_000_000).checked_div(args.load.rate) {
            let due = start + Duration::from_nanos(ns);
            let now = Instant::now();
            if due > now {
                monoio::time::sleep(due - now).await;
            }
            due_us = Some(due.duration_since(base).as_micros() as u64);
        }
        while flight.outstanding.borrow().len() >= window {
            let f = flight.clone();
            flight
                .acked
                .until(move || f.outstanding.borrow().len() < window)
                .await;
        }
        let ts = base.elapsed().as_micros() as u64;
        let req = request(&args, &chunk, conn_idx, ts, &pad, &mut seqs);
        flight
            .outstanding
            .borrow_mut()
            .push_back((due_us.unwrap_or(ts), chunk.len() as u64));
        flight.sent.set(flight.sent.get() + 1);
        if wr.write_all(req.into_bytes()).await.0.is_err() {
            stats.publish_errors.set(stats.publish_errors.get() + 1);
            break;
        }
    }
    flight.finished.set(true);
    flight.acked.notify();
    let _ = reader.await;
}

/// The publish request for the events in `chunk`, sent at `ts` µs: one
/// `text/plain` event, or an ndjson batch when the server takes them.
/// `pad` fills each event up to --size; `seqs` are this connection's
/// per-topic sequence numbers.
fn request(
    args: &Args,
    chunk: &[u64],
    conn_idx: usize,
    ts: u64,
    pad: &str,
    seqs: &mut [u64],
) -> String {
    let topics = args.load.topics as u64;
    let bearer = Args::bearer(&args.target.pub_token);
    if args.per_request() > 1 {
        let mut body = String::with_capacity(chunk.len() * (args.load.size + 64));
        for &e in chunk {
            let topic = (e % topics) as usize;
            seqs[topic] += 1;
            body.push_str(&format!(
                "{{\"topic\":\"{}\",\"data\":\"L {topic} {conn_idx} {} {ts} {pad}\"}}\n",
                args.topic_name(topic),
                seqs[topic]
            ));
        }
        return format!(
            "POST /publish HTTP/1.1\r\nHost: load\r\nContent-Type: application/x-ndjson\r\n{bearer}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    let topic = (chunk[0] % topics) as usize;
    seqs[topic] += 1;
    let data = format!("L {topic} {conn_idx} {} {ts} {pad}", seqs[topic]);
    format!(
        "POST {} HTTP/1.1\r\nHost: load\r\nContent-Type: text/plain\r\n{bearer}Content-Length: {}\r\n\r\n{data}",
        args.pub_path(topic),
        data.len()
    )
}

/// Reads the answers of one connection, in order: counts the events of a
/// 2xx answer as published, times each answer from its request's start,
/// and returns once every request sent has its answer (or the connection
/// ends).
async fn read_answers(
    mut rd: OwnedReadHalf<TcpStream>,
    flight: Rc<InFlight>,
    stats: Rc<Stats>,
    base: Instant,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut got = 0u64;
    loop {
        while let Some(he) = head_end(&buf) {
            let head = String::from_utf8_lossy(&buf[..he]).to_ascii_lowercase();
            let len = content_length(&head).unwrap_or(0);
            if buf.len() < he + len {
                break;
            }
            let ok = head.starts_with("http/1.1 2");
            buf.drain(..he + len);
            let (t0, events) = flight
                .outstanding
                .borrow_mut()
                .pop_front()
                .unwrap_or((0, 1));
            let now = base.elapsed().as_micros() as u64;
            record(&stats.ack_us, now.saturating_sub(t0));
            if stats.keep_samples.get() {
                stats
                    .ack_samples
                    .borrow_mut()
                    .push((t0, now.saturating_sub(t0)));
            }
            if ok {
                stats.published.set(stats.published.get() + events);
            } else {
                stats.publish_errors.set(stats.publish_errors.get() + 1);
            }
            got += 1;
            flight.acked.notify();
            if stats.keep_samples.get() {
                // The storm waits for a count of acknowledged events.
                stats.changed.notify();
            }
        }
        if flight.finished.get() && got >= flight.sent.get() {
            return;
        }
        let (res, b) = read_appending(&mut rd, buf).await;
        buf = b;
        if !matches!(res, Ok(n) if n > 0) {
            flight.acked.notify();
            return;
        }
    }
}
