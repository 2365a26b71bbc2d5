//! Vectored writes of a connection's queued frame handles: one `writev`
//! (through io_uring, or the legacy driver) per connection per wake-up,
//! carrying every queued frame up to `IOV_MAX` frames and a quarter of
//! `sse.max_pending_bytes` (see `Bound::write_cap`), resuming after a partial
//! write exactly where it stopped. The iovecs point into the shared `Bytes`
//! of each frame: no subscriber ever gets a copy of an event's bytes.
//!
//! Measured end to end (`scripts/compare.sh a10k c10k_rate`, 1 worker, see
//! `benches/results/compare.md`): when a write carries many frames a
//! delivery costs 1.5-2.5 µs of server CPU (a10k: 2.0 µs, nchan 14.5 µs);
//! with one frame per write it costs 10-15 µs, of which about 13 µs is the
//! kernel's send and the reader's wake-up (`perf`, benches/results/bounds.md).
//! No criterion bench isolates this module: its cost is the system call.

use std::collections::VecDeque;

use bytes::Buf;

use super::queued::Queued;
use super::spare;

/// Linux's `IOV_MAX`: most iovecs one `writev` takes.
pub(crate) const IOV_MAX: usize = 1024;

/// Frames handed to one vectored write, owned by the operation while it is
/// in flight (monoio's ownership-passing I/O) and returned with its result.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    items: Vec<Queued>,
    /// First item not completely written.
    head: usize,
    iov: Vec<libc::iovec>,
}

/// What a completed write finished, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Event frames now completely written.
    pub(crate) frames: u64,
}

impl Batch {
    /// An empty batch.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// True when everything handed to it has been written.
    pub(crate) fn is_empty(&self) -> bool {
        self.head == self.items.len()
    }

    /// Gives the batch's arrays back once everything is written, so an idle
    /// subscriber holds none (the next write takes spare ones again, see
    /// [`super::spare`]).
    pub(crate) fn release(&mut self) {
        if self.is_empty() {
            spare::give_frames(std::mem::take(&mut self.items));
            spare::give_iovecs(std::mem::take(&mut self.iov));
            self.head = 0;
        }
    }

    /// Moves frames from `queue` into the batch (up to `IOV_MAX` in all, and
    /// no more than `max_bytes` unless the batch would otherwise be empty)
    /// and rebuilds the iovec array for the next write; returns the bytes
    /// the write will offer the socket.
    ///
    /// The byte cap keeps most of a backlog in the queue, where conflation
    /// can still reach it: a write in flight may wait on a full socket for
    /// as long as the subscriber does not read.
    pub(crate) fn fill(&mut self, queue: &mut VecDeque<Queued>, max_bytes: usize) -> usize {
        if self.head > 0 {
            self.items.drain(..self.head);
            self.head = 0;
        }
        if self.items.capacity() == 0 {
            self.items = spare::frames();
        }
        if self.iov.capacity() == 0 {
            self.iov = spare::iovecs();
        }
        let mut bytes: usize = self.items.iter().map(|q| q.frame.len()).sum();
        while self.items.len() < IOV_MAX {
            let Some(len) = queue.front().map(|q| q.frame.len()) else {
                break;
            };
            if !self.items.is_empty() && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            self.items.extend(queue.pop_front());
        }
        self.iov.clear();
        self.iov.extend(self.items.iter().map(|q| libc::iovec {
            iov_base: q.frame.as_ptr() as *mut libc::c_void,
            iov_len: q.frame.len(),
        }));
        bytes
    }

    /// Accounts `n` written bytes: finished frames are passed to `done`
    /// (and released), a partly written frame is advanced in place.
    pub(crate) fn advance(&mut self, mut n: usize, mut done: impl FnMut(&Queued)) -> Progress {
        let mut p = Progress::default();
        while n > 0 && self.head < self.items.len() {
            let item = &mut self.items[self.head];
            let len = item.frame.len();
            if n >= len {
                n -= len;
                if item.born_ns != 0 {
                    p.frames += 1;
                }
                done(item);
                // Release the frame now rather than at the next fill.
                item.frame = bytes::Bytes::new();
                self.head += 1;
            } else {
                item.frame.advance(n);
                n = 0;
            }
        }
        if self.is_empty() {
            self.items.clear();
            self.head = 0;
        }
        self.iov.clear();
        self.iov
            .extend(self.items[self.head..].iter().map(|q| libc::iovec {
                iov_base: q.frame.as_ptr() as *mut libc::c_void,
                iov_len: q.frame.len(),
            }));
        p
    }
}

// SAFETY: `iov` describes exactly `self.iov.len()` valid iovecs, each pointing
// into a `Bytes` held in `self.items[self.head..]`. While the runtime owns the
// batch (an operation in flight) nothing mutates it, and moving the `Batch`
// value moves neither the `Vec`'s heap array of iovecs nor the `Bytes`'
// heap (or static) storage, so every pointer stays valid until the batch is
// handed back.
#[allow(unsafe_code)]
unsafe impl monoio::buf::IoVecBuf for Batch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn q(s: &'static str, born: u64) -> Queued {
        Queued {
            frame: Bytes::from_static(s.as_bytes()),
            born_ns: born,
            topic: None,
        }
    }

    #[test]
    fn partial_writes_resume_exactly() {
        let mut queue: VecDeque<Queued> = [q("abc", 1), q("de", 0), q("fghi", 2)].into();
        let mut b = Batch::new();
        b.fill(&mut queue, usize::MAX);
        assert!(queue.is_empty());
        assert_eq!(b.iov.len(), 3);
        let unsent: usize = b.iov.iter().map(|v| v.iov_len).sum();
        assert_eq!(unsent, 9);
        let p = b.advance(4, |_| {});
        assert_eq!(p.frames, 1);
        assert_eq!(b.iov.len(), 2);
        assert_eq!(b.iov[0].iov_len, 1);
        // SAFETY: the iovec points into the live `Bytes` "de" advanced by one.
        #[allow(unsafe_code)]
        let first = unsafe { *(b.iov[0].iov_base as *const u8) };
        assert_eq!(first, b'e');
        queue.push_back(q("j", 3));
        b.fill(&mut queue, usize::MAX);
        assert_eq!(b.iov.len(), 3);
        let mut done = vec![];
        let p = b.advance(6, |x| done.push(x.born_ns));
        assert_eq!(p.frames, 2);
        assert_eq!(done, vec![0, 2, 3]);
        assert!(b.is_empty());
    }

    #[test]
    fn caps_at_iov_max() {
        let mut queue: VecDeque<Queued> = (0..IOV_MAX + 10).map(|_| q("x", 1)).collect();
        let mut b = Batch::new();
        b.fill(&mut queue, usize::MAX);
        assert_eq!(b.iov.len(), IOV_MAX);
        assert_eq!(queue.len(), 10);
    }

    #[test]
    fn caps_at_max_bytes_but_always_takes_a_frame() {
        type Case = (&'static str, &'static [&'static str], usize, usize, usize);
        let cases: &[Case] = &[
            ("all fit", &["ab", "cd", "ef"], 6, 3, 6),
            (
                "stops before the frame that would pass the cap",
                &["ab", "cd", "ef"],
                5,
                2,
                4,
            ),
            (
                "a frame larger than the cap still goes alone",
                &["abcdef", "g"],
                2,
                1,
                6,
            ),
            ("empty queue", &[], 8, 0, 0),
        ];
        for &(name, frames, cap, taken, bytes) in cases {
            let mut queue: VecDeque<Queued> = frames.iter().map(|f| q(f, 1)).collect();
            let mut b = Batch::new();
            assert_eq!(b.fill(&mut queue, cap), bytes, "{name}: bytes");
            assert_eq!(b.iov.len(), taken, "{name}: frames taken");
            assert_eq!(queue.len(), frames.len() - taken, "{name}: left queued");
        }
    }

    #[test]
    fn a_partly_written_batch_counts_against_the_cap() {
        let mut queue: VecDeque<Queued> = [q("abcd", 1), q("ef", 2)].into();
        let mut b = Batch::new();
        assert_eq!(b.fill(&mut queue, 4), 4);
        b.advance(1, |_| {});
        queue.push_back(q("gh", 3));
        // 3 bytes left of "abcd"; "ef" would make 5 > 4.
        assert_eq!(b.fill(&mut queue, 4), 3);
        assert_eq!(queue.len(), 2);
    }
}
