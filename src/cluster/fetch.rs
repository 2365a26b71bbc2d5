//! Catch-up from JetStream for a new subscriber (SPEC §8): events older
//! than the node's own history, and the snapshot. The worker asks; the
//! bridge reads with a short-lived consumer and answers one bounded slice
//! at a time over the worker's ring, so a long catch-up never fills the
//! worker's memory and never stalls it.
//!
//! Every answer ends at a hand-over point: the last sequence this node
//! had put on its rings when the read began (`target`). Events after it
//! come from the worker's own history or ring, so the two meet with no
//! gap and no duplicate.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Acquire;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;

use super::bridge::{Bridge, API_TIMEOUT};
use super::gate::{last_part_seq, part_proven, Stored};
use super::marker::{stored_ms, Marker};
use crate::event::Event;
use crate::frame;
use crate::sequencer::link::Fetch;
use crate::sequencer::reply::{FetchNext, Fetched, Reply};
use crate::sequencer::ring::Msg;

/// Messages read per slice of a replay.
const SLICE_MSGS: usize = 512;
/// Bytes of data per slice of a replay, at most (about).
const SLICE_BYTES: usize = 512 * 1024;
/// Topics a snapshot covers, at most.
const SNAPSHOT_MAX: usize = 100_000;

impl Bridge {
    /// Answers one catch-up request.
    pub(super) async fn fetch(&self, req: Fetch) {
        let fetched = match self.fetched(&req).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: catch-up from JetStream failed");
                Fetched {
                    resync: None,
                    events: Vec::new(),
                    next: FetchNext::Unavailable,
                }
            }
        };
        let msg = Msg::Reply {
            token: req.token,
            reply: Box::new(Reply::Fetched(fetched)),
        };
        self.push_to(req.origin, msg).await;
    }

    async fn fetched(&self, req: &Fetch) -> Result<Fetched, String> {
        if !self.link.is_connected() {
            return Err("NATS unreachable".into());
        }
        let s = self.stream().ok_or("stream not reached")?;
        let target = self.consumed.load(Acquire);
        let info = tokio::time::timeout(API_TIMEOUT, s.get_info())
            .await
            .map_err(|_| "stream info timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut resync = None;
        if let Some(id) = req.after {
            if id > last.max(target) {
                // Beyond anything this stream ever held: from a stream
                // that was deleted and recreated.
                resync = Some("epoch");
            } else if id.saturating_add(1) < first {
                resync = Some("history_expired");
            } else if id >= target {
                // This node has not read that far yet: its ring brings
                // the rest, after the client's id.
                return Ok(Fetched {
                    resync: None,
                    events: Vec::new(),
                    next: FetchNext::Resume(id),
                });
            } else {
                return self.replay_slice(&s, req, id, target).await;
            }
        }
        let events = if req.snapshot {
            self.snapshot(&s, req, target).await?
        } else {
            Vec::new()
        };
        Ok(Fetched {
            resync,
            events,
            next: FetchNext::Resume(target),
        })
    }

    /// The events after `after` on the request's patterns, up to `target`,
    /// one slice of them.
    async fn replay_slice(
        &self,
        s: &Stream,
        req: &Fetch,
        after: u64,
        target: u64,
    ) -> Result<Fetched, String> {
        let filter = match req.patterns.as_slice() {
            [one] => self.subjects.of(one),
            more => self.subjects.tenant_filter(&more[0]),
        };
        let policy = DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        };
        let (msgs, exhausted) = self
            .read_range(s, filter, policy, SLICE_MSGS, target)
            .await?;
        let mut proofs = HashMap::new();
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut read_upto = after;
        let mut stopped_early = false;
        for m in msgs {
            if m.seq > target {
                break;
            }
            read_upto = m.seq;
            if let Some(ev) = self.event_of(&m, &req.patterns, &mut proofs).await? {
                bytes += ev.frame.len();
                events.push(ev);
            }
            if bytes >= SLICE_BYTES {
                stopped_early = true;
                break;
            }
        }
        let done = read_upto >= target || (exhausted && !stopped_early);
        Ok(Fetched {
            resync: None,
            events,
            next: if done {
                FetchNext::Resume(target)
            } else {
                FetchNext::After(read_upto)
            },
        })
    }

    /// The newest event up to `target` of every topic matching the
    /// request's patterns, oldest first: JetStream's last message per
    /// subject, never an older value this node happens to hold.
    async fn snapshot(&self, s: &Stream, req: &Fetch, target: u64) -> Result<Vec<Event>, String> {
        let mut newest: HashMap<Box<str>, Stored> = HashMap::new();
        for p in &req.patterns {
            let filter = self.subjects.of(p);
            let (msgs, _) = self
                .read_range(
                    s,
                    filter,
                    DeliverPolicy::LastPerSubject,
                    SNAPSHOT_MAX,
                    target,
                )
                .await?;
            for m in msgs.into_iter().filter(|m| m.seq <= target) {
                match newest.get(&m.subject) {
                    Some(have) if have.seq >= m.seq => {}
                    _ => {
                        newest.insert(m.subject.clone(), m);
                    }
                }
            }
        }
        let mut msgs: Vec<Stored> = newest.into_values().collect();
        msgs.sort_unstable_by_key(|m| m.seq);
        let mut proofs = HashMap::new();
        let mut out = Vec::with_capacity(msgs.len());
        for m in &msgs {
            // A topic whose newest message is not an event (a broken
            // batch's part, a late message) is left out.
            if let Some(ev) = self.event_of(m, &req.patterns, &mut proofs).await? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// The event of `m` when it is one (see `gate`) and matches
    /// `patterns`; `proofs` remembers each batch's verdict by its last
    /// part's sequence.
    async fn event_of(
        &self,
        m: &Stored,
        patterns: &[Box<str>],
        proofs: &mut HashMap<u64, bool>,
    ) -> Result<Option<Event>, String> {
        let Some(topic) = self.subjects.topic(&m.subject) else {
            return Ok(None);
        };
        if !patterns.iter().any(|p| crate::topic::matches(p, &topic)) {
            return Ok(None);
        }
        let ok = match last_part_seq(m) {
            Some(at) => match proofs.get(&at) {
                Some(v) => *v,
                None => {
                    let last = self.read(at).await?;
                    let v = part_proven(m, last.as_ref());
                    proofs.insert(at, v);
                    v
                }
            },
            None => part_proven(m, None),
        };
        Ok(ok.then(|| Event {
            id: m.seq,
            frame: frame::encode(m.seq, m.marker.event.as_deref(), &m.data),
            topic: Arc::clone(&topic),
            born_ns: 0,
        }))
    }

    /// Reads up to `limit` messages on `filter` from `policy` with a
    /// short-lived consumer, stopping after a sequence past `stop`; also
    /// whether the stream had no more.
    async fn read_range(
        &self,
        s: &Stream,
        filter: String,
        policy: DeliverPolicy,
        limit: usize,
        stop: u64,
    ) -> Result<(Vec<Stored>, bool), String> {
        let cfg = pull::Config {
            deliver_policy: policy,
            filter_subject: filter,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            memory_storage: true,
            ..Default::default()
        };
        let c: consumer::Consumer<pull::Config> =
            tokio::time::timeout(API_TIMEOUT, s.create_consumer(cfg))
                .await
                .map_err(|_| "creating a consumer timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let name = c.cached_info().name.clone();
        let result = async {
            let mut out = Vec::new();
            loop {
                let want = (limit - out.len()).min(SLICE_MSGS);
                let mut batch = c
                    .fetch()
                    .max_messages(want)
                    .messages()
                    .await
                    .map_err(|e| e.to_string())?;
                let mut got = 0;
                let mut past = false;
                while let Some(m) = tokio::time::timeout(API_TIMEOUT, batch.next())
                    .await
                    .map_err(|_| "reading from JetStream timed out".to_owned())?
                {
                    let m = m.map_err(|e| e.to_string())?;
                    let info = m.info().map_err(|e| e.to_string())?;
                    got += 1;
                    past |= info.stream_sequence > stop;
                    out.push(Stored {
                        seq: info.stream_sequence,
                        subject: m.subject.as_str().into(),
                        marker: Marker::from_headers(m.headers.as_ref()),
                        stored_ms: stored_ms(&info.published),
                        data: m.payload.clone(),
                    });
                }
                if got < want {
                    return Ok((out, true));
                }
                if past || out.len() >= limit {
                    return Ok((out, false));
                }
            }
        }
        .await;
        let _ = tokio::time::timeout(API_TIMEOUT, s.delete_consumer(&name)).await;
        result
    }
}
