//! Topic and pattern syntax (SPEC §2): validation and token matching, pure functions.
//!
//! A topic is 1..=16 dot-separated tokens of `[A-Za-z0-9_~-]+`, 256 bytes at
//! most. A pattern may also use `*` (exactly one token) and a trailing `>`
//! (one or more tokens), the NATS subject syntax, so topics map 1:1 onto a
//! JetStream subject space.

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

#[cfg(test)]
mod tests {
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
}
