//! One compressor shared by the subscribers of one exact topic (on one
//! worker): each event is compressed once and every member queues the same
//! `Bytes`, so a topic with 10,000 subscribers costs one compression per
//! event, not 10,000.
//!
//! A member's decoder holds, as its history, exactly the plaintext of the
//! segments it was sent — as long as it was sent every segment since the
//! group last started afresh and nothing else. Hence the two rules the
//! worker keeps: a member gets every segment of its topic while it is a
//! member (only single-topic subscriptions under the `disconnect` policy
//! join, so none skips one), and whenever a member is about to receive
//! bytes of its own (joining after its catch-up, a heartbeat),
//! [`Group::reset_next`] makes the next segment refer to nothing before it.
//!
//! A compressor is ~150 KiB (zlib-rs's hash table alone is 128 KiB), so
//! one per topic cost 32 KB per subscriber at 2,000 topics × 5 subscribers
//! (`benches/results/compression/`). So a group of fewer than
//! `OWN_FROM_MEMBERS` members owns none: the worker's one [`Scratch`]
//! compressor is reset for each of its segments and given, as its preset
//! dictionary, the plaintext of the group's last segments (`Bytes` the
//! history holds anyway, 1 KiB): exactly the tail of every member's
//! decoder window, so the segment may refer back into it. That costs a
//! reset (a 128 KiB clear) and a dictionary load, ~4-5 µs per event and
//! topic (`benches/gzip.rs`) against 0.4 µs for a continuous stream, so a
//! group of 8 or more members (≤ 19 KB of compressor each) takes a
//! compressor of its own from the budget and streams on, starting from
//! the same dictionary.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::{Budget, Deflater, Segment};

/// The worker's one compressor for every group, reset for each segment.
pub type Scratch = Rc<RefCell<Deflater>>;

/// Plaintext of earlier segments given to the compressor as its
/// dictionary: about a dozen 160-byte quotes.
const DICTIONARY_BYTES: usize = 1024;

/// From this many members on, a group holds a compressor of its own
/// (within the budget): ~150 KiB over 8 or more subscribers is at most
/// ~19 KB each, and a continuous stream costs 0.4 µs an event where the
/// scratch's reset and dictionary cost ~5 µs (`benches/gzip.rs`).
const OWN_FROM_MEMBERS: u32 = 8;

/// The shared compression state of one topic.
#[derive(Debug)]
pub struct Group {
    scratch: Scratch,
    /// The group's own compressor, while it has enough members and the
    /// budget has room; it continues from the segments before it.
    own: Option<Box<Deflater>>,
    /// `own` has made nothing since the last reset: it starts from the
    /// dictionary.
    own_fresh: bool,
    budget: Rc<Budget>,
    /// The next segment must not refer to earlier ones.
    reset: bool,
    /// Streams that queue this group's segments.
    pub(crate) members: u32,
    /// The last segment made, by event id: every member of the topic is
    /// offered the same event in turn, and all but the first take this.
    last: Option<(u64, Segment)>,
    /// The plaintext of the last segments, oldest first, at most
    /// `DICTIONARY_BYTES` in all (the newest is always kept whole).
    recent: VecDeque<Bytes>,
    /// Their bytes in all.
    recent_len: usize,
    /// The dictionary as one slice (reused).
    dictionary: Vec<u8>,
}

impl Group {
    /// A group compressing with the worker's `scratch` compressor, or one
    /// of its own from `budget`.
    pub fn new(scratch: Scratch, budget: Rc<Budget>) -> Self {
        Group {
            scratch,
            own: None,
            own_fresh: true,
            budget,
            reset: true,
            members: 0,
            last: None,
            recent: VecDeque::new(),
            recent_len: 0,
            dictionary: Vec::new(),
        }
    }

    /// The next segment refers to nothing before it (and the last one made
    /// is not handed out again).
    pub(crate) fn reset_next(&mut self) {
        self.reset = true;
        self.last = None;
    }

    /// The segment of event `id` (its frame `plain`), made at the first
    /// member's asking.
    pub fn segment(&mut self, id: u64, plain: &Bytes) -> Segment {
        match &self.last {
            Some((last, seg)) if *last == id => seg.clone(),
            _ => {
                let seg = self.compress(plain);
                self.last = Some((id, seg.clone()));
                seg
            }
        }
    }

    /// Compresses one frame into the segment every member queues.
    pub fn compress(&mut self, plain: &Bytes) -> Segment {
        if std::mem::take(&mut self.reset) {
            self.recent.clear();
            self.recent_len = 0;
            self.own_fresh = true;
        }
        self.choose_compressor();
        let mut out = Vec::with_capacity(plain.len() / 2 + 16);
        match self.own.as_mut() {
            Some(own) if !self.own_fresh => own.compress(plain, &mut out, false),
            _ => {
                self.dictionary.clear();
                let skip = self.recent_len.saturating_sub(DICTIONARY_BYTES);
                let mut skipped = 0;
                for b in &self.recent {
                    let from = skip.saturating_sub(skipped).min(b.len());
                    skipped += b.len();
                    self.dictionary.extend_from_slice(&b[from..]);
                }
                match self.own.as_mut() {
                    Some(own) => {
                        own.compress_after(&self.dictionary, plain, &mut out);
                        self.own_fresh = false;
                    }
                    None => {
                        self.scratch
                            .borrow_mut()
                            .compress_after(&self.dictionary, plain, &mut out)
                    }
                }
            }
        }
        self.recent.push_back(plain.clone());
        self.recent_len += plain.len();
        while self.recent.len() > 1 && self.recent_len - self.recent[0].len() >= DICTIONARY_BYTES {
            let old = self.recent.pop_front().map_or(0, |b| b.len());
            self.recent_len -= old;
        }
        Segment::new(Bytes::from(out), plain)
    }

    /// Takes a compressor of its own when the group has grown to
    /// `OWN_FROM_MEMBERS` (and the budget has room); gives it back when it
    /// has shrunk below half of that.
    fn choose_compressor(&mut self) {
        match self.own {
            None if self.members >= OWN_FROM_MEMBERS && self.budget.take() => {
                self.own = Some(Box::new(Deflater::new(self.budget.level())));
                self.own_fresh = true;
            }
            Some(_) if self.members < OWN_FROM_MEMBERS / 2 => {
                self.own = None;
                self.budget.give_back();
            }
            _ => {}
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.own.take().is_some() {
            self.budget.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gzip::deflater::tests::inflate;

    fn quote(symbol: &str, i: u32) -> Bytes {
        Bytes::from(format!(
            "id: {i}\ndata: {{\"symbol\":\"{symbol}\",\"bid\":{}.{:02},\"ask\":{}.{:02},\"ts\":17650000{i:05}}}\n\n",
            180 + i % 7,
            i % 100,
            180 + i % 7,
            (i + 3) % 100
        ))
    }

    #[test]
    fn groups_sharing_one_scratch_each_decode_as_one_stream() {
        let scratch: Scratch = Rc::new(RefCell::new(Deflater::new(1)));
        let budget = Budget::new(1 << 30, 1);
        let mut a = Group::new(scratch.clone(), budget.clone());
        let mut b = Group::new(scratch, budget.clone());
        // `b` grows past OWN_FROM_MEMBERS half-way, and shrinks again.
        let (mut wire_a, mut wire_b) = (Vec::new(), Vec::new());
        let (mut plain_a, mut plain_b) = (Vec::new(), Vec::new());
        let mut later = 0;
        for i in 0..60 {
            // Interleaved: the scratch compressor goes from one to the other.
            let (qa, qb) = (quote("AAPL", i), quote("MSFT", i));
            let sa = a.segment(u64::from(i), &qa);
            assert_eq!(
                a.segment(u64::from(i), &qa).bytes,
                sa.bytes,
                "made once per event"
            );
            wire_a.extend_from_slice(&sa.bytes);
            plain_a.extend_from_slice(&qa);
            b.members = match i {
                20..=39 => OWN_FROM_MEMBERS,
                _ => 1,
            };
            let sb = b.compress(&qb);
            assert_eq!(
                b.own.is_some(),
                (20..40).contains(&i),
                "own compressor at {i}"
            );
            if i == 30 {
                assert_eq!(budget.live(), 1);
                // A member gets bytes of its own: the own compressor restarts.
                b.reset_next();
            }
            wire_b.extend_from_slice(&sb.bytes);
            plain_b.extend_from_slice(&qb);
            if i >= 10 {
                later += sa.bytes.len();
            }
        }
        assert_eq!(inflate(&wire_a), plain_a);
        assert_eq!(inflate(&wire_b), plain_b);
        assert_eq!(budget.live(), 0, "given back when the group shrank");
        let plain_later: usize = (10..60).map(|i| quote("AAPL", i).len()).sum();
        assert!(
            later * 10 < plain_later * 5,
            "segments refer back to earlier quotes: {later} of {plain_later} bytes"
        );
    }

    #[test]
    fn after_a_reset_a_segment_decodes_after_other_bytes() {
        let mut g = Group::new(
            Rc::new(RefCell::new(Deflater::new(1))),
            Budget::new(1 << 30, 1),
        );
        for i in 0..5 {
            g.compress(&quote("AAPL", i));
        }
        // A member that got bytes of its own (here: a different history
        // altogether) can decode the next segment after a reset.
        g.reset_next();
        let own = quote("OWN", 99);
        let mut wire = Vec::new();
        Deflater::new(1).compress(&own, &mut wire, false);
        let q = quote("AAPL", 5);
        wire.extend_from_slice(&g.segment(5, &q).bytes);
        let mut want = own.to_vec();
        want.extend_from_slice(&q);
        assert_eq!(inflate(&wire), want);
    }
}
