//! Ring → connection queues: the worker drains its ingest ring in batches
//! and, for each event, appends the frame handle (a refcount bump, no copy)
//! to every matching local subscriber's queue, applying the slow-subscriber
//! bound. Acks wake the publish requests that wait for them.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use crate::conn::{CloseReason, Conn, Queued};
use crate::ingest::{Msg, RingRx};
use crate::metrics::WorkerMetrics;
use crate::sequencer::Event;
use crate::worker::{yield_now, Worker};

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

/// Offers `ev` to `conn`, bounded by `max_pending` unsent bytes.
pub fn enqueue(conn: &Conn, ev: &Event, max_pending: usize, metrics: &WorkerMetrics) -> Enqueued {
    if conn.close.get().is_some() {
        return Enqueued::Closed;
    }
    if ev.id <= conn.last_id.get() {
        return Enqueued::Duplicate;
    }
    conn.last_id.set(ev.id);
    if conn.pending_bytes.get() + ev.frame.len() > max_pending {
        metrics.slow_disconnects.fetch_add(1, Relaxed);
        tracing::info!(
            conn = conn.id,
            pending = conn.pending_bytes.get(),
            "closing slow subscriber: sse.max_pending_bytes exceeded"
        );
        conn.kill(CloseReason::Slow);
        return Enqueued::Slow;
    }
    conn.push(Queued {
        frame: ev.frame.clone(),
        born_ns: ev.born_ns,
    });
    Enqueued::Yes
}

impl Worker {
    /// Fans a batch of sequenced events out to this worker's subscribers.
    pub fn fan_out(&self, events: &[Event]) {
        if let Some(last) = events.last() {
            self.last_seen.set(last.id);
        }
        let subs = self.subs.borrow();
        if subs.is_empty() {
            return;
        }
        let conns = self.conns.borrow();
        let max = self.shared.cfg.sse.max_pending_bytes;
        for ev in events {
            subs.for_each_match(&ev.topic, |k| {
                if let Some(c) = conns.get(k as usize) {
                    enqueue(c, ev, max, &self.metrics);
                }
            });
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
                    cell.complete(first, count);
                }
            }
            Msg::Drain => self.begin_drain(),
        }
    }
}

/// The worker's ring-drain task; runs for the worker's life.
pub async fn drain_ring(w: Rc<Worker>, rx: RingRx) {
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
