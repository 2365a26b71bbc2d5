//! The `Verifier`: a token and the time in, a `Grant` or a `Failure` out.
//! Shared by every worker; the keys swap atomically on reload (SIGHUP).
//!
//! The order of checks: length, shape and JSON (`Jws::parse`), algorithm
//! and key choice, signature, claim types, then time, issuer, audience.
//! Claims are trusted only after the signature holds.

use std::sync::{Arc, PoisonError, RwLock};

use super::claims::{ClaimRules, Claims};
use super::jws::Jws;
use super::keys::KeySet;
use super::{Failure, Grant};
use crate::config;

/// The keys and the claim checks; reloadable (SIGHUP) while requests use it.
#[derive(Debug)]
pub(crate) struct Verifier {
    /// The current keys; a verification holds the read lock only to clone
    /// the `Arc`, so a reload never waits on signature checks.
    keys: RwLock<Arc<KeySet>>,
    /// Leeway, issuer and audience, fixed at startup.
    rules: ClaimRules,
}

impl Verifier {
    /// Loads the keys `cfg` names; the error names the key or file.
    pub(crate) fn new(cfg: &config::Auth) -> Result<Verifier, String> {
        Ok(Verifier {
            keys: RwLock::new(Arc::new(KeySet::load(cfg)?)),
            rules: ClaimRules {
                leeway_ms: cfg.leeway_ms,
                issuer: cfg.issuer.as_deref().map(Box::from),
                audience: cfg.audience.as_deref().map(Box::from),
            },
        })
    }

    /// Verifies `token` at `now_ms` (Unix milliseconds).
    pub(crate) fn verify(&self, token: &str, now_ms: u64) -> Result<Grant, Failure> {
        let jws = Jws::parse(token)?;
        let keys = self.keys();
        let candidates = keys.candidates(jws.alg, jws.kid.as_deref())?;
        let signed = candidates.into_iter().any(|key| {
            jsonwebtoken::crypto::verify(jws.signature, jws.signing_input.as_bytes(), key, jws.alg)
                .unwrap_or(false)
        });
        if !signed {
            return Err(Failure::Signature);
        }
        let claims = Claims::parse(jws.claims)?;
        claims.check(&self.rules, now_ms)?;
        Ok(claims.into_grant(token))
    }

    /// Takes the secret and key file from a freshly loaded `[auth]`
    /// section (SIGHUP); on error the old keys stay.
    ///
    /// Refuses a section that would turn auth off: that takes a restart,
    /// so that a bad edit cannot open the server. Leeway, issuer and
    /// audience stay as they were at startup.
    pub(crate) fn reload(&self, cfg: &config::Auth) -> Result<(), String> {
        if !cfg.enabled() {
            return Err("[auth] sets neither hs256_secret nor public_key_file; \
                 turning auth off takes a restart"
                .to_owned());
        }
        let fresh = Arc::new(KeySet::load(cfg)?);
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// What keys are loaded, for the startup and reload log lines.
    pub(crate) fn describe(&self) -> String {
        self.keys().describe()
    }

    /// The current key set.
    fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::thread;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::super::fixture::{self, Pair, TempDir};
    use super::*;

    const SECRET: &str = "a shared secret of reasonable length";
    /// 2023-11-14T22:13:20Z, in ms.
    const NOW_MS: u64 = 1_700_000_000_000;
    const NOW_S: u64 = NOW_MS / 1000;

    fn auth(secret: Option<&str>, file: Option<PathBuf>) -> config::Auth {
        config::Auth {
            hs256_secret: secret.map(str::to_owned),
            public_key_file: file,
            ..config::Auth::default()
        }
    }

    fn hs256(claims: &Value) -> String {
        sign(
            Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
    }

    fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
        encode(&header, claims, key).expect("encode")
    }

    fn signed_by(pair: &Pair, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(pair.alg);
        header.kid = kid.map(str::to_owned);
        sign(header, claims, &pair.encoding_key())
    }

    fn valid() -> Value {
        json!({"exp": NOW_S + 60, "subscribe": ["quotes.>"], "sub": "alice"})
    }

    /// A token with the given raw header and claims JSON, signed with the
    /// HS256 secret whatever the header says.
    fn raw_hs256(header: &str, claims: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{input}.{sig}")
    }

    #[test]
    fn an_hs256_token_becomes_a_grant() {
        let v = Verifier::new(&auth(Some(SECRET), None)).unwrap();
        let token = hs256(&json!({
            "exp": NOW_S + 60,
            "tenant": "acme",
            "subscribe": ["quotes.>"],
            "subscribe_delayed": ["news.>"],
            "publish": ["orders.*"],
            "jti": "t-1",
        }));
        let g = v.verify(&token, NOW_MS).unwrap();
        assert_eq!(g.tenant.as_deref(), Some("acme"));
        assert_eq!(g.exp_ms, (NOW_S + 60) * 1000);
        assert_eq!(&*g.holder, "t-1");
        assert_eq!(
            g.subscribe_access("quotes.NYSE.IBM"),
            super::super::Access::RealTime
        );
        assert!(g.may_publish("orders.x"));
        assert_eq!(v.describe(), "HS256 secret");
    }

    #[test]
    fn without_jti_or_sub_the_holder_is_the_token() {
        let v = Verifier::new(&auth(Some(SECRET), None)).unwrap();
        let token = hs256(&json!({"exp": NOW_S + 60}));
        assert_eq!(&*v.verify(&token, NOW_MS).unwrap().holder, token);
    }

    #[test]
    fn hs256_refusal_table() {
        let v = Verifier::new(&auth(Some(SECRET), None)).unwrap();
        let other = EncodingKey::from_secret(b"another secret").unwrap();
        let good = hs256(&valid());
        let (input, _) = good.rsplit_once('.').unwrap();
        let cases: Vec<(String, Failure)> = vec![
            (
                sign(Header::new(Algorithm::HS256), &valid(), &other),
                Failure::Signature,
            ),
            (format!("{input}.AAAA"), Failure::Signature),
            (format!("{input}."), Failure::Signature),
            (format!("{input}.!!!"), Failure::Malformed),
            (
                raw_hs256(r#"{"alg":"none"}"#, &valid().to_string()),
                Failure::Algorithm,
            ),
            (
                raw_hs256(r#"{"alg":"HS384"}"#, &valid().to_string()),
                Failure::Algorithm,
            ),
            (
                raw_hs256(r#"{"alg":"RS256"}"#, &valid().to_string()),
                Failure::Algorithm,
            ),
            (
                raw_hs256(r#"{"alg":"ES256"}"#, &valid().to_string()),
                Failure::Algorithm,
            ),
            (hs256(&json!({"sub": "no exp"})), Failure::Claims),
            (hs256(&json!({"exp": "soon"})), Failure::Claims),
            (hs256(&json!({"exp": -1})), Failure::Claims),
            (
                raw_hs256(r#"{"alg":"HS256"}"#, r#"{"exp":18446744073709551616}"#),
                Failure::Claims,
            ),
            (
                raw_hs256(r#"{"alg":"HS256"}"#, r#"{"exp":1e400}"#),
                Failure::Malformed,
            ),
            (
                hs256(&json!({"exp": NOW_S + 60, "tenant": "a.b"})),
                Failure::Claims,
            ),
            (
                hs256(&json!({"exp": NOW_S + 60, "publish": ["a.>.b"]})),
                Failure::Claims,
            ),
            (hs256(&json!({"exp": NOW_S})), Failure::Expired),
            (
                hs256(&json!({"exp": NOW_S + 60, "nbf": NOW_S + 1})),
                Failure::NotYetValid,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(v.verify(&token, NOW_MS).map(|_| ()), Err(want), "{token}");
        }
        // `alg: none` with no signature at all.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(valid().to_string())
        );
        assert_eq!(v.verify(&none, NOW_MS).map(|_| ()), Err(Failure::Algorithm));
    }

    #[test]
    fn hostile_claims_are_refused_without_panicking() {
        let v = Verifier::new(&auth(Some(SECRET), None)).unwrap();
        let deep = format!(
            r#"{{"exp":1,"x":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(
            v.verify(&raw_hs256(r#"{"alg":"HS256"}"#, &deep), NOW_MS)
                .map(|_| ()),
            Err(Failure::Malformed)
        );
        let huge = "A".repeat(60_000);
        assert_eq!(v.verify(&huge, NOW_MS).map(|_| ()), Err(Failure::Malformed));
        let padded = hs256(&json!({"exp": NOW_S + 60, "pad": "x".repeat(60_000)}));
        assert_eq!(
            v.verify(&padded, NOW_MS).map(|_| ()),
            Err(Failure::Malformed)
        );
    }

    #[test]
    fn time_edges_in_milliseconds_with_leeway() {
        let mut cfg = auth(Some(SECRET), None);
        cfg.leeway_ms = 1500;
        let v = Verifier::new(&cfg).unwrap();
        let exp = hs256(&json!({"exp": NOW_S}));
        assert!(v.verify(&exp, NOW_MS + 1499).is_ok());
        assert_eq!(
            v.verify(&exp, NOW_MS + 1500).map(|_| ()),
            Err(Failure::Expired)
        );
        let frac = hs256(&json!({"exp": NOW_S as f64 + 0.25}));
        assert!(v.verify(&frac, NOW_MS + 1749).is_ok());
        assert_eq!(
            v.verify(&frac, NOW_MS + 1750).map(|_| ()),
            Err(Failure::Expired)
        );
        let nbf = hs256(&json!({"exp": NOW_S + 60, "nbf": NOW_S + 10}));
        assert_eq!(
            v.verify(&nbf, NOW_MS + 8499).map(|_| ()),
            Err(Failure::NotYetValid)
        );
        assert!(v.verify(&nbf, NOW_MS + 8500).is_ok());
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let mut cfg = auth(Some(SECRET), None);
        cfg.issuer = Some("https://idp.example".into());
        cfg.audience = Some("ringcast".into());
        let v = Verifier::new(&cfg).unwrap();
        let claims =
            |iss: Value, aud: Value| hs256(&json!({"exp": NOW_S + 60, "iss": iss, "aud": aud}));
        let check = |t: String| v.verify(&t, NOW_MS).map(|_| ());
        assert_eq!(
            check(claims("https://idp.example".into(), "ringcast".into())),
            Ok(())
        );
        assert_eq!(
            check(claims(
                "https://idp.example".into(),
                json!(["a", "ringcast"])
            )),
            Ok(())
        );
        assert_eq!(
            check(claims("https://evil".into(), "ringcast".into())),
            Err(Failure::Issuer)
        );
        assert_eq!(
            check(claims("https://idp.example".into(), "other".into())),
            Err(Failure::Audience)
        );
        assert_eq!(
            check(hs256(&json!({"exp": NOW_S + 60}))),
            Err(Failure::Issuer)
        );
    }

    #[test]
    fn hs256_is_refused_when_only_public_keys_are_configured() {
        let f = fixture::keys();
        let dir = TempDir::new();
        let v = Verifier::new(&auth(None, Some(dir.write("k.pem", &f.rsa[0].public_pem)))).unwrap();
        assert_eq!(
            v.verify(&hs256(&valid()), NOW_MS).map(|_| ()),
            Err(Failure::Algorithm)
        );
        // The classic confusion: HMAC keyed with the public key's PEM text.
        let confused = sign(
            Header::new(Algorithm::HS256),
            &valid(),
            &EncodingKey::from_secret(f.rsa[0].public_pem.as_bytes()).unwrap(),
        );
        assert_eq!(
            v.verify(&confused, NOW_MS).map(|_| ()),
            Err(Failure::Algorithm)
        );
        assert_eq!(v.describe(), "1 RS256 key");
    }

    #[test]
    fn rs256_and_es256_from_multi_pem() {
        let f = fixture::keys();
        let dir = TempDir::new();
        let pem = format!("{}{}", f.rsa[0].public_pem, f.ec[0].certificate);
        let v = Verifier::new(&auth(Some(SECRET), Some(dir.write("k.pem", &pem)))).unwrap();
        assert_eq!(v.describe(), "HS256 secret, 1 RS256 key, 1 ES256 key");
        for pair in [&f.rsa[0], &f.ec[0]] {
            let token = signed_by(pair, None, &valid());
            assert_eq!(&*v.verify(&token, NOW_MS).unwrap().holder, "alice");
            // PEM keys have no kid: a token's kid falls back to them.
            let token = signed_by(pair, Some("whatever"), &valid());
            assert!(v.verify(&token, NOW_MS).is_ok());
        }
        for pair in [&f.rsa[1], &f.ec[1]] {
            let token = signed_by(pair, None, &valid());
            assert_eq!(
                v.verify(&token, NOW_MS).map(|_| ()),
                Err(Failure::Signature)
            );
        }
        assert!(v.verify(&hs256(&valid()), NOW_MS).is_ok());
        // The algorithm follows the key: an EC token claiming RS256 fails.
        let es = signed_by(&f.ec[0], None, &valid());
        let (_, rest) = es.split_once('.').unwrap();
        let relabelled = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#));
        assert_eq!(
            v.verify(&relabelled, NOW_MS).map(|_| ()),
            Err(Failure::Signature)
        );
    }

    #[test]
    fn jwks_selects_by_kid() {
        let f = fixture::keys();
        let dir = TempDir::new();
        let doc = json!({"keys": [f.rsa[0].jwk("r0"), f.rsa[1].jwk("r1"), f.ec[0].jwk("e0")]});
        let v = Verifier::new(&auth(None, Some(dir.write("jwks.json", &doc.to_string())))).unwrap();
        let check = |t: String| v.verify(&t, NOW_MS).map(|_| ());
        assert_eq!(check(signed_by(&f.rsa[0], Some("r0"), &valid())), Ok(()));
        assert_eq!(check(signed_by(&f.rsa[1], Some("r1"), &valid())), Ok(()));
        assert_eq!(check(signed_by(&f.ec[0], Some("e0"), &valid())), Ok(()));
        // Without kid every key of the kind is tried.
        assert_eq!(check(signed_by(&f.rsa[1], None, &valid())), Ok(()));
        assert_eq!(check(signed_by(&f.ec[0], None, &valid())), Ok(()));
        // A kid picks that key only.
        assert_eq!(
            check(signed_by(&f.rsa[1], Some("r0"), &valid())),
            Err(Failure::Signature)
        );
        assert_eq!(
            check(signed_by(&f.rsa[0], Some("r9"), &valid())),
            Err(Failure::UnknownKey)
        );
        assert_eq!(
            check(signed_by(&f.ec[1], None, &valid())),
            Err(Failure::Signature)
        );
        assert_eq!(check(hs256(&valid())), Err(Failure::Algorithm));
    }

    #[test]
    fn reload_swaps_keys_and_a_failed_reload_keeps_them() {
        let f = fixture::keys();
        let dir = TempDir::new();
        let path = dir.write("k.pem", &f.ec[0].public_pem);
        let v = Verifier::new(&auth(None, Some(path.clone()))).unwrap();
        let first = signed_by(&f.ec[0], None, &valid());
        let second = signed_by(&f.ec[1], None, &valid());
        assert!(v.verify(&first, NOW_MS).is_ok());
        assert_eq!(
            v.verify(&second, NOW_MS).map(|_| ()),
            Err(Failure::Signature)
        );

        dir.write("k.pem", &f.ec[1].public_pem);
        v.reload(&auth(None, Some(path.clone()))).unwrap();
        assert_eq!(
            v.verify(&first, NOW_MS).map(|_| ()),
            Err(Failure::Signature)
        );
        assert!(v.verify(&second, NOW_MS).is_ok());

        dir.write("k.pem", "garbage");
        let err = v.reload(&auth(None, Some(path.clone()))).unwrap_err();
        assert!(err.contains("k.pem"), "{err}");
        assert!(v.verify(&second, NOW_MS).is_ok(), "the old keys stay");

        let err = v.reload(&auth(None, None)).unwrap_err();
        assert!(err.contains("restart"), "{err}");
        assert!(v.verify(&second, NOW_MS).is_ok());

        // The secret is taken on reload too.
        v.reload(&auth(Some(SECRET), None)).unwrap();
        assert!(v.verify(&hs256(&valid()), NOW_MS).is_ok());
        assert_eq!(
            v.verify(&second, NOW_MS).map(|_| ()),
            Err(Failure::Algorithm)
        );
    }

    #[test]
    fn reload_while_other_threads_verify() {
        let dir = TempDir::new();
        let path = dir.write("k.pem", &fixture::keys().ec[0].public_pem);
        let v = Verifier::new(&auth(Some(SECRET), Some(path.clone()))).unwrap();
        let token = hs256(&valid());
        thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..200 {
                        assert!(v.verify(&token, NOW_MS).is_ok());
                    }
                });
            }
            for _ in 0..20 {
                v.reload(&auth(Some(SECRET), Some(path.clone()))).unwrap();
            }
        });
    }

    /// Arbitrary JSON values, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z.*>]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(claim_name(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Claim and header names we read, and one we do not.
    fn claim_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "exp",
            "nbf",
            "iss",
            "aud",
            "tenant",
            "subscribe",
            "subscribe_delayed",
            "publish",
            "jti",
            "sub",
            "alg",
            "kid",
            "crit",
            "other",
        ])
        .prop_map(str::to_owned)
    }

    fn json_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(claim_name(), json_value(), 0..8)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let v = Verifier::new(&auth(Some(SECRET), None)).unwrap();
            let s = String::from_utf8_lossy(&bytes);
            prop_assert!(v.verify(&s, NOW_MS).is_err());
        }

        #[test]
        fn arbitrary_signed_json_never_panics(
            header in json_object(),
            claims in json_object(),
            alg in prop::sample::select(vec!["HS256", "RS256", "ES256", "none", "HS512"]),
            now_ms in any::<u64>(),
        ) {
            let mut header = header;
            if header.get("alg").is_none() {
                header["alg"] = Value::from(alg);
            }
            let v = Verifier::new(&auth(Some(SECRET), None)).unwrap();
            let token = raw_hs256(&header.to_string(), &claims.to_string());
            if let Ok(grant) = v.verify(&token, now_ms) {
                prop_assert!(now_ms < grant.exp_ms);
                for p in grant.subscribe.iter().chain(&grant.publish).chain(&grant.subscribe_delayed) {
                    prop_assert!(crate::topic::validate_pattern(p).is_ok());
                }
            }
        }
    }
}
