//! Topic and pattern syntax (SPEC §2): validation and token matching, pure functions.
//!
//! A topic is 1..=16 dot-separated tokens of `[A-Za-z0-9_~-]+`, 256 bytes at
//! most. A pattern may also use `*` (exactly one token) and a trailing `>`
//! (one or more tokens), the NATS subject syntax, so topics map 1:1 onto a
//! JetStream subject space.

/// A hash map keyed by topics or tokens, for the per-event lookups (the
/// subscription table, history). foldhash instead of SipHash: hashing the
/// topic of every event was 6% of a worker's time at 750k events/s; its
/// per-map random seed still keeps chosen topics from colliding on purpose
/// cheaply.
pub(crate) type TopicMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Longest topic or pattern, in bytes.
pub(crate) const MAX_TOPIC_BYTES: usize = 256;
/// Most tokens in a topic or pattern.
pub(crate) const MAX_TOKENS: usize = 16;

/// Why a topic or pattern was refused; `Copy` so the hot path never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicError {
    /// Empty string.
    Empty,
    /// More than [`MAX_TOPIC_BYTES`].
    TooLong,
    /// More than [`MAX_TOKENS`] tokens.
    TooManyTokens,
    /// An empty token (`a..b`, leading or trailing dot).
    EmptyToken,
    /// A character outside `[A-Za-z0-9_~-]` (or a misplaced wildcard).
    BadChar,
    /// A wildcard where a concrete topic is required.
    Wildcard,
    /// `>` not in the last position.
    GtNotLast,
}

impl TopicError {
    /// A human sentence for the error response.
    pub(crate) fn message(self) -> &'static str {
        match self {
            TopicError::Empty => "topic is empty",
            TopicError::TooLong => "topic is longer than 256 bytes",
            TopicError::TooManyTokens => "topic has more than 16 tokens",
            TopicError::EmptyToken => "topic has an empty token",
            TopicError::BadChar => "topic tokens may only use A-Z a-z 0-9 _ ~ -",
            TopicError::Wildcard => "cannot publish to a pattern; name one topic",
            TopicError::GtNotLast => "'>' may only be the last token of a pattern",
        }
    }
}

fn valid_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'~' || b == b'-'
}

fn check_shape(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong);
    }
    if s.split('.').count() > MAX_TOKENS {
        return Err(TopicError::TooManyTokens);
    }
    Ok(())
}

/// Checks a concrete topic (no wildcards), as published to.
pub(crate) fn validate_topic(s: &str) -> Result<(), TopicError> {
    check_shape(s)?;
    for tok in s.split('.') {
        if tok.is_empty() {
            return Err(TopicError::EmptyToken);
        }
        if tok == "*" || tok == ">" {
            return Err(TopicError::Wildcard);
        }
        if !tok.bytes().all(valid_token_char) {
            return Err(TopicError::BadChar);
        }
    }
    Ok(())
}

/// Checks a subscription pattern (`*` and a trailing `>` allowed).
pub(crate) fn validate_pattern(s: &str) -> Result<(), TopicError> {
    check_shape(s)?;
    let n = s.split('.').count();
    for (i, tok) in s.split('.').enumerate() {
        match tok {
            "" => return Err(TopicError::EmptyToken),
            "*" => {}
            ">" if i + 1 == n => {}
            ">" => return Err(TopicError::GtNotLast),
            t if t.bytes().all(valid_token_char) => {}
            _ => return Err(TopicError::BadChar),
        }
    }
    Ok(())
}

/// True when the pattern has a wildcard token.
pub(crate) fn is_wildcard(pattern: &str) -> bool {
    pattern.split('.').any(|t| t == "*" || t == ">")
}

/// Does a (valid) pattern match a (valid) topic? The reference matcher; the
/// subscription table uses a trie that must agree with it.
pub(crate) fn matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Generators of valid topics and patterns, for the property tests here
/// and in the parsers that take them (query, publish bodies).
#[cfg(test)]
pub(crate) mod strategy {
    use proptest::prelude::*;

    use super::MAX_TOKENS;

    /// One literal token; at most 15 bytes, so 16 of them with their dots
    /// stay within `MAX_TOPIC_BYTES`.
    pub(crate) fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_~-]{1,15}"
    }

    /// The tokens of a valid topic.
    pub(crate) fn topic_tokens() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(token(), 1..=MAX_TOKENS)
    }

    /// A valid topic.
    pub(crate) fn topic() -> impl Strategy<Value = String> {
        topic_tokens().prop_map(|t| t.join("."))
    }

    /// A valid pattern: literals and `*`, maybe ending in `>`.
    pub(crate) fn pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(
                prop_oneof![3 => token(), 1 => Just("*".to_owned())],
                0..MAX_TOKENS,
            ),
            any::<bool>(),
        )
            .prop_filter_map("a pattern has a token", |(mut toks, gt)| {
                if gt {
                    toks.push(">".to_owned());
                }
                (!toks.is_empty()).then(|| toks.join("."))
            })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::strategy::{pattern, token, topic, topic_tokens};
    use super::*;

    #[test]
    fn topic_validation_table() {
        let long = "a".repeat(257);
        let many = vec!["a"; 17].join(".");
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("quotes.NASDAQ.AAPL", Ok(())),
            ("a", Ok(())),
            ("a-b_c~d.0", Ok(())),
            ("", Err(TopicError::Empty)),
            (&long, Err(TopicError::TooLong)),
            (&many, Err(TopicError::TooManyTokens)),
            ("a..b", Err(TopicError::EmptyToken)),
            (".a", Err(TopicError::EmptyToken)),
            ("a.", Err(TopicError::EmptyToken)),
            ("a.*", Err(TopicError::Wildcard)),
            ("a.>", Err(TopicError::Wildcard)),
            ("a b", Err(TopicError::BadChar)),
            ("a/b", Err(TopicError::BadChar)),
            ("é", Err(TopicError::BadChar)),
        ];
        for (input, want) in cases {
            assert_eq!(validate_topic(input), *want, "{input:?}");
        }
        assert!(validate_topic(&vec!["a"; 16].join(".")).is_ok());
    }

    #[test]
    fn pattern_validation_table() {
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("quotes.*.AAPL", Ok(())),
            ("quotes.>", Ok(())),
            (">", Ok(())),
            ("*", Ok(())),
            ("*.*.>", Ok(())),
            ("a.>.b", Err(TopicError::GtNotLast)),
            ("a.b*", Err(TopicError::BadChar)),
            ("a.>b", Err(TopicError::BadChar)),
            ("", Err(TopicError::Empty)),
            ("a..*", Err(TopicError::EmptyToken)),
        ];
        for (input, want) in cases {
            assert_eq!(validate_pattern(input), *want, "{input:?}");
        }
    }

    #[test]
    fn matching_table() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("a.b", "a.b.c", false),
            ("a.*.c", "a.x.c", true),
            ("a.*.c", "a.x.y.c", false),
            ("a.*", "a", false),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c.d", true),
            ("a.>", "a", false),
            (">", "a", true),
            (">", "a.b", true),
            ("*", "a", true),
            ("*", "a.b", false),
            ("*.b.>", "x.b.c", true),
            ("*.b.>", "x.c.c", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(matches(p, t), want, "{p} ~ {t}");
        }
    }

    /// Strings from the characters topics are made of, and a few that
    /// they are not, so generated inputs sit near the rules' edges.
    fn near_topic() -> impl Strategy<Value = String> {
        "[a-c.*>~ é/-]{0,300}"
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>(), t in near_topic()) {
            for s in [&s, &t] {
                let topic_ok = validate_topic(s).is_ok();
                let pattern_ok = validate_pattern(s).is_ok();
                // Every topic is also a pattern, matching itself.
                prop_assert!(!topic_ok || (pattern_ok && matches(s, s)));
                if pattern_ok {
                    prop_assert!(s.len() <= MAX_TOPIC_BYTES);
                    prop_assert!(s.split('.').count() <= MAX_TOKENS);
                }
                let _ = matches(s, &t);
                let _ = matches(&t, s);
            }
        }

        #[test]
        fn a_generated_topic_validates_and_matches_itself(t in topic()) {
            prop_assert_eq!(validate_topic(&t), Ok(()));
            prop_assert_eq!(validate_pattern(&t), Ok(()));
            prop_assert!(!is_wildcard(&t));
            prop_assert!(matches(&t, &t));
        }

        #[test]
        fn a_generated_pattern_validates(p in pattern()) {
            prop_assert_eq!(validate_pattern(&p), Ok(()));
            prop_assert_eq!(validate_topic(&p).is_ok(), !is_wildcard(&p));
        }

        #[test]
        fn gt_matches_every_extension(
            toks in topic_tokens(),
            at in any::<prop::sample::Index>(),
            stars in any::<u16>(),
        ) {
            // A prefix of the topic (at least one token short), some of its
            // tokens turned into `*`, then `>`.
            let cut = at.index(toks.len());
            let mut p: Vec<&str> = toks[..cut]
                .iter()
                .enumerate()
                .map(|(i, t)| if (stars >> i) & 1 == 1 { "*" } else { t.as_str() })
                .collect();
            p.push(">");
            let p = p.join(".");
            let t = toks.join(".");
            prop_assert_eq!(validate_pattern(&p), Ok(()));
            prop_assert!(matches(&p, &t), "{p} ~ {t}");
            // `>` stands for one token or more: the prefix alone is no match.
            let prefix = toks[..cut].join(".");
            prop_assert!(cut == 0 || !matches(&p, &prefix), "{p} ~ {prefix}");
        }

        #[test]
        fn stars_match_exactly_one_token_each(
            toks in topic_tokens(),
            stars in any::<u16>(),
            extra in token(),
        ) {
            let p: Vec<&str> = toks
                .iter()
                .enumerate()
                .map(|(i, t)| if (stars >> i) & 1 == 1 { "*" } else { t.as_str() })
                .collect();
            let p = p.join(".");
            let t = toks.join(".");
            prop_assert!(matches(&p, &t), "{p} ~ {t}");
            let longer = format!("{t}.{extra}");
            prop_assert!(!matches(&p, &longer), "{p} ~ {longer}");
        }

        #[test]
        fn a_different_literal_token_does_not_match(
            toks in topic_tokens(),
            at in any::<prop::sample::Index>(),
            other in token(),
        ) {
            let i = at.index(toks.len());
            prop_assume!(toks[i] != other);
            let mut changed = toks.clone();
            changed[i] = other;
            prop_assert!(!matches(&toks.join("."), &changed.join(".")));
        }
    }
}
