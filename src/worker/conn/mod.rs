//! One connection's state, shared (worker-locally, `Rc`) between its task,
//! the fan-out and the timer wheel: the queue of frame handles waiting to be
//! written, the byte count that bounds it, the deadlines, and the waker of
//! the task that writes. `!Send` by construction.
//!
//! The fields are private: the rules that tie them together — when a
//! heartbeat is due, what a write in flight means for the stall clock, how a
//! deadline is armed and disarmed, what draining and closing change — are
//! methods, each stated once: the queue and its accounting in [`queue`],
//! the deadlines in [`deadlines`], the rest (phase, close, drain, ids,
//! patterns) here. The timer wheel (`timers.rs`) only asks them what a
//! fired entry means.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::local::Oneshot;
use super::queued::{Queued, REPLAYED};
use super::throttle::{Offer, Throttle};
use crate::gzip::StreamEncoder;

mod deadlines;
mod encoding;
mod queue;

pub(crate) use deadlines::{Expiry, Heartbeat};
pub(crate) use encoding::SharedGroup;

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
    /// A `max_rate` subscription: the fan-out asks `throttle` first (a
    /// flag among the hot fields, so other subscribers never touch the
    /// cold one).
    throttled: Cell<bool>,
    /// A compressed stream: `push` compresses (a hot flag beside the
    /// throttle's, so identity streams never touch the cold state).
    compressed: Cell<bool>,
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
    /// Its per-topic rate limit (`max_rate`), when it has one.
    throttle: RefCell<Option<Box<Throttle>>>,
    /// A throttle entry is in the wheel.
    throttle_armed: Cell<bool>,
    /// Its gzip state, on a compressed stream.
    gzip: RefCell<Option<Box<StreamEncoder>>>,
    /// Its topic's shared compressor, when it is a member.
    group: RefCell<Option<SharedGroup>>,
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
            throttled: Cell::new(false),
            throttle: RefCell::new(None),
            throttle_armed: Cell::new(false),
            compressed: Cell::new(false),
            gzip: RefCell::new(None),
            group: RefCell::new(None),
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

    /// Wakes the connection's task if it waits.
    fn wake(&self) {
        self.close.nudge();
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

    /// How many patterns the connection is subscribed under.
    pub(crate) fn pattern_count(&self) -> usize {
        self.patterns.borrow().len()
    }

    /// Its first pattern (a shared compressor's topic), if any.
    pub(crate) fn patterns_first(&self) -> Option<Box<str>> {
        self.patterns.borrow().first().cloned()
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

    /// Limits this stream to one event per topic every `interval_ns`
    /// (`max_rate`).
    pub(crate) fn set_throttle(&self, interval_ns: u64) {
        *self.throttle.borrow_mut() = Some(Box::new(Throttle::new(interval_ns)));
        self.throttled.set(true);
    }

    /// True for a `max_rate` subscription.
    pub(crate) fn is_throttled(&self) -> bool {
        self.throttled.get()
    }

    /// Asks the rate limit about an event of `topic` at `now_ns`
    /// ([`Offer::Now`] for an unthrottled stream).
    pub(crate) fn throttle_offer(&self, topic: &Arc<str>, frame: &Bytes, now_ns: u64) -> Offer {
        match self.throttle.borrow_mut().as_mut() {
            Some(t) => t.offer(topic, frame, now_ns),
            None => Offer::Now,
        }
    }

    /// A snapshot or catch-up event of `topic` was sent at `now_ns`.
    pub(crate) fn throttle_note_sent(&self, topic: &Arc<str>, now_ns: u64) {
        if let Some(t) = self.throttle.borrow_mut().as_mut() {
            t.note_sent(topic, now_ns);
        }
    }

    /// When the rate limit next needs the wheel, if no entry is there yet
    /// (the caller puts one in at that time).
    pub(crate) fn arm_throttle(&self) -> Option<u64> {
        if self.throttle_armed.get() {
            return None;
        }
        let due = self.throttle.borrow().as_ref()?.next_due()?;
        self.throttle_armed.set(true);
        Some(due)
    }

    /// The throttle entry fired at `now_ns`: queues what is due (the held
    /// frames, not publish-to-write latency samples) and says when to come
    /// back, if ever.
    pub(crate) fn on_throttle_timer(&self, now_ns: u64) -> Option<u64> {
        self.throttle_armed.set(false);
        if self.closed().is_some() {
            return None;
        }
        let mut out = Vec::new();
        let next = {
            let mut t = self.throttle.borrow_mut();
            let t = t.as_mut()?;
            t.release(now_ns, &mut out);
            t.next_due()
        };
        for (topic, frame) in out {
            self.push(Queued {
                frame,
                born_ns: REPLAYED,
                topic: Some(topic),
            });
        }
        if next.is_some() {
            self.throttle_armed.set(true);
        }
        next
    }
}

#[cfg(test)]
mod tests;
