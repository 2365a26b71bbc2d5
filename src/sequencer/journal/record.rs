//! The journal's record framing (pure): what one append writes and how a
//! reader tells a whole record from a torn or corrupt one.
//!
//! ```text
//! record  = len:u32 | crc:u32 | payload[len]        (little endian; crc = CRC-32 of payload)
//! payload = kind:u8 | body
//!   Batch   (1): first_id:u64 | wall_ns:u64 | count:u32 | count × (topic_len:u16 | rest_len:u32 | topic | rest)
//!   Reserve (2): upto:u64        ids up to `upto` may be given out before the next Reserve
//!   Start   (3): first_id:u64 | gap_from:u64   a process began at `first_id`; ids in
//!                                               (gap_from, first_id) were lost (0: none)
//!   Close   (4): last_id:u64     a graceful stop after every event up to `last_id`
//! ```
//!
//! A batch is what the order sequenced in one go: consecutive ids from
//! `first_id`, one wall-clock time, each event's topic and its encoded SSE
//! frame exactly as subscribers were sent it, but for its first line
//! (`id: <id>`, a fifth of a small frame, which the reader writes back from
//! `first_id`). One checksum covers a whole batch, so the cost per event is
//! the bytes, not a header.

use bytes::{BufMut, Bytes};

/// Largest payload a reader accepts: a length past it is corruption, not a
/// record (a batch is at most `limits.max_body_bytes` of events).
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// Bytes before the payload.
pub(crate) const HEADER: usize = 8;

const BATCH: u8 = 1;
const RESERVE: u8 = 2;
const START: u8 = 3;
const CLOSE: u8 = 4;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// Sequenced events: ids `first_id..first_id + events.len()`.
    Batch {
        first_id: u64,
        wall_ns: u64,
        /// `(topic, frame)` of each event, in id order.
        events: Vec<(Box<str>, Bytes)>,
    },
    /// Ids up to `upto` may be given out.
    Reserve { upto: u64 },
    /// A process started at `first_id`; ids in `(gap_from, first_id)` were
    /// lost with the previous one (0: it stopped cleanly).
    Start { first_id: u64, gap_from: u64 },
    /// A graceful stop after `last_id`.
    Close { last_id: u64 },
}

/// Appends one record with `kind` and the body `write` puts after it.
fn frame_record(out: &mut Vec<u8>, kind: u8, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    out.push(kind);
    write(out);
    let payload = &out[start + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a batch record: `events` are `(topic, frame)` with consecutive
/// ids from `first_id`.
pub(crate) fn put_batch<'a>(
    out: &mut Vec<u8>,
    first_id: u64,
    wall_ns: u64,
    count: usize,
    events: impl Iterator<Item = (&'a str, &'a [u8])>,
) {
    frame_record(out, BATCH, |b| {
        b.put_u64_le(first_id);
        b.put_u64_le(wall_ns);
        b.put_u32_le(count as u32);
        for (topic, frame) in events {
            let rest = after_id_line(frame);
            b.put_u16_le(topic.len() as u16);
            b.put_u32_le(rest.len() as u32);
            b.extend_from_slice(topic.as_bytes());
            b.extend_from_slice(rest);
        }
    });
}

/// A frame without its first line when that is `id: ...` (every frame
/// `frame::encode` makes).
fn after_id_line(frame: &[u8]) -> &[u8] {
    match frame.strip_prefix(b"id: ") {
        Some(rest) => match memchr::memchr(b'\n', rest) {
            Some(i) => &rest[i + 1..],
            None => frame,
        },
        None => frame,
    }
}

/// Appends a reservation record.
pub(crate) fn put_reserve(out: &mut Vec<u8>, upto: u64) {
    frame_record(out, RESERVE, |b| b.put_u64_le(upto));
}

/// Appends a start record.
pub(crate) fn put_start(out: &mut Vec<u8>, first_id: u64, gap_from: u64) {
    frame_record(out, START, |b| {
        b.put_u64_le(first_id);
        b.put_u64_le(gap_from);
    });
}

/// Appends a close record.
pub(crate) fn put_close(out: &mut Vec<u8>, last_id: u64) {
    frame_record(out, CLOSE, |b| b.put_u64_le(last_id));
}

/// What reading at an offset found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// A whole record and the bytes it took.
    Record(Record, usize),
    /// Nothing more: the end of the data.
    End,
    /// Bytes that are not a whole, valid record: a torn write (the data
    /// ends inside a record) or corruption (a bad checksum or body).
    Torn(&'static str),
}

/// Reads the record at the start of `data`; frames are copied out (the
/// caller's buffer is a whole segment, and a retained event should not
/// keep it alive).
pub(crate) fn read(data: &[u8]) -> Read {
    if data.is_empty() {
        return Read::End;
    }
    if data.len() < HEADER {
        return Read::Torn("a record header cut short");
    }
    let len = u32::from_le_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_PAYLOAD {
        return Read::Torn("a record length out of range");
    }
    let Some(payload) = data.get(HEADER..HEADER + len) else {
        return Read::Torn("a record cut short");
    };
    if crc32fast::hash(payload) != crc {
        return Read::Torn("a record whose checksum does not match");
    }
    match decode(payload) {
        Some(r) => Read::Record(r, HEADER + len),
        None => Read::Torn("a record whose body does not parse"),
    }
}

/// A cursor over a payload.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
}

fn decode(payload: &[u8]) -> Option<Record> {
    let (&kind, rest) = payload.split_first()?;
    let mut b = Body(rest);
    let record = match kind {
        BATCH => {
            let first_id = b.u64()?;
            let wall_ns = b.u64()?;
            let count = b.u32()? as usize;
            // Each event takes at least its 6 bytes of lengths.
            if count > b.0.len() / 6 + 1 {
                return None;
            }
            let mut events = Vec::with_capacity(count);
            for i in 0..count as u64 {
                let tlen = b.u16()? as usize;
                let flen = b.u32()? as usize;
                let topic = std::str::from_utf8(b.take(tlen)?).ok()?;
                let rest = b.take(flen)?;
                let mut frame = Vec::with_capacity(flen + 25);
                frame.extend_from_slice(b"id: ");
                crate::frame::push_decimal(&mut frame, first_id.checked_add(i)?);
                frame.push(b'\n');
                frame.extend_from_slice(rest);
                events.push((topic.into(), Bytes::from(frame)));
            }
            Record::Batch {
                first_id,
                wall_ns,
                events,
            }
        }
        RESERVE => Record::Reserve { upto: b.u64()? },
        START => Record::Start {
            first_id: b.u64()?,
            gap_from: b.u64()?,
        },
        CLOSE => Record::Close { last_id: b.u64()? },
        _ => return None,
    };
    b.0.is_empty().then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut data: &[u8]) -> (Vec<Record>, Option<&'static str>) {
        let mut out = Vec::new();
        loop {
            match read(data) {
                Read::Record(r, n) => {
                    out.push(r);
                    data = &data[n..];
                }
                Read::End => return (out, None),
                Read::Torn(why) => return (out, Some(why)),
            }
        }
    }

    fn sample() -> (Vec<u8>, Vec<Record>) {
        let mut buf = Vec::new();
        put_start(&mut buf, 100, 0);
        put_reserve(&mut buf, 5_000);
        let evs = [
            ("q.a", &b"id: 100\ndata: x\n\n"[..]),
            ("q.b", &b"id: 101\nevent: e\n\n"[..]),
        ];
        put_batch(&mut buf, 100, 77, evs.len(), evs.iter().copied());
        put_close(&mut buf, 101);
        let want = vec![
            Record::Start {
                first_id: 100,
                gap_from: 0,
            },
            Record::Reserve { upto: 5_000 },
            Record::Batch {
                first_id: 100,
                wall_ns: 77,
                events: evs
                    .iter()
                    .map(|(t, f)| ((*t).into(), Bytes::copy_from_slice(f)))
                    .collect(),
            },
            Record::Close { last_id: 101 },
        ];
        (buf, want)
    }

    #[test]
    fn records_read_back_as_written() {
        let (buf, want) = sample();
        assert_eq!(all(&buf), (want, None));
    }

    /// Every cut of the data reads back the whole records before the cut
    /// and reports the rest as torn (or ends cleanly on a boundary).
    #[test]
    fn a_torn_tail_is_found_at_every_cut() {
        let (buf, want) = sample();
        let mut boundaries = vec![0];
        let mut at = 0;
        while let Read::Record(_, n) = read(&buf[at..]) {
            at += n;
            boundaries.push(at);
        }
        for cut in 0..buf.len() {
            let (got, torn) = all(&buf[..cut]);
            let whole = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
            assert_eq!(got, want[..whole], "cut at {cut}");
            assert_eq!(torn.is_some(), !boundaries.contains(&cut), "cut at {cut}");
        }
    }

    /// A flipped bit anywhere in a record is caught by its checksum (or its
    /// length), and the records before it still read.
    #[test]
    fn a_flipped_bit_is_caught() {
        let (buf, want) = sample();
        let first_len = match read(&buf) {
            Read::Record(_, n) => n,
            other => panic!("{other:?}"),
        };
        for i in first_len..buf.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = buf.clone();
                bad[i] ^= bit;
                let (got, torn) = all(&bad);
                assert!(torn.is_some(), "byte {i} bit {bit:#x}: {got:?}");
                assert_eq!(got[0], want[0], "byte {i}");
                assert!(got.len() < want.len(), "byte {i}");
                assert!(got.iter().zip(&want).all(|(g, w)| g == w), "byte {i}");
            }
        }
    }

    #[test]
    fn lengths_out_of_range_and_unknown_kinds_are_torn() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(read(&buf), Read::Torn("a record length out of range"));
        let mut buf = Vec::new();
        frame_record(&mut buf, 9, |b| b.put_u64_le(1));
        assert_eq!(read(&buf), Read::Torn("a record whose body does not parse"));
        // A body longer than its kind needs is corruption too.
        let mut buf = Vec::new();
        frame_record(&mut buf, CLOSE, |b| {
            b.put_u64_le(1);
            b.put_u8(0);
        });
        assert_eq!(read(&buf), Read::Torn("a record whose body does not parse"));
    }
}
