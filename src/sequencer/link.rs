//! The workers' side of the cluster bridge (SPEC §8): the bounded queue of
//! requests into the bridge thread, and the state the bridge publishes for
//! every worker through atomics. Answers come back over each worker's own
//! ring ([`super::reply`]), so a worker never waits on a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tokio::sync::mpsc;

use crate::event::NewEvent;

/// A request from a worker to the bridge.
#[derive(Debug)]
pub(crate) enum Request {
    /// Publish these events into the stream.
    Publish(Publish),
    /// Read events (or the snapshot) for a new subscriber from JetStream.
    Fetch(Fetch),
    /// Shutdown: push the drain marker to every ring once the events this
    /// node acknowledged are on them.
    Drain,
}

/// `POST /publish` in cluster mode.
#[derive(Debug)]
pub(crate) struct Publish {
    /// The worker waiting for the answer; `None` for the demo feed.
    pub(crate) origin: Option<usize>,
    /// Its request token.
    pub(crate) token: u32,
    /// Validated events, in order (topics already in their namespace).
    pub(crate) events: Vec<NewEvent>,
    /// `Idempotency-Key`, if the publisher sent one.
    pub(crate) key: Option<Box<str>>,
}

/// A catch-up read for one new subscriber.
#[derive(Debug)]
pub(crate) struct Fetch {
    /// The worker waiting for the answer.
    pub(crate) origin: usize,
    /// Its request token.
    pub(crate) token: u32,
    /// The subscription's patterns (in their namespace).
    pub(crate) patterns: Vec<Box<str>>,
    /// Replay the events after this id; `None`: a fresh subscription.
    pub(crate) after: Option<u64>,
    /// Send the last-value snapshot when the subscription starts fresh.
    pub(crate) snapshot: bool,
}

/// The handle every worker holds in cluster mode.
#[derive(Debug)]
pub(crate) struct Link {
    requests: mpsc::Sender<Request>,
    /// NATS is reachable and the stream usable (`/readyz`).
    pub(crate) connected: AtomicBool,
    /// Every worker's history holds every event after this id that it
    /// has fanned out: older ones are JetStream's to serve.
    pub(crate) floor: AtomicU64,
    /// The stream's last sequence, as last seen (for the consumer lag).
    pub(crate) stream_last: AtomicU64,
    /// Times the connection to NATS was re-established.
    pub(crate) reconnects: AtomicU64,
    /// The first connection was made.
    pub(crate) ever_connected: AtomicBool,
}

/// The request queue was full or the bridge is gone: answer 503.
#[derive(Debug)]
pub(crate) struct Busy;

impl Link {
    /// A link whose requests go into a queue of `slots`; the receiver is
    /// the bridge's.
    pub(crate) fn new(slots: usize) -> (Link, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(slots);
        (
            Link {
                requests: tx,
                connected: AtomicBool::new(false),
                floor: AtomicU64::new(0),
                stream_last: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                ever_connected: AtomicBool::new(false),
            },
            rx,
        )
    }

    /// Queues a request without waiting (a worker never blocks).
    pub(crate) fn send(&self, req: Request) -> Result<(), Busy> {
        self.requests.try_send(req).map_err(|_| Busy)
    }

    /// Queues a request, waiting for room: for the main thread only
    /// (shutdown), never a worker.
    pub(crate) fn send_waiting(&self, req: Request) {
        let _ = self.requests.blocking_send(req);
    }

    /// True while NATS is reachable and the stream usable.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Relaxed)
    }
}
