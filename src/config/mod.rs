//! The one configuration tree (SPEC §1, §9): every key with its default and
//! the semantic checks types cannot express. Loading and layering (file,
//! environment, flags) is in [`load`]; `tuning/ringcast.toml` documents
//! every key.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::StartError;

mod check;
mod load;
pub(crate) mod trusted_proxies;

/// Every setting, with SPEC defaults. `tuning/ringcast.toml` documents each.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`
    pub server: Server,
    /// `[sse]`
    pub sse: Sse,
    /// `[history]`
    pub history: History,
    /// `[limits]`
    pub limits: Limits,
    /// `[cors]`
    pub cors: Cors,
    /// `[log]`
    pub log: Log,
    /// `[demo]`
    pub demo: Demo,
    /// `[auth]`
    pub auth: Auth,
    /// `[cluster]`
    pub cluster: Cluster,
    /// Where each key's value came from (not a key itself).
    #[serde(skip)]
    pub sources: Sources,
}

/// Where each key set by the operator came from (`section.key` → "file
/// X", "environment RINGCAST_…", "flag --…"); keys left at their default
/// are absent. Metadata: two configurations compare equal whatever their
/// sources.
#[derive(Debug, Clone, Default)]
pub struct Sources(pub(crate) std::collections::BTreeMap<String, String>);

impl PartialEq for Sources {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Sources {
    /// Where `key` (`section.key`) came from, if it was set.
    pub fn of(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Which io driver the workers run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IoDriver {
    /// io_uring when the kernel allows it, else legacy with a warning.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// epoll-based legacy driver.
    Legacy,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address every worker listens on (SO_REUSEPORT).
    pub listen: String,
    /// Worker threads; `None` = available cores.
    pub workers: Option<usize>,
    /// Pin worker i to core i.
    pub pin_cores: bool,
    /// Upper bound on a graceful shutdown.
    pub shutdown_timeout_ms: u64,
    /// io_uring, legacy, or auto-detect.
    pub io_driver: IoDriver,
    /// Capacity of each worker's ingest ring, in messages.
    pub ingest_ring_slots: usize,
    /// Bytes of events each worker's ingest ring may hold before
    /// producers wait, as for a full ring.
    pub ingest_ring_bytes: usize,
    /// Publish requests waiting for the sequencer before 503.
    pub publish_queue_slots: usize,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For`
    /// names the client for `limits.max_connections_per_ip`.
    pub trusted_proxies: Vec<String>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            workers: None,
            pin_cores: true,
            shutdown_timeout_ms: 10_000,
            io_driver: IoDriver::Auto,
            ingest_ring_slots: 65_536,
            ingest_ring_bytes: 64 << 20,
            publish_queue_slots: 4096,
            trusted_proxies: Vec::new(),
        }
    }
}

/// How event streams are encoded on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip for clients whose `Accept-Encoding` accepts it.
    Gzip,
    /// Always identity.
    Off,
}

/// What to do with a subscriber whose queue is full.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlowPolicy {
    /// Close it; it resumes from history.
    Disconnect,
    /// Keep only the newest pending event per topic.
    Conflate,
}

/// `[sse]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sse {
    /// Silence after which a heartbeat comment is written.
    pub heartbeat_ms: u64,
    /// The `retry:` hint sent at connect.
    pub retry_ms: u64,
    /// Bound on one subscriber's unsent bytes.
    pub max_pending_bytes: usize,
    /// Policy when that bound is hit.
    pub slow_policy: SlowPolicy,
    /// A subscriber accepting no bytes this long is closed.
    pub write_stall_ms: u64,
    /// How long a subscriber past `max_pending_bytes` may go without its
    /// socket taking half that bound, while its worker holds the fan-out
    /// back for it, before it counts as slow.
    pub slow_grace_ms: u64,
    /// Unsent bytes over all subscribers together (each worker gets an
    /// equal share); past it the largest queues are treated as slow first.
    pub max_queued_bytes: usize,
    /// Write-coalescing window: once a subscriber's first event is queued,
    /// its write waits at most this long for more to join it (0 = off).
    pub write_delay_ms: u64,
    /// gzip for clients that accept it, or off.
    pub compression: Compression,
    /// zlib level of the compressors, 1 (fastest) to 9.
    pub compression_level: u32,
    /// Memory of the compressors (per busy stream, and per topic of 8 or
    /// more sharing subscribers) over all workers (each worker gets an
    /// equal share); past it, streams that would need one get stored
    /// (uncompressed) gzip blocks.
    pub compression_max_bytes: usize,
}

impl Default for Sse {
    fn default() -> Self {
        Sse {
            heartbeat_ms: 15_000,
            retry_ms: 2000,
            max_pending_bytes: 1 << 20,
            slow_policy: SlowPolicy::Disconnect,
            write_stall_ms: 30_000,
            slow_grace_ms: 500,
            max_queued_bytes: 1 << 30,
            write_delay_ms: 0,
            compression: Compression::Gzip,
            compression_level: 1,
            compression_max_bytes: 256 << 20,
        }
    }
}

/// `[history]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct History {
    /// Events kept per topic.
    pub per_topic: usize,
    /// Bytes kept over all topics.
    pub max_bytes: usize,
    /// Age after which events are dropped.
    pub max_age_ms: u64,
    /// Directory of the on-disk journal that keeps history across
    /// restarts; `None`: history in memory only.
    pub dir: Option<PathBuf>,
    /// Most milliseconds between two `fdatasync`s of the journal: what a
    /// machine crash may take of the acknowledged events.
    pub fsync_ms: u64,
}

impl Default for History {
    fn default() -> Self {
        History {
            per_topic: 1024,
            max_bytes: 256 << 20,
            max_age_ms: 300_000,
            dir: None,
            fsync_ms: 1000,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections over all workers.
    pub max_connections: usize,
    /// Connections per client IP; 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Patterns per `/events` request.
    pub topics_per_subscription: usize,
    /// Data bytes per event.
    pub max_event_bytes: usize,
    /// Bytes per request body.
    pub max_body_bytes: usize,
    /// Time to receive a request head.
    pub header_timeout_ms: u64,
    /// Bytes per request head.
    pub max_header_bytes: usize,
    /// Events per second per token holder on `/publish` (0 = no limit).
    pub publish_rate_per_token: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1_000_000,
            max_connections_per_ip: 0,
            topics_per_subscription: 64,
            max_event_bytes: 64 << 10,
            max_body_bytes: 1 << 20,
            header_timeout_ms: 10_000,
            max_header_bytes: 16 << 10,
            publish_rate_per_token: 0,
        }
    }
}

/// `[auth]`: JWT verification (SPEC §5). Auth is on when either key is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Shared secret for HS256 tokens.
    pub hs256_secret: Option<String>,
    /// PEM file (one or more RSA or EC public keys) or JWKS document for
    /// RS256 / ES256 tokens; reloaded on SIGHUP.
    pub public_key_file: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_ms: u64,
    /// How far `subscribe_delayed` grants lag the real-time stream.
    pub delay_ms: u64,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            hs256_secret: None,
            public_key_file: None,
            leeway_ms: 0,
            delay_ms: 900_000,
            issuer: None,
            audience: None,
        }
    }
}

impl Auth {
    /// True when tokens are required.
    pub fn enabled(&self) -> bool {
        self.hs256_secret.is_some() || self.public_key_file.is_some()
    }
}

/// One NATS URL or several (the client tries them in turn).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NatsUrls {
    /// `nats_url = "nats://a:4222"`
    One(String),
    /// `nats_url = ["nats://a:4222", "nats://b:4222"]`
    Many(Vec<String>),
}

impl NatsUrls {
    /// Every URL, in order.
    pub fn list(&self) -> Vec<&str> {
        match self {
            NatsUrls::One(u) => vec![u.as_str()],
            NatsUrls::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `[cluster]`: several nodes share one event stream in NATS JetStream
/// (SPEC §8). Cluster mode is on when `nats_url` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// The NATS server(s); unset = a single node.
    pub nats_url: Option<NatsUrls>,
    /// The JetStream stream's name.
    pub stream: String,
    /// The subjects' first token: topic `t` is `<prefix>._.t`.
    pub subject_prefix: String,
    /// A NATS `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// CA certificate(s), PEM, that the NATS server's certificate must
    /// chain to; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate, PEM, for mutual TLS (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    pub tls_key_file: Option<PathBuf>,
    /// Retention of the stream when ringcast creates it.
    pub max_age_ms: u64,
    /// A publish JetStream has not acknowledged in this time is answered
    /// 503 (and never delivered).
    pub publish_timeout_ms: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            nats_url: None,
            stream: "RINGCAST".into(),
            subject_prefix: "ringcast".into(),
            credentials_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            max_age_ms: 86_400_000,
            publish_timeout_ms: 3000,
        }
    }
}

impl Cluster {
    /// True in cluster mode.
    pub fn enabled(&self) -> bool {
        self.nats_url.is_some()
    }

    /// The checks types cannot express: `Err((key, why))`.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(urls) = &self.nats_url {
            let list = urls.list();
            if list.is_empty() {
                return Err(("cluster.nats_url", "give at least one URL".into()));
            }
            for u in list {
                let ok = ["nats://", "tls://", "ws://", "wss://"]
                    .iter()
                    .find_map(|s| u.strip_prefix(s))
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
                if !ok {
                    return Err((
                        "cluster.nats_url",
                        format!("{u:?} is not a NATS URL, e.g. nats://127.0.0.1:4222"),
                    ));
                }
            }
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token(&self.stream) {
            return Err((
                "cluster.stream",
                "1..=64 characters of [A-Za-z0-9_-]".into(),
            ));
        }
        if !self.subject_prefix.split('.').all(token) {
            return Err((
                "cluster.subject_prefix",
                "dot-separated tokens of [A-Za-z0-9_-], e.g. ringcast".into(),
            ));
        }
        for (key, file) in [
            ("cluster.credentials_file", &self.credentials_file),
            ("cluster.tls_ca_file", &self.tls_ca_file),
            ("cluster.tls_cert_file", &self.tls_cert_file),
            ("cluster.tls_key_file", &self.tls_key_file),
        ] {
            if let Some(f) = file {
                if let Err(e) = std::fs::File::open(f) {
                    return Err((key, format!("cannot read {}: {e}", f.display())));
                }
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err((
                "cluster.tls_key_file",
                "set tls_cert_file and tls_key_file together".into(),
            ));
        }
        if self.max_age_ms < 1000 {
            return Err(("cluster.max_age_ms", "must be at least 1000".into()));
        }
        if !(100..=60_000).contains(&self.publish_timeout_ms) {
            return Err((
                "cluster.publish_timeout_ms",
                "must be between 100 and 60000".into(),
            ));
        }
        Ok(())
    }
}

/// `[cors]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cors {
    /// Origins allowed; `*` for any.
    pub allowed_origins: Vec<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human text.
    Text,
    /// JSON lines.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// text or json.
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `ringcast=trace`, ...
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[demo]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Demo {
    /// Run the simulated quote feed and serve the demo page.
    pub enabled: bool,
    /// Topics the feed publishes quotes on.
    pub symbols: Vec<String>,
    /// Quotes per second over all symbols.
    pub events_per_sec: u64,
}

impl Default for Demo {
    fn default() -> Self {
        Demo {
            enabled: false,
            symbols: DEFAULT_DEMO_SYMBOLS.iter().map(|s| s.to_string()).collect(),
            events_per_sec: 200,
        }
    }
}

/// The default `demo.symbols`: `quotes.<venue>.<ticker>`.
const DEFAULT_DEMO_SYMBOLS: [&str; 32] = [
    "quotes.NASDAQ.AAPL",
    "quotes.NASDAQ.MSFT",
    "quotes.NASDAQ.NVDA",
    "quotes.NASDAQ.AMZN",
    "quotes.NASDAQ.GOOGL",
    "quotes.NASDAQ.META",
    "quotes.NASDAQ.TSLA",
    "quotes.NASDAQ.AVGO",
    "quotes.NASDAQ.COST",
    "quotes.NASDAQ.NFLX",
    "quotes.NASDAQ.AMD",
    "quotes.NASDAQ.INTC",
    "quotes.NASDAQ.ADBE",
    "quotes.NASDAQ.CSCO",
    "quotes.NASDAQ.PEP",
    "quotes.NASDAQ.QCOM",
    "quotes.NYSE.JPM",
    "quotes.NYSE.V",
    "quotes.NYSE.WMT",
    "quotes.NYSE.XOM",
    "quotes.NYSE.UNH",
    "quotes.NYSE.JNJ",
    "quotes.NYSE.PG",
    "quotes.NYSE.HD",
    "quotes.NYSE.KO",
    "quotes.NYSE.DIS",
    "quotes.NYSE.BA",
    "quotes.NYSE.IBM",
    "quotes.LSE.SHEL",
    "quotes.LSE.HSBA",
    "quotes.XETRA.SAP",
    "quotes.XETRA.SIE",
];

/// The CLI flags that override configuration (already parsed by clap).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`
    pub config: Option<PathBuf>,
    /// `--listen ADDR`
    pub listen: Option<String>,
    /// `--workers N`
    pub workers: Option<usize>,
    /// `--demo`
    pub demo: bool,
    /// `--log-format`
    pub log_format: Option<String>,
}

impl Config {
    /// The checks that stop start-up, without the sources (see `load`).
    pub fn validate(&self) -> Result<(), StartError> {
        self.check()
            .map_err(|i| StartError::Config(format!("bad value for `{}`: {}", i.key, i.why)))
    }

    /// Worker count after applying the default (available cores).
    pub fn workers(&self) -> usize {
        self.server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The parsed listen address (validated at load).
    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().expect("validated at load")
    }
}

#[cfg(test)]
mod tests;
