use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::config::Config;
use crate::worker::queued::Queued;

/// The slow grace, in ticks, of the table-driven tests.
const GRACE: u64 = 3;

/// An event whose frame is `len` bytes.
fn event(id: u64, topic: &str, len: usize) -> Event {
    Event {
        id,
        topic: Arc::from(topic),
        frame: Bytes::from(vec![b'x'; len]),
        born_ns: crate::event::now_ns(),
    }
}

/// An event whose 10-byte frame names its id.
fn ten(id: u64, topic: &str) -> Event {
    Event {
        frame: Bytes::from(format!("{id:>9}\n")),
        ..event(id, topic, 0)
    }
}

fn ids(c: &Conn) -> Vec<u64> {
    c.queue_snapshot()
        .iter()
        .map(|q| {
            std::str::from_utf8(&q.frame)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn enqueue_outcomes() {
    use Enqueued::{Backlogged, Closed, Duplicate, Slow, Yes};
    use SlowPolicy::{Conflate, Disconnect};
    const G: u64 = GRACE;
    // Frames are 10 bytes. `before`: queued at tick 0 (an event that
    // crosses the bound starts the slow clock there); `at`: the tick of
    // the offer; `after`: the ids queued afterwards; `confl.`: what
    // metrics.conflated counted.
    type Ev = (u64, &'static str);
    type Case = (
        &'static str,
        SlowPolicy,
        usize,
        &'static [Ev],
        bool,
        u64,
        Ev,
        Enqueued,
        &'static [u64],
        u64,
    );
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // name                                          policy      max before                                               killed at     offer     want        after             confl.
        ("fits",                                         Disconnect, 35, &[(1, "a"), (2, "b")],                               false, 0,     (3, "c"), Yes,        &[1, 2, 3],       0),
        ("exactly at the bound fits",                    Disconnect, 40, &[(1, "a"), (2, "b"), (3, "c")],                     false, 0,     (4, "d"), Yes,        &[1, 2, 3, 4],    0),
        ("same id is a duplicate",                       Disconnect, 35, &[(1, "a"), (2, "b")],                               false, 0,     (2, "b"), Duplicate,  &[1, 2],          0),
        ("older id is a duplicate",                      Disconnect, 35, &[(1, "a"), (5, "b")],                               false, 0,     (3, "c"), Duplicate,  &[1, 5],          0),
        ("killed connection",                            Disconnect, 35, &[(1, "a")],                                         true,  0,     (2, "a"), Closed,     &[],              0),
        ("past the bound: backlogged, not slow",         Disconnect, 35, &[(1, "a"), (2, "b"), (3, "c")],                     false, 0,     (4, "d"), Backlogged, &[1, 2, 3, 4],    0),
        ("over for less than the grace: backlogged",     Disconnect, 25, &[(1, "a"), (2, "b"), (3, "c")],                     false, G - 1, (4, "d"), Backlogged, &[1, 2, 3, 4],    0),
        ("over for the grace: slow, closed",             Disconnect, 25, &[(1, "a"), (2, "b"), (3, "c")],                     false, G,     (4, "d"), Slow,       &[],              0),
        ("conflate: within the grace, nothing dropped",  Conflate,   35, &[(1, "a"), (2, "a"), (3, "a")],                     false, 0,     (4, "a"), Backlogged, &[1, 2, 3, 4],    0),
        ("conflate: newest per topic gets under half",   Conflate,   35, &[(1, "a"), (2, "a"), (3, "a"), (4, "a")],           false, G,     (5, "a"), Yes,        &[5],             4),
        ("conflate: exactly half is under",              Conflate,   41, &[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "a")], false, G,     (6, "b"), Yes,        &[5, 6],          4),
        ("conflate: still over half: disconnected",      Conflate,   35, &[(1, "a"), (2, "b"), (3, "c"), (4, "d")],           false, G,     (5, "e"), Slow,       &[],              0),
        ("conflate: killed connection",                  Conflate,   35, &[],                                                 true,  0,     (1, "a"), Closed,     &[],              0),
    ];
    for &(name, policy, max_pending, before, killed, at, (id, topic), want, after, conflated) in
        cases
    {
        let total = Rc::new(Cell::new(0));
        let c = Conn::new(1, 0, 1, 0, total.clone());
        let metrics = WorkerMetrics::default();
        let bound = Bound {
            max_pending,
            policy,
            grace_ticks: GRACE,
        };
        for &(id, topic) in before {
            let got = enqueue(&c, &ten(id, topic), bound, 0, &metrics);
            assert!(matches!(got, Yes | Backlogged), "{name}: setup");
        }
        if killed {
            c.kill(CloseReason::Shutdown);
        }
        assert_eq!(
            enqueue(&c, &ten(id, topic), bound, at, &metrics),
            want,
            "{name}"
        );
        assert_eq!(ids(&c), after, "{name}: queue");
        assert_eq!(
            (c.pending(), total.get()),
            (10 * after.len(), 10 * after.len()),
            "{name}: pending"
        );
        let closed = match (killed, want) {
            (true, _) => Some(CloseReason::Shutdown),
            (false, Slow) => Some(CloseReason::Slow),
            _ => None,
        };
        assert_eq!(c.closed(), closed, "{name}: closed");
        assert_eq!(
            metrics.slow_disconnects.load(Relaxed),
            u64::from(want == Slow),
            "{name}: slow count"
        );
        assert_eq!(
            metrics.conflated.load(Relaxed),
            conflated,
            "{name}: conflated count"
        );
        assert!(
            c.queue_snapshot()
                .iter()
                .all(|q| q.topic.is_some() == (policy == Conflate)),
            "{name}: a topic is kept only under conflate"
        );
    }
}

#[test]
fn a_conflating_subscriber_is_conflated_at_once_until_it_catches_up() {
    let c = Conn::new(1, 0, 1, 0, Rc::new(Cell::new(0)));
    let metrics = WorkerMetrics::default();
    let bound = Bound {
        max_pending: 35,
        policy: SlowPolicy::Conflate,
        grace_ticks: GRACE,
    };
    for id in 1..=4 {
        enqueue(&c, &ten(id, "a"), bound, 0, &metrics);
    }
    let g = GRACE;
    assert_eq!(enqueue(&c, &ten(5, "a"), bound, g, &metrics), Enqueued::Yes);
    assert!(c.is_conflating());
    for id in 6..=7 {
        enqueue(&c, &ten(id, "a"), bound, g, &metrics);
    }
    // Over the bound again: conflated at once, nobody held back.
    assert_eq!(enqueue(&c, &ten(8, "a"), bound, g, &metrics), Enqueued::Yes);
    assert_eq!(ids(&c), vec![8]);
    // Caught up: the next crossing is a backlog again.
    let mut batch = crate::worker::batch::Batch::new();
    c.begin_write(g, &mut batch, usize::MAX);
    c.end_write(10, g);
    assert!(!c.is_conflating());
    for id in 10..=12 {
        enqueue(&c, &ten(id, "a"), bound, g, &metrics);
    }
    assert_eq!(
        enqueue(&c, &ten(13, "a"), bound, g, &metrics),
        Enqueued::Backlogged
    );
    assert_eq!(ids(&c), vec![10, 11, 12, 13]);
}

#[test]
fn a_write_stuck_in_flight_does_not_get_a_conflating_subscriber_closed() {
    // Frames of 10 bytes, bound 80: a write takes at most 20 bytes.
    let c = Conn::new(1, 0, 1, 0, Rc::new(Cell::new(0)));
    let metrics = WorkerMetrics::default();
    let bound = Bound {
        max_pending: 80,
        policy: SlowPolicy::Conflate,
        grace_ticks: GRACE,
    };
    for id in 1..=9 {
        enqueue(&c, &ten(id, "a"), bound, 0, &metrics);
    }
    // The socket stops taking bytes while a write holds two frames.
    let mut batch = crate::worker::batch::Batch::new();
    c.begin_write(0, &mut batch, bound.write_cap());
    assert_eq!(ids(&c), (3..=9).collect::<Vec<_>>());
    let g = GRACE;
    assert_eq!(
        enqueue(&c, &ten(10, "a"), bound, g, &metrics),
        Enqueued::Yes
    );
    assert!(c.is_conflating());
    assert_eq!(ids(&c), vec![10], "only the newest of the queue is kept");
    assert_eq!(c.pending(), 30, "the two frames in flight stay unsent");
    // Without the cap the write would have held all nine frames, and
    // the newest value alone would not have brought it under half.
    let uncapped = Conn::new(2, 0, 1, 0, Rc::new(Cell::new(0)));
    for id in 1..=9 {
        enqueue(&uncapped, &ten(id, "a"), bound, 0, &metrics);
    }
    uncapped.begin_write(0, &mut crate::worker::batch::Batch::new(), usize::MAX);
    assert_eq!(
        enqueue(&uncapped, &ten(10, "a"), bound, g, &metrics),
        Enqueued::Yes,
        "the rule judges the queue, not the write in flight"
    );
    assert_eq!(metrics.slow_disconnects.load(Relaxed), 0);
}

#[test]
fn a_subscriber_taking_half_its_bound_per_grace_is_never_slow() {
    let c = Conn::new(1, 0, 1, 0, Rc::new(Cell::new(0)));
    let metrics = WorkerMetrics::default();
    let bound = Bound {
        max_pending: 25,
        policy: SlowPolicy::Disconnect,
        grace_ticks: GRACE,
    };
    for id in 1..=5 {
        enqueue(&c, &ten(id, "a"), bound, 0, &metrics);
    }
    let mut batch = crate::worker::batch::Batch::new();
    let mut id = 5;
    // Every grace period the socket takes 20 bytes (over half of 25)
    // while 20 more arrive: 50 unsent, over the bound throughout, and
    // never slow.
    for round in 1..=5 {
        c.begin_write(round * GRACE, &mut batch, usize::MAX);
        c.end_write(20, round * GRACE);
        for _ in 0..2 {
            id += 1;
            assert_eq!(
                enqueue(&c, &ten(id, "a"), bound, round * GRACE, &metrics),
                Enqueued::Backlogged,
                "round {round}"
            );
        }
    }
    // Then it stops taking bytes: slow one grace period later.
    id += 1;
    assert_eq!(
        enqueue(&c, &ten(id, "a"), bound, 6 * GRACE, &metrics),
        Enqueued::Slow
    );
}

#[test]
fn the_backlog_settles_when_subscribers_catch_up_or_turn_slow() {
    let mut cfg = Config::default();
    cfg.sse.max_pending_bytes = 25;
    let w = Worker::for_test(cfg);
    let (fast, slow) = (w.register(), w.register());
    for c in [&fast, &slow] {
        w.subs.borrow_mut().insert("t", c.key);
    }
    let events: Vec<Event> = (1..=5).map(|id| ten(id, "t")).collect();
    let s = w.fan_out(&events, usize::MAX, 0);
    assert_eq!(
        (s.taken, s.queued, s.backlogged),
        (3, 60, true),
        "stops after the event that crossed the bound"
    );
    assert_eq!(w.backlog.borrow().len(), 2);
    assert!(!w.settle_backlog(1), "both still over, within the grace");
    // The fast one's socket takes its bytes.
    let mut batch = crate::worker::batch::Batch::new();
    fast.begin_write(1, &mut batch, usize::MAX);
    fast.end_write(30, 1);
    assert!(!w.settle_backlog(w.bound().grace_ticks - 1));
    assert_eq!(w.backlog.borrow().len(), 1);
    assert!(w.settle_backlog(w.bound().grace_ticks));
    assert_eq!(slow.closed(), Some(CloseReason::Slow));
    assert_eq!(fast.closed(), None);
    assert_eq!(w.metrics.slow_disconnects.load(Relaxed), 1);
    assert_eq!(w.last_seen.get(), 3, "the rest waits for the next turn");
}

/// A worker with auth on and no delay, so an event's age alone decides
/// (born at 1 ns: due; born far ahead: not yet).
fn delayed_worker(max_bytes: usize) -> Worker {
    let mut cfg = Config::default();
    cfg.auth.hs256_secret = Some("s".into());
    cfg.auth.delay_ms = 0;
    cfg.history.max_bytes = max_bytes;
    Worker::for_test(cfg)
}

fn young(id: u64, topic: &str) -> Event {
    Event {
        born_ns: u64::MAX / 2,
        ..ten(id, topic)
    }
}

#[test]
fn the_delayed_view_gets_each_event_once_of_age_and_in_id_order() {
    let w = delayed_worker(1 << 20);
    let (live, delayed) = (w.register(), w.register());
    w.subs.borrow_mut().insert("t", live.key);
    w.delayed_subs.borrow_mut().insert("t", delayed.key);
    w.fan_out(&[ten(1, "t"), young(2, "t"), ten(3, "t")], usize::MAX, 0);
    assert_eq!(ids(&live), vec![1, 2, 3]);
    assert_eq!(
        ids(&delayed),
        vec![1],
        "3 is of age but waits behind 2: never out of order"
    );
    let line = w.delay_line.as_ref().unwrap();
    assert_eq!((line.borrow().released_upto(), line.borrow().len()), (1, 2));
    // The same frames, not copies.
    let (a, b) = (live.queue_snapshot(), delayed.queue_snapshot());
    assert_eq!(a[0].frame.as_ptr(), b[0].frame.as_ptr());
    assert_eq!(
        b[0].born_ns, REPLAYED,
        "no latency sample for a delayed event"
    );
    w.release_delayed();
    assert_eq!(ids(&delayed), vec![1], "nothing more is of age");
}

#[test]
fn the_byte_cap_resyncs_the_delayed_subscribers_it_cuts_off() {
    // Two 10-byte frames fit, the third pushes the oldest (topic t) out.
    let w = delayed_worker(25);
    let (on_t, on_u) = (w.register(), w.register());
    w.delayed_subs.borrow_mut().insert("t", on_t.key);
    w.delayed_subs.borrow_mut().insert("u", on_u.key);
    w.fan_out(
        &[young(1, "t"), young(2, "u"), young(3, "t")],
        usize::MAX,
        0,
    );
    let frames =
        |c: &Conn| -> Vec<Bytes> { c.queue_snapshot().into_iter().map(|q| q.frame).collect() };
    assert_eq!(frames(&on_t), vec![crate::frame::resync("history_expired")]);
    assert!(frames(&on_u).is_empty(), "nothing of u was lost");
    assert_eq!(w.metrics.resyncs.load(Relaxed), 1);
    assert_eq!(w.delay_line.as_ref().unwrap().borrow().released_upto(), 1);
    // 4 pushes out 2 (u): now u's subscriber has lost one too.
    w.fan_out(&[young(4, "t")], usize::MAX, 0);
    assert_eq!(frames(&on_u), vec![crate::frame::resync("history_expired")]);
    // 5 pushes out 3 (t): a further loss before anything reached t's
    // subscriber is the same gap, not announced again.
    w.fan_out(&[young(5, "t")], usize::MAX, 0);
    assert_eq!(frames(&on_t).len(), 1, "one resync per gap");
    assert_eq!(w.metrics.resyncs.load(Relaxed), 2);
}

#[test]
fn budget_closes_or_conflates_the_largest_queues_down_to_90_percent() {
    use SlowPolicy::{Conflate, Disconnect};
    const BUDGET: usize = 1000;
    struct Case {
        name: &'static str,
        policy: SlowPolicy,
        /// Per connection, what is queued before the event: (topic, bytes),
        /// `None` for non-event bytes.
        queued: Vec<Vec<(Option<&'static str>, usize)>>,
        /// The event's topic and size, and the connections subscribed to it.
        event: (&'static str, usize, Vec<usize>),
        /// Every socket is full (behind); else all take bytes.
        full: bool,
        killed: Vec<usize>,
        conflated: u64,
        pending_after: usize,
    }
    let cases = vec![
        Case {
            name: "at the share: nothing",
            policy: Disconnect,
            queued: vec![vec![(None, 500)], vec![(None, 400)]],
            event: ("t", 100, vec![1]),
            full: true,
            killed: vec![],
            conflated: 0,
            pending_after: 1000,
        },
        Case {
            // 1055 unsent: closing the largest (110) leaves 945, under the
            // share but not under 90% of it, so the next (109) goes too.
            name: "largest first, down to 90% of the share",
            policy: Disconnect,
            queued: (0..10).map(|i| vec![(None, 100 - i)]).collect(),
            event: ("t", 10, (0..10).collect()),
            full: true,
            killed: vec![0, 1],
            conflated: 0,
            pending_after: 836,
        },
        Case {
            name: "conflate: conflating the largest is enough",
            policy: Conflate,
            queued: vec![
                vec![(Some("x"), 100); 6],
                vec![(Some("a"), 100), (Some("b"), 100), (Some("c"), 100)],
            ],
            event: ("y", 150, vec![1]),
            full: true,
            killed: vec![],
            conflated: 5,
            pending_after: 550,
        },
        Case {
            name: "conflate: nothing to conflate, closed",
            policy: Conflate,
            queued: vec![
                ["a", "b", "c", "d", "e", "f"]
                    .iter()
                    .map(|t| (Some(*t), 100))
                    .collect(),
                vec![(Some("a"), 100), (Some("b"), 100), (Some("c"), 100)],
            ],
            event: ("y", 150, vec![1]),
            full: true,
            killed: vec![0],
            conflated: 0,
            pending_after: 450,
        },
        Case {
            // Over the share, but every socket takes bytes: nobody is
            // closed; the drain holds its fan-out back instead.
            name: "sockets taking bytes: over the share, nobody closed",
            policy: Disconnect,
            queued: (0..10).map(|i| vec![(None, 100 - i)]).collect(),
            event: ("t", 10, (0..10).collect()),
            full: false,
            killed: vec![],
            conflated: 0,
            pending_after: 1055,
        },
    ];
    for case in cases {
        let name = case.name;
        let mut cfg = Config::default();
        cfg.sse.max_queued_bytes = BUDGET;
        cfg.sse.slow_policy = case.policy;
        let w = Worker::for_test(cfg);
        assert_eq!(w.pending_budget, BUDGET, "{name}: one worker's share");
        let conns: Vec<Rc<Conn>> = case.queued.iter().map(|_| w.register()).collect();
        for (c, items) in conns.iter().zip(&case.queued) {
            for &(topic, len) in items {
                c.push(Queued {
                    frame: Bytes::from(vec![b'q'; len]),
                    born_ns: topic.map_or(0, |_| crate::event::now_ns()),
                    topic: topic.map(Arc::from),
                });
            }
        }
        if case.full {
            for c in &conns {
                c.mark_socket_full();
            }
        }
        let (topic, len, subscribers) = &case.event;
        for &i in subscribers {
            w.subs.borrow_mut().insert(topic, conns[i].key);
        }
        let slice = w.fan_out(&[event(1, topic, *len)], usize::MAX, 0);
        assert_eq!(slice.taken, 1, "{name}");
        if w.pending.get() > w.pending_budget {
            w.enforce_budget(w.bound());
        }
        assert_eq!(w.last_seen.get(), 1, "{name}: the hand-over point moved");
        assert_eq!(w.history.borrow().len(), 1, "{name}: recorded in history");
        let killed: Vec<usize> = (0..conns.len())
            .filter(|&i| conns[i].closed().is_some())
            .collect();
        assert_eq!(killed, case.killed, "{name}: closed");
        for &i in &killed {
            assert_eq!(conns[i].closed(), Some(CloseReason::Slow), "{name}");
            assert_eq!(conns[i].pending(), 0, "{name}: a closed queue is freed");
        }
        assert_eq!(
            w.pending.get(),
            case.pending_after,
            "{name}: worker pending"
        );
        let sum: usize = conns.iter().map(|c| c.pending()).sum();
        assert_eq!(sum, case.pending_after, "{name}: the connections' sum");
        let m = &w.metrics;
        assert_eq!(
            m.slow_disconnects.load(Relaxed),
            killed.len() as u64,
            "{name}"
        );
        assert_eq!(m.conflated.load(Relaxed), case.conflated, "{name}");
    }
}
