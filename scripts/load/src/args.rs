//! The command line, one group of flags per concern (the server under test,
//! the load, the market-open modes, the resume storm), and the combinations
//! that cannot run. What the flags mean for topics and URLs is `layout`'s.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(name = "ringcast-load", about = "Bounded SSE fan-out load generator")]
pub(crate) struct Args {
    /// Print the report as one JSON line (for scripts) instead of indented.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten, next_help_heading = "Server under test")]
    pub(crate) target: Target,
    #[command(flatten, next_help_heading = "Load")]
    pub(crate) load: Load,
    #[command(flatten, next_help_heading = "Market open")]
    pub(crate) market: Market,
    #[command(flatten, next_help_heading = "Resume storm")]
    pub(crate) storm: Storm,
}

/// Where the server is, what it is, and how to read its CPU and memory.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Target {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) addr: SocketAddr,
    /// More nodes of the same cluster (repeatable). With n nodes (--addr
    /// and these), publishing connection c goes to node c mod n and
    /// subscriber i to node (i / --topics) mod n, so that every topic has
    /// subscribers on every node. /metrics is scraped from --addr only.
    #[arg(long)]
    pub(crate) also_addr: Vec<SocketAddr>,
    /// Server kind: "nchan" for nchan's URL layout; anything else
    /// (ringcast, or a stand-in such as ringcast-floor) gets ringcast's.
    #[arg(long, default_value = "ringcast")]
    pub(crate) server: String,
    /// Server PID for CPU and RSS figures; repeat it for several server
    /// processes (cluster nodes), whose figures are added up.
    #[arg(long)]
    pub(crate) server_pid: Vec<u32>,
    /// The core the server is pinned to: also report how busy that core
    /// was from /proc/stat (any process, with interrupts and softirqs,
    /// which loopback TCP does not always charge to the server's process).
    #[arg(long)]
    pub(crate) server_core: Option<usize>,
    /// Scrape the server's /metrics before and after (ringcast only) and
    /// report the slow / stall disconnects and resyncs in between.
    #[arg(long)]
    pub(crate) server_metrics: bool,
    /// A JWT the subscribers send (`Authorization: Bearer`), for a server
    /// with auth on.
    #[arg(long)]
    pub(crate) sub_token: Option<String>,
    /// A JWT the publishers send.
    #[arg(long)]
    pub(crate) pub_token: Option<String>,
}

/// How many subscribers and events, how fast, and for how long at most.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Load {
    /// Subscriber connections.
    #[arg(long, default_value_t = 100)]
    pub(crate) subscribers: usize,
    /// Topics; subscriber i listens to topic i % topics.
    #[arg(long, default_value_t = 1)]
    pub(crate) topics: usize,
    /// Events to publish in all.
    #[arg(long, default_value_t = 1000)]
    pub(crate) events: u64,
    /// Events per second over all topics; 0 = as fast as acknowledged.
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Publish requests in flight, one per publishing connection (each
    /// connection keeps its own per-topic sequence, so order is checked per
    /// publisher, which is the order a server can promise).
    #[arg(long, default_value_t = 1)]
    pub(crate) inflight: usize,
    /// Requests pipelined on each publishing connection.
    #[arg(long, default_value_t = 1)]
    pub(crate) pipeline: usize,
    /// Payload bytes per event (at least the header).
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Spread subscriber connections over this many 127.0.0.x source
    /// addresses (0 = only when one address's ephemeral ports run out).
    #[arg(long, default_value_t = 0)]
    pub(crate) source_ips: usize,
    /// Percentage of subscribers that never read after connecting.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) stalled_pct: f64,
    /// Ask for compressed streams (`Accept-Encoding: gzip`); a gzip answer
    /// is decoded as it arrives, and the report gives the bytes on the
    /// wire against the decoded ones.
    #[arg(long)]
    pub(crate) gzip: bool,
    /// `max_rate=R` on the throttled subscribers' `/events` (ringcast only).
    #[arg(long)]
    pub(crate) max_rate: Option<f64>,
    /// With --max-rate: the percentage of subscribers that ask for it. They
    /// read and count what they get; the delivery and latency figures are
    /// the others'.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) throttled_pct: f64,
    /// Concurrent connection attempts while connecting subscribers.
    #[arg(long, default_value_t = 256)]
    pub(crate) connect_concurrency: usize,
    /// Only connect (connection storm / idle memory); publish nothing.
    #[arg(long)]
    pub(crate) connect_only: bool,
    /// With --connect-only: hold the connections this long before taking
    /// the server's RSS (lets it settle).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) hold_s: f64,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 60)]
    pub(crate) timeout_s: u64,
}

/// The "market open" shapes: bursts of ndjson batches, wildcard and
/// multi-topic subscriptions.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Market {
    /// Events per publish request (a burst of N events at once). Above 1,
    /// ringcast gets one `application/x-ndjson` request per N events; nchan,
    /// which has no batch publish, gets the same events one per request on
    /// the same connections (the report's `run.batch_as` says which).
    #[arg(long, default_value_t = 1)]
    pub(crate) batch: usize,
    /// Wildcard subscriptions: the topics are `quotes.V<v>.S<k>` over this
    /// many venues (`--topics` must be a multiple), and subscriber i
    /// subscribes `quotes.*.S<i % symbols>` (one symbol on every venue; nchan:
    /// the same channels by multi-channel subscribe). 0 = one plain topic per
    /// subscriber.
    #[arg(long, default_value_t = 0)]
    pub(crate) venues: usize,
    /// Market mode: each subscriber takes this many distinct topics in one
    /// multi-topic subscription (ringcast: repeated `topic=`, at most
    /// limits.topics_per_subscription; nchan: `/msub/a,b,...`). The sets
    /// differ from subscriber to subscriber and every topic gets the same
    /// number of subscribers. 0 = off.
    #[arg(long, default_value_t = 0)]
    pub(crate) topics_per_sub: usize,
    /// Market mode: this share of the subscribers subscribe to a whole venue
    /// (ringcast: `quotes.V<v>.>`, needs --venues), spread evenly over the
    /// venues. nchan cannot express a wildcard: there they take 2 ×
    /// --topics-per-sub channels of that venue instead (not the same load).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) wildcard_pct: f64,
}

impl Market {
    /// The market mode (multi-topic subscriptions) is on.
    pub(crate) fn on(&self) -> bool {
        self.topics_per_sub > 0
    }
}

/// A resume storm: many subscribers drop at once and resume at once.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Storm {
    /// Resume storm: this share of the subscribers (the resumers) drop their
    /// connections at once after --warmup-s + --baseline-s of publishing and
    /// reconnect at once with Last-Event-ID once --resume-back more events
    /// were acknowledged; the others (the stayers) stay connected. Needs
    /// --rate. 0 = no storm.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) resumers_pct: f64,
    /// Resume storm: events published (acknowledged) between the resumers'
    /// drop and their reconnect, i.e. missed and replayed from history.
    #[arg(long, default_value_t = 1000)]
    pub(crate) resume_back: u64,
    /// Resume storm: publishing before the calm (no-storm) window.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup_s: f64,
    /// Resume storm: the calm window measured before the storm.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) baseline_s: f64,
    /// Resume storm: the storm window lasts from the drop until every resumer
    /// has caught up, and at least this long after the reconnect.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) storm_s: f64,
    /// Resume storm: also write every acknowledgement and stayer latency
    /// sample to this file, one per line (`a|l <µs since start> <µs>`),
    /// after a first line `drop <µs> end <µs>`, to plot the storm over time.
    #[arg(long)]
    pub(crate) samples_out: Option<PathBuf>,
}

impl Storm {
    /// A resume storm is asked for.
    pub(crate) fn on(&self) -> bool {
        self.resumers_pct > 0.0
    }
}

impl Args {
    /// Combinations the modes cannot run; the reason, to print.
    pub(crate) fn check(&self) -> Result<(), String> {
        let (load, market, storm) = (&self.load, &self.market, &self.storm);
        if load.topics == 0 {
            return Err("--topics must be at least 1".into());
        }
        if market.venues > 0 && !load.topics.is_multiple_of(market.venues) {
            return Err("--topics must be a multiple of --venues".into());
        }
        if market.on() {
            if market.topics_per_sub > load.topics {
                return Err("--topics-per-sub is more than --topics".into());
            }
            if !(0.0..=100.0).contains(&market.wildcard_pct) {
                return Err("--wildcard-pct is a percentage".into());
            }
            if market.wildcard_pct > 0.0 && market.venues == 0 {
                return Err(
                    "--wildcard-pct needs --venues (a wildcard takes a whole venue)".into(),
                );
            }
            if market.wildcard_pct > 0.0 && 2 * market.topics_per_sub > self.symbols() {
                return Err(
                    "--wildcard-pct: nchan's stand-in needs 2 × --topics-per-sub symbols per venue"
                        .into(),
                );
            }
            if storm.on() {
                return Err("--topics-per-sub runs without a resume storm".into());
            }
        } else if market.wildcard_pct > 0.0 {
            return Err("--wildcard-pct needs --topics-per-sub".into());
        }
        if storm.on() {
            if storm.resumers_pct > 100.0 {
                return Err("--resumers-pct is a percentage".into());
            }
            if load.rate == 0 {
                return Err("a resume storm needs --rate (a steady publish rate)".into());
            }
            if load.stalled_pct > 0.0 || load.connect_only {
                return Err(
                    "a resume storm runs without stalled subscribers or --connect-only".into(),
                );
            }
            let publish_s = load.events as f64 / load.rate as f64;
            let needed = storm.warmup_s
                + storm.baseline_s
                + storm.resume_back as f64 / load.rate as f64
                + storm.storm_s
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
}
