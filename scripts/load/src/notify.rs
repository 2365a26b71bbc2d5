//! `LocalNotify`: wakes the tasks on this thread that wait for a condition
//! on shared `Cell` counters (subscribers connected, answers received). One
//! thread only, so a `RefCell` list of wakers is all it needs. `SlotNotify`
//! does the same for thousands of waiters that each check often (every
//! subscriber read of a resume storm): one waker slot per waiter, so
//! registering is O(1).

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub(crate) struct LocalNotify {
    /// Tasks to wake on the next `notify`, each at most once.
    waiters: RefCell<Vec<Waker>>,
}

impl LocalNotify {
    /// Wakes every waiting task; each re-checks its condition.
    pub(crate) fn notify(&self) {
        // Taken out first: a waker may run code that waits again.
        for w in self.waiters.take() {
            w.wake();
        }
    }

    /// Returns once `cond` holds, checking it again after each `notify`.
    pub(crate) async fn until(&self, cond: impl Fn() -> bool) {
        poll_fn(|cx| {
            if cond() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// One waker slot per waiting task (by index), so that many tasks can wait
/// on one condition cheaply.
#[derive(Default)]
pub(crate) struct SlotNotify {
    slots: RefCell<Vec<Option<Waker>>>,
}

impl SlotNotify {
    /// Room for `n` waiters, indexes `0..n`.
    pub(crate) fn with_slots(n: usize) -> Self {
        Self {
            slots: RefCell::new(vec![None; n]),
        }
    }

    /// Wakes every waiting task; each re-checks its condition.
    pub(crate) fn notify(&self) {
        // Taken out first: a waker may run code that waits again.
        let wakers: Vec<Waker> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Returns once `cond` holds, checking it again after each `notify`.
    /// `slot` is this task's own index.
    pub(crate) async fn until(&self, slot: usize, cond: impl Fn() -> bool) {
        poll_fn(|cx| {
            if cond() {
                return Poll::Ready(());
            }
            let mut slots = self.slots.borrow_mut();
            if slot >= slots.len() {
                slots.resize(slot + 1, None);
            }
            match &slots[slot] {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => slots[slot] = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{LocalNotify, SlotNotify};
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn slots_wait_for_the_condition() {
        let notify = SlotNotify::with_slots(2);
        let ready = Cell::new(false);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = pin!(notify.until(0, || ready.get()));
        let mut b = pin!(notify.until(5, || ready.get()));

        assert_eq!(a.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(a.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(
            b.as_mut().poll(&mut cx),
            Poll::Pending,
            "grows past its size"
        );
        notify.notify();
        assert_eq!(count.0.load(Ordering::Relaxed), 2, "each slot woken once");
        ready.set(true);
        assert_eq!(a.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(b.as_mut().poll(&mut cx), Poll::Ready(()));
        notify.notify();
        assert_eq!(count.0.load(Ordering::Relaxed), 2, "nothing left to wake");
    }

    #[test]
    fn waits_for_the_condition_and_wakes_once() {
        let notify = LocalNotify::default();
        let ready = Cell::new(false);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(notify.until(|| ready.get()));

        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(notify.waiters.borrow().len(), 1, "one entry per task");

        notify.notify();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(notify.waiters.borrow().is_empty());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending, "not yet true");

        ready.set(true);
        notify.notify();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(()));
        assert!(notify.waiters.borrow().is_empty());
    }
}
