//! Graceful shutdown in its own test binary: SIGTERM drains every
//! acknowledged event to subscribers that keep reading, then a randomised
//! `retry:`, then close, and exit 0.
mod support;

use std::time::Duration;
use support::*;

#[test]
fn sigterm_drains_acknowledged_events_then_retry_then_exit_0() {
    let mut s = Server::start("[sse]\nretry_ms = 1000\n[server]\nshutdown_timeout_ms = 8000\n");
    let mut subs: Vec<Sse> = (0..20)
        .map(|_| Sse::open(s.addr(), "topic=d.%3E"))
        .collect();
    let mut p = Publisher::new(s.addr());
    // Payloads large enough that much is still queued when the signal lands.
    let payload = "z".repeat(2000);
    let ids: Vec<u64> = (0..500)
        .map(|i| p.publish(&format!("d.{}", i % 5), &payload))
        .collect();
    s.kill_term();
    let readers: Vec<_> = subs
        .drain(..)
        .map(|mut sub| {
            let ids = ids.clone();
            std::thread::spawn(move || {
                let got: Vec<u64> = sub.take(ids.len()).iter().map(Event::id_u64).collect();
                assert_eq!(got, ids);
                sub.retry = None;
                assert!(
                    sub.next_event().is_none(),
                    "nothing after the last event but retry and EOF"
                );
                let retry = sub.retry.expect("a retry: line before close");
                assert!((1000..=3000).contains(&retry), "randomised retry {retry}");
                assert!(sub.at_eof());
                retry
            })
        })
        .collect();
    let retries: Vec<u64> = readers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        retries.iter().any(|r| *r != retries[0]),
        "retry values are randomised: {retries:?}"
    );
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exits within the timeout");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn after_sigterm_readyz_and_publish_refuse_or_listener_is_closed() {
    let mut s = Server::start("[server]\nshutdown_timeout_ms = 3000\n");
    // A subscriber that never reads keeps the server draining for a while.
    let _stuck = Sse::open(s.addr(), "topic=x");
    let mut p = Publisher::new(s.addr());
    p.publish("x", "before");
    s.kill_term();
    // The existing keep-alive publisher connection gets 503 (or is closed).
    p.send("x", "after");
    let mut refused = false;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline && !refused {
        refused = match std::net::TcpStream::connect(s.addr()) {
            Err(_) => true,
            Ok(mut c) => {
                use std::io::{BufRead, BufReader, Write};
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ =
                    c.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let mut line = String::new();
                match BufReader::new(c).read_line(&mut line) {
                    Ok(0) | Err(_) => true,
                    Ok(_) => line.starts_with("HTTP/1.1 503"),
                }
            }
        };
    }
    assert!(refused, "readiness never turned off");
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exits within the timeout");
    assert_eq!(status.code(), Some(0));
}
