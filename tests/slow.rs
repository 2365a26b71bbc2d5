//! Slow subscribers: one that stops reading is disconnected (or conflated)
//! without slowing the others, and the server's memory stays bounded.
mod support;

use support::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn stalled_reader_is_disconnected_fast_reader_gets_everything_memory_bounded() {
    // Bounds for this test: 256 KiB per subscriber, 4 MiB of history, 4 MiB
    // per worker ring (two workers).
    let s = Server::start(
        "[server]\ningest_ring_bytes = 4194304\n\
         [sse]\nmax_pending_bytes = 262144\nslow_grace_ms = 1200\n\
         [history]\nmax_bytes = 4194304\n",
    );
    let stalled = Sse::open(s.addr(), "topic=big");
    let mut fast = Sse::open(s.addr(), "topic=big");
    let rss_before = rss_kib(s.pid());
    let payload = "p".repeat(2000);
    // ~80 MB published, far beyond every buffer on the way. The stalled
    // reader holds its worker back for sse.slow_grace_ms; a publisher on
    // the other worker is answered meanwhile, and without their byte bound
    // the rings would keep the ~40 MB it publishes in that time.
    let n = 40_000;
    let reader = std::thread::spawn(move || {
        let got = fast.take(n);
        got.iter().map(Event::id_u64).collect::<Vec<_>>()
    });
    let mut p = Publisher::new(s.addr());
    let ids: Vec<u64> = (0..n).map(|_| p.publish("big", &payload)).collect();
    let got = reader.join().unwrap();
    assert_eq!(got, ids, "the fast subscriber got everything, in order");
    assert_eq!(
        s.metric_until("ringcast_slow_disconnects_total", |v| v >= 1.0),
        1.0
    );
    let rss_after = rss_kib(s.pid());
    println!("RSS grew from {rss_before} KiB to {rss_after} KiB");
    // Documented bound (docs/capacity.md, Memory bounds): history.max_bytes + every
    // ring's ingest_ring_bytes + every queue's max_pending_bytes +
    // per-connection state; allow 16 MiB for allocator slack and stacks.
    let bound_kib = (4 * 1024) + 2 * (4 * 1024) + 2 * 256 + 16 * 1024;
    assert!(
        rss_after.saturating_sub(rss_before) < bound_kib,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(s.metric("ringcast_history_bytes") <= 4194304.0);
    drop(stalled);
}

#[test]
fn conflate_keeps_the_newest_value_per_topic_and_nothing_stale_after_it() {
    let s = Server::start("[sse]\nslow_policy = \"conflate\"\nmax_pending_bytes = 65536\n");
    let mut stalled = Sse::open(s.addr(), "topic=cf.%3E");
    let topics = ["cf.a", "cf.b", "cf.c", "cf.d"];
    let payload = "v".repeat(1000);
    let mut p = Publisher::new(s.addr());
    let mut published = 0;
    // Publish until the server has conflated (the kernel buffers in between
    // absorb several MB first); bounded.
    while s.metric("ringcast_conflated_events_total") == 0.0 {
        for i in 0..2000 {
            p.publish(topics[i % 4], &payload);
        }
        published += 2000;
        assert!(published < 200_000, "never conflated");
    }
    let finals: Vec<u64> = topics
        .iter()
        .map(|t| p.publish(t, &format!("final {t}")))
        .collect();
    let mut got: Vec<Event> = Vec::new();
    while got.iter().filter(|e| e.data.starts_with("final")).count() < 4 {
        got.push(
            stalled
                .next_event()
                .expect("stream ended before the final values"),
        );
    }
    assert!(got.len() < published + 4, "some events were conflated away");
    let ids: Vec<u64> = got.iter().map(Event::id_u64).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "order kept");
    assert_eq!(
        &ids[ids.len() - 4..],
        &finals[..],
        "the newest value of each topic comes last"
    );
    assert_eq!(s.metric("ringcast_slow_disconnects_total"), 0.0);
}

#[test]
fn global_queue_budget_closes_the_largest_queue_first() {
    // One worker so both subscribers share one budget of 2 MiB; each queue
    // alone could hold 8 MiB, so only the global budget can act.
    let s = Server::start_with(
        "[sse]\nmax_pending_bytes = 8388608\nmax_queued_bytes = 2097152\n",
        &["--workers", "1"],
        &[],
    );
    let big = Sse::open(s.addr(), "topic=g.big");
    let mut small = Sse::open(s.addr(), "topic=g.small");
    let mut p = Publisher::new(s.addr());
    let payload = "b".repeat(8000);
    let mut small_ids = Vec::new();
    let mut rounds = 0;
    while s.metric("ringcast_slow_disconnects_total") == 0.0 {
        for i in 0..500 {
            p.publish("g.big", &payload);
            if i % 10 == 0 {
                small_ids.push(p.publish("g.small", "s"));
            }
        }
        rounds += 1;
        assert!(rounds < 100, "the budget never acted");
    }
    assert_eq!(s.metric("ringcast_slow_disconnects_total"), 1.0);
    assert!(s.stderr.lock().unwrap().contains("max_queued_bytes"));
    // The small queue survived and lost nothing.
    let got: Vec<u64> = small
        .take(small_ids.len())
        .iter()
        .map(Event::id_u64)
        .collect();
    assert_eq!(got, small_ids);
    drop(big);
}

#[test]
fn a_write_that_stalls_is_closed_after_write_stall_ms() {
    // Queues may hold 64 MiB, so only the stall timer can close it.
    let s = Server::start("[sse]\nwrite_stall_ms = 500\nmax_pending_bytes = 67108864\n");
    let stalled = Sse::open(s.addr(), "topic=st");
    let mut p = Publisher::new(s.addr());
    let payload = "s".repeat(4000);
    let mut sent = 0;
    // Fill the kernel's buffers so a write stays in flight; bounded.
    while s.metric("ringcast_stall_disconnects_total") == 0.0 {
        for _ in 0..500 {
            p.publish("st", &payload);
        }
        sent += 500;
        assert!(sent < 50_000, "the stalled write was never closed");
        if sent >= 5_000 {
            // Enough is queued; now only time can trigger the close.
            let v = s.metric_until("ringcast_stall_disconnects_total", |v| v >= 1.0);
            assert_eq!(v, 1.0, "closed by the stall timer");
        }
    }
    assert_eq!(s.metric("ringcast_slow_disconnects_total"), 0.0);
    drop(stalled);
}
