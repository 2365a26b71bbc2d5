//! `Report`: what a run measured, grouped the way a reader asks about it:
//! the run itself, connecting, delivery and its faults, latency, the
//! publishers' acknowledgements, the server's cost, the load generator's
//! own load, then a group per mode (market, server metrics, resume storm).
//! Figures are `Fig`s (rounded); a field that does not apply to the run is
//! left out, never `null`. docs/load-generator.md explains every field.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::args::Args;
use crate::fig::Fig;
use crate::metrics;
use crate::plan::Plan;
use crate::run::{Measured, Phase};
use crate::stats::{quantile_ms, Hist, Stats};
use crate::storm_report::StormReport;

#[derive(Serialize)]
pub(crate) struct Report {
    run: Run,
    connect: Connect,
    /// Left out with --connect-only, as `latency_ms` and `ack_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_ms: Option<P50P99>,
    /// Only with --server-pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<Server>,
    loadgen: Loadgen,
    #[serde(skip_serializing_if = "Option::is_none")]
    market: Option<Market>,
    /// Only with --server-metrics, when both scrapes worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_metrics: Option<Named>,
    #[serde(skip_serializing_if = "Option::is_none")]
    storm: Option<StormReport>,
    /// Only with --gzip.
    #[serde(skip_serializing_if = "Option::is_none")]
    wire: Option<Wire>,
    /// Only with --max-rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    throttled: Option<Throttled>,
}

/// What the subscribers read, against what it decoded to (--gzip).
#[derive(Serialize)]
struct Wire {
    bytes_read: u64,
    bytes_decoded: u64,
    /// Read / decoded: what compression left of the stream.
    ratio: Option<Fig>,
}

/// The --max-rate subscribers: they are left out of `delivery` and
/// `latency_ms`.
#[derive(Serialize)]
struct Throttled {
    subscribers: usize,
    max_rate: f64,
    /// Events they received in all (each topic's newest at most every
    /// 1/max_rate s).
    received: u64,
}

/// What was run: the flags that shape the load, and how long it took.
#[derive(Serialize)]
struct Run {
    server: String,
    /// --addr, then every --also-addr.
    nodes: Vec<String>,
    subscribers: usize,
    #[serde(skip_serializing_if = "is_zero")]
    stalled_subscribers: usize,
    topics: usize,
    #[serde(skip_serializing_if = "is_zero")]
    venues: usize,
    /// The publishing figures of the run are left out with --connect-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_bytes: Option<usize>,
    /// Left out when publishing as fast as acknowledged.
    #[serde(skip_serializing_if = "is_zero_u64")]
    rate_per_s: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    publishers: Option<usize>,
    #[serde(skip_serializing_if = "at_most_one")]
    pipeline: usize,
    #[serde(skip_serializing_if = "at_most_one")]
    batch: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_as: Option<String>,
    source_ips: usize,
    timeout_s: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_s: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_s: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_s: Option<Fig>,
}

#[derive(Serialize)]
struct Connect {
    connected: usize,
    errors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_s: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttfb_ms: Option<P50P99>,
    /// Subscribers that held their stream until the publish phase was
    /// measured, then closed it (not in a storm or with --connect-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_after_publish: Option<usize>,
}

/// The median and the 99th percentile of a histogram, in ms.
#[derive(Serialize)]
struct P50P99 {
    p50: Fig,
    p99: Fig,
}

impl P50P99 {
    /// None while the histogram is empty.
    fn of(h: &Hist) -> Option<P50P99> {
        let q = |q: f64| quantile_ms(h, q).and_then(Fig::sig3);
        Some(P50P99 {
            p50: q(0.5)?,
            p99: q(0.99)?,
        })
    }
}

#[derive(Serialize)]
struct Delivery {
    published: u64,
    publish_errors: u64,
    expected: u64,
    delivered: u64,
    per_s: Option<Fig>,
    lost: u64,
    sequence_gaps: u64,
    duplicated: u64,
    reordered: u64,
    misrouted: u64,
    resyncs: u64,
    undelivered_at_deadline: u64,
    unfinished_subscribers: usize,
    disconnected_subscribers: usize,
}

#[derive(Serialize)]
struct Latency {
    p50: Fig,
    p90: Fig,
    p99: Fig,
    p999: Fig,
    max: Fig,
}

#[derive(Serialize)]
struct Server {
    pids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_delivery: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_connect: Option<Fig>,
    /// Left out when the server's CPU clock did not tick while connecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    connects_per_cpu_s: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_close: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_growth_bytes_per_connection: Option<Fig>,
    /// RSS growth from before the first connect to the end of the publish
    /// phase, per connection: an active stream's memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_growth_bytes_per_active_connection: Option<Fig>,
    /// Publish-phase server CPU per event published: what one event costs,
    /// whatever it was delivered to (--max-rate skips deliveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_event: Option<Fig>,
    cores_busy: Phases,
    /// --server-core: that core over the publish phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    core: Option<Core>,
}

/// A figure for each phase that has one.
#[derive(Serialize)]
struct Phases {
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<Fig>,
}

#[derive(Serialize)]
struct Core {
    id: usize,
    busy: Fig,
    softirq: Fig,
}

#[derive(Serialize)]
struct Loadgen {
    cores_busy: Phases,
}

#[derive(Serialize)]
struct Market {
    topics_per_sub: usize,
    #[serde(skip_serializing_if = "is_zero")]
    wildcard_subscribers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    wildcard_as: Option<String>,
}

/// Figures named at run time, written as a JSON object in their order.
pub(crate) struct Named(pub(crate) Vec<(&'static str, Fig)>);

impl Serialize for Named {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn at_most_one(n: &usize) -> bool {
    *n <= 1
}

/// `total` per `n`, times `scale`; none when there is nothing to divide.
fn per(total: Option<f64>, n: u64, scale: f64) -> Option<f64> {
    total.filter(|_| n > 0).map(|t| t / n as f64 * scale)
}

impl Report {
    pub(crate) fn new(
        args: &Args,
        plan: &Plan,
        resumers: usize,
        stats: &Stats,
        m: &Measured,
    ) -> Report {
        let publishing = !args.load.connect_only;
        let connected = stats.connected.get();
        Report {
            run: run(args, plan, m),
            connect: Connect {
                connected,
                errors: stats.connect_errors.get(),
                per_s: Fig::sig3(connected as f64 / m.connect.secs),
                ttfb_ms: P50P99::of(&stats.ttfb_us),
                closed_after_publish: (publishing && !args.storm.on()).then(|| stats.hung_up.get()),
            },
            delivery: publishing.then(|| delivery(plan, stats, &m.publish)),
            // None without deliveries (an empty histogram).
            latency_ms: latency(stats).filter(|_| publishing),
            ack_ms: P50P99::of(&stats.ack_us),
            server: (!args.target.server_pid.is_empty()).then(|| server(args, stats, m)),
            loadgen: Loadgen {
                cores_busy: Phases {
                    connect: m.connect.loadgen_cores().and_then(Fig::sig3),
                    publish: m
                        .publish
                        .loadgen_cores()
                        .filter(|_| publishing)
                        .and_then(Fig::sig3),
                },
            },
            market: args.market.on().then(|| market(args)),
            server_metrics: match &m.metrics {
                (Some(a), Some(b)) => Some(Named(
                    metrics::deltas(a, b)
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, Fig::whole(v)?)))
                        .collect(),
                )),
                _ => None,
            },
            storm: m.storm.as_ref().map(|times| {
                let stayers = plan.readers - resumers;
                StormReport::new(args, stats, m, times, resumers, stayers)
            }),
            wire: args.load.gzip.then(|| Wire {
                bytes_read: stats.wire_bytes.get(),
                bytes_decoded: stats.plain_bytes.get(),
                ratio: Fig::sig3(stats.wire_bytes.get() as f64 / stats.plain_bytes.get() as f64)
                    .filter(|_| stats.plain_bytes.get() > 0),
            }),
            throttled: args.load.max_rate.map(|max_rate| Throttled {
                subscribers: plan.throttled,
                max_rate,
                received: stats.throttled_received.get(),
            }),
        }
    }

    /// The report as one JSON line (`--json`, for scripts), or indented.
    pub(crate) fn to_json(&self, one_line: bool) -> String {
        let json = match one_line {
            true => serde_json::to_string(self),
            false => serde_json::to_string_pretty(self),
        };
        json.expect("a report is plain data")
    }
}

fn run(args: &Args, plan: &Plan, m: &Measured) -> Run {
    let (load, market) = (&args.load, &args.market);
    let publishers = load.inflight.max(1);
    let batch_as = (market.batch > 1).then(|| match args.per_request() > 1 {
        true => format!("ndjson, {} events per request", market.batch),
        false => format!(
            "one event per request on the same {publishers} connections ({} has no batch publish)",
            args.target.server
        ),
    });
    let publishing = !load.connect_only;
    Run {
        server: args.target.server.clone(),
        nodes: std::iter::once(&args.target.addr)
            .chain(&args.target.also_addr)
            .map(|a| a.to_string())
            .collect(),
        subscribers: load.subscribers,
        stalled_subscribers: load.subscribers - plan.readers,
        topics: load.topics,
        venues: market.venues,
        events: publishing.then_some(load.events),
        event_bytes: publishing.then_some(load.size),
        rate_per_s: load.rate,
        publishers: publishing.then_some(publishers),
        pipeline: load.pipeline,
        batch: market.batch,
        batch_as,
        source_ips: plan.source_ips,
        timeout_s: load.timeout_s,
        connect_s: Fig::sig3(m.connect.secs),
        hold_s: Fig::sig3(load.hold_s).filter(|_| load.connect_only && load.hold_s > 0.0),
        publish_s: Fig::sig3(m.publish.secs).filter(|_| publishing),
    }
}

fn delivery(plan: &Plan, stats: &Stats, publish: &Phase) -> Delivery {
    let delivered = stats.delivered.get();
    let (gaps, ended_short) = (stats.lost.get(), stats.ended_short.get());
    let (dup, reordered) = (stats.dup.get(), stats.reordered.get());
    Delivery {
        published: stats.published.get(),
        publish_errors: stats.publish_errors.get(),
        expected: plan.expected,
        delivered,
        per_s: Fig::sig3(delivered as f64 / publish.secs),
        // Lost: skipped in a stream that went on, or missing from a stream
        // that ended. Not yet delivered when the run's time ran out is
        // reported apart (a slow server, not a lossy one).
        lost: gaps + ended_short,
        sequence_gaps: gaps,
        duplicated: dup,
        reordered,
        misrouted: stats.misrouted.get(),
        resyncs: stats.resyncs.get(),
        undelivered_at_deadline: plan
            .expected
            .saturating_sub(delivered.saturating_sub(dup + reordered))
            .saturating_sub(gaps + ended_short),
        unfinished_subscribers: plan.readers.saturating_sub(stats.done_subscribers.get()),
        disconnected_subscribers: stats.disconnected.get(),
    }
}

fn latency(stats: &Stats) -> Option<Latency> {
    let q = |q: f64| quantile_ms(&stats.latency_us, q).and_then(Fig::sig3);
    Some(Latency {
        p50: q(0.5)?,
        p90: q(0.9)?,
        p99: q(0.99)?,
        p999: q(0.999)?,
        max: q(1.0)?,
    })
}

fn server(args: &Args, stats: &Stats, m: &Measured) -> Server {
    let connected = stats.connected.get() as u64;
    let per_connect_us = per(m.connect.server_cpu(), connected, 1e6);
    let rss_growth_kib = match m.rss_kib {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64),
        _ => None,
    };
    let rss_active_kib = match (m.rss_kib.0, m.rss_published_kib) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64),
        _ => None,
    };
    let publishing = !args.load.connect_only;
    Server {
        pids: args.target.server_pid.clone(),
        cpu_us_per_delivery: per(m.publish.server_cpu(), stats.delivered.get(), 1e6)
            .and_then(Fig::sig3),
        cpu_us_per_connect: per_connect_us.and_then(Fig::sig3),
        connects_per_cpu_s: per_connect_us
            .filter(|us| *us > 0.0)
            .and_then(|us| Fig::sig3(1e6 / us)),
        cpu_us_per_close: m.cpu_us_per_close.and_then(Fig::sig3),
        rss_growth_bytes_per_connection: per(rss_growth_kib, connected, 1024.0)
            .and_then(Fig::whole),
        rss_growth_bytes_per_active_connection: per(rss_active_kib, connected, 1024.0)
            .and_then(Fig::whole),
        cpu_us_per_event: per(m.publish.server_cpu(), stats.published.get(), 1e6)
            .filter(|_| publishing)
            .and_then(Fig::sig3),
        cores_busy: Phases {
            connect: m.connect.server_cores().and_then(Fig::sig3),
            publish: m
                .publish
                .server_cores()
                .filter(|_| publishing)
                .and_then(Fig::sig3),
        },
        core: args
            .target
            .server_core
            .zip(m.core)
            .filter(|_| publishing)
            .and_then(|(id, (busy, softirq))| {
                Some(Core {
                    id,
                    busy: Fig::sig3(busy)?,
                    softirq: Fig::sig3(softirq)?,
                })
            }),
    }
}

fn market(args: &Args) -> Market {
    let k = args.market.topics_per_sub;
    let wild = (0..args.load.subscribers)
        .filter(|&i| args.wildcard_of(i).is_some())
        .count();
    let wildcard_as = match args.nchan() {
        true => format!(
            "{} channels of the venue (nchan has no wildcard: not the same load)",
            2 * k
        ),
        false => format!(
            "quotes.V<v>.> (all {} symbols of the venue)",
            args.symbols()
        ),
    };
    Market {
        topics_per_sub: k,
        wildcard_subscribers: wild,
        wildcard_as: (wild > 0).then_some(wildcard_as),
    }
}
