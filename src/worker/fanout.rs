//! Ring → connection queues: the worker drains its ingest ring in batches
//! and, for each event, appends the frame handle (a refcount bump, no copy)
//! to every matching local subscriber's queue, applying the slow-subscriber
//! bound. Acks wake the publish requests that wait for them.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use super::conn::{CloseReason, Conn, Queued};
use super::local::yield_now;
use super::Worker;
use crate::config::SlowPolicy;
use crate::event::Event;
use crate::ops::metrics::WorkerMetrics;
use crate::sequencer::ring::{Msg, RingRx};

/// Ring messages handled before the drain task yields so that connections
/// can write what was queued: bigger batches per write under load, bounded
/// latency for the first frame.
const MSGS_PER_TURN: usize = 64;

/// Outcome of offering an event to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Yes,
    /// Already queued through another pattern (or older than what was sent).
    Duplicate,
    /// The connection is closing.
    Closed,
    /// It would pass `sse.max_pending_bytes`: the connection was closed.
    Slow,
}

/// The per-subscriber bound and what happens when it is hit.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// `sse.max_pending_bytes`.
    pub max_pending: usize,
    /// `sse.slow_policy`.
    pub policy: SlowPolicy,
}

/// Offers `ev` to `conn` within `bound`.
///
/// Under `conflate`, hitting the bound keeps only the newest pending event
/// per topic; if that does not bring the queue under half the bound (too
/// many distinct topics pending), the subscriber is disconnected like under
/// `disconnect`. The half-bound rule makes conflation amortised O(1) per
/// event: after a pass, half the bound must refill before the next one.
pub fn enqueue(conn: &Conn, ev: &Event, bound: Bound, metrics: &WorkerMetrics) -> Enqueued {
    if conn.closed().is_some() {
        return Enqueued::Closed;
    }
    if !conn.claim_id(ev.id) {
        return Enqueued::Duplicate;
    }
    let conflate = bound.policy == SlowPolicy::Conflate;
    if conn.pending() + ev.frame.len() > bound.max_pending {
        if conflate {
            conn.push(Queued {
                frame: ev.frame.clone(),
                born_ns: ev.born_ns,
                topic: Some(ev.topic.clone()),
            });
            let dropped = conn.conflate();
            metrics.conflated.fetch_add(dropped, Relaxed);
            if conn.pending() <= bound.max_pending / 2 {
                return Enqueued::Yes;
            }
        }
        metrics.slow_disconnects.fetch_add(1, Relaxed);
        tracing::info!(
            conn = conn.id,
            pending = conn.pending(),
            "closing slow subscriber: sse.max_pending_bytes exceeded"
        );
        conn.kill(CloseReason::Slow);
        return Enqueued::Slow;
    }
    conn.push(Queued {
        frame: ev.frame.clone(),
        born_ns: ev.born_ns,
        topic: conflate.then(|| ev.topic.clone()),
    });
    Enqueued::Yes
}

impl Worker {
    /// Fans a batch of sequenced events out to this worker's subscribers.
    pub(crate) fn fan_out(&self, events: &[Event]) {
        if let Some(last) = events.last() {
            self.last_seen.set(last.id);
        }
        let subs = self.subs.borrow();
        if subs.is_empty() {
            return;
        }
        let conns = self.conns.borrow();
        let bound = Bound {
            max_pending: self.shared.cfg.sse.max_pending_bytes,
            policy: self.shared.cfg.sse.slow_policy,
        };
        for ev in events {
            subs.for_each_match(&ev.topic, |k| {
                if let Some(c) = conns.get(k as usize) {
                    enqueue(c, ev, bound, &self.metrics);
                }
            });
        }
        drop(conns);
        if self.pending.get() > self.pending_budget {
            self.enforce_budget(bound);
        }
    }

    /// Keeps the worker's unsent bytes within its share of
    /// `sse.max_queued_bytes`: the largest queues are conflated (under that
    /// policy) or closed first, down to 90% of the share.
    fn enforce_budget(&self, bound: Bound) {
        let mut by_size: Vec<(usize, Rc<Conn>)> = self
            .conns
            .borrow()
            .iter()
            .filter(|(_, c)| c.closed().is_none() && c.pending() > 0)
            .map(|(_, c)| (c.pending(), c.clone()))
            .collect();
        by_size.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        let target = self.pending_budget / 10 * 9;
        for (_, c) in by_size {
            if self.pending.get() <= target {
                break;
            }
            if bound.policy == SlowPolicy::Conflate {
                self.metrics.conflated.fetch_add(c.conflate(), Relaxed);
                if self.pending.get() <= target {
                    break;
                }
            }
            self.metrics.slow_disconnects.fetch_add(1, Relaxed);
            tracing::info!(
                conn = c.id,
                pending = c.pending(),
                "closing subscriber: sse.max_queued_bytes reached, largest queues first"
            );
            c.kill(CloseReason::Slow);
        }
    }

    fn handle(&self, msg: Msg) {
        match msg {
            Msg::Events(batch) => self.fan_out(&batch),
            Msg::Ack {
                token,
                first,
                count,
            } => {
                if let Some(cell) = self.acks.borrow().get(token as usize) {
                    cell.complete((first, count));
                }
            }
            Msg::Drain => self.begin_drain(),
        }
    }
}

/// The worker's ring-drain task; runs for the worker's life.
pub(crate) async fn drain_ring(w: Rc<Worker>, rx: RingRx) {
    loop {
        rx.wait().await;
        for _ in 0..MSGS_PER_TURN {
            match rx.try_pop() {
                Some(msg) => w.handle(msg),
                None => break,
            }
        }
        yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::config::Config;

    /// An event whose frame is `len` bytes.
    fn event(id: u64, topic: &str, len: usize) -> Event {
        Event {
            id,
            topic: Arc::from(topic),
            frame: Bytes::from(vec![b'x'; len]),
            born_ns: 1,
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
        use Enqueued::{Closed, Duplicate, Slow, Yes};
        use SlowPolicy::{Conflate, Disconnect};
        // Frames are 10 bytes. `before`: what was queued (ids and topics);
        // `offer`: the event offered; `after`: the ids queued afterwards;
        // `confl.`: what metrics.conflated counted.
        type Ev = (u64, &'static str);
        type Case = (
            &'static str,
            SlowPolicy,
            usize,
            &'static [Ev],
            bool,
            Ev,
            Enqueued,
            &'static [u64],
            u64,
        );
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // name                                        policy      max before                                     killed offer     want       after          confl.
            ("fits",                                       Disconnect, 35, &[(1, "a"), (2, "b")],                     false, (3, "c"), Yes,       &[1, 2, 3],    0),
            ("exactly at the bound fits",                  Disconnect, 40, &[(1, "a"), (2, "b"), (3, "c")],           false, (4, "d"), Yes,       &[1, 2, 3, 4], 0),
            ("same id is a duplicate",                     Disconnect, 35, &[(1, "a"), (2, "b")],                     false, (2, "b"), Duplicate, &[1, 2],       0),
            ("older id is a duplicate",                    Disconnect, 35, &[(1, "a"), (5, "b")],                     false, (3, "c"), Duplicate, &[1, 5],       0),
            ("killed connection",                          Disconnect, 35, &[(1, "a")],                               true,  (2, "a"), Closed,    &[],           0),
            ("past the bound: disconnected",               Disconnect, 35, &[(1, "a"), (2, "b"), (3, "c")],           false, (4, "d"), Slow,      &[],           0),
            ("conflate: under the bound, nothing dropped", Conflate,   35, &[(1, "a"), (2, "a")],                     false, (3, "a"), Yes,       &[1, 2, 3],    0),
            ("conflate: newest per topic gets under half", Conflate,   35, &[(1, "a"), (2, "a"), (3, "a")],           false, (4, "a"), Yes,       &[4],          3),
            ("conflate: exactly half is under",            Conflate,   41, &[(1, "a"), (2, "a"), (3, "b"), (4, "b")], false, (5, "a"), Yes,       &[4, 5],       3),
            ("conflate: still over half: disconnected",    Conflate,   35, &[(1, "a"), (2, "a"), (3, "b")],           false, (4, "b"), Slow,      &[],           2),
            ("conflate: killed connection",                Conflate,   35, &[],                                       true,  (1, "a"), Closed,    &[],           0),
        ];
        for &(name, policy, max_pending, before, killed, (id, topic), want, after, conflated) in
            cases
        {
            let total = Rc::new(Cell::new(0));
            let c = Conn::new(1, 0, 1, 0, total.clone());
            let metrics = WorkerMetrics::default();
            let bound = Bound {
                max_pending,
                policy,
            };
            for &(id, topic) in before {
                assert_eq!(
                    enqueue(&c, &ten(id, topic), bound, &metrics),
                    Yes,
                    "{name}: setup"
                );
            }
            if killed {
                c.kill(CloseReason::Shutdown);
            }
            assert_eq!(
                enqueue(&c, &ten(id, topic), bound, &metrics),
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
                killed: vec![0],
                conflated: 0,
                pending_after: 450,
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
                        born_ns: topic.map_or(0, |_| 1),
                        topic: topic.map(Arc::from),
                    });
                }
            }
            let (topic, len, subscribers) = &case.event;
            for &i in subscribers {
                w.subs.borrow_mut().insert(topic, conns[i].key);
            }
            w.fan_out(&[event(1, topic, *len)]);
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
}
