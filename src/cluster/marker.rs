//! What ringcast writes beside each event in its JetStream message, as
//! headers, and reads back on every node:
//!
//! - `Ringcast-Event`: the event type, when the publisher gave one.
//! - `Ringcast-Deadline`: Unix milliseconds after which the publishing node
//!   may have answered 503. A message JetStream stored after it is
//!   delivered by no node, so a publish that a client library's reconnect
//!   buffer sends late (after the 503) is never delivered.
//! - `Ringcast-Batch: <tag> <i>/<n>`: part `i` of an ndjson batch of `n`
//!   events. Part `i > 0` is published with `Nats-Expected-Last-Msg-Id` set
//!   to part `i - 1`'s message id, so JetStream stores it only right after
//!   part `i - 1`: the parts of a batch are consecutive in the stream or
//!   the batch is broken, and the last part's presence proves the whole
//!   batch is there. See [`super::gate`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Header: the event type.
pub(crate) const EVENT: &str = "Ringcast-Event";
/// Header: the deadline, Unix ms.
pub(crate) const DEADLINE: &str = "Ringcast-Deadline";
/// Header: `<tag> <i>/<n>`.
pub(crate) const BATCH: &str = "Ringcast-Batch";

/// One part of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The batch attempt's tag, the same on every part.
    pub(crate) tag: Box<str>,
    /// This part's position, from 0.
    pub(crate) index: u32,
    /// The batch's size (at least 2).
    pub(crate) count: u32,
}

impl Part {
    /// True for the batch's last part.
    pub(crate) fn is_last(&self) -> bool {
        self.index + 1 == self.count
    }

    /// The header value.
    pub(crate) fn header(&self) -> String {
        format!("{} {}/{}", self.tag, self.index, self.count)
    }

    /// Parses a header value; `None` when malformed.
    pub(crate) fn parse(v: &str) -> Option<Part> {
        let (tag, pos) = v.split_once(' ')?;
        let (i, n) = pos.split_once('/')?;
        let (index, count) = (i.parse::<u32>().ok()?, n.parse::<u32>().ok()?);
        (!tag.is_empty() && count >= 2 && index < count).then(|| Part {
            tag: tag.into(),
            index,
            count,
        })
    }

    /// The `Nats-Msg-Id` of part `index` of the batch tagged `tag`.
    pub(crate) fn msg_id(tag: &str, index: u32) -> String {
        format!("{tag}.{index}")
    }
}

/// Everything ringcast reads back from one stored message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Marker {
    /// `Ringcast-Event`.
    pub(crate) event: Option<Box<str>>,
    /// `Ringcast-Deadline`.
    pub(crate) deadline_ms: Option<u64>,
    /// `Ringcast-Batch`.
    pub(crate) part: Option<Part>,
}

impl Marker {
    /// Reads the headers (a malformed one counts as absent).
    pub(crate) fn from_headers(h: Option<&async_nats::HeaderMap>) -> Marker {
        let Some(h) = h else {
            return Marker::default();
        };
        let get = |k: &str| h.get(k).map(|v| v.as_str());
        Marker {
            event: get(EVENT)
                .filter(|e| !e.is_empty() && e.len() <= 64)
                .map(Box::from),
            deadline_ms: get(DEADLINE).and_then(|d| d.parse().ok()),
            part: get(BATCH).and_then(Part::parse),
        }
    }

    /// True when the message was stored (at `stored_ms`) by its deadline.
    pub(crate) fn on_time(&self, stored_ms: u64) -> bool {
        self.deadline_ms.is_none_or(|d| stored_ms <= d)
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A JetStream timestamp in Unix milliseconds.
pub(crate) fn stored_ms(t: &async_nats::datetime::DateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_headers_round_trip_and_reject_nonsense() {
        let p = Part {
            tag: "k1.0".into(),
            index: 2,
            count: 5,
        };
        assert_eq!(Part::parse(&p.header()), Some(p));
        for bad in ["", "x", "t 1", "t 5/5", "t 0/1", " 0/2", "t a/2", "t 0/x"] {
            assert_eq!(Part::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Part::msg_id("k.1", 3), "k.1.3");
    }

    #[test]
    fn deadline_decides_on_time() {
        let m = Marker {
            deadline_ms: Some(100),
            ..Marker::default()
        };
        assert!(m.on_time(100));
        assert!(!m.on_time(101));
        assert!(Marker::default().on_time(u64::MAX));
    }
}
