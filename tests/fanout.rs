//! Fan-out to hundreds of subscribers over exact and wildcard patterns on 2
//! workers: each gets exactly the matching events, once, in order.
mod support;

use support::*;

type Pred = fn(&str) -> bool;

/// (query, which topics it matches) for the subscriber kinds.
const KINDS: [(&str, Pred); 4] = [
    ("topic=t.a.b", |t| t == "t.a.b"),
    ("topic=t.%2A.b", |t| {
        t.starts_with("t.") && t.ends_with(".b") && t.split('.').count() == 3
    }),
    ("topic=t.%3E", |t| t.starts_with("t.")),
    // Overlapping patterns: each event must still arrive once.
    ("topic=t.a.b&topic=t.%3E&topic=t.%2A.b", |t| {
        t.starts_with("t.")
    }),
];

fn scenario(config: &str, subscribers: usize, events: usize) {
    let s = Server::start(config);
    let subs: Vec<(usize, Sse)> = (0..subscribers)
        .map(|i| {
            (
                i % KINDS.len(),
                Sse::open(s.addr(), KINDS[i % KINDS.len()].0),
            )
        })
        .collect();
    wait_subscribers(&s, subscribers);
    // Both workers must be serving subscribers for this to test anything.
    let per_worker: Vec<f64> = (0..2)
        .map(|w| s.metric(&format!("ringcast_subscribers_active{{worker=\"{w}\"}}")))
        .collect();
    assert!(
        per_worker.iter().all(|&n| n > 0.0),
        "subscribers per worker: {per_worker:?}"
    );

    let topics = ["t.a.b", "t.x.b", "t.a.c", "t.a.b.c", "u.a.b", "t"];
    let mut published: Vec<(u64, String, String)> = Vec::new();
    let mut p = Publisher::new(s.addr());
    for i in 0..events {
        let topic = topics[i % topics.len()];
        let data = format!("{topic}#{i}");
        let id = p.publish(topic, &data);
        published.push((id, topic.to_owned(), data));
    }
    // A final event every kind matches: an extra or missing event anywhere
    // before it shifts the sequence and fails the comparison.
    let id = p.publish("t.a.b", "end");
    published.push((id, "t.a.b".to_owned(), "end".to_owned()));
    assert!(
        published.windows(2).all(|w| w[0].0 < w[1].0),
        "ids strictly increasing"
    );

    let expected: Vec<Vec<(u64, String)>> = KINDS
        .iter()
        .map(|(_, pred)| {
            published
                .iter()
                .filter(|(_, t, _)| pred(t))
                .map(|(id, _, d)| (*id, d.clone()))
                .collect()
        })
        .collect();
    // Readers in threads of up to 32 connections each; the kernel buffers
    // what a connection has not read yet.
    let mut groups: Vec<Vec<(usize, Sse)>> = Vec::new();
    for (i, sub) in subs.into_iter().enumerate() {
        if i % 32 == 0 {
            groups.push(Vec::new());
        }
        groups.last_mut().unwrap().push(sub);
    }
    let threads: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let expected = expected.clone();
            std::thread::spawn(move || {
                for (kind, mut sub) in group {
                    let want = &expected[kind];
                    let got = sub.take(want.len());
                    let got: Vec<(u64, String)> =
                        got.iter().map(|e| (e.id_u64(), e.data.clone())).collect();
                    assert_eq!(&got, want, "subscriber kind {}", KINDS[kind].0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a reader saw a wrong stream");
    }
    let total: usize = (0..subscribers)
        .map(|i| expected[i % KINDS.len()].len())
        .sum();
    let delivered = s.metric_until("ringcast_frames_delivered_total", |v| v >= total as f64);
    assert_eq!(delivered, total as f64);
}

#[test]
fn hundreds_of_subscribers_exact_and_wildcard_io_uring() {
    scenario("", 300, 240);
}

#[test]
fn subscribers_on_the_legacy_driver() {
    scenario("[server]\nio_driver = \"legacy\"\n", 60, 60);
}

#[test]
fn no_duplicate_and_nothing_extra() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=a.%3E&topic=a.b&topic=a.%2A");
    let ids: Vec<u64> = (0..20)
        .map(|i| publish(s.addr(), if i % 2 == 0 { "a.b" } else { "z" }, None, "x"))
        .collect();
    let marker = publish(s.addr(), "a.c", None, "end");
    let want: Vec<u64> = ids.iter().step_by(2).copied().chain([marker]).collect();
    let got: Vec<u64> = sub.take(want.len()).iter().map(Event::id_u64).collect();
    assert_eq!(got, want);
}

#[test]
fn disconnect_unsubscribes_and_leaves_nothing_behind() {
    let s = Server::start("");
    let base = s.metric_sum("ringcast_connections_active{");
    let subs: Vec<Sse> = (0..50)
        .map(|_| Sse::open(s.addr(), "topic=a.%3E&topic=b"))
        .collect();
    wait_subscribers(&s, 50);
    drop(subs);
    let left = s.metric_until_sum("ringcast_subscribers_active{", |v| v == 0.0);
    assert_eq!(left, 0.0);
    let conns = s.metric_until_sum("ringcast_connections_active{", |v| v <= base);
    assert!(conns <= base, "connections still open: {conns} > {base}");
    // The server still delivers to a new subscriber after the churn.
    let mut sub = Sse::open(s.addr(), "topic=b");
    let id = publish(s.addr(), "b", None, "after");
    assert_eq!(sub.next_event().unwrap().id_u64(), id);
}

/// Reads what one `read` returns from a subscriber socket whose head and
/// retry line were already consumed.
fn one_read(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = [0u8; 65536];
    let n = s.read(&mut buf).expect("events within the read timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Opens a raw subscriber and consumes its head and retry line.
fn raw_subscriber(addr: std::net::SocketAddr, topic: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = connect(addr);
    s.write_all(format!("GET /events?topic={topic} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 1];
    while !seen.ends_with(b"retry: 2000\n\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "head and retry");
        seen.push(b[0]);
    }
    s
}

#[test]
fn the_write_delay_window_gathers_events_into_one_write() {
    // A 400 ms window: the five publishes below take a few milliseconds,
    // so all five events join the first event's write.
    let s = Server::start("[sse]\nwrite_delay_ms = 400\n");
    let mut sub = raw_subscriber(s.addr(), "wd.a");
    wait_subscribers(&s, 1);
    let mut p = Publisher::new(s.addr());
    let ids: Vec<u64> = (0..5)
        .map(|i| p.publish("wd.a", &format!("e{i}")))
        .collect();
    let got = one_read(&mut sub);
    for id in &ids {
        assert!(
            got.contains(&format!("id: {id}\n")),
            "event {id} missing from the first write: {got:?}"
        );
    }
    drop(p);
}
