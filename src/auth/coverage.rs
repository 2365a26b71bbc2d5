//! Pattern coverage: does a granted pattern reach every topic a requested
//! pattern can match? Decided token by token, without enumerating topics.

/// Does the granted pattern cover every topic the requested one can match?
///
/// Both are valid patterns (`topic::validate_pattern`); a concrete topic is
/// a pattern too, for which coverage is matching. Walking both in step:
/// a granted `>` covers whatever one-or-more tokens remain; a granted `*`
/// covers one requested literal or `*`, but not a requested `>` (that may
/// stand for several tokens); a granted literal covers only the same
/// literal. Anything left over on either side means different lengths.
pub(crate) fn covers(granted: &str, requested: &str) -> bool {
    let mut g = granted.split('.');
    let mut r = requested.split('.');
    loop {
        match (g.next(), r.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(">")) => return false,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "*" && b != ">" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::topic::{matches, validate_pattern};

    #[test]
    fn coverage_table() {
        let cases = [
            ("quotes.>", "quotes.*.AAPL", true),
            ("quotes.>", "quotes.>", true),
            ("quotes.>", "quotes.NASDAQ.AAPL", true),
            ("quotes.>", "quotes", false),
            ("quotes.>", ">", false),
            ("quotes.*", "quotes.>", false),
            ("quotes.*", "quotes.AAPL", true),
            ("quotes.*", "quotes.*", true),
            ("quotes.*", "quotes.a.b", false),
            ("quotes.AAPL", "quotes.*", false),
            ("quotes.AAPL", "quotes.AAPL", true),
            ("quotes.AAPL", "quotes.MSFT", false),
            ("*.*", "a.*", true),
            ("*.*", "*.*", true),
            ("*.*", "*", false),
            ("*.*", "a.>", false),
            ("*.>", "a.b.>", true),
            ("*.>", ">", false),
            ("*.*.>", "a.>", false),
            (">", ">", true),
            (">", "a", true),
            (">", "*.b.>", true),
            ("*", ">", false),
            ("a", "a.b", false),
            ("a.b", "a", false),
        ];
        for (g, r, want) in cases {
            assert_eq!(covers(g, r), want, "{g} ⊇ {r}");
        }
    }

    /// Patterns over the tiny alphabet {a, b}: 1..=3 tokens of `a`, `b`,
    /// `*`, maybe with a trailing `>`.
    fn small_pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop::sample::select(vec!["a", "b", "*"]), 0..=3),
            any::<bool>(),
        )
            .prop_filter_map("a pattern has a token", |(mut toks, gt)| {
                if gt {
                    toks.push(">");
                }
                (!toks.is_empty()).then(|| toks.join("."))
            })
    }

    /// Every topic of 1..=`max_len` tokens over {a, b} and the fresh
    /// token `z`, which no pattern names.
    fn topics_up_to(max_len: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut layer = vec![String::new()];
        for _ in 0..max_len {
            let mut next = Vec::new();
            for prefix in &layer {
                for t in ["a", "b", "z"] {
                    next.push(if prefix.is_empty() {
                        t.to_owned()
                    } else {
                        format!("{prefix}.{t}")
                    });
                }
            }
            all.extend(next.iter().cloned());
            layer = next;
        }
        all
    }

    /// The brute-force answer: no topic (among those long enough to tell)
    /// matched by `requested` and not by `granted`.
    fn brute_force(granted: &str, requested: &str) -> Option<String> {
        let longest = granted.split('.').count().max(requested.split('.').count());
        topics_up_to(longest + 1)
            .into_iter()
            .find(|t| matches(requested, t) && !matches(granted, t))
    }

    #[test]
    fn agrees_with_brute_force_on_every_small_pair() {
        let mut patterns = Vec::new();
        for len in 1..=3 {
            for t in topics_up_to(len) {
                if t.split('.').count() == len {
                    let p = t.replace('z', "*");
                    patterns.push(p.clone());
                    patterns.push(format!("{p}.>"));
                }
            }
        }
        patterns.push(">".to_owned());
        patterns.sort();
        patterns.dedup();
        for g in &patterns {
            for r in &patterns {
                assert_eq!(covers(g, r), brute_force(g, r).is_none(), "{g} ⊇ {r}");
            }
        }
    }

    proptest! {
        #[test]
        fn covers_implies_no_counterexample(g in small_pattern(), r in small_pattern()) {
            prop_assert_eq!(validate_pattern(&g), Ok(()));
            prop_assert_eq!(validate_pattern(&r), Ok(()));
            let counterexample = brute_force(&g, &r);
            if covers(&g, &r) {
                prop_assert!(counterexample.is_none(), "{g} ⊇ {r} but not {counterexample:?}");
            } else {
                prop_assert!(counterexample.is_some(), "{g} ⊉ {r} without a counterexample");
            }
        }

        #[test]
        fn every_pattern_covers_itself_and_is_covered_by_gt(
            p in crate::topic::strategy::pattern(),
        ) {
            prop_assert!(covers(&p, &p));
            prop_assert!(covers(">", &p));
        }

        #[test]
        fn on_topics_coverage_is_matching(
            p in crate::topic::strategy::pattern(),
            t in crate::topic::strategy::topic(),
        ) {
            prop_assert_eq!(covers(&p, &t), matches(&p, &t));
        }
    }
}
