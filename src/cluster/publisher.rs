//! `POST /publish` in cluster mode: into JetStream, answered only once
//! JetStream acknowledged (SPEC §8).
//!
//! - While NATS is unreachable nothing is sent: the answer is 503 at once,
//!   so no client-side reconnect buffer can publish it later.
//! - Every message carries a deadline (now + `cluster.publish_timeout_ms`).
//!   The node answers 200 only for messages stored by their deadline, and
//!   it answers 503 without an acknowledgement only once the deadline is
//!   `GRACE` past (so a message stored later is late by JetStream's clock
//!   too, and no node delivers it). An acknowledgement that comes close to
//!   the deadline is judged by the stored time JetStream reports, the rule
//!   every node applies.
//! - `Idempotency-Key` becomes `Nats-Msg-Id`: JetStream stores a retry
//!   within its duplicate window once and acknowledges it with the first
//!   sequence.
//! - An ndjson batch of `n` events is `n` messages whose parts are chained
//!   with `Nats-Expected-Last-Msg-Id` (see [`super::marker`]): its parts
//!   are stored back to back or the chain breaks and the batch is
//!   delivered nowhere. This node sends a batch's parts without letting
//!   its own other publishes between them; another node's publish can
//!   still break the chain, and then the batch is sent again under a new
//!   tag, up to `ATTEMPTS` times, before the answer is 503.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::HeaderMap;

use super::bridge::{Bridge, API_TIMEOUT};
use super::gate::Stored;
use super::marker::{self, stored_ms, unix_ms, Marker, Part};
use crate::event::NewEvent;
use crate::sequencer::link::Publish;
use crate::sequencer::reply::{Refusal, Reply};
use crate::sequencer::ring::Msg;

/// Clock difference between nodes and NATS that the deadline tolerates.
const GRACE: Duration = Duration::from_millis(500);
/// Times a batch is sent again after another publish broke its chain.
const ATTEMPTS: u32 = 4;

const UNREACHABLE: Refusal = Refusal {
    message: "the cluster's NATS JetStream is unreachable; retry shortly",
    retry_after_s: 1,
};
const NO_ACK: Refusal = Refusal {
    message: "NATS JetStream did not acknowledge the publish in cluster.publish_timeout_ms; \
              nothing was published",
    retry_after_s: 1,
};
const CONTENDED: Refusal = Refusal {
    message: "the batch kept being interleaved with other publishes; nothing was published",
    retry_after_s: 1,
};

/// Source of batch tags for publishes without an `Idempotency-Key`.
fn fresh_tag() -> String {
    format!("rc-{:016x}", fastrand::u64(..))
}

impl Bridge {
    /// Publishes one request and answers its worker.
    pub(super) async fn publish(&self, req: Publish) {
        let answer = self.place(&req.events, req.key.as_deref()).await;
        if let Ok(ids) = &answer {
            if let Some(&last) = ids.last() {
                self.acked.set(self.acked.get().max(last));
            }
        }
        if let Some(w) = req.origin {
            let msg = Msg::Reply {
                token: req.token,
                reply: Box::new(Reply::Published(answer)),
            };
            self.push_to(w, msg).await;
        }
    }

    async fn place(&self, events: &[NewEvent], key: Option<&str>) -> Result<Vec<u64>, Refusal> {
        if !self.link.is_connected() || !self.nats_up() {
            return Err(UNREACHABLE);
        }
        let timeout = Duration::from_millis(self.cfg.publish_timeout_ms);
        let deadline_ms = unix_ms() + self.cfg.publish_timeout_ms;
        let give_up = tokio::time::Instant::now() + timeout + GRACE;
        if let [one] = events {
            let mut h = self.headers(one, deadline_ms);
            if let Some(k) = key {
                h.insert(async_nats::header::NATS_MESSAGE_ID, k);
            }
            let fut = {
                let _turn = self.sending.lock().await;
                self.send(one, h).await.map_err(|_| UNREACHABLE)?
            };
            let ack = tokio::time::timeout_at(give_up, fut.into_future())
                .await
                .map_err(|_| NO_ACK)?
                .map_err(|_| NO_ACK)?;
            return self
                .confirm(ack.sequence, ack.duplicate, deadline_ms)
                .await
                .map(|s| vec![s]);
        }
        let base = key.map_or_else(fresh_tag, str::to_owned);
        let started = Instant::now();
        for attempt in 0..ATTEMPTS {
            if started.elapsed() >= timeout {
                break;
            }
            let tag = format!("{base}.{attempt}");
            match self.place_batch(events, &tag, deadline_ms, give_up).await {
                Err(None) => continue,
                Err(Some(r)) => return Err(r),
                Ok(ids) => return Ok(ids),
            }
        }
        Err(CONTENDED)
    }

    /// One attempt at a batch: `Err(None)` when another publish broke its
    /// chain (try again under a new tag).
    async fn place_batch(
        &self,
        events: &[NewEvent],
        tag: &str,
        deadline_ms: u64,
        give_up: tokio::time::Instant,
    ) -> Result<Vec<u64>, Option<Refusal>> {
        let n = events.len() as u32;
        let mut futs = Vec::with_capacity(events.len());
        {
            // This node's other publishes wait until every part is sent.
            let _turn = self.sending.lock().await;
            for (i, ev) in events.iter().enumerate() {
                let i = i as u32;
                let mut h = self.headers(ev, deadline_ms);
                let part = Part {
                    tag: tag.into(),
                    index: i,
                    count: n,
                };
                h.insert(marker::BATCH, part.header().as_str());
                h.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    Part::msg_id(tag, i).as_str(),
                );
                if i > 0 {
                    h.insert(
                        async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                        Part::msg_id(tag, i - 1).as_str(),
                    );
                }
                futs.push(self.send(ev, h).await.map_err(|_| Some(UNREACHABLE))?);
            }
        }
        let mut seqs = Vec::with_capacity(futs.len());
        let mut broken = false;
        let mut duplicate = false;
        for fut in futs {
            match tokio::time::timeout_at(give_up, fut.into_future()).await {
                Err(_) => return Err(Some(NO_ACK)),
                Ok(Ok(ack)) => {
                    duplicate |= ack.duplicate;
                    seqs.push(ack.sequence);
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastMessageId => broken = true,
                Ok(Err(_)) => return Err(Some(NO_ACK)),
            }
        }
        if broken {
            return Err(None);
        }
        let last = *seqs.last().expect("a batch has parts");
        if seqs.windows(2).any(|w| w[1] != w[0] + 1) {
            // Cannot happen while the chain held; refuse rather than
            // answer ids that no node delivers.
            return Err(Some(NO_ACK));
        }
        self.confirm(last, duplicate, deadline_ms)
            .await
            .map_err(Some)?;
        Ok(seqs)
    }

    /// The answer for a message acknowledged at `seq`: 200 when it was
    /// surely stored by its deadline; else (acknowledged late, or a
    /// duplicate of an earlier publish) by the stored time JetStream
    /// reports, the rule every node applies.
    async fn confirm(&self, seq: u64, duplicate: bool, deadline_ms: u64) -> Result<u64, Refusal> {
        if !duplicate && unix_ms() + (GRACE.as_millis() as u64) <= deadline_ms {
            return Ok(seq);
        }
        match self.read(seq).await {
            Ok(Some(m)) if m.marker.on_time(m.stored_ms) => Ok(seq),
            _ => Err(NO_ACK),
        }
    }

    /// The message at `seq`, or `None` when the stream does not hold it.
    pub(super) async fn read(&self, seq: u64) -> Result<Option<Stored>, String> {
        let s = self.stream().ok_or("stream not reached")?;
        match tokio::time::timeout(API_TIMEOUT, s.get_raw_message(seq)).await {
            Err(_) => Err("timed out".into()),
            Ok(Ok(m)) => Ok(Some(Stored {
                seq: m.sequence,
                subject: m.subject.as_str().into(),
                marker: Marker::from_headers(Some(&m.headers)),
                stored_ms: stored_ms(&m.time),
                data: m.payload,
            })),
            Ok(Err(e)) => {
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                ) {
                    Ok(None)
                } else {
                    Err(e.to_string())
                }
            }
        }
    }

    fn headers(&self, ev: &NewEvent, deadline_ms: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(marker::DEADLINE, deadline_ms.to_string().as_str());
        if let Some(e) = &ev.event {
            h.insert(marker::EVENT, &**e);
        }
        h
    }

    /// Hands one message to the client (no wait for the acknowledgement).
    async fn send(&self, ev: &NewEvent, h: HeaderMap) -> Result<PublishAckFuture, ()> {
        if !self.nats_up() {
            return Err(());
        }
        let subject = self.subjects.of(&ev.topic);
        self.js
            .publish_with_headers(subject, h, ev.data.clone())
            .await
            .map_err(|_| ())
    }
}
