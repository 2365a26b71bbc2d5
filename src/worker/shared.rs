//! What every worker of the process shares, handed down at launch: the
//! configuration, the counters, the sequencer's input and its id watermark,
//! and the
//! admission counts. Read by all workers, written through atomics (or a
//! short lock for the per-IP table) only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::auth::{Failure, PublishRate, Verifier};
use crate::config::trusted_proxies::TrustedProxies;
use crate::config::Config;
use crate::ops::log_throttle::LogThrottle;
use crate::ops::metrics::{GlobalMetrics, WorkerMetrics};
use crate::sequencer::Ingest;

/// State every worker can read; written through atomics only.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The validated configuration.
    pub(crate) cfg: Config,
    /// Process-wide counters.
    pub(crate) global: Arc<GlobalMetrics>,
    /// Each worker's counters, by index.
    pub(crate) workers: Vec<Arc<WorkerMetrics>>,
    /// Where publishes go: the sequencer thread or the worker-side order.
    pub(crate) ingest: Ingest,
    /// Shutdown has begun.
    pub(crate) draining: AtomicBool,
    /// Open connections over all workers (for `limits.max_connections`).
    pub(crate) open: AtomicUsize,
    /// Source of connection ids.
    pub(crate) next_conn_id: AtomicU64,
    /// The highest id the sequencer has given out, stored before any
    /// worker sees it: an id at or below it is known even when this worker
    /// has not fanned it out yet.
    pub(crate) issued: Arc<AtomicU64>,
    /// `server.trusted_proxies`, parsed.
    pub(crate) trusted: TrustedProxies,
    /// What `/stats` reports, one snapshot per worker.
    pub(crate) stats: super::stats::StatsBoard,
    /// Connections per client address, kept only when a per-IP limit is set.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// The token verifier; `None` while auth is off.
    pub(crate) auth: Option<Verifier>,
    /// `limits.publish_rate_per_token`.
    pub(crate) publish_rate: PublishRate,
    /// Refused tokens, by [`Failure::ALL`] position.
    auth_failures: Vec<AtomicU64>,
    /// Streams closed because their token expired.
    pub(crate) token_expired: AtomicU64,
    /// Refused tokens are logged at most once a second.
    auth_log: LogThrottle,
    /// Failed accepts (the open-files limit) likewise.
    pub(crate) accept_log: LogThrottle,
    /// Ids below this are from before this server's history: an earlier
    /// process without `history.dir`, or before the journal began.
    pub(crate) epoch_first: u64,
}

impl Shared {
    /// True when more connections are open than `limits.max_connections`.
    pub(crate) fn over_capacity(&self) -> bool {
        self.open.load(Relaxed) > self.cfg.limits.max_connections
    }

    /// Counts a connection from `ip`; `None` when the per-IP limit is off or
    /// this connection is over it (and so not counted).
    pub(crate) fn track_ip(&self, ip: IpAddr) -> Option<IpAddr> {
        let limit = self.cfg.limits.max_connections_per_ip;
        if limit == 0 {
            return None;
        }
        let mut map = self.per_ip.lock().expect("per-ip lock");
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ip)
    }

    /// Releases a connection counted by `track_ip`.
    pub(crate) fn release_ip(&self, ip: IpAddr) {
        let mut map = self.per_ip.lock().expect("per-ip lock");
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }

    /// The Prometheus text of every series.
    pub(crate) fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let ws: Vec<&WorkerMetrics> = self.workers.iter().map(|a| &**a).collect();
        let mut s = crate::ops::metrics::render(&self.global, &ws);
        s.push_str(
            "# HELP ringcast_auth_failures_total Requests refused for their token, by reason.\n",
        );
        s.push_str("# TYPE ringcast_auth_failures_total counter\n");
        for (f, n) in Failure::ALL.iter().zip(&self.auth_failures) {
            let _ = writeln!(
                s,
                "ringcast_auth_failures_total{{reason=\"{}\"}} {}",
                f.reason(),
                n.load(Relaxed)
            );
        }
        s.push_str("# HELP ringcast_token_expired_total Event streams closed because their token expired.\n");
        s.push_str("# TYPE ringcast_token_expired_total counter\n");
        let _ = writeln!(
            s,
            "ringcast_token_expired_total {}",
            self.token_expired.load(Relaxed)
        );
        if let Some(link) = self.cluster() {
            let last = link.stream_last.load(Relaxed);
            let lag = last.saturating_sub(self.issued.load(Relaxed));
            let series: [(&str, &str, &str, u64); 3] = [
                (
                    "ringcast_cluster_connected",
                    "gauge",
                    "1 while NATS JetStream is reachable and the stream usable.",
                    u64::from(link.is_connected()),
                ),
                (
                    "ringcast_cluster_consumer_lag",
                    "gauge",
                    "Stream messages this node has not consumed yet.",
                    lag,
                ),
                (
                    "ringcast_cluster_reconnects_total",
                    "counter",
                    "Times the connection to NATS was re-established.",
                    link.reconnects.load(Relaxed),
                ),
            ];
            for (name, kind, help, v) in series {
                let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
            }
        }
        s
    }

    /// The cluster bridge's handle, in cluster mode.
    pub(crate) fn cluster(&self) -> Option<&crate::sequencer::link::Link> {
        match &self.ingest {
            Ingest::Cluster(link) => Some(link),
            _ => None,
        }
    }

    /// Counts a refused token and logs it, at most one line per second
    /// (with the count of those not logged), so a flood of bad tokens
    /// cannot flood the log.
    pub(crate) fn auth_failed(&self, why: Failure, conn: u64) {
        if let Some(i) = Failure::ALL.iter().position(|f| *f == why) {
            self.auth_failures[i].fetch_add(1, Relaxed);
        }
        if let Some(suppressed) = self.auth_log.admit() {
            tracing::info!(conn, reason = why.reason(), suppressed, "token refused");
        }
    }
}

impl Shared {
    /// Fresh state for a server about to start: `issued` and `epoch_first`
    /// come from the order (or the cluster bridge), `global` is the
    /// counters it updates, `auth` the verifier when auth is on.
    pub(crate) fn new(
        cfg: Config,
        ingest: Ingest,
        issued: Arc<AtomicU64>,
        epoch_first: u64,
        global: Arc<GlobalMetrics>,
        auth: Option<Verifier>,
    ) -> Self {
        let n = cfg.workers();
        let cfg_rate = cfg.limits.publish_rate_per_token;
        let trusted =
            TrustedProxies::parse(&cfg.server.trusted_proxies).expect("validated at load");
        Shared {
            trusted,
            workers: (0..n).map(|_| Arc::new(WorkerMetrics::default())).collect(),
            global,
            cfg,
            ingest,
            issued,
            draining: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            per_ip: Mutex::new(HashMap::new()),
            stats: super::stats::StatsBoard::new(n),
            auth,
            publish_rate: PublishRate::new(cfg_rate),
            auth_failures: Failure::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            token_expired: AtomicU64::new(0),
            auth_log: LogThrottle::default(),
            accept_log: LogThrottle::default(),
            epoch_first,
        }
    }
}
