//! The order kept by the publishing worker itself (`server.sequencer =
//! "worker"`): no sequencer thread, no hop. A worker that has read a
//! publish request takes the order's lock, gives the events their ids,
//! encodes each frame once, pushes one `Arc<[Event]>` onto every worker's
//! ring (its own included) and answers — the events are then on every
//! ring, exactly what the thread's acknowledgement proves, without the
//! two cross-thread wake-ups (worker → sequencer → worker) that cost a
//! single-event publish about 10 µs on one core (issue 11's profile).
//!
//! The lock makes the producers of every ring one at a time, so each ring
//! still receives events in id order; it is held for one encode per event
//! and one push per worker. A publish never waits inside it: when any ring
//! is full it is refused (nothing was given an id) and the caller waits
//! outside and retries — the back-pressure that the thread's blocking push
//! gave before.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::{Arc, Mutex};

use super::ring::{Msg, RingTx};
use super::stamp;
use crate::event::{epoch_first_id, now_ns, NewEvent};
use crate::ops::metrics::GlobalMetrics;

/// [`Order::sequence`] gave the events back: a ring is full; retry
/// shortly (nothing was published).
#[derive(Debug)]
pub(crate) struct Full(pub(crate) Vec<NewEvent>);

#[derive(Debug)]
struct State {
    next_id: u64,
    rings: Vec<RingTx>,
}

/// The single order of events, shared by every worker.
#[derive(Debug)]
pub(crate) struct Order {
    state: Mutex<State>,
    metrics: Arc<GlobalMetrics>,
    /// See [`super::Sequencer`]: the highest id given out.
    issued: Arc<AtomicU64>,
}

impl Order {
    /// An order feeding `rings` (index = worker).
    pub(crate) fn new(
        rings: Vec<RingTx>,
        metrics: Arc<GlobalMetrics>,
        issued: Arc<AtomicU64>,
    ) -> Self {
        Order {
            state: Mutex::new(State {
                next_id: epoch_first_id(),
                rings,
            }),
            metrics,
            issued,
        }
    }

    /// Sequences `events` (read at `read_ns`) onto every ring; the first id
    /// and the count, or the events back when a ring is full.
    pub(crate) fn sequence(&self, events: Vec<NewEvent>, read_ns: u64) -> Result<(u64, u32), Full> {
        let mut st = self.state.lock().expect("order lock");
        if st.rings.iter().any(|r| !r.has_room()) {
            drop(st);
            self.metrics.ring_full.fetch_add(1, Relaxed);
            return Err(Full(events));
        }
        let born_ns = now_ns();
        self.metrics
            .stage_sequenced
            .observe_ns(born_ns.saturating_sub(read_ns));
        let first = st.next_id;
        let count = events.len() as u32;
        let batch = stamp(&mut st.next_id, events, born_ns);
        // Before any worker can see these ids (see `Sequencer::deliver`).
        self.issued.store(st.next_id - 1, Release);
        let batch: Arc<[crate::event::Event]> = batch.into();
        for ring in &st.rings {
            // Cannot be full: only this lock's holder pushes, and every
            // ring had room. A worker already gone (shutdown) is skipped,
            // as by the thread.
            ring.push(Msg::Events(batch.clone()));
        }
        drop(st);
        self.metrics
            .events_published
            .fetch_add(u64::from(count), Relaxed);
        Ok((first, count))
    }

    /// Shutdown: every worker drains after every event sequenced before.
    /// Waits for room (called from the main thread, never a worker).
    pub(crate) fn drain(&self) {
        let st = self.state.lock().expect("order lock");
        for ring in &st.rings {
            ring.push(Msg::Drain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ring::ring;
    use super::*;

    fn ev(t: &str) -> NewEvent {
        NewEvent {
            topic: t.into(),
            event: None,
            data: bytes::Bytes::from_static(b"d"),
        }
    }

    #[test]
    fn every_ring_gets_each_batch_in_id_order_and_a_full_ring_refuses_whole() {
        let (t0, r0) = ring(2);
        let (t1, r1) = ring(4);
        let m = Arc::new(GlobalMetrics::default());
        let issued = Arc::new(AtomicU64::new(0));
        let o = Order::new(vec![t0, t1], m.clone(), issued.clone());
        let (a, n) = o.sequence(vec![ev("a"), ev("b")], 0).unwrap();
        assert_eq!(n, 2);
        let (b, _) = o.sequence(vec![ev("c")], 0).unwrap();
        assert_eq!(b, a + 2);
        assert_eq!(issued.load(Relaxed), b);
        // Ring 0 (two slots) is full now: refused whole, no id used.
        match o.sequence(vec![ev("d")], 0) {
            Err(Full(back)) => assert_eq!(back.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.ring_full.load(Relaxed), 1);
        let ids = |r: &super::super::ring::RingRx| {
            let mut v = Vec::new();
            while let Some(Msg::Events(b)) = r.try_pop() {
                v.extend(b.iter().map(|e| e.id));
            }
            v
        };
        assert_eq!(ids(&r0), vec![a, a + 1, b]);
        assert_eq!(ids(&r1), vec![a, a + 1, b]);
        let (c, _) = o.sequence(vec![ev("d")], 0).unwrap();
        assert_eq!(c, b + 1, "the refused publish used no id");
        o.drain();
        assert!(matches!(r0.try_pop(), Some(Msg::Events(_))));
        assert!(matches!(r0.try_pop(), Some(Msg::Drain)));
        assert_eq!(m.events_published.load(Relaxed), 4);
    }
}
