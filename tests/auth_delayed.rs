//! Delayed grants (SPEC §5): a pattern covered only by `subscribe_delayed`
//! sees the real-time stream shifted by `auth.delay_ms` — the same ids and
//! frames, none early — including its start, snapshot, resume and the
//! resync when the history byte cap took what it had not yet been sent.
//! Each test lets the delay pass once or twice: time is the subject.
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::auth::*;
use support::*;

const DELAY: Duration = Duration::from_millis(1500);
/// How late a delayed event may come on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(1000);

/// A server with a 1.5 s delay and a history age far below it, so that
/// every delayed read also checks that history keeps events for
/// `delay_ms + history.max_age_ms`.
fn server(history: &str) -> Server {
    Server::start(&hs256_config(&format!(
        "delay_ms = {}\n[history]\nmax_age_ms = 500\n{history}",
        DELAY.as_millis()
    )))
}

struct Tokens {
    real_time: String,
    delayed: String,
    writer: String,
}

fn tokens(pattern: &str) -> Tokens {
    Tokens {
        real_time: hs256(&claims(json!({"subscribe": [pattern]}))),
        delayed: hs256(&claims(json!({"subscribe_delayed": [pattern]}))),
        writer: hs256(&claims(json!({"publish": [pattern]}))),
    }
}

/// The next event and when it was read.
fn next_timed(sub: &mut Sse) -> (Event, Instant) {
    let ev = sub.next_event().expect("the stream ended or went quiet");
    (ev, Instant::now())
}

/// Asserts that an event published at `sent` arrived at `at` no earlier
/// than the delay, and not much later.
fn assert_delayed(what: &str, sent: Instant, at: Instant) {
    let lag = at - sent;
    assert!(
        lag >= DELAY,
        "{what} arrived {lag:?} after its publish, before the delay"
    );
    assert!(
        lag <= DELAY + SLACK,
        "{what} arrived {lag:?} after its publish"
    );
}

#[test]
fn a_delayed_subscriber_gets_the_real_time_stream_shifted_by_the_delay() {
    let s = server("");
    let a = s.addr();
    let t = tokens("d.>");
    let mut rt = subscribe(a, "topic=d.%3E", &t.real_time);
    wait_subscribers(&s, 1);
    let mut dl = subscribe(a, "topic=d.%3E", &t.delayed);
    let mut sent = Vec::new();
    for i in 0..6 {
        if i > 0 {
            // Spread the publishes, so each release is timed on its own.
            std::thread::sleep(Duration::from_millis(100));
        }
        sent.push(Instant::now());
        publish_as(
            a,
            &t.writer,
            ["d.x", "d.y"][i % 2],
            &format!("e{i}\nline two"),
        );
    }
    let live = rt.take(6);
    assert!(
        sent[5].elapsed() < DELAY,
        "the real-time stream is not delayed"
    );
    for (i, want) in live.iter().enumerate() {
        let (got, at) = next_timed(&mut dl);
        assert_eq!(&got, want, "the same id and data, in id order");
        assert_delayed(&format!("event {i}"), sent[i], at);
    }
    assert_eq!(s.metric("ringcast_resyncs_total"), 0.0);
}

#[test]
fn a_fresh_delayed_subscription_starts_one_delay_ago_with_its_snapshot() {
    let s = server("");
    let a = s.addr();
    let t = tokens("s.>");
    publish_as(a, &t.writer, "s.a", "o1");
    let o2 = publish_as(a, &t.writer, "s.a", "o2");
    // o1 and o2 must be older than the delay when the subscribers come.
    std::thread::sleep(DELAY + Duration::from_millis(100));
    let r1_sent = Instant::now();
    let r1 = publish_as(a, &t.writer, "s.a", "r1");
    let r2_sent = Instant::now();
    let r2 = publish_as(a, &t.writer, "s.b", "r2");

    let plain = subscribe(a, "topic=s.%3E", &t.delayed);
    let mut snap = subscribe(a, "topic=s.%3E&snapshot=1", &t.delayed);
    let mut rt_snap = subscribe(a, "topic=s.%3E&snapshot=1", &t.real_time);
    // Real time: the newest value of each topic.
    assert_eq!(
        rt_snap
            .take(2)
            .iter()
            .map(Event::id_u64)
            .collect::<Vec<_>>(),
        [r1, r2]
    );
    // Delayed: the newest value that is at least the delay old (s.b has
    // none), at once, before anything younger comes of age.
    let (ev, at) = next_timed(&mut snap);
    assert_eq!((ev.id_u64(), ev.data.as_str()), (o2, "o2"));
    assert!(at < r1_sent + DELAY, "the snapshot waits for nothing");
    // Then both streams get the window's events as they come of age;
    // o1 and o2 were before the window. One reader per stream, so that
    // each arrival is timed when it happens.
    let readers: Vec<_> = [snap, plain]
        .into_iter()
        .map(|mut sub| std::thread::spawn(move || [next_timed(&mut sub), next_timed(&mut sub)]))
        .collect();
    for reader in readers {
        let got = reader.join().unwrap();
        for ((ev, at), (id, sent)) in got.into_iter().zip([(r1, r1_sent), (r2, r2_sent)]) {
            assert_eq!(ev.id_u64(), id, "{ev:?}");
            assert_delayed(&ev.data, sent, at);
        }
    }
}

#[test]
fn delayed_resume_replays_the_released_events_then_stays_delayed() {
    let s = server("");
    let a = s.addr();
    let t = tokens("r.>");
    let sent = Instant::now();
    let early: Vec<u64> = (1..=3)
        .map(|i| publish_as(a, &t.writer, "r.x", &format!("e{i}")))
        .collect();
    // Connected after they were published, but less than the delay ago:
    // they still reach it as they come of age.
    let mut dl = subscribe(a, "topic=r.x", &t.delayed);
    let (first, at) = next_timed(&mut dl);
    assert_eq!(first.id_u64(), early[0]);
    assert_delayed("e1", sent, at);
    drop(dl);

    let e4_sent = Instant::now();
    let e4 = publish_as(a, &t.writer, "r.x", "e4");
    let mut dl = Sse::open_with(
        a,
        "topic=r.x",
        &[
            ("Authorization", &bearer(&t.delayed)),
            ("Last-Event-ID", &first.id),
        ],
    );
    assert_eq!(dl.status, 200, "{}", dl.head);
    let replay = dl.take(2);
    assert_eq!(
        replay.iter().map(Event::id_u64).collect::<Vec<_>>(),
        early[1..],
        "the released events after the id"
    );
    assert!(
        e4_sent.elapsed() < DELAY,
        "released events are replayed at once"
    );
    let (ev, at) = next_timed(&mut dl);
    assert_eq!(ev.id_u64(), e4, "then the delayed stream, no gap");
    assert_delayed("e4", e4_sent, at);
    assert_eq!(s.metric("ringcast_resyncs_total"), 0.0);
}

#[test]
fn a_delayed_subscriber_gets_a_resync_when_the_byte_cap_evicted_its_events() {
    let s = server("max_bytes = 20000\n");
    let a = s.addr();
    let t = tokens("h.>");
    let mut rt = subscribe(a, "topic=h.%3E", &t.real_time);
    wait_subscribers(&s, 1);
    let mut dl = subscribe(a, "topic=h.%3E", &t.delayed);
    let pad = "z".repeat(1000);
    let mut sent = Vec::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        sent.push(Instant::now());
        ids.push(publish_as(a, &t.writer, "h.a", &format!("{i:02}{pad}")));
    }
    assert_eq!(
        rt.take(40).iter().map(Event::id_u64).collect::<Vec<_>>(),
        ids,
        "real time loses nothing"
    );

    let (ev, _) = next_timed(&mut dl);
    assert_eq!(ev.event, "resync", "never a silent gap: id {}", ev.id);
    let reason: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(reason["reason"], "history_expired");
    // Then what history still holds, still delayed, through the last one.
    let mut after = Vec::new();
    loop {
        let (ev, at) = next_timed(&mut dl);
        let i = ids
            .iter()
            .position(|&id| id == ev.id_u64())
            .unwrap_or_else(|| panic!("not a published event: {ev:?}"));
        assert_delayed(&format!("event {i}"), sent[i], at);
        after.push(i);
        if i == ids.len() - 1 {
            break;
        }
    }
    assert!(after[0] > 0, "something was evicted, or no resync was due");
    assert_eq!(
        after,
        (after[0]..ids.len()).collect::<Vec<_>>(),
        "the retained tail, in order"
    );
    assert!(s.metric("ringcast_resyncs_total") >= 1.0);
}
