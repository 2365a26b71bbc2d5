//! One core's loop: owns its connections, its subscription table and its
//! timer wheel, all `!Send` and touched by no other thread. Three tasks run
//! beside the connections: the accept loop, the ring drain (fan-out) and the
//! timer tick. The worker ends when it is draining and its last connection
//! has closed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use slab::Slab;

use crate::ops::metrics::WorkerMetrics;
use crate::sequencer::ring::RingProbe;

mod batch;
mod catch_up;
pub mod conn;
mod delay_line;
pub mod fanout;
mod flush_tick;
pub mod history;
mod local;
mod publish;
pub(crate) mod queued;
mod registration;
mod reply_slots;
mod shared;
mod spare;
pub(crate) mod stats;
mod storm_gate;
mod stream;
pub mod sub_table;
mod throttle;
mod timer_wheel;
mod timers;

use conn::{CloseReason, Conn, Phase};
use delay_line::DelayLine;
use flush_tick::FlushTick;
use history::History;
use local::{LocalNotify, Oneshot};
use reply_slots::ReplySlots;
use storm_gate::StormGate;
use sub_table::SubTable;
use timers::Timers;

pub(crate) use catch_up::CatchUp;
pub(crate) use fanout::drain_ring;
pub(crate) use local::Permit as StormPermit;
pub(crate) use registration::Registration;
pub(crate) use reply_slots::ReplySlot;
pub(crate) use shared::Shared;
pub(crate) use stream::run as run_stream;
pub use timer_wheel::TimerWheel;

/// The interval, in ns, of `rate` events per second per topic.
pub(crate) fn throttle_interval(rate: f64) -> u64 {
    throttle::Throttle::interval_of(rate)
}

/// Connections that may set up or close at the same time on one worker.
const STORM_GROUP: usize = 16;

/// A publish request's acknowledgement: the first id and the count.
pub(crate) type Ack = Oneshot<(u64, u32)>;

/// Where the cluster bridge's answer to one request lands.
pub(crate) type ReplyBox = local::Mailbox<crate::sequencer::reply::Reply>;

/// The worker's state, shared by its tasks through `Rc`.
pub(crate) struct Worker {
    /// Worker index (metrics label, ring index).
    pub(crate) idx: usize,
    /// Process-wide state.
    pub(crate) shared: Arc<Shared>,
    /// This worker's counters.
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// Every open connection of this worker.
    conns: RefCell<Slab<Rc<Conn>>>,
    /// Pattern → subscriber keys.
    subs: RefCell<SubTable>,
    /// Pattern → keys of the delayed-only subscribers (`subscribe_delayed`).
    delayed_subs: RefCell<SubTable>,
    /// Events waiting for the delayed view; `None` while auth is off.
    delay_line: Option<RefCell<DelayLine>>,
    /// Publish requests waiting for their ack, by token.
    acks: ReplySlots<Ack>,
    /// Requests to the cluster bridge waiting for their answer, by token.
    replies: ReplySlots<ReplyBox>,
    /// Unsent bytes over all this worker's connections.
    pending: Rc<Cell<usize>>,
    /// This worker's share of `sse.max_queued_bytes`.
    pending_budget: usize,
    /// Highest event id this worker has fanned out: the hand-over point
    /// between a replay from history and the live stream.
    last_seen: Cell<u64>,
    /// Every event this worker has fanned out, within the history bounds:
    /// its resuming subscribers' catch-up, read without a lock.
    history: RefCell<History>,
    /// Subscribers over `sse.max_pending_bytes` that the fan-out is held
    /// back for (see `fanout`).
    backlog: RefCell<Vec<Rc<Conn>>>,
    /// Subscriber writes handed to the runtime and not completed yet.
    writes_in_flight: Cell<usize>,
    /// Woken by every write progress while the fan-out is held back, so it
    /// re-judges the backlog at once rather than at the next tick.
    room: LocalNotify,
    /// This worker's ring, as seen from its other tasks.
    ring: RingProbe,
    /// Connections setting up a request (a subscription's catch-up and
    /// registration, a publish) or closing at the same time: a storm of
    /// thousands passes through in groups of `STORM_GROUP`, paced by the
    /// worker's spare time ([`StormGate`]), with the ring
    /// drain running between groups, so acknowledgements and live events
    /// are not held up for the whole storm.
    pub(crate) storm_gate: StormGate,
    /// The write-coalescing tick (`sse.write_delay_ms`).
    flush: FlushTick,
    /// Wakes the ring drain from this thread. The sequencer's doorbell is a
    /// cross-thread wake, which monoio delivers only when the worker parks;
    /// a worker kept busy by a storm of connects or closes never parks, so
    /// those paths check the ring themselves ([`Worker::kick_drain`]).
    inbox: LocalNotify,
    /// Set by the Drain message; never cleared.
    draining: Cell<bool>,
    /// Wakes the accept loop and `finished` on drain and on last close.
    lifecycle: LocalNotify,
    /// Deadlines of this worker's connections.
    timers: Timers,
    /// Room for per-connection compressors (`sse.compression_max_bytes`).
    gzip_budget: Rc<crate::gzip::Budget>,
    /// Each exact topic's shared compression, while it has members.
    gzip_groups: RefCell<crate::topic::TopicMap<Arc<str>, conn::SharedGroup>>,
    /// The one compressor every group uses in turn (made at the first).
    gzip_scratch: RefCell<Option<crate::gzip::group::Scratch>>,
    next_gen: Cell<u32>,
}

/// True when every worker's alive counter moved since `last` (which then
/// holds the new values).
pub(crate) fn all_progressed(last: &mut [u64], now: &[u64]) -> bool {
    let moved = last.iter().zip(now).all(|(a, b)| a != b);
    last.copy_from_slice(now);
    moved
}

/// An empty history with the configured bounds (kept longer with delayed
/// grants).
pub(crate) fn fresh_history(cfg: &crate::config::Config) -> History {
    if cfg.auth.enabled() {
        History::new(&cfg.history).with_delay(cfg.auth.delay_ms)
    } else {
        History::new(&cfg.history)
    }
}

impl Worker {
    /// A worker with nothing open yet; `seed` is the history read back
    /// from `history.dir`, if any.
    pub(crate) fn new(
        idx: usize,
        shared: Arc<Shared>,
        ring: RingProbe,
        seed: Option<History>,
    ) -> Self {
        let cfg = &shared.cfg;
        let history = seed.unwrap_or_else(|| fresh_history(cfg));
        let last_seen = history.last_id();
        let delay_line = cfg.auth.enabled().then(|| {
            let mut line = DelayLine::new(cfg.auth.delay_ms, cfg.history.max_bytes);
            // Restored events not yet of age still reach the delayed view.
            line.push(&history.all_events());
            RefCell::new(line)
        });
        Worker {
            idx,
            metrics: shared.workers[idx].clone(),
            conns: RefCell::new(Slab::new()),
            subs: RefCell::new(SubTable::new()),
            delayed_subs: RefCell::new(SubTable::new()),
            delay_line,
            acks: ReplySlots::default(),
            replies: ReplySlots::default(),
            last_seen: Cell::new(last_seen),
            history: RefCell::new(history),
            backlog: RefCell::new(Vec::new()),
            writes_in_flight: Cell::new(0),
            room: LocalNotify::default(),
            ring,
            storm_gate: StormGate::new(STORM_GROUP),
            inbox: LocalNotify::default(),
            flush: FlushTick::new(cfg.sse.write_delay_ms),
            pending: Rc::new(Cell::new(0)),
            pending_budget: cfg.sse.max_queued_bytes / cfg.workers().max(1),
            draining: Cell::new(false),
            lifecycle: LocalNotify::default(),
            timers: Timers::new(cfg),
            gzip_budget: crate::gzip::Budget::new(
                cfg.sse.compression_max_bytes / cfg.workers().max(1),
                cfg.sse.compression_level,
            ),
            gzip_groups: RefCell::new(Default::default()),
            gzip_scratch: RefCell::new(None),
            next_gen: Cell::new(0),
            shared,
        }
    }

    /// Bumps this worker's alive counter every `tick` while its loop runs
    /// (under systemd only). With `watchdog` set (worker 0, when systemd
    /// asked for one), also sends `WATCHDOG=1` every that often, but only
    /// when every worker's counter moved since the last look: the ping
    /// comes from a worker's own loop and stops when any worker stops.
    pub(crate) async fn keep_alive(
        self: Rc<Self>,
        tick: std::time::Duration,
        watchdog: Option<std::time::Duration>,
    ) {
        let counters = || {
            self.shared
                .workers
                .iter()
                .map(|m| m.alive.load(Relaxed))
                .collect::<Vec<_>>()
        };
        let mut last = counters();
        let mut next_ping = watchdog.map(|every| std::time::Instant::now() + every);
        while !self.draining.get() {
            self.metrics.alive.fetch_add(1, Relaxed);
            monoio::time::sleep(tick).await;
            if let (Some(due), Some(every)) = (next_ping, watchdog) {
                if std::time::Instant::now() >= due {
                    if all_progressed(&mut last, &counters()) {
                        crate::ops::notify::notify_systemd("WATCHDOG=1");
                    } else {
                        tracing::warn!("a worker made no progress in {every:?}: watchdog not fed");
                    }
                    next_ping = Some(due + every);
                }
            }
        }
    }

    /// Paces the storm gate; runs for the worker's lifetime.
    pub(crate) async fn pace_storms(self: Rc<Self>) {
        self.storm_gate.pace().await
    }

    /// True while the ring drain is held back or behind: a subscriber over
    /// its bound or the worker over its queue budget (the drain's own hold
    /// condition), or more than a turn's messages waiting in its ring.
    /// Publishes on this worker are then answered only once the drain has
    /// reached them (see `sequencer::order`).
    pub(crate) fn fanout_behind(&self) -> bool {
        !self.backlog.borrow().is_empty()
            || self.pending.get() > self.pending_budget
            || self.ring.waiting() >= fanout::MSGS_PER_TURN
    }

    /// Wakes the ring drain if messages wait for it (acknowledgements,
    /// events): called on the paths a connection storm keeps busy.
    pub(crate) fn kick_drain(&self) {
        if self.ring.has_messages() {
            self.inbox.notify();
        }
    }

    /// True once this worker drains (shutdown).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once this worker drains.
    pub(crate) async fn until_draining(&self) {
        self.lifecycle.until(|| self.draining.get()).await
    }

    /// The last event this worker fanned out: where a catch-up from its
    /// history hands over to the live stream.
    pub(crate) fn last_seen(&self) -> u64 {
        self.last_seen.get()
    }

    /// Subscriber writes handed to the runtime and not completed yet.
    pub(crate) fn writes_in_flight(&self) -> usize {
        self.writes_in_flight.get()
    }

    /// Starts (or moves) the request-head deadline of `conn`.
    pub(crate) fn arm_header(&self, conn: &Conn) {
        self.timers.arm_header(conn);
    }

    /// Stops the request-head deadline of `conn`.
    pub(crate) fn disarm_header(&self, conn: &Conn) {
        self.timers.disarm_header(conn);
    }

    /// Turns `conn` into an event stream on `patterns` (in the
    /// delayed table when `delayed`): live events after `last_id` reach it
    /// from now on, heartbeats start, and with a token the stream closes
    /// at `expires_ms` (Unix ms, leeway included) from `now_ms`. Called in
    /// the same turn as the catch-up that ended at `last_id`.
    pub(crate) fn start_stream(
        &self,
        conn: &Conn,
        patterns: Vec<Box<str>>,
        delayed: bool,
        last_id: u64,
        expires: Option<(u64, u64)>,
    ) {
        conn.set_last_id(last_id);
        {
            let mut subs = if delayed {
                self.delayed_subs.borrow_mut()
            } else {
                self.subs.borrow_mut()
            };
            for p in &patterns {
                subs.insert(p, conn.key);
            }
        }
        // A compressed stream on one exact topic shares the topic's
        // compressor: the same bytes as every other member, compressed
        // once. Only where it is sent every event of the topic and never
        // has one dropped: not delayed, not throttled, not conflated.
        let shares = conn.is_compressed()
            && !delayed
            && !conn.is_throttled()
            && self.shared.cfg.sse.slow_policy == crate::config::SlowPolicy::Disconnect
            && patterns.len() == 1
            && !crate::topic::is_wildcard(&patterns[0]);
        if shares {
            let scratch = self
                .gzip_scratch
                .borrow_mut()
                .get_or_insert_with(|| {
                    let level = self.gzip_budget.level();
                    Rc::new(RefCell::new(crate::gzip::Deflater::new(level)))
                })
                .clone();
            let group = self
                .gzip_groups
                .borrow_mut()
                .entry(Arc::from(&*patterns[0]))
                .or_insert_with(|| {
                    let budget = self.gzip_budget.clone();
                    Rc::new(RefCell::new(crate::gzip::group::Group::new(
                        scratch, budget,
                    )))
                })
                .clone();
            conn.join_group(group);
        }
        conn.set_patterns(patterns, delayed);
        conn.set_phase(Phase::Stream);
        self.metrics.subscribers_active.fetch_add(1, Relaxed);
        self.timers.arm_heartbeat(conn);
        if let Some((expires_ms, now_ms)) = expires {
            self.timers.arm_expiry(conn, expires_ms, now_ms);
        }
        if conn.is_throttled() {
            self.timers.arm_throttle(conn);
        }
    }

    /// Runs the write-coalescing tick (`sse.write_delay_ms`) for the
    /// worker's lifetime.
    pub(crate) async fn run_flush_tick(self: Rc<Self>) {
        self.flush.run().await
    }

    /// The budget of per-connection compressors.
    pub(crate) fn gzip_budget(&self) -> Rc<crate::gzip::Budget> {
        self.gzip_budget.clone()
    }

    /// A slot for a request to the cluster bridge (freed when dropped);
    /// `None` when too many wait.
    pub(crate) fn reply_slot(&self) -> Option<ReplySlot<'_, ReplyBox>> {
        self.replies.open()
    }

    /// The current tick.
    pub(crate) fn now_tick(&self) -> u64 {
        self.timers.now_tick()
    }

    /// Adds a connection to the table.
    pub(crate) fn register(&self) -> Rc<Conn> {
        let gen = self.next_gen.get().wrapping_add(1);
        self.next_gen.set(gen);
        let id = self.shared.next_conn_id.fetch_add(1, Relaxed);
        let mut conns = self.conns.borrow_mut();
        let entry = conns.vacant_entry();
        let conn = Rc::new(Conn::new(
            id,
            entry.key() as u32,
            gen,
            self.now_tick(),
            self.pending.clone(),
        ));
        entry.insert(conn.clone());
        self.metrics.connections_active.fetch_add(1, Relaxed);
        self.metrics.connections_total.fetch_add(1, Relaxed);
        self.shared.open.fetch_add(1, Relaxed);
        conn
    }

    /// Removes a connection and every subscription it had.
    pub(crate) fn unregister(&self, conn: &Conn) {
        self.unsubscribe(conn);
        if conn.phase() == Phase::Stream {
            self.metrics.subscribers_active.fetch_sub(1, Relaxed);
        }
        conn.discard_unsent();
        self.conns.borrow_mut().try_remove(conn.key as usize);
        self.metrics.connections_active.fetch_sub(1, Relaxed);
        self.shared.open.fetch_sub(1, Relaxed);
        if self.draining.get() {
            self.lifecycle.notify();
        }
    }

    /// Takes the connection's patterns out of its subscription table (and
    /// it out of its topic's shared compressor).
    pub(crate) fn unsubscribe(&self, conn: &Conn) {
        if conn.leave_group().is_some() {
            // The last member: the topic's group goes.
            if let Some(p) = conn.patterns_first() {
                self.gzip_groups.borrow_mut().remove(&*p);
            }
        }
        let mut subs = if conn.is_delayed() {
            self.delayed_subs.borrow_mut()
        } else {
            self.subs.borrow_mut()
        };
        for p in conn.take_patterns() {
            subs.remove(&p, conn.key);
        }
    }

    /// Flips this worker to draining: the accept loop stops, idle request
    /// connections close, event streams flush then close.
    pub(crate) fn begin_drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        let conns: Vec<Rc<Conn>> = self.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
        for c in conns {
            match c.phase() {
                Phase::Request => c.kill(CloseReason::Shutdown),
                Phase::Busy => {}
                Phase::Stream => c.start_drain(),
            }
        }
        self.lifecycle.notify();
    }

    /// Cluster mode: the stream was recreated. This worker forgets the old
    /// stream's events (its history and delayed view start empty, ids
    /// start over) and tells every subscriber once with `resync` `epoch`;
    /// their streams then continue with the new stream's events.
    pub(crate) fn new_epoch(&self) {
        let cfg = &self.shared.cfg;
        *self.history.borrow_mut() = fresh_history(cfg);
        if let Some(line) = &self.delay_line {
            *line.borrow_mut() = DelayLine::new(cfg.auth.delay_ms, cfg.history.max_bytes);
        }
        self.last_seen.set(0);
        let streams: Vec<Rc<Conn>> = self
            .conns
            .borrow()
            .iter()
            .map(|(_, c)| c.clone())
            .filter(|c| c.phase() == Phase::Stream)
            .collect();
        for c in &streams {
            c.set_last_id(0);
            c.push_raw(crate::frame::resync("epoch"));
            self.metrics.resyncs.fetch_add(1, Relaxed);
        }
        tracing::warn!(
            worker = self.idx,
            subscribers = streams.len(),
            "new stream epoch: subscribers told to resync"
        );
    }

    /// Resolves when the worker has drained and its last connection closed.
    pub(crate) async fn finished(&self) {
        self.lifecycle
            .until(|| self.draining.get() && self.conns.borrow().is_empty())
            .await
    }
}

#[cfg(test)]
impl Worker {
    /// Worker 0 of a one-worker server configured by `cfg`, with no
    /// sequencer behind it and no runtime under it: its state (connections,
    /// queues, timers) is plain data, so unit tests drive it directly.
    pub(crate) fn for_test(mut cfg: crate::config::Config) -> Self {
        cfg.server.workers = Some(1);
        let (tx, rx) = crate::sequencer::ring::ring(1, usize::MAX);
        let global = Arc::new(crate::ops::metrics::GlobalMetrics::default());
        let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let first = crate::sequencer::first_id(0);
        let order = crate::sequencer::order::Order::new(
            vec![tx],
            None,
            first,
            global.clone(),
            issued.clone(),
        );
        let ingest = crate::sequencer::Ingest::Worker(Arc::new(order));
        let shared = Shared::new(cfg, ingest, issued, first, global, None);
        Worker::new(0, Arc::new(shared), rx.probe(), None)
    }
}
