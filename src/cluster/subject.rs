//! Topics ↔ NATS subjects (SPEC §8). Topic `t` with no tenant is
//! `<prefix>._.t`; tenant `a`'s topic `t` is `<prefix>.a.t`. Inside the
//! server, while auth is on, topics carry their namespace as a first token
//! (`@.t`, `@a.t`, see `auth::namespace`); while it is off they are bare.
//! Patterns map the same way, so a subscription's patterns become consumer
//! filter subjects.

use std::sync::Arc;

/// The tenant token of topics that have no tenant. `_` is reserved: no
/// token may name it as its tenant.
pub(crate) const NO_TENANT: &str = "_";

/// How this node names subjects.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    /// `cluster.subject_prefix`.
    prefix: String,
    /// Auth is on: internal topics carry their namespace.
    namespaced: bool,
}

impl Subjects {
    pub(crate) fn new(prefix: &str, namespaced: bool) -> Self {
        Subjects {
            prefix: prefix.to_owned(),
            namespaced,
        }
    }

    /// Every subject of the stream: `<prefix>.>`.
    pub(crate) fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The subject of an internal topic, or the filter of an internal
    /// pattern.
    pub(crate) fn of(&self, topic: &str) -> String {
        let (tenant, rest) = self.split(topic);
        format!("{}.{tenant}.{rest}", self.prefix)
    }

    /// The filter covering every subject of `topic`'s tenant.
    pub(crate) fn tenant_filter(&self, topic: &str) -> String {
        let (tenant, _) = self.split(topic);
        format!("{}.{tenant}.>", self.prefix)
    }

    fn split<'a>(&self, topic: &'a str) -> (&'a str, &'a str) {
        if !self.namespaced {
            return (NO_TENANT, topic);
        }
        let inner = topic.strip_prefix('@').unwrap_or(topic);
        match inner.split_once('.') {
            Some(("", rest)) => (NO_TENANT, rest),
            Some((tenant, rest)) => (tenant, rest),
            None => (NO_TENANT, inner),
        }
    }

    /// The internal topic of a subject; `None` for a subject outside the
    /// prefix, or of a tenant while auth is off (a node without auth has
    /// no tenants: it serves only topics without one).
    pub(crate) fn topic(&self, subject: &str) -> Option<Arc<str>> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?;
        let (tenant, topic) = rest.split_once('.')?;
        if crate::topic::validate_topic(topic).is_err() {
            return None;
        }
        match (self.namespaced, tenant == NO_TENANT) {
            (false, true) => Some(topic.into()),
            (false, false) => None,
            (true, true) => Some(format!("@.{topic}").into()),
            (true, false) => Some(format!("@{tenant}.{topic}").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_subjects_round_trip() {
        let plain = Subjects::new("ringcast", false);
        assert_eq!(plain.of("quotes.AAPL"), "ringcast._.quotes.AAPL");
        assert_eq!(plain.of("quotes.>"), "ringcast._.quotes.>");
        assert_eq!(plain.tenant_filter("quotes.*"), "ringcast._.>");
        assert_eq!(
            plain.topic("ringcast._.quotes.AAPL").as_deref(),
            Some("quotes.AAPL")
        );
        assert_eq!(plain.topic("ringcast.acme.quotes.AAPL"), None);
        assert_eq!(plain.topic("other._.quotes"), None);
        assert_eq!(plain.topic("ringcastx._.q"), None);

        let ns = Subjects::new("md.prod", true);
        assert_eq!(ns.of("@acme.quotes.AAPL"), "md.prod.acme.quotes.AAPL");
        assert_eq!(ns.of("@.quotes.AAPL"), "md.prod._.quotes.AAPL");
        assert_eq!(ns.tenant_filter("@acme.q.>"), "md.prod.acme.>");
        assert_eq!(
            ns.topic("md.prod.acme.quotes.AAPL").as_deref(),
            Some("@acme.quotes.AAPL")
        );
        assert_eq!(
            ns.topic("md.prod._.quotes.AAPL").as_deref(),
            Some("@.quotes.AAPL")
        );
        assert_eq!(ns.topic("md.prod._.bad topic"), None);
    }

    proptest::proptest! {
        #[test]
        fn every_topic_round_trips(t in crate::topic::strategy::topic(), tenant in "[a-z0-9-]{1,8}") {
            let plain = Subjects::new("p", false);
            let back = plain.topic(&plain.of(&t));
            proptest::prop_assert_eq!(back.as_deref(), Some(t.as_str()));
            let ns = Subjects::new("p", true);
            let internal = format!("@{tenant}.{t}");
            let back = ns.topic(&ns.of(&internal));
            proptest::prop_assert_eq!(back.as_deref(), Some(internal.as_str()));
        }
    }
}
