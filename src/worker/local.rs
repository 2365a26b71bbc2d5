//! Single-thread primitives for a worker's tasks: `!Send`, no atomics, no
//! locks. [`Oneshot`] carries one value to one waiting task (a publish
//! acknowledgement, a connection's close reason); [`LocalNotify`] wakes a
//! group of tasks (drain started, the timer wheel filled); [`yield_now`]
//! lets other tasks run between slices of work; [`LocalSemaphore`] lets a
//! bounded number of tasks through at a time, first come first served.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// A value set once, awaited by one task at a time.
///
/// The waiting task can also be woken without a value ([`Oneshot::nudge`])
/// and wait for "the value, or some other condition" ([`Oneshot::wait_or`]):
/// a connection's task waits for "closed, or frames queued" on one waker.
pub(crate) struct Oneshot<T> {
    value: Cell<Option<T>>,
    waiter: Cell<Option<Waker>>,
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for Oneshot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oneshot")
            .field("value", &self.value.get())
            .finish_non_exhaustive()
    }
}

impl<T> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot {
            value: Cell::new(None),
            waiter: Cell::new(None),
        }
    }
}

impl<T: Copy> Oneshot<T> {
    /// Sets the value unless one is set already (the first one stays) and
    /// wakes the waiter. True when this call set it.
    pub(crate) fn complete(&self, v: T) -> bool {
        let first = self.value.get().is_none();
        if first {
            self.value.set(Some(v));
        }
        self.nudge();
        first
    }

    /// The value, once set.
    pub(crate) fn get(&self) -> Option<T> {
        self.value.get()
    }

    /// Wakes the waiting task (if any) without setting the value, so it
    /// re-checks its condition.
    pub(crate) fn nudge(&self) {
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    /// Waits for the value.
    pub(crate) async fn wait(&self) -> T {
        loop {
            if let Some(v) = self.wait_or(|| false).await {
                return v;
            }
        }
    }

    /// Waits until the value is set (`Some`) or `ready` holds (`None`);
    /// `ready` is re-checked whenever the waiter is nudged.
    pub(crate) async fn wait_or(&self, ready: impl Fn() -> bool) -> Option<T> {
        poll_fn(|cx| {
            if let Some(v) = self.value.get() {
                Poll::Ready(Some(v))
            } else if ready() {
                Poll::Ready(None)
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// A value handed over once to one waiting task, for values that are not
/// `Copy` (the cluster bridge's answers).
pub(crate) struct Mailbox<T> {
    value: RefCell<Option<T>>,
    waiter: Cell<Option<Waker>>,
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            value: RefCell::new(None),
            waiter: Cell::new(None),
        }
    }
}

impl<T> Mailbox<T> {
    /// Leaves the value (replacing one not yet taken) and wakes the waiter.
    pub(crate) fn put(&self, v: T) {
        *self.value.borrow_mut() = Some(v);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    /// Waits for the value and takes it.
    pub(crate) async fn take(&self) -> T {
        poll_fn(|cx| match self.value.borrow_mut().take() {
            Some(v) => Poll::Ready(v),
            None => {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// A set of wakers woken together (drain start, wheel became non-empty, ...).
#[derive(Debug, Default)]
pub(crate) struct LocalNotify {
    waiters: RefCell<Vec<Waker>>,
    /// Notifications so far, so a waiter can wait for the next one.
    count: Cell<u64>,
}

impl LocalNotify {
    /// Wakes everyone waiting.
    pub(crate) fn notify(&self) {
        self.count.set(self.count.get().wrapping_add(1));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits for the next notification after this call.
    pub(crate) async fn notified(&self) {
        let seen = self.count.get();
        self.until(|| self.count.get() != seen).await
    }

    /// Waits for the next notification, like [`LocalNotify::notified`] but
    /// without looking for this task among the waiters first: for
    /// thousands of tasks waiting on one notification at once (the
    /// write-coalescing tick), where that search would be quadratic. A task
    /// polled twice while waiting is listed (and woken) twice; harmless.
    pub(crate) async fn next_many(&self) {
        let seen = self.count.get();
        poll_fn(|cx| {
            if self.count.get() != seen {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until `cond` holds, re-checking after each notification.
    /// A task already waiting is not added again, so a loop that re-creates
    /// this future (the accept loop does, once per connection) keeps the
    /// list at one entry per task instead of growing without bound.
    pub(crate) async fn until(&self, cond: impl Fn() -> bool) {
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

/// A counting semaphore for one thread's tasks. Waiters are woken one at a
/// time, in arrival order, as permits come back: a storm of thousands of
/// tasks passes through in small groups instead of all in one scheduler
/// round, so the worker's other tasks (its ring drain above all) run in
/// between.
#[derive(Debug)]
pub(crate) struct LocalSemaphore {
    permits: Cell<usize>,
    waiters: RefCell<VecDeque<Waker>>,
}

/// A permit of a [`LocalSemaphore`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit<'a>(&'a LocalSemaphore);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.permits.set(self.0.permits.get() + 1);
        self.0.wake_next();
    }
}

impl LocalSemaphore {
    /// A semaphore with `permits` permits.
    pub(crate) fn new(permits: usize) -> Self {
        LocalSemaphore {
            permits: Cell::new(permits),
            waiters: RefCell::new(VecDeque::new()),
        }
    }

    fn wake_next(&self) {
        if let Some(w) = self.waiters.borrow_mut().pop_front() {
            w.wake();
        }
    }

    /// Waits for a permit.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        poll_fn(|cx| {
            let n = self.permits.get();
            if n > 0 {
                self.permits.set(n - 1);
                if n > 1 {
                    // More permits are free: let the next waiter try too
                    // (covers a woken waiter that went away).
                    self.wake_next();
                }
                Poll::Ready(Permit(self))
            } else {
                self.waiters.borrow_mut().push_back(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Yields once to the scheduler, letting other tasks (the connections'
/// writes) run between batches of ring messages.
pub(crate) async fn yield_now() {
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    /// A waker whose clones are recognisably the same task in every build:
    /// its vtable is one `static`, where `Waker::noop()`'s clones may carry
    /// a duplicate of the vtable in debug builds, defeating `will_wake`.
    fn same_task_waker() -> Waker {
        use std::task::{RawWaker, RawWakerVTable};
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, drop, drop, drop);
        fn clone(p: *const ()) -> RawWaker {
            RawWaker::new(p, &VTABLE)
        }
        fn drop(_: *const ()) {}
        #[allow(unsafe_code)]
        // SAFETY: every function of VTABLE ignores the data pointer and
        // does nothing, so any pointer (here null) upholds the RawWaker
        // contract, and the waker can be cloned, woken and dropped freely.
        unsafe {
            Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE))
        }
    }

    #[test]
    fn until_registers_a_waiting_task_once() {
        let n = LocalNotify::default();
        let waker = same_task_waker();
        let mut cx = Context::from_waker(&waker);
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

    #[test]
    fn the_semaphore_lets_waiters_through_one_permit_at_a_time_in_order() {
        let sem = LocalSemaphore::new(2);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut a = std::pin::pin!(sem.acquire());
        let mut b = std::pin::pin!(sem.acquire());
        let mut c = std::pin::pin!(sem.acquire());
        let pa = match a.as_mut().poll(&mut cx) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("a permit was free"),
        };
        let pb = match b.as_mut().poll(&mut cx) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("a permit was free"),
        };
        assert!(
            c.as_mut().poll(&mut cx).is_pending(),
            "both permits are taken"
        );
        let woken = count.0.load(Ordering::SeqCst);
        drop(pa);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            woken + 1,
            "one waiter woken"
        );
        let pc = match c.as_mut().poll(&mut cx) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("the freed permit goes to the waiter"),
        };
        drop(pb);
        assert_eq!(sem.permits.get(), 1);
        drop(pc);
        assert_eq!(sem.permits.get(), 2, "every permit came back");
    }

    #[test]
    fn notified_waits_for_the_next_notification_only() {
        let n = LocalNotify::default();
        n.notify();
        let mut cx = Context::from_waker(Waker::noop());
        let mut f = std::pin::pin!(n.notified());
        assert!(
            f.as_mut().poll(&mut cx).is_pending(),
            "an earlier one does not count"
        );
        n.notify();
        assert!(f.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn oneshot_delivers_the_first_value_and_wakes_the_waiter() {
        let o = Oneshot::<u32>::default();
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(o.wait());
        assert!(f.as_mut().poll(&mut cx).is_pending());
        assert!(o.complete(7));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(!o.complete(9), "a second value must not replace the first");
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(7));
        assert_eq!(o.get(), Some(7));
    }

    #[test]
    fn oneshot_wait_or_returns_on_the_condition_after_a_nudge() {
        let o = Oneshot::<u32>::default();
        let flag = Cell::new(false);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(o.wait_or(|| flag.get()));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        o.nudge();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(f.as_mut().poll(&mut cx).is_pending(), "nothing changed yet");
        flag.set(true);
        o.nudge();
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(None));
        let mut g = std::pin::pin!(o.wait_or(|| true));
        o.complete(3);
        assert_eq!(
            g.as_mut().poll(&mut cx),
            Poll::Ready(Some(3)),
            "the value wins over the condition"
        );
    }

    #[test]
    fn nudging_without_a_waiter_is_harmless() {
        let o = Oneshot::<u8>::default();
        o.nudge();
        let mut cx = Context::from_waker(Waker::noop());
        let mut f = std::pin::pin!(o.wait_or(|| true));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(None));
    }
}
