//! The resume storm's figures, at the end of the run (when every answer is
//! in): publish-acknowledgement latency by when the request was due,
//! stayers' latency by when the event was published, in the calm window
//! and in the storm window.

use std::time::Instant;

use crate::args::Args;
use crate::run::Measured;
use crate::stats::{quantile_ms, window_ms, Stats};
use crate::storm::StormTimes;

pub(crate) fn storm_figures(
    args: &Args,
    stats: &Stats,
    m: &Measured,
    st: &StormTimes,
) -> Vec<(&'static str, serde_json::Value)> {
    let us = |t: Instant| t.duration_since(m.base).as_micros() as u64;
    let util = |a: Option<f64>, b: Option<f64>, from: Instant, to: Instant| match (a, b) {
        (Some(a), Some(b)) if to > from => Some((b - a) / (to - from).as_secs_f64()),
        _ => None,
    };
    let (calm, drop_, end) = (us(st.calm_from), us(st.drop), us(st.end));
    let acks = stats.ack_samples.borrow();
    let live = stats.stayer_samples.borrow();
    let (ack_calm, ack_calm_n) = window_ms(&acks, calm, drop_, 0.99);
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
    let since_pub = |t: Instant| t.duration_since(m.t_pub).as_secs_f64();
    vec![
        ("resume_back", args.storm.resume_back.into()),
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
