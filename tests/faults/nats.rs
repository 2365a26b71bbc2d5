//! NATS outages (SPEC §8): after nats-server comes back — restarted on
//! the same store after 0.2 s, 1 s or 5 s — every node delivers again
//! within a second of its first successful publish; a node cut off from
//! NATS alone (behind a TCP proxy that drops its connections) keeps its
//! subscribers, refuses publishes, and on its return delivers everything
//! JetStream kept, in order.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use support::nats::{self, node, wait_readyz, Nats};

use super::*;

/// Publishes `data` on `topic` through `addr` until a node accepts it (it
/// answers 503 while it has no JetStream); the id and when it was accepted.
fn publish_when_back(addr: SocketAddr, topic: &str, data: &str) -> (u64, Instant) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = post(
            addr,
            &format!("/publish?topic={topic}"),
            "text/plain",
            data.as_bytes(),
        );
        if r.status == 200 {
            return (
                r.json()["id"].as_str().unwrap().parse().unwrap(),
                Instant::now(),
            );
        }
        assert!(
            Instant::now() < until,
            "no publish accepted within 30 s of NATS coming back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reproduction: after a nats-server restart on the same
/// store, nodes acknowledged publishes again at once but delivered nothing
/// for 10-20 s (the consumer waited for the client library's heartbeat
/// timer). Now each outage ends for subscribers within a second of the
/// first publish that succeeds, on both nodes.
#[test]
fn after_a_nats_restart_every_node_delivers_within_a_second() {
    if !nats::available() {
        return;
    }
    let mut nats = Nats::start();
    let nodes = [node(&nats, ""), node(&nats, "")];
    let mut subs: Vec<Sse> = nodes
        .iter()
        .map(|n| {
            let s = Sse::open(n.addr(), "topic=o.%3E");
            wait_subscribers(n, 1);
            s
        })
        .collect();
    for (k, outage) in [200u64, 1000, 5000].into_iter().enumerate() {
        nats.stop();
        // The length of the fault itself.
        std::thread::sleep(Duration::from_millis(outage));
        nats.restart();
        // Each node, from its own first successful publish: that event
        // reaches its subscriber within a second.
        let mut sent = Vec::new();
        for (n, (node, sub)) in nodes.iter().zip(subs.iter_mut()).enumerate() {
            let data = format!("outage {k} node {n}");
            let (id, accepted) = publish_when_back(node.addr(), &format!("o.{k}"), &data);
            sent.push((id, data.clone()));
            sub.set_timeout(Duration::from_secs(3));
            let arrived = loop {
                let ev = sub.next_event().unwrap_or_else(|| {
                    panic!("node {n}: nothing within 3 s after a {outage} ms outage")
                });
                if ev.id_u64() == id {
                    break accepted.elapsed();
                }
            };
            assert!(
                arrived < Duration::from_secs(1),
                "node {n}: delivered {arrived:?} after its first successful publish ({outage} ms outage)"
            );
        }
        // And every node got both, once, in order: node 0 has yet to read
        // node 1's event.
        let ev = subs[0].next_event().expect("node 0 gets node 1's event");
        assert_eq!(
            (ev.id_u64(), ev.data.as_str()),
            (sent[1].0, sent[1].1.as_str())
        );
        assert!(sent[0].0 < sent[1].0);
    }
}

/// A TCP proxy between one node and nats-server: `cut` closes every
/// connection through it and closes new ones at once; `restore` lets them
/// through again.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut held = k2.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One node loses NATS while the other keeps publishing: it keeps its
/// subscribers (heartbeats), answers 503 and /readyz 503, reconnects by
/// itself when the network is back, and its subscribers get every event
/// published meanwhile, in order, with no gap and no duplicate — and then
/// its own publishes within a second.
#[test]
fn a_node_cut_off_from_nats_alone_recovers_and_misses_nothing() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let a = node(&nats, "");
    let upstream: SocketAddr = nats.url().trim_start_matches("nats://").parse().unwrap();
    let proxy = Proxy::start(upstream);
    let b = Server::start_with(
        &format!(
            "[sse]\nheartbeat_ms = 200\n[cluster]\nnats_url = \"nats://127.0.0.1:{}\"\npublish_timeout_ms = 1000\n",
            proxy.port
        ),
        &["--workers", "2"],
        &[],
    );
    wait_readyz(&b, 200, TIMEOUT);
    let mut sub = Sse::open(b.addr(), "topic=cut.%3E");
    wait_subscribers(&b, 1);
    let first = publish(a.addr(), "cut.x", None, "before");
    assert_eq!(sub.next_event().unwrap().id_u64(), first);

    proxy.cut();
    wait_readyz(&b, 503, TIMEOUT);
    let r = post(b.addr(), "/publish?topic=cut.x", "text/plain", b"refused");
    r.assert_error(503);
    assert!(r.header("retry-after").is_some());
    let during: Vec<u64> = (0..5)
        .map(|i| publish(a.addr(), "cut.x", None, &format!("during {i}")))
        .collect();
    sub.set_timeout(Duration::from_secs(2));
    assert!(
        sub.next_comment().is_some(),
        "heartbeats go on while cut off"
    );

    proxy.restore();
    wait_readyz(&b, 200, Duration::from_secs(30));
    let (after, accepted) = publish_when_back(b.addr(), "cut.y", "after");
    let got: Vec<(u64, String)> = sub
        .take(6)
        .into_iter()
        .map(|e| (e.id_u64(), e.data))
        .collect();
    let waited = accepted.elapsed();
    let mut want: Vec<(u64, String)> = during
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, format!("during {i}")))
        .collect();
    want.push((after, "after".into()));
    assert_eq!(
        got, want,
        "what JetStream kept, in order, then its own publish"
    );
    assert!(
        waited < Duration::from_secs(1),
        "delivered {waited:?} after its first publish"
    );
}
