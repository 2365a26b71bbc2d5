//! The JWS compact serialization (`header.claims.signature`, each
//! base64url): token text in, a decoded but unverified `Jws` out.
//!
//! Everything here runs on untrusted input before any key is touched, so
//! every step is bounded: the length is checked before any decoding, the
//! parts are decoded once, and JSON nesting stops at `serde_json`'s
//! recursion limit (128).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::Failure;

/// Longest token accepted, in bytes; checked before any decoding.
pub(crate) const MAX_TOKEN_BYTES: usize = 8192;

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct Jws<'t> {
    /// The header's `alg`, one of those we verify.
    pub(crate) alg: Algorithm,
    /// The header's `kid`, when present.
    pub(crate) kid: Option<String>,
    /// The claims object, for `Claims::parse` once the signature holds.
    pub(crate) claims: Map<String, Value>,
    /// `header.claims` as sent: what the signature covers.
    pub(crate) signing_input: &'t str,
    /// The signature part, still base64url (as `jsonwebtoken` takes it).
    pub(crate) signature: &'t str,
}

impl<'t> Jws<'t> {
    /// Splits and decodes `token`: `Malformed` for anything that is not a
    /// JWS of JSON objects, `Algorithm` for an `alg` other than HS256,
    /// RS256 or ES256 (`none` included).
    pub(crate) fn parse(token: &'t str) -> Result<Jws<'t>, Failure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Failure::Malformed);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(Failure::Malformed)?;
        let (header, claims) = signing_input.split_once('.').ok_or(Failure::Malformed)?;
        let header = object(header)?;
        let claims = object(claims)?;
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Failure::Malformed)?;

        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Failure::Malformed),
        };
        // RFC 7515 §4.1.11: extensions listed in `crit` must be understood,
        // and we understand none (e.g. `b64: false` changes what is signed).
        if header.contains_key("crit") {
            return Err(Failure::Malformed);
        }
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => match alg.as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                _ => return Err(Failure::Algorithm),
            },
            _ => return Err(Failure::Malformed),
        };
        Ok(Jws {
            alg,
            kid,
            claims,
            signing_input,
            signature,
        })
    }
}

/// One base64url part holding a JSON object.
fn object(part: &str) -> Result<Map<String, Value>, Failure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Failure::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Failure::Malformed)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
    }

    #[test]
    fn a_well_formed_token_parses() {
        let t = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, r#"{"exp":1}"#);
        let jws = Jws::parse(&t).unwrap();
        assert_eq!(jws.alg, Algorithm::RS256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims.get("exp"), Some(&Value::from(1)));
        assert_eq!(format!("{}.{}", jws.signing_input, jws.signature), t);
        assert_eq!(jws.signature, b64("sig"));
    }

    #[test]
    fn refusal_table() {
        let claims = r#"{"exp":1}"#;
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_claims = format!(r#"{{"exp":1,"x":{deep}}}"#);
        let long = format!(
            "{}.{}",
            token(r#"{"alg":"HS256"}"#, claims),
            "A".repeat(60_000)
        );
        let cases: Vec<(String, Failure)> = vec![
            (String::new(), Failure::Malformed),
            ("abc".into(), Failure::Malformed),
            ("a.b".into(), Failure::Malformed),
            ("a.b.c.d".into(), Failure::Malformed),
            ("..".into(), Failure::Malformed),
            ("!!!.???.***".into(), Failure::Malformed),
            (long, Failure::Malformed),
            (token("not json", claims), Failure::Malformed),
            (token("[1,2]", claims), Failure::Malformed),
            (token(r#"{"alg":"HS256"}"#, "[]"), Failure::Malformed),
            (token(r#"{"alg":"HS256"}"#, "null"), Failure::Malformed),
            (
                token(r#"{"alg":"HS256"}"#, &deep_claims),
                Failure::Malformed,
            ),
            (
                token(&format!(r#"{{"alg":"HS256","x":{deep}}}"#), claims),
                Failure::Malformed,
            ),
            (
                token(r#"{"alg":"HS256"}"#, r#"{"exp":1e400}"#),
                Failure::Malformed,
            ),
            (token("{}", claims), Failure::Malformed),
            (token(r#"{"alg":256}"#, claims), Failure::Malformed),
            (
                token(r#"{"alg":"HS256","kid":7}"#, claims),
                Failure::Malformed,
            ),
            (
                token(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, claims),
                Failure::Malformed,
            ),
            (token(r#"{"alg":"none"}"#, claims), Failure::Algorithm),
            (token(r#"{"alg":"None"}"#, claims), Failure::Algorithm),
            (token(r#"{"alg":"HS512"}"#, claims), Failure::Algorithm),
            (token(r#"{"alg":"PS256"}"#, claims), Failure::Algorithm),
            (token(r#"{"alg":"EdDSA"}"#, claims), Failure::Algorithm),
            (token(r#"{"alg":"hs256"}"#, claims), Failure::Algorithm),
        ];
        for (t, want) in cases {
            let shown = &t[..t.len().min(60)];
            assert_eq!(Jws::parse(&t).map(|_| ()), Err(want), "{shown}");
        }
        // Padding and the standard alphabet are not base64url.
        let padded = format!(
            "{}=.{}.{}",
            b64(r#"{"alg":"HS256"}"#),
            b64(claims),
            b64("s")
        );
        assert_eq!(Jws::parse(&padded).map(|_| ()), Err(Failure::Malformed));
        let plus = format!("{}.{}.a+b/", b64(r#"{"alg":"HS256"}"#), b64(claims));
        assert_eq!(Jws::parse(&plus).map(|_| ()), Err(Failure::Malformed));
        // `alg: none` with an empty signature is refused all the same.
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims));
        assert_eq!(Jws::parse(&none).map(|_| ()), Err(Failure::Algorithm));
    }

    #[test]
    fn the_length_limit_is_inclusive() {
        let base = token(r#"{"alg":"HS256","pad":""}"#, "{}");
        let pad = MAX_TOKEN_BYTES - base.len();
        // Grow the header's padding in steps of 3 bytes (4 base64 chars).
        let padding = "x".repeat(pad / 4 * 3);
        let t = token(&format!(r#"{{"alg":"HS256","pad":"{padding}"}}"#), "{}");
        assert!(t.len() <= MAX_TOKEN_BYTES && t.len() > MAX_TOKEN_BYTES - 4);
        assert!(Jws::parse(&t).is_ok());
        let over = token(&format!(r#"{{"alg":"HS256","pad":"{padding}xxx"}}"#), "{}");
        assert!(over.len() > MAX_TOKEN_BYTES);
        assert_eq!(Jws::parse(&over).map(|_| ()), Err(Failure::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>(), dotted in "[A-Za-z0-9_.=+/-]{0,200}") {
            let _ = Jws::parse(&s);
            let _ = Jws::parse(&dotted);
        }

        #[test]
        fn arbitrary_json_parts_never_panic(
            header in any::<String>(),
            claims in any::<String>(),
            sig in any::<Vec<u8>>(),
        ) {
            let t = format!(
                "{}.{}.{}",
                b64(&header),
                b64(&claims),
                URL_SAFE_NO_PAD.encode(&sig)
            );
            if let Ok(jws) = Jws::parse(&t) {
                prop_assert!(t.len() <= MAX_TOKEN_BYTES);
                prop_assert_eq!(jws.signing_input.len() + 1 + jws.signature.len(), t.len());
            }
        }
    }
}
