//! One connection's state, shared (worker-locally, `Rc`) between its task,
//! the fan-out and the timer wheel: the queue of frame handles waiting to be
//! written, the byte count that bounds it, the deadlines, and the waker of
//! the task that writes. `!Send` by construction.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::local::Oneshot;

/// `Queued::born_ns` of an event replayed from history: counted as a
/// delivery, not as a publish-to-write latency sample.
pub const REPLAYED: u64 = u64::MAX;

/// A frame handle in a connection's queue.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The shared frame bytes (refcounted, never copied per subscriber).
    pub frame: Bytes,
    /// Sequencing time of an event ([`crate::event::now_ns`]); 0 for
    /// non-event bytes (response head, heartbeat, retry), which are not
    /// counted as deliveries.
    pub born_ns: u64,
    /// The event's topic, kept only under the conflate policy (so the
    /// default path pays no refcount for it).
    pub topic: Option<Arc<str>>,
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The request head did not arrive within `limits.header_timeout_ms`.
    HeaderTimeout,
    /// Its queue passed `sse.max_pending_bytes`.
    Slow,
    /// It accepted no bytes for `sse.write_stall_ms`.
    Stall,
    /// The server is shutting down and this connection has nothing to flush.
    Shutdown,
}

impl CloseReason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header timeout",
            CloseReason::Slow => "slow subscriber: max_pending_bytes exceeded",
            CloseReason::Stall => "write stalled",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// What phase a connection is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (or reading) a request.
    Request,
    /// Handling a request (reading its body, waiting for the sequencer).
    Busy,
    /// An event stream.
    Stream,
}

/// The shared state of one connection.
pub struct Conn {
    /// Process-unique id, on every log line about this connection.
    pub id: u64,
    /// Slab key in the worker's connection table.
    pub key: u32,
    /// Distinguishes this connection from a later one that reuses `key`, so
    /// a timer entry left behind never touches a stranger.
    pub gen: u32,
    /// Current phase.
    pub phase: Cell<Phase>,
    /// Frames waiting for the next vectored write.
    pub queue: RefCell<VecDeque<Queued>>,
    /// Unsent bytes: the queue plus what a write in flight has not sent yet.
    pending_bytes: Cell<usize>,
    /// The worker's sum of every connection's unsent bytes (for the global
    /// queue budget), kept in step with `pending_bytes`.
    worker_pending: Rc<Cell<usize>>,
    /// Highest event id queued; makes fan-out over overlapping patterns
    /// deliver each event once and never out of order.
    pub last_id: Cell<u64>,
    /// Patterns this connection is subscribed under (to unsubscribe).
    pub patterns: RefCell<Vec<Box<str>>>,
    /// Tick by which the current request head must be complete; 0 = none.
    pub header_deadline: Cell<u64>,
    /// A header timer entry is in the wheel.
    pub header_armed: Cell<bool>,
    /// Tick of the last write submission (heartbeat silence is measured from it).
    pub last_write: Cell<u64>,
    /// Tick of the last write progress, or of the write's start.
    pub last_progress: Cell<u64>,
    /// A write is in flight.
    pub writing: Cell<bool>,
    /// A stall timer entry is in the wheel.
    pub stall_armed: Cell<bool>,
    /// Shutdown asked this stream to flush, say `retry:` and close.
    pub draining: Cell<bool>,
    /// Set once the server decides to close the connection; its waiter is
    /// the connection's task, woken also when frames are queued.
    pub(crate) close: Oneshot<CloseReason>,
}

impl Conn {
    /// Fresh state for an accepted connection.
    pub fn new(id: u64, key: u32, gen: u32, now: u64, worker_pending: Rc<Cell<usize>>) -> Self {
        Conn {
            id,
            key,
            gen,
            phase: Cell::new(Phase::Request),
            queue: RefCell::new(VecDeque::new()),
            pending_bytes: Cell::new(0),
            worker_pending,
            last_id: Cell::new(0),
            patterns: RefCell::new(Vec::new()),
            header_deadline: Cell::new(0),
            header_armed: Cell::new(false),
            last_write: Cell::new(now),
            last_progress: Cell::new(now),
            writing: Cell::new(false),
            stall_armed: Cell::new(false),
            draining: Cell::new(false),
            close: Oneshot::default(),
        }
    }

    /// Unsent bytes: the queue plus what a write in flight has not sent yet.
    pub fn pending(&self) -> usize {
        self.pending_bytes.get()
    }

    fn add_pending(&self, n: usize) {
        self.pending_bytes.set(self.pending_bytes.get() + n);
        self.worker_pending.set(self.worker_pending.get() + n);
    }

    /// Accounts `n` bytes that left the queue (written or dropped).
    pub fn sub_pending(&self, n: usize) {
        let n = n.min(self.pending_bytes.get());
        self.pending_bytes.set(self.pending_bytes.get() - n);
        self.worker_pending.set(self.worker_pending.get() - n);
    }

    /// Frees the queue's array when it is empty (before the task goes idle),
    /// so an idle subscriber holds no queue memory.
    pub fn release_idle_queue(&self) {
        let mut q = self.queue.borrow_mut();
        if q.is_empty() && q.capacity() > 0 {
            *q = VecDeque::new();
        }
    }

    /// Wakes the connection's task if it waits.
    pub fn wake(&self) {
        self.close.nudge();
    }

    /// Appends a frame handle; the caller checked the bound.
    pub fn push(&self, q: Queued) {
        self.add_pending(q.frame.len());
        let was_empty = {
            let mut queue = self.queue.borrow_mut();
            let e = queue.is_empty();
            queue.push_back(q);
            e
        };
        if was_empty {
            self.wake();
        }
    }

    /// Marks the connection for closing, drops what it had queued (so a
    /// closed subscriber holds no memory) and wakes its task.
    pub fn kill(&self, why: CloseReason) {
        let dropped: usize = self
            .queue
            .borrow_mut()
            .drain(..)
            .map(|q| q.frame.len())
            .sum();
        self.sub_pending(dropped);
        self.close.complete(why);
    }

    /// Keeps only the newest queued event of each topic (non-event bytes
    /// stay), preserving order; returns how many events were dropped. Frames
    /// already handed to a write in flight are not touched: they are older
    /// than anything queued, so nothing stale can follow a newer value.
    pub fn conflate(&self) -> u64 {
        let mut q = self.queue.borrow_mut();
        let mut kept = VecDeque::with_capacity(q.len());
        let mut seen: HashSet<Arc<str>> = HashSet::new();
        let (mut dropped, mut dropped_bytes) = (0u64, 0usize);
        while let Some(item) = q.pop_back() {
            match &item.topic {
                Some(t) if !seen.insert(t.clone()) => {
                    dropped += 1;
                    dropped_bytes += item.frame.len();
                }
                _ => kept.push_front(item),
            }
        }
        *q = kept;
        self.sub_pending(dropped_bytes);
        dropped
    }

    /// Waits until the connection has frames queued, is being closed or
    /// has been asked to drain.
    pub async fn work(&self) {
        self.close
            .wait_or(|| self.draining.get() || !self.queue.borrow().is_empty())
            .await;
    }

    /// Waits until the connection is being closed.
    pub async fn killed(&self) -> CloseReason {
        self.close.wait().await
    }

    /// Queues raw non-event bytes (response head, `retry:`, resync).
    pub fn push_raw(&self, bytes: Bytes) {
        self.push(Queued {
            frame: bytes,
            born_ns: 0,
            topic: None,
        });
    }
}
