//! The write-coalescing tick (`sse.write_delay_ms`): a stream with fresh
//! frames holds its write until the tick, so that more frames join it, and
//! the tick releases every held write at once. One deadline per worker,
//! set by the first write held since the last tick, so no write waits
//! longer than the window and the worker keeps one timer, not one per
//! connection.
//!
//! monoio looks at its timers only when its run queue is empty, and a
//! worker kept busy by write completions may not empty it for many
//! milliseconds: with the tick on a plain sleep, held writes were submitted
//! 21-22 ms after their event on average with a 5 ms window (2.5 ms with
//! none; 100 topics, flat out). So the busy paths (the ring drain's turns,
//! a stream's finished writes) also ask [`FlushTick::fire_if_due`]; the
//! tick's own task, asleep until the deadline, covers the idle worker. What
//! lateness is left on a saturated worker is the tick's own burst: the
//! thousand-odd writes it releases go out in one io_uring submission.

use std::cell::Cell;

use super::local::LocalNotify;
use crate::event::now_ns;

/// One worker's coalescing deadline and the writes waiting for it.
#[derive(Default)]
pub(crate) struct FlushTick {
    window_ns: u64,
    /// When the held writes are released; 0 while none is held.
    due_ns: Cell<u64>,
    /// Held writes wait here.
    released: LocalNotify,
    /// Wakes the tick's task when a deadline is set.
    armed: LocalNotify,
}

impl FlushTick {
    /// A tick for a window of `window_ms` (0: writes are never held).
    pub(crate) fn new(window_ms: u64) -> Self {
        FlushTick {
            window_ns: window_ms.saturating_mul(1_000_000),
            ..FlushTick::default()
        }
    }

    /// Holds a write taken at `now_ns` until the tick: sets the deadline
    /// a window away unless one is set already (an earlier write is held).
    pub(crate) fn hold(&self, now_ns: u64) {
        if self.due_ns.get() == 0 {
            self.due_ns
                .set(now_ns.saturating_add(self.window_ns).max(1));
            self.armed.notify();
        }
    }

    /// Waits for the next release (a held write's side of the tick).
    pub(crate) async fn released(&self) {
        self.released.next_many().await
    }

    /// Releases every held write if the deadline has come by `now_ns`.
    pub(crate) fn fire_if_due(&self, now_ns: u64) {
        let due = self.due_ns.get();
        if due != 0 && now_ns >= due {
            self.due_ns.set(0);
            self.released.notify();
        }
    }

    /// [`FlushTick::fire_if_due`] for a busy path that has no clock
    /// reading at hand: reads the clock only while a write is held.
    pub(crate) fn poll(&self) {
        if self.due_ns.get() != 0 {
            self.fire_if_due(now_ns());
        }
    }

    /// The tick's own task: sleeps until each deadline and fires it, unless
    /// a busy path fired it first.
    pub(crate) async fn run(&self) {
        loop {
            self.armed.until(|| self.due_ns.get() != 0).await;
            let wait = self.due_ns.get().saturating_sub(now_ns());
            if wait > 0 {
                monoio::select! {
                    _ = monoio::time::sleep(std::time::Duration::from_nanos(wait)) => {}
                    _ = self.released.next_many() => {}
                }
            }
            self.fire_if_due(now_ns());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use super::*;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn the_first_held_write_sets_the_deadline_and_the_tick_releases_all() {
        let tick = FlushTick::new(5);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        tick.hold(100 * MS);
        let mut a = Box::pin(tick.released());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        // A later hold does not move the deadline: nobody waits past it.
        tick.hold(103 * MS);
        let mut b = Box::pin(tick.released());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        tick.fire_if_due(104 * MS);
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "released early");
        tick.fire_if_due(105 * MS);
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_ready());
        // Fired once: a second call finds no deadline.
        tick.fire_if_due(200 * MS);
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        // The next held write sets a new deadline, a whole window away.
        tick.hold(300 * MS);
        let mut c = Box::pin(tick.released());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        tick.fire_if_due(304 * MS);
        assert!(c.as_mut().poll(&mut cx).is_pending());
        tick.fire_if_due(305 * MS);
        assert!(c.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn the_task_fires_the_deadline_on_an_idle_worker() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let released = rt.block_on(async {
            let tick = Rc::new(FlushTick::new(2));
            let t = tick.clone();
            monoio::spawn(async move { t.run().await });
            let done = Rc::new(Cell::new(false));
            let d = done.clone();
            let t = tick.clone();
            let start = std::time::Instant::now();
            tick.hold(now_ns());
            let waiter = monoio::spawn(async move {
                t.released().await;
                d.set(true);
            });
            waiter.await;
            (done.get(), start.elapsed())
        });
        assert!(released.0);
        assert!(released.1 >= std::time::Duration::from_millis(2));
    }
}
