//! The report: every figure of a run as one flat JSON object (`--json`),
//! or one `key: value` line each.

use crate::args::Args;
use crate::metrics;
use crate::plan::Plan;
use crate::run::Measured;
use crate::stats::{hist, quantile_ms, Stats};
use crate::storm_report::storm_figures;

pub(crate) struct Report(serde_json::Value);

impl Report {
    pub(crate) fn new(
        args: &Args,
        plan: &Plan,
        resumers: usize,
        stats: &Stats,
        m: &Measured,
    ) -> Report {
        let n = args.load.subscribers;
        let readers = plan.readers;
        let delivered = stats.delivered.get();
        let lat = stats.latency_us.borrow_mut().take().unwrap_or_else(hist);
        let ttfb = stats.ttfb_us.borrow_mut().take().unwrap_or_else(hist);
        let unfinished = readers.saturating_sub(stats.done_subscribers.get()) as u64;
        let connected = stats.connected.get();
        let cpu_per_conn_us = match m.connect.server_cpu() {
            Some(cpu) if connected > 0 => Some(cpu / connected as f64 * 1e6),
            _ => None,
        };
        let cpu_per_m = match m.publish.server_cpu() {
            Some(cpu) if delivered > 0 => Some(cpu / delivered as f64 * 1e6),
            _ => None,
        };
        let rss_per_conn = match m.rss_kib {
            (Some(a), Some(b)) if connected > 0 => {
                Some((b.saturating_sub(a) as f64 * 1024.0) / connected as f64)
            }
            _ => None,
        };
        let closes = m.cpu_us_per_close;
        let mut report = serde_json::json!({
            "server": args.target.server,
            "subscribers": n,
            "source_ips": plan.source_ips,
            "publishers": args.load.inflight.max(1),
            "connected": connected,
            "connect_errors": stats.connect_errors.get(),
            "connects_per_s": connected as f64 / m.connect.secs,
            "server_cpu_us_per_connect": cpu_per_conn_us,
            "server_cpu_us_per_close": closes,
            "closed_after_publish": stats.hung_up.get(),
            "server_connects_per_cpu_s": cpu_per_conn_us.filter(|us| *us > 0.0).map(|us| 1e6 / us),
            "connect_server_core_util": m.connect.server_cores(),
            "connect_loadgen_core_util": m.connect.loadgen_cores(),
            "publish_server_core_util": m.publish.server_cores(),
            "publish_server_core_busy_all": m.core.map(|c| c.0),
            "publish_server_core_softirq": m.core.map(|c| c.1),
            "publish_loadgen_core_util": m.publish.loadgen_cores(),
            "ttfb_p50_ms": ttfb.value_at_quantile(0.5) as f64 / 1000.0,
            "ttfb_p99_ms": ttfb.value_at_quantile(0.99) as f64 / 1000.0,
            "topics": args.load.topics,
            "events": args.load.events,
            "published": stats.published.get(),
            "publish_errors": stats.publish_errors.get(),
            "delivered": delivered,
            "deliveries_per_s": delivered as f64 / m.publish.secs,
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
            "undelivered_at_deadline": if args.load.connect_only { 0 } else {
                plan.expected.saturating_sub(delivered - stats.dup.get() - stats.reordered.get())
                    .saturating_sub(stats.lost.get() + stats.ended_short.get())
            },
            "unfinished_subscribers": unfinished,
            "duplicated": stats.dup.get(),
            "reordered": stats.reordered.get(),
            "misrouted": stats.misrouted.get(),
            "server_cpu_s_per_million_deliveries": cpu_per_m,
            "server_rss_bytes_per_connection": rss_per_conn,
            "publish_seconds": m.publish.secs,
        });
        if extras(args) {
            let extra = report.as_object_mut().expect("object");
            let mut put = |k: &str, v: serde_json::Value| {
                extra.insert(k.to_string(), v);
            };
            put("batch", args.market.batch.into());
            put(
                "batch_publish",
                match (args.market.batch > 1, args.per_request() > 1) {
                    (false, _) => "one event per request".into(),
                    (true, true) => {
                        format!("ndjson, {} events per request", args.market.batch).into()
                    }
                    (true, false) => format!(
                        "one event per request on the same {} connections ({} has no batch publish)",
                        args.load.inflight.max(1),
                        args.target.server
                    )
                    .into(),
                },
            );
            put("subscribers_disconnected", stats.disconnected.get().into());
            if args.market.on() {
                let wild = (0..n).filter(|&i| args.wildcard_of(i).is_some()).count();
                put("topics_per_sub", args.market.topics_per_sub.into());
                put("wildcard_subscribers", wild.into());
                put(
                    "wildcard_as",
                    match args.nchan() {
                        true => format!(
                            "{} channels of the venue (nchan has no wildcard: not the same load)",
                            2 * args.market.topics_per_sub
                        ),
                        false => format!(
                            "quotes.V<v>.> (all {} symbols of the venue)",
                            args.symbols()
                        ),
                    }
                    .into(),
                );
                put("expected_deliveries", plan.expected.into());
            }
            put("ack_p50_ms", quantile_ms(&stats.ack_us, 0.5).into());
            put("ack_p99_ms", quantile_ms(&stats.ack_us, 0.99).into());
            for (key, series) in metrics::SERIES {
                let delta = match &m.metrics {
                    (Some(a), Some(b)) => metrics::metric(b, series)
                        .zip(metrics::metric(a, series))
                        .map(|(b, a)| b - a),
                    _ => None,
                };
                put(&format!("server_{key}"), delta.into());
            }
            put(
                "server_metrics_scraped",
                (m.metrics.0.is_some() && m.metrics.1.is_some()).into(),
            );
            if let Some(storm) = &m.storm {
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
                for (k, v) in storm_figures(args, stats, m, storm) {
                    put(k, v);
                }
            }
        }
        Report(report)
    }

    /// Prints one JSON line (`--json`), or one `key: value` line each.
    pub(crate) fn print(&self, json: bool) {
        if json {
            println!("{}", self.0);
            return;
        }
        for (k, val) in self.0.as_object().expect("object") {
            println!("{k:>28}: {val}");
        }
    }
}

/// The extra figures of the burst and storm modes go in the report.
fn extras(args: &Args) -> bool {
    args.market.batch > 1 || args.storm.on() || args.target.server_metrics || args.market.on()
}
