//! The checks types cannot express: a value that cannot work stops
//! start-up (exit 2, naming the key; the loader adds where the value came
//! from), and a value that works but invites trouble starts with a warning
//! that names it.
//!
//! Refused: values that cannot mean anything (`history.per_topic = 0`, a
//! `log.level` that is neither a level nor a directive, `[auth]` settings
//! without a key). Warned: values an operator may want on purpose — in a
//! test rig, behind a proxy that needs fast heartbeats — but that are
//! wrong for a production feed (`sse.retry_ms` under 100, `sse.heartbeat_ms`
//! under 1000, `limits.max_event_bytes` above `sse.max_pending_bytes`, an
//! HS256 secret under 32 bytes).

use std::net::SocketAddr;

use super::{trusted_proxies, Config};

/// A value that stops start-up: its key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) key: &'static str,
    pub(crate) why: String,
}

fn bad(key: &'static str, why: impl Into<String>) -> Result<(), Invalid> {
    Err(Invalid {
        key,
        why: why.into(),
    })
}

/// `log.level`: a level (`error` … `trace`, `off`) or `tracing` directives,
/// each a level or `target=level`. A bare word that is not a level would be
/// read by `tracing` as a target name and silence every line.
pub(crate) fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let parts: Vec<&str> = level.split(',').map(str::trim).collect();
    for p in &parts {
        if p.is_empty() || !(LEVELS.contains(&p.to_ascii_lowercase().as_str()) || p.contains('=')) {
            return Err(format!(
                "{p:?} is not a level (error, warn, info, debug, trace, off) or a directive \
                 such as ringcast=debug"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Config {
    /// The checks that stop start-up.
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return bad("server.listen", "expected IP:PORT, e.g. 127.0.0.1:8080");
        }
        if self.server.workers == Some(0) {
            return bad("server.workers", "must be at least 1");
        }
        if self.server.workers.is_some_and(|w| w > 1024) {
            return bad("server.workers", "must be at most 1024");
        }
        if !(1..=9).contains(&self.sse.compression_level) {
            return bad("sse.compression_level", "must be between 1 (fastest) and 9");
        }
        if self.sse.write_delay_ms > 1000 {
            return bad(
                "sse.write_delay_ms",
                "must be at most 1000 (it delays every event by up to that much)",
            );
        }
        let positive: [(&'static str, u64); 12] = [
            ("sse.heartbeat_ms", self.sse.heartbeat_ms),
            ("sse.write_stall_ms", self.sse.write_stall_ms),
            ("sse.slow_grace_ms", self.sse.slow_grace_ms),
            ("sse.max_pending_bytes", self.sse.max_pending_bytes as u64),
            ("sse.max_queued_bytes", self.sse.max_queued_bytes as u64),
            ("history.per_topic", self.history.per_topic as u64),
            (
                "limits.topics_per_subscription",
                self.limits.topics_per_subscription as u64,
            ),
            ("limits.max_event_bytes", self.limits.max_event_bytes as u64),
            ("limits.max_body_bytes", self.limits.max_body_bytes as u64),
            ("limits.header_timeout_ms", self.limits.header_timeout_ms),
            (
                "server.ingest_ring_slots",
                self.server.ingest_ring_slots as u64,
            ),
            (
                "server.ingest_ring_bytes",
                self.server.ingest_ring_bytes as u64,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return bad(key, "must be greater than 0");
            }
        }
        if self.limits.max_header_bytes < 1024 {
            return bad("limits.max_header_bytes", "must be at least 1024");
        }
        if self.server.publish_queue_slots == 0 {
            return bad("server.publish_queue_slots", "must be greater than 0");
        }
        if let Err(why) = trusted_proxies::TrustedProxies::parse(&self.server.trusted_proxies) {
            return bad("server.trusted_proxies", why);
        }
        for s in &self.demo.symbols {
            if crate::topic::validate_topic(s).is_err() {
                return bad(
                    "demo.symbols",
                    "every symbol must be a valid topic, e.g. quotes.NASDAQ.AAPL",
                );
            }
        }
        if self.demo.events_per_sec > 1_000_000 {
            return bad("demo.events_per_sec", "must be at most 1000000");
        }
        if self
            .history
            .dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return bad(
                "history.dir",
                "must not be empty (leave it unset to keep history in memory)",
            );
        }
        if self.history.fsync_ms > 60_000 {
            return bad("history.fsync_ms", "must be at most 60000");
        }
        if self.auth.hs256_secret.as_deref() == Some("") {
            return bad("auth.hs256_secret", "must not be empty");
        }
        if self.auth.delay_ms > 7 * 24 * 3_600_000 {
            return bad("auth.delay_ms", "must be at most 604800000 (7 days)");
        }
        if self.limits.max_connections == 0 {
            return bad("limits.max_connections", "must be greater than 0");
        }
        if let Err((key, why)) = self.cluster.check() {
            return bad(key, why);
        }
        if let Err(why) = check_log_level(&self.log.level) {
            return bad("log.level", why);
        }
        Ok(())
    }

    /// Values that start but are risky, one sentence each naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sse.retry_ms < 100 {
            out.push(format!(
                "sse.retry_ms = {}: clients reconnect at once after every drop, all together \
                 (a reconnect storm); 1000 or more is usual",
                self.sse.retry_ms
            ));
        }
        if self.sse.heartbeat_ms < 1000 {
            out.push(format!(
                "sse.heartbeat_ms = {}: every idle subscriber gets a write that often; \
                 proxies need one every 15-60 s",
                self.sse.heartbeat_ms
            ));
        }
        if self.limits.max_event_bytes > self.sse.max_pending_bytes {
            out.push(format!(
                "limits.max_event_bytes ({}) is above sse.max_pending_bytes ({}): one such \
                 event puts every subscriber of its topic past its bound at once",
                self.limits.max_event_bytes, self.sse.max_pending_bytes
            ));
        }
        if let Some(secret) = &self.auth.hs256_secret {
            if secret.len() < 32 {
                out.push(format!(
                    "auth.hs256_secret is {} bytes: HS256 wants at least 32 (RFC 7518 §3.2); \
                     a short secret can be guessed offline from one token",
                    secret.len()
                ));
            }
        }
        if self.history.dir.is_some() && self.cluster.enabled() {
            out.push(
                "history.dir is not used in cluster mode: JetStream holds the history, and a \
                 restarted node reads it from there"
                    .into(),
            );
        }
        out
    }
}

impl Config {
    /// The keys whose value differs in `fresh` (`section.key`), leaving out
    /// those a SIGHUP reloads (`auth.hs256_secret`, `auth.public_key_file`):
    /// the ones that need a restart to take effect.
    pub fn changed_keys(&self, fresh: &Config) -> Vec<String> {
        let (Ok(old), Ok(new)) = (serde_json::to_value(self), serde_json::to_value(fresh)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
            for (section, keys) in new {
                let Some(keys) = keys.as_object() else {
                    continue;
                };
                for (key, v) in keys {
                    let name = format!("{section}.{key}");
                    let reloads =
                        matches!(name.as_str(), "auth.hs256_secret" | "auth.public_key_file");
                    if !reloads && old.get(section).and_then(|s| s.get(key)) != Some(v) {
                        out.push(name);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_and_directives() {
        for ok in [
            "info",
            "WARN",
            "off",
            "ringcast=debug",
            "info,ringcast=trace",
            "warn,h2=off",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for no in ["warnig", "", "info,", "loud", "info,verbose"] {
            assert!(check_log_level(no).is_err(), "{no}");
        }
    }

    #[test]
    fn risky_values_are_warned_by_name() {
        assert!(Config::default().warnings().is_empty());
        let mut c = Config::default();
        c.sse.retry_ms = 0;
        c.sse.heartbeat_ms = 1;
        c.limits.max_event_bytes = 2 << 20;
        c.auth.hs256_secret = Some("abc".into());
        let w = c.warnings().join("\n");
        for key in [
            "sse.retry_ms",
            "sse.heartbeat_ms",
            "limits.max_event_bytes",
            "auth.hs256_secret",
        ] {
            assert!(w.contains(key), "{key} missing from {w}");
        }
        c.history.per_topic = 0;
        assert_eq!(c.check().unwrap_err().key, "history.per_topic");
    }

    #[test]
    fn a_reload_names_the_keys_that_need_a_restart() {
        let old = Config::default();
        let mut new = Config::default();
        assert!(old.changed_keys(&new).is_empty());
        new.server.listen = "127.0.0.1:9".into();
        new.server.workers = Some(3);
        new.auth.hs256_secret = Some("a-new-secret".into());
        assert_eq!(
            old.changed_keys(&new),
            vec!["server.listen".to_owned(), "server.workers".to_owned()]
        );
    }
}
