//! One connection's state, shared (worker-locally, `Rc`) between its task,
//! the fan-out and the timer wheel: the queue of frame handles waiting to be
//! written, the byte count that bounds it, the deadlines, and the waker of
//! the task that writes. `!Send` by construction.
//!
//! The fields are private: the rules that tie them together — when a
//! heartbeat is due, what a write in flight means for the stall clock, how a
//! deadline is armed and disarmed, what draining and closing change — are
//! the methods below, each stated once. The timer wheel
//! (`timers.rs`) only asks them what a fired entry means.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::batch::Batch;
use super::local::Oneshot;
use super::spare;
use crate::frame::HEARTBEAT;

/// `Queued::born_ns` of an event replayed from history: counted as a
/// delivery, not as a publish-to-write latency sample.
pub(crate) const REPLAYED: u64 = u64::MAX;

/// A frame handle in a connection's queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// The shared frame bytes (refcounted, never copied per subscriber).
    pub(crate) frame: Bytes,
    /// Sequencing time of an event ([`crate::event::now_ns`]); 0 for
    /// non-event bytes (response head, heartbeat, retry), which are not
    /// counted as deliveries.
    pub(crate) born_ns: u64,
    /// The event's topic, kept only under the conflate policy (so the
    /// default path pays no refcount for it).
    pub(crate) topic: Option<Arc<str>>,
}

/// What [`Conn::conflate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conflated {
    /// Events dropped.
    pub(crate) dropped: u64,
    /// Bytes left in the queue, not counting a write in flight.
    pub(crate) queued_bytes: usize,
}

/// [`Conn::request_id`], written without allocating.
pub(crate) struct RequestId<'a>(&'a Conn);

impl std::fmt::Display for RequestId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.0;
        let proxy = c.proxy_request_id.take();
        let r = match &proxy {
            Some(id) => f.write_str(id),
            None => write!(f, "{}", c.id),
        };
        c.proxy_request_id.set(proxy);
        r
    }
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
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
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) enum Phase {
    /// Waiting for (or reading) a request.
    Request,
    /// Handling a request (reading its body, waiting for the sequencer).
    Busy,
    /// An event stream.
    Stream,
}

/// What a fired header or stall timer entry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The deadline no longer applies (disarmed, no write in flight): the
    /// entry is let go.
    Off,
    /// The deadline has passed: the connection is to be closed.
    Passed,
    /// The deadline moved later: the entry goes back in the wheel at this
    /// tick.
    Rearm(u64),
}

/// What a fired heartbeat timer entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    /// The connection is closing: the heartbeat cycle ends.
    Stop,
    /// A heartbeat frame was queued; the next check is at `next`.
    Sent {
        /// Tick of the next check.
        next: u64,
    },
    /// Nothing queued; the next check is at `at`.
    Wait {
        /// Tick of the next check.
        at: u64,
    },
}

/// The shared state of one connection.
///
/// `repr(C)`, the fields in the order the fan-out and the write loop touch
/// them: with 10k connections a connection is cold when an event reaches it,
/// and queueing a frame then reads the first ~150 bytes only (close state,
/// last id, queue, the byte counts and the slow clock) instead of lines
/// spread over the whole struct.
#[repr(C)]
pub struct Conn {
    /// Set once the server decides to close the connection; its waiter is
    /// the connection's task, woken also when frames are queued.
    close: Oneshot<CloseReason>,
    /// Highest event id queued; makes fan-out over overlapping patterns
    /// deliver each event once and never out of order.
    last_id: Cell<u64>,
    /// Frames waiting for the next vectored write.
    queue: RefCell<VecDeque<Queued>>,
    /// Unsent bytes: the queue plus what a write in flight has not sent yet.
    pending_bytes: Cell<usize>,
    /// The worker's sum of every connection's unsent bytes (for the global
    /// queue budget), kept in step with `pending_bytes`.
    worker_pending: Rc<Cell<usize>>,
    /// While the unsent bytes are over `sse.max_pending_bytes`: the tick
    /// the slow clock started and `sent_total` then. The clock restarts
    /// whenever the socket has taken half the bound since, so only a
    /// subscriber that stops taking bytes (or takes them far slower than
    /// the feed) runs out of grace.
    over_since: Cell<Option<(u64, u64)>>,
    /// Bytes this connection's socket has taken, in all.
    sent_total: Cell<u64>,
    /// Judged slow under `conflate`: further events past the bound are
    /// conflated at once, without holding the worker back again, until the
    /// subscriber has caught up completely.
    conflating: Cell<bool>,
    /// A write is in flight: no heartbeat is queued behind it, and only then
    /// can the write stall.
    writing: Cell<bool>,
    /// The last write completed short: the socket took less than it was
    /// offered, so its buffer is full.
    short_write: Cell<bool>,
    /// A stall timer entry is in the wheel, so each write does not add one.
    stall_armed: Cell<bool>,
    /// Shutdown asked this stream to flush, say `retry:` and close.
    draining: Cell<bool>,
    /// Bytes the write in flight offered the socket.
    offered: Cell<usize>,
    /// Tick of the last write submission (heartbeat silence is measured from it).
    last_write: Cell<u64>,
    /// Tick of the last write progress, or of the write's start (the stall
    /// clock runs from it).
    last_progress: Cell<u64>,
    /// Process-unique id, on every log line about this connection.
    pub(crate) id: u64,
    /// Slab key in the worker's connection table.
    pub(crate) key: u32,
    /// Distinguishes this connection from a later one that reuses `key`, so
    /// a timer entry left behind never touches a stranger.
    pub(crate) gen: u32,
    /// What the connection is doing; shutdown treats each phase differently.
    phase: Cell<Phase>,
    /// The proxy's `X-Request-ID` for the current request, when it sent a
    /// sane one; else the id is `id` (see [`Conn::request_id`]).
    proxy_request_id: Cell<Option<Box<str>>>,
    /// Patterns this connection is subscribed under (to unsubscribe).
    patterns: RefCell<Vec<Box<str>>>,
    /// Tick by which the current request head must be complete; 0 = none.
    header_deadline: Cell<u64>,
    /// A header timer entry is in the wheel, so re-arming only moves the
    /// deadline instead of adding an entry per request.
    header_armed: Cell<bool>,
    /// The patterns are in the worker's delayed table (`subscribe_delayed`).
    delayed: Cell<bool>,
    /// A delayed subscriber was sent `resync` for events the byte cap
    /// pushed out, and no event since: a further loss extends the same
    /// gap and is not announced again.
    gap_reported: Cell<bool>,
    /// Tick at which the stream's token expires; 0 = no token.
    expires_at: Cell<u64>,
    /// A token-expiry entry is in the wheel.
    expiry_armed: Cell<bool>,
}

impl Conn {
    /// Adopts the proxy's request id for the current request (or drops the
    /// previous one).
    pub(crate) fn set_request_id(&self, from_proxy: Option<&str>) {
        self.proxy_request_id.set(from_proxy.map(Box::from));
    }

    /// The id answered as `X-Request-ID` and logged as `request_id`: the
    /// proxy's, else this connection's own id. Displayed in place, no copy.
    pub(crate) fn request_id(&self) -> RequestId<'_> {
        RequestId(self)
    }

    /// Fresh state for an accepted connection.
    pub fn new(id: u64, key: u32, gen: u32, now: u64, worker_pending: Rc<Cell<usize>>) -> Self {
        Conn {
            id,
            key,
            gen,
            phase: Cell::new(Phase::Request),
            proxy_request_id: Cell::new(None),
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
            offered: Cell::new(0),
            short_write: Cell::new(false),
            over_since: Cell::new(None),
            sent_total: Cell::new(0),
            conflating: Cell::new(false),
            stall_armed: Cell::new(false),
            draining: Cell::new(false),
            delayed: Cell::new(false),
            gap_reported: Cell::new(false),
            expires_at: Cell::new(0),
            expiry_armed: Cell::new(false),
            close: Oneshot::default(),
        }
    }

    /// What the connection is doing.
    pub(crate) fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Moves the connection to `phase`.
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.set(phase);
    }

    /// Unsent bytes: the queue plus what a write in flight has not sent yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending_bytes.get()
    }

    fn add_pending(&self, n: usize) {
        self.pending_bytes.set(self.pending_bytes.get() + n);
        self.worker_pending.set(self.worker_pending.get() + n);
    }

    /// Accounts `n` bytes that left the queue (written or dropped).
    fn sub_pending(&self, n: usize) {
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

    /// Wakes the connection's task if it waits.
    fn wake(&self) {
        self.close.nudge();
    }

    /// Appends a frame handle; the caller checked the bound.
    pub(crate) fn push(&self, q: Queued) {
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

    /// Records event `id` as queued; false (nothing recorded) when an event
    /// with this id or a later one was queued already — through another
    /// pattern, or by the catch-up.
    pub(crate) fn claim_id(&self, id: u64) -> bool {
        if id <= self.last_id.get() {
            return false;
        }
        self.last_id.set(id);
        true
    }

    /// Highest event id queued so far.
    pub(crate) fn last_id(&self) -> u64 {
        self.last_id.get()
    }

    /// Marks every event up to `id` as already queued: the catch-up covered
    /// them, so the live stream starts after it.
    pub(crate) fn set_last_id(&self, id: u64) {
        self.last_id.set(id);
    }

    /// Keeps the patterns the connection was subscribed under, for
    /// unsubscribing at the end.
    pub(crate) fn set_patterns(&self, patterns: Vec<Box<str>>, delayed: bool) {
        *self.patterns.borrow_mut() = patterns;
        self.delayed.set(delayed);
    }

    /// Records that a gap in the delayed view was announced; false when
    /// it already was and no event has been queued since.
    pub(crate) fn report_gap(&self) -> bool {
        !self.gap_reported.replace(true)
    }

    /// An event was queued after an announced gap.
    pub(crate) fn gap_closed(&self) {
        self.gap_reported.set(false);
    }

    /// True when the patterns are in the worker's delayed table.
    pub(crate) fn is_delayed(&self) -> bool {
        self.delayed.get()
    }

    /// Moves the token-expiry deadline to tick `at`; true when the caller
    /// must put an entry in the wheel (none is there yet).
    pub(crate) fn arm_expiry(&self, at: u64) -> bool {
        self.expires_at.set(at.max(1));
        !self.expiry_armed.replace(true)
    }

    /// Fired token-expiry entry at tick `now`.
    pub(crate) fn on_expiry_timer(&self, now: u64) -> Expiry {
        let at = self.expires_at.get();
        if at == 0 || self.closed().is_some() || self.is_draining() {
            self.expiry_armed.set(false);
            Expiry::Off
        } else if now >= at {
            self.expiry_armed.set(false);
            Expiry::Passed
        } else {
            Expiry::Rearm(at)
        }
    }

    /// How many patterns the connection is subscribed under.
    pub(crate) fn pattern_count(&self) -> usize {
        self.patterns.borrow().len()
    }

    /// Hands over the patterns to unsubscribe, leaving none.
    pub(crate) fn take_patterns(&self) -> Vec<Box<str>> {
        std::mem::take(&mut *self.patterns.borrow_mut())
    }

    /// Why the server is closing the connection, once it is.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.close.get()
    }

    /// Marks the connection for closing, drops what it had queued (so a
    /// closed subscriber holds no memory) and wakes its task. The first
    /// reason stays.
    pub(crate) fn kill(&self, why: CloseReason) {
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

    /// Asks an event stream to flush what it has, say `retry:` and close.
    pub(crate) fn start_drain(&self) {
        self.draining.set(true);
        self.wake();
    }

    /// True once shutdown asked this stream to drain.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Waits until the connection has frames queued, is being closed or
    /// has been asked to drain.
    pub(crate) async fn work(&self) {
        self.close
            .wait_or(|| self.draining.get() || !self.queue.borrow().is_empty())
            .await;
    }

    /// Waits until the connection is being closed.
    pub(crate) async fn killed(&self) -> CloseReason {
        self.close.wait().await
    }

    /// Starts (or moves) the request-head deadline to tick `deadline`
    /// (never 0, which means disarmed). True when the caller must put a
    /// header entry in the wheel: none is there yet. An entry already there
    /// re-arms itself at the moved deadline when it fires.
    pub(crate) fn arm_header(&self, deadline: u64) -> bool {
        debug_assert!(deadline > 0, "a header deadline of 0 means disarmed");
        self.header_deadline.set(deadline);
        !self.header_armed.replace(true)
    }

    /// Stops the request-head deadline; the wheel entry is let go when it
    /// fires.
    pub(crate) fn disarm_header(&self) {
        self.header_deadline.set(0);
    }

    /// The header entry fired at tick `now`.
    pub(crate) fn on_header_timer(&self, now: u64) -> Expiry {
        let due = self.header_deadline.get();
        let expiry = if due == 0 {
            Expiry::Off
        } else if now >= due {
            Expiry::Passed
        } else {
            Expiry::Rearm(due)
        };
        self.header_armed.set(matches!(expiry, Expiry::Rearm(_)));
        expiry
    }

    /// Tick at which a stream silent since its last write needs a
    /// heartbeat, `every` ticks being `sse.heartbeat_ms`.
    pub(crate) fn heartbeat_at(&self, every: u64) -> u64 {
        self.last_write.get() + every
    }

    /// The heartbeat entry fired at tick `now`: after `every` ticks of
    /// silence a heartbeat frame is queued — only when nothing is being
    /// written and the queue is empty, since any frame keeps the stream
    /// alive as well — and the next check comes `every` ticks later.
    pub(crate) fn on_heartbeat_timer(&self, now: u64, every: u64) -> Heartbeat {
        if self.closed().is_some() {
            return Heartbeat::Stop;
        }
        let due = self.heartbeat_at(every);
        if now < due {
            return Heartbeat::Wait { at: due };
        }
        let next = now + every;
        if self.writing.get() || self.has_queued() {
            return Heartbeat::Wait { at: next };
        }
        self.push_raw(HEARTBEAT.clone());
        Heartbeat::Sent { next }
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

    /// Tick at which a write without progress since `last_progress` has
    /// stalled, `limit` ticks being `sse.write_stall_ms`.
    fn stall_at(&self, limit: u64) -> u64 {
        self.last_progress.get() + limit
    }

    /// Arms the stall check of a write in flight: the tick to put a stall
    /// entry in the wheel at, or `None` when one is there already (it
    /// re-arms itself from the last progress when it fires).
    pub(crate) fn arm_stall(&self, limit: u64) -> Option<u64> {
        (!self.stall_armed.replace(true)).then(|| self.stall_at(limit))
    }

    /// The stall entry fired at tick `now`: a write in flight that made no
    /// progress for `limit` ticks has stalled.
    pub(crate) fn on_stall_timer(&self, now: u64, limit: u64) -> Expiry {
        let expiry = if !self.writing.get() {
            Expiry::Off
        } else if now >= self.stall_at(limit) {
            Expiry::Passed
        } else {
            Expiry::Rearm(self.stall_at(limit))
        };
        self.stall_armed.set(matches!(expiry, Expiry::Rearm(_)));
        expiry
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(total: &Rc<Cell<usize>>) -> Conn {
        Conn::new(1, 0, 1, 0, total.clone())
    }

    fn item(topic: Option<&str>, frame: &'static str) -> Queued {
        Queued {
            frame: Bytes::from_static(frame.as_bytes()),
            born_ns: topic.map_or(0, |_| 1),
            topic: topic.map(Arc::from),
        }
    }

    fn queued(c: &Conn) -> Vec<String> {
        c.queue
            .borrow()
            .iter()
            .map(|q| String::from_utf8(q.frame.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn conflate_keeps_the_newest_event_per_topic_in_order() {
        type Case = (
            &'static str,
            &'static [(Option<&'static str>, &'static str)],
            &'static [&'static str],
            u64,
        );
        let cases: &[Case] = &[
            ("empty", &[], &[], 0),
            (
                "distinct topics stay",
                &[(Some("a"), "a1"), (Some("b"), "b1")],
                &["a1", "b1"],
                0,
            ),
            (
                "newest per topic, in queue order",
                &[
                    (Some("a"), "a1"),
                    (Some("b"), "b11"),
                    (Some("a"), "a222"),
                    (Some("c"), "c1"),
                    (Some("b"), "b2"),
                ],
                &["a222", "c1", "b2"],
                2,
            ),
            (
                "non-event bytes stay where they were",
                &[
                    (None, "head"),
                    (Some("a"), "a1"),
                    (None, "beat"),
                    (Some("a"), "a22"),
                    (None, "head"),
                ],
                &["head", "beat", "a22", "head"],
                1,
            ),
        ];
        for &(name, queue, kept, dropped) in cases {
            let total = Rc::new(Cell::new(0));
            let other = conn(&total);
            other.push_raw(Bytes::from_static(b"other's bytes"));
            let c = conn(&total);
            for &(topic, frame) in queue {
                c.push(item(topic, frame));
            }
            let done = c.conflate();
            assert_eq!(done.dropped, dropped, "{name}: dropped");
            assert_eq!(queued(&c), kept, "{name}: kept");
            let kept_bytes: usize = kept.iter().map(|s| s.len()).sum();
            assert_eq!(done.queued_bytes, kept_bytes, "{name}: queued bytes");
            assert_eq!(c.pending(), kept_bytes, "{name}: conn pending");
            assert_eq!(
                total.get(),
                kept_bytes + other.pending(),
                "{name}: worker pending"
            );
        }
    }

    #[test]
    fn conflation_leaves_a_write_in_flight_alone_and_says_what_is_queued() {
        let total = Rc::new(Cell::new(0));
        let c = conn(&total);
        for frame in ["a1", "a22"] {
            c.push(item(Some("a"), frame));
        }
        let mut batch = Batch::new();
        c.begin_write(0, &mut batch, usize::MAX);
        for frame in ["a333", "a4444"] {
            c.push(item(Some("a"), frame));
        }
        let done = c.conflate();
        assert_eq!(
            done,
            Conflated {
                dropped: 1,
                queued_bytes: 5
            }
        );
        assert_eq!(queued(&c), ["a4444"]);
        assert_eq!(
            c.pending(),
            2 + 3 + 5,
            "the write in flight is still unsent"
        );
    }

    #[test]
    fn the_fields_queueing_touches_come_first() {
        use std::mem::offset_of;
        // What `push` and the slow check read ends with `sent_total`; the
        // write loop's fields follow. Both within the first 160 bytes.
        let hot_end = offset_of!(Conn, last_progress) + 8;
        assert!(hot_end <= 160, "hot fields end at {hot_end}");
        for cold in [
            offset_of!(Conn, id),
            offset_of!(Conn, patterns),
            offset_of!(Conn, expires_at),
        ] {
            assert!(
                cold >= offset_of!(Conn, last_progress),
                "a cold field among the hot ones"
            );
        }
    }

    #[test]
    fn claim_id_takes_each_id_once_and_in_order() {
        let c = conn(&Rc::new(Cell::new(0)));
        c.set_last_id(5);
        for (id, claimed) in [
            (5, false),
            (3, false),
            (6, true),
            (6, false),
            (9, true),
            (7, false),
        ] {
            assert_eq!(c.claim_id(id), claimed, "id {id}");
        }
    }

    #[test]
    fn kill_drops_the_queue_and_keeps_the_first_reason() {
        let total = Rc::new(Cell::new(0));
        let c = conn(&total);
        c.push(item(Some("a"), "a1"));
        c.push_raw(Bytes::from_static(b"raw"));
        c.kill(CloseReason::Slow);
        c.kill(CloseReason::Stall);
        assert_eq!(c.closed(), Some(CloseReason::Slow));
        assert!(!c.has_queued());
        assert_eq!((c.pending(), total.get()), (0, 0));
    }

    #[test]
    fn discard_unsent_also_forgets_a_write_in_flight() {
        let total = Rc::new(Cell::new(0));
        let c = conn(&total);
        c.push_raw(Bytes::from_static(b"0123456789"));
        let mut batch = Batch::new();
        c.begin_write(1, &mut batch, usize::MAX);
        assert!(!c.has_queued());
        assert_eq!((c.pending(), total.get()), (10, 10), "in flight is unsent");
        c.push_raw(Bytes::from_static(b"abc"));
        c.discard_unsent();
        assert!(!c.has_queued());
        assert_eq!((c.pending(), total.get()), (0, 0));
    }

    #[test]
    fn header_deadline_arms_once_and_zero_means_disarmed() {
        // (deadline armed, disarmed after, fired at) → what the entry does.
        let cases = [
            (10, false, 10, Expiry::Passed),
            (10, false, 11, Expiry::Passed),
            (10, false, 9, Expiry::Rearm(10)),
            (10, true, 11, Expiry::Off),
            (10, true, 9, Expiry::Off),
        ];
        for (deadline, disarm, now, want) in cases {
            let c = conn(&Rc::new(Cell::new(0)));
            assert!(c.arm_header(deadline), "the first arm schedules");
            assert!(!c.arm_header(deadline), "an entry is in the wheel already");
            if disarm {
                c.disarm_header();
            }
            assert_eq!(c.on_header_timer(now), want, "{deadline} {disarm} {now}");
            let entry_kept = matches!(want, Expiry::Rearm(_));
            assert_eq!(c.arm_header(20), !entry_kept, "{deadline} {disarm} {now}");
        }
        let c = conn(&Rc::new(Cell::new(0)));
        c.arm_header(10);
        c.arm_header(30);
        assert_eq!(
            c.on_header_timer(10),
            Expiry::Rearm(30),
            "a moved deadline re-arms the old entry"
        );
    }

    #[test]
    fn heartbeat_only_into_silence() {
        const EVERY: u64 = 100;
        #[derive(Clone, Copy)]
        enum Setup {
            Idle,
            Queued,
            Writing,
            /// A write started at 80 and finished.
            WroteAt80,
            Closed,
        }
        let cases = [
            (Setup::Idle, 50, Heartbeat::Wait { at: 100 }),
            (Setup::Idle, 100, Heartbeat::Sent { next: 200 }),
            (Setup::Idle, 130, Heartbeat::Sent { next: 230 }),
            (Setup::Queued, 100, Heartbeat::Wait { at: 200 }),
            (Setup::Writing, 100, Heartbeat::Wait { at: 200 }),
            (Setup::WroteAt80, 100, Heartbeat::Wait { at: 180 }),
            (Setup::WroteAt80, 180, Heartbeat::Sent { next: 280 }),
            (Setup::Closed, 100, Heartbeat::Stop),
        ];
        for (i, (setup, now, want)) in cases.into_iter().enumerate() {
            let c = conn(&Rc::new(Cell::new(0)));
            let mut batch = Batch::new();
            match setup {
                Setup::Idle => {}
                Setup::Queued => c.push_raw(Bytes::from_static(b"x")),
                Setup::Writing => {
                    c.push_raw(Bytes::from_static(b"x"));
                    c.begin_write(0, &mut batch, usize::MAX);
                }
                Setup::WroteAt80 => {
                    c.push_raw(Bytes::from_static(b"x"));
                    c.begin_write(80, &mut batch, usize::MAX);
                    c.end_write(1, 81);
                }
                Setup::Closed => c.kill(CloseReason::Shutdown),
            }
            let before = c.queue.borrow().len();
            assert_eq!(c.on_heartbeat_timer(now, EVERY), want, "case {i}");
            let added = c.queue.borrow().len() - before;
            let sent = matches!(want, Heartbeat::Sent { .. });
            assert_eq!(added, usize::from(sent), "case {i}: frames queued");
            if sent {
                assert_eq!(c.queue.borrow()[0].frame, HEARTBEAT, "case {i}");
            }
        }
    }

    #[test]
    fn stall_clock_runs_from_the_last_progress_of_a_write_in_flight() {
        const LIMIT: u64 = 30;
        // A 10-byte write starts at 0; `partial` sends 4 bytes at 20 and the
        // rest goes into a second write at 25; `done` ends the write.
        let cases = [
            (
                "no progress, before the limit",
                false,
                false,
                29,
                Expiry::Rearm(30),
            ),
            (
                "no progress, at the limit",
                false,
                false,
                30,
                Expiry::Passed,
            ),
            (
                "progress moves the deadline",
                true,
                false,
                30,
                Expiry::Rearm(50),
            ),
            (
                "stalled since the progress",
                true,
                false,
                50,
                Expiry::Passed,
            ),
            ("no write in flight", false, true, 100, Expiry::Off),
            ("finished after progress", true, true, 100, Expiry::Off),
        ];
        for (name, partial, done, now, want) in cases {
            let total = Rc::new(Cell::new(0));
            let c = conn(&total);
            let mut batch = Batch::new();
            c.push_raw(Bytes::from_static(b"0123456789"));
            c.begin_write(0, &mut batch, usize::MAX);
            assert_eq!(c.arm_stall(LIMIT), Some(30), "{name}: first arm");
            assert_eq!(c.arm_stall(LIMIT), None, "{name}: already armed");
            if partial {
                batch.advance(4, |_| {});
                c.end_write(4, 20);
                c.begin_write(25, &mut batch, usize::MAX);
                assert_eq!((c.pending(), total.get()), (6, 6), "{name}");
            }
            if done {
                c.end_write(0, 60);
            }
            assert_eq!(c.on_stall_timer(now, LIMIT), want, "{name}");
            let entry_kept = matches!(want, Expiry::Rearm(_));
            assert_eq!(c.arm_stall(LIMIT).is_some(), !entry_kept, "{name}: re-arm");
        }
    }
}
