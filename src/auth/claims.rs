//! The claims of a verified token: the JSON object in, typed `Claims`
//! out, then the time, issuer and audience checks and the `Grant`.

use serde_json::{Map, Value};

use super::{Failure, Grant};
use crate::topic;

/// Latest NumericDate accepted, in seconds (9999-12-31T23:59:59Z): far
/// beyond any real expiry, and small enough that milliseconds fit a `u64`
/// with room for the leeway.
pub(crate) const MAX_NUMERIC_DATE_S: u64 = 253_402_300_799;

/// Longest `tenant`, in bytes.
pub(crate) const MAX_TENANT_BYTES: usize = 64;

/// What the configuration requires of the claims beyond their types.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimRules {
    /// Clock skew allowed on `exp` and `nbf`.
    pub(crate) leeway_ms: u64,
    /// Required `iss`.
    pub(crate) issuer: Option<Box<str>>,
    /// Required member of `aud`.
    pub(crate) audience: Option<Box<str>>,
}

/// The claims we read, typed; unknown claims are ignored.
#[derive(Debug)]
pub(crate) struct Claims {
    /// `exp`, rounded down to the millisecond.
    exp_ms: u64,
    /// `nbf`, rounded up to the millisecond.
    nbf_ms: Option<u64>,
    /// `iss` as sent, checked only when an issuer is configured.
    iss: Option<Value>,
    /// `aud` as sent, checked only when an audience is configured.
    aud: Option<Value>,
    /// `tenant`, already checked.
    tenant: Option<Box<str>>,
    /// `subscribe`, each a valid pattern.
    subscribe: Vec<Box<str>>,
    /// `subscribe_delayed`, each a valid pattern.
    subscribe_delayed: Vec<Box<str>>,
    /// `publish`, each a valid pattern.
    publish: Vec<Box<str>>,
    /// `jti`, else `sub` (non-empty strings).
    holder: Option<Box<str>>,
    /// `max_rate`: the most events per second per topic a subscription
    /// of this token gets.
    max_rate: Option<f64>,
}

/// The largest `max_rate` claim accepted (events per second per topic).
const MAX_RATE_CLAIM: f64 = 1_000_000.0;

/// Which way a fractional NumericDate is rounded to milliseconds: always
/// towards the stricter answer.
#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

impl Claims {
    /// Types the claims: `Claims` when `exp` is missing, a date is not a
    /// number in `0..=MAX_NUMERIC_DATE_S`, or `tenant`, a pattern list,
    /// `jti` or `sub` has the wrong type or syntax.
    pub(crate) fn parse(mut map: Map<String, Value>) -> Result<Claims, Failure> {
        let exp_ms = match map.get("exp") {
            Some(v) => numeric_date_ms(v, Round::Down)?,
            None => return Err(Failure::Claims),
        };
        let nbf_ms = match map.get("nbf") {
            Some(v) => Some(numeric_date_ms(v, Round::Up)?),
            None => None,
        };
        let tenant = match map.remove("tenant") {
            None => None,
            Some(Value::String(t)) if valid_tenant(&t) => Some(t.into_boxed_str()),
            Some(_) => return Err(Failure::Claims),
        };
        let jti = optional_string(map.remove("jti"))?;
        let sub = optional_string(map.remove("sub"))?;
        let max_rate = match map.remove("max_rate") {
            None => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(r) if r > 0.0 && r <= MAX_RATE_CLAIM => Some(r),
                _ => return Err(Failure::Claims),
            },
            Some(_) => return Err(Failure::Claims),
        };
        Ok(Claims {
            exp_ms,
            nbf_ms,
            iss: map.remove("iss"),
            aud: map.remove("aud"),
            tenant,
            subscribe: patterns(map.remove("subscribe"))?,
            subscribe_delayed: patterns(map.remove("subscribe_delayed"))?,
            publish: patterns(map.remove("publish"))?,
            holder: jti.or(sub),
            max_rate,
        })
    }

    /// Checks expiry and `nbf` at `now_ms`, then issuer and audience.
    pub(crate) fn check(&self, rules: &ClaimRules, now_ms: u64) -> Result<(), Failure> {
        if now_ms >= self.exp_ms.saturating_add(rules.leeway_ms) {
            return Err(Failure::Expired);
        }
        if let Some(nbf_ms) = self.nbf_ms {
            if now_ms.saturating_add(rules.leeway_ms) < nbf_ms {
                return Err(Failure::NotYetValid);
            }
        }
        if let Some(issuer) = rules.issuer.as_deref() {
            if !matches!(&self.iss, Some(Value::String(iss)) if iss == issuer) {
                return Err(Failure::Issuer);
            }
        }
        if let Some(audience) = rules.audience.as_deref() {
            let named = match &self.aud {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !named {
                return Err(Failure::Audience);
            }
        }
        Ok(())
    }

    /// The grant, its holder falling back to the token itself.
    pub(crate) fn into_grant(self, token: &str) -> Grant {
        Grant {
            tenant: self.tenant,
            subscribe: self.subscribe,
            subscribe_delayed: self.subscribe_delayed,
            publish: self.publish,
            exp_ms: self.exp_ms,
            holder: self.holder.unwrap_or_else(|| token.into()),
            max_rate: self.max_rate,
        }
    }
}

/// A NumericDate (seconds, integer or fractional) in milliseconds.
fn numeric_date_ms(v: &Value, round: Round) -> Result<u64, Failure> {
    let Value::Number(n) = v else {
        return Err(Failure::Claims);
    };
    if let Some(s) = n.as_u64() {
        return match s {
            0..=MAX_NUMERIC_DATE_S => Ok(s * 1000),
            _ => Err(Failure::Claims),
        };
    }
    match n.as_f64() {
        Some(s) if (0.0..=MAX_NUMERIC_DATE_S as f64).contains(&s) => {
            let ms = s * 1000.0;
            let ms = match round {
                Round::Down => ms.floor(),
                Round::Up => ms.ceil(),
            };
            // In range by the check above; `as` saturates regardless.
            Ok(ms as u64)
        }
        _ => Err(Failure::Claims),
    }
}

/// 1..=64 bytes of `[A-Za-z0-9_~-]`: a tenant is one topic token.
/// `_` alone is reserved: it is the tenant token of topics without a
/// tenant in cluster mode's subjects (SPEC §8).
fn valid_tenant(t: &str) -> bool {
    t != "_"
        && (1..=MAX_TENANT_BYTES).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-'))
}

/// An optional string claim; an empty string counts as absent.
fn optional_string(v: Option<Value>) -> Result<Option<Box<str>>, Failure> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.into_boxed_str())),
        Some(_) => Err(Failure::Claims),
    }
}

/// An optional array of valid patterns (absent: none).
fn patterns(v: Option<Value>) -> Result<Vec<Box<str>>, Failure> {
    let items = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Failure::Claims),
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(p) if topic::validate_pattern(&p).is_ok() => Ok(p.into_boxed_str()),
            _ => Err(Failure::Claims),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Claims, Failure> {
        match v {
            Value::Object(map) => Claims::parse(map),
            _ => unreachable!("tests pass objects"),
        }
    }

    fn rules(leeway_ms: u64) -> ClaimRules {
        ClaimRules {
            leeway_ms,
            ..ClaimRules::default()
        }
    }

    #[test]
    fn a_full_set_of_claims_becomes_a_grant() {
        let c = parse(json!({
            "exp": 2_000_000_000u64,
            "tenant": "acme-1",
            "subscribe": ["quotes.>"],
            "subscribe_delayed": ["news.*", "x"],
            "publish": ["orders.acme.*"],
            "jti": "j-1",
            "sub": "alice",
            "max_rate": 0.2,
            "other": {"ignored": [1, 2, 3]},
        }))
        .unwrap();
        let g = c.into_grant("the.token.text");
        assert_eq!(
            g,
            Grant {
                tenant: Some("acme-1".into()),
                subscribe: vec!["quotes.>".into()],
                subscribe_delayed: vec!["news.*".into(), "x".into()],
                publish: vec!["orders.acme.*".into()],
                exp_ms: 2_000_000_000_000,
                holder: "j-1".into(),
                max_rate: Some(0.2),
            }
        );
    }

    #[test]
    fn the_holder_is_jti_else_sub_else_the_token() {
        let holder = |v: Value| parse(v).unwrap().into_grant("tok").holder;
        assert_eq!(&*holder(json!({"exp": 1, "jti": "j", "sub": "s"})), "j");
        assert_eq!(&*holder(json!({"exp": 1, "sub": "s"})), "s");
        assert_eq!(&*holder(json!({"exp": 1, "jti": "", "sub": "s"})), "s");
        assert_eq!(&*holder(json!({"exp": 1})), "tok");
        assert_eq!(&*holder(json!({"exp": 1, "sub": ""})), "tok");
    }

    #[test]
    fn absent_lists_are_empty() {
        let g = parse(json!({"exp": 1})).unwrap().into_grant("t");
        assert_eq!(g.tenant, None);
        assert!(g.subscribe.is_empty() && g.subscribe_delayed.is_empty() && g.publish.is_empty());
    }

    #[test]
    fn claim_type_table() {
        let long_tenant = "t".repeat(65);
        let cases = [
            json!({}),
            json!({"sub": "no exp"}),
            json!({"exp": "2000000000"}),
            json!({"exp": null}),
            json!({"exp": true}),
            json!({"exp": [1]}),
            json!({"exp": -1}),
            json!({"exp": -0.5}),
            json!({"exp": 18_446_744_073_709_551_615u64}),
            json!({"exp": 18_446_744_073_709_551_616.0f64}),
            json!({"exp": 1e300}),
            json!({"exp": MAX_NUMERIC_DATE_S + 1}),
            json!({"exp": 1, "nbf": "0"}),
            json!({"exp": 1, "nbf": -1}),
            json!({"exp": 1, "tenant": ""}),
            json!({"exp": 1, "tenant": long_tenant}),
            json!({"exp": 1, "tenant": "a.b"}),
            json!({"exp": 1, "tenant": "a*"}),
            json!({"exp": 1, "tenant": "é"}),
            json!({"exp": 1, "tenant": 7}),
            json!({"exp": 1, "tenant": null}),
            json!({"exp": 1, "max_rate": 0}),
            json!({"exp": 1, "max_rate": -2}),
            json!({"exp": 1, "max_rate": "2"}),
            json!({"exp": 1, "max_rate": 1e9}),
            json!({"exp": 1, "subscribe": "quotes.>"}),
            json!({"exp": 1, "subscribe": [1]}),
            json!({"exp": 1, "subscribe": ["a.>.b"]}),
            json!({"exp": 1, "subscribe_delayed": ["a..b"]}),
            json!({"exp": 1, "publish": [""]}),
            json!({"exp": 1, "publish": null}),
            json!({"exp": 1, "jti": 5}),
            json!({"exp": 1, "sub": {"id": 1}}),
        ];
        for c in cases {
            assert_eq!(parse(c.clone()).map(|_| ()), Err(Failure::Claims), "{c}");
        }
        assert!(parse(json!({"exp": 1, "tenant": "t".repeat(64)})).is_ok());
        assert!(parse(json!({"exp": 1, "tenant": "A-z_0~9"})).is_ok());
        assert!(parse(json!({"exp": MAX_NUMERIC_DATE_S})).is_ok());
        assert!(parse(json!({"exp": 0})).is_ok());
    }

    #[test]
    fn numeric_dates_round_towards_strictness() {
        let c = parse(json!({"exp": 1.0019, "nbf": 1.0001})).unwrap();
        assert_eq!((c.exp_ms, c.nbf_ms), (1001, Some(1001)));
        let c = parse(json!({"exp": 1_700_000_000.25})).unwrap();
        assert_eq!(c.exp_ms, 1_700_000_000_250);
        let c = parse(json!({"exp": 2.0})).unwrap();
        assert_eq!(c.exp_ms, 2000);
    }

    #[test]
    fn expiry_edges_in_milliseconds() {
        let c = parse(json!({"exp": 100})).unwrap();
        assert_eq!(c.check(&rules(0), 99_999), Ok(()));
        assert_eq!(c.check(&rules(0), 100_000), Err(Failure::Expired));
        assert_eq!(c.check(&rules(250), 100_249), Ok(()));
        assert_eq!(c.check(&rules(250), 100_250), Err(Failure::Expired));
        assert_eq!(c.check(&rules(u64::MAX), u64::MAX - 1), Ok(()));
        let c = parse(json!({"exp": 100.5})).unwrap();
        assert_eq!(c.check(&rules(0), 100_499), Ok(()));
        assert_eq!(c.check(&rules(0), 100_500), Err(Failure::Expired));
    }

    #[test]
    fn not_before_edges_in_milliseconds() {
        let c = parse(json!({"exp": 1000, "nbf": 100})).unwrap();
        assert_eq!(c.check(&rules(0), 99_999), Err(Failure::NotYetValid));
        assert_eq!(c.check(&rules(0), 100_000), Ok(()));
        assert_eq!(c.check(&rules(500), 99_499), Err(Failure::NotYetValid));
        assert_eq!(c.check(&rules(500), 99_500), Ok(()));
        let c = parse(json!({"exp": 1000, "nbf": 100.0005})).unwrap();
        assert_eq!(c.check(&rules(0), 100_000), Err(Failure::NotYetValid));
        assert_eq!(c.check(&rules(0), 100_001), Ok(()));
    }

    #[test]
    fn issuer_and_audience_only_when_configured() {
        let strict = ClaimRules {
            leeway_ms: 0,
            issuer: Some("https://idp".into()),
            audience: Some("ringcast".into()),
        };
        let check = |v: Value, r: &ClaimRules| parse(v).unwrap().check(r, 0);
        let ok = json!({"exp": 1, "iss": "https://idp", "aud": "ringcast"});
        assert_eq!(check(ok.clone(), &strict), Ok(()));
        let in_list = json!({"exp": 1, "iss": "https://idp", "aud": ["x", "ringcast"]});
        assert_eq!(check(in_list, &strict), Ok(()));
        let cases = [
            (json!({"exp": 1, "aud": "ringcast"}), Failure::Issuer),
            (
                json!({"exp": 1, "iss": "https://other", "aud": "ringcast"}),
                Failure::Issuer,
            ),
            (
                json!({"exp": 1, "iss": ["https://idp"], "aud": "ringcast"}),
                Failure::Issuer,
            ),
            (json!({"exp": 1, "iss": "https://idp"}), Failure::Audience),
            (
                json!({"exp": 1, "iss": "https://idp", "aud": "other"}),
                Failure::Audience,
            ),
            (
                json!({"exp": 1, "iss": "https://idp", "aud": ["other"]}),
                Failure::Audience,
            ),
            (
                json!({"exp": 1, "iss": "https://idp", "aud": []}),
                Failure::Audience,
            ),
            (
                json!({"exp": 1, "iss": "https://idp", "aud": 7}),
                Failure::Audience,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(check(c.clone(), &strict), Err(want), "{c}");
        }
        // Unconfigured: any iss and aud, of any type, pass.
        assert_eq!(
            check(json!({"exp": 1, "iss": 1, "aud": {}}), &rules(0)),
            Ok(())
        );
    }
}
