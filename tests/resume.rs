//! Delivery guarantees: Last-Event-ID resume with no gap and no duplicate,
//! resync when continuity cannot be proven, snapshots, history bounds.
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

#[test]
fn resume_gets_exactly_the_missed_events_then_live() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=r.a");
    let first: Vec<u64> = (0..5)
        .map(|i| publish(s.addr(), "r.a", None, &format!("a{i}")))
        .collect();
    let seen = sub.take(5);
    assert_eq!(seen.iter().map(Event::id_u64).collect::<Vec<_>>(), first);
    drop(sub);
    let missed: Vec<u64> = (0..7)
        .map(|i| publish(s.addr(), "r.a", None, &format!("b{i}")))
        .collect();
    publish(s.addr(), "r.other", None, "not mine");
    let last = seen.last().unwrap().id.clone();
    let mut sub = Sse::open_with(s.addr(), "topic=r.a", &[("Last-Event-ID", &last)]);
    let replay = sub.take(7);
    assert_eq!(replay.iter().map(Event::id_u64).collect::<Vec<_>>(), missed);
    assert_eq!(replay[0].data, "b0");
    let live = publish(s.addr(), "r.a", None, "live");
    assert_eq!(sub.next_event().unwrap().id_u64(), live);
    // The query parameter works the same, and an empty header means none.
    let mut q = Sse::open_with(
        s.addr(),
        &format!("topic=r.a&lastEventId={}", missed[5]),
        &[("Last-Event-ID", "")],
    );
    assert_eq!(
        q.take(2).iter().map(Event::id_u64).collect::<Vec<_>>(),
        vec![missed[6], live]
    );
    assert_eq!(s.metric("ringcast_resyncs_total"), 0.0);
}

#[test]
fn many_reconnects_under_concurrent_publishing_lose_and_repeat_nothing() {
    let s = Server::start("[history]\nper_topic = 4096\n");
    let addr = s.addr();
    let total = 3000;
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    // Subscribe once before publishing starts, so "everything" is defined.
    let mut sub = Sse::open(addr, "topic=c.%3E&topic=c.x.1");
    let publisher = {
        let acked = acked.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut p = Publisher::new(addr);
            for i in 0..total {
                let topic = ["c.x.1", "c.y.2", "c.z"][i % 3];
                let id = p.publish(topic, &format!("{i}"));
                acked.lock().unwrap().push(id);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut got: Vec<Event> = Vec::new();
    let mut reconnects = 0;
    let mut rng = 12345u64;
    while got.len() < total {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = 1 + (rng >> 33) as usize % 150;
        for _ in 0..n.min(total - got.len()) {
            got.push(sub.next_event().expect("stream ended early"));
        }
        if got.len() < total {
            let last = got.last().unwrap().id.clone();
            sub = Sse::open_with(addr, "topic=c.%3E&topic=c.x.1", &[("Last-Event-ID", &last)]);
            reconnects += 1;
        }
    }
    publisher.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert!(reconnects >= 10, "only {reconnects} reconnects");
    assert!(
        got.iter().all(|e| e.event != "resync"),
        "no resync expected"
    );
    let ids: Vec<u64> = got.iter().map(Event::id_u64).collect();
    assert_eq!(
        ids,
        *acked.lock().unwrap(),
        "exactly the published sequence"
    );
    let data: Vec<String> = got.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, (0..total).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn resume_across_topics_and_wildcards() {
    let s = Server::start("");
    let sub = Sse::open(s.addr(), "topic=w.%2A.x&topic=w.q.%3E&topic=w.exact");
    let start = publish(s.addr(), "w.exact", None, "0");
    drop(sub);
    let mut want = Vec::new();
    for (t, matches) in [
        ("w.a.x", true),
        ("w.q.r.s", true),
        ("w.a.y", false),
        ("w.exact", true),
        ("w.b.x", true),
        ("z", false),
    ] {
        let id = publish(s.addr(), t, None, t);
        if matches {
            want.push(id);
        }
    }
    let mut sub = Sse::open_with(
        s.addr(),
        "topic=w.%2A.x&topic=w.q.%3E&topic=w.exact",
        &[("Last-Event-ID", &start.to_string())],
    );
    assert_eq!(
        sub.take(want.len())
            .iter()
            .map(Event::id_u64)
            .collect::<Vec<_>>(),
        want
    );
}

#[test]
fn resync_for_unknown_invalid_expired_ids() {
    let s = Server::start("[history]\nper_topic = 4\n");
    let first = publish(s.addr(), "e", None, "first");
    let mut later = 0;
    for i in 0..10 {
        later = publish(s.addr(), "e", None, &format!("{i}"));
    }
    let cases = [
        ((first).to_string(), "history_expired"),
        // An hour ahead: ids follow the wall clock, so an id a mere second
        // ahead becomes a valid position on a slow machine.
        ((later + 3_600_000_000).to_string(), "unknown_id"),
        ("not-a-number".to_string(), "invalid_id"),
        ("5".to_string(), "epoch"),
    ];
    for (i, (id, reason)) in cases.iter().enumerate() {
        let mut sub = Sse::open_with(s.addr(), "topic=e", &[("Last-Event-ID", id)]);
        assert_eq!(
            resync_reason(&sub.next_event().unwrap()),
            *reason,
            "id {id}"
        );
        // Then it continues as a fresh subscription: live events only.
        let live = publish(s.addr(), "e", None, "live");
        assert_eq!(sub.next_event().unwrap().id_u64(), live);
        assert_eq!(s.metric("ringcast_resyncs_total"), (i + 1) as f64);
    }
    // Resync with snapshot=1 sends the last value after the resync frame.
    let last = publish(s.addr(), "e", None, "last value");
    let mut sub = Sse::open_with(
        s.addr(),
        "topic=e&snapshot=1",
        &[("Last-Event-ID", &first.to_string())],
    );
    assert_eq!(resync_reason(&sub.next_event().unwrap()), "history_expired");
    let snap = sub.next_event().unwrap();
    assert_eq!((snap.id_u64(), snap.data.as_str()), (last, "last value"));
}

#[test]
fn ids_from_before_a_restart_get_a_resync() {
    let s1 = Server::start("");
    let old = publish(s1.addr(), "p", None, "before restart");
    drop(s1);
    let s2 = Server::start("");
    let new = publish(s2.addr(), "p", None, "after restart");
    assert!(new > old, "ids keep increasing across restarts");
    let mut sub = Sse::open_with(s2.addr(), "topic=p", &[("Last-Event-ID", &old.to_string())]);
    assert_eq!(resync_reason(&sub.next_event().unwrap()), "epoch");
}

#[test]
fn snapshot_sends_last_values_of_matching_topics_oldest_first() {
    let s = Server::start("");
    let mut last = std::collections::HashMap::new();
    for i in 0..30 {
        let t = ["s.a.x", "s.b.x", "s.c.y", "s.d.x", "other.x"][i % 5];
        last.insert(t, publish(s.addr(), t, None, &format!("{t}:{i}")));
    }
    let mut want: Vec<u64> = ["s.a.x", "s.b.x", "s.d.x"]
        .iter()
        .map(|t| last[t])
        .collect();
    want.sort();
    let mut sub = Sse::open(s.addr(), "topic=s.%2A.x&snapshot=1");
    let snap = sub.take(3);
    assert_eq!(snap.iter().map(Event::id_u64).collect::<Vec<_>>(), want);
    assert!(snap
        .iter()
        .all(|e| e.data.ends_with(":25") || e.data.ends_with(":26") || e.data.ends_with(":28")));
    let live = publish(s.addr(), "s.a.x", None, "live");
    assert_eq!(
        sub.next_event().unwrap().id_u64(),
        live,
        "live follows with nothing repeated"
    );
}

#[test]
fn snapshot_joins_live_publishing_without_gap_or_duplicate() {
    let s = Server::start("");
    let addr = s.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let publisher = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut p = Publisher::new(addr);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = p.publish("j", &i.to_string());
                acked.lock().unwrap().push(id);
                i += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 200 {
        std::thread::yield_now();
    }
    let mut sub = Sse::open(addr, "topic=j&snapshot=1");
    let got: Vec<u64> = sub.take(300).iter().map(Event::id_u64).collect();
    stop.store(true, Ordering::SeqCst);
    publisher.join().unwrap();
    let all = acked.lock().unwrap().clone();
    let start = all
        .iter()
        .position(|&id| id == got[0])
        .expect("snapshot is a published event");
    assert_eq!(
        got,
        all[start..start + 300],
        "snapshot then every later event, once"
    );
}

#[test]
fn history_bytes_and_age_bounds() {
    let s = Server::start("[history]\nmax_bytes = 20000\nmax_age_ms = 400\n");
    let before = publish(s.addr(), "h.z", None, "a client's last id");
    publish(s.addr(), "h.a", None, &"x".repeat(1000));
    for _ in 0..40 {
        publish(s.addr(), "h.b", None, &"y".repeat(1000));
    }
    let bytes = s.metric("ringcast_history_bytes");
    assert!(bytes > 0.0 && bytes <= 20000.0, "history_bytes {bytes}");
    // The h.a event after `before` was evicted to make room for h.b.
    let mut sub = Sse::open_with(
        s.addr(),
        "topic=h.a",
        &[("Last-Event-ID", &before.to_string())],
    );
    assert_eq!(
        resync_reason(&sub.next_event().unwrap()),
        "history_expired",
        "evicted by bytes"
    );

    let young = publish(s.addr(), "h.c", None, "young");
    let mut ok = Sse::open_with(
        s.addr(),
        "topic=h.c",
        &[("Last-Event-ID", &(young - 1).to_string())],
    );
    assert_eq!(
        ok.next_event().unwrap().id_u64(),
        young,
        "within age: replayed"
    );
    // Age is the subject here, so time has to pass.
    std::thread::sleep(Duration::from_millis(600));
    publish(s.addr(), "h.d", None, "triggers eviction");
    let mut old = Sse::open_with(
        s.addr(),
        "topic=h.c",
        &[("Last-Event-ID", &(young - 1).to_string())],
    );
    assert_eq!(
        resync_reason(&old.next_event().unwrap()),
        "history_expired",
        "evicted by age"
    );
}
