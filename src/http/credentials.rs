//! Who is asking (SPEC §5): a request's token, verified into a grant, or
//! the 401 that refuses it; and the namespace a grant's topics live in.
//!
//! Tenants are namespaces inside the one topic space: while auth is on,
//! every topic and pattern is qualified with a first token that names the
//! tenant, `@<tenant>` (or `@` for the default namespace). `@` is not a
//! topic character (SPEC §2), so no client can name a qualified topic, and
//! a pattern — even `>` — qualified with its own namespace can only match
//! that namespace's topics: isolation holds in the subscription table, the
//! history (replay and snapshot) and `/stats` alike, with no tenant check
//! on the hot path.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::HttpError;
use super::head::Head;
use crate::auth::{find_token, Failure, Grant};
use crate::worker::Worker;

/// The grant of the request's token; `None` while auth is off.
pub(super) fn authenticate(w: &Worker, conn: u64, head: &Head) -> Result<Option<Grant>, HttpError> {
    let Some(verifier) = &w.shared.auth else {
        return Ok(None);
    };
    let refuse = |why: Failure| {
        w.shared.auth_failed(why, conn);
        let code = if why == Failure::Missing {
            "unauthorized"
        } else {
            "invalid_token"
        };
        HttpError::Unauthorized(code, why.message())
    };
    let token = find_token(head.authorization(), head.query(), head.cookie())
        .ok_or_else(|| refuse(Failure::Missing))?;
    verifier.verify(&token, unix_ms()).map(Some).map_err(refuse)
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The prefix that qualifies the topics of `grant`'s namespace.
pub(super) fn namespace(grant: &Grant) -> String {
    match &grant.tenant {
        Some(t) => format!("@{t}."),
        None => "@.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    fn grant(tenant: Option<&str>) -> Grant {
        Grant {
            tenant: tenant.map(Box::from),
            subscribe: Vec::new(),
            subscribe_delayed: Vec::new(),
            publish: Vec::new(),
            exp_ms: 0,
            holder: "h".into(),
        }
    }

    #[test]
    fn a_namespace_matches_only_its_own_topics() {
        let spaces = [
            grant(None),
            grant(Some("a")),
            grant(Some("b")),
            grant(Some("ab")),
        ];
        for (i, reader) in spaces.iter().enumerate() {
            for (j, writer) in spaces.iter().enumerate() {
                for pattern in [">", "*", "*.x", "q.>", "q.*"] {
                    let p = format!("{}{pattern}", namespace(reader));
                    let t = format!("{}q.x", namespace(writer));
                    let one = format!("{}x", namespace(writer));
                    let seen = matches(&p, &t) || matches(&p, &one);
                    assert_eq!(seen && i != j, false, "{p} saw {t} or {one}");
                }
            }
        }
        assert!(matches(
            &format!("{}>", namespace(&grant(Some("a")))),
            "@a.q.x"
        ));
        assert!(matches(&format!("{}q.*", namespace(&grant(None))), "@.q.x"));
    }
}
