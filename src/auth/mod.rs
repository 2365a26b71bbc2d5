//! Tokens → grants (SPEC §5), pure and shared by `http` (who may do what)
//! and `worker` (when a stream's token expires): JWT verification against
//! the configured keys, where a request's token is found, which granted
//! pattern covers which requested one, and the per-holder publish rate.
//!
//! # Layout
//!
//! - [`token`]: where a request carries its token (`find_token`).
//! - [`jws`]: the token text split and decoded, bounded, not yet trusted.
//! - [`keys`]: the HS256 secret and the public key file (PEM or JWKS).
//! - [`verifier`]: the `Verifier` — signature against the keys, then the
//!   claims ([`claims`]) → a `Grant`, or a `Failure` ([`failure`]).
//! - [`coverage`]: does a granted pattern cover a requested one.
//! - [`rate`]: the per-holder publish rate (`PublishRate`).
//!
//! Only `HS256`, `RS256` and `ES256` are accepted, the algorithm following
//! the key (an HS256 token is never checked against a public key). Expiry
//! and `nbf` are checked here in milliseconds, not by `jsonwebtoken`.

mod claims;
mod coverage;
mod failure;
#[cfg(test)]
mod fixture;
mod jws;
mod keys;
mod rate;
mod token;
mod verifier;

pub(crate) use coverage::covers;
pub(crate) use failure::Failure;
pub(crate) use rate::{PublishRate, RateVerdict};
pub(crate) use token::{find_token, QUERY_PARAMETER};
pub(crate) use verifier::Verifier;

/// What a verified token allows.
#[derive(Debug, Clone, PartialEq)]
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
    /// `max_rate`: the most events per second per topic this holder's
    /// subscriptions get (a free tier's throttled view).
    pub(crate) max_rate: Option<f64>,
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
    pub(crate) fn subscribe_access(&self, pattern: &str) -> Access {
        let covered = |granted: &[Box<str>]| granted.iter().any(|g| covers(g, pattern));
        if covered(&self.subscribe) {
            Access::RealTime
        } else if covered(&self.subscribe_delayed) {
            Access::Delayed
        } else {
            Access::Denied
        }
    }

    /// May this grant publish to `topic` (a valid topic)?
    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| covers(p, topic))
    }

    /// The prefix that qualifies this grant's topics and patterns (see
    /// [`DEFAULT_NAMESPACE`]): `@<tenant>.`.
    pub(crate) fn namespace(&self) -> String {
        match &self.tenant {
            Some(t) => format!("@{t}."),
            None => DEFAULT_NAMESPACE.to_owned(),
        }
    }
}

/// Tenants are namespaces inside the one topic space: while auth is on,
/// every topic and pattern is qualified with a first token that names the
/// tenant, `@<tenant>`, or `@` for a token without one (this prefix). `@`
/// is not a topic character, so no client can name a qualified topic, and
/// a pattern — even `>` — qualified with its own namespace matches only
/// that namespace's topics: isolation holds in the subscription table, the
/// history (replay and snapshot) and `/stats` alike, with no tenant check
/// on the hot path.
pub(crate) const DEFAULT_NAMESPACE: &str = "@.";

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(subscribe: &[&str], delayed: &[&str], publish: &[&str]) -> Grant {
        let boxed = |ps: &[&str]| ps.iter().map(|&p| Box::from(p)).collect();
        Grant {
            tenant: None,
            subscribe: boxed(subscribe),
            subscribe_delayed: boxed(delayed),
            publish: boxed(publish),
            exp_ms: 0,
            holder: "h".into(),
            max_rate: None,
        }
    }

    #[test]
    fn a_namespace_matches_only_its_own_topics() {
        use crate::topic::matches;
        let space = |t: Option<&str>| Grant {
            tenant: t.map(Box::from),
            ..grant(&[], &[], &[])
        };
        let spaces = [
            space(None),
            space(Some("a")),
            space(Some("b")),
            space(Some("ab")),
        ];
        for (i, reader) in spaces.iter().enumerate() {
            for (j, writer) in spaces.iter().enumerate() {
                for pattern in [">", "*", "*.x", "q.>", "q.*", "q.x"] {
                    let p = format!("{}{pattern}", reader.namespace());
                    for topic in ["q.x", "x"] {
                        let t = format!("{}{topic}", writer.namespace());
                        if i != j {
                            assert!(!matches(&p, &t), "{p} saw {t}");
                        }
                    }
                }
            }
        }
        assert!(matches(&format!("{}>", spaces[1].namespace()), "@a.q.x"));
        assert!(matches(&format!("{}q.*", spaces[0].namespace()), "@.q.x"));
    }

    #[test]
    fn subscribe_access_table() {
        let g = grant(&["quotes.NASDAQ.*"], &["quotes.>", "news.*"], &[]);
        let cases = [
            ("quotes.NASDAQ.AAPL", Access::RealTime),
            ("quotes.NASDAQ.*", Access::RealTime),
            ("quotes.NASDAQ.>", Access::Delayed),
            ("quotes.*.AAPL", Access::Delayed),
            ("quotes.>", Access::Delayed),
            ("news.x", Access::Delayed),
            ("news.x.y", Access::Denied),
            ("quotes", Access::Denied),
            (">", Access::Denied),
            ("orders.x", Access::Denied),
        ];
        for (p, want) in cases {
            assert_eq!(g.subscribe_access(p), want, "{p}");
        }
        assert_eq!(
            grant(&[">"], &[], &[]).subscribe_access(">"),
            Access::RealTime
        );
        assert_eq!(
            grant(&[], &[], &[">"]).subscribe_access("a"),
            Access::Denied
        );
    }

    #[test]
    fn may_publish_table() {
        let g = grant(&[">"], &[], &["orders.*", "trades.>"]);
        let cases = [
            ("orders.1", true),
            ("orders.1.2", false),
            ("trades.a.b.c", true),
            ("trades", false),
            ("quotes.x", false),
        ];
        for (t, want) in cases {
            assert_eq!(g.may_publish(t), want, "{t}");
        }
        assert!(!grant(&[">"], &[">"], &[]).may_publish("a"));
    }
}
