//! The vocabulary every stage shares: an event as a publisher sent it
//! ([`NewEvent`]), an event once sequenced ([`Event`]), and the clocks its
//! id and latency come from.
//!
//! Ids: the first id of a process is its start time in microseconds since
//! the Unix epoch, and ids count up from there. Ids therefore stay plain
//! increasing integers across restarts, and an id below this process's first
//! id is recognisably from an earlier epoch.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// The event type reserved for the server's resync signal.
pub(crate) const RESYNC_EVENT: &str = "resync";

/// One event as a publisher sent it, validated. Built without copying
/// where it can be: the topic is the handle every stage keeps, and the data
/// is a slice of the request body (a copy only where JSON escapes had to
/// be decoded), read once more by the frame encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Concrete topic.
    pub topic: Arc<str>,
    /// Event type, if any.
    pub event: Option<Box<str>>,
    /// The data: valid UTF-8, checked when the request was parsed.
    pub data: Bytes,
}

/// One sequenced event as every worker sees it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Strictly increasing across all topics.
    pub id: u64,
    /// Concrete topic.
    pub topic: Arc<str>,
    /// The encoded SSE frame, shared by history and every subscriber.
    pub frame: Bytes,
    /// When it was sequenced ([`now_ns`]), for the latency histogram.
    pub born_ns: u64,
}

/// Nanoseconds since the process's clock base; cheap and monotonic.
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The first id this process assigns.
pub(crate) fn epoch_first_id() -> u64 {
    static FIRST: OnceLock<u64> = OnceLock::new();
    *FIRST.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64)
    })
}
