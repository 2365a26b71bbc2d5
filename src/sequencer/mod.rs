//! The single order of events: a publishing worker (or the demo feed)
//! hands in validated events; they get strictly increasing ids, each frame
//! is encoded exactly once into `Bytes`, and one `Arc<[Event]>` per batch
//! goes onto every worker's ring ([`ring`]) and, with `history.dir`, the
//! journal's ([`journal`]). The order is kept under a short lock by
//! whichever worker publishes ([`order`]); in cluster mode the NATS bridge
//! keeps it instead, over [`link`], with answers over [`reply`].
//!
//! Ids follow the wall clock: a batch's first id is the larger of the
//! next unused id and the time in nanoseconds since the Unix epoch, and
//! ids count up by one within a batch. A process can only run ahead of the
//! clock by more than a few microseconds if it sequences more than 10^9
//! events a second, so a restarted process (whose ids start at its start
//! time) gives out ids above every id of its predecessors, crashed or not,
//! and an id below its first one is recognisably from an earlier epoch.
//! With `history.dir` the journal also persists a reservation ahead of the
//! ids, which holds even when the clock is set back across a restart.

use std::sync::Arc;

use crate::event::{Event, NewEvent};
use crate::frame;

pub mod journal;
pub(crate) mod link;
pub(crate) mod order;
pub mod reply;
pub mod ring;

/// The first id of a batch sequenced now, after `next_id` was the next
/// unused one.
pub(crate) fn first_id(next_id: u64) -> u64 {
    next_id.max(journal::wall_ns())
}

/// Gives `events` consecutive ids from `first` on and encodes each frame
/// once.
fn stamp(first: u64, events: Vec<NewEvent>, born_ns: u64) -> Vec<Event> {
    events
        .into_iter()
        .zip(first..)
        .map(|(ev, id)| Event {
            id,
            frame: frame::encode(id, ev.event.as_deref(), &ev.data),
            topic: ev.topic,
            born_ns,
        })
        .collect()
}

/// Where publishers hand their events.
#[derive(Debug)]
pub(crate) enum Ingest {
    /// The publishing worker itself, under the order's lock.
    Worker(Arc<order::Order>),
    /// Cluster mode: the bridge thread, which publishes into JetStream
    /// and feeds the rings from the stream.
    Cluster(Arc<link::Link>),
}

impl Ingest {
    /// Publishes `events` with no one waiting for the answer (the demo
    /// feed): refused whole when the order or the cluster is busy.
    pub(crate) fn submit_detached(&self, events: Vec<NewEvent>) {
        match self {
            Ingest::Worker(order) => {
                let _ = order.sequence(events, crate::event::now_ns(), None, None);
            }
            Ingest::Cluster(link) => {
                let _ = link.send(link::Request::Publish(link::Publish {
                    origin: None,
                    token: 0,
                    events,
                    key: None,
                }));
            }
        }
    }

    /// Shutdown: every worker drains after every event sequenced before
    /// (from the main thread, which may wait for room).
    pub(crate) fn drain(&self) {
        match self {
            Ingest::Worker(order) => order.drain(),
            Ingest::Cluster(link) => link.send_waiting(link::Request::Drain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_wall_clock_and_never_go_back() {
        let now = journal::wall_ns();
        let a = first_id(0);
        assert!(a >= now, "at least the clock");
        assert!(a < now + 60_000_000_000, "not far ahead of it");
        // Ahead of the clock (a burst, or a reservation after a restart),
        // the next unused id wins.
        let ahead = journal::wall_ns() + 3_600_000_000_000;
        assert_eq!(first_id(ahead), ahead);
        let ev = |t: &str| NewEvent {
            topic: t.into(),
            event: None,
            data: bytes::Bytes::from_static(b"d"),
        };
        let batch = stamp(41, vec![ev("a"), ev("b")], 5);
        assert_eq!(batch.iter().map(|e| e.id).collect::<Vec<_>>(), vec![41, 42]);
        assert_eq!(&batch[1].frame[..], b"id: 42\ndata: d\n\n");
    }
}
