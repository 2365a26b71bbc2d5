//! Compressed event streams (SPEC §3 "Compression", `sse.compression`):
//! the body of an `/events` answer to a client that accepts gzip is one
//! gzip member, written as the events come — every piece ends on a byte
//! boundary (a sync flush, or a stored block), so each event, heartbeat,
//! `retry:` and `resync` decodes as soon as its bytes arrive. Pure: bytes
//! in, wire bytes out; the worker decides which piece goes where.
//!
//! The frame of an event is still encoded once; compression is the last
//! step before the queue, in one of two ways:
//!
//! - **Shared** ([`group`]): subscribers of one exact topic that are caught
//!   up receive the same bytes, so each event is compressed once per topic
//!   (per worker, by the worker's one scratch compressor with the topic's
//!   last events as dictionary), and every member queues the same
//!   compressed `Bytes` — encode-once survives compression. A member that
//!   gets bytes of its own (its catch-up, a heartbeat) makes the group's
//!   next segment refer to nothing before it.
//! - **Per connection** ([`StreamEncoder`] with its own [`Deflater`]): every
//!   other compressed stream (wildcards, several topics, `max_rate`,
//!   delayed views), within `sse.compression_max_bytes` of compressors;
//!   past it, and for small pieces (heartbeats, `retry:`) of a stream that
//!   holds no compressor, stored blocks. A stream that holds one sends
//!   everything through it, and a group member's own pieces never refer
//!   back across the group's segments.
//!
//! Each stream keeps the CRC-32 and length of what it sent
//! (shared segments combine in with [`crc::combine`]), for the trailer a
//! graceful end writes.

pub(crate) mod crc;
pub mod deflater;
pub mod group;

use std::cell::Cell;
use std::rc::Rc;

use bytes::{BufMut, Bytes};

pub use deflater::Deflater;

/// The gzip member header: deflate, no flags, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Pieces shorter than this go as stored blocks even when a compressor is
/// at hand: a heartbeat (3 bytes) or a `retry:` line compresses to nothing
/// worth a compressor's memory.
const STORE_BELOW: usize = 32;

/// A compressed piece of plaintext and what a stream needs to account for
/// it: its CRC-32, the operator that shifts a CRC past it, its length.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The wire bytes (deflate blocks ending on a byte boundary).
    pub bytes: Bytes,
    crc: u32,
    shift: u32,
    len: u32,
}

impl Segment {
    fn new(bytes: Bytes, plain: &[u8]) -> Self {
        Segment {
            bytes,
            crc: crc32fast::hash(plain),
            shift: crc::shift_op(plain.len() as u64),
            len: plain.len() as u32,
        }
    }
}

/// The per-connection compressors one worker may hold at once (its share
/// of `sse.compression_max_bytes`) and their level.
#[derive(Debug)]
pub struct Budget {
    live: Cell<usize>,
    max: usize,
    level: u32,
}

impl Budget {
    /// Room for `max_bytes` of compressors at `level`.
    pub fn new(max_bytes: usize, level: u32) -> Rc<Budget> {
        Rc::new(Budget {
            live: Cell::new(0),
            max: max_bytes / deflater::DEFLATER_BYTES,
            level,
        })
    }

    /// The compression level.
    pub fn level(&self) -> u32 {
        self.level
    }

    fn take(&self) -> bool {
        let room = self.live.get() < self.max;
        if room {
            self.live.set(self.live.get() + 1);
        }
        room
    }

    fn give_back(&self) {
        self.live.set(self.live.get().saturating_sub(1));
    }

    /// Compressors held now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.get()
    }
}

/// One stream's gzip state: what it has sent (for the trailer) and, while
/// it compresses on its own, its compressor.
#[derive(Debug)]
pub(crate) struct StreamEncoder {
    /// CRC-32 of the plaintext sent so far.
    crc: u32,
    /// Its length, modulo 2^32 (gzip's ISIZE).
    len: u32,
    /// Its own compressor, while it has one.
    deflater: Option<Box<Deflater>>,
    budget: Rc<Budget>,
}

impl Drop for StreamEncoder {
    fn drop(&mut self) {
        self.release();
    }
}

impl StreamEncoder {
    /// A stream that has sent nothing yet, its compressor (when it needs
    /// one) taken from `budget`.
    pub(crate) fn new(budget: Rc<Budget>) -> Self {
        StreamEncoder {
            crc: 0,
            len: 0,
            deflater: None,
            budget,
        }
    }

    /// The member header, first bytes of the body.
    pub(crate) fn header() -> Bytes {
        Bytes::from_static(&HEADER)
    }

    fn account(&mut self, crc: u32, shift: u32, len: u32) {
        self.crc = crc::combine(self.crc, crc, shift);
        self.len = self.len.wrapping_add(len);
    }

    /// Accounts a shared segment queued as it is.
    pub(crate) fn sent_segment(&mut self, seg: &Segment) {
        self.account(seg.crc, seg.shift, seg.len);
    }

    /// `plain` as stored (uncompressed) deflate blocks. Only while the
    /// stream holds no compressor (see [`StreamEncoder::compress`]), or
    /// before its first.
    pub(crate) fn store(&mut self, plain: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(plain.len() + 5 * (plain.len() / 65_535 + 1));
        put_stored(&mut out, plain, false);
        self.account(
            crc32fast::hash(plain),
            crc::shift_op(plain.len() as u64),
            plain.len() as u32,
        );
        Bytes::from(out)
    }

    /// `plain` compressed with this stream's own compressor (made now if
    /// the budget has room and the piece is worth it), else stored. While
    /// it holds a compressor every piece goes through it, however small:
    /// the compressor refers back by distance into what the decoder
    /// produced, so nothing may reach the decoder beside it.
    pub(crate) fn compress(&mut self, plain: &[u8]) -> Bytes {
        if self.deflater.is_none() && (plain.len() < STORE_BELOW || !self.budget.take()) {
            return self.store(plain);
        }
        let level = self.budget.level;
        let d = self
            .deflater
            .get_or_insert_with(|| Box::new(Deflater::new(level)));
        let mut out = Vec::with_capacity(plain.len() / 2 + 16);
        d.compress(plain, &mut out, false);
        self.account(
            crc32fast::hash(plain),
            crc::shift_op(plain.len() as u64),
            plain.len() as u32,
        );
        Bytes::from(out)
    }

    /// True while it holds a compressor.
    #[cfg(test)]
    pub(crate) fn has_deflater(&self) -> bool {
        self.deflater.is_some()
    }

    /// Gives its compressor back (an idle stream): later pieces start from
    /// an empty history, which the decoder never needs to know — every
    /// piece ended on a flush.
    pub(crate) fn release(&mut self) -> bool {
        let had = self.deflater.take().is_some();
        if had {
            self.budget.give_back();
        }
        had
    }

    /// The end of the member: a final empty stored block, then the CRC-32
    /// and length of everything sent.
    pub(crate) fn trailer(&self) -> Bytes {
        let mut out = Vec::with_capacity(13);
        put_stored(&mut out, &[], true);
        out.put_u32_le(self.crc);
        out.put_u32_le(self.len);
        Bytes::from(out)
    }
}

/// Appends `plain` as stored blocks (at most 65,535 bytes each), the last
/// one final when `last`; an empty `plain` is one empty block.
fn put_stored(out: &mut Vec<u8>, plain: &[u8], last: bool) {
    let mut chunks = plain.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        put_block(out, &[], last);
        return;
    }
    while let Some(c) = chunks.next() {
        put_block(out, c, last && chunks.peek().is_none());
    }
}

/// One stored block: every piece before ended on a byte boundary, so the
/// 3 header bits and their padding make one byte.
fn put_block(out: &mut Vec<u8>, chunk: &[u8], last: bool) {
    out.put_u8(u8::from(last));
    out.put_u16_le(chunk.len() as u16);
    out.put_u16_le(!(chunk.len() as u16));
    out.extend_from_slice(chunk);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a whole gzip member with zlib-rs, checking its trailer.
    pub(crate) fn gunzip(data: &[u8]) -> Vec<u8> {
        assert_eq!(&data[..10], &HEADER);
        let body = &data[10..data.len() - 8];
        let plain = deflater::tests::inflate(body);
        let crc = u32::from_le_bytes(data[data.len() - 8..data.len() - 4].try_into().unwrap());
        let len = u32::from_le_bytes(data[data.len() - 4..].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&plain), "trailer CRC");
        assert_eq!(len as usize, plain.len(), "trailer length");
        plain
    }

    #[test]
    fn stored_compressed_and_shared_pieces_make_one_valid_member() {
        let budget = Budget::new(1 << 30, 1);
        let scratch = std::rc::Rc::new(std::cell::RefCell::new(Deflater::new(1)));
        let mut shared = group::Group::new(scratch, budget.clone());
        let mut e = StreamEncoder::new(budget.clone());
        let mut wire = StreamEncoder::header().to_vec();
        let mut plain = Vec::new();
        let mut send = |wire: &mut Vec<u8>, b: Bytes, p: &[u8]| {
            wire.extend_from_slice(&b);
            plain.extend_from_slice(p);
        };
        let retry = b"retry: 2000\n\n";
        let b = e.store(retry);
        send(&mut wire, b, retry);
        let ev = br#"id: 1\ndata: {"bid":189.12,"ask":189.14,"symbol":"AAPL"}\n\n"#;
        let b = e.compress(ev);
        send(&mut wire, b, ev);
        assert!(e.has_deflater());
        assert_eq!(budget.live(), 1);
        // The stream joins a shared group: the group's next segment starts
        // with a full flush, so it refers to nothing this stream lacks.
        shared.reset_next();
        for i in 0..3 {
            let ev = format!(
                "id: {}\ndata: {{\"bid\":189.1{i},\"symbol\":\"AAPL\"}}\n\n",
                i + 2
            );
            let seg = shared.compress(&Bytes::from(ev.clone()));
            e.sent_segment(&seg);
            send(&mut wire, seg.bytes.clone(), ev.as_bytes());
        }
        assert!(e.release());
        assert_eq!(budget.live(), 0);
        let hb = b":\n\n";
        let b = e.compress(hb);
        send(&mut wire, b, hb);
        assert!(
            !e.has_deflater(),
            "a heartbeat is stored, no compressor made"
        );
        wire.extend_from_slice(&e.trailer());
        assert_eq!(gunzip(&wire), plain);
    }

    #[test]
    fn a_small_piece_between_two_compressed_ones_goes_through_the_compressor() {
        let budget = Budget::new(1 << 30, 1);
        let mut e = StreamEncoder::new(budget);
        let mut wire = StreamEncoder::header().to_vec();
        let ev =
            br#"id: 1796691403518205441\ndata: {"bid":189.12,"ask":189.14,"symbol":"AAPL"}\n\n"#;
        let mut plain = Vec::new();
        // A heartbeat between two events: a stored block beside the
        // compressor would shift every distance the second event refers
        // back by.
        for piece in [&ev[..], b":\n\n", &ev[..]] {
            wire.extend_from_slice(&e.compress(piece));
            plain.extend_from_slice(piece);
        }
        wire.extend_from_slice(&e.trailer());
        assert_eq!(gunzip(&wire), plain);
    }

    #[test]
    fn a_large_piece_is_stored_in_several_blocks() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        let mut e = StreamEncoder::new(Budget::new(0, 1));
        let mut wire = StreamEncoder::header().to_vec();
        wire.extend_from_slice(&e.compress(&big));
        assert!(!e.has_deflater(), "no budget: stored");
        wire.extend_from_slice(&e.trailer());
        assert_eq!(gunzip(&wire), big);
    }
}
