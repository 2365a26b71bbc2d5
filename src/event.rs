//! The vocabulary every stage shares: an event as a publisher sent it
//! ([`NewEvent`]), an event once sequenced ([`Event`]), and the clocks its
//! id and latency come from.
//!
//! Ids follow the wall clock in nanoseconds (see `sequencer`), so they stay
//! plain increasing integers across restarts and crashes.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

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

/// Where [`now_ns`] starts: far enough above 0 that an event read back
/// from the journal, sequenced before this process started, still has a
/// time on this clock (its age) — up to 13 days back.
const CLOCK_START_NS: u64 = 1 << 50;

/// Nanoseconds on the process's clock; cheap and monotonic.
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    CLOCK_START_NS + BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
