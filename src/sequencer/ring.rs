//! The sharded ingest ring: one bounded ring per worker, fed by the sequencer
//! (the only path between cores), plus the doorbell that wakes a parked
//! worker when its ring goes from empty to non-empty. No busy polling: a
//! worker with nothing to do sleeps in io_uring; the sequencer rings the bell
//! only when the worker armed it before parking, so a busy worker costs no
//! wake-up syscalls at all.
//!
//! Measured (`cargo bench --bench ingest`, producer thread → consumer
//! thread): 11 M messages/s at one event per message
//! (`ingest_ring/events_per_msg/1`), 694 M events/s at 64 per message
//! (`ingest_ring/events_per_msg/64`): the sequencer's coalescing is what makes
//! the ring cheap per event. `ringcast_ingest_ring_full_total` shows when
//! a ring fills in production.

use std::future::poll_fn;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::event::Event;

/// What travels on a ring.
#[derive(Debug)]
pub enum Msg {
    /// Sequenced events, in id order. One `Arc` per batch per worker.
    Events(Arc<[Event]>),
    /// The publish request `token` of this worker was sequenced: its events
    /// got ids `first..first + count`, and they are already on every ring.
    Ack {
        /// The worker-local request token.
        token: u32,
        /// First id of the batch.
        first: u64,
        /// Number of events.
        count: u32,
    },
    /// Begin draining (shutdown); every event sequenced before is ahead of it.
    Drain,
    /// Cluster mode: the stream was deleted and recreated. Everything
    /// before this was the old stream's; ids start again from the new
    /// one's sequences, and every subscriber is told (`resync` `epoch`).
    Epoch,
    /// The cluster bridge's answer to this worker's request `token`.
    Reply {
        /// The worker-local request token.
        token: u32,
        /// The answer.
        reply: Box<super::reply::Reply>,
    },
}

/// The doorbell a worker arms before it parks.
#[derive(Debug, Default)]
pub struct Doorbell {
    armed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Doorbell {
    /// Wakes the worker if it is parked on an empty ring.
    pub fn ring(&self) {
        // Pairs with the fence in `wait`: either the worker sees our message
        // in its re-check, or we see its `armed` flag here.
        fence(Ordering::SeqCst);
        if self.armed.swap(false, Ordering::AcqRel) {
            if let Some(w) = self.waker.lock().expect("doorbell lock").take() {
                w.wake();
            }
        }
    }
}

/// The producer side of one worker's ring.
#[derive(Debug, Clone)]
pub struct RingTx {
    tx: Sender<Msg>,
    bell: Arc<Doorbell>,
}

/// The consumer side, owned by the worker.
#[derive(Debug)]
pub struct RingRx {
    rx: Receiver<Msg>,
    bell: Arc<Doorbell>,
}

/// A bounded ring of `slots` messages.
pub fn ring(slots: usize) -> (RingTx, RingRx) {
    let (tx, rx) = crossbeam_channel::bounded(slots);
    let bell = Arc::new(Doorbell::default());
    (
        RingTx {
            tx,
            bell: bell.clone(),
        },
        RingRx { rx, bell },
    )
}

/// Whether a push had to wait for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// There was room.
    Immediately,
    /// The ring was full; the caller waited (back-pressure).
    AfterWaiting,
    /// The worker is gone (shutting down).
    Closed,
}

impl RingTx {
    /// Pushes `msg`, waiting while the ring is full. Only the sequencer (and
    /// the shutdown path) call this, never a worker, so waiting here is the
    /// back-pressure that slows acknowledgements instead of dropping events.
    pub fn push(&self, msg: Msg) -> Pushed {
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.bell.ring();
                Pushed::Immediately
            }
            Err(TrySendError::Full(msg)) => {
                self.bell.ring();
                if self.tx.send(msg).is_err() {
                    return Pushed::Closed;
                }
                self.bell.ring();
                Pushed::AfterWaiting
            }
            Err(TrySendError::Disconnected(_)) => Pushed::Closed,
        }
    }

    /// Pushes `msg` without ringing the doorbell, for a worker pushing to
    /// its own ring: it wakes its own drain locally, with no cross-thread
    /// wake-up. The caller has checked there is room (false: full).
    pub fn push_own(&self, msg: Msg) -> bool {
        self.tx.try_send(msg).is_ok()
    }

    /// True when `n` more messages fit without waiting.
    pub fn has_room(&self, n: usize) -> bool {
        self.tx
            .capacity()
            .is_none_or(|cap| self.tx.len() + n <= cap)
    }

    /// Messages waiting in the ring.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when the ring holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

/// A look at a worker's ring from the worker's other tasks, without
/// consuming anything.
#[derive(Debug, Clone)]
pub struct RingProbe {
    rx: Receiver<Msg>,
}

impl RingProbe {
    /// Messages are waiting in the ring.
    pub fn has_messages(&self) -> bool {
        !self.rx.is_empty()
    }

    /// How many messages are waiting.
    pub fn waiting(&self) -> usize {
        self.rx.len()
    }
}

impl RingRx {
    /// A probe on this ring for the worker's other tasks.
    pub fn probe(&self) -> RingProbe {
        RingProbe {
            rx: self.rx.clone(),
        }
    }

    /// Takes one message if there is one.
    pub fn try_pop(&self) -> Option<Msg> {
        self.rx.try_recv().ok()
    }

    /// Waits until the ring is non-empty, arming the doorbell before parking.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if !self.rx.is_empty() {
                return Poll::Ready(());
            }
            *self.bell.waker.lock().expect("doorbell lock") = Some(cx.waker().clone());
            self.bell.armed.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.rx.is_empty() {
                self.bell.armed.store(false, Ordering::SeqCst);
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }
}
