//! A worker's publishes: events in (validated, in their namespace), ids or
//! a refusal out — through the order on this worker, or the cluster bridge.
//! Every wait is bounded and holds a [`ReplySlot`] that is freed however
//! the wait ends.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::reply_slots::ReplySlot;
use super::Worker;
use crate::event::NewEvent;
use crate::sequencer::link::{Link, Publish, Request};
use crate::sequencer::order::{Order, Refused};
use crate::sequencer::reply::{Refusal, Reply};
use crate::sequencer::Ingest;

/// The ids a publish was given, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Published {
    /// Consecutive ids from `first` (a single node).
    Run { first: u64, count: u32 },
    /// Stream sequences (cluster mode).
    List(Vec<u64>),
}

impl Published {
    /// The ids, in order.
    pub(crate) fn ids(&self) -> Vec<u64> {
        match self {
            Published::Run { first, count } => (0..u64::from(*count)).map(|i| first + i).collect(),
            Published::List(ids) => ids.clone(),
        }
    }
}

/// How long a publish waits for room in a full ring (the workers are
/// behind) before it is refused.
const FULL_RING_WAIT: Duration = Duration::from_secs(2);

/// How much longer than `cluster.publish_timeout_ms` a worker waits for
/// the bridge's answer before it refuses the publish itself (the bridge
/// answers by the timeout plus its grace).
const BRIDGE_SLACK: Duration = Duration::from_secs(3);

const BUSY: Refusal = Refusal {
    message: "too many publishes waiting on this worker; retry shortly",
    retry_after_s: 1,
};

impl Worker {
    /// Publishes `events` (read at `read_ns`; `key`: the publisher's
    /// `Idempotency-Key`, used in cluster mode): the ids once every worker
    /// has the events on its ring (or JetStream acknowledged them), or why
    /// not — nothing of a refused publish is delivered.
    pub(crate) async fn publish(
        &self,
        events: Vec<NewEvent>,
        read_ns: u64,
        key: Option<Box<str>>,
    ) -> Result<Published, Refusal> {
        let out = match &self.shared.ingest {
            Ingest::Worker(order) => self.sequence_here(order, events, read_ns).await,
            Ingest::Cluster(link) => self.publish_to_cluster(link, events, key).await,
        };
        if out.is_err() {
            self.shared.global.publish_rejected.fetch_add(1, Relaxed);
        }
        out
    }

    /// Sequences the events on this worker. Answered at once, unless this
    /// worker's fan-out is held back or behind: then it waits for the
    /// acknowledgement its own ring drain takes behind the events (a
    /// message to itself: no thread hop), so a held-back worker slows its
    /// publishers instead of letting them fill the rings. While a ring is
    /// full it waits outside the order's lock, retrying every millisecond,
    /// and gives up after `FULL_RING_WAIT`.
    async fn sequence_here(
        &self,
        order: &Order,
        mut events: Vec<NewEvent>,
        read_ns: u64,
    ) -> Result<Published, Refusal> {
        let slot = self.acks.open().ok_or(BUSY)?;
        let give_up = Instant::now() + FULL_RING_WAIT;
        loop {
            let behind = self.fanout_behind();
            match order.sequence(
                events,
                read_ns,
                Some(self.idx),
                behind.then_some(slot.token()),
            ) {
                Ok((first, count)) => {
                    self.inbox.notify();
                    let (first, count) = if behind {
                        slot.cell().wait().await
                    } else {
                        (first, count)
                    };
                    return Ok(Published::Run { first, count });
                }
                Err(Refused::Full(back)) => events = back,
                Err(Refused::Unavailable(message)) => {
                    return Err(Refusal {
                        message,
                        retry_after_s: 1,
                    })
                }
            }
            if Instant::now() >= give_up || self.shared.draining.load(Relaxed) {
                return Err(Refusal {
                    message: "the workers are behind (ingest rings full); retry shortly",
                    retry_after_s: 1,
                });
            }
            // This worker's own ring drain runs meanwhile.
            Box::pin(monoio::time::sleep(Duration::from_millis(1))).await;
        }
    }

    /// Cluster mode: hands the events to the bridge, which publishes them
    /// into JetStream, and waits for its answer.
    async fn publish_to_cluster(
        &self,
        link: &Link,
        events: Vec<NewEvent>,
        key: Option<Box<str>>,
    ) -> Result<Published, Refusal> {
        const UNREACHABLE: Refusal = Refusal {
            message: "the cluster's NATS JetStream is unreachable; retry shortly",
            retry_after_s: 1,
        };
        if !link.is_connected() {
            return Err(UNREACHABLE);
        }
        let slot = self.replies.open().ok_or(BUSY)?;
        let req = Request::Publish(Publish {
            origin: Some(self.idx),
            token: slot.token(),
            events,
            key,
        });
        if link.send(req).is_err() {
            return Err(Refusal {
                message: "publish queue is full; retry shortly",
                retry_after_s: 1,
            });
        }
        let wait = Duration::from_millis(self.shared.cfg.cluster.publish_timeout_ms) + BRIDGE_SLACK;
        match self.reply_within(&slot, wait).await {
            Some(Reply::Published(Ok(ids))) => Ok(Published::List(ids)),
            Some(Reply::Published(Err(refusal))) => Err(refusal),
            _ => Err(UNREACHABLE),
        }
    }

    /// The bridge's answer in `slot`, or `None` after `wait`.
    pub(crate) async fn reply_within(
        &self,
        slot: &ReplySlot<'_, super::ReplyBox>,
        wait: Duration,
    ) -> Option<Reply> {
        monoio::select! {
            r = slot.cell().take() => Some(r),
            _ = Box::pin(monoio::time::sleep(wait)) => None,
        }
    }
}
