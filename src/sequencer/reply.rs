//! What the cluster bridge answers a worker, over the worker's own ring:
//! the outcome of a publish into JetStream, or a slice of a catch-up read
//! from JetStream (SPEC §8).

use crate::event::Event;

/// One answer to one request (by the worker's request token).
#[derive(Debug)]
pub enum Reply {
    /// The publish's ids (stream sequences, in order), or why it was
    /// refused; a refused publish is delivered by no node.
    Published(Result<Vec<u64>, Refusal>),
    /// One slice of a catch-up.
    Fetched(Fetched),
}

/// Why a publish was refused: always 503, with a `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The human sentence of the error body.
    pub message: &'static str,
    /// Seconds for `Retry-After`.
    pub retry_after_s: u32,
}

/// One slice of events read from JetStream for a new subscriber.
#[derive(Debug)]
pub struct Fetched {
    /// Why continuity could not be proven (`epoch`, `history_expired`),
    /// sent once, with the first slice.
    pub resync: Option<&'static str>,
    /// The events, in id order: replayed ones, or the snapshot.
    pub events: Vec<Event>,
    /// What comes next.
    pub next: FetchNext,
}

/// After a slice: ask for more, or hand over to the node's own stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchNext {
    /// More to read: ask again for the events after this id.
    After(u64),
    /// Done: live events after this id are new to the subscriber; the
    /// worker's own history (or its ring) brings them.
    Resume(u64),
    /// JetStream could not be read (NATS unreachable): turn the
    /// subscriber away to come back later.
    Unavailable,
}
