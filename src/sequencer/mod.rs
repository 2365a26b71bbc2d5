//! The single order of events: publish requests in (from any worker, over a
//! bounded MPSC channel), sequenced events out (to every worker's ring).
//!
//! One thread assigns ids, encodes each frame exactly once into `Bytes`, and
//! pushes one `Arc<[Event]>` per coalesced batch to every ring, then the
//! acknowledgements to the workers that asked. Because the ack travels the
//! same FIFO ring after the events, a publisher's 200 is sent only once its
//! events are on every worker's ring.
//!
//! Ids come from [`crate::event`]: see there for why they start at the
//! process's start time.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::event::{epoch_first_id, now_ns, Event, NewEvent};
use crate::frame;
use crate::ops::metrics::GlobalMetrics;

pub(crate) mod link;
pub(crate) mod order;
pub mod reply;
pub mod ring;

use ring::{Msg, Pushed, RingTx};

/// Gives `events` consecutive ids from `*next_id` on and encodes each
/// frame once; both orders (the thread and the worker-side lock) use it.
fn stamp(next_id: &mut u64, events: Vec<NewEvent>, born_ns: u64) -> Vec<Event> {
    events
        .into_iter()
        .map(|ev| {
            let id = *next_id;
            *next_id += 1;
            Event {
                id,
                frame: frame::encode(id, ev.event.as_deref(), &ev.data),
                topic: ev.topic,
                born_ns,
            }
        })
        .collect()
}

/// A publish request from a worker.
#[derive(Debug)]
pub(crate) struct PublishReq {
    /// Worker that waits for the ack; `None` for the built-in demo feed.
    pub(crate) origin: Option<usize>,
    /// Its local token for the waiting request.
    pub(crate) token: u32,
    /// Validated events, in order.
    pub(crate) events: Vec<NewEvent>,
    /// When the request was read ([`now_ns`]), for the `sequenced` stage.
    pub(crate) read_ns: u64,
}

/// Where publishers hand their events: to whichever keeps the order
/// (`server.sequencer`).
#[derive(Debug)]
pub(crate) enum Ingest {
    /// The sequencer thread, over its bounded queue (full means 503).
    Thread(crossbeam_channel::Sender<SeqMsg>),
    /// The publishing worker itself, under the order's lock.
    Worker(Arc<order::Order>),
    /// Cluster mode: the bridge thread, which publishes into JetStream
    /// and feeds the rings from the stream.
    Cluster(Arc<link::Link>),
}

/// What the sequencer receives.
#[derive(Debug)]
pub(crate) enum SeqMsg {
    /// Sequence these events.
    Publish(PublishReq),
    /// Shutdown: tell every worker to drain, after everything before.
    Drain,
}

/// Most events coalesced into one ring message.
const MAX_COALESCE: usize = 4096;

/// The sequencer's state; `run` consumes it on its own thread.
#[derive(Debug)]
pub(crate) struct Sequencer {
    rx: Receiver<SeqMsg>,
    rings: Vec<RingTx>,
    next_id: u64,
    metrics: Arc<GlobalMetrics>,
    /// The highest id given out so far (0 before the first), for workers
    /// that must tell an id they have not fanned out yet from an unknown
    /// one.
    issued: Arc<AtomicU64>,
}

impl Sequencer {
    /// A sequencer reading `rx` and feeding `rings` (index = worker).
    pub(crate) fn new(
        rx: Receiver<SeqMsg>,
        rings: Vec<RingTx>,
        metrics: Arc<GlobalMetrics>,
        issued: Arc<AtomicU64>,
    ) -> Self {
        Sequencer {
            rx,
            rings,
            next_id: epoch_first_id(),
            metrics,
            issued,
        }
    }

    /// Runs until every sender is gone.
    pub(crate) fn run(mut self) {
        let mut acks: Vec<(Option<usize>, u32, u64, u32)> = Vec::new();
        while let Ok(first) = self.rx.recv() {
            let mut batch: Vec<Event> = Vec::new();
            let mut drain = false;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    SeqMsg::Publish(req) => {
                        let first_id = self.next_id;
                        let born_ns = now_ns();
                        self.metrics
                            .stage_sequenced
                            .observe_ns(born_ns.saturating_sub(req.read_ns));
                        let count = req.events.len() as u32;
                        batch.extend(stamp(&mut self.next_id, req.events, born_ns));
                        acks.push((req.origin, req.token, first_id, count));
                    }
                    SeqMsg::Drain => drain = true,
                }
                if batch.len() < MAX_COALESCE && !drain {
                    next = self.rx.try_recv().ok();
                }
            }
            self.deliver(batch, &mut acks, drain);
        }
    }

    fn deliver(
        &mut self,
        batch: Vec<Event>,
        acks: &mut Vec<(Option<usize>, u32, u64, u32)>,
        drain: bool,
    ) {
        let n = batch.len() as u64;
        if n > 0 {
            // Before any worker can see these ids, so that none of them is
            // ever "unknown" to a resuming client's worker.
            self.issued.store(self.next_id - 1, Release);
            let batch: Arc<[Event]> = batch.into();
            for ring in &self.rings {
                if ring.push(Msg::Events(batch.clone())) == Pushed::AfterWaiting {
                    self.metrics.ring_full.fetch_add(1, Relaxed);
                }
            }
            self.metrics.events_published.fetch_add(n, Relaxed);
        }
        for (origin, token, first, count) in acks.drain(..) {
            if let Some(w) = origin {
                self.rings[w].push(Msg::Ack {
                    token,
                    first,
                    count,
                });
            }
        }
        if drain {
            for ring in &self.rings {
                ring.push(Msg::Drain);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ring::ring;
    use super::*;

    #[test]
    fn ids_increase_and_acks_follow_events() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let (r0, rx0) = ring(16, usize::MAX);
        let (r1, rx1) = ring(16, usize::MAX);
        let m = Arc::new(GlobalMetrics::default());
        let issued = Arc::new(AtomicU64::new(0));
        let seq = Sequencer::new(rx, vec![r0, r1], m.clone(), issued.clone());
        let ev = |t: &str| NewEvent {
            topic: t.into(),
            event: None,
            data: bytes::Bytes::from_static(b"d"),
        };
        tx.send(SeqMsg::Publish(PublishReq {
            origin: Some(1),
            token: 7,
            events: vec![ev("a"), ev("b")],
            read_ns: 0,
        }))
        .unwrap();
        tx.send(SeqMsg::Publish(PublishReq {
            origin: Some(0),
            token: 3,
            events: vec![ev("c")],
            read_ns: 0,
        }))
        .unwrap();
        tx.send(SeqMsg::Drain).unwrap();
        drop(tx);
        seq.run();
        let mut ids = vec![];
        let mut acks = vec![];
        let mut drained = false;
        while let Some(msg) = rx1.try_pop() {
            match msg {
                Msg::Events(b) => ids.extend(b.iter().map(|e| e.id)),
                Msg::Ack {
                    token,
                    first,
                    count,
                } => {
                    assert!(!ids.is_empty(), "ack before its events");
                    acks.push((token, first, count));
                }
                Msg::Drain => drained = true,
                Msg::Reply { .. } | Msg::Epoch => unreachable!("no bridge here"),
            }
        }
        assert!(drained);
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(acks, vec![(7, ids[0], 2)]);
        assert!(matches!(rx0.try_pop(), Some(Msg::Events(_))));
        assert_eq!(m.events_published.load(Relaxed), 3);
        assert_eq!(issued.load(Relaxed), *ids.last().unwrap());
    }
}
