//! Tokens → grants (SPEC §5), pure and shared by `http` (who may do what)
//! and `worker` (when a stream's token expires): JWT verification against
//! the configured keys, where a request's token is found, which granted
//! pattern covers which requested one, and the per-holder publish rate.
//!
//! SKELETON: the signatures are the contract with `http` and `worker`;
//! the bodies are being written (keys, verification, coverage, rate).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::config;

/// What a verified token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The tenant namespace (`None`: the default namespace).
    pub(crate) tenant: Option<Box<str>>,
    /// Patterns readable in real time.
    pub(crate) subscribe: Vec<Box<str>>,
    /// Patterns readable only delayed by `auth.delay_ms`.
    pub(crate) subscribe_delayed: Vec<Box<str>>,
    /// Patterns the holder may publish to.
    pub(crate) publish: Vec<Box<str>>,
    /// `exp` in Unix milliseconds.
    pub(crate) exp_ms: u64,
    /// Who the publish rate is counted against: `jti`, else `sub`, else
    /// the token itself.
    pub(crate) holder: Box<str>,
}

/// Why a token was refused; the label of `ringcast_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No token in the request.
    Missing,
}

impl Failure {
    /// Every reason, in metric order.
    pub(crate) const ALL: [Failure; 1] = [Failure::Missing];

    /// The metric label.
    pub(crate) fn reason(self) -> &'static str {
        "missing"
    }

    /// A human sentence for the 401 body.
    pub(crate) fn message(self) -> &'static str {
        "a token is required"
    }
}

/// How a grant reaches a subscription pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Covered by a `subscribe` pattern.
    RealTime,
    /// Covered only by a `subscribe_delayed` pattern.
    Delayed,
    /// Not covered.
    Denied,
}

impl Grant {
    /// How this grant reaches `pattern` (a valid subscription pattern).
    pub(crate) fn subscribe_access(&self, _pattern: &str) -> Access {
        Access::Denied
    }

    /// May this grant publish to `topic` (a valid topic)?
    pub(crate) fn may_publish(&self, _topic: &str) -> bool {
        false
    }
}

/// Does the granted pattern cover every topic the requested one can match?
pub(crate) fn covers(_granted: &str, _requested: &str) -> bool {
    false
}

/// The keys and the claim checks; reloadable (SIGHUP) while requests use it.
#[derive(Debug)]
pub(crate) struct Verifier {}

impl Verifier {
    /// Loads the keys `cfg` names; the error names the key or file.
    pub(crate) fn new(_cfg: &config::Auth) -> Result<Verifier, String> {
        Ok(Verifier {})
    }

    /// Verifies `token` at `now_ms` (Unix milliseconds).
    pub(crate) fn verify(&self, _token: &str, _now_ms: u64) -> Result<Grant, Failure> {
        Err(Failure::Missing)
    }

    /// Takes the secret and key file from a freshly loaded `[auth]`
    /// section (SIGHUP); on error the old keys stay.
    pub(crate) fn reload(&self, _cfg: &config::Auth) -> Result<(), String> {
        Ok(())
    }
}

/// The request's token: `Authorization: Bearer`, else the `access_token`
/// query parameter (percent-decoded), else the `ringcast_token` cookie.
pub(crate) fn find_token<'a>(
    _authorization: Option<&'a str>,
    _query: &'a str,
    _cookie: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    None
}

/// What the publish rate says to a request of `n` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// Taken from the holder's bucket.
    Allowed,
    /// Not enough in the bucket: retry after this long.
    Limited(Duration),
}

/// `limits.publish_rate_per_token`: a token bucket per holder.
#[derive(Debug)]
pub(crate) struct PublishRate {}

impl PublishRate {
    /// `per_sec` events per second per holder (0 = no limit).
    pub(crate) fn new(_per_sec: u64) -> Self {
        PublishRate {}
    }

    /// Takes `n` units from `holder`'s bucket at `now`.
    pub(crate) fn take(&self, _holder: &str, _n: u64, _now: Instant) -> RateVerdict {
        RateVerdict::Allowed
    }
}
