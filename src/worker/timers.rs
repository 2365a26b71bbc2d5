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
    /// The stream's token expires.
    Expiry,
    /// A `max_rate` subscription has a held event to release (or a quiet
    /// topic to forget).
    Throttle,
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

    /// `ms` in ticks, rounded up, at least one.
    pub(crate) fn ticks(&self, ms: u64) -> u64 {
        ticks(ms)
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

    /// Closes the stream when its token expires, at `exp_ms` (Unix
    /// milliseconds, leeway included; `now_ms` is the wall clock now),
    /// within one tick.
    pub(crate) fn arm_expiry(&self, conn: &Conn, exp_ms: u64, now_ms: u64) {
        let left_ms = exp_ms.saturating_sub(now_ms);
        let at = self.now_tick() + left_ms.div_ceil(TICK_MS);
        if conn.arm_expiry(at) {
            self.schedule(conn, at, TimerKind::Expiry);
        }
    }

    /// Makes sure a throttled stream's next release has a wheel entry: at
    /// the first tick at or after it (never before: a release is never
    /// early).
    pub(crate) fn arm_throttle(&self, conn: &Conn) {
        if let Some(due_ns) = conn.arm_throttle() {
            self.schedule(conn, self.tick_at_ns(due_ns), TimerKind::Throttle);
        }
    }

    /// The first tick at or after `at_ns` on the process clock.
    fn tick_at_ns(&self, at_ns: u64) -> u64 {
        let wait_ns = at_ns.saturating_sub(crate::event::now_ns());
        self.now_tick() + wait_ns.div_ceil(TICK_MS * 1_000_000)
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
                    // Silent for sse.heartbeat_ms: an idle stream holds no
                    // compressor of its own.
                    conn.release_compressor();
                    self.timers.schedule(&conn, next, TimerKind::Heartbeat);
                }
                Heartbeat::Wait { at } => self.timers.schedule(&conn, at, TimerKind::Heartbeat),
            },
            TimerKind::Stall => match conn.on_stall_timer(now, self.timers.stall_ticks) {
                Expiry::Off => {}
                Expiry::Passed => {
                    tracing::info!(
                        conn = conn.id,
                        request_id = %conn.request_id(),
                        "closing subscriber: no bytes accepted for sse.write_stall_ms"
                    );
                    self.metrics.stall_disconnects.fetch_add(1, Relaxed);
                    conn.kill(CloseReason::Stall);
                }
                Expiry::Rearm(at) => self.timers.schedule(&conn, at, TimerKind::Stall),
            },
            TimerKind::Expiry => match conn.on_expiry_timer(now) {
                Expiry::Off => {}
                Expiry::Passed => self.expire(&conn),
                Expiry::Rearm(at) => self.timers.schedule(&conn, at, TimerKind::Expiry),
            },
            TimerKind::Throttle => {
                if let Some(next_ns) = conn.on_throttle_timer(crate::event::now_ns()) {
                    let at = self.timers.tick_at_ns(next_ns).max(now + 1);
                    self.timers.schedule(&conn, at, TimerKind::Throttle);
                }
            }
        }
    }

    /// The stream's token expired: it leaves the subscription tables (so
    /// nothing more is queued), flushes what it was sent while the token
    /// was valid, says a randomised `retry:` and closes; the client comes
    /// back with a fresh token.
    fn expire(&self, conn: &Conn) {
        self.unsubscribe(conn);
        self.shared.token_expired.fetch_add(1, Relaxed);
        tracing::info!(conn = conn.id, request_id = %conn.request_id(), "closing stream: its token expired");
        conn.start_drain();
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
            self.release_delayed();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::frame::HEARTBEAT;
    use crate::worker::batch::Batch;

    fn worker() -> Worker {
        Worker::for_test(Config::default())
    }

    fn fire(w: &Worker, conn: &Conn, kind: TimerKind, now: u64) {
        let t = TimerRef {
            key: conn.key,
            gen: conn.gen,
            kind,
        };
        w.on_timer(t, now);
    }

    /// Every entry in the wheel with the tick it fires at, leaving an empty
    /// wheel at tick 0 in its place.
    fn drain_wheel(w: &Worker) -> Vec<(u64, TimerKind)> {
        let mut wheel = w.timers.wheel.replace(TimerWheel::new(WHEEL_SLOTS, 0));
        let mut out = Vec::new();
        let mut tick = 0;
        while !wheel.is_empty() {
            wheel.expire(tick, |t| out.push((tick, t.kind)));
            tick += 1;
        }
        out
    }

    #[test]
    fn header_timer() {
        use TimerKind::Header;
        // The deadline armed, then maybe moved or disarmed; the entry fires
        // at `now`.
        #[derive(Clone, Copy)]
        enum Then {
            Nothing,
            MovedTo(u64),
            Disarmed,
        }
        #[rustfmt::skip]
        let cases = [
            // name               then                now  killed wheel
            ("deadline reached",  Then::Nothing,      100, true,  vec![]),
            ("deadline passed",   Then::Nothing,      150, true,  vec![]),
            ("disarmed",          Then::Disarmed,     100, false, vec![]),
            ("moved later",       Then::MovedTo(300), 100, false, vec![(300, Header)]),
            ("moved, and passed", Then::MovedTo(300), 300, true,  vec![]),
        ];
        for (name, then, now, killed, wheel) in cases {
            let w = worker();
            let c = w.register();
            assert!(c.arm_header(100), "{name}");
            match then {
                Then::Nothing => {}
                Then::MovedTo(at) => assert!(!c.arm_header(at), "{name}"),
                Then::Disarmed => c.disarm_header(),
            }
            fire(&w, &c, Header, now);
            let want = killed.then_some(CloseReason::HeaderTimeout);
            assert_eq!(c.closed(), want, "{name}");
            assert_eq!(drain_wheel(&w), wheel, "{name}: wheel");
        }
    }

    #[test]
    fn heartbeat_timer() {
        use TimerKind::Heartbeat;
        #[derive(Clone, Copy)]
        enum State {
            Idle,
            Queued,
            Writing,
            Closed,
        }
        /// When the next check is scheduled.
        #[derive(Clone, Copy)]
        enum Next {
            /// When the heartbeat is due.
            AtDue,
            /// A heartbeat period after the entry fired.
            PeriodAfter,
            /// Never: the cycle ends.
            No,
        }
        // `late`: ticks after the heartbeat is due that the entry fires;
        // `beat`: a heartbeat frame was queued.
        #[rustfmt::skip]
        let cases = [
            // name                    state          late beat   next
            ("silent and idle",        State::Idle,    0,  true,  Next::PeriodAfter),
            ("silent, fired late",     State::Idle,    7,  true,  Next::PeriodAfter),
            ("not silent long enough", State::Idle,    -1, false, Next::AtDue),
            ("frames already queued",  State::Queued,  0,  false, Next::PeriodAfter),
            ("a write in flight",      State::Writing, 0,  false, Next::PeriodAfter),
            ("closed",                 State::Closed,  0,  false, Next::No),
        ];
        for (name, state, late, beat, next) in cases {
            let w = worker();
            let every = w.timers.heartbeat_ticks;
            let c = w.register();
            let mut batch = Batch::new();
            match state {
                State::Idle => {}
                State::Queued => c.push_raw(Bytes::from_static(b"data: x\n\n")),
                State::Writing => {
                    c.push_raw(Bytes::from_static(b"data: x\n\n"));
                    c.begin_write(0, &mut batch, usize::MAX);
                }
                State::Closed => c.kill(CloseReason::Slow),
            }
            let due = c.heartbeat_at(every);
            let now = due.checked_add_signed(late).unwrap();
            let before = c.queue_snapshot().len();
            fire(&w, &c, Heartbeat, now);
            let q = c.queue_snapshot();
            assert_eq!(q.len() - before, usize::from(beat), "{name}: queued");
            if beat {
                assert_eq!(q.last().unwrap().frame, HEARTBEAT, "{name}");
            }
            assert_eq!(
                w.metrics.heartbeats.load(Relaxed),
                u64::from(beat),
                "{name}"
            );
            let want = match next {
                Next::AtDue => vec![(due, Heartbeat)],
                Next::PeriodAfter => vec![(now + every, Heartbeat)],
                Next::No => vec![],
            };
            assert_eq!(drain_wheel(&w), want, "{name}: wheel");
        }
    }

    #[test]
    fn stall_timer() {
        use TimerKind::Stall;
        // A 10-byte write starts at tick 50. `progress`: the tick it sent 4
        // bytes at (the rest then goes out in a write started 10 ticks
        // later); `done`: no write is in flight any more; `late`: ticks after
        // 50 + the limit that the entry fires; `rearm`: the progress tick the
        // entry is re-armed from.
        #[rustfmt::skip]
        let cases = [
            // name                             progress    done   late killed rearm
            ("no progress for the limit",      None,       false, 0,   true,  None),
            ("no progress, before the limit",  None,       false, -1,  false, Some(50)),
            ("progress made",                  Some(1000), false, 0,   false, Some(1000)),
            ("stalled since the progress",     Some(1000), false, 950, true,  None),
            ("no write in flight",             None,       true,  0,   false, None),
        ];
        for (name, progress, done, late, killed, rearm) in cases {
            let w = worker();
            let limit = w.timers.stall_ticks;
            let c = w.register();
            let mut batch = Batch::new();
            c.push_raw(Bytes::from_static(b"0123456789"));
            c.begin_write(50, &mut batch, usize::MAX);
            w.timers.arm_stall(&c);
            assert_eq!(drain_wheel(&w), vec![(50 + limit, Stall)], "{name}");
            if let Some(at) = progress {
                batch.advance(4, |_| {});
                c.end_write(4, at);
                c.begin_write(at + 10, &mut batch, usize::MAX);
            }
            if done {
                c.end_write(0, 60);
            }
            let now = (50 + limit).checked_add_signed(late).unwrap();
            fire(&w, &c, Stall, now);
            let want = killed.then_some(CloseReason::Stall);
            assert_eq!(c.closed(), want, "{name}");
            assert_eq!(
                w.metrics.stall_disconnects.load(Relaxed),
                u64::from(killed),
                "{name}: counted"
            );
            let want: Vec<_> = rearm
                .map(|from| (from + limit, Stall))
                .into_iter()
                .collect();
            assert_eq!(drain_wheel(&w), want, "{name}: wheel");
        }
    }

    #[test]
    fn arming_twice_schedules_once() {
        let w = worker();
        let c = w.register();
        w.timers.arm_header(&c);
        w.timers.arm_header(&c);
        c.push_raw(Bytes::from_static(b"x"));
        c.begin_write(0, &mut Batch::new(), usize::MAX);
        w.timers.arm_stall(&c);
        w.timers.arm_stall(&c);
        let mut kinds: Vec<_> = drain_wheel(&w).into_iter().map(|(_, k)| k).collect();
        kinds.sort_by_key(|k| *k as u8);
        assert_eq!(kinds, vec![TimerKind::Header, TimerKind::Stall]);
    }

    #[test]
    fn a_timer_for_a_reused_slot_or_a_gone_connection_is_ignored() {
        for kind in [TimerKind::Header, TimerKind::Heartbeat, TimerKind::Stall] {
            let w = worker();
            let old = w.register();
            let stale = TimerRef {
                key: old.key,
                gen: old.gen,
                kind,
            };
            w.unregister(&old);
            w.on_timer(stale, 1_000_000);
            assert!(drain_wheel(&w).is_empty(), "{kind:?}: gone");
            let new = w.register();
            assert_eq!(new.key, old.key, "the slot is reused");
            assert_ne!(new.gen, old.gen);
            // Every deadline of the new connection is due: only the
            // generation check keeps the stale entry from acting on it.
            new.arm_header(1);
            new.push_raw(Bytes::from_static(b"x"));
            new.begin_write(0, &mut Batch::new(), usize::MAX);
            let now = 1_000_000;
            w.on_timer(stale, now);
            assert_eq!(new.closed(), None, "{kind:?}");
            assert!(drain_wheel(&w).is_empty(), "{kind:?}: nothing re-armed");
            assert_eq!(w.metrics.stall_disconnects.load(Relaxed), 0);
            fire(&w, &new, kind, now);
            let acted = new.closed().is_some() || !drain_wheel(&w).is_empty();
            assert!(acted, "{kind:?}: the current connection's entry acts");
        }
    }
}
