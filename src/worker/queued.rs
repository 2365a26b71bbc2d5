//! A frame handle in a connection's queue: what the fan-out, the catch-up
//! and the write batches pass around (the shared `Bytes`, never a copy),
//! apart from the connection so that the queue's users and the spare-array
//! pool need not import the connection.

use std::sync::Arc;

use bytes::Bytes;

/// `Queued::born_ns` of an event replayed from history: counted as a
/// delivery, not as a publish-to-write latency sample.
pub(crate) const REPLAYED: u64 = u64::MAX;

/// A frame handle in a connection's queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// The shared frame bytes (refcounted, never copied per subscriber).
    pub(crate) frame: Bytes,
    /// Sequencing time of an event ([`crate::event::now_ns`]); 0 for
    /// non-event bytes (response head, heartbeat, retry), which are not
    /// counted as deliveries.
    pub(crate) born_ns: u64,
    /// The event's topic, kept only under the conflate policy (so the
    /// default path pays no refcount for it).
    pub(crate) topic: Option<Arc<str>>,
}
