//! Fault injection (SPEC §3 "Never a silent gap", §7 shutdown, §8 NATS
//! outages): every way the issue "never silent" found ringcast losing
//! events without saying so, or leaving a client hanging, reproduced
//! against the real binary — `kill -9` under a flood, restarts on the same
//! port and journal, a torn journal, a drain held by a stuck subscriber,
//! nats-server restarts and a node cut off from NATS — and the checks that
//! now hold. `scripts/chaos.sh` runs the same faults at random for minutes.
#[path = "../support/mod.rs"]
mod support;

mod config;
mod drain;
mod http;
mod nats;
mod restart;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;

/// One frame of a resumed stream: an event (id, data) or a `resync`.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Event(u64, String),
    Resync(String),
}

/// Reads frames until an event whose data is `end` (included), or panics
/// after `TIMEOUT` of silence.
fn frames_until_end(sub: &mut Sse, end: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        let ev = sub
            .next_event()
            .unwrap_or_else(|| panic!("the stream ended before {end:?}: {out:?}"));
        if ev.event == "resync" {
            out.push(Frame::Resync(resync_reason(&ev)));
            continue;
        }
        let done = ev.data == end;
        out.push(Frame::Event(ev.id_u64(), ev.data));
        if done {
            return out;
        }
    }
}

/// The invariant a resuming client relies on (SPEC §3): after its
/// `Last-Event-ID` `after`, ids strictly increase, and every acknowledged
/// event (`acked`, ids of events on the client's topics) either arrives or
/// a `resync` arrives before the first event that follows it. Returns the
/// number of resyncs.
fn assert_never_silent(after: u64, acked: &[u64], got: &[Frame]) -> usize {
    let mut last = after;
    for f in got {
        if let Frame::Event(id, _) = f {
            assert!(
                *id > last,
                "ids go back or repeat: {id} after {last} in {got:?}"
            );
            last = *id;
        }
    }
    let delivered: std::collections::HashSet<u64> = got
        .iter()
        .filter_map(|f| match f {
            Frame::Event(id, _) => Some(*id),
            Frame::Resync(_) => None,
        })
        .collect();
    for &a in acked.iter().filter(|&&a| a > after) {
        if delivered.contains(&a) {
            continue;
        }
        // Missing: a resync must come before the first event after it.
        let told = got
            .iter()
            .take_while(|f| !matches!(f, Frame::Event(id, _) if *id > a))
            .any(|f| matches!(f, Frame::Resync(_)));
        assert!(
            told,
            "acknowledged event {a} missing with no resync before what follows it: {got:?}"
        );
    }
    got.iter().filter(|f| matches!(f, Frame::Resync(_))).count()
}

/// An ndjson publish of `n` events on `topic`; the ids, or `None` when the
/// server refused it or went away.
fn publish_batch(addr: SocketAddr, topic: &str, n: usize, tag: &str) -> Option<Vec<u64>> {
    let mut body = String::with_capacity(n * 48);
    for i in 0..n {
        body.push_str(&format!(
            "{{\"topic\":\"{topic}\",\"data\":\"{tag}{i}\"}}\n"
        ));
    }
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let json = &text[text.find("\r\n\r\n")? + 4..];
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    Some(
        v["ids"]
            .as_array()?
            .iter()
            .filter_map(|x| x.as_str()?.parse().ok())
            .collect(),
    )
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A temporary directory for a journal, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("ringcast-faults-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
