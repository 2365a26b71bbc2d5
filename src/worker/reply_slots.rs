//! A worker's requests waiting for an answer that comes back over its
//! ring: publish acknowledgements from the order, the cluster bridge's
//! answers. A request takes a [`ReplySlot`] — a token to put in the request,
//! a cell the ring drain fills — and the slot is freed when the guard is
//! dropped, whichever way the request ends (answered, timed out, or its
//! connection gone while it waited). A token carries a generation beside
//! the slab key, so a late answer to a request that gave up never lands
//! in the slot of the next request that reuses the key.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use slab::Slab;

/// Bits of a token that hold the slab key: at most 2^20 requests of one
/// worker wait at once (each is a connection, and a worker's connections
/// are bounded by the open-files limit long before that).
const KEY_BITS: u32 = 20;
const KEY_MASK: u32 = (1 << KEY_BITS) - 1;

/// The waiting requests of one kind, by token.
#[derive(Debug)]
pub(crate) struct ReplySlots<T> {
    slab: RefCell<Slab<(u32, Rc<T>)>>,
    next_gen: Cell<u32>,
}

impl<T> Default for ReplySlots<T> {
    fn default() -> Self {
        ReplySlots {
            slab: RefCell::new(Slab::new()),
            next_gen: Cell::new(0),
        }
    }
}

/// One waiting request's slot; freed on drop.
#[derive(Debug)]
pub(crate) struct ReplySlot<'a, T> {
    slots: &'a ReplySlots<T>,
    token: u32,
    cell: Rc<T>,
}

impl<T: Default> ReplySlots<T> {
    /// A slot for a new request; `None` when 2^20 wait already.
    pub(crate) fn open(&self) -> Option<ReplySlot<'_, T>> {
        let mut slab = self.slab.borrow_mut();
        if slab.len() > KEY_MASK as usize {
            return None;
        }
        let gen = self.next_gen.get().wrapping_add(1) & (u32::MAX >> KEY_BITS);
        self.next_gen.set(gen);
        let cell = Rc::new(T::default());
        let key = slab.insert((gen, cell.clone())) as u32;
        Some(ReplySlot {
            slots: self,
            token: key | (gen << KEY_BITS),
            cell,
        })
    }
}

impl<T> ReplySlots<T> {
    /// The cell of the request `token` names, if it still waits.
    pub(crate) fn get(&self, token: u32) -> Option<Rc<T>> {
        let slab = self.slab.borrow();
        let (gen, cell) = slab.get((token & KEY_MASK) as usize)?;
        (*gen == token >> KEY_BITS).then(|| cell.clone())
    }

    /// Requests waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slab.borrow().len()
    }
}

impl<T> ReplySlot<'_, T> {
    /// The token to send with the request.
    pub(crate) fn token(&self) -> u32 {
        self.token
    }

    /// Where the answer lands.
    pub(crate) fn cell(&self) -> &T {
        &self.cell
    }
}

impl<T> Drop for ReplySlot<'_, T> {
    fn drop(&mut self) {
        self.slots
            .slab
            .borrow_mut()
            .try_remove((self.token & KEY_MASK) as usize);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    #[test]
    fn a_slot_is_freed_however_its_request_ends_and_late_answers_miss() {
        let slots: ReplySlots<Cell<u32>> = ReplySlots::default();
        let a = slots.open().unwrap();
        let token_a = a.token();
        slots.get(token_a).unwrap().set(7);
        assert_eq!(a.cell().get(), 7);
        drop(a);
        assert_eq!(slots.len(), 0, "freed on drop");
        // The key is reused by the next request, under a new generation:
        // a late answer to the first finds nothing.
        let b = slots.open().unwrap();
        assert_eq!(b.token() & KEY_MASK, token_a & KEY_MASK);
        assert_ne!(b.token(), token_a);
        assert!(slots.get(token_a).is_none());
        assert!(slots.get(b.token()).is_some());
        // A future dropped while it waits frees its slot too.
        let waiting = async {
            let s = slots.open().unwrap();
            std::future::pending::<()>().await;
            drop(s);
        };
        let mut waiting = Box::pin(waiting);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(slots.len(), 2);
        drop(waiting);
        assert_eq!(slots.len(), 1);
        drop(b);
        assert_eq!(slots.len(), 0);
    }
}
