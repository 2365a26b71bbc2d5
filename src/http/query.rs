//! The `GET /events` query: topic patterns (validated, deduplicated,
//! bounded by `limits.topics_per_subscription`), `snapshot` and
//! `lastEventId`, percent-decoded.

use super::error::HttpError;
use crate::topic::validate_pattern;

/// A validated `GET /events` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscribeQuery {
    /// Patterns, validated, in request order, without duplicates.
    pub(crate) patterns: Vec<String>,
    /// `snapshot=1`.
    pub(crate) snapshot: bool,
    /// `lastEventId` query parameter (empty means none).
    pub(crate) last_event_id: Option<String>,
}

/// Parses and validates the `/events` query.
pub(crate) fn parse_subscribe(
    query: &str,
    max_patterns: usize,
) -> Result<SubscribeQuery, HttpError> {
    let mut q = SubscribeQuery {
        patterns: Vec::new(),
        snapshot: false,
        last_event_id: None,
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "topic" => {
                validate_pattern(&v)
                    .map_err(|e| HttpError::BadRequest("invalid_topic", e.message()))?;
                if !q.patterns.iter().any(|p| *p == *v) {
                    q.patterns.push(v.into_owned());
                }
                if q.patterns.len() > max_patterns {
                    return Err(HttpError::BadRequest(
                        "too_many_topics",
                        "more topic patterns than limits.topics_per_subscription",
                    ));
                }
            }
            "snapshot" => {
                q.snapshot = match &*v {
                    "1" | "true" => true,
                    "0" | "false" | "" => false,
                    _ => {
                        return Err(HttpError::BadRequest(
                            "invalid_parameter",
                            "snapshot must be 0 or 1",
                        ))
                    }
                }
            }
            "lastEventId" if !v.is_empty() => q.last_event_id = Some(v.into_owned()),
            _ => {}
        }
    }
    if q.patterns.is_empty() {
        return Err(HttpError::BadRequest(
            "missing_topic",
            "give at least one topic parameter",
        ));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_query_table() {
        let q = parse_subscribe(
            "topic=a.b&topic=quotes.%3E&topic=a.b&snapshot=1&lastEventId=",
            64,
        )
        .unwrap();
        assert_eq!(q.patterns, vec!["a.b", "quotes.>"]);
        assert!(q.snapshot);
        assert_eq!(q.last_event_id, None);
        assert!(parse_subscribe("", 64).is_err());
        assert!(parse_subscribe("topic=a..b", 64).is_err());
        assert!(parse_subscribe("topic=a&topic=b&topic=c", 2).is_err());
        assert!(parse_subscribe("topic=a&snapshot=yes", 2).is_err());
        assert_eq!(
            parse_subscribe("topic=a&lastEventId=9", 2)
                .unwrap()
                .last_event_id
                .as_deref(),
            Some("9")
        );
    }
}
