//! Spare arrays: the emptied frame and iovec arrays of connections that went
//! idle (a connection's queue, a write's batch), kept on the worker's thread
//! for the next connection that needs one instead of going back to the
//! allocator.
//!
//! An idle subscriber holds no array (its queue and batch are given back
//! when it has nothing left to write), so where each event reaches few
//! subscribers every write used to cost three allocations and three frees,
//! on memory that had gone cold; the spares are reused last-in first-out
//! and stay warm. Bounded: arrays whose room adds up to at most [`BUDGET`]
//! entries of each kind, none with room for more than [`MAX_ROOM`] entries
//! (a larger one, from a backlog, goes back to the allocator), so a worker
//! keeps at most about 4.6 MB (3.6 MB of frame entries, 1 MB of iovecs).
//! A new array has room for [`MIN_ROOM`] entries.
//!
//! The budget is sized for a flat-out burst over many topics: 16 publishes
//! in flight at 100 subscribers each make 1,600 connections busy at once,
//! each with a queue and a batch. A pool of 128 arrays overflowed there and
//! sent a fifth of the arrays back to `malloc` and `free` (4.7% of the core
//! at 100 topics). The spares cost no memory a burst did not already take:
//! they are the arrays the busy connections held at the peak, and glibc
//! would keep their chunks in its arena after `free` anyway.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::queued::Queued;

/// Most entries (the kept arrays' room, summed) of each kind.
const BUDGET: usize = 1 << 16;
/// Room (entries) of a new array: where events reach many subscribers a
/// write carries about 15 frames, and growing an array four entries at a
/// time cost more than the allocation (`realloc` at 1 topic: 3% of the core).
const MIN_ROOM: usize = 16;
/// Largest capacity (entries) an array may have to be kept.
const MAX_ROOM: usize = 64;

/// The kept arrays of one kind and their room, summed.
struct Pool<T> {
    arrays: Vec<Vec<T>>,
    room: usize,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            arrays: Vec::new(),
            room: 0,
        }
    }
}

impl<T> Pool<T> {
    fn take(&mut self) -> Option<Vec<T>> {
        let v = self.arrays.pop()?;
        self.room -= v.capacity();
        Some(v)
    }
}

#[derive(Default)]
struct Spare {
    frames: Pool<Queued>,
    iovecs: Pool<libc::iovec>,
}

thread_local! {
    static SPARE: RefCell<Spare> = RefCell::default();
}

/// An empty frame array, spare if one is kept.
pub(crate) fn frames() -> Vec<Queued> {
    SPARE
        .with(|s| s.borrow_mut().frames.take())
        .unwrap_or_else(|| Vec::with_capacity(MIN_ROOM))
}

/// An empty frame queue, on a spare array if one is kept.
pub(crate) fn queue() -> VecDeque<Queued> {
    // O(1): the Vec's buffer becomes the deque's.
    VecDeque::from(frames())
}

/// Keeps `v`'s array for reuse (its entries are dropped first).
pub(crate) fn give_frames(v: Vec<Queued>) {
    keep(v, |s| &mut s.frames);
}

/// Puts `v`, emptied, on the pool `pick` chooses, unless it has no room
/// at all, too much, or the pool's budget has no room left for it.
fn keep<T>(mut v: Vec<T>, pick: impl FnOnce(&mut Spare) -> &mut Pool<T>) {
    if v.capacity() == 0 || v.capacity() > MAX_ROOM {
        return;
    }
    v.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let pool = pick(&mut s);
        if pool.room + v.capacity() <= BUDGET {
            pool.room += v.capacity();
            pool.arrays.push(v);
        }
    });
}

/// Keeps an emptied queue's array for reuse.
pub(crate) fn give_queue(mut q: VecDeque<Queued>) {
    q.clear();
    // No data moves: the deque is empty.
    give_frames(Vec::from(q));
}

/// An empty iovec array, spare if one is kept.
pub(crate) fn iovecs() -> Vec<libc::iovec> {
    SPARE
        .with(|s| s.borrow_mut().iovecs.take())
        .unwrap_or_else(|| Vec::with_capacity(MIN_ROOM))
}

/// Keeps `v`'s array for reuse.
pub(crate) fn give_iovecs(v: Vec<libc::iovec>) {
    keep(v, |s| &mut s.iovecs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn arrays_come_back_empty_and_large_ones_are_not_kept() {
        let mut v = frames();
        assert_eq!(v.capacity(), MIN_ROOM, "a new array");
        v.push(Queued {
            frame: Bytes::from_static(b"x"),
            born_ns: 1,
            topic: None,
        });
        let ptr = v.as_ptr();
        give_frames(v);
        let q = queue();
        assert!(q.is_empty());
        assert!(q.capacity() >= MIN_ROOM);
        give_queue(q);
        let again = frames();
        assert_eq!(again.as_ptr(), ptr, "the same array, reused");
        assert!(again.is_empty());

        let big: Vec<Queued> = Vec::with_capacity(MAX_ROOM + 1);
        give_frames(big);
        assert_eq!(frames().capacity(), MIN_ROOM, "a large array is not kept");

        let iov = iovecs();
        let ptr = iov.as_ptr();
        give_iovecs(iov);
        let again = iovecs();
        assert_eq!(again.as_ptr(), ptr);
    }

    #[test]
    fn the_kept_room_stays_within_the_budget() {
        let per = MIN_ROOM;
        for _ in 0..BUDGET / per + 10 {
            give_iovecs(Vec::with_capacity(per));
        }
        let (n, room) = SPARE.with(|s| {
            let s = s.borrow();
            (s.iovecs.arrays.len(), s.iovecs.room)
        });
        assert_eq!(n, BUDGET / per, "arrays beyond the budget are freed");
        assert_eq!(room, n * per);
        // Taking one gives its room back to the budget, so one more fits.
        let v = iovecs();
        assert_eq!(SPARE.with(|s| s.borrow().iovecs.room), room - v.capacity());
        give_iovecs(v);
        give_iovecs(Vec::with_capacity(per));
        assert_eq!(SPARE.with(|s| s.borrow().iovecs.arrays.len()), n);
        SPARE.with(|s| *s.borrow_mut() = Spare::default());
    }
}
