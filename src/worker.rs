//! One core's loop: owns its connections, its subscription table and its
//! timer wheel, all `!Send` and touched by no other thread. Three tasks run
//! beside the connections: the accept loop, the ring drain (fan-out) and the
//! timer tick. The worker ends when it is draining and its last connection
//! has closed.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::conn::{CloseReason, Conn, Phase, Queued};
use crate::frame::HEARTBEAT;
use crate::metrics::WorkerMetrics;
use crate::runtime::Shared;
use crate::subscribe::SubTable;
use crate::timer::TimerWheel;

/// Timer resolution in milliseconds. Heartbeats and timeouts are accurate to
/// one tick; a tick costs one timer wake-up per worker, not per connection.
pub const TICK_MS: u64 = 10;

/// Wheel size in ticks: one turn covers 40.96 s, so the default heartbeat
/// and stall deadlines land within a single turn.
const WHEEL_SLOTS: usize = 4096;

/// What a wheel entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Request head (or body) must arrive.
    Header,
    /// Silence check for the heartbeat.
    Heartbeat,
    /// A write in flight must make progress.
    Stall,
}

/// A wheel entry: which connection (slab key + generation) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerRef {
    key: u32,
    gen: u32,
    kind: TimerKind,
}

/// A publish request waiting for the sequencer's acknowledgement.
#[derive(Default)]
pub struct AckCell {
    result: Cell<Option<(u64, u32)>>,
    waker: Cell<Option<Waker>>,
}

impl AckCell {
    /// Delivers the acknowledgement and wakes the waiting request.
    pub fn complete(&self, first: u64, count: u32) {
        self.result.set(Some((first, count)));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits for `(first id, count)`.
    pub async fn wait(&self) -> (u64, u32) {
        poll_fn(|cx| match self.result.get() {
            Some(r) => Poll::Ready(r),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// A set of wakers woken together (drain start, wheel became non-empty, ...).
#[derive(Debug, Default)]
pub struct LocalNotify {
    waiters: RefCell<Vec<Waker>>,
}

impl LocalNotify {
    /// Wakes everyone waiting.
    pub fn notify(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until `cond` holds, re-checking after each notification.
    /// A task already waiting is not added again, so a loop that re-creates
    /// this future (the accept loop does, once per connection) keeps the
    /// list at one entry per task instead of growing without bound.
    pub async fn until(&self, cond: impl Fn() -> bool) {
        poll_fn(|cx| {
            if cond() {
                Poll::Ready(())
            } else {
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// The worker's state, shared by its tasks through `Rc`.
pub struct Worker {
    /// Worker index (metrics label, ring index).
    pub idx: usize,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// This worker's counters.
    pub metrics: Arc<WorkerMetrics>,
    /// Every open connection of this worker.
    pub conns: RefCell<Slab<Rc<Conn>>>,
    /// Pattern → subscriber keys.
    pub subs: RefCell<SubTable>,
    /// Publish requests waiting for their ack, by token.
    pub acks: RefCell<Slab<Rc<AckCell>>>,
    /// Unsent bytes over all this worker's connections.
    pub pending: Rc<Cell<usize>>,
    /// This worker's share of `sse.max_queued_bytes`.
    pub pending_budget: usize,
    /// Highest event id this worker has fanned out: the hand-over point
    /// between a replay from history and the live stream.
    pub last_seen: Cell<u64>,
    /// Set by the Drain message; never cleared.
    pub draining: Cell<bool>,
    /// Wakes the accept loop and `finished` on drain and on last close.
    pub lifecycle: LocalNotify,
    wheel: RefCell<TimerWheel<TimerRef>>,
    wheel_filled: LocalNotify,
    start: Instant,
    next_gen: Cell<u32>,
    header_ticks: u64,
    heartbeat_ticks: u64,
    stall_ticks: u64,
}

fn ticks(ms: u64) -> u64 {
    ms.div_ceil(TICK_MS).max(1)
}

impl Worker {
    /// A worker with nothing open yet.
    pub fn new(idx: usize, shared: Arc<Shared>) -> Self {
        let cfg = &shared.cfg;
        Worker {
            idx,
            metrics: shared.workers[idx].clone(),
            conns: RefCell::new(Slab::new()),
            subs: RefCell::new(SubTable::new()),
            acks: RefCell::new(Slab::new()),
            last_seen: Cell::new(0),
            pending: Rc::new(Cell::new(0)),
            pending_budget: cfg.sse.max_queued_bytes / cfg.workers().max(1),
            draining: Cell::new(false),
            lifecycle: LocalNotify::default(),
            wheel: RefCell::new(TimerWheel::new(WHEEL_SLOTS, 0)),
            wheel_filled: LocalNotify::default(),
            start: Instant::now(),
            next_gen: Cell::new(0),
            header_ticks: ticks(cfg.limits.header_timeout_ms),
            heartbeat_ticks: ticks(cfg.sse.heartbeat_ms),
            stall_ticks: ticks(cfg.sse.write_stall_ms),
            shared,
        }
    }

    /// The current tick.
    pub fn now_tick(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 / TICK_MS
    }

    /// Adds a connection to the table.
    pub fn register(&self) -> Rc<Conn> {
        let gen = self.next_gen.get().wrapping_add(1);
        self.next_gen.set(gen);
        let id = self.shared.next_conn_id.fetch_add(1, Relaxed);
        let mut conns = self.conns.borrow_mut();
        let entry = conns.vacant_entry();
        let conn = Rc::new(Conn::new(
            id,
            entry.key() as u32,
            gen,
            self.now_tick(),
            self.pending.clone(),
        ));
        entry.insert(conn.clone());
        self.metrics.connections_active.fetch_add(1, Relaxed);
        self.metrics.connections_total.fetch_add(1, Relaxed);
        self.shared.open.fetch_add(1, Relaxed);
        conn
    }

    /// Removes a connection and every subscription it had.
    pub fn unregister(&self, conn: &Conn) {
        {
            let mut subs = self.subs.borrow_mut();
            for p in conn.patterns.borrow_mut().drain(..) {
                subs.remove(&p, conn.key);
            }
        }
        if conn.phase.get() == Phase::Stream {
            self.metrics.subscribers_active.fetch_sub(1, Relaxed);
        }
        conn.queue.borrow_mut().clear();
        conn.sub_pending(usize::MAX);
        self.conns.borrow_mut().try_remove(conn.key as usize);
        self.metrics.connections_active.fetch_sub(1, Relaxed);
        self.shared.open.fetch_sub(1, Relaxed);
        if self.draining.get() {
            self.lifecycle.notify();
        }
    }

    fn schedule(&self, conn: &Conn, at: u64, kind: TimerKind) {
        let mut wheel = self.wheel.borrow_mut();
        let was_empty = wheel.is_empty();
        wheel.insert(
            at,
            TimerRef {
                key: conn.key,
                gen: conn.gen,
                kind,
            },
        );
        drop(wheel);
        if was_empty {
            self.wheel_filled.notify();
        }
    }

    /// Starts (or restarts) the request-head deadline.
    pub fn arm_header(&self, conn: &Conn) {
        let at = self.now_tick() + self.header_ticks;
        conn.header_deadline.set(at);
        if !conn.header_armed.get() {
            conn.header_armed.set(true);
            self.schedule(conn, at, TimerKind::Header);
        }
    }

    /// Stops the request-head deadline (lazily: the entry is ignored when it fires).
    pub fn disarm_header(&self, conn: &Conn) {
        conn.header_deadline.set(0);
    }

    /// Starts the heartbeat cycle of an event stream.
    pub fn arm_heartbeat(&self, conn: &Conn) {
        self.schedule(
            conn,
            conn.last_write.get() + self.heartbeat_ticks,
            TimerKind::Heartbeat,
        );
    }

    /// Makes sure a stall check is pending while a write is in flight.
    pub fn arm_stall(&self, conn: &Conn) {
        if !conn.stall_armed.get() {
            conn.stall_armed.set(true);
            self.schedule(
                conn,
                conn.last_progress.get() + self.stall_ticks,
                TimerKind::Stall,
            );
        }
    }

    fn on_timer(&self, t: TimerRef, now: u64) {
        let conn = match self.conns.borrow().get(t.key as usize) {
            Some(c) if c.gen == t.gen => c.clone(),
            _ => return,
        };
        match t.kind {
            TimerKind::Header => {
                conn.header_armed.set(false);
                let due = conn.header_deadline.get();
                if due == 0 {
                } else if now >= due {
                    conn.kill(CloseReason::HeaderTimeout);
                } else {
                    conn.header_armed.set(true);
                    self.schedule(&conn, due, TimerKind::Header);
                }
            }
            TimerKind::Heartbeat => {
                if conn.close.get().is_some() {
                    return;
                }
                let due = conn.last_write.get() + self.heartbeat_ticks;
                if now >= due {
                    if !conn.writing.get() && conn.queue.borrow().is_empty() {
                        conn.push(Queued {
                            frame: HEARTBEAT.clone(),
                            born_ns: 0,
                            topic: None,
                        });
                        self.metrics.heartbeats.fetch_add(1, Relaxed);
                    }
                    self.schedule(&conn, now + self.heartbeat_ticks, TimerKind::Heartbeat);
                } else {
                    self.schedule(&conn, due, TimerKind::Heartbeat);
                }
            }
            TimerKind::Stall => {
                conn.stall_armed.set(false);
                if !conn.writing.get() {
                    return;
                }
                let due = conn.last_progress.get() + self.stall_ticks;
                if now >= due {
                    tracing::info!(
                        conn = conn.id,
                        "closing subscriber: no bytes accepted for sse.write_stall_ms"
                    );
                    self.metrics.stall_disconnects.fetch_add(1, Relaxed);
                    conn.kill(CloseReason::Stall);
                } else {
                    conn.stall_armed.set(true);
                    self.schedule(&conn, due, TimerKind::Stall);
                }
            }
        }
    }

    /// The timer task: one sleep per tick while any timer is pending, none
    /// while the wheel is empty.
    pub async fn timer_loop(self: Rc<Self>) {
        let mut fired = Vec::new();
        loop {
            if self.wheel.borrow().is_empty() {
                self.wheel_filled
                    .until(|| !self.wheel.borrow().is_empty())
                    .await;
            }
            monoio::time::sleep(Duration::from_millis(TICK_MS)).await;
            let now = self.now_tick();
            self.wheel.borrow_mut().expire(now, |t| fired.push(t));
            for t in fired.drain(..) {
                self.on_timer(t, now);
            }
        }
    }

    /// Flips this worker to draining: the accept loop stops, idle request
    /// connections close, event streams flush then close.
    pub fn begin_drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        let conns: Vec<Rc<Conn>> = self.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
        for c in conns {
            match c.phase.get() {
                Phase::Request => c.kill(CloseReason::Shutdown),
                Phase::Busy => {}
                Phase::Stream => {
                    c.draining.set(true);
                    c.wake();
                }
            }
        }
        self.lifecycle.notify();
    }

    /// Resolves when the worker has drained and its last connection closed.
    pub async fn finished(&self) {
        self.lifecycle
            .until(|| self.draining.get() && self.conns.borrow().is_empty())
            .await
    }
}

/// Yields once to the scheduler, letting other tasks (the connections'
/// writes) run between batches of ring messages.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Context;

    #[test]
    fn until_registers_a_waiting_task_once() {
        let n = LocalNotify::default();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            let mut f = std::pin::pin!(n.until(|| false));
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(n.waiters.borrow().len(), 1);
        n.notify();
        assert!(n.waiters.borrow().is_empty());
        let mut f = std::pin::pin!(n.until(|| true));
        assert!(f.as_mut().poll(&mut cx).is_ready());
    }
}
