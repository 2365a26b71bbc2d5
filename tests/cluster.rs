//! Cluster mode (SPEC §8): several ringcast nodes on one real nats-server
//! with JetStream. Every node delivers every event under its stream
//! sequence; a subscriber resumes on any node; old events and snapshots come
//! from JetStream; an outage of NATS loses and repeats nothing; a stream
//! deleted and recreated is a new epoch (`resync`). Each test
//! runs its own nats-server (fresh stream, so ids start at 1) and its own
//! nodes. Needs nats-server (`.ci/run` installs it); in CI a missing one
//! fails the test, on a developer machine it is reported and skipped.
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::nats::{self, node, node_with, wait_readyz, Nats};
use support::*;

/// NATS subject matching, as SPEC §2 defines patterns.
fn matches(pattern: &str, topic: &str) -> bool {
    let mut tokens = topic.split('.');
    for p in pattern.split('.') {
        match (p, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// An acknowledged publish.
#[derive(Debug, Clone)]
struct Sent {
    topic: String,
    event: String,
    data: String,
    id: u64,
}

/// What a subscriber to `patterns` must receive of `sent`: (id, event,
/// data) in id order.
fn expected(sent: &[Sent], patterns: &[&str]) -> Vec<(u64, String, String)> {
    let mut want: Vec<_> = sent
        .iter()
        .filter(|s| patterns.iter().any(|p| matches(p, &s.topic)))
        .map(|s| (s.id, s.event.clone(), s.data.clone()))
        .collect();
    want.sort_by_key(|w| w.0);
    want
}

fn received(events: &[Event]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .map(|e| (e.id_u64(), e.event.clone(), e.data.clone()))
        .collect()
}

fn publish_sent(addr: std::net::SocketAddr, topic: &str, event: Option<&str>, data: &str) -> Sent {
    Sent {
        topic: topic.to_owned(),
        event: event.unwrap_or_default().to_owned(),
        data: data.to_owned(),
        id: publish(addr, topic, event, data),
    }
}

fn ndjson(lines: &[(&str, Option<&str>, &str)]) -> String {
    lines
        .iter()
        .map(|(topic, event, data)| {
            let mut v = serde_json::json!({ "topic": topic, "data": data });
            if let Some(e) = event {
                v["event"] = (*e).into();
            }
            format!("{v}\n")
        })
        .collect()
}

/// Three nodes, two subscriptions each (made before anything is
/// published): single publishes on A get the stream sequence 1, 2, 3, ...;
/// an ndjson batch on B and a publish on C reach every node too; every node
/// delivers the same events with the same ids.
#[test]
fn every_node_delivers_every_event_under_its_stream_sequence() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let nodes = [node(&nats, ""), node(&nats, ""), node(&nats, "")];
    let queries = ["topic=quotes.%3E", "topic=quotes.X.AAPL&topic=news.%2A"];
    let patterns: [&[&str]; 2] = [&["quotes.>"], &["quotes.X.AAPL", "news.*"]];
    let mut subs = Vec::new();
    for (n, s) in nodes.iter().enumerate() {
        for (q, query) in queries.iter().enumerate() {
            subs.push((n, q, Sse::open(s.addr(), query)));
        }
        wait_subscribers(s, 2);
    }
    let topics = [
        "quotes.X.AAPL",
        "quotes.Y.MSFT",
        "news.a",
        "other.x",
        "quotes.X.AAPL",
        "news.b.c",
        "news.b",
    ];
    let mut sent: Vec<Sent> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| publish_sent(nodes[0].addr(), t, None, &format!("{t} #{i}")))
        .collect();
    assert_eq!(
        sent.iter().map(|s| s.id).collect::<Vec<_>>(),
        (1..=topics.len() as u64).collect::<Vec<_>>(),
        "a fresh stream's sequence, from 1"
    );

    let batch = [
        ("quotes.Z.IBM", Some("trade"), "b0"),
        ("news.c", None, "b1\nsecond line"),
        ("other.y", None, "b2"),
        ("quotes.X.AAPL", Some("quote"), "b3"),
    ];
    let ids = post(
        nodes[1].addr(),
        "/publish",
        "application/x-ndjson",
        ndjson(&batch).as_bytes(),
    )
    .batch_ids();
    assert_eq!(ids.len(), batch.len());
    assert!(
        ids[0] > sent.last().unwrap().id && ids.windows(2).all(|w| w[0] < w[1]),
        "batch ids {ids:?} after {}, increasing",
        sent.last().unwrap().id
    );
    for ((topic, event, data), id) in batch.iter().zip(&ids) {
        sent.push(Sent {
            topic: (*topic).to_owned(),
            event: event.unwrap_or_default().to_owned(),
            data: (*data).to_owned(),
            id: *id,
        });
    }
    let from_c = publish_sent(nodes[2].addr(), "quotes.Y.MSFT", Some("quote"), "from C");
    assert!(from_c.id > *ids.last().unwrap());
    sent.push(from_c);

    for (n, q, sub) in &mut subs {
        let want = expected(&sent, patterns[*q]);
        let got = received(&sub.take(want.len()));
        assert_eq!(got, want, "node {n}, {}", queries[*q]);
    }
    for s in &nodes {
        assert_eq!(s.metric("ringcast_cluster_connected"), 1.0);
        let lag = s.metric_until("ringcast_cluster_consumer_lag", |v| v == 0.0);
        assert_eq!(lag, 0.0, "everything is delivered, nothing left to consume");
    }
}

/// A subscriber hops A → B → A → B with its Last-Event-ID while a publisher
/// keeps publishing on A: it gets every acknowledged event of its topics
/// exactly once, in order.
#[test]
fn subscriber_moving_between_nodes_misses_and_repeats_nothing() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let nodes = [node(&nats, ""), node(&nats, "")];
    let query = "topic=mv.a&topic=mv.b.%3E";
    let patterns = ["mv.a", "mv.b.>"];
    let mut sub = Sse::open(nodes[0].addr(), query);
    wait_subscribers(&nodes[0], 1);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let publisher = {
        let (stop, acked, addr) = (stop.clone(), acked.clone(), nodes[0].addr());
        std::thread::spawn(move || {
            let mut p = Publisher::new(addr);
            let mut i = 0;
            // Bounded, should the subscriber side stall.
            while !stop.load(Ordering::SeqCst) && i < 20_000 {
                let topic = ["mv.a", "mv.b.x", "mv.c", "mv.b.y.z"][i % 4];
                let data = i.to_string();
                let id = p.publish(topic, &data);
                acked.lock().unwrap().push(Sent {
                    topic: topic.to_owned(),
                    event: String::new(),
                    data,
                    id,
                });
                i += 1;
            }
        })
    };
    let mut got = Vec::new();
    let mut on = 0;
    for _ in 0..3 {
        got.extend(sub.take(40));
        let last = got.last().unwrap().id.clone();
        on = 1 - on;
        sub = Sse::open_with(nodes[on].addr(), query, &[("Last-Event-ID", &last)]);
    }
    assert_eq!(on, 1, "ends on B");
    got.extend(sub.take(40));
    stop.store(true, Ordering::SeqCst);
    publisher.join().unwrap();

    let want = expected(&acked.lock().unwrap(), &patterns);
    assert!(want.len() >= got.len(), "more received than published");
    // A marker after everything: nothing may come between the last
    // acknowledged event and it.
    let marker = publish_sent(nodes[0].addr(), "mv.a", None, "marker");
    let rest = sub.take(want.len() - got.len() + 1);
    got.extend(rest);
    let got = received(&got);
    assert_eq!(got.last().unwrap().0, marker.id, "the marker comes last");
    assert_eq!(
        got[..got.len() - 1],
        want[..],
        "every acknowledged event once, in order"
    );
}

/// B keeps 4 events per topic; a resume on B from an early id gets all 40-odd
/// later events (from JetStream), then live ones.
#[test]
fn resume_older_than_local_history_is_served_from_jetstream() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let a = node(&nats, "");
    let b = node(&nats, "[history]\nper_topic = 4\n");
    // B has consumed all 50 (so its own history holds the last 4 per topic)
    // once this subscriber has them.
    let mut all = Sse::open(b.addr(), "topic=old.%3E");
    wait_subscribers(&b, 1);
    let sent: Vec<Sent> = (0..50)
        .map(|i| {
            let topic = if i % 5 == 4 { "old.y" } else { "old.x" };
            publish_sent(a.addr(), topic, None, &format!("{topic} {i}"))
        })
        .collect();
    assert_eq!(received(&all.take(50)), expected(&sent, &["old.>"]));

    let from = sent[2].id;
    let mut x = Sse::open_with(
        b.addr(),
        "topic=old.x",
        &[("Last-Event-ID", &from.to_string())],
    );
    let want: Vec<_> = expected(&sent, &["old.x"])
        .into_iter()
        .filter(|w| w.0 > from)
        .collect();
    assert_eq!(received(&x.take(want.len())), want, "header resume on B");

    let from = sent[5].id;
    let mut q = Sse::open(b.addr(), &format!("topic=old.%3E&lastEventId={from}"));
    let want: Vec<_> = expected(&sent, &["old.>"])
        .into_iter()
        .filter(|w| w.0 > from)
        .collect();
    assert_eq!(received(&q.take(want.len())), want, "query resume on B");

    let live = publish_sent(a.addr(), "old.x", None, "live");
    for sub in [&mut x, &mut q, &mut all] {
        let ev = sub.next_event().expect("the live event");
        assert_eq!((ev.id_u64(), ev.data.as_str()), (live.id, "live"));
    }
    assert_eq!(b.metric("ringcast_resyncs_total"), 0.0);
}

/// Node D starts after the events: its snapshot is the newest value of
/// every matching topic with its original id, oldest first, then live.
#[test]
fn snapshot_on_a_late_node_has_the_newest_value_of_every_topic() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let a = node(&nats, "");
    let topics = ["snap.a.x", "snap.b.x", "snap.c.y", "snap.d.x", "other.x"];
    let mut last = HashMap::new();
    for i in 0..30 {
        let t = topics[i % topics.len()];
        last.insert(t, publish_sent(a.addr(), t, Some("q"), &format!("{t}:{i}")));
    }
    let d = node(&nats, "");
    let newest = |ts: &[&str]| {
        let mut v: Vec<_> = ts
            .iter()
            .map(|t| (last[t].id, "q".to_owned(), last[t].data.clone()))
            .collect();
        v.sort_by_key(|w| w.0);
        v
    };

    let mut sub = Sse::open(d.addr(), "topic=snap.%2A.x&snapshot=1");
    assert_eq!(
        received(&sub.take(3)),
        newest(&["snap.a.x", "snap.b.x", "snap.d.x"])
    );
    // Overlapping patterns: still one value per topic.
    let mut both = Sse::open(d.addr(), "topic=snap.c.y&topic=snap.%3E&snapshot=1");
    assert_eq!(
        received(&both.take(4)),
        newest(&["snap.a.x", "snap.b.x", "snap.c.y", "snap.d.x"])
    );

    wait_subscribers(&d, 2);
    let live = publish_sent(a.addr(), "snap.b.x", None, "live");
    for s in [&mut sub, &mut both] {
        let ev = s.next_event().expect("the live event");
        assert_eq!((ev.id_u64(), ev.data.as_str()), (live.id, "live"));
    }
}

/// An id past the end of the stream cannot be continued from: `resync`
/// (`epoch`) first, then a fresh subscription. This node is put in cluster
/// mode through the environment.
#[test]
fn id_beyond_the_stream_end_gets_resync_epoch() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let url = nats.url();
    let s = Server::start_with(
        "",
        &["--workers", "1"],
        &[("RINGCAST_CLUSTER_NATS_URL", &url)],
    );
    wait_readyz(&s, 200, TIMEOUT);
    assert_eq!(s.metric("ringcast_cluster_connected"), 1.0);
    for i in 0..3 {
        publish(s.addr(), "far", None, &i.to_string());
    }
    let mut header = Sse::open_with(s.addr(), "topic=far", &[("Last-Event-ID", "999999")]);
    assert_eq!(resync_reason(&header.next_event().unwrap()), "epoch");
    let mut query = Sse::open(s.addr(), "topic=far&lastEventId=999999");
    assert_eq!(resync_reason(&query.next_event().unwrap()), "epoch");
    let live = publish(s.addr(), "far", None, "live");
    assert_eq!(live, 4);
    for sub in [&mut header, &mut query] {
        let ev = sub.next_event().unwrap();
        assert_eq!((ev.id_u64(), ev.data.as_str()), (live, "live"));
    }
}

/// NATS goes away and comes back on the same port and store: subscribers
/// on both nodes stay connected with heartbeats, publishes get 503 with
/// Retry-After, /readyz 503; after the restart the nodes reconnect by
/// themselves and every acknowledged event reaches every subscriber once,
/// in order, and nothing refused ever does.
#[test]
fn nats_outage_keeps_subscribers_and_loses_nothing_acknowledged() {
    if !nats::available() {
        return;
    }
    let mut nats = Nats::start();
    let toml = "[sse]\nheartbeat_ms = 200\n";
    let nodes = [
        node_with(&nats, toml, "publish_timeout_ms = 1000"),
        node_with(&nats, toml, "publish_timeout_ms = 1000"),
    ];
    let mut subs: Vec<Sse> = nodes
        .iter()
        .map(|s| {
            let sub = Sse::open(s.addr(), "topic=out.%3E");
            wait_subscribers(s, 1);
            sub
        })
        .collect();
    let round = |tag: &str| {
        let mut sent: Vec<Sent> = (0..6)
            .map(|i| {
                let s = &nodes[i % 2];
                publish_sent(
                    s.addr(),
                    &format!("out.{}", i % 3),
                    None,
                    &format!("{tag} {i}"),
                )
            })
            .collect();
        sent.sort_by_key(|s| s.id);
        sent
    };
    let before = round("before");
    for sub in &mut subs {
        assert_eq!(received(&sub.take(6)), expected(&before, &["out.>"]));
    }

    nats.stop();
    for s in &nodes {
        wait_readyz(s, 503, TIMEOUT);
        assert_eq!(
            s.metric_until("ringcast_cluster_connected", |v| v == 0.0),
            0.0
        );
        let t = Instant::now();
        let r = post(
            s.addr(),
            "/publish?topic=out.0",
            "text/plain",
            b"refused during the outage",
        );
        r.assert_error(503);
        assert!(r.header("retry-after").is_some_and(|v| !v.is_empty()));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "refused within the publish timeout, took {:?}",
            t.elapsed()
        );
    }
    // Still connected: heartbeats keep coming (every 200 ms of silence),
    // and nothing else. Reading for a second of wall time needs heartbeats
    // written after NATS was gone, not only those already buffered.
    for sub in &mut subs {
        sub.set_timeout(Duration::from_secs(2));
    }
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(1) {
        for (n, sub) in subs.iter_mut().enumerate() {
            assert!(
                sub.next_comment().is_some(),
                "node {n}: no heartbeat {:?} into the outage",
                outage.elapsed()
            );
        }
    }
    for sub in &mut subs {
        sub.set_timeout(TIMEOUT);
    }

    nats.restart();
    // Client reconnects back off: more than the usual deadline. A publishes
    // as soon as it is back, B perhaps still reconnecting: B catches up.
    wait_readyz(&nodes[0], 200, Duration::from_secs(15));
    let mut after: Vec<Sent> = (0..3)
        .map(|i| publish_sent(nodes[0].addr(), "out.1", None, &format!("early {i}")))
        .collect();
    for s in &nodes {
        wait_readyz(s, 200, Duration::from_secs(15));
        assert_eq!(
            s.metric_until("ringcast_cluster_connected", |v| v == 1.0),
            1.0
        );
        let reconnects = s.metric_until("ringcast_cluster_reconnects_total", |v| v >= 1.0);
        assert!(reconnects >= 1.0, "reconnects_total {reconnects}");
    }
    after.extend(round("after"));
    assert!(after[0].id > before.last().unwrap().id);
    let marker = publish_sent(nodes[0].addr(), "out.end", None, "marker");
    let mut want = expected(&after, &["out.>"]);
    want.push((marker.id, String::new(), "marker".to_owned()));
    for (n, sub) in subs.iter_mut().enumerate() {
        assert_eq!(
            received(&sub.take(want.len())),
            want,
            "node {n}: the rest once, in order, then the marker"
        );
    }
}

/// A retry with the same Idempotency-Key (single event and ndjson batch)
/// answers the same id(s) and is delivered once; the same body under
/// another key is a new event.
#[test]
fn idempotent_retries_are_acknowledged_again_and_delivered_once() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let nodes = [node(&nats, ""), node(&nats, "")];
    let a = nodes[0].addr();
    let mut subs: Vec<Sse> = nodes
        .iter()
        .map(|s| {
            let sub = Sse::open(s.addr(), "topic=idem.%3E");
            wait_subscribers(s, 1);
            sub
        })
        .collect();
    let single = |key: &str| {
        let r = post_with(
            a,
            "/publish?topic=idem.one",
            "text/plain",
            &[("Idempotency-Key", key)],
            b"once",
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["id"].as_str().unwrap().parse::<u64>().unwrap()
    };
    let id = single("single-1");
    assert_eq!(single("single-1"), id, "a retry gets the same id");
    let other = single("single-2");
    assert!(other > id, "another key is another event");
    assert_eq!(single("single-1"), id, "still the same id");

    let body = ndjson(&[
        ("idem.batch", Some("b"), "first"),
        ("idem.batch", Some("b"), "second"),
    ]);
    let batch = || {
        post_with(
            a,
            "/publish",
            "application/x-ndjson",
            &[("Idempotency-Key", "batch-1")],
            body.as_bytes(),
        )
        .batch_ids()
    };
    let ids = batch();
    assert_eq!(ids.len(), 2);
    assert_eq!(batch(), ids, "a retried batch gets the same ids");

    let marker = publish(a, "idem.one", None, "marker");
    let want = vec![
        (id, String::new(), "once".to_owned()),
        (other, String::new(), "once".to_owned()),
        (ids[0], "b".to_owned(), "first".to_owned()),
        (ids[1], "b".to_owned(), "second".to_owned()),
        (marker, String::new(), "marker".to_owned()),
    ];
    for (n, sub) in subs.iter_mut().enumerate() {
        assert_eq!(
            received(&sub.take(want.len())),
            want,
            "node {n}: each event once, before the marker"
        );
    }
}

/// Without `cluster.nats_url` ringcast is a single node: ready at once,
/// publishing and delivering with no nats-server anywhere.
#[test]
fn single_node_mode_needs_no_nats() {
    let s = Server::start_with("", &["--workers", "1"], &[]);
    assert_eq!(get(s.addr(), "/readyz").status, 200);
    let mut sub = Sse::open(s.addr(), "topic=solo");
    wait_subscribers(&s, 1);
    let id = publish(s.addr(), "solo", None, "alone");
    let ev = sub.next_event().unwrap();
    assert_eq!((ev.id_u64(), ev.data.as_str()), (id, "alone"));
}

/// A bad `[cluster]` setting is a configuration error: exit status 2 naming
/// the key, from `--check-config` and from a start alike, before any
/// connection is tried (nothing listens on the URL's port).
#[test]
fn bad_cluster_config_exits_2_naming_the_key() {
    let check: &[&str] = &["--check-config"];
    let start: &[&str] = &["--listen", "127.0.0.1:0"];
    for args in [check, start] {
        let (status, out) = run_binary(args, &[("RINGCAST_CLUSTER_NATS_URL", "notaurl")]);
        assert_eq!(status.code(), Some(2), "{args:?}: {out}");
        assert!(out.contains("cluster.nats_url"), "{args:?}: {out}");
    }
    let cases = [
        (
            "credentials_file = \"/nonexistent/ringcast.creds\"",
            "cluster.credentials_file",
        ),
        (
            "tls_ca_file = \"/nonexistent/ca.pem\"",
            "cluster.tls_ca_file",
        ),
        (
            "publish_timeout_ms = \"soon\"",
            "cluster.publish_timeout_ms",
        ),
        ("bogus = 1", "cluster.bogus"),
    ];
    for (line, key) in cases {
        let file = write_temp(
            "cluster-bad.toml",
            &format!("[cluster]\nnats_url = \"nats://127.0.0.1:1\"\n{line}\n"),
        );
        let file = file.to_str().unwrap();
        for args in [check, start] {
            let args = [args, &["--config", file]].concat();
            let (status, out) = run_binary(&args, &[]);
            assert_eq!(status.code(), Some(2), "{line} {args:?}: {out}");
            assert!(out.contains(key), "{line} {args:?}: {out}");
        }
        let _ = std::fs::remove_file(file);
    }
}

/// A publish through `addr` retried while the node answers 503 (it has not
/// yet noticed, or not yet recreated, a deleted stream); returns the id
/// once JetStream acknowledged it. A refused publish is never delivered
/// (SPEC §8), so only the acknowledged one counts.
fn publish_retrying(addr: std::net::SocketAddr, topic: &str, data: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = post(
            addr,
            &format!("/publish?topic={topic}"),
            "text/plain",
            data.as_bytes(),
        );
        if r.status == 200 {
            return r.json()["id"].as_str().unwrap().parse().unwrap();
        }
        r.assert_error(503);
        assert!(
            Instant::now() < deadline,
            "publish still refused: {}",
            String::from_utf8_lossy(&r.body)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stream is deleted under a running node (which recreates it): a new
/// epoch. The connected subscriber gets one `resync` (`epoch`), then the
/// new stream's events with ids from 1 again; a client resuming with an id
/// from the old stream, beyond the new one's end, gets `resync` (`epoch`)
/// too.
#[test]
fn stream_deleted_and_recreated_is_a_new_epoch() {
    if !nats::available() {
        return;
    }
    let nats = Nats::start();
    let s = node_with(&nats, "", "stream = \"EPOCHS\"");
    let mut sub = Sse::open(s.addr(), "topic=ep");
    wait_subscribers(&s, 1);
    let before: Vec<Sent> = (0..3)
        .map(|i| publish_sent(s.addr(), "ep", None, &format!("old {i}")))
        .collect();
    assert_eq!(before.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(received(&sub.take(3)), expected(&before, &["ep"]));

    nats.delete_stream("EPOCHS");
    // The node notices within its check interval, recreates the stream and
    // is ready again; publishes in between may be refused with 503.
    wait_readyz(&s, 200, Duration::from_secs(15));
    let first = publish_retrying(s.addr(), "ep", "new 0");
    assert_eq!(first, 1, "the recreated stream counts from 1");
    assert_eq!(resync_reason(&sub.next_event().unwrap()), "epoch");
    let ev = sub.next_event().expect("the new stream's first event");
    assert_eq!((ev.id_u64(), ev.data.as_str()), (1, "new 0"));

    // The new stream holds one event: id 3 is beyond its end.
    let mut resumed = Sse::open_with(s.addr(), "topic=ep", &[("Last-Event-ID", "3")]);
    assert_eq!(resync_reason(&resumed.next_event().unwrap()), "epoch");
    wait_subscribers(&s, 2);
    let live = publish(s.addr(), "ep", None, "new 1");
    assert_eq!(live, 2);
    for sub in [&mut sub, &mut resumed] {
        let ev = sub.next_event().expect("the live event");
        assert_eq!((ev.id_u64(), ev.data.as_str()), (2, "new 1"));
    }
}
