//! The storm gate: connection work that is not live delivery — a new
//! subscription's catch-up and first write, a stream's close — passes it, so
//! that a storm of thousands of reconnects or disconnects runs in the
//! worker's spare time and never ahead of its acknowledgements and live
//! writes.
//!
//! Two bounds, both measured in `scripts/compare.sh i` (the resume storm):
//! - **Concurrency:** at most `group` such tasks at once (a
//!   [`LocalSemaphore`]); a holder yields once before giving its permit back,
//!   so every other task runs between two groups.
//! - **Rate:** a task also needs a token. The pacer hands out `rate` tokens
//!   per millisecond while tasks wait, and sets `rate` from how late its own
//!   1 ms timer fires: a late timer means the worker's loop is full, so the
//!   rate halves; an on-time timer lets it grow again (up to
//!   [`MAX_RATE`]). The rate applies only while the worker carries live
//!   traffic (ring messages in the last [`QUIET_PERIODS`] ms): with nothing
//!   to protect, a connection storm passes at full speed (neither bound
//!   holds), and on a worker busy with live traffic it
//!   takes only the time that traffic leaves free.
//!
//! Before the rate bound, a drop of 9,000 resumers (each close costs 20-30
//! µs of kernel time on loopback) stalled acknowledgements for 150-230 ms on
//! a worker already 75% busy with live deliveries.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::local::{LocalNotify, LocalSemaphore, Permit};

/// Tokens per millisecond at most (64k storm operations a second).
pub(crate) const MAX_RATE: u32 = 64;
/// Tokens per millisecond at least: a storm always progresses.
pub(crate) const MIN_RATE: u32 = 2;
/// The pacer's period.
const PERIOD: Duration = Duration::from_millis(1);
/// Timer lateness that halves the rate.
const LATE: Duration = Duration::from_millis(2);
/// Timer lateness under which the rate grows.
const ON_TIME: Duration = Duration::from_micros(500);
/// Periods without a ring message after which the worker counts as quiet.
pub(crate) const QUIET_PERIODS: u32 = 20;
/// Tokens of a quiet worker: no rate bound.
const UNBOUNDED: u32 = u32::MAX;

/// Concurrency and rate bound for storm work on one worker.
#[derive(Debug)]
pub(crate) struct StormGate {
    group: LocalSemaphore,
    /// Tokens left in this period.
    tokens: Cell<u32>,
    /// Tokens per period.
    rate: Cell<u32>,
    /// Tasks waiting for a token, first come first served.
    waiters: RefCell<VecDeque<Waker>>,
    /// Wakes the pacer when the first task waits.
    waiting: LocalNotify,
    /// A ring message arrived since the pacer last looked.
    live_seen: Cell<bool>,
    /// Pacer periods in a row without a ring message.
    quiet_periods: Cell<u32>,
}

impl StormGate {
    /// A gate letting `group` tasks through at once.
    pub(crate) fn new(group: usize) -> Self {
        StormGate {
            group: LocalSemaphore::new(group),
            tokens: Cell::new(UNBOUNDED),
            rate: Cell::new(MAX_RATE / 4),
            waiters: RefCell::new(VecDeque::new()),
            waiting: LocalNotify::default(),
            live_seen: Cell::new(false),
            // A new worker carries no traffic yet.
            quiet_periods: Cell::new(QUIET_PERIODS),
        }
    }

    /// Waits for a token, then for a place in the group. Hold the permit
    /// across one [`super::local::yield_now`] at the end of the work. A
    /// quiet worker has nothing to protect: no token, no group (None).
    pub(crate) async fn acquire(&self) -> Option<Permit<'_>> {
        if self.is_quiet() {
            return None;
        }
        self.token().await;
        Some(self.group.acquire().await)
    }

    /// Live traffic reached the worker (called by the ring drain).
    pub(crate) fn note_live(&self) {
        self.live_seen.set(true);
    }

    /// Quiet: no live traffic for a while, as far as anyone has looked.
    fn is_quiet(&self) -> bool {
        self.quiet_periods.get() >= QUIET_PERIODS && !self.live_seen.get()
    }

    /// Takes a token: at once if the worker is quiet, or if one is left and
    /// nobody waits ahead; else in arrival order as the pacer hands them
    /// out. The accept loop takes one per connection: accepting and reading
    /// a request is storm work too.
    pub(crate) async fn token(&self) {
        let mut queued = false;
        poll_fn(|cx| {
            if self.is_quiet() {
                return Poll::Ready(());
            }
            let mut n = self.tokens.get();
            if n == UNBOUNDED {
                // Live traffic is back since the last quiet period: paced
                // from here, not once the pacer next looks.
                n = self.rate.get();
                self.tokens.set(n);
            }
            if n > 0 && (queued || self.waiters.borrow().is_empty()) {
                self.tokens.set(n - 1);
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if queued {
                // Woken, but a newcomer took the token: stay first in line.
                waiters.push_front(cx.waker().clone());
            } else {
                waiters.push_back(cx.waker().clone());
                queued = true;
            }
            if waiters.len() == 1 {
                self.waiting.notify();
            }
            Poll::Pending
        })
        .await
    }

    /// Takes a token only if one is there at once (see [`Self::token`]);
    /// false when the caller would have to wait.
    pub(crate) fn try_token(&self) -> bool {
        if self.is_quiet() {
            return true;
        }
        let mut n = self.tokens.get();
        if n == UNBOUNDED {
            n = self.rate.get();
        }
        if n == 0 || !self.waiters.borrow().is_empty() {
            self.tokens.set(n);
            return false;
        }
        self.tokens.set(n - 1);
        true
    }

    /// Gives back a token taken for work that did not happen (the listen
    /// backlog was empty after all).
    pub(crate) fn give_back(&self) {
        let n = self.tokens.get();
        if n != UNBOUNDED {
            self.tokens.set(n + 1);
        }
    }

    /// Current tokens per millisecond.
    #[cfg(test)]
    pub(crate) fn rate(&self) -> u32 {
        self.rate.get()
    }

    /// One pacer period ended `late` after it was due: adjusts the rate,
    /// refills the tokens and wakes as many waiters as there are tokens
    /// (all of them on a quiet worker).
    pub(crate) fn period_ended(&self, late: Duration) {
        if self.live_seen.replace(false) {
            self.quiet_periods.set(0);
        } else {
            self.quiet_periods
                .set(self.quiet_periods.get().saturating_add(1));
        }
        if self.is_quiet() {
            self.tokens.set(UNBOUNDED);
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
            return;
        }
        let r = self.rate.get();
        let r = if late >= LATE {
            (r / 2).max(MIN_RATE)
        } else if late <= ON_TIME {
            (r + 1 + r / 8).min(MAX_RATE)
        } else {
            r
        };
        self.rate.set(r);
        self.tokens.set(r);
        let mut waiters = self.waiters.borrow_mut();
        for _ in 0..r {
            match waiters.pop_front() {
                Some(w) => w.wake(),
                None => break,
            }
        }
    }

    /// The pacer: ticks every millisecond while tasks wait for tokens, and
    /// sleeps on an idle worker.
    pub(crate) async fn pace(&self) {
        loop {
            if self.waiters.borrow().is_empty() {
                self.waiting
                    .until(|| !self.waiters.borrow().is_empty())
                    .await;
            }
            let t0 = Instant::now();
            monoio::time::sleep(PERIOD).await;
            self.period_ended(t0.elapsed().saturating_sub(PERIOD));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// A period of a worker carrying live traffic.
    fn live_period(g: &StormGate, late: Duration) {
        g.note_live();
        g.period_ended(late);
    }

    #[test]
    fn the_rate_halves_when_the_timer_is_late_and_grows_when_on_time() {
        let g = StormGate::new(16);
        let start = g.rate();
        live_period(&g, Duration::from_millis(5));
        assert_eq!(g.rate(), start / 2);
        for _ in 0..10 {
            live_period(&g, Duration::from_millis(50));
        }
        assert_eq!(g.rate(), MIN_RATE, "never below the floor");
        live_period(&g, Duration::from_micros(100));
        assert!(g.rate() > MIN_RATE);
        live_period(&g, Duration::from_millis(1));
        let held = g.rate();
        live_period(&g, Duration::from_millis(1));
        assert_eq!(g.rate(), held, "between the thresholds the rate holds");
        for _ in 0..200 {
            live_period(&g, Duration::ZERO);
        }
        assert_eq!(g.rate(), MAX_RATE, "never above the ceiling");
        assert_eq!(g.tokens.get(), MAX_RATE, "a period refills to the rate");
    }

    #[test]
    fn try_token_takes_only_what_is_there_and_gives_back() {
        let g = StormGate::new(16);
        assert!(g.try_token(), "a quiet worker: no bound");
        live_period(&g, Duration::ZERO);
        let rate = g.rate();
        for _ in 0..rate {
            assert!(g.try_token());
        }
        assert!(!g.try_token(), "the period's tokens are spent");
        g.give_back();
        assert!(g.try_token(), "a token given back is there again");
        assert!(!g.try_token());
        // Someone waiting comes first: no token is taken past them.
        live_period(&g, Duration::ZERO);
        g.waiters
            .borrow_mut()
            .push_back(std::task::Waker::noop().clone());
        assert!(!g.try_token(), "a waiter is ahead");
    }

    #[test]
    fn a_quiet_worker_has_no_rate_bound_until_live_traffic_returns() {
        let g = StormGate::new(16);
        assert!(g.is_quiet(), "a new worker is quiet");
        live_period(&g, Duration::ZERO);
        for _ in 0..QUIET_PERIODS - 1 {
            g.period_ended(Duration::from_millis(50));
        }
        assert!(!g.is_quiet());
        g.period_ended(Duration::from_millis(50));
        assert!(g.is_quiet(), "quiet after QUIET_PERIODS without traffic");
        assert_eq!(g.tokens.get(), UNBOUNDED);
        g.note_live();
        assert!(
            !g.is_quiet(),
            "traffic ends quiet at once, before the pacer looks"
        );
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut take = std::pin::pin!(g.token());
        assert!(take.as_mut().poll(&mut cx).is_ready());
        assert_eq!(
            g.tokens.get(),
            g.rate() - 1,
            "the first token after quiet is counted"
        );
        live_period(&g, Duration::ZERO);
        assert!(!g.is_quiet());
        assert_eq!(g.tokens.get(), g.rate(), "paced again");
    }
}
