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
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
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

/// Wakes a thread parked in [`RingRx::wait_blocking`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The frame bytes a ring holds, against its byte bound: the slots bound
/// the messages, but one message may be a batch of thousands of events, so
/// the slots alone do not bound the memory of a backlog.
#[derive(Debug)]
struct Load {
    bytes: AtomicUsize,
    max: usize,
    /// The consumer is gone: nothing will take bytes off again.
    gone: AtomicBool,
}

impl Load {
    /// Room for another message: the ring holds less than its bound (a
    /// message may pass it by its own size).
    fn has_room(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) < self.max || self.gone.load(Ordering::Relaxed)
    }
}

/// What a message keeps alive: each event's frame and its handle. Shared
/// frames are counted on every ring that holds them.
fn msg_bytes(msg: &Msg) -> usize {
    match msg {
        Msg::Events(batch) => batch
            .iter()
            .map(|e| e.frame.len() + std::mem::size_of::<Event>())
            .sum(),
        _ => 0,
    }
}

/// The producer side of one worker's ring.
#[derive(Debug, Clone)]
pub struct RingTx {
    tx: Sender<Msg>,
    bell: Arc<Doorbell>,
    load: Arc<Load>,
}

/// The consumer side, owned by the worker.
#[derive(Debug)]
pub struct RingRx {
    rx: Receiver<Msg>,
    bell: Arc<Doorbell>,
    load: Arc<Load>,
}

/// A bounded ring of `slots` messages holding about `max_bytes` of events
/// at most (`server.ingest_ring_bytes`): past it, producers wait as they do
/// for a free slot.
pub fn ring(slots: usize, max_bytes: usize) -> (RingTx, RingRx) {
    let (tx, rx) = crossbeam_channel::bounded(slots);
    let bell = Arc::new(Doorbell::default());
    let load = Arc::new(Load {
        bytes: AtomicUsize::new(0),
        max: max_bytes,
        gone: AtomicBool::new(false),
    });
    (
        RingTx {
            tx,
            bell: bell.clone(),
            load: load.clone(),
        },
        RingRx { rx, bell, load },
    )
}

impl Drop for RingRx {
    fn drop(&mut self) {
        self.load.gone.store(true, Ordering::Relaxed);
    }
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
    /// Pushes `msg`, waiting while the ring is full: the back-pressure that
    /// slows acknowledgements instead of dropping events. Only the
    /// sequencer thread and the shutdown path ever wait here; a worker (the
    /// worker-side order) and the cluster bridge push only after
    /// `has_room`, and room only grows until they push.
    ///
    /// Past the byte bound it waits too, polling every millisecond.
    pub fn push(&self, msg: Msg) -> Pushed {
        let bytes = msg_bytes(&msg);
        let mut waited = false;
        while !self.load.has_room() {
            waited = true;
            self.bell.ring();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Counted before the consumer can take (and uncount) it.
        self.load.bytes.fetch_add(bytes, Ordering::Relaxed);
        let pushed = match self.tx.try_send(msg) {
            Ok(()) if waited => Pushed::AfterWaiting,
            Ok(()) => Pushed::Immediately,
            Err(TrySendError::Full(msg)) => {
                self.bell.ring();
                if self.tx.send(msg).is_err() {
                    Pushed::Closed
                } else {
                    Pushed::AfterWaiting
                }
            }
            Err(TrySendError::Disconnected(_)) => Pushed::Closed,
        };
        if pushed == Pushed::Closed {
            self.load.bytes.fetch_sub(bytes, Ordering::Relaxed);
        } else {
            self.bell.ring();
        }
        pushed
    }

    /// Pushes `msg` without ringing the doorbell, for a worker pushing to
    /// its own ring: it wakes its own drain locally, with no cross-thread
    /// wake-up. The caller has checked there is room (false: full).
    pub fn push_own(&self, msg: Msg) -> bool {
        let bytes = msg_bytes(&msg);
        self.load.bytes.fetch_add(bytes, Ordering::Relaxed);
        let pushed = self.tx.try_send(msg).is_ok();
        if !pushed {
            self.load.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        pushed
    }

    /// True when `n` more messages fit without waiting: free slots, and
    /// the ring under its byte bound.
    pub fn has_room(&self, n: usize) -> bool {
        self.load.has_room()
            && self
                .tx
                .capacity()
                .is_none_or(|cap| self.tx.len() + n <= cap)
    }

    /// Bytes of events the ring holds (see [`ring`]).
    pub fn bytes(&self) -> usize {
        self.load.bytes.load(Ordering::Relaxed)
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
        let msg = self.rx.try_recv().ok()?;
        self.load
            .bytes
            .fetch_sub(msg_bytes(&msg), Ordering::Relaxed);
        Some(msg)
    }

    /// Blocks the calling thread until the ring is non-empty or `timeout`
    /// passes, for a consumer that is a plain thread (the journal's), with
    /// the same doorbell protocol as [`RingRx::wait`].
    pub fn wait_blocking(&self, timeout: std::time::Duration) {
        if !self.rx.is_empty() {
            return;
        }
        *self.bell.waker.lock().expect("doorbell lock") =
            Some(Waker::from(Arc::new(ThreadWaker(std::thread::current()))));
        self.bell.armed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.rx.is_empty() {
            std::thread::park_timeout(timeout);
        }
        self.bell.armed.store(false, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(frames: &[usize]) -> Msg {
        let events: Vec<Event> = frames
            .iter()
            .enumerate()
            .map(|(i, &len)| Event {
                id: i as u64 + 1,
                topic: Arc::from("t"),
                frame: Bytes::from(vec![b'x'; len]),
                born_ns: 1,
            })
            .collect();
        Msg::Events(events.into())
    }

    #[test]
    fn a_ring_past_its_bytes_has_no_room_until_the_worker_takes_them() {
        let per_event = std::mem::size_of::<Event>();
        // Room for many slots, but 1,000 bytes of events.
        let (tx, rx) = ring(64, 1000);
        assert!(tx.has_room(1));
        assert!(tx.push_own(batch(&[600])));
        assert_eq!(tx.bytes(), 600 + per_event);
        assert!(tx.has_room(1), "under the bound");
        // A message may pass the bound by its own size...
        assert_eq!(tx.push(batch(&[500, 10])), Pushed::Immediately);
        assert_eq!(tx.bytes(), 1110 + 3 * per_event);
        // ...and then nothing more fits, whatever its size.
        assert!(!tx.has_room(1));
        // Acks and the drain marker hold no events.
        assert!(tx.push_own(Msg::Drain));
        assert_eq!(tx.bytes(), 1110 + 3 * per_event);
        assert!(matches!(rx.try_pop(), Some(Msg::Events(_))));
        assert_eq!(tx.bytes(), 510 + 2 * per_event);
        assert!(tx.has_room(1), "the worker took the first batch");
        assert!(matches!(rx.try_pop(), Some(Msg::Events(_))));
        assert!(matches!(rx.try_pop(), Some(Msg::Drain)));
        assert_eq!(tx.bytes(), 0);
    }

    #[test]
    fn the_thread_waits_for_the_worker_past_the_bound_and_says_so() {
        let (tx, rx) = ring(64, 100);
        assert_eq!(tx.push(batch(&[200])), Pushed::Immediately);
        // The producer rings the doorbell while it waits for room: arm it
        // with this thread's waker and park until it rings, which proves
        // the producer is waiting; only then take the batch it waits on.
        *rx.bell.waker.lock().unwrap() =
            Some(Waker::from(Arc::new(ThreadWaker(std::thread::current()))));
        rx.bell.armed.store(true, Ordering::SeqCst);
        let producer = std::thread::spawn(move || {
            tx.push(batch(&[50]))
                .eq(&Pushed::AfterWaiting)
                .then_some(tx)
        });
        while rx.bell.armed.load(Ordering::SeqCst) {
            std::thread::park();
        }
        assert!(matches!(rx.try_pop(), Some(Msg::Events(_))));
        let tx = producer.join().unwrap().expect("the push said it waited");
        assert!(matches!(rx.try_pop(), Some(Msg::Events(_))));
        let consumer = std::thread::spawn(move || rx);
        let rx = consumer.join().unwrap();
        assert_eq!(tx.bytes(), 0);
        // A worker that is gone never blocks the producer.
        assert_eq!(tx.push(batch(&[200])), Pushed::Immediately);
        drop(rx);
        assert_eq!(tx.push(batch(&[10])), Pushed::Closed);
    }

    #[test]
    fn a_thread_consumer_sleeps_until_a_push_or_its_timeout() {
        let (tx, rx) = ring(8, usize::MAX);
        let t = std::time::Instant::now();
        rx.wait_blocking(std::time::Duration::from_millis(30));
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(30),
            "timed out, empty"
        );
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.push(batch(&[1]))
        });
        rx.wait_blocking(std::time::Duration::from_secs(30));
        assert!(
            matches!(rx.try_pop(), Some(Msg::Events(_))),
            "woken by the push"
        );
        assert_eq!(pusher.join().unwrap(), Pushed::Immediately);
    }
}
