//! Per-subscriber update rates (SPEC §3 `max_rate=R`, §5 the `max_rate`
//! claim), against the real binary: at most one event per topic every
//! `1/R` s, the newest of a burst within `1/R` of its publication, a quiet
//! topic's next event at once, topics independent, skipped events counted
//! and never a `resync`, a throttled resume that gets each topic's newest
//! event, and a token that caps what its holder asks.
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::auth::{claims, hs256, hs256_config};
use support::*;

/// The next event and how long after `since` it arrived.
fn next_at(sub: &mut Sse, since: Instant) -> (Event, Duration) {
    let ev = sub.next_event().expect("an event");
    (ev, since.elapsed())
}

#[test]
fn a_burst_sends_its_first_event_at_once_and_its_last_when_the_interval_ends() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=r.a&max_rate=2");
    let mut plain = Sse::open(s.addr(), "topic=r.a");
    wait_subscribers(&s, 2);
    let t0 = Instant::now();
    let ids: Vec<u64> = (0..10)
        .map(|i| publish(s.addr(), "r.a", None, &format!("tick {i}")))
        .collect();
    let published = t0.elapsed();
    assert!(
        published < Duration::from_millis(400),
        "the burst took {published:?}"
    );
    let (first, at) = next_at(&mut sub, t0);
    assert_eq!((first.id_u64(), first.data.as_str()), (ids[0], "tick 0"));
    assert!(
        at < Duration::from_millis(300),
        "the first at once, not after {at:?}"
    );
    let (last, at) = next_at(&mut sub, t0);
    assert_eq!(
        (last.id_u64(), last.data.as_str()),
        (ids[9], "tick 9"),
        "the newest, nothing between"
    );
    assert!(
        at >= Duration::from_millis(490) && at < Duration::from_millis(900),
        "released when the 500 ms interval ended, at {at:?}"
    );
    assert_eq!(
        s.metric_until("ringcast_throttled_events_total", |v| v >= 8.0),
        8.0
    );
    assert_eq!(
        s.metric("ringcast_resyncs_total"),
        0.0,
        "skipped events are not a gap"
    );
    // An unthrottled subscriber of the same topic got every one.
    let got: Vec<u64> = plain.take(10).iter().map(Event::id_u64).collect();
    assert_eq!(got, ids);
}

#[test]
fn topics_never_wait_for_each_other_and_a_quiet_topic_sends_at_once() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=q.%3E&max_rate=4");
    wait_subscribers(&s, 1);
    let t0 = Instant::now();
    let a1 = publish(s.addr(), "q.a", None, "a1");
    let a2 = publish(s.addr(), "q.a", None, "a2");
    let b1 = publish(s.addr(), "q.b", None, "b1");
    let (ev, at) = next_at(&mut sub, t0);
    assert_eq!(ev.id_u64(), a1);
    assert!(at < Duration::from_millis(200), "{at:?}");
    let (ev, at) = next_at(&mut sub, t0);
    assert_eq!(ev.id_u64(), b1, "b's first is not held behind a's interval");
    assert!(at < Duration::from_millis(200), "{at:?}");
    let (ev, at) = next_at(&mut sub, t0);
    assert_eq!(ev.id_u64(), a2, "a's held event, after a later event of b");
    assert!(at >= Duration::from_millis(240), "{at:?}");
    // Quiet for more than an interval: the next event goes at once.
    std::thread::sleep(Duration::from_millis(400));
    let t1 = Instant::now();
    let a3 = publish(s.addr(), "q.a", None, "a3");
    let (ev, at) = next_at(&mut sub, t1);
    assert_eq!(ev.id_u64(), a3);
    assert!(
        at < Duration::from_millis(200),
        "a quiet topic's event at once, not after {at:?}"
    );
}

#[test]
fn a_throttled_resume_gets_the_newest_event_of_each_topic() {
    let s = Server::start("");
    let first = publish(s.addr(), "h.a", None, "a0");
    let mut a = Vec::new();
    for i in 1..5 {
        a.push(publish(s.addr(), "h.a", None, &format!("a{i}")));
    }
    let b = publish(s.addr(), "h.b", None, "b0");
    let a_last = publish(s.addr(), "h.a", None, "a5");
    let mut sub = Sse::open_with(
        s.addr(),
        "topic=h.%3E&max_rate=1",
        &[("Last-Event-ID", first.to_string().as_str())],
    );
    let got: Vec<(u64, String)> = sub
        .take(2)
        .into_iter()
        .map(|e| (e.id_u64(), e.data))
        .collect();
    assert_eq!(got, vec![(b, "b0".into()), (a_last, "a5".into())]);
    // The live stream goes on, a's next event held for its interval.
    wait_subscribers(&s, 1);
    let t0 = Instant::now();
    let live = publish(s.addr(), "h.a", None, "live");
    let (ev, at) = next_at(&mut sub, t0);
    assert_eq!(ev.id_u64(), live);
    assert!(
        at >= Duration::from_millis(500),
        "held after the catch-up: {at:?}"
    );
    assert_eq!(s.metric("ringcast_resyncs_total"), 0.0);
}

#[test]
fn a_bad_max_rate_is_400() {
    let s = Server::start("");
    for v in ["0", "2000", "-1", "fast", "1e3"] {
        Sse::refused(s.addr(), &format!("topic=a&max_rate={v}"), &[])
            .assert_error_code(400, "bad_max_rate");
    }
}

/// A token's `max_rate` caps the subscription: the smaller of the asked
/// and the granted rate, the granted one when none is asked.
#[test]
fn the_token_claim_caps_the_rate() {
    let s = Server::start(&hs256_config(""));
    let free = hs256(&claims(
        json!({"subscribe": ["f.>"], "publish": ["f.>"], "max_rate": 2}),
    ));
    for (query, interval_ms) in [("", 500), ("&max_rate=10", 500), ("&max_rate=1", 1000)] {
        let mut sub = Sse::open_with(
            s.addr(),
            &format!("topic=f.%3E{query}"),
            &[("Authorization", &format!("Bearer {free}"))],
        );
        assert_eq!(sub.status, 200);
        wait_subscribers(&s, 1);
        let t0 = Instant::now();
        let mut p = Publisher::new(s.addr());
        let ids: Vec<u64> = (0..3)
            .map(|i| {
                let req = format!(
                    "POST /publish?topic=f.x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {free}\r\nContent-Length: 1\r\n\r\n{i}"
                );
                p.send_raw(req.as_bytes());
                p.recv_id()
            })
            .collect();
        let (ev, _) = next_at(&mut sub, t0);
        assert_eq!(ev.id_u64(), ids[0]);
        let (ev, at) = next_at(&mut sub, t0);
        assert_eq!(ev.id_u64(), ids[2], "{query}: the newest");
        let want = Duration::from_millis(interval_ms);
        assert!(
            at >= want - Duration::from_millis(10) && at < want + Duration::from_millis(400),
            "{query}: released after {at:?}, the interval being {want:?}"
        );
        drop(sub);
        eventually_no_subscribers(&s);
    }
}

/// With a snapshot, the `conflate` policy and the write-coalescing window:
/// the snapshot counts as sent, so the first live burst waits out the
/// interval from the subscription and only its newest event comes.
#[test]
fn with_a_snapshot_conflation_and_the_write_window() {
    let s = Server::start("[sse]\nwrite_delay_ms = 20\nslow_policy = \"conflate\"\n");
    publish(s.addr(), "n.a", None, "a old");
    let a_last = publish(s.addr(), "n.a", None, "a last");
    let b_last = publish(s.addr(), "n.b", None, "b last");
    let t_sub = Instant::now();
    let mut sub = Sse::open(s.addr(), "topic=n.%3E&snapshot=1&max_rate=2");
    let snap: Vec<u64> = sub.take(2).iter().map(Event::id_u64).collect();
    assert_eq!(snap, vec![a_last, b_last], "the last value of each topic");
    wait_subscribers(&s, 1);
    let burst: Vec<String> = (0..5).map(|i| format!("live {i}")).collect();
    let ids = publish_burst(s.addr(), "n.a", &burst, &[]);
    let (ev, at) = next_at(&mut sub, t_sub);
    assert_eq!((ev.id_u64(), ev.data.as_str()), (ids[4], "live 4"));
    assert!(
        at >= Duration::from_millis(500),
        "the snapshot counted as sent: released {at:?} after subscribing"
    );
    assert!(s.metric_until("ringcast_throttled_events_total", |v| v >= 4.0) >= 4.0);
    assert_eq!(s.metric("ringcast_resyncs_total"), 0.0);
}

/// A delayed grant with a `max_rate` claim (the free tier): each event
/// `auth.delay_ms` late, and per topic at most one every `1/R`.
#[test]
fn a_delayed_grant_is_throttled_after_its_delay() {
    let s = Server::start(&hs256_config("delay_ms = 1000\n"));
    let free = hs256(&claims(
        json!({"subscribe_delayed": ["d.>"], "max_rate": 2}),
    ));
    let mut sub = Sse::open_with(
        s.addr(),
        "topic=d.%3E",
        &[("Authorization", &format!("Bearer {free}"))],
    );
    assert_eq!(sub.status, 200);
    wait_subscribers(&s, 1);
    let writer = hs256(&claims(json!({"publish": ["d.>"]})));
    let t0 = Instant::now();
    let burst: Vec<String> = (0..5).map(|i| format!("{i}")).collect();
    let ids = publish_burst(
        s.addr(),
        "d.a",
        &burst,
        &[("Authorization", &format!("Bearer {writer}"))],
    );
    let (first, at) = next_at(&mut sub, t0);
    assert_eq!(first.id_u64(), ids[0]);
    assert!(at >= Duration::from_millis(1000), "delayed: {at:?}");
    let (last, at) = next_at(&mut sub, t0);
    assert_eq!(last.id_u64(), ids[4], "the newest, nothing between");
    assert!(
        at >= Duration::from_millis(1500),
        "the delay, then the interval: {at:?}"
    );
}

/// Cluster mode: a subscriber on one node, a burst published on another,
/// the first and the newest with the ids JetStream gave them.
#[test]
fn in_cluster_mode_across_nodes() {
    if !support::nats::available() {
        return;
    }
    let nats = support::nats::Nats::start();
    let (a, b) = (
        support::nats::node(&nats, ""),
        support::nats::node(&nats, ""),
    );
    let mut sub = Sse::open(b.addr(), "topic=c.x&max_rate=2");
    wait_subscribers(&b, 1);
    let t0 = Instant::now();
    let burst: Vec<String> = (0..5).map(|i| format!("{i}")).collect();
    let ids = publish_burst(a.addr(), "c.x", &burst, &[]);
    let (first, _) = next_at(&mut sub, t0);
    assert_eq!(first.id_u64(), ids[0]);
    let (last, at) = next_at(&mut sub, t0);
    assert_eq!(last.id_u64(), ids[4], "the newest, nothing between");
    assert!(
        at >= Duration::from_millis(500),
        "after the interval: {at:?}"
    );
    assert_eq!(b.metric("ringcast_resyncs_total"), 0.0);
}

fn eventually_no_subscribers(s: &Server) {
    let v = s.metric_until_sum("ringcast_subscribers_active{", |v| v == 0.0);
    assert_eq!(v, 0.0);
}
