//! The order, kept by the publishing worker itself: a worker that has
//! read a publish request takes the order's lock, gives the events their
//! ids, encodes each frame once, pushes one `Arc<[Event]>` onto every
//! worker's ring (its own included) and the journal's, and answers — the
//! events are then on every ring. No sequencer thread, no hop: the two
//! cross-thread wake-ups of a separate sequencer (worker → sequencer →
//! worker) cost a single-event publish about 10 µs on one core
//! (`benches/results/performance/sequencer.md`). While the publishing
//! worker's own fan-out is held back (a subscriber past its bound, SPEC §3)
//! or its ring is long, the acknowledgement travels that ring behind the
//! events — a message to itself, with no wake-up across threads — so its
//! publishers wait, instead of filling the rings; otherwise the publish is
//! answered at once.
//!
//! The lock makes the producers of every ring one at a time, so each ring
//! (and the journal) receives events in id order; it is held for one
//! encode per event and one push per ring. A publish never waits inside
//! it: when any ring is full it is refused (nothing was given an id) and
//! the caller waits outside and retries — back-pressure, never a loss.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::{Arc, Mutex};

use super::journal::{self, Journal};
use super::ring::{Msg, RingTx};
use super::{first_id, stamp};
use crate::event::{now_ns, NewEvent};
use crate::ops::metrics::GlobalMetrics;

/// Why [`Order::sequence`] gave the events back (nothing was published).
#[derive(Debug)]
pub(crate) enum Refused {
    /// A ring (or the journal's) is full: retry shortly.
    Full(Vec<NewEvent>),
    /// Publishing is off: the server is draining, or `history.dir` cannot
    /// be written. The sentence says which.
    Unavailable(&'static str),
}

#[derive(Debug)]
struct State {
    next_id: u64,
    rings: Vec<RingTx>,
    /// Set by the drain: nothing is sequenced after it.
    closed: bool,
}

/// The single order of events, shared by every worker.
#[derive(Debug)]
pub(crate) struct Order {
    state: Mutex<State>,
    /// `history.dir`: every batch is appended to it too, under the lock.
    journal: Option<Journal>,
    metrics: Arc<GlobalMetrics>,
    /// The highest id given out, for workers that must tell an id they
    /// have not fanned out yet from an unknown one.
    issued: Arc<AtomicU64>,
}

impl Order {
    /// An order feeding `rings` (index = worker) from `next_id` on, and
    /// `journal` when history is kept on disk.
    pub(crate) fn new(
        rings: Vec<RingTx>,
        journal: Option<Journal>,
        next_id: u64,
        metrics: Arc<GlobalMetrics>,
        issued: Arc<AtomicU64>,
    ) -> Self {
        Order {
            state: Mutex::new(State {
                next_id,
                rings,
                closed: false,
            }),
            journal,
            metrics,
            issued,
        }
    }

    /// Sequences `events` (read at `read_ns`) onto every ring; `origin` is
    /// the publishing worker, whose own ring gets no doorbell (it wakes its
    /// drain itself), and with `ack` (its request token) the
    /// acknowledgement goes onto that ring behind the events. The first id
    /// and the count, or the events back when a ring is full.
    pub(crate) fn sequence(
        &self,
        events: Vec<NewEvent>,
        read_ns: u64,
        origin: Option<usize>,
        ack: Option<u32>,
    ) -> Result<(u64, u32), Refused> {
        let mut st = self.state.lock().expect("order lock");
        if st.closed {
            return Err(Refused::Unavailable("the server is shutting down"));
        }
        let need = |i: usize| 1 + usize::from(ack.is_some() && origin == Some(i));
        let first = first_id(st.next_id);
        let count = events.len() as u32;
        let last = first + u64::from(count.max(1)) - 1;
        let journal = self.journal.as_ref().map(|j| j.admit(last));
        if journal == Some(Err(journal::Refusal::Failed)) {
            return Err(Refused::Unavailable(
                "history.dir cannot be written (see the server log); nothing was published",
            ));
        }
        if journal == Some(Err(journal::Refusal::Busy))
            || st
                .rings
                .iter()
                .enumerate()
                .any(|(i, r)| !r.has_room(need(i)))
        {
            drop(st);
            self.metrics.ring_full.fetch_add(1, Relaxed);
            return Err(Refused::Full(events));
        }
        let born_ns = now_ns();
        self.metrics
            .stage_sequenced
            .observe_ns(born_ns.saturating_sub(read_ns));
        let batch = stamp(first, events, born_ns);
        st.next_id = first + u64::from(count);
        // Before any worker can see these ids.
        self.issued.store(st.next_id - 1, Release);
        let batch: Arc<[crate::event::Event]> = batch.into();
        if let Some(j) = &self.journal {
            j.append(batch.clone());
        }
        for (i, ring) in st.rings.iter().enumerate() {
            // Cannot be full: only this lock's holder pushes, and every
            // ring had room. A worker already gone (shutdown) is skipped.
            // The publishing worker's own ring gets no doorbell: the
            // caller wakes its drain locally.
            let msg = Msg::Events(batch.clone());
            if origin == Some(i) {
                ring.push_own(msg);
            } else {
                ring.push(msg);
            }
        }
        if let (Some(worker), Some(token)) = (origin, ack) {
            st.rings[worker].push_own(Msg::Ack {
                token,
                first,
                count,
            });
        }
        drop(st);
        self.metrics
            .events_published
            .fetch_add(u64::from(count), Relaxed);
        Ok((first, count))
    }

    /// Shutdown: nothing is sequenced from now on; every worker drains
    /// after every event sequenced before, and the journal closes. Waits
    /// for room (called from the main thread, never a worker).
    pub(crate) fn drain(&self) {
        let mut st = self.state.lock().expect("order lock");
        if st.closed {
            return;
        }
        st.closed = true;
        for ring in &st.rings {
            ring.push(Msg::Drain);
        }
        if let Some(j) = &self.journal {
            j.close();
        }
    }

    /// Waits up to `timeout` for the journal's close record to be durable;
    /// true when it is (or there is no journal).
    pub(crate) fn wait_journal(&self, timeout: std::time::Duration) -> bool {
        self.journal.as_ref().is_none_or(|j| j.wait_closed(timeout))
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
        let (t0, r0) = ring(2, usize::MAX);
        let (t1, r1) = ring(4, usize::MAX);
        let m = Arc::new(GlobalMetrics::default());
        let issued = Arc::new(AtomicU64::new(0));
        let o = Order::new(vec![t0, t1], None, 10, m.clone(), issued.clone());
        let (a, n) = o
            .sequence(vec![ev("a"), ev("b")], 0, Some(1), Some(7))
            .unwrap();
        assert_eq!(n, 2);
        let (b, _) = o.sequence(vec![ev("c")], 0, None, None).unwrap();
        assert!(b >= a + 2, "ids follow the clock, never back");
        assert_eq!(issued.load(Relaxed), b);
        // Ring 0 (two slots) is full now: refused whole, no id used.
        match o.sequence(vec![ev("d")], 0, None, None) {
            Err(Refused::Full(back)) => assert_eq!(back.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.ring_full.load(Relaxed), 1);
        // Events, and the acknowledgement behind them on worker 1's ring only.
        let drain = |r: &super::super::ring::RingRx| {
            let (mut ids, mut acks) = (Vec::new(), Vec::new());
            while let Some(msg) = r.try_pop() {
                match msg {
                    Msg::Events(b) => ids.extend(b.iter().map(|e| e.id)),
                    Msg::Ack {
                        token,
                        first,
                        count,
                    } => acks.push((ids.len(), token, first, count)),
                    Msg::Drain => panic!("no drain yet"),
                    Msg::Reply { .. } | Msg::Epoch => panic!("no bridge here"),
                }
            }
            (ids, acks)
        };
        assert_eq!(drain(&r0), (vec![a, a + 1, b], vec![]));
        assert_eq!(drain(&r1), (vec![a, a + 1, b], vec![(2, 7, a, 2)]));
        let (c, _) = o.sequence(vec![ev("d")], 0, None, None).unwrap();
        assert!(c > b);
        o.drain();
        assert!(matches!(r0.try_pop(), Some(Msg::Events(_))));
        assert!(matches!(r0.try_pop(), Some(Msg::Drain)));
        assert_eq!(m.events_published.load(Relaxed), 4);
        // Nothing is sequenced after the drain marker.
        assert!(matches!(
            o.sequence(vec![ev("e")], 0, None, None),
            Err(Refused::Unavailable(_))
        ));
        assert!(r0.try_pop().is_none());
    }
}
