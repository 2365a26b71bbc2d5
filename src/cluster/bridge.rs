//! The bridge thread's state and its two long-running tasks: watching the
//! NATS connection and the stream (readiness, epoch, lag), and consuming
//! the stream in order into every worker's ring.
//!
//! The consumer is an ordered pull consumer from the sequence after the
//! last one this node delivered; when it fails (NATS gone, the consumer
//! lost) a new one starts from the same place once NATS is back, so the
//! node's subscribers miss nothing JetStream kept. Each message passes the
//! [`Gate`]; each event's frame is encoded once, with the stream sequence
//! as its id, and the events available at once go to the rings as one
//! batch, exactly as the sequencer's do.

use std::cell::{Cell, RefCell};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::{FutureExt, StreamExt};

use super::gate::{Gate, Stored};
use super::marker::{stored_ms, Marker};
use super::subject::Subjects;
use crate::config::Cluster as ClusterConfig;
use crate::event::{now_ns, Event};
use crate::frame;
use crate::ops::metrics::GlobalMetrics;
use crate::sequencer::link::Link;
use crate::sequencer::ring::{Msg, RingTx};

/// Most events pushed to the rings as one batch.
const MAX_BATCH: usize = 4096;
/// How often the connection and the stream are checked.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A JetStream API request that takes longer has failed.
pub(super) const API_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the bridge's tasks share (on its one thread).
pub(super) struct Bridge {
    pub(super) cfg: ClusterConfig,
    pub(super) subjects: Subjects,
    pub(super) link: Arc<Link>,
    pub(super) rings: Vec<RingTx>,
    pub(super) metrics: Arc<GlobalMetrics>,
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
    /// The last sequence this node has put on its rings (the workers'
    /// `issued` watermark).
    pub(super) consumed: Arc<AtomicU64>,
    /// The stream, once reached.
    pub(super) stream: RefCell<Option<stream::Stream>>,
    /// The stream's creation time when first reached: a different one
    /// means it was deleted and recreated (a new epoch).
    created: Cell<Option<i128>>,
    /// Wakes the consumer when the connection is back.
    pub(super) wake: tokio::sync::Notify,
    /// The highest sequence this node acknowledged to a publisher.
    pub(super) acked: Cell<u64>,
    /// Held while a batch's parts are handed to the client, so that none
    /// of this node's other publishes lands between them.
    pub(super) sending: tokio::sync::Mutex<()>,
    /// Bumped whenever the connection is lost or comes back (by the
    /// client's own event callback, at once) and when the stream changes:
    /// the consumer starts again from its last sequence once NATS is back,
    /// rather than waiting for the client library's missed-heartbeat timer
    /// to notice its consumer is gone (10-20 s after a nats-server restart).
    lost: Arc<tokio::sync::watch::Sender<u64>>,
    /// The stream was found recreated; the consumer starts the new epoch.
    recreated: Cell<bool>,
}

/// What the bridge is wired to: the workers' handle, their rings, the
/// counters, the consumed watermark and the connection-lost signal.
pub(super) struct Wiring {
    pub(super) link: Arc<Link>,
    pub(super) rings: Vec<RingTx>,
    pub(super) metrics: Arc<GlobalMetrics>,
    pub(super) consumed: Arc<AtomicU64>,
    pub(super) lost: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Bridge {
    pub(super) fn new(
        cfg: ClusterConfig,
        subjects: Subjects,
        client: async_nats::Client,
        w: Wiring,
    ) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(API_TIMEOUT);
        Bridge {
            cfg,
            subjects,
            link: w.link,
            rings: w.rings,
            metrics: w.metrics,
            client,
            js,
            consumed: w.consumed,
            stream: RefCell::new(None),
            created: Cell::new(None),
            wake: tokio::sync::Notify::new(),
            acked: Cell::new(0),
            sending: tokio::sync::Mutex::new(()),
            lost: w.lost,
            recreated: Cell::new(false),
        }
    }

    /// True while the client holds a connection to NATS.
    pub(super) fn nats_up(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The stream handle, once reached.
    pub(super) fn stream(&self) -> Option<stream::Stream> {
        self.stream.borrow().clone()
    }

    /// Reaches the stream (creating it when missing) and reads its state;
    /// `Ok(last sequence)`.
    async fn reach_stream(&self) -> Result<u64, String> {
        let config = stream::Config {
            name: self.cfg.stream.clone(),
            subjects: vec![self.subjects.all()],
            storage: stream::StorageType::File,
            max_age: Duration::from_millis(self.cfg.max_age_ms),
            duplicate_window: Duration::from_millis(self.cfg.max_age_ms.min(120_000)),
            allow_direct: true,
            ..Default::default()
        };
        let s = tokio::time::timeout(API_TIMEOUT * 2, self.js.get_or_create_stream(config))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let info = tokio::time::timeout(API_TIMEOUT, s.get_info())
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !info
            .config
            .subjects
            .iter()
            .any(|x| *x == self.subjects.all())
        {
            return Err(format!(
                "stream {} exists but does not hold the subjects {} (it has {:?})",
                self.cfg.stream,
                self.subjects.all(),
                info.config.subjects
            ));
        }
        let created = info.created.unix_timestamp_nanos();
        match self.created.get() {
            None => self.created.set(Some(created)),
            Some(c) if c != created => {
                tracing::warn!(
                    stream = %self.cfg.stream,
                    "the JetStream stream was deleted and recreated: a new epoch; ids restart \
                     from its sequences, and resuming clients with older ids get resync"
                );
                self.created.set(Some(created));
                self.recreated.set(true);
                self.lost.send_modify(|g| *g += 1);
            }
            Some(_) => {}
        }
        self.link
            .stream_last
            .store(info.state.last_sequence, Relaxed);
        *self.stream.borrow_mut() = Some(s);
        Ok(info.state.last_sequence)
    }

    /// Watches the connection: `/readyz` follows it within `CHECK_EVERY`.
    pub(super) async fn watch(&self) {
        let mut logged = false;
        loop {
            let ok = if self.nats_up() {
                match self.reach_stream().await {
                    Ok(_) => true,
                    Err(e) => {
                        if !logged {
                            tracing::warn!(error = %e, "JetStream stream not usable");
                        }
                        false
                    }
                }
            } else {
                false
            };
            let was = self.link.connected.swap(ok, Relaxed);
            if ok != was {
                if ok {
                    tracing::info!(stream = %self.cfg.stream, "cluster: JetStream reached");
                    self.wake.notify_one();
                } else {
                    tracing::warn!("cluster: NATS unreachable; publishes answer 503");
                    self.lost.send_modify(|g| *g += 1);
                }
            }
            logged = !ok;
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    /// Consumes the stream for the process's life.
    pub(super) async fn consume(&self) {
        // Start after the stream's last message: older events are served
        // from JetStream on demand (catch-up), not replayed into history.
        let start = loop {
            if self.nats_up() {
                if let Ok(last) = self.reach_stream().await {
                    break last;
                }
            }
            let _ = tokio::time::timeout(CHECK_EVERY, self.wake.notified()).await;
        };
        self.link.floor.store(start, Release);
        self.consumed.store(start, Release);
        tracing::info!(from = start + 1, "cluster: consuming the stream");
        loop {
            // Look at the stream before reading on: a stream recreated
            // meanwhile must start its epoch from sequence 1.
            if self.nats_up() {
                let _ = self.reach_stream().await;
            }
            if self.recreated.replace(false) {
                // Everything on the rings so far was the old stream's.
                self.push_all(|| Msg::Epoch).await;
                self.link.floor.store(0, Release);
                self.consumed.store(0, Release);
                self.acked.set(0);
                tracing::info!("cluster: consuming the recreated stream from its start");
            }
            if let Err(e) = self.consume_once().await {
                tracing::warn!(error = %e, after = self.consumed.load(Relaxed), "cluster: consumer stopped; restarting");
            }
            let _ = tokio::time::timeout(CHECK_EVERY, self.wake.notified()).await;
        }
    }

    /// One ordered consumer, from the sequence after the last delivered,
    /// until it fails.
    async fn consume_once(&self) -> Result<(), String> {
        if !self.nats_up() {
            return Err("NATS unreachable".into());
        }
        let Some(s) = self.stream() else {
            return Err("stream not reached".into());
        };
        let from = self.consumed.load(Relaxed) + 1;
        let cfg = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        };
        let c = tokio::time::timeout(API_TIMEOUT, s.create_consumer(cfg))
            .await
            .map_err(|_| "creating the consumer timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut msgs = c.messages().await.map_err(|e| e.to_string())?;
        let mut lost = self.lost.subscribe();
        lost.borrow_and_update();
        let mut gate = Gate::default();
        let mut ready: Vec<Stored> = Vec::new();
        loop {
            let first = tokio::select! {
                m = msgs.next() => m,
                _ = lost.changed() => return Err("the connection to NATS or the stream changed".into()),
            };
            let mut next = first;
            let mut taken = 0;
            while let Some(item) = next.take() {
                let m = item.map_err(|e| e.to_string())?;
                let info = m.info().map_err(|e| e.to_string())?;
                let seq = info.stream_sequence;
                let pending = info.pending;
                // A consumer re-created by the client library may start
                // over: what was delivered stays delivered, once.
                let fresh = seq > self.consumed.load(Relaxed) || gate.holding_from().is_some();
                if fresh {
                    let stored = Stored {
                        seq,
                        subject: m.subject.as_str().into(),
                        marker: Marker::from_headers(m.headers.as_ref()),
                        stored_ms: stored_ms(&info.published),
                        data: m.payload.clone(),
                    };
                    gate.admit(stored, &mut ready);
                    self.link.stream_last.fetch_max(seq + pending, Relaxed);
                }
                // Only once a batch is whole may its sequences count as
                // delivered: a restart must read a held batch again.
                let upto = gate.holding_from().map_or(seq, |h| h - 1);
                taken += 1;
                if taken < MAX_BATCH {
                    next = msgs.next().now_or_never().flatten();
                }
                if next.is_none() || taken >= MAX_BATCH {
                    self.deliver(std::mem::take(&mut ready), upto).await;
                }
            }
            if taken == 0 {
                return Err("the consumer ended".into());
            }
        }
    }

    /// Encodes `ready` once and puts it on every ring; `upto` is the last
    /// sequence this node has now dealt with.
    async fn deliver(&self, ready: Vec<Stored>, upto: u64) {
        let born_ns = now_ns();
        let events: Vec<Event> = ready
            .into_iter()
            .filter_map(|m| {
                let topic = self.subjects.topic(&m.subject)?;
                Some(Event {
                    id: m.seq,
                    frame: frame::encode(m.seq, m.marker.event.as_deref(), &m.data),
                    topic,
                    born_ns,
                })
            })
            .collect();
        let prev = self.consumed.load(Relaxed);
        if upto > prev {
            // Before any worker can see these ids (see `Sequencer::deliver`).
            self.consumed.store(upto, Release);
        }
        if events.is_empty() {
            return;
        }
        let n = events.len() as u64;
        let batch: Arc<[Event]> = events.into();
        self.push_all(|| Msg::Events(batch.clone())).await;
        self.metrics.events_published.fetch_add(n, Relaxed);
    }

    /// Waits (without blocking the thread, so NATS keeps being served)
    /// until every ring has room, then pushes one message to each.
    pub(super) async fn push_all(&self, msg: impl Fn() -> Msg) {
        let mut counted = false;
        while !self.rings.iter().all(|r| r.has_room(1)) {
            if !counted {
                counted = true;
                self.metrics.ring_full.fetch_add(1, Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for r in &self.rings {
            r.push(msg());
        }
    }

    /// Pushes one message to worker `w`'s ring, waiting for room likewise.
    pub(super) async fn push_to(&self, w: usize, msg: Msg) {
        let Some(r) = self.rings.get(w) else { return };
        while !r.has_room(1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        r.push(msg);
    }
}
