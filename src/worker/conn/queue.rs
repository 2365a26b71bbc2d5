//! A connection's queue and its accounting: frame handles in, vectored
//! writes out; the unsent bytes that bound it (its own and the worker's
//! sum), the slow clock that tells a subscriber whose socket stopped
//! taking bytes from one that is merely behind, and conflation.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::Conn;
use crate::worker::batch::Batch;
use crate::worker::queued::{Queued, REPLAYED};
use crate::worker::spare;

/// What [`Conn::conflate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conflated {
    /// Events dropped.
    pub(crate) dropped: u64,
    /// Bytes left in the queue, not counting a write in flight.
    pub(crate) queued_bytes: usize,
}

impl Conn {
    /// Unsent bytes: the queue plus what a write in flight has not sent yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending_bytes.get()
    }

    pub(super) fn add_pending(&self, n: usize) {
        self.pending_bytes.set(self.pending_bytes.get() + n);
        self.worker_pending.set(self.worker_pending.get() + n);
    }

    /// Accounts `n` bytes that left the queue (written or dropped).
    pub(super) fn sub_pending(&self, n: usize) {
        let n = n.min(self.pending_bytes.get());
        self.pending_bytes.set(self.pending_bytes.get() - n);
        self.worker_pending.set(self.worker_pending.get() - n);
    }

    /// Drops every unsent byte — the queue, and in the accounting what a
    /// write in flight had not sent — once nothing will write them (the
    /// connection is gone, or a benchmark round is over).
    pub fn discard_unsent(&self) {
        self.queue.borrow_mut().clear();
        self.sub_pending(usize::MAX);
    }

    /// True when frames wait for a write.
    /// The sequencing time of the frame at the front of the queue, when it
    /// is a live event (not a heartbeat, a head, a retry or catch-up).
    pub(crate) fn front_live_born(&self) -> Option<u64> {
        self.queue
            .borrow()
            .front()
            .map(|q| q.born_ns)
            .filter(|&b| b != 0 && b != REPLAYED)
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.borrow().is_empty()
    }

    /// Gives the queue's array back when it is empty (before the task goes
    /// idle), so an idle subscriber holds no queue memory (see
    /// [`super::spare`]).
    pub(crate) fn release_idle_queue(&self) {
        let mut q = self.queue.borrow_mut();
        if q.is_empty() && q.capacity() > 0 {
            spare::give_queue(std::mem::take(&mut *q));
        }
    }

    /// Appends a frame handle; the caller checked the bound. On a
    /// compressed stream the frame is compressed here, the last step before
    /// the queue.
    pub(crate) fn push(&self, mut q: Queued) {
        if self.compressed.get() {
            q.frame = self.encode(&q.frame);
        }
        self.push_wire(q);
    }

    /// Appends wire bytes as they are: a compressed piece, or the response
    /// head and gzip header before the compressed body.
    pub(crate) fn push_wire(&self, q: Queued) {
        self.add_pending(q.frame.len());
        let was_empty = {
            let mut queue = self.queue.borrow_mut();
            let e = queue.is_empty();
            if queue.capacity() == 0 {
                *queue = spare::queue();
            }
            queue.push_back(q);
            e
        };
        if was_empty {
            self.wake();
        }
    }

    /// Queues raw non-event bytes (response head, `retry:`, resync).
    pub(crate) fn push_raw(&self, bytes: Bytes) {
        self.push(Queued {
            frame: bytes,
            born_ns: 0,
            topic: None,
        });
    }

    /// Keeps only the newest queued event of each topic (non-event bytes
    /// stay), preserving order. Frames already handed to a write in flight
    /// are not touched: they are older than anything queued, so nothing
    /// stale can follow a newer value.
    pub(crate) fn conflate(&self) -> Conflated {
        let mut q = self.queue.borrow_mut();
        let mut kept = VecDeque::with_capacity(q.len());
        let mut seen: HashSet<Arc<str>> = HashSet::new();
        let (mut dropped, mut dropped_bytes, mut kept_bytes) = (0u64, 0usize, 0usize);
        while let Some(item) = q.pop_back() {
            match &item.topic {
                Some(t) if !seen.insert(t.clone()) => {
                    dropped += 1;
                    dropped_bytes += item.frame.len();
                }
                _ => {
                    kept_bytes += item.frame.len();
                    kept.push_front(item);
                }
            }
        }
        *q = kept;
        self.sub_pending(dropped_bytes);
        Conflated {
            dropped,
            queued_bytes: kept_bytes,
        }
    }

    /// A write starts at tick `now`: the queue moves into `batch` (up to
    /// its capacity, and `max_bytes` in all). A fresh batch starts the stall
    /// clock; a batch left over from a partial write keeps the tick of its
    /// last progress.
    pub(crate) fn begin_write(&self, now: u64, batch: &mut Batch, max_bytes: usize) {
        if batch.is_empty() {
            self.last_progress.set(now);
        }
        self.offered
            .set(batch.fill(&mut self.queue.borrow_mut(), max_bytes));
        self.writing.set(true);
        self.last_write.set(now);
    }

    /// The write in flight ended at tick `now` having sent `sent` bytes
    /// (0: it failed or was abandoned); sent bytes are progress.
    pub(crate) fn end_write(&self, sent: usize, now: u64) {
        self.writing.set(false);
        self.short_write.set(sent < self.offered.get());
        if sent > 0 {
            self.sub_pending(sent);
            self.sent_total.set(self.sent_total.get() + sent as u64);
            self.last_progress.set(now);
        }
        if self.pending() == 0 {
            // Caught up: a conflating subscriber is judged afresh.
            self.conflating.set(false);
        }
    }

    /// The socket's buffer is full: the last write completed short and the
    /// next one is waiting for room.
    pub(crate) fn socket_full(&self) -> bool {
        self.writing.get() && self.short_write.get()
    }

    /// Tracks the slow clock against `max_pending` at tick `now`: starts it
    /// when the unsent bytes are over the bound, stops it when they are not,
    /// and restarts it each time the socket has taken half the bound since
    /// it started. Returns how many ticks the subscriber has been over the
    /// bound without taking that much (`None`: under the bound).
    pub(crate) fn over_bound_for(&self, max_pending: usize, now: u64) -> Option<u64> {
        if self.pending() <= max_pending {
            self.over_since.set(None);
            return None;
        }
        let sent = self.sent_total.get();
        let (since, mark) = match self.over_since.get() {
            Some((_, mark)) if sent - mark >= (max_pending / 2) as u64 => (now, sent),
            Some(clock) => clock,
            None => (now, sent),
        };
        self.over_since.set(Some((since, mark)));
        Some(now.saturating_sub(since))
    }

    /// Marks the subscriber as conflating (judged slow under `conflate`).
    pub(crate) fn set_conflating(&self) {
        self.conflating.set(true);
    }

    /// Judged slow under `conflate` and not caught up since.
    pub(crate) fn is_conflating(&self) -> bool {
        self.conflating.get()
    }

    /// Makes the socket look full (a short write, then a write waiting),
    /// for tests elsewhere in the worker.
    #[cfg(test)]
    pub(crate) fn mark_socket_full(&self) {
        self.writing.set(true);
        self.short_write.set(true);
    }

    /// A copy of the queue, for tests elsewhere in the worker.
    #[cfg(test)]
    pub(crate) fn queue_snapshot(&self) -> Vec<Queued> {
        self.queue.borrow().iter().cloned().collect()
    }
}
