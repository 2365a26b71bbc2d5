//! The `GET /events` query: topic patterns (validated, deduplicated,
//! bounded by `limits.topics_per_subscription`), `snapshot`,
//! `lastEventId` and `max_rate`, percent-decoded.

use super::error::HttpError;
use crate::topic::validate_pattern;

/// A validated `GET /events` query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubscribeQuery {
    /// Patterns, validated, in request order, without duplicates.
    pub(crate) patterns: Vec<String>,
    /// `snapshot=1`.
    pub(crate) snapshot: bool,
    /// `lastEventId` query parameter (empty means none).
    pub(crate) last_event_id: Option<String>,
    /// `max_rate`: at most this many events per second per topic.
    pub(crate) max_rate: Option<f64>,
}

/// The `max_rate` a subscriber may ask for, in events per second per topic.
pub(crate) const MAX_RATE_RANGE: std::ops::RangeInclusive<f64> = 0.01..=1000.0;

/// `max_rate=R`: a decimal number in [`MAX_RATE_RANGE`].
fn parse_max_rate(v: &str) -> Result<f64, HttpError> {
    let bad = HttpError::BadRequest(
        "bad_max_rate",
        "max_rate must be a decimal number of events per second per topic, from 0.01 to 1000",
    );
    // Digits and one dot only: no signs, exponents, `inf` or `NaN`.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad);
    }
    match v.parse::<f64>() {
        Ok(r) if MAX_RATE_RANGE.contains(&r) => Ok(r),
        _ => Err(bad),
    }
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
        max_rate: None,
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
            "max_rate" => q.max_rate = Some(parse_max_rate(&v)?),
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
    use proptest::prelude::*;

    use super::*;
    use crate::topic::strategy::pattern;

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
        for (v, want) in [
            ("2", Some(2.0)),
            ("0.01", Some(0.01)),
            ("1000", Some(1000.0)),
            (".5", Some(0.5)),
        ] {
            assert_eq!(
                parse_subscribe(&format!("topic=a&max_rate={v}"), 2)
                    .unwrap()
                    .max_rate,
                want,
                "{v}"
            );
        }
        for v in [
            "0", "0.009", "1000.5", "-1", "1e2", "inf", "NaN", "", "2/s", "1.2.3",
        ] {
            let e = parse_subscribe(&format!("topic=a&max_rate={v}"), 2).unwrap_err();
            assert_eq!(e.code(), "bad_max_rate", "{v}");
        }
    }

    /// `s` with each byte percent-encoded where `mask` (cycled) says so,
    /// in upper or lower case hex; the rest literal.
    fn percent_encode(s: &str, mask: &[u8]) -> String {
        let mut out = String::new();
        for (i, b) in s.bytes().enumerate() {
            match mask[i % mask.len()] % 3 {
                0 => out.push(char::from(b)),
                1 => out.push_str(&format!("%{b:02X}")),
                _ => out.push_str(&format!("%{b:02x}")),
            }
        }
        out
    }

    /// Query parameters other than `topic`, which must not disturb it.
    fn other_param() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("snapshot=1".to_owned()),
            Just("snapshot=0".to_owned()),
            "lastEventId=[0-9]{0,5}",
            "x[a-z]{0,4}=[a-z%0-9]{0,6}",
            Just(String::new()),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_queries_stay_within_the_limit(
            q in prop_oneof![any::<String>(), "([a-z]{1,6}=[a-zA-Z0-9.*>%&=+]{0,12}&?){0,40}"],
            max in 0usize..8,
        ) {
            if let Ok(sq) = parse_subscribe(&q, max) {
                prop_assert!(!sq.patterns.is_empty());
                prop_assert!(sq.patterns.len() <= max);
                for p in &sq.patterns {
                    prop_assert_eq!(validate_pattern(p), Ok(()));
                }
            }
        }

        #[test]
        fn encoded_patterns_come_back_in_order_without_duplicates(
            picks in prop::collection::vec((pattern(), 0usize..3), 1..12),
            mask in prop::collection::vec(any::<u8>(), 1..16),
            others in prop::collection::vec(other_param(), 0..4),
            max in 1usize..12,
        ) {
            // Some patterns are repeated, to be deduplicated.
            let sent: Vec<&String> = picks
                .iter()
                .flat_map(|(p, repeat)| std::iter::repeat_n(p, 1 + repeat))
                .collect();
            let mut params: Vec<String> = sent
                .iter()
                .map(|p| format!("topic={}", percent_encode(p, &mask)))
                .collect();
            for (i, o) in others.iter().enumerate() {
                params.insert((i * 7) % (params.len() + 1), o.clone());
            }
            let query = params.join("&");
            let mut want: Vec<String> = Vec::new();
            for p in sent {
                if !want.contains(p) {
                    want.push(p.clone());
                }
            }
            match parse_subscribe(&query, max) {
                Ok(q) => prop_assert_eq!(q.patterns, want),
                Err(e) => {
                    prop_assert!(want.len() > max, "{query}: {e:?}");
                    prop_assert_eq!(e.code(), "too_many_topics");
                }
            }
        }
    }
}
