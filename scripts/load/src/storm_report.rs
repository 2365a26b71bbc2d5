//! `StormReport`: the resume storm's part of the report, computed at the
//! end of the run (when every answer is in): whether every resumer got
//! exactly the events it missed, and the same figures for the calm window
//! and the storm window (publish acknowledgement by when the request was
//! due, the stayers' live latency by when the event was published, the
//! load generator's own timer lag, and CPU), so that the storm's cost is
//! read against the same run's calm.

use std::time::Instant;

use serde::Serialize;

use crate::args::Args;
use crate::fig::Fig;
use crate::run::Measured;
use crate::stats::{quantile_ms, window_ms, Stats};
use crate::storm::StormTimes;

#[derive(Serialize)]
pub(crate) struct StormReport {
    resumers: usize,
    stayers: usize,
    resume_back: u64,
    /// Events acknowledged between the drop and the reconnect.
    missed_events: u64,
    resume: Resume,
    /// Seconds since publishing started.
    timeline_s: Timeline,
    calm_window: Window,
    storm_window: Window,
    storm_over_calm: Ratios,
}

/// Counted at the end of the run: a resumer is exact once it has every
/// event, once each, in order, without a resync.
#[derive(Serialize)]
struct Resume {
    dropped: usize,
    reconnected: usize,
    caught_up: usize,
    exact: usize,
    failed: usize,
    replayed_events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed_per_resumer: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttfb_p99_ms: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catchup_p50_ms: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catchup_max_ms: Option<Fig>,
}

#[derive(Serialize)]
struct Timeline {
    #[serde(skip_serializing_if = "Option::is_none")]
    calm_from: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnect: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caught_up: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<Fig>,
}

/// One window's figures; a quantile is left out when the window has no
/// samples, a core share when no CPU was read.
#[derive(Serialize)]
struct Window {
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_p99_ms: Option<Fig>,
    ack_samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    live_p50_ms: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live_p99_ms: Option<Fig>,
    live_samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    loadgen_lag_p99_ms: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loadgen_lag_max_ms: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cores_busy: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loadgen_cores_busy: Option<Fig>,
}

#[derive(Serialize)]
struct Ratios {
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_p99: Option<Fig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live_p99: Option<Fig>,
}

/// CPU seconds at the edges of a window, as cores busy.
fn cores(a: Option<f64>, b: Option<f64>, from: Instant, to: Instant) -> Option<Fig> {
    match (a, b) {
        (Some(a), Some(b)) if to > from => Fig::sig3((b - a) / (to - from).as_secs_f64()),
        _ => None,
    }
}

impl StormReport {
    pub(crate) fn new(
        args: &Args,
        stats: &Stats,
        m: &Measured,
        st: &StormTimes,
        resumers: usize,
        stayers: usize,
    ) -> StormReport {
        let us = |t: Instant| t.duration_since(m.base).as_micros() as u64;
        let (calm, drop_, end) = (us(st.calm_from), us(st.drop), us(st.end));
        let window =
            |from: u64, to: u64, cpu: [(Option<f64>, Option<f64>); 2], at: [Instant; 2]| {
                let (acks, live, lag) = (
                    stats.ack_samples.borrow(),
                    stats.stayer_samples.borrow(),
                    stats.lag.borrow(),
                );
                let (ack_p99, ack_samples) = window_ms(&acks, from, to, 0.99);
                let (live_p99, live_samples) = window_ms(&live, from, to, 0.99);
                Window {
                    ack_p99_ms: ack_p99.and_then(Fig::sig3),
                    ack_samples,
                    live_p50_ms: window_ms(&live, from, to, 0.5).0.and_then(Fig::sig3),
                    live_p99_ms: live_p99.and_then(Fig::sig3),
                    live_samples,
                    loadgen_lag_p99_ms: window_ms(&lag, from, to, 0.99).0.and_then(Fig::sig3),
                    loadgen_lag_max_ms: window_ms(&lag, from, to, 1.0).0.and_then(Fig::sig3),
                    server_cores_busy: cores(cpu[0].0, cpu[1].0, at[0], at[1]),
                    loadgen_cores_busy: cores(cpu[0].1, cpu[1].1, at[0], at[1]),
                }
            };
        let calm_window = window(
            calm,
            drop_,
            [st.calm_cpu, st.drop_cpu],
            [st.calm_from, st.drop],
        );
        let storm_window = window(drop_, end, [st.drop_cpu, st.end_cpu], [st.drop, st.end]);
        // Ratios of the unrounded quantiles.
        let ratio = |samples: &[(u64, u64)]| {
            let (a, b) = (
                window_ms(samples, calm, drop_, 0.99).0,
                window_ms(samples, drop_, end, 0.99).0,
            );
            a.zip(b)
                .filter(|(a, _)| *a > 0.0)
                .and_then(|(a, b)| Fig::sig3(b / a))
        };
        let since_pub = |t: Instant| Fig::sig3(t.duration_since(m.t_pub).as_secs_f64());
        let dropped = stats.resumers_dropped.get();
        StormReport {
            resumers,
            stayers,
            resume_back: args.storm.resume_back,
            missed_events: st.missed,
            resume: Resume {
                dropped,
                reconnected: stats.resumers_reconnected.get(),
                caught_up: stats.resumers_caught_up.get(),
                exact: stats.resumers_exact.get(),
                failed: stats.resume_failed.get(),
                replayed_events: stats.replayed.get(),
                replayed_per_resumer: Fig::sig3(
                    stats.replayed.get() as f64 / dropped.max(1) as f64,
                ),
                ttfb_p99_ms: quantile_ms(&stats.resume_ttfb_us, 0.99).and_then(Fig::sig3),
                catchup_p50_ms: quantile_ms(&stats.catchup_us, 0.5).and_then(Fig::sig3),
                catchup_max_ms: quantile_ms(&stats.catchup_us, 1.0).and_then(Fig::sig3),
            },
            timeline_s: Timeline {
                calm_from: since_pub(st.calm_from),
                drop: since_pub(st.drop),
                reconnect: since_pub(st.reconnect),
                caught_up: since_pub(st.caught_up),
                end: since_pub(st.end),
            },
            calm_window,
            storm_window,
            storm_over_calm: Ratios {
                ack_p99: ratio(&stats.ack_samples.borrow()),
                live_p99: ratio(&stats.stayer_samples.borrow()),
            },
        }
    }
}

/// --samples-out: every acknowledgement and stayer latency sample, one per
/// line (`a|l <µs since start> <µs>`), after a first line `drop <µs> end
/// <µs>`, to plot the storm over time.
pub(crate) fn write_samples(path: &std::path::Path, stats: &Stats, base: Instant, st: &StormTimes) {
    let us = |t: Instant| t.duration_since(base).as_micros() as u64;
    let mut out = format!("drop {} end {}\n", us(st.drop), us(st.end));
    for (t, v) in stats.ack_samples.borrow().iter() {
        out.push_str(&format!("a {t} {v}\n"));
    }
    for (t, v) in stats.stayer_samples.borrow().iter() {
        out.push_str(&format!("l {t} {v}\n"));
    }
    let _ = std::fs::write(path, out);
}
