//! The worker's deadlines: request heads that must arrive
//! (`limits.header_timeout_ms`), silent streams that need a heartbeat
//! (`sse.heartbeat_ms`), writes that must make progress
//! (`sse.write_stall_ms`). Connections arm them, one hashed
//! [`TimerWheel`] per worker holds them, and one timer task per worker ticks
//! it — one sleep per tick while anything is armed, none while the wheel is
//! empty — and dispatches what fired. Resets are lazy: a connection keeps its
//! real deadline beside the wheel entry, and a stale entry re-arms itself.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::conn::{CloseReason, Conn, Expiry, Heartbeat};
use super::local::LocalNotify;
use super::timer_wheel::TimerWheel;
use super::Worker;
use crate::config::Config;

/// Timer resolution in milliseconds. Heartbeats and timeouts are accurate to
/// one tick; a tick costs one timer wake-up per worker, not per connection.
pub(crate) const TICK_MS: u64 = 10;

/// Wheel size in ticks: one turn covers 40.96 s, so the default heartbeat
/// and stall deadlines land within a single turn.
const WHEEL_SLOTS: usize = 4096;

/// What a wheel entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Request head (or body) must arrive.
    Header,
    /// Silence check for the heartbeat.
    Heartbeat,
    /// A write in flight must make progress.
    Stall,
}

/// A wheel entry: which connection (slab key + generation) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerRef {
    key: u32,
    gen: u32,
    kind: TimerKind,
}

fn ticks(ms: u64) -> u64 {
    ms.div_ceil(TICK_MS).max(1)
}

/// One worker's wheel and its deadlines in ticks.
#[derive(Debug)]
pub(crate) struct Timers {
    wheel: RefCell<TimerWheel<TimerRef>>,
    /// Wakes the timer task when the wheel stops being empty.
    filled: LocalNotify,
    /// Tick 0.
    start: Instant,
    header_ticks: u64,
    heartbeat_ticks: u64,
    stall_ticks: u64,
}

impl Timers {
    /// An empty wheel with the configured deadlines.
    pub(crate) fn new(cfg: &Config) -> Self {
        Timers {
            wheel: RefCell::new(TimerWheel::new(WHEEL_SLOTS, 0)),
            filled: LocalNotify::default(),
            start: Instant::now(),
            header_ticks: ticks(cfg.limits.header_timeout_ms),
            heartbeat_ticks: ticks(cfg.sse.heartbeat_ms),
            stall_ticks: ticks(cfg.sse.write_stall_ms),
        }
    }

    /// The current tick.
    pub(crate) fn now_tick(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 / TICK_MS
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
            self.filled.notify();
        }
    }

    /// Starts (or restarts) the request-head deadline.
    pub(crate) fn arm_header(&self, conn: &Conn) {
        let at = self.now_tick() + self.header_ticks;
        if conn.arm_header(at) {
            self.schedule(conn, at, TimerKind::Header);
        }
    }

    /// Stops the request-head deadline (lazily: the entry is ignored when it fires).
    pub(crate) fn disarm_header(&self, conn: &Conn) {
        conn.disarm_header();
    }

    /// Starts the heartbeat cycle of an event stream.
    pub(crate) fn arm_heartbeat(&self, conn: &Conn) {
        self.schedule(
            conn,
            conn.heartbeat_at(self.heartbeat_ticks),
            TimerKind::Heartbeat,
        );
    }

    /// Makes sure a stall check is pending while a write is in flight.
    pub(crate) fn arm_stall(&self, conn: &Conn) {
        if let Some(at) = conn.arm_stall(self.stall_ticks) {
            self.schedule(conn, at, TimerKind::Stall);
        }
    }
}

impl Worker {
    fn on_timer(&self, t: TimerRef, now: u64) {
        let conn = match self.conns.borrow().get(t.key as usize) {
            Some(c) if c.gen == t.gen => c.clone(),
            _ => return,
        };
        match t.kind {
            TimerKind::Header => match conn.on_header_timer(now) {
                Expiry::Off => {}
                Expiry::Passed => conn.kill(CloseReason::HeaderTimeout),
                Expiry::Rearm(at) => self.timers.schedule(&conn, at, TimerKind::Header),
            },
            TimerKind::Heartbeat => match conn.on_heartbeat_timer(now, self.timers.heartbeat_ticks)
            {
                Heartbeat::Stop => {}
                Heartbeat::Sent { next } => {
                    self.metrics.heartbeats.fetch_add(1, Relaxed);
                    self.timers.schedule(&conn, next, TimerKind::Heartbeat);
                }
                Heartbeat::Wait { at } => self.timers.schedule(&conn, at, TimerKind::Heartbeat),
            },
            TimerKind::Stall => match conn.on_stall_timer(now, self.timers.stall_ticks) {
                Expiry::Off => {}
                Expiry::Passed => {
                    tracing::info!(
                        conn = conn.id,
                        "closing subscriber: no bytes accepted for sse.write_stall_ms"
                    );
                    self.metrics.stall_disconnects.fetch_add(1, Relaxed);
                    conn.kill(CloseReason::Stall);
                }
                Expiry::Rearm(at) => self.timers.schedule(&conn, at, TimerKind::Stall),
            },
        }
    }

    /// The timer task: one sleep per tick while any timer is pending, none
    /// while the wheel is empty.
    pub(crate) async fn timer_loop(self: Rc<Self>) {
        let mut fired = Vec::new();
        loop {
            if self.timers.wheel.borrow().is_empty() {
                self.timers
                    .filled
                    .until(|| !self.timers.wheel.borrow().is_empty())
                    .await;
            }
            monoio::time::sleep(Duration::from_millis(TICK_MS)).await;
            let now = self.timers.now_tick();
            self.timers
                .wheel
                .borrow_mut()
                .expire(now, |t| fired.push(t));
            for t in fired.drain(..) {
                self.on_timer(t, now);
            }
        }
    }
}
