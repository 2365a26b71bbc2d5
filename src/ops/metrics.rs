//! Counters per worker (each written only by its owner, relaxed atomics so
//! `/metrics` on any worker can read them) and the process-wide ones, rendered
//! as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Status codes counted in `ringcast_http_responses_total{code}`.
pub const CODES: [u16; 14] = [
    100, 200, 204, 400, 401, 403, 404, 405, 408, 413, 429, 431, 500, 503,
];

/// Upper bounds (seconds) of `ringcast_publish_to_write_seconds` buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Open TCP connections on this worker.
    pub connections_active: AtomicI64,
    /// Open event streams on this worker.
    pub subscribers_active: AtomicI64,
    /// Accepted connections.
    pub connections_total: AtomicU64,
    /// Event frames fully written to a subscriber socket.
    pub frames_delivered: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_written: AtomicU64,
    /// Subscribers closed for exceeding `sse.max_pending_bytes`.
    pub slow_disconnects: AtomicU64,
    /// Subscribers closed for accepting nothing for `sse.write_stall_ms`.
    pub stall_disconnects: AtomicU64,
    /// Pending events dropped by conflation.
    pub conflated: AtomicU64,
    /// Events a `max_rate` subscription skipped (a newer one of the topic
    /// took its place within the interval).
    pub throttled: AtomicU64,
    /// Resync frames sent.
    pub resyncs: AtomicU64,
    /// Heartbeat comments queued.
    pub heartbeats: AtomicU64,
    /// Times the worker stopped fanning out because its unsent bytes
    /// reached its share of `sse.max_queued_bytes` (back-pressure).
    pub fanout_paused: AtomicU64,
    /// Bytes of event frames in this worker's history.
    pub history_bytes: AtomicU64,
    /// Bumped by the worker's keep-alive task while its loop runs (the
    /// systemd watchdog is fed only while every worker's counter moves).
    pub alive: AtomicU64,
    /// Responses by status, indexed like [`CODES`].
    pub responses: [AtomicU64; CODES.len()],
    /// Publish-to-write latency (sequencing to a completed socket write).
    pub latency: Histogram,
    /// Sequencing to the worker taking the event from its ring (once per
    /// ring message, for its first event).
    pub stage_ring: Histogram,
    /// Sequencing to the event queued on every matching subscriber (once
    /// per ring message, for its first event).
    pub stage_fanout: Histogram,
    /// Sequencing to the socket write that carries it being submitted (once
    /// per write, for the oldest live event in it).
    pub stage_write_submitted: Histogram,
}

/// A latency histogram over [`LATENCY_BUCKETS`]: non-cumulative buckets,
/// then +Inf, and the sum. Written by one thread, read by any.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe_ns(&self, ns: u64) {
        let secs = ns as f64 / 1e9;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }
}

/// Writes the `_bucket`, `_sum` and `_count` lines of the sum of `hs`, with
/// `labels` (`stage="ring",` or empty) before `le`.
fn render_histogram(s: &mut String, name: &str, labels: &str, hs: &[&Histogram]) {
    let mut cumulative = 0;
    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += hs.iter().map(|h| h.buckets[i].load(Relaxed)).sum::<u64>();
        let _ = writeln!(s, "{name}_bucket{{{labels}le=\"{b}\"}} {cumulative}");
    }
    cumulative += hs
        .iter()
        .map(|h| h.buckets[LATENCY_BUCKETS.len()].load(Relaxed))
        .sum::<u64>();
    let _ = writeln!(s, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
    let sum_ns: u64 = hs.iter().map(|h| h.sum_ns.load(Relaxed)).sum();
    let l = labels.trim_end_matches(',');
    let braces = if l.is_empty() {
        String::new()
    } else {
        format!("{{{l}}}")
    };
    let _ = writeln!(s, "{name}_sum{braces} {}", sum_ns as f64 / 1e9);
    let _ = writeln!(s, "{name}_count{braces} {cumulative}");
}

impl WorkerMetrics {
    /// Counts one response with `status`.
    pub fn response(&self, status: u16) {
        let i = CODES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(CODES.len() - 2);
        self.responses[i].fetch_add(1, Relaxed);
    }

    /// Records one publish-to-write latency.
    pub fn observe_latency_ns(&self, ns: u64) {
        self.latency.observe_ns(ns);
    }
}

/// Counters of the process as a whole.
#[derive(Debug, Default)]
pub struct GlobalMetrics {
    /// Events given an id by the sequencer.
    pub events_published: AtomicU64,
    /// Times the sequencer found a worker ring full and had to wait.
    pub ring_full: AtomicU64,
    /// Publish requests refused because the publish queue was full.
    pub publish_rejected: AtomicU64,
    /// Subscriptions refused for global capacity.
    pub shed: AtomicU64,
    /// A publish request read (its body parsed) to its events sequenced.
    pub stage_sequenced: Histogram,
}

fn sum(ws: &[&WorkerMetrics], f: impl Fn(&WorkerMetrics) -> u64) -> u64 {
    ws.iter().map(|w| f(w)).sum()
}

/// Renders every series in Prometheus text exposition format.
pub fn render(global: &GlobalMetrics, workers: &[&WorkerMetrics]) -> String {
    let mut s = String::with_capacity(4096);
    fn connections(w: &WorkerMetrics) -> &AtomicI64 {
        &w.connections_active
    }
    fn subscribers(w: &WorkerMetrics) -> &AtomicI64 {
        &w.subscribers_active
    }
    type Gauge = fn(&WorkerMetrics) -> &AtomicI64;
    let gauges: [(&str, &str, Gauge); 2] = [
        (
            "ringcast_connections_active",
            "Open connections per worker.",
            connections,
        ),
        (
            "ringcast_subscribers_active",
            "Open event streams per worker.",
            subscribers,
        ),
    ];
    for (name, help, field) in gauges {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (i, w) in workers.iter().enumerate() {
            let _ = writeln!(s, "{name}{{worker=\"{i}\"}} {}", field(w).load(Relaxed));
        }
    }
    let counters: [(&str, &str, u64); 14] = [
        (
            "ringcast_connections_total",
            "Accepted connections.",
            sum(workers, |w| w.connections_total.load(Relaxed)),
        ),
        (
            "ringcast_events_published_total",
            "Events sequenced and acknowledged.",
            global.events_published.load(Relaxed),
        ),
        (
            "ringcast_frames_delivered_total",
            "Event frames written to subscribers.",
            sum(workers, |w| w.frames_delivered.load(Relaxed)),
        ),
        (
            "ringcast_bytes_written_total",
            "Bytes written to sockets.",
            sum(workers, |w| w.bytes_written.load(Relaxed)),
        ),
        (
            "ringcast_slow_disconnects_total",
            "Subscribers closed as slow: socket not taking bytes past sse.max_pending_bytes.",
            sum(workers, |w| w.slow_disconnects.load(Relaxed)),
        ),
        (
            "ringcast_stall_disconnects_total",
            "Subscribers closed after sse.write_stall_ms without progress.",
            sum(workers, |w| w.stall_disconnects.load(Relaxed)),
        ),
        (
            "ringcast_conflated_events_total",
            "Pending events replaced by a newer one of their topic.",
            sum(workers, |w| w.conflated.load(Relaxed)),
        ),
        (
            "ringcast_throttled_events_total",
            "Events a max_rate subscription skipped: a newer event of the topic replaced them within the interval.",
            sum(workers, |w| w.throttled.load(Relaxed)),
        ),
        (
            "ringcast_resyncs_total",
            "Resync frames sent to resuming subscribers.",
            sum(workers, |w| w.resyncs.load(Relaxed)),
        ),
        (
            "ringcast_heartbeats_total",
            "Heartbeat comments written.",
            sum(workers, |w| w.heartbeats.load(Relaxed)),
        ),
        (
            "ringcast_ingest_ring_full_total",
            "Times the sequencer waited on a full worker ring (back-pressure).",
            global.ring_full.load(Relaxed),
        ),
        (
            "ringcast_fanout_paused_total",
            "Times a worker paused its fan-out at its share of sse.max_queued_bytes (back-pressure).",
            sum(workers, |w| w.fanout_paused.load(Relaxed)),
        ),
        (
            "ringcast_publish_rejected_total",
            "Publish requests answered 503 because the publish queue was full.",
            global.publish_rejected.load(Relaxed),
        ),
        (
            "ringcast_shed_total",
            "Subscriptions turned away for global capacity or draining.",
            global.shed.load(Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let _ = writeln!(
        s,
        "# HELP ringcast_http_responses_total HTTP responses by status.\n# TYPE ringcast_http_responses_total counter"
    );
    for (i, code) in CODES.iter().enumerate() {
        let v = sum(workers, |w| w.responses[i].load(Relaxed));
        let _ = writeln!(s, "ringcast_http_responses_total{{code=\"{code}\"}} {v}");
    }
    let _ = writeln!(
        s,
        "# HELP ringcast_publish_to_write_seconds Time from sequencing an event to writing it to a subscriber socket.\n# TYPE ringcast_publish_to_write_seconds histogram"
    );
    let lat: Vec<&Histogram> = workers.iter().map(|w| &w.latency).collect();
    render_histogram(&mut s, "ringcast_publish_to_write_seconds", "", &lat);
    let _ = writeln!(
        s,
        "# HELP ringcast_stage_seconds Where an event's time goes: stage=\"sequenced\" is from its publish request read to its sequencing; the other stages are from its sequencing to the worker taking it from its ring (ring), to it being queued on every matching subscriber (fanout), and to the socket write that carries it being submitted (write_submitted); ringcast_publish_to_write_seconds is the last stage, the write completed.\n# TYPE ringcast_stage_seconds histogram"
    );
    render_histogram(
        &mut s,
        "ringcast_stage_seconds",
        "stage=\"sequenced\",",
        &[&global.stage_sequenced],
    );
    type Pick = fn(&WorkerMetrics) -> &Histogram;
    let stages: [(&str, Pick); 3] = [
        ("ring", |w| &w.stage_ring),
        ("fanout", |w| &w.stage_fanout),
        ("write_submitted", |w| &w.stage_write_submitted),
    ];
    for (stage, pick) in stages {
        let hs: Vec<&Histogram> = workers.iter().map(|w| pick(w)).collect();
        render_histogram(
            &mut s,
            "ringcast_stage_seconds",
            &format!("stage=\"{stage}\","),
            &hs,
        );
    }
    let _ = writeln!(
        s,
        "# HELP ringcast_history_bytes Bytes of event frames held in history (each worker indexes the same frames; the largest index).\n# TYPE ringcast_history_bytes gauge\nringcast_history_bytes {}",
        workers
            .iter()
            .map(|w| w.history_bytes.load(Relaxed))
            .max()
            .unwrap_or(0)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let g = GlobalMetrics::default();
        let w = WorkerMetrics::default();
        w.observe_latency_ns(30_000);
        w.observe_latency_ns(5_000_000_000);
        w.response(200);
        let text = render(&g, &[&w, &WorkerMetrics::default()]);
        for name in [
            "ringcast_connections_active{worker=\"1\"}",
            "ringcast_connections_total",
            "ringcast_events_published_total",
            "ringcast_frames_delivered_total",
            "ringcast_bytes_written_total",
            "ringcast_slow_disconnects_total",
            "ringcast_conflated_events_total",
            "ringcast_throttled_events_total",
            "ringcast_resyncs_total",
            "ringcast_http_responses_total{code=\"200\"} 1",
            "ringcast_publish_to_write_seconds_bucket{le=\"0.00005\"} 1",
            "ringcast_publish_to_write_seconds_bucket{le=\"+Inf\"} 2",
            "ringcast_publish_to_write_seconds_count 2",
            "ringcast_history_bytes 0",
        ] {
            assert!(text.contains(name), "missing {name}\n{text}");
        }
    }
}
