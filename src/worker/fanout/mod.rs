//! Ring → connection queues: the worker drains its ingest ring and, for
//! each event, appends the frame handle (a refcount bump, no copy) to every
//! matching local subscriber's queue, applying the slow-subscriber bound,
//! and records the event in its own history. Acks wake the publish requests
//! that wait for them.
//!
//! Overload is not slowness (SPEC §3). A turn of the drain task fans out at
//! most `TURN_BYTES` of frames (or `MSGS_PER_TURN` ring messages), then
//! yields so that the connections write. When a subscriber's unsent bytes
//! pass `sse.max_pending_bytes`, the worker stops fanning out — the bytes
//! are its own backlog until proven otherwise — and waits for the
//! subscriber's socket to take them. A reader that keeps up is back under
//! its bound within a millisecond or two and the fan-out resumes; one still
//! over it after `sse.slow_grace_ms` without having taken even half its
//! bound in that time has a socket that stopped taking bytes (or takes them
//! far slower than the feed: under 1 MB/s with the defaults), and only that
//! one is slow: closed, or under `conflate` conflated (and
//! from then on conflated at once, holding nobody back, until it has caught
//! up). Likewise for the worker's share of `sse.max_queued_bytes`. While
//! the worker waits, its ring fills, the sequencer waits on it,
//! acknowledgements slow down and `/publish` finally answers 503: a burst
//! slows the publishers; it does not disconnect healthy subscribers.
//!
//! Memory: a subscriber holds at most its bound plus one frame (the event
//! that crossed it goes to every subscriber of that event before the
//! worker stops), plus its catch-up.
//!
//! Measured (`cargo bench --bench fanout`, two interleaved runs on
//! 2026-11-29): offering one 100 B frame to 10^3 / 10^4 / 10^5 queues takes
//! 44-50 µs / 0.52-0.61 ms / 5.2-6.3 ms, 17-22 M subscribers/s
//! (`fanout/enqueue_shared_bytes/*`), against 10-11 M/s for a copy per
//! subscriber (`fanout/naive_copy_per_subscriber`). End to end, bursts and
//! holds: `scripts/compare.sh h`.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{CloseReason, Conn};
use super::local::yield_now;
use super::queued::REPLAYED;
use super::throttle::Offer;
use super::timers::TICK_MS;
use super::Worker;
use crate::config::SlowPolicy;
use crate::event::{now_ns, Event};
use crate::ops::metrics::WorkerMetrics;
use crate::sequencer::ring::{Msg, RingRx};

/// Ring messages handled before the drain task yields.
pub(crate) const MSGS_PER_TURN: usize = 64;

/// Frame bytes queued (over all subscribers) before the drain task yields,
/// so that connections write between slices of a burst.
const TURN_BYTES: usize = 1 << 20;

/// Outcome of offering an event to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Yes,
    /// Queued, and now over `sse.max_pending_bytes`: the worker must hold
    /// its fan-out back until this subscriber catches up or is judged slow.
    Backlogged,
    /// Already queued through another pattern (or older than what was sent).
    Duplicate,
    /// Held by the subscription's `max_rate` until its topic's interval
    /// ends (replacing, and skipping, any event held before).
    Held,
    /// The connection is closing.
    Closed,
    /// Slow (over the bound for `sse.slow_grace_ms`, or conflation could not
    /// bring it under half the bound): the connection was closed.
    Slow,
}

/// The per-subscriber bound and what happens when it is hit.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// `sse.max_pending_bytes`.
    pub max_pending: usize,
    /// `sse.slow_policy`.
    pub policy: SlowPolicy,
    /// `sse.slow_grace_ms` in timer ticks: how long a subscriber may stay
    /// past `max_pending` before it is slow.
    pub grace_ticks: u64,
}

impl Bound {
    /// Most bytes one write takes from the queue (it always takes at least
    /// a frame): a quarter of the bound. A write waits on a full socket for
    /// as long as the subscriber does not read, and conflation cannot reach
    /// what it holds; with the cap, a conflated subscriber (queue at most
    /// half the bound) is a quarter under its bound, so the next conflation
    /// comes only after that many new bytes: amortised O(1) per event.
    pub(crate) fn write_cap(self) -> usize {
        self.max_pending / 4
    }
}

/// Offers `ev` to `conn` within `bound` at tick `now`.
///
/// Under the bound the event is queued. Past it the event is queued too and
/// the answer is `Backlogged`, until the subscriber has been over the bound
/// for `sse.slow_grace_ms`: then it is slow. A slow subscriber is closed
/// under `disconnect`; under `conflate` only the newest pending event per
/// topic is kept, and if that does not bring the queue (a write in flight
/// aside: see [`Bound::write_cap`]) under half the bound — too many
/// distinct topics pending — it is closed too.
pub fn enqueue(
    conn: &Conn,
    ev: &Event,
    bound: Bound,
    now: u64,
    metrics: &WorkerMetrics,
) -> Enqueued {
    if conn.closed().is_some() {
        return Enqueued::Closed;
    }
    if !conn.claim_id(ev.id) {
        return Enqueued::Duplicate;
    }
    if conn.is_throttled() {
        match conn.throttle_offer(&ev.topic, &ev.frame, now_ns()) {
            Offer::Now => {}
            Offer::Held => return Enqueued::Held,
            Offer::Replaced => {
                metrics.throttled.fetch_add(1, Relaxed);
                return Enqueued::Held;
            }
        }
    }
    let conflate = bound.policy == SlowPolicy::Conflate;
    conn.push_event(ev, conflate.then(|| ev.topic.clone()));
    match conn.over_bound_for(bound.max_pending, now) {
        None => Enqueued::Yes,
        Some(_) if conflate && conn.is_conflating() => judge_slow(conn, bound, metrics),
        Some(ticks) if ticks >= bound.grace_ticks => judge_slow(conn, bound, metrics),
        Some(_) => Enqueued::Backlogged,
    }
}

/// Applies the slow policy to `conn`, which is over its bound and slow.
fn judge_slow(conn: &Conn, bound: Bound, metrics: &WorkerMetrics) -> Enqueued {
    // A compressed stream's queue holds compressed pieces that refer to
    // each other: none can be dropped, so it is closed (and resumes).
    if bound.policy == SlowPolicy::Conflate && !conn.is_compressed() {
        let done = conn.conflate();
        metrics.conflated.fetch_add(done.dropped, Relaxed);
        if done.queued_bytes <= bound.max_pending / 2 {
            conn.set_conflating();
            return Enqueued::Yes;
        }
    }
    metrics.slow_disconnects.fetch_add(1, Relaxed);
    tracing::info!(
        conn = conn.id,
        request_id = %conn.request_id(),
        pending = conn.pending(),
        "closing slow subscriber: over sse.max_pending_bytes and its socket is not taking the bytes"
    );
    conn.kill(CloseReason::Slow);
    Enqueued::Slow
}

/// A ring message of events partly fanned out: the rest waits for the next
/// turn.
struct Cursor {
    events: Arc<[Event]>,
    next: usize,
}

/// What one call of [`Worker::fan_out`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slice {
    /// Events taken from the front.
    pub(crate) taken: usize,
    /// Frame bytes queued over all subscribers.
    pub(crate) queued: usize,
    /// Some subscriber went over its bound: hold the fan-out back.
    pub(crate) backlogged: bool,
}

impl Worker {
    /// The slow-subscriber bound from the configuration.
    pub(crate) fn bound(&self) -> Bound {
        Bound {
            max_pending: self.shared.cfg.sse.max_pending_bytes,
            policy: self.shared.cfg.sse.slow_policy,
            grace_ticks: self.timers.ticks(self.shared.cfg.sse.slow_grace_ms),
        }
    }

    /// Fans out events from the front of `events` at tick `now` until about
    /// `max_bytes` of frames are queued over all subscribers or a subscriber
    /// goes over its bound (at least one event is taken, and an event always
    /// reaches all its subscribers); records them in history.
    pub(crate) fn fan_out(&self, events: &[Event], max_bytes: usize, now: u64) -> Slice {
        let bound = self.bound();
        let mut slice = Slice {
            taken: 0,
            queued: 0,
            backlogged: false,
        };
        {
            let subs = self.subs.borrow();
            let conns = self.conns.borrow();
            let mut backlog = self.backlog.borrow_mut();
            for ev in events {
                subs.for_each_match(&ev.topic, |k| {
                    let Some(c) = conns.get(k as usize) else {
                        return;
                    };
                    match enqueue(c, ev, bound, now, &self.metrics) {
                        Enqueued::Yes => slice.queued += ev.frame.len(),
                        Enqueued::Backlogged => {
                            slice.queued += ev.frame.len();
                            slice.backlogged = true;
                            backlog.push(c.clone());
                        }
                        Enqueued::Held => {}
                        Enqueued::Duplicate | Enqueued::Closed | Enqueued::Slow => {}
                    }
                    if c.is_throttled() {
                        self.timers.arm_throttle(c);
                    }
                });
                slice.taken += 1;
                if slice.backlogged || slice.queued >= max_bytes {
                    break;
                }
            }
        }
        if slice.taken > 0 {
            self.last_seen.set(events[slice.taken - 1].id);
            let mut h = self.history.borrow_mut();
            h.append(&events[..slice.taken], now_ns());
            self.metrics.history_bytes.store(h.bytes() as u64, Relaxed);
        }
        if let Some(line) = &self.delay_line {
            let dropped = line.borrow_mut().push(&events[..slice.taken]);
            if !dropped.is_empty() {
                self.resync_delayed(&dropped);
            }
            self.release_delayed();
        }
        slice
    }

    /// Releases to the delayed subscribers every event that has come of
    /// age (`auth.delay_ms`), in id order, sharing the frames already
    /// encoded. Runs on every timer tick and after every fan-out.
    pub(crate) fn release_delayed(&self) {
        let Some(line) = &self.delay_line else {
            return;
        };
        let due = line.borrow_mut().due(now_ns());
        let subs = self.delayed_subs.borrow();
        if due.is_empty() || subs.is_empty() {
            return;
        }
        let conns = self.conns.borrow();
        let (bound, now) = (self.bound(), self.now_tick());
        let mut backlog = self.backlog.borrow_mut();
        for ev in due {
            // A delayed event is not a publish-to-write latency sample.
            let ev = Event {
                born_ns: REPLAYED,
                ..ev
            };
            subs.for_each_match(&ev.topic, |k| {
                if let Some(c) = conns.get(k as usize) {
                    match enqueue(c, &ev, bound, now, &self.metrics) {
                        Enqueued::Yes | Enqueued::Held => c.gap_closed(),
                        Enqueued::Backlogged => {
                            c.gap_closed();
                            backlog.push(c.clone());
                        }
                        Enqueued::Duplicate | Enqueued::Closed | Enqueued::Slow => {}
                    }
                    if c.is_throttled() {
                        self.timers.arm_throttle(c);
                    }
                }
            });
        }
        if !backlog.is_empty() {
            // The ring drain holds back for them, as for any backlog.
            self.inbox.notify();
        }
    }

    /// `history.max_bytes` pushed `dropped` out of the delay line before
    /// their time: every delayed subscriber they would have reached gets
    /// `resync` (`history_expired`), never a silent gap — once per gap: a
    /// subscriber told already, and sent nothing since, is not told again.
    fn resync_delayed(&self, dropped: &[Event]) {
        let subs = self.delayed_subs.borrow();
        let conns = self.conns.borrow();
        let mut hit: Vec<u32> = Vec::new();
        for ev in dropped {
            subs.for_each_match(&ev.topic, |k| {
                if conns.get(k as usize).is_some_and(|c| c.last_id() < ev.id) {
                    hit.push(k);
                }
            });
        }
        hit.sort_unstable();
        hit.dedup();
        for k in hit {
            if let Some(c) = conns
                .get(k as usize)
                .filter(|c| c.closed().is_none() && c.report_gap())
            {
                tracing::debug!(conn = c.id, request_id = %c.request_id(), "delayed events evicted by history.max_bytes: resync");
                self.metrics.resyncs.fetch_add(1, Relaxed);
                c.push_raw(crate::frame::resync("history_expired"));
            }
        }
    }

    /// Re-judges the subscribers the fan-out is held back for at tick
    /// `now`: those back under their bound (or closed) leave the backlog,
    /// those over it for `sse.slow_grace_ms` are slow. True when the backlog
    /// is empty.
    fn settle_backlog(&self, now: u64) -> bool {
        let bound = self.bound();
        self.backlog.borrow_mut().retain(|c| {
            if c.closed().is_some() {
                return false;
            }
            match c.over_bound_for(bound.max_pending, now) {
                None => false,
                Some(ticks) if ticks >= bound.grace_ticks => {
                    judge_slow(c, bound, &self.metrics);
                    false
                }
                Some(_) => true,
            }
        });
        self.backlog.borrow().is_empty()
    }

    /// Past its share of `sse.max_queued_bytes` for `sse.slow_grace_ms`, the
    /// worker closes (or conflates) subscribers whose sockets are full,
    /// largest queues first, down to 90% of the share. Subscribers whose
    /// sockets take bytes are never closed for the budget.
    fn enforce_budget(&self, bound: Bound) {
        let mut by_size: Vec<(usize, Rc<Conn>)> = self
            .conns
            .borrow()
            .iter()
            .filter(|(_, c)| c.closed().is_none() && c.pending() > 0 && c.socket_full())
            .map(|(_, c)| (c.pending(), c.clone()))
            .collect();
        by_size.sort_by_key(|e| std::cmp::Reverse(e.0));
        let target = self.low_water();
        for (_, c) in by_size {
            if self.pending.get() <= target {
                break;
            }
            // A compressed stream's pieces refer to each other: never
            // dropped, so it is closed instead.
            if bound.policy == SlowPolicy::Conflate && !c.is_compressed() {
                self.metrics
                    .conflated
                    .fetch_add(c.conflate().dropped, Relaxed);
                c.set_conflating();
                if self.pending.get() <= target {
                    break;
                }
            }
            self.metrics.slow_disconnects.fetch_add(1, Relaxed);
            tracing::info!(
                conn = c.id,
                request_id = %c.request_id(),
                pending = c.pending(),
                "closing subscriber: sse.max_queued_bytes reached and its socket is full, largest queues first"
            );
            c.kill(CloseReason::Slow);
        }
    }

    /// Unsent bytes under which a fan-out held back for the budget resumes:
    /// 90% of the share.
    pub(crate) fn low_water(&self) -> usize {
        self.pending_budget / 10 * 9
    }

    /// Holds the fan-out back while subscribers are over their bound or the
    /// worker is over its share of `sse.max_queued_bytes`, re-judging on
    /// every write progress and every tick. The ring is not drained
    /// meanwhile: that is the back-pressure on publishers.
    async fn hold_back(&self) {
        let over_budget_since = self.now_tick();
        let mut counted = false;
        loop {
            let now = self.now_tick();
            let settled = self.settle_backlog(now);
            let mut in_budget = self.pending.get() <= self.pending_budget;
            if !in_budget && now.saturating_sub(over_budget_since) >= self.bound().grace_ticks {
                self.enforce_budget(self.bound());
                in_budget = self.pending.get() <= self.low_water();
            }
            if settled && in_budget {
                return;
            }
            if !counted {
                counted = true;
                self.metrics.fanout_paused.fetch_add(1, Relaxed);
            }
            monoio::select! {
                _ = self.room.notified() => {}
                _ = monoio::time::sleep(Duration::from_millis(TICK_MS)) => {}
            }
        }
    }

    fn handle(&self, msg: Msg) -> Option<Cursor> {
        match msg {
            Msg::Events(events) => {
                if let Some(first) = events.first() {
                    let now = crate::event::now_ns();
                    self.metrics
                        .stage_ring
                        .observe_ns(now.saturating_sub(first.born_ns));
                }
                return Some(Cursor { events, next: 0 });
            }
            Msg::Ack {
                token,
                first,
                count,
            } => {
                if let Some(cell) = self.acks.get(token) {
                    cell.complete((first, count));
                }
            }
            Msg::Drain => self.begin_drain(),
            Msg::Epoch => self.new_epoch(),
            Msg::Reply { token, reply } => {
                if let Some(cell) = self.replies.get(token) {
                    cell.put(*reply);
                }
            }
        }
        None
    }
}

/// The worker's ring-drain task; runs for the worker's life. Each turn
/// fans out up to `TURN_BYTES` or `MSGS_PER_TURN` messages, then yields;
/// a turn that left subscribers over their bound is followed by a hold.
pub(crate) async fn drain_ring(w: Rc<Worker>, rx: RingRx) {
    let mut cursor: Option<Cursor> = None;
    loop {
        if cursor.is_none() {
            monoio::select! {
                _ = rx.wait() => {}
                _ = w.inbox.notified() => {}
            }
        }
        if !w.backlog.borrow().is_empty() || w.pending.get() > w.pending_budget {
            // The same condition as the first two of `fanout_behind`.
            w.hold_back().await;
        }
        let mut budget = TURN_BYTES;
        let mut msgs = 0;
        while budget > 0 && msgs < MSGS_PER_TURN {
            let Some(cur) = cursor.as_mut() else {
                match rx.try_pop() {
                    Some(msg) => {
                        msgs += 1;
                        w.storm_gate.note_live();
                        cursor = w.handle(msg);
                        continue;
                    }
                    None => break,
                }
            };
            let slice = w.fan_out(&cur.events[cur.next..], budget, w.now_tick());
            cur.next += slice.taken;
            budget = budget.saturating_sub(slice.queued);
            if cur.next == cur.events.len() {
                if let Some(first) = cur.events.first() {
                    let now = crate::event::now_ns();
                    w.metrics
                        .stage_fanout
                        .observe_ns(now.saturating_sub(first.born_ns));
                }
                cursor = None;
            }
            if slice.backlogged {
                break;
            }
        }
        // A busy worker may not reach its timers for a while.
        w.flush.poll();
        yield_now().await;
    }
}

#[cfg(test)]
mod tests;
