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
