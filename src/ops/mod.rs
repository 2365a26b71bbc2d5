//! Operations: what the process tells the outside about itself. Counters in,
//! Prometheus text out ([`metrics`]); readiness and stopping to systemd
//! ([`notify`]); termination signals in ([`signals`]); log lines that
//! could flood, one a second ([`log_throttle`]). Used by every stage,
//! imports none of them.

pub mod log_throttle;
pub mod metrics;
pub mod notify;
pub mod signals;
