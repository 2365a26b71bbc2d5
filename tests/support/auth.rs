//! Tokens for the auth tests (SPEC §5): HS256 with a shared secret, RS256
//! and ES256 with keys the `openssl` CLI makes, hand-made `alg: none`
//! tokens, and `ringcast_auth_failures_total` read by reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::{enc, post_with, Response, Server, Sse, TIMEOUT};

/// The secret of `hs256_config` servers.
pub const SECRET: &str = "ringcast-test-secret-0123456789abcdef";

/// Every label of `ringcast_auth_failures_total`.
pub const REASONS: [&str; 10] = [
    "missing",
    "malformed",
    "algorithm",
    "unknown_key",
    "signature",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "claims",
];

/// An `[auth]` section with `SECRET`, followed by `extra` (more `[auth]`
/// keys, then any other sections).
pub fn hs256_config(extra: &str) -> String {
    format!("[auth]\nhs256_secret = \"{SECRET}\"\n{extra}")
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for a minute, with `extra` merged over them.
pub fn claims(extra: Value) -> Value {
    merge(json!({ "exp": now_s() + 60 }), extra)
}

/// `base` with the members of `extra` set over it; a `null` member removes
/// that claim.
pub fn merge(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("claims are an object") {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

pub fn hs256(claims: &Value) -> String {
    hs256_with(SECRET.as_bytes(), claims)
}

pub fn hs256_with(secret: &[u8], claims: &Value) -> String {
    sign(Algorithm::HS256, secret, claims)
}

/// A token with any HMAC algorithm (HS384 for the algorithm whitelist).
pub fn sign(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// An unsigned `alg: none` token (no library will make one).
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

pub fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// The value of an `Authorization` header carrying `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// True when the `openssl` CLI is there (it makes the RS256/ES256 keys).
pub fn openssl_ready() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    super::require(ok, "openssl", "apt-get install openssl")
}

/// A key pair made by `openssl genpkey`.
pub struct Key {
    pub alg: Algorithm,
    /// PKCS#8 PEM, as `genpkey` writes it.
    private_pem: Vec<u8>,
    /// `-----BEGIN PUBLIC KEY-----` PEM, for `auth.public_key_file`.
    pub public_pem: String,
}

impl Key {
    /// An RSA 2048 key for RS256.
    pub fn rsa() -> Key {
        Self::generate(
            Algorithm::RS256,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        )
    }

    /// A P-256 key for ES256.
    pub fn ec() -> Key {
        Self::generate(
            Algorithm::ES256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }

    fn generate(alg: Algorithm, args: &[&str]) -> Key {
        let path = super::unique("key.pem");
        let out = Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl genpkey: {out:?}");
        let private_pem = std::fs::read(&path).unwrap();
        let out = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&path)
            .output()
            .expect("run openssl");
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "openssl pkey: {out:?}");
        Key {
            alg,
            private_pem,
            public_pem: String::from_utf8(out.stdout).unwrap(),
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem),
            _ => EncodingKey::from_rsa_pem(&self.private_pem),
        }
        .unwrap()
    }

    /// A token signed with this key, no `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        encode(&Header::new(self.alg), claims, &self.encoding_key()).unwrap()
    }

    /// A token signed with this key under algorithm `alg` (same family).
    pub fn sign_as(&self, alg: Algorithm, claims: &Value) -> String {
        encode(&Header::new(alg), claims, &self.encoding_key()).unwrap()
    }

    /// A token signed with this key whose header names key `kid`.
    pub fn sign_kid(&self, kid: &str, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(kid.to_owned());
        encode(&h, claims, &self.encoding_key()).unwrap()
    }

    /// The public key as a JWK with `kid`, for a JWKS document.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        serde_json::to_value(jwk).unwrap()
    }
}

/// Replaces `path`'s contents in one step (write beside it, then rename),
/// so a reload never reads half a file.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Subscribes with `token` as a Bearer token; the stream must be accepted.
pub fn subscribe(addr: SocketAddr, query: &str, token: &str) -> Sse {
    let sse = Sse::open_with(addr, query, &[("Authorization", &bearer(token))]);
    assert_eq!(sse.status, 200, "{query}: {}", sse.head);
    sse
}

/// The error answer to a subscription with `token` (which must be refused).
pub fn subscribe_refused(addr: SocketAddr, query: &str, token: &str) -> Response {
    Sse::refused(addr, query, &[("Authorization", &bearer(token))])
}

/// `POST /publish?topic=` with `token` as a Bearer token, whatever the answer.
pub fn try_publish(addr: SocketAddr, token: &str, topic: &str, data: &str) -> Response {
    post_with(
        addr,
        &format!("/publish?topic={}", enc(topic)),
        "text/plain",
        &[("Authorization", &bearer(token))],
        data.as_bytes(),
    )
}

/// Publishes with `token`, which must be accepted; returns the event's id.
pub fn publish_as(addr: SocketAddr, token: &str, topic: &str, data: &str) -> u64 {
    let r = try_publish(addr, token, topic, data);
    assert_eq!(
        r.status,
        200,
        "{topic}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().parse().unwrap()
}

/// An ndjson batch of `(topic, data)` with `token`, whatever the answer.
pub fn try_publish_batch(addr: SocketAddr, token: &str, events: &[(&str, &str)]) -> Response {
    let body: String = events
        .iter()
        .map(|(t, d)| json!({"topic": t, "data": d}).to_string() + "\n")
        .collect();
    post_with(
        addr,
        "/publish",
        "application/x-ndjson",
        &[("Authorization", &bearer(token))],
        body.as_bytes(),
    )
}

/// `ringcast_auth_failures_total` by reason.
pub fn failures(server: &Server) -> BTreeMap<String, f64> {
    REASONS
        .iter()
        .map(|r| {
            let v = server.metric(&format!("ringcast_auth_failures_total{{reason=\"{r}\"}}"));
            (r.to_string(), v)
        })
        .collect()
}

/// The reason of the one refusal counted since `before` (waits, bounded,
/// for the counter; panics unless exactly one reason grew by exactly one).
pub fn new_failure(server: &Server, before: &BTreeMap<String, f64>) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = failures(server);
        let grown: Vec<(&String, f64)> = now
            .iter()
            .map(|(k, v)| (k, v - before[k]))
            .filter(|(_, d)| *d != 0.0)
            .collect();
        match grown.as_slice() {
            [(reason, d)] if *d == 1.0 => return reason.to_string(),
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(25)),
            _ => panic!("expected one more refusal, counters moved by {grown:?}"),
        }
    }
}

/// Sleeps until the wall clock reads `unix_ms` (expiry is wall-clock time).
pub fn sleep_until_unix_ms(unix_ms: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    if unix_ms > now {
        std::thread::sleep(Duration::from_millis(unix_ms - now));
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
