//! `ringcast-load`: a bounded load generator for SSE fan-out servers
//! (ringcast, or nchan for a side-by-side run). It opens N real SSE
//! connections over loopback, publishes at a fixed rate or as fast as
//! acknowledged with K requests in flight, and reports connect rate, time to
//! first byte, deliveries/s, publish-to-receive latency percentiles, lost /
//! duplicated / reordered events, server CPU per million deliveries and
//! server RSS per connection. Each event carries its topic index, a
//! per-topic sequence number and a send timestamp. Streams may be
//! close-delimited (ringcast) or chunked (nchan). Every run stops by itself.
//!
//! A subscriber that has every event keeps its connection open until the
//! publish phase is measured; then all of them close and the server's CPU
//! for the closing is reported on its own (`server_cpu_us_per_close`). Until
//! 2026-12-04 each closed as soon as it was complete: with T topics the
//! subscribers of the first topics to finish closed while the last events
//! were still being delivered, so thousands of closes (10-20 µs of server
//! CPU each) landed in the last events' latency and in the CPU per delivery.
//! (Not in a resume storm, whose subscribers still close as they finish.)
//!
//! Two "market open" modes: `--batch N` publishes ndjson batches of N events
//! per request (a burst; ringcast only, nchan gets the same events one per
//! request) and reports the reading subscribers that the server disconnected;
//! `--resumers-pct P` runs a resume storm (P% of the subscribers drop their
//! connections at once and reconnect at once with `Last-Event-ID`) and
//! compares publish-acknowledgement and live latency in the storm with the
//! same run's calm window, checking that every resumer gets exactly the
//! events it missed. `--venues V` subscribes with wildcards
//! (`quotes.*.S<k>`) over topics `quotes.V<v>.S<k>`. In a storm the
//! resumers run on a second thread, so that the generator's own storm work
//! does not delay the publishers and stayers it measures.
//!
//! The market mode (`--topics-per-sub K`): each subscriber takes K topics in
//! one multi-topic subscription (`/events?topic=a&topic=b...`; nchan:
//! `/msub/a,b,...`), and `--wildcard-pct P` puts P% of them on a whole venue
//! (`quotes.V<v>.>`; nchan, which has no wildcard, gets 2K channels of that
//! venue instead: not the same load). Every subscriber knows the exact union
//! of topics it should receive: loss, duplication and order are checked per
//! (publisher, topic), and an event of a topic outside it is `misrouted`.
//!
//! A cluster (`--also-addr`): subscribers and publishing connections are
//! spread round-robin over the nodes, so every event crosses from the node it
//! was published on to the others, and one process still checks every
//! delivery and times it on one clock. `--server-pid` may then name every
//! node; their CPU is added up.

mod notify;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use notify::{LocalNotify, SlotNotify};

#[derive(Parser, Debug, Clone)]
#[command(name = "ringcast-load", about = "Bounded SSE fan-out load generator")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// More nodes of the same cluster (repeatable). With n nodes (--addr
    /// and these), publishing connection c goes to node c mod n and
    /// subscriber i to node (i / --topics) mod n, so that every topic has
    /// subscribers on every node. /metrics is scraped from --addr only.
    #[arg(long)]
    also_addr: Vec<SocketAddr>,
    /// Subscriber connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Topics; subscriber i listens to topic i % topics.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Events to publish in all.
    #[arg(long, default_value_t = 1000)]
    events: u64,
    /// Events per second over all topics; 0 = as fast as acknowledged.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Publish requests in flight, one per publishing connection (each
    /// connection keeps its own per-topic sequence, so order is checked per
    /// publisher, which is the order a server can promise).
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Requests pipelined on each publishing connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Spread subscriber connections over this many 127.0.0.x source
    /// addresses (0 = only when one address's ephemeral ports run out).
    #[arg(long, default_value_t = 0)]
    source_ips: usize,
    /// Payload bytes per event (at least the header).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Percentage of subscribers that never read after connecting.
    #[arg(long, default_value_t = 0.0)]
    stalled_pct: f64,
    /// Concurrent connection attempts while connecting subscribers.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Server kind: "ringcast" or "nchan" (URL layout).
    #[arg(long, default_value = "ringcast")]
    server: String,
    /// Server PID for CPU and RSS figures; repeat it for several server
    /// processes (cluster nodes), whose figures are added up.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// The core the server is pinned to: also report how busy that core
    /// was from /proc/stat (any process, with interrupts and softirqs,
    /// which loopback TCP does not always charge to the server's process).
    #[arg(long)]
    server_core: Option<usize>,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Only connect (connection storm / idle memory); publish nothing.
    #[arg(long)]
    connect_only: bool,
    /// With --connect-only: hold the connections this long before taking
    /// the server's RSS (lets it settle).
    #[arg(long, default_value_t = 0.0)]
    hold_s: f64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Events per publish request (a burst of N events at once). Above 1,
    /// ringcast gets one `application/x-ndjson` request per N events; nchan,
    /// which has no batch publish, gets the same events one per request on
    /// the same connections (the report's `batch_publish` says which).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Wildcard subscriptions: the topics are `quotes.V<v>.S<k>` over this
    /// many venues (`--topics` must be a multiple), and subscriber i
    /// subscribes `quotes.*.S<i % symbols>` (one symbol on every venue; nchan:
    /// the same channels by multi-channel subscribe). 0 = one plain topic per
    /// subscriber.
    #[arg(long, default_value_t = 0)]
    venues: usize,
    /// Market mode: each subscriber takes this many distinct topics in one
    /// multi-topic subscription (ringcast: repeated `topic=`, at most
    /// limits.topics_per_subscription; nchan: `/msub/a,b,...`). The sets
    /// differ from subscriber to subscriber and every topic gets the same
    /// number of subscribers. 0 = off.
    #[arg(long, default_value_t = 0)]
    topics_per_sub: usize,
    /// Market mode: this share of the subscribers subscribe to a whole venue
    /// (ringcast: `quotes.V<v>.>`, needs --venues), spread evenly over the
    /// venues. nchan cannot express a wildcard: there they take 2 ×
    /// --topics-per-sub channels of that venue instead (not the same load).
    #[arg(long, default_value_t = 0.0)]
    wildcard_pct: f64,
    /// Resume storm: this share of the subscribers (the resumers) drop their
    /// connections at once after --warmup-s + --baseline-s of publishing and
    /// reconnect at once with Last-Event-ID once --resume-back more events
    /// were acknowledged; the others (the stayers) stay connected. Needs
    /// --rate. 0 = no storm.
    #[arg(long, default_value_t = 0.0)]
    resumers_pct: f64,
    /// Resume storm: events published (acknowledged) between the resumers'
    /// drop and their reconnect, i.e. missed and replayed from history.
    #[arg(long, default_value_t = 1000)]
    resume_back: u64,
    /// Resume storm: publishing before the calm (no-storm) window.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Resume storm: the calm window measured before the storm.
    #[arg(long, default_value_t = 3.0)]
    baseline_s: f64,
    /// Resume storm: the storm window lasts from the drop until every resumer
    /// has caught up, and at least this long after the reconnect.
    #[arg(long, default_value_t = 3.0)]
    storm_s: f64,
    /// Resume storm: also write every acknowledgement and stayer latency
    /// sample to this file, one per line (`a|l <µs since start> <µs>`),
    /// after a first line `drop <µs> end <µs>`, to plot the storm over time.
    #[arg(long)]
    samples_out: Option<std::path::PathBuf>,
    /// Scrape the server's /metrics before and after (ringcast only) and
    /// report the slow / stall disconnects and resyncs in between.
    #[arg(long)]
    server_metrics: bool,
    /// A JWT the subscribers send (`Authorization: Bearer`), for a server
    /// with auth on.
    #[arg(long)]
    sub_token: Option<String>,
    /// A JWT the publishers send.
    #[arg(long)]
    pub_token: Option<String>,
}

impl Args {
    /// The `i`-th node, round-robin over --addr and --also-addr.
    fn node(&self, i: usize) -> SocketAddr {
        match i % (1 + self.also_addr.len()) {
            0 => self.addr,
            k => self.also_addr[k - 1],
        }
    }
    fn symbols(&self) -> usize {
        self.topics / self.venues.max(1)
    }
    /// The `Authorization` header line for `token`, or nothing.
    fn bearer(token: &Option<String>) -> String {
        token
            .as_ref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"))
    }
    /// Topic index `t` as a ringcast topic.
    fn topic_name(&self, t: usize) -> String {
        match self.venues {
            0 => format!("load.t{t}"),
            v => format!("quotes.V{}.S{}", t % v, t / v),
        }
    }
    fn market(&self) -> bool {
        self.topics_per_sub > 0
    }
    /// Market mode: the venue of subscriber `idx` if it is a wildcard
    /// subscriber, with its rank among them.
    fn wildcard_of(&self, idx: usize) -> Option<(usize, usize)> {
        if !self.market() || self.venues == 0 || self.wildcard_pct <= 0.0 {
            return None;
        }
        let p = self.wildcard_pct / 100.0;
        let (now, next) = ((idx as f64 * p).floor(), ((idx + 1) as f64 * p).floor());
        (next > now).then(|| {
            let rank = now as usize;
            (rank % self.venues, rank)
        })
    }
    /// Market mode: subscriber `idx`'s own topics, `idx % topics + j * q`
    /// (j < K) modulo the topic count, with q coprime to it: distinct
    /// topics, a different set for every subscriber of a round of `topics`
    /// subscribers (q changes from round to round), and each topic taken
    /// by exactly K subscribers per round.
    fn market_topics(&self, idx: usize) -> Vec<usize> {
        let (n, k) = (self.topics, self.topics_per_sub);
        let gcd = |mut a: usize, mut b: usize| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        let mut q = n / k + 1;
        let mut skip = idx / n;
        loop {
            if gcd(q, n) == 1 {
                if skip == 0 {
                    break;
                }
                skip -= 1;
            }
            q += 1;
        }
        (0..k).map(|j| (idx % n + j * q) % n).collect()
    }
    /// The topic indexes subscriber `idx` receives.
    fn sub_topics(&self, idx: usize) -> Vec<usize> {
        if let Some((venue, rank)) = self.wildcard_of(idx) {
            let v = self.venues;
            return match self.server.as_str() {
                // The nchan stand-in: 2K symbols of the venue, a different
                // run of them for each wildcard subscriber of the venue.
                "nchan" => {
                    let syms = self.symbols();
                    let from = rank / v * 2 * self.topics_per_sub;
                    (0..2 * self.topics_per_sub)
                        .map(|j| (from + j) % syms * v + venue)
                        .collect()
                }
                _ => (0..self.symbols()).map(|s| s * v + venue).collect(),
            };
        }
        if self.market() {
            return self.market_topics(idx);
        }
        match self.venues {
            0 => vec![idx % self.topics],
            v => {
                let sym = idx % self.symbols();
                (0..v).map(|venue| sym * v + venue).collect()
            }
        }
    }
    fn sub_path(&self, idx: usize) -> String {
        if self.market() {
            let topics = self.sub_topics(idx);
            return match (self.server.as_str(), self.wildcard_of(idx)) {
                ("nchan", _) => {
                    let ids: Vec<String> = topics.iter().map(|t| format!("t{t}")).collect();
                    format!("/msub/{}", ids.join(","))
                }
                // `>` percent-encoded: it is not a URI character.
                (_, Some((venue, _))) => format!("/events?topic=quotes.V{venue}.%3E"),
                (_, None) => {
                    let q: Vec<String> = topics
                        .iter()
                        .map(|&t| format!("topic={}", self.topic_name(t)))
                        .collect();
                    format!("/events?{}", q.join("&"))
                }
            };
        }
        match (self.server.as_str(), self.venues) {
            ("nchan", 0) => format!("/sub/t{}", idx % self.topics),
            ("nchan", _) => {
                let ids: Vec<String> = self
                    .sub_topics(idx)
                    .iter()
                    .map(|t| format!("t{t}"))
                    .collect();
                format!("/msub/{}", ids.join(","))
            }
            (_, 0) => format!("/events?topic=load.t{}", idx % self.topics),
            (_, _) => format!("/events?topic=quotes.*.S{}", idx % self.symbols()),
        }
    }
    fn pub_path(&self, topic: usize) -> String {
        match self.server.as_str() {
            "nchan" => format!("/pub/t{topic}"),
            _ => format!("/publish?topic={}", self.topic_name(topic)),
        }
    }
    /// Events per publish request: batches are ringcast's (ndjson).
    fn per_request(&self) -> usize {
        match self.server.as_str() {
            "nchan" => 1,
            _ => self.batch.max(1),
        }
    }
    fn storm(&self) -> bool {
        self.resumers_pct > 0.0
    }
    /// The extra figures of the burst and storm modes go in the report.
    fn extras(&self) -> bool {
        self.batch > 1 || self.storm() || self.server_metrics || self.market()
    }
}

/// Storm phases (`Stats::phase`; 0 = calm, before the drop).
const DROP: u8 = 1;
const RECONNECT: u8 = 2;
/// The run is over: the storm thread hands back its figures.
const END: u8 = 3;

/// In a resume storm the resumers run on a thread of their own (the storm
/// thread), so that the load generator's own work in the storm (thousands of
/// closes and connects at once) does not hold up the publishers and the
/// stayers on the main thread, whose latencies are the measurement. What
/// the two threads share: the phase one way, the resumers' progress the
/// other (mirrored every millisecond).
#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    /// Resumers connected, or failed to.
    settled: AtomicUsize,
    done: AtomicUsize,
    dropped: AtomicUsize,
    /// Resumers caught up after their resume, or failed to resume.
    resumed: AtomicUsize,
}

/// A subscriber's part in a resume storm.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// No storm.
    Plain,
    /// Stays connected; its latency is the "live" figure.
    Stayer,
    /// Drops and resumes with Last-Event-ID.
    Resumer,
}

#[derive(Default)]
struct Stats {
    delivered: Cell<u64>,
    lost: Cell<u64>,
    dup: Cell<u64>,
    reordered: Cell<u64>,
    /// Events of a topic the subscriber did not subscribe to.
    misrouted: Cell<u64>,
    published: Cell<u64>,
    publish_errors: Cell<u64>,
    connected: Cell<usize>,
    connect_errors: Cell<usize>,
    done_subscribers: Cell<usize>,
    /// Set once the publish phase is measured: subscribers that have every
    /// event hold their connections open until then, so that thousands of
    /// them closing at once neither delays the last events of the run nor
    /// counts as delivery work.
    hang_up: Cell<bool>,
    hang_up_wait: SlotNotify,
    /// Subscribers waiting for `hang_up`, and those that have closed their
    /// connections after it.
    holding: Cell<usize>,
    hung_up: Cell<usize>,
    /// Publishing connections that have sent everything and read every answer.
    publishers_done: Cell<usize>,
    /// Events missing from streams that ended before delivering them all.
    ended_short: Cell<u64>,
    latency_us: RefCell<Option<Histogram<u64>>>,
    ttfb_us: RefCell<Option<Histogram<u64>>>,
    changed: LocalNotify,
    /// Publish request to its answer, from when it was due (rate-paced) or
    /// sent (flat out).
    ack_us: RefCell<Option<Histogram<u64>>>,
    /// Reading subscribers whose stream ended before they had every event
    /// (the server closed it; a resumer's own drop does not count).
    disconnected: Cell<usize>,
    /// Resume storm: raw samples to cut into windows afterwards, as
    /// (publish or due time, latency) in µs since the run's base.
    keep_samples: Cell<bool>,
    ack_samples: RefCell<Vec<(u64, u64)>>,
    stayer_samples: RefCell<Vec<(u64, u64)>>,
    phase: Cell<u8>,
    /// The main thread's timer lag, as (when, lag) in µs: how late the load
    /// generator itself was.
    lag: RefCell<Vec<(u64, u64)>>,
    storm: SlotNotify,
    resumers_dropped: Cell<usize>,
    resumers_reconnected: Cell<usize>,
    resumers_caught_up: Cell<usize>,
    resumers_exact: Cell<usize>,
    resume_failed: Cell<usize>,
    resyncs: Cell<u64>,
    replayed: Cell<u64>,
    resume_ttfb_us: RefCell<Option<Histogram<u64>>>,
    catchup_us: RefCell<Option<Histogram<u64>>>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn record(h: &RefCell<Option<Histogram<u64>>>, v: u64) {
    if let Some(h) = h.borrow_mut().as_mut() {
        let _ = h.record(v.clamp(1, 60_000_000));
    }
}

/// Incremental de-chunking of a `Transfer-Encoding: chunked` body.
#[derive(Default)]
struct Dechunk {
    /// Bytes left in the current chunk (0 = expecting a size line).
    left: usize,
    pending: Vec<u8>,
}

impl Dechunk {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(input);
        let mut pos = 0;
        loop {
            if self.left > 0 {
                let n = self.left.min(self.pending.len() - pos);
                out.extend_from_slice(&self.pending[pos..pos + n]);
                pos += n;
                self.left -= n;
                if self.left > 0 {
                    break;
                }
                // The CRLF after the chunk: consumed with the next size line.
                continue;
            }
            let rest = &self.pending[pos..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = std::str::from_utf8(&rest[..eol]).unwrap_or("").trim();
            pos += eol + 2;
            if line.is_empty() {
                continue;
            }
            let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16).unwrap_or(0);
            self.left = size;
        }
        self.pending.drain(..pos);
    }
}

/// Per-subscriber state, kept across a resume: sequence tracking per
/// (publishing connection, topic).
struct Tracker {
    /// The topics this subscriber should receive, sorted.
    topics: Vec<u64>,
    publishers: u64,
    /// Last sequence seen, at `slot of the topic * publishers + publisher`.
    last_seq: Vec<u64>,
    received: u64,
    role: Role,
    /// This subscriber's own gaps, duplicates and reorders.
    faults: u64,
    resyncs: u64,
    /// The id of the last event received (resumers only).
    last_id: Vec<u8>,
    /// When a resumer reconnected (µs since base): events published before
    /// it are the replay.
    resumed_at_us: Option<u64>,
    caught_up: bool,
}

impl Tracker {
    fn new(role: Role, topics: &[usize], publishers: usize) -> Self {
        let mut topics: Vec<u64> = topics.iter().map(|&t| t as u64).collect();
        topics.sort_unstable();
        topics.dedup();
        let publishers = publishers.max(1) as u64;
        Self {
            last_seq: vec![0; topics.len() * publishers as usize],
            topics,
            publishers,
            received: 0,
            role,
            faults: 0,
            resyncs: 0,
            last_id: Vec::new(),
            resumed_at_us: None,
            caught_up: false,
        }
    }
}

/// Position of the first `b` in `hay`, eight bytes at a time (the 2 KB
/// events of a burst are mostly scanning for line ends).
fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO * u64::from(b);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ pat;
        if x.wrapping_sub(LO) & !x & HI != 0 {
            return c.iter().position(|&y| y == b).map(|p| at + p);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&y| y == b)
        .map(|p| at + p)
}

/// The lines of a frame (split on `\n`).
fn lines(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(frame);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_byte(r, b'\n') {
            Some(p) => {
                rest = Some(&r[p + 1..]);
                Some(&r[..p])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// End of the next frame (its blank line) in `buf`, if complete.
fn frame_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = find_byte(&buf[from..], b'\n') {
        let at = from + p;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

fn parse_events(body: &mut Vec<u8>, t: &mut Tracker, stats: &Stats, base: Instant) {
    let mut start = 0;
    while let Some(end) = frame_end(&body[start..]) {
        let frame = &body[start..start + end];
        for line in lines(frame) {
            if let Some(id) = line.strip_prefix(b"id: ") {
                if t.role == Role::Resumer {
                    t.last_id.clear();
                    t.last_id.extend_from_slice(id);
                }
                continue;
            }
            if line == b"event: resync" {
                t.resyncs += 1;
                stats.resyncs.set(stats.resyncs.get() + 1);
                continue;
            }
            let Some(payload) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let mut it = payload.split(|&b| b == b' ');
            if it.next() != Some(b"L") {
                continue;
            }
            let num = |x: Option<&[u8]>| -> u64 {
                x.and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let topic = num(it.next());
            let publisher = num(it.next());
            let seq = num(it.next());
            let ts = num(it.next());
            let slot = match t.topics.binary_search(&topic) {
                Ok(i) if publisher < t.publishers => i * t.publishers as usize + publisher as usize,
                _ => {
                    // Not one of its topics (or not a publisher of this
                    // run): the server routed it wrongly.
                    stats.misrouted.set(stats.misrouted.get() + 1);
                    t.faults += 1;
                    continue;
                }
            };
            let last = &mut t.last_seq[slot];
            let now = base.elapsed().as_micros() as u64;
            let latency = now.saturating_sub(ts);
            record(&stats.latency_us, latency);
            stats.delivered.set(stats.delivered.get() + 1);
            t.received += 1;
            if seq == *last {
                stats.dup.set(stats.dup.get() + 1);
                t.faults += 1;
            } else if seq < *last {
                stats.reordered.set(stats.reordered.get() + 1);
                t.faults += 1;
            } else {
                if seq > *last + 1 {
                    stats.lost.set(stats.lost.get() + (seq - *last - 1));
                    t.faults += 1;
                }
                *last = seq;
            }
            match (t.role, t.resumed_at_us) {
                (Role::Stayer, _) => stats.stayer_samples.borrow_mut().push((ts, latency)),
                (Role::Resumer, Some(at)) if ts < at => {
                    stats.replayed.set(stats.replayed.get() + 1)
                }
                (Role::Resumer, Some(at)) if !t.caught_up => {
                    // The first event published after the reconnect: the
                    // replay is over, the live stream has begun.
                    t.caught_up = true;
                    record(&stats.catchup_us, now.saturating_sub(at));
                    stats
                        .resumers_caught_up
                        .set(stats.resumers_caught_up.get() + 1);
                    stats.changed.notify();
                }
                _ => {}
            }
        }
        start += end + 2;
    }
    body.drain(..start);
}

/// Connects to `addr`, from `source` (any free port) when given: past one
/// address's ephemeral ports, a loopback client needs more source addresses.
/// A stalled subscriber also shrinks its receive buffer (when `rcvbuf` is
/// given), like a stuck mobile client, so the server's writes block soon.
async fn connect_from(
    addr: SocketAddr,
    source: Option<std::net::Ipv4Addr>,
    rcvbuf: Option<usize>,
) -> std::io::Result<TcpStream> {
    if source.is_none() && rcvbuf.is_none() {
        return TcpStream::connect_addr(addr).await;
    }
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(bytes) = rcvbuf {
        sock.set_recv_buffer_size(bytes)?;
    }
    if let Some(ip) = source {
        // The port is picked at connect time, per (source, destination),
        // so each source address has the whole ephemeral range; a bind to
        // port 0 would instead search the bound ports on every connect.
        use std::os::fd::AsFd;
        ringcast::sys::set_int_sockopt(
            sock.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            1,
        )?;
        sock.bind(&SockAddr::from(SocketAddr::from((ip, 0))))?;
    }
    sock.set_nonblocking(true)?;
    match sock.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(sock))?;
    stream.writable(false).await?;
    // A failed connect leaves the socket unconnected; this surfaces why not.
    stream.peer_addr()?;
    Ok(stream)
}

/// The ephemeral ports one source address can use toward one server port.
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<usize>().ok());
            Some(it.next()??..=it.next()??)
        })
        .map(|r| r.count())
        .unwrap_or(28_000)
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// One subscriber to open.
struct SubSpec {
    idx: usize,
    /// Events it should receive.
    expected: u64,
    /// Never reads after the response head.
    stalled: bool,
    /// Source address to connect from, if spreading.
    source: Option<std::net::Ipv4Addr>,
    role: Role,
}

/// An open event stream: the response head read, the body so far.
struct Stream {
    rd: OwnedReadHalf<TcpStream>,
    /// Kept open: dropping the write half shuts the connection down.
    _wr: OwnedWriteHalf<TcpStream>,
    chunked: bool,
    dechunk: Dechunk,
    body: Vec<u8>,
}

/// Connects subscriber `idx` and reads the response head; with `last_id`,
/// resumes after it (the `Last-Event-ID` header).
async fn open_stream(
    args: &Args,
    idx: usize,
    source: Option<std::net::Ipv4Addr>,
    rcvbuf: Option<usize>,
    last_id: Option<&[u8]>,
) -> Option<Stream> {
    let stream = connect_from(args.node(idx / args.topics), source, rcvbuf)
        .await
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: load\r\nAccept: text/event-stream\r\n{}",
        args.sub_path(idx),
        Args::bearer(&args.sub_token)
    );
    if let Some(id) = last_id.filter(|id| !id.is_empty()) {
        req.push_str("Last-Event-ID: ");
        req.push_str(&String::from_utf8_lossy(id));
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    if wr.write_all(req.into_bytes()).await.0.is_err() {
        return None;
    }
    let mut buf = Vec::with_capacity(4096);
    let mut head_end = None;
    while head_end.is_none() {
        let (res, b) = rd.read(buf).await;
        buf = b;
        if !matches!(res, Ok(n) if n > 0) {
            return None;
        }
        head_end = find_head_end(&buf);
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
    }
    let head_end = head_end.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let chunked = head.contains("transfer-encoding: chunked");
    let mut stream = Stream {
        rd,
        _wr: wr,
        chunked,
        dechunk: Dechunk::default(),
        body: Vec::new(),
    };
    let rest = buf.split_off(head_end);
    if chunked {
        stream.dechunk.feed(&rest, &mut stream.body);
    } else {
        stream.body.extend_from_slice(&rest);
    }
    Some(stream)
}

/// How reading a stream ended.
enum Pump {
    /// Every expected event received.
    Done,
    /// The server closed the stream first.
    Closed,
    /// A resumer dropped it for the storm.
    Dropped,
}

/// Reads `s` until the subscriber has every expected event, the stream
/// ends, or (a resumer before its resume) the storm's drop.
async fn pump(
    stats: &Stats,
    s: &mut Stream,
    t: &mut Tracker,
    idx: usize,
    expected: u64,
    base: Instant,
) -> Pump {
    parse_events(&mut s.body, t, stats, base);
    let watch = t.role == Role::Resumer && t.resumed_at_us.is_none();
    let mut rbuf = vec![0u8; 0];
    rbuf.reserve(64 * 1024);
    while t.received < expected {
        if watch && stats.phase.get() >= DROP {
            return Pump::Dropped;
        }
        rbuf.clear();
        let (res, b) = if watch {
            monoio::select! {
                biased;
                _ = stats.storm.until(idx, || stats.phase.get() >= DROP) => return Pump::Dropped,
                r = s.rd.read(rbuf) => r,
            }
        } else {
            s.rd.read(rbuf).await
        };
        rbuf = b;
        match res {
            Ok(n) if n > 0 => {
                if s.chunked {
                    s.dechunk.feed(&rbuf[..n], &mut s.body);
                } else {
                    s.body.extend_from_slice(&rbuf[..n]);
                }
                parse_events(&mut s.body, t, stats, base);
            }
            _ => return Pump::Closed,
        }
    }
    Pump::Done
}

async fn subscriber(
    args: Rc<Args>,
    stats: Rc<Stats>,
    spec: SubSpec,
    base: Instant,
    gate: Rc<Cell<usize>>,
) {
    let SubSpec {
        idx,
        expected,
        stalled,
        source,
        role,
    } = spec;
    let t0 = Instant::now();
    let rcvbuf = stalled.then_some(4096);
    let Some(mut stream) = open_stream(&args, idx, source, rcvbuf, None).await else {
        stats.connect_errors.set(stats.connect_errors.get() + 1);
        gate.set(gate.get() - 1);
        stats.changed.notify();
        return;
    };
    record(&stats.ttfb_us, t0.elapsed().as_micros() as u64);
    stats.connected.set(stats.connected.get() + 1);
    gate.set(gate.get() - 1);
    stats.changed.notify();
    if stalled || args.connect_only {
        // Hold the connection open, reading nothing, until the run ends.
        // (Not `std::future::pending()`: a monoio task that no waker refers
        // to is freed, which would drop, and so close, the connection. The
        // timer keeps this one's waker past the run's end.)
        monoio::time::sleep(Duration::from_secs(args.timeout_s + 60)).await;
    }
    let mut tracker = Tracker::new(role, &args.sub_topics(idx), args.inflight);
    // The stream, once it has delivered every event.
    let mut open = None;
    loop {
        match pump(&stats, &mut stream, &mut tracker, idx, expected, base).await {
            Pump::Done => {
                open = Some(stream);
                break;
            }
            Pump::Closed => {
                let missing = expected.saturating_sub(tracker.received);
                stats.ended_short.set(stats.ended_short.get() + missing);
                stats.disconnected.set(stats.disconnected.get() + 1);
                if tracker.resumed_at_us.is_some() && !tracker.caught_up {
                    stats.resume_failed.set(stats.resume_failed.get() + 1);
                }
                break;
            }
            Pump::Dropped => {
                drop(stream);
                stats.resumers_dropped.set(stats.resumers_dropped.get() + 1);
                stats
                    .storm
                    .until(idx, || stats.phase.get() >= RECONNECT)
                    .await;
                tracker.resumed_at_us = Some(base.elapsed().as_micros() as u64);
                let t1 = Instant::now();
                let last_id = std::mem::take(&mut tracker.last_id);
                match open_stream(&args, idx, source, None, Some(&last_id)).await {
                    Some(s) => {
                        record(&stats.resume_ttfb_us, t1.elapsed().as_micros() as u64);
                        stats
                            .resumers_reconnected
                            .set(stats.resumers_reconnected.get() + 1);
                        stream = s;
                    }
                    None => {
                        let missing = expected.saturating_sub(tracker.received);
                        stats.ended_short.set(stats.ended_short.get() + missing);
                        stats.resume_failed.set(stats.resume_failed.get() + 1);
                        stats.changed.notify();
                        break;
                    }
                }
            }
        }
    }
    if tracker.resumed_at_us.is_some()
        && tracker.faults == 0
        && tracker.resyncs == 0
        && tracker.received == expected
    {
        stats.resumers_exact.set(stats.resumers_exact.get() + 1);
    }
    let open = open.filter(|_| !args.storm());
    if open.is_some() {
        stats.holding.set(stats.holding.get() + 1);
    }
    stats.done_subscribers.set(stats.done_subscribers.get() + 1);
    stats.changed.notify();
    if let Some(stream) = open {
        // The closing is measured apart from the deliveries (see `hang_up`).
        stats.hang_up_wait.until(idx, || stats.hang_up.get()).await;
        drop(stream);
        stats.hung_up.set(stats.hung_up.get() + 1);
        stats.changed.notify();
    }
}

/// One publishing connection: publishes every `conns`-th event (round-robin
/// over the topics), pipelining up to `window` requests of `per_request`
/// events each (more than one: an ndjson batch). Each event carries this
/// connection's index and its own per-topic sequence number.
async fn publisher(
    args: Rc<Args>,
    stats: Rc<Stats>,
    conn_idx: usize,
    conns: usize,
    base: Instant,
    window: usize,
) {
    let Ok(stream) = TcpStream::connect_addr(args.node(conn_idx)).await else {
        stats.publish_errors.set(stats.publish_errors.get() + 1);
        return;
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    // Requests awaiting their answer, in order: (when the ack clock
    // started, µs since base; events in the request).
    let outstanding: Rc<RefCell<VecDeque<(u64, u64)>>> = Rc::default();
    let acked = Rc::new(LocalNotify::default());
    let finished = Rc::new(Cell::new(false));
    let sent_all = Rc::new(Cell::new(0u64));
    // Response reader.
    let reader = {
        let (outstanding, acked, stats, finished, sent_all) = (
            outstanding.clone(),
            acked.clone(),
            stats.clone(),
            finished.clone(),
            sent_all.clone(),
        );
        monoio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
            let mut got = 0u64;
            loop {
                // Parse complete responses in the buffer.
                while let Some(he) = find_head_end(&buf) {
                    let head = String::from_utf8_lossy(&buf[..he]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() < he + len {
                        break;
                    }
                    let ok = head.starts_with("http/1.1 2");
                    buf.drain(..he + len);
                    let (t0, events) = outstanding.borrow_mut().pop_front().unwrap_or((0, 1));
                    let now = base.elapsed().as_micros() as u64;
                    record(&stats.ack_us, now.saturating_sub(t0));
                    if stats.keep_samples.get() {
                        stats
                            .ack_samples
                            .borrow_mut()
                            .push((t0, now.saturating_sub(t0)));
                    }
                    if ok {
                        stats.published.set(stats.published.get() + events);
                    } else {
                        stats.publish_errors.set(stats.publish_errors.get() + 1);
                    }
                    got += 1;
                    acked.notify();
                    if stats.keep_samples.get() {
                        // The storm waits for a count of acknowledged events.
                        stats.changed.notify();
                    }
                }
                if finished.get() && got >= sent_all.get() {
                    return;
                }
                let (res, b) = read_appending(&mut rd, buf).await;
                buf = b;
                if !matches!(res, Ok(n) if n > 0) {
                    acked.notify();
                    return;
                }
            }
        })
    };
    let payload_pad = args.size.saturating_sub(40);
    let pad = "x".repeat(payload_pad);
    let mut seqs = vec![0u64; args.topics];
    let per_request = args.per_request();
    let mut own = (conn_idx as u64..args.events).step_by(conns).peekable();
    let start = Instant::now();
    while own.peek().is_some() {
        let chunk: Vec<u64> = own.by_ref().take(per_request).collect();
        let mut due_us = None;
        if let Some(ns) = (chunk[0] * 1_000_000_000).checked_div(args.rate) {
            let due = start + Duration::from_nanos(ns);
            let now = Instant::now();
            if due > now {
                monoio::time::sleep(due - now).await;
            }
            due_us = Some(due.duration_since(base).as_micros() as u64);
        }
        while outstanding.borrow().len() >= window {
            let o = outstanding.clone();
            acked.until(move || o.borrow().len() < window).await;
        }
        let ts = base.elapsed().as_micros() as u64;
        let req = if per_request > 1 {
            let mut body = String::with_capacity(chunk.len() * (args.size + 64));
            for &e in &chunk {
                let topic = (e % args.topics as u64) as usize;
                seqs[topic] += 1;
                body.push_str(&format!(
                    "{{\"topic\":\"{}\",\"data\":\"L {topic} {conn_idx} {} {ts} {pad}\"}}\n",
                    args.topic_name(topic),
                    seqs[topic]
                ));
            }
            format!(
                "POST /publish HTTP/1.1\r\nHost: load\r\nContent-Type: application/x-ndjson\r\n{}Content-Length: {}\r\n\r\n{body}",
                Args::bearer(&args.pub_token),
                body.len()
            )
        } else {
            let topic = (chunk[0] % args.topics as u64) as usize;
            seqs[topic] += 1;
            let data = format!("L {topic} {conn_idx} {} {ts} {pad}", seqs[topic]);
            format!(
                "POST {} HTTP/1.1\r\nHost: load\r\nContent-Type: text/plain\r\n{}Content-Length: {}\r\n\r\n{data}",
                args.pub_path(topic),
                Args::bearer(&args.pub_token),
                data.len()
            )
        };
        outstanding
            .borrow_mut()
            .push_back((due_us.unwrap_or(ts), chunk.len() as u64));
        sent_all.set(sent_all.get() + 1);
        if wr.write_all(req.into_bytes()).await.0.is_err() {
            stats.publish_errors.set(stats.publish_errors.get() + 1);
            break;
        }
    }
    finished.set(true);
    acked.notify();
    let _ = reader.await;
}

/// Ends the subscribers' wait (`Stats::hang_up`) once the publish phase is
/// measured, waits for them to close, and measures what the server spends
/// on their closing: µs of server CPU per connection closed, counted until
/// the server's CPU time stops moving (two 20 ms samples with under 0.2 ms
/// between them, within 5 s and the run's deadline). None in a resume storm
/// (whose subscribers close as they finish) or without a server PID.
async fn hang_up(args: &Args, stats: &Stats, readers: usize, deadline: Instant) -> Option<f64> {
    if args.storm() || args.connect_only {
        return None;
    }
    let waiting = stats.holding.get();
    let cpu0 = server_cpu_s(&args.server_pid);
    stats.hang_up.set(true);
    stats.hang_up_wait.notify();
    let until = (Instant::now() + Duration::from_secs(5)).min(deadline);
    monoio::select! {
        _ = stats.changed.until(|| stats.hung_up.get() >= waiting) => {},
        _ = monoio::time::sleep(until.saturating_duration_since(Instant::now())) => {},
    }
    let mut last = cpu0?;
    while Instant::now() < until {
        monoio::time::sleep(Duration::from_millis(20)).await;
        let now = server_cpu_s(&args.server_pid)?;
        if now - last < 0.0002 {
            break;
        }
        last = now;
    }
    let closed = stats.hung_up.get().min(readers);
    let cpu0 = cpu0?;
    (closed > 0).then(|| (last - cpu0) / closed as f64 * 1e6)
}

/// Scrapes the server's /metrics (bounded to 5 s); `None` when it cannot.
async fn scrape_metrics(addr: SocketAddr) -> Option<String> {
    let fetch = async {
        let mut stream = TcpStream::connect_addr(addr).await.ok()?;
        let req = b"GET /metrics HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n".to_vec();
        stream.write_all(req).await.0.ok()?;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            if let Some(he) = find_head_end(&buf) {
                let head = String::from_utf8_lossy(&buf[..he]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if let Some(len) = len.filter(|len| buf.len() >= he + len) {
                    return Some(String::from_utf8_lossy(&buf[he..he + len]).into_owned());
                }
            }
            let (res, b) = read_appending(&mut stream, buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                let he = find_head_end(&buf)?;
                return Some(String::from_utf8_lossy(&buf[he..]).into_owned());
            }
        }
    };
    monoio::select! {
        r = fetch => r,
        _ = monoio::time::sleep(Duration::from_secs(5)) => None,
    }
}

/// An unlabelled series' value in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// One core's jiffies from /proc/stat: (busy, softirq, total).
fn core_jiffies(core: usize) -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4)?;
    Some((total - idle, *f.get(6)?, total))
}

fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds of all the server processes; `None` without any, or when
/// one of them cannot be read.
fn server_cpu_s(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| proc_cpu_s(p)).sum()
}

fn server_rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| proc_rss_kib(p)).sum()
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Raises the open-files limit and grows the descriptor table to it at
/// once: growing it later, by doubling as sockets open, waits for an RCU
/// grace period (10-30 ms) whenever the process has a second thread (the
/// storm thread, io_uring's workers), which would count against the
/// server's connect figures.
fn raise_nofile() {
    if let Ok(n) = ringcast::sys::raise_nofile_limit() {
        let _ = ringcast::sys::reserve_descriptors((n as usize).min(1 << 18));
    }
}

/// Combinations the modes cannot run; the reason, to print.
fn check(args: &Args) -> Result<(), String> {
    if args.topics == 0 {
        return Err("--topics must be at least 1".into());
    }
    if args.venues > 0 && !args.topics.is_multiple_of(args.venues) {
        return Err("--topics must be a multiple of --venues".into());
    }
    if args.market() {
        if args.topics_per_sub > args.topics {
            return Err("--topics-per-sub is more than --topics".into());
        }
        if !(0.0..=100.0).contains(&args.wildcard_pct) {
            return Err("--wildcard-pct is a percentage".into());
        }
        if args.wildcard_pct > 0.0 && args.venues == 0 {
            return Err("--wildcard-pct needs --venues (a wildcard takes a whole venue)".into());
        }
        if args.wildcard_pct > 0.0 && 2 * args.topics_per_sub > args.symbols() {
            return Err(
                "--wildcard-pct: nchan's stand-in needs 2 × --topics-per-sub symbols per venue"
                    .into(),
            );
        }
        if args.storm() {
            return Err("--topics-per-sub runs without a resume storm".into());
        }
    } else if args.wildcard_pct > 0.0 {
        return Err("--wildcard-pct needs --topics-per-sub".into());
    }
    if args.storm() {
        if args.resumers_pct > 100.0 {
            return Err("--resumers-pct is a percentage".into());
        }
        if args.rate == 0 {
            return Err("a resume storm needs --rate (a steady publish rate)".into());
        }
        if args.stalled_pct > 0.0 || args.connect_only {
            return Err("a resume storm runs without stalled subscribers or --connect-only".into());
        }
        let publish_s = args.events as f64 / args.rate as f64;
        let needed = args.warmup_s
            + args.baseline_s
            + args.resume_back as f64 / args.rate as f64
            + args.storm_s
            + 1.0;
        if publish_s < needed {
            return Err(format!(
                "--events / --rate = {publish_s:.1} s of publishing; the storm needs at least {needed:.1} s \
                 (warm-up + calm window + resume-back / rate + storm window + 1 s)"
            ));
        }
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(why) = check(&args) {
        eprintln!("ringcast-load: {why}");
        std::process::exit(2);
    }
    raise_nofile();
    let report = block_on(run(Rc::new(args.clone())));
    if args.json {
        println!("{}", report);
    } else {
        let v: serde_json::Value = serde_json::from_str(&report).expect("report");
        for (k, val) in v.as_object().expect("object") {
            println!("{k:>28}: {val}");
        }
    }
}

/// Sleeps until `until`, but not past `deadline`.
async fn sleep_until(until: Instant, deadline: Instant) {
    let now = Instant::now();
    let t = until.min(deadline);
    if t > now {
        monoio::time::sleep(t - now).await;
    }
}

/// Waits until `cond` holds (re-checked on `stats.changed`), or the deadline.
async fn wait_for(stats: &Stats, deadline: Instant, cond: impl Fn() -> bool) {
    monoio::select! {
        _ = stats.changed.until(cond) => {},
        _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
    }
}

/// p-quantile in ms of the samples whose time falls in `[from, to)` µs,
/// with how many there were.
fn window_ms(samples: &[(u64, u64)], from: u64, to: u64, q: f64) -> (Option<f64>, usize) {
    let mut h = hist();
    for &(t, v) in samples {
        if t >= from && t < to {
            let _ = h.record(v.clamp(1, 60_000_000));
        }
    }
    let n = h.len() as usize;
    ((n > 0).then(|| h.value_at_quantile(q) as f64 / 1000.0), n)
}

fn quantile_ms(h: &RefCell<Option<Histogram<u64>>>, q: f64) -> Option<f64> {
    h.borrow()
        .as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
}

/// Server metrics worth a delta: (report key, series).
const SERVER_SERIES: [(&str, &str); 5] = [
    ("server_slow_disconnects", "ringcast_slow_disconnects_total"),
    (
        "server_stall_disconnects",
        "ringcast_stall_disconnects_total",
    ),
    ("server_resyncs", "ringcast_resyncs_total"),
    ("server_fanout_paused", "ringcast_fanout_paused_total"),
    ("server_ingest_ring_full", "ringcast_ingest_ring_full_total"),
];

/// Runs `f` on a new runtime on this thread.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(8192)
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Fresh counters, with `slots` storm waiters.
fn new_stats(slots: usize) -> Rc<Stats> {
    let stats = Rc::new(Stats {
        storm: SlotNotify::with_slots(slots),
        ..Stats::default()
    });
    for h in [
        &stats.latency_us,
        &stats.ttfb_us,
        &stats.ack_us,
        &stats.resume_ttfb_us,
        &stats.catchup_us,
    ] {
        *h.borrow_mut() = Some(hist());
    }
    stats
}

/// The storm thread's figures, added to the main thread's at the end.
struct Tally {
    counts: Vec<u64>,
    hists: Vec<Histogram<u64>>,
}

/// The counters and histograms a subscriber updates, in one order for
/// `tally` and `merge`.
fn subscriber_counters(s: &Stats) -> [&Cell<u64>; 8] {
    [
        &s.delivered,
        &s.lost,
        &s.dup,
        &s.reordered,
        &s.misrouted,
        &s.ended_short,
        &s.resyncs,
        &s.replayed,
    ]
}
fn subscriber_gauges(s: &Stats) -> [&Cell<usize>; 9] {
    [
        &s.connected,
        &s.connect_errors,
        &s.done_subscribers,
        &s.disconnected,
        &s.resumers_dropped,
        &s.resumers_reconnected,
        &s.resumers_caught_up,
        &s.resumers_exact,
        &s.resume_failed,
    ]
}
fn subscriber_hists(s: &Stats) -> [&RefCell<Option<Histogram<u64>>>; 4] {
    [&s.latency_us, &s.ttfb_us, &s.resume_ttfb_us, &s.catchup_us]
}

fn tally(s: &Stats) -> Tally {
    let mut counts: Vec<u64> = subscriber_counters(s).iter().map(|c| c.get()).collect();
    counts.extend(subscriber_gauges(s).iter().map(|c| c.get() as u64));
    let hists = subscriber_hists(s)
        .iter()
        .map(|h| h.borrow_mut().take().unwrap_or_else(hist))
        .collect();
    Tally { counts, hists }
}

fn merge(s: &Stats, t: Tally) {
    let mut counts = t.counts.into_iter();
    for c in subscriber_counters(s) {
        c.set(c.get() + counts.next().unwrap_or(0));
    }
    for c in subscriber_gauges(s) {
        c.set(c.get() + counts.next().unwrap_or(0) as usize);
    }
    for (h, other) in subscriber_hists(s).into_iter().zip(t.hists) {
        if let Some(h) = h.borrow_mut().as_mut() {
            let _ = h.add(&other);
        }
    }
}

/// The storm thread: connects the resumers (bounded concurrency), follows
/// the phase set by the main thread, reports its progress, and at the end
/// hands back its figures. It runs on epoll, not io_uring: both threads
/// share the load generator's core, and one `io_uring_enter` completing
/// thousands of the storm's operations held that core for up to 350 ms
/// (the kernel does not preempt inside a system call here), stalling the
/// main thread's measurement; epoll's short system calls let it in.
fn storm_thread(
    args: Args,
    specs: Vec<SubSpec>,
    shared: Arc<Shared>,
    base: Instant,
    deadline: Instant,
) -> Tally {
    let storm = async move {
        let args = Rc::new(args);
        let stats = new_stats(args.subscribers);
        let gate = Rc::new(Cell::new(0usize));
        {
            let (args, stats, gate) = (args.clone(), stats.clone(), gate.clone());
            monoio::spawn(async move {
                for spec in specs {
                    while gate.get() >= args.connect_concurrency {
                        let g = gate.clone();
                        let c = args.connect_concurrency;
                        stats.changed.until(move || g.get() < c).await;
                    }
                    gate.set(gate.get() + 1);
                    monoio::spawn(subscriber(
                        args.clone(),
                        stats.clone(),
                        spec,
                        base,
                        gate.clone(),
                    ));
                }
            });
        }
        loop {
            monoio::time::sleep(Duration::from_millis(1)).await;
            let phase = shared.phase.load(Relaxed);
            if phase != stats.phase.get() {
                stats.phase.set(phase);
                stats.storm.notify();
            }
            let settled = stats.connected.get() + stats.connect_errors.get();
            shared.settled.store(settled, Relaxed);
            shared.done.store(stats.done_subscribers.get(), Relaxed);
            shared.dropped.store(stats.resumers_dropped.get(), Relaxed);
            let resumed = stats.resumers_caught_up.get() + stats.resume_failed.get();
            shared.resumed.store(resumed, Relaxed);
            if phase == END || Instant::now() > deadline {
                break;
            }
        }
        tally(&stats)
    };
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(storm)
}

/// On the main thread in a storm: wakes its waiters when the storm thread
/// made progress, and records the main thread's own timer lag.
async fn mirror(stats: Rc<Stats>, shared: Arc<Shared>, base: Instant, deadline: Instant) {
    let mut last = [0usize; 4];
    while Instant::now() < deadline && shared.phase.load(Relaxed) != END {
        let t = Instant::now();
        monoio::time::sleep(Duration::from_millis(1)).await;
        let lag = t.elapsed().as_micros() as u64;
        stats
            .lag
            .borrow_mut()
            .push((base.elapsed().as_micros() as u64, lag.saturating_sub(1000)));
        let now = [
            &shared.settled,
            &shared.done,
            &shared.dropped,
            &shared.resumed,
        ]
        .map(|a| a.load(Relaxed));
        if now != last {
            last = now;
            stats.changed.notify();
        }
    }
}

async fn run(args: Rc<Args>) -> String {
    let n = args.subscribers;
    // The main thread has no resumers: no storm waiters.
    let stats = new_stats(0);
    stats.keep_samples.set(args.storm());
    let shared = Arc::new(Shared::default());
    let scrape = args.server_metrics && args.server == "ringcast";
    let metrics0 = match scrape {
        true => scrape_metrics(args.addr).await,
        false => None,
    };
    let base = Instant::now();
    let deadline = base + Duration::from_secs(args.timeout_s);
    let rss0 = server_rss_kib(&args.server_pid);
    let cpu_start = server_cpu_s(&args.server_pid);
    let self_start = proc_cpu_s(std::process::id());
    let stalled_every = if args.stalled_pct > 0.0 {
        (100.0 / args.stalled_pct).round().max(1.0) as usize
    } else {
        0
    };
    let per_topic = |t: usize| -> u64 {
        let e = args.events;
        let tt = args.topics as u64;
        e / tt + u64::from((t as u64) < e % tt)
    };
    let expected_of = |i: usize| -> u64 { args.sub_topics(i).into_iter().map(per_topic).sum() };
    // Storm roles, spread evenly over the symbols: subscribers come in rounds
    // of one per symbol (or topic), and whole rounds are resumers or stayers.
    let round = match args.venues {
        0 => args.topics,
        _ => args.symbols(),
    }
    .max(1);
    let role_of = |i: usize| -> Role {
        if !args.storm() {
            return Role::Plain;
        }
        let (j, p) = ((i / round) as f64, args.resumers_pct / 100.0);
        if ((j + 1.0) * p).floor() > (j * p).floor() {
            Role::Resumer
        } else {
            Role::Stayer
        }
    };
    let mut resumers = 0usize;
    let mut storm_specs = Vec::new();
    // Source addresses: as many as the ephemeral port range needs, or as
    // asked; at most 127.0.0.1-127.0.0.254. Each address is given a quarter
    // of the range: ports of earlier runs linger in TIME-WAIT for a minute,
    // and connect() slows to a crawl searching a nearly full range.
    let spread = if args.source_ips > 0 {
        args.source_ips
    } else {
        n.div_ceil((ephemeral_ports() / 4).max(1))
    }
    .clamp(1, 254);
    // The resumers, on the storm thread.
    for i in 0..n {
        if role_of(i) == Role::Resumer {
            let source =
                (spread > 1).then(|| std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % spread) as u8));
            storm_specs.push(SubSpec {
                idx: i,
                expected: expected_of(i),
                stalled: false,
                source,
                role: Role::Resumer,
            });
        }
    }
    let t_connect = Instant::now();
    let storm_thread = match storm_specs.is_empty() {
        true => None,
        false => {
            let (a, sh) = ((*args).clone(), shared.clone());
            Some(std::thread::spawn(move || {
                storm_thread(a, storm_specs, sh, base, deadline)
            }))
        }
    };
    if args.storm() {
        monoio::spawn(mirror(stats.clone(), shared.clone(), base, deadline));
    }
    // Connect, bounded concurrency.
    let gate = Rc::new(Cell::new(0usize));
    let mut readers = 0usize;
    let mut expected_total = 0u64;
    for i in 0..n {
        let stalled = stalled_every > 0 && i % stalled_every == stalled_every - 1;
        let expected = expected_of(i);
        if !stalled {
            readers += 1;
            expected_total += expected;
        }
        let role = role_of(i);
        if role == Role::Resumer {
            resumers += 1;
            continue;
        }
        while gate.get() >= args.connect_concurrency {
            let g = gate.clone();
            let c = args.connect_concurrency;
            stats.changed.until(move || g.get() < c).await;
        }
        gate.set(gate.get() + 1);
        let source =
            (spread > 1).then(|| std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % spread) as u8));
        let spec = SubSpec {
            idx: i,
            expected,
            stalled,
            source,
            role,
        };
        monoio::spawn(subscriber(
            args.clone(),
            stats.clone(),
            spec,
            base,
            gate.clone(),
        ));
    }
    {
        let (s, sh) = (stats.clone(), shared.clone());
        let until = s.clone();
        monoio::select! {
            _ = until.changed.until(move || {
                s.connected.get() + s.connect_errors.get() + sh.settled.load(Relaxed) >= n
            }) => {},
            _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
        }
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    let cpu_connect = server_cpu_s(&args.server_pid);
    let self_connect = proc_cpu_s(std::process::id());
    if args.connect_only && args.hold_s > 0.0 {
        monoio::time::sleep(Duration::from_secs_f64(args.hold_s)).await;
    }
    let rss1 = server_rss_kib(&args.server_pid);
    let cpu0 = server_cpu_s(&args.server_pid);
    let core0 = args.server_core.and_then(core_jiffies);
    let t_pub = Instant::now();
    let mut storm = None;
    let publish_s;
    if args.connect_only {
        publish_s = t_pub.elapsed().as_secs_f64();
    } else {
        let conns = args.inflight.max(1);
        let window = args.pipeline.max(1);
        for c in 0..conns {
            let (a, st) = (args.clone(), stats.clone());
            monoio::spawn(async move {
                publisher(a, st.clone(), c, conns, base, window).await;
                st.publishers_done.set(st.publishers_done.get() + 1);
                st.changed.notify();
            });
        }
        if args.storm() {
            storm = Some(resume_storm(&args, &stats, &shared, t_pub, deadline).await);
        }
        let (s, sh) = (stats.clone(), shared.clone());
        let until = s.clone();
        monoio::select! {
            _ = until.changed.until(move || s.done_subscribers.get() + sh.done.load(Relaxed) >= readers) => {},
            _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
        }
        publish_s = t_pub.elapsed().as_secs_f64();
        // Every answer read, so `published` counts every acknowledged event
        // (bounded by the deadline like the rest).
        let s = stats.clone();
        let until = s.clone();
        monoio::select! {
            _ = until.changed.until(move || s.publishers_done.get() >= conns) => {},
            _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
        }
    }
    let cpu1 = server_cpu_s(&args.server_pid);
    let core1 = args.server_core.and_then(core_jiffies);
    let core_share = |f: fn((u64, u64, u64)) -> u64| match (core0, core1) {
        (Some(a), Some(b)) if b.2 > a.2 => Some((f(b) - f(a)) as f64 / (b.2 - a.2) as f64),
        _ => None,
    };
    let self_end = proc_cpu_s(std::process::id());
    let closes = hang_up(&args, &stats, readers, deadline).await;
    shared.phase.store(END, Relaxed);
    if let Some(t) = storm_thread {
        match t.join() {
            Ok(tally) => merge(&stats, tally),
            Err(_) => eprintln!("ringcast-load: the storm thread failed; its figures are missing"),
        }
    }
    // Busy share of one core, to tell which side limited a phase.
    let util = |a: Option<f64>, b: Option<f64>, secs: f64| match (a, b) {
        (Some(a), Some(b)) if secs > 0.0 => Some((b - a) / secs),
        _ => None,
    };
    let delivered = stats.delivered.get();
    let lat = stats.latency_us.borrow_mut().take().unwrap_or_else(hist);
    let ttfb = stats.ttfb_us.borrow_mut().take().unwrap_or_else(hist);
    let unfinished = readers.saturating_sub(stats.done_subscribers.get()) as u64;
    let cpu_per_conn_us = match (cpu_start, cpu_connect) {
        (Some(a), Some(b)) if stats.connected.get() > 0 => {
            Some((b - a) / stats.connected.get() as f64 * 1e6)
        }
        _ => None,
    };
    let cpu_per_m = match (cpu0, cpu1) {
        (Some(a), Some(b)) if delivered > 0 => Some((b - a) / delivered as f64 * 1e6),
        _ => None,
    };
    let rss_per_conn = match (rss0, rss1) {
        (Some(a), Some(b)) if stats.connected.get() > 0 => {
            Some((b.saturating_sub(a) as f64 * 1024.0) / stats.connected.get() as f64)
        }
        _ => None,
    };
    let mut report = serde_json::json!({
        "server": args.server,
        "subscribers": n,
        "source_ips": spread,
        "publishers": args.inflight.max(1),
        "connected": stats.connected.get(),
        "connect_errors": stats.connect_errors.get(),
        "connects_per_s": stats.connected.get() as f64 / connect_s,
        "server_cpu_us_per_connect": cpu_per_conn_us,
        "server_cpu_us_per_close": closes,
        "closed_after_publish": stats.hung_up.get(),
        "server_connects_per_cpu_s": cpu_per_conn_us.filter(|us| *us > 0.0).map(|us| 1e6 / us),
        "connect_server_core_util": util(cpu_start, cpu_connect, connect_s),
        "connect_loadgen_core_util": util(self_start, self_connect, connect_s),
        "publish_server_core_util": util(cpu0, cpu1, publish_s),
        "publish_server_core_busy_all": core_share(|c| c.0),
        "publish_server_core_softirq": core_share(|c| c.1),
        "publish_loadgen_core_util": util(self_connect, self_end, publish_s),
        "ttfb_p50_ms": ttfb.value_at_quantile(0.5) as f64 / 1000.0,
        "ttfb_p99_ms": ttfb.value_at_quantile(0.99) as f64 / 1000.0,
        "topics": args.topics,
        "events": args.events,
        "published": stats.published.get(),
        "publish_errors": stats.publish_errors.get(),
        "delivered": delivered,
        "deliveries_per_s": delivered as f64 / publish_s,
        "latency_p50_ms": lat.value_at_quantile(0.5) as f64 / 1000.0,
        "latency_p90_ms": lat.value_at_quantile(0.9) as f64 / 1000.0,
        "latency_p99_ms": lat.value_at_quantile(0.99) as f64 / 1000.0,
        "latency_p999_ms": lat.value_at_quantile(0.999) as f64 / 1000.0,
        "latency_max_ms": lat.max() as f64 / 1000.0,
        // Lost: skipped in a stream that went on, or missing from a stream
        // that ended. Not yet delivered when the run's time ran out is
        // reported apart (a slow server, not a lossy one).
        "lost": stats.lost.get() + stats.ended_short.get(),
        "sequence_gaps": stats.lost.get(),
        "undelivered_at_deadline": if args.connect_only { 0 } else {
            expected_total.saturating_sub(delivered - stats.dup.get() - stats.reordered.get())
                .saturating_sub(stats.lost.get() + stats.ended_short.get())
        },
        "unfinished_subscribers": unfinished,
        "duplicated": stats.dup.get(),
        "reordered": stats.reordered.get(),
        "misrouted": stats.misrouted.get(),
        "server_cpu_s_per_million_deliveries": cpu_per_m,
        "server_rss_bytes_per_connection": rss_per_conn,
        "publish_seconds": publish_s,
    });
    if args.extras() {
        let metrics1 = match scrape {
            true => scrape_metrics(args.addr).await,
            false => None,
        };
        let extra = report.as_object_mut().expect("object");
        let mut put = |k: &str, v: serde_json::Value| {
            extra.insert(k.to_string(), v);
        };
        put("batch", args.batch.into());
        put(
            "batch_publish",
            match (args.batch > 1, args.per_request() > 1) {
                (false, _) => "one event per request".into(),
                (true, true) => format!("ndjson, {} events per request", args.batch).into(),
                (true, false) => format!(
                    "one event per request on the same {} connections ({} has no batch publish)",
                    args.inflight.max(1),
                    args.server
                )
                .into(),
            },
        );
        put("subscribers_disconnected", stats.disconnected.get().into());
        if args.market() {
            let wild = (0..n).filter(|&i| args.wildcard_of(i).is_some()).count();
            put("topics_per_sub", args.topics_per_sub.into());
            put("wildcard_subscribers", wild.into());
            put(
                "wildcard_as",
                match args.server.as_str() {
                    "nchan" => format!(
                        "{} channels of the venue (nchan has no wildcard: not the same load)",
                        2 * args.topics_per_sub
                    ),
                    _ => format!(
                        "quotes.V<v>.> (all {} symbols of the venue)",
                        args.symbols()
                    ),
                }
                .into(),
            );
            put("expected_deliveries", expected_total.into());
        }
        put("ack_p50_ms", quantile_ms(&stats.ack_us, 0.5).into());
        put("ack_p99_ms", quantile_ms(&stats.ack_us, 0.99).into());
        for (key, series) in SERVER_SERIES {
            let delta = match (&metrics0, &metrics1) {
                (Some(a), Some(b)) => metric(b, series).zip(metric(a, series)).map(|(b, a)| b - a),
                _ => None,
            };
            put(key, delta.into());
        }
        put(
            "server_metrics_scraped",
            (metrics0.is_some() && metrics1.is_some()).into(),
        );
        if let Some(storm) = storm {
            // Counted at the end of the run: a resumer is exact once it has
            // every event, once each, in order, without a resync.
            let dropped = stats.resumers_dropped.get();
            put("resumers", resumers.into());
            put("stayers", (readers - resumers).into());
            put("resumers_dropped", dropped.into());
            put(
                "resumers_reconnected",
                stats.resumers_reconnected.get().into(),
            );
            put("resumers_caught_up", stats.resumers_caught_up.get().into());
            put("resumers_exact", stats.resumers_exact.get().into());
            put("resume_failed", stats.resume_failed.get().into());
            put("resyncs", stats.resyncs.get().into());
            put("replayed_events", stats.replayed.get().into());
            put(
                "replayed_per_resumer",
                (stats.replayed.get() as f64 / dropped.max(1) as f64).into(),
            );
            for (k, v) in storm_figures(&args, &stats, base, t_pub, &storm) {
                put(k, v);
            }
        }
    }
    report.to_string()
}

/// When the storm's steps happened, and the CPU counters then (server,
/// load generator).
struct StormTimes {
    calm_from: Instant,
    calm_cpu: (Option<f64>, Option<f64>),
    drop: Instant,
    drop_cpu: (Option<f64>, Option<f64>),
    reconnect: Instant,
    caught_up: Instant,
    end: Instant,
    end_cpu: (Option<f64>, Option<f64>),
    /// Events acknowledged between the drop and the reconnect.
    missed: u64,
}

fn cpu_now(args: &Args) -> (Option<f64>, Option<f64>) {
    (
        server_cpu_s(&args.server_pid),
        proc_cpu_s(std::process::id()),
    )
}

/// The storm's timeline, on top of steady publishing that started at `t_pub`:
/// the calm window, the drop, the reconnect, until every resumer caught up
/// and at least --storm-s after the reconnect.
async fn resume_storm(
    args: &Args,
    stats: &Stats,
    shared: &Shared,
    t_pub: Instant,
    deadline: Instant,
) -> StormTimes {
    let calm_from = t_pub + Duration::from_secs_f64(args.warmup_s);
    sleep_until(calm_from, deadline).await;
    let calm_cpu = cpu_now(args);
    sleep_until(
        calm_from + Duration::from_secs_f64(args.baseline_s),
        deadline,
    )
    .await;
    // Drop: every resumer closes its connection now.
    let drop = Instant::now();
    let drop_cpu = cpu_now(args);
    let published_at_drop = stats.published.get();
    shared.phase.store(DROP, Relaxed);
    wait_for(stats, deadline, || {
        stats.published.get() >= published_at_drop + args.resume_back
    })
    .await;
    // Reconnect: every resumer at once, with its Last-Event-ID.
    let missed = stats.published.get() - published_at_drop;
    let reconnect = Instant::now();
    shared.phase.store(RECONNECT, Relaxed);
    // The drop has long been mirrored: every resumer that dropped is counted.
    wait_for(stats, deadline, || {
        shared.resumed.load(Relaxed) >= shared.dropped.load(Relaxed)
    })
    .await;
    let caught_up = Instant::now();
    sleep_until(reconnect + Duration::from_secs_f64(args.storm_s), deadline).await;
    StormTimes {
        calm_from,
        calm_cpu,
        drop,
        drop_cpu,
        reconnect,
        caught_up,
        end: Instant::now(),
        end_cpu: cpu_now(args),
        missed,
    }
}

/// The storm's figures, at the end of the run (when every answer is in):
/// publish-acknowledgement latency by when the request was due, stayers'
/// latency by when the event was published, in the calm window and in the
/// storm window.
fn storm_figures(
    args: &Args,
    stats: &Stats,
    base: Instant,
    t_pub: Instant,
    st: &StormTimes,
) -> Vec<(&'static str, serde_json::Value)> {
    let us = |t: Instant| t.duration_since(base).as_micros() as u64;
    let util = |a: Option<f64>, b: Option<f64>, from: Instant, to: Instant| match (a, b) {
        (Some(a), Some(b)) if to > from => Some((b - a) / (to - from).as_secs_f64()),
        _ => None,
    };
    let (calm, drop_, end) = (us(st.calm_from), us(st.drop), us(st.end));
    let acks = stats.ack_samples.borrow();
    let live = stats.stayer_samples.borrow();
    let (ack_calm, ack_calm_n) = window_ms(&acks, calm, drop_, 0.99);
    if let Some(path) = &args.samples_out {
        let mut out = format!("drop {drop_} end {end}\n");
        for (t, v) in acks.iter() {
            out.push_str(&format!("a {t} {v}\n"));
        }
        for (t, v) in live.iter() {
            out.push_str(&format!("l {t} {v}\n"));
        }
        let _ = std::fs::write(path, out);
    }
    let (ack_storm, ack_storm_n) = window_ms(&acks, drop_, end, 0.99);
    let (live_calm, live_calm_n) = window_ms(&live, calm, drop_, 0.99);
    let (live_storm, live_storm_n) = window_ms(&live, drop_, end, 0.99);
    let lag = stats.lag.borrow();
    let (lag_calm, _) = window_ms(&lag, calm, drop_, 0.99);
    let (lag_storm, _) = window_ms(&lag, drop_, end, 0.99);
    let (lag_storm_max, _) = window_ms(&lag, drop_, end, 1.0);
    let (live_calm50, _) = window_ms(&live, calm, drop_, 0.5);
    let (live_storm50, _) = window_ms(&live, drop_, end, 0.5);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    };
    let since_pub = |t: Instant| t.duration_since(t_pub).as_secs_f64();
    vec![
        ("resume_back", args.resume_back.into()),
        ("missed_events_published", st.missed.into()),
        (
            "resume_ttfb_p99_ms",
            quantile_ms(&stats.resume_ttfb_us, 0.99).into(),
        ),
        (
            "resume_catchup_p50_ms",
            quantile_ms(&stats.catchup_us, 0.5).into(),
        ),
        (
            "resume_catchup_max_ms",
            quantile_ms(&stats.catchup_us, 1.0).into(),
        ),
        (
            "calm_window_s",
            serde_json::json!([since_pub(st.calm_from), since_pub(st.drop)]),
        ),
        (
            "storm_window_s",
            serde_json::json!([since_pub(st.drop), since_pub(st.end)]),
        ),
        ("storm_reconnect_s", since_pub(st.reconnect).into()),
        ("storm_caught_up_s", since_pub(st.caught_up).into()),
        ("ack_p99_ms_calm", ack_calm.into()),
        ("ack_p99_ms_storm", ack_storm.into()),
        ("ack_p99_ratio", ratio(ack_calm, ack_storm).into()),
        ("ack_samples_calm", ack_calm_n.into()),
        ("ack_samples_storm", ack_storm_n.into()),
        ("live_p50_ms_calm", live_calm50.into()),
        ("live_p50_ms_storm", live_storm50.into()),
        ("live_p99_ms_calm", live_calm.into()),
        ("live_p99_ms_storm", live_storm.into()),
        ("live_p99_ratio", ratio(live_calm, live_storm).into()),
        ("live_samples_calm", live_calm_n.into()),
        ("live_samples_storm", live_storm_n.into()),
        ("loadgen_lag_p99_ms_calm", lag_calm.into()),
        ("loadgen_lag_p99_ms_storm", lag_storm.into()),
        ("loadgen_lag_max_ms_storm", lag_storm_max.into()),
        (
            "calm_server_core_util",
            util(st.calm_cpu.0, st.drop_cpu.0, st.calm_from, st.drop).into(),
        ),
        (
            "storm_server_core_util",
            util(st.drop_cpu.0, st.end_cpu.0, st.drop, st.end).into(),
        ),
        (
            "calm_loadgen_core_util",
            util(st.calm_cpu.1, st.drop_cpu.1, st.calm_from, st.drop).into(),
        ),
        (
            "storm_loadgen_core_util",
            util(st.drop_cpu.1, st.end_cpu.1, st.drop, st.end).into(),
        ),
    ]
}

/// Reads once from `r`, appending to `buf` (growing it by 64 KiB when less
/// than 4 KiB is free); returns the read's result and the buffer.
async fn read_appending<R: AsyncReadRent>(
    r: &mut R,
    mut buf: Vec<u8>,
) -> (std::io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = r
        .read(monoio::buf::IoBufMut::slice_mut(buf, len..cap))
        .await;
    (res, slice.into_inner())
}

#[cfg(test)]
mod tests {
    use super::{find_byte, frame_end, lines, Args};
    use clap::Parser;

    #[test]
    fn market_subscriptions() {
        let base = [
            "ringcast-load",
            "--subscribers",
            "10000",
            "--topics",
            "2000",
            "--venues",
            "4",
            "--topics-per-sub",
            "20",
            "--wildcard-pct",
            "5",
        ];
        let rc = Args::parse_from(base);
        let nc = Args::parse_from(base.iter().copied().chain(["--server", "nchan"]));
        let mut per_topic = vec![0usize; 2000];
        let mut sets = std::collections::HashSet::new();
        let mut wild = [0usize; 4];
        for i in 0..10_000 {
            let topics = rc.sub_topics(i);
            match rc.wildcard_of(i) {
                Some((venue, _)) => {
                    wild[venue] += 1;
                    assert_eq!(topics.len(), 500);
                    assert!(topics.iter().all(|t| t % 4 == venue));
                    assert_eq!(rc.sub_path(i), format!("/events?topic=quotes.V{venue}.%3E"));
                    let stand_in = nc.sub_topics(i);
                    assert_eq!(stand_in.len(), 40);
                    assert!(stand_in.iter().all(|t| t % 4 == venue));
                }
                None => {
                    let mut sorted = topics.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), 20, "subscriber {i}: distinct topics");
                    assert_eq!(nc.sub_topics(i), topics);
                    assert_eq!(rc.sub_path(i).matches("topic=quotes.V").count(), 20);
                    assert_eq!(nc.sub_path(i).split(',').count(), 20);
                    sets.insert(sorted);
                    for t in topics {
                        per_topic[t] += 1;
                    }
                }
            }
        }
        assert_eq!(wild, [125; 4]);
        // Distinct sets; every topic on about the same number of subscribers.
        assert_eq!(sets.len(), 9_500);
        let (lo, hi) = (per_topic.iter().min(), per_topic.iter().max());
        assert!(lo >= Some(&85) && hi <= Some(&105), "{lo:?}..{hi:?}");
    }

    #[test]
    fn finds_bytes_and_frames() {
        let hay: Vec<u8> = (0..40u8).map(|i| b'a' + i % 20).collect();
        for (i, &b) in hay.iter().enumerate() {
            let want = hay.iter().position(|&y| y == b);
            assert_eq!(find_byte(&hay, b), want, "byte {i}");
        }
        assert_eq!(find_byte(&hay, b'\n'), None);
        assert_eq!(find_byte(b"", b'\n'), None);
        assert_eq!(frame_end(b"id: 1\ndata: x\n\nid: 2"), Some(13));
        assert_eq!(frame_end(b"id: 1\ndata: x\n"), None);
        let frame = b"id: 1\n\ndata: L 0 0 1 2 xxxxxxxxxxxxxxxxxxxx";
        let got: Vec<&[u8]> = lines(frame).collect();
        assert_eq!(got, frame.split(|&b| b == b'\n').collect::<Vec<_>>());
    }
}
