//! The key set: `[auth]` in (the HS256 secret, the public key file as PEM
//! blocks or a JWKS document), the keys a token may be checked against out.
//!
//! The algorithm follows the key, never the token: an RSA key verifies
//! only RS256, an EC P-256 key only ES256, the secret only HS256, so an
//! HS256 token is never checked against a public key.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::Deserialize;

use super::Failure;
use crate::config;

/// Most public keys a key file may hold: a token without `kid` is tried
/// against every key of its kind, so this bounds the work one token costs.
pub(crate) const MAX_KEYS: usize = 32;

/// Largest key file read, in bytes.
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// The keys tokens are verified with; immutable, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct KeySet {
    /// The HS256 secret, when configured.
    hs256: Option<DecodingKey>,
    /// RS256 and ES256 keys from the key file, in file order.
    public: Vec<PublicKey>,
}

/// One key from the key file.
#[derive(Debug)]
struct PublicKey {
    /// The JWKS `kid`; PEM keys have none.
    kid: Option<Box<str>>,
    /// RS256 for RSA keys, ES256 for EC P-256 keys.
    alg: Algorithm,
    key: DecodingKey,
}

impl KeySet {
    /// Loads the secret and the key file `cfg` names; the error names the
    /// file and what is wrong with it.
    pub(crate) fn load(cfg: &config::Auth) -> Result<KeySet, String> {
        let hs256 = match cfg.hs256_secret.as_deref() {
            None => None,
            Some("") => return Err("auth.hs256_secret is empty".to_owned()),
            Some(secret) => Some(
                DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| format!("auth.hs256_secret: {e}"))?,
            ),
        };
        let public = match cfg.public_key_file.as_deref() {
            None => Vec::new(),
            Some(path) => {
                let shown = path.display();
                let text = read_key_file(path).map_err(|e| format!("{shown}: {e}"))?;
                let keys = if text.trim_start().starts_with('{') {
                    parse_jwks(&text)
                } else {
                    parse_pem(&text)
                };
                let keys = keys.map_err(|e| format!("{shown}: {e}"))?;
                if keys.is_empty() {
                    return Err(format!(
                        "{shown}: no RSA or EC P-256 public key found (PEM or JWKS)"
                    ));
                }
                if keys.len() > MAX_KEYS {
                    return Err(format!(
                        "{shown}: {} keys, more than the {MAX_KEYS} allowed",
                        keys.len()
                    ));
                }
                keys
            }
        };
        if hs256.is_none() && public.is_empty() {
            return Err("[auth] names no key: set hs256_secret or public_key_file".to_owned());
        }
        Ok(KeySet { hs256, public })
    }

    /// The keys a token signed with `alg` (and naming `kid`) is checked
    /// against: `Algorithm` when no key of that kind is configured,
    /// `UnknownKey` when `kid` names none and no key lacks a kid.
    pub(crate) fn candidates(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<&DecodingKey>, Failure> {
        if alg == Algorithm::HS256 {
            // The secret has no kid: every HS256 token falls back to it.
            return self
                .hs256
                .as_ref()
                .map(|k| vec![k])
                .ok_or(Failure::Algorithm);
        }
        let of_kind = || self.public.iter().filter(move |k| k.alg == alg);
        if of_kind().next().is_none() {
            return Err(Failure::Algorithm);
        }
        let chosen: Vec<&DecodingKey> = match kid {
            None => of_kind().map(|k| &k.key).collect(),
            Some(kid) => {
                let named: Vec<_> = of_kind()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .map(|k| &k.key)
                    .collect();
                if named.is_empty() {
                    of_kind()
                        .filter(|k| k.kid.is_none())
                        .map(|k| &k.key)
                        .collect()
                } else {
                    named
                }
            }
        };
        if chosen.is_empty() {
            return Err(Failure::UnknownKey);
        }
        Ok(chosen)
    }

    /// How many public keys of each kind: (RS256, ES256).
    pub(crate) fn public_key_counts(&self) -> (usize, usize) {
        let count = |alg| self.public.iter().filter(|k| k.alg == alg).count();
        (count(Algorithm::RS256), count(Algorithm::ES256))
    }

    /// What is loaded, for the startup and reload log line, e.g.
    /// `HS256 secret, 2 RS256 keys, 1 ES256 key`.
    pub(crate) fn describe(&self) -> String {
        let (rs, es) = self.public_key_counts();
        let mut parts = Vec::new();
        if self.hs256.is_some() {
            parts.push("HS256 secret".to_owned());
        }
        for (n, alg) in [(rs, "RS256"), (es, "ES256")] {
            match n {
                0 => {}
                1 => parts.push(format!("1 {alg} key")),
                n => parts.push(format!("{n} {alg} keys")),
            }
        }
        parts.join(", ")
    }
}

/// The file as UTF-8 text, at most `MAX_KEY_FILE_BYTES`.
fn read_key_file(path: &Path) -> Result<String, String> {
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!("larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text (PEM or JWKS expected)".to_owned())
}

/// Every PEM block in `text`; text around the blocks is ignored, as
/// OpenSSL does.
fn parse_pem(text: &str) -> Result<Vec<PublicKey>, String> {
    const BEGIN: &str = "-----BEGIN ";
    let mut keys = Vec::new();
    let mut rest = text;
    let mut number = 0;
    while let Some(start) = rest.find(BEGIN) {
        number += 1;
        let after = &rest[start + BEGIN.len()..];
        let label_len = after
            .find("-----")
            .filter(|&n| !after[..n].contains('\n'))
            .ok_or_else(|| format!("PEM block {number}: bad BEGIN line"))?;
        let label = &after[..label_len];
        let end_line = format!("-----END {label}-----");
        let end = after
            .find(&end_line)
            .ok_or_else(|| format!("PEM block {number} ({label}): no END line"))?
            + end_line.len();
        let block = &rest[start..start + BEGIN.len() + end];
        keys.push(pem_key(label, block).map_err(|e| format!("PEM block {number} ({label}): {e}"))?);
        rest = &after[end..];
    }
    Ok(keys)
}

/// One PEM block: an RSA key (PKCS#1 or SPKI), an EC P-256 key (SPKI), or
/// the public key of an X.509 certificate (the certificate itself — its
/// validity, issuer, chain — is not checked).
fn pem_key(label: &str, block: &str) -> Result<PublicKey, String> {
    match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {}
        l if l.contains("PRIVATE KEY") => {
            return Err("a private key; the file must hold public keys only".to_owned())
        }
        _ => return Err("not a public key or certificate".to_owned()),
    }
    if let Ok(rsa) = DecodingKey::from_rsa_pem(block.as_bytes()) {
        let der = rsa
            .try_get_as_bytes()
            .map_err(|e| format!("bad RSA key: {e}"))?;
        let (n, e) = (provider()?.key_utils.rsa_pub_components_from_public_key)(der)
            .map_err(|e| format!("bad RSA key: {e}"))?;
        return Ok(PublicKey {
            kid: None,
            alg: Algorithm::RS256,
            key: DecodingKey::from_rsa_raw_components(&n, &e),
        });
    }
    if let Ok(ec) = DecodingKey::from_ec_pem(block.as_bytes()) {
        check_p256(&ec)?;
        return Ok(PublicKey {
            kid: None,
            alg: Algorithm::ES256,
            key: ec,
        });
    }
    Err("bad PEM, or neither an RSA nor an EC public key".to_owned())
}

/// A JWKS document, as published by identity providers.
#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK we read (RFC 7517, 7518 §6).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// The RSA and EC P-256 signing keys of a JWKS document. Entries of other
/// kinds (`oct`, `OKP`, other curves, `use: enc`, an `alg` other than
/// RS256/ES256) are skipped, since providers publish those side by side;
/// a malformed entry of a kind we use is an error.
fn parse_jwks(text: &str) -> Result<Vec<PublicKey>, String> {
    let doc: Jwks = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (i, entry) in doc.keys.into_iter().enumerate() {
        let mut name = format!("JWKS entry {}", i + 1);
        if let Some(kid) = entry.get("kid").and_then(|k| k.as_str()) {
            let _ = write!(name, " (kid {kid:?})");
        }
        let jwk: Jwk = serde_json::from_value(entry).map_err(|e| format!("{name}: {e}"))?;
        if let Some(key) = jwk_key(jwk).map_err(|e| format!("{name}: {e}"))? {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// One JWK as a key, `None` for a kind we skip.
fn jwk_key(jwk: Jwk) -> Result<Option<PublicKey>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let (alg, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
                return Ok(None);
            }
            let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                return Err("an RSA key needs n and e".to_owned());
            };
            let key = DecodingKey::from_rsa_components(n, e)
                .map_err(|e| format!("bad RSA n or e: {e}"))?;
            match key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, e } if !n.is_empty() && !e.is_empty() => {}
                _ => return Err("bad RSA n or e: empty".to_owned()),
            }
            (Algorithm::RS256, key)
        }
        ("EC", Some("P-256")) => {
            if jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
                return Ok(None);
            }
            let (Some(x), Some(y)) = (&jwk.x, &jwk.y) else {
                return Err("an EC key needs x and y".to_owned());
            };
            let key =
                DecodingKey::from_ec_components(x, y).map_err(|e| format!("bad EC x or y: {e}"))?;
            check_p256(&key)?;
            (Algorithm::ES256, key)
        }
        _ => return Ok(None),
    };
    Ok(Some(PublicKey {
        kid: jwk.kid.map(String::into_boxed_str),
        alg,
        key,
    }))
}

/// The process's `jsonwebtoken` crypto provider (RustCrypto, by feature).
fn provider() -> Result<&'static CryptoProvider, String> {
    CryptoProvider::try_get_default().ok_or_else(|| "no jsonwebtoken crypto provider".to_owned())
}

/// Is `key` a point on P-256? Checked at load so that a P-384 key or a
/// bad point is a configuration error, not a refusal of every token.
fn check_p256(key: &DecodingKey) -> Result<(), String> {
    (provider()?.verifier_factory)(&Algorithm::ES256, key)
        .map(drop)
        .map_err(|_| "not an EC P-256 public key".to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::fixture::{self, TempDir};
    use super::*;

    fn cfg(secret: Option<&str>, file: Option<PathBuf>) -> config::Auth {
        config::Auth {
            hs256_secret: secret.map(str::to_owned),
            public_key_file: file,
            ..config::Auth::default()
        }
    }

    fn load_text(dir: &TempDir, name: &str, text: &str) -> Result<KeySet, String> {
        KeySet::load(&cfg(None, Some(dir.write(name, text))))
    }

    #[test]
    fn a_secret_alone_serves_only_hs256() {
        let keys = KeySet::load(&cfg(Some("s3cret"), None)).unwrap();
        assert_eq!(keys.candidates(Algorithm::HS256, None).unwrap().len(), 1);
        assert_eq!(
            keys.candidates(Algorithm::HS256, Some("any"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            keys.candidates(Algorithm::RS256, None).err(),
            Some(Failure::Algorithm)
        );
        assert_eq!(
            keys.candidates(Algorithm::ES256, None).err(),
            Some(Failure::Algorithm)
        );
    }

    #[test]
    fn no_key_or_an_empty_secret_is_an_error() {
        assert!(KeySet::load(&cfg(None, None))
            .unwrap_err()
            .contains("names no key"));
        assert!(KeySet::load(&cfg(Some(""), None))
            .unwrap_err()
            .contains("empty"));
    }

    #[test]
    fn multi_pem_holds_rsa_ec_and_certificates() {
        let f = fixture::keys();
        let dir = TempDir::new();
        let text = format!(
            "comment lines are ignored\n{}{}{}\n{}",
            f.rsa[0].public_pem, f.ec[0].public_pem, f.rsa[1].pkcs1_pem, f.ec[1].certificate
        );
        let keys = load_text(&dir, "multi.pem", &text).unwrap();
        assert_eq!(keys.public_key_counts(), (2, 2));
        assert_eq!(
            keys.candidates(Algorithm::HS256, None).err(),
            Some(Failure::Algorithm)
        );
        // PEM keys have no kid: any kid falls back to them.
        assert_eq!(
            keys.candidates(Algorithm::RS256, Some("x")).unwrap().len(),
            2
        );
        assert_eq!(keys.candidates(Algorithm::ES256, None).unwrap().len(), 2);
        let cert = load_text(&dir, "cert.pem", &f.rsa[0].certificate).unwrap();
        assert_eq!(cert.public_key_counts(), (1, 0));
    }

    #[test]
    fn jwks_keys_are_chosen_by_kid() {
        let f = fixture::keys();
        let dir = TempDir::new();
        let doc = serde_json::json!({"keys": [
            f.rsa[0].jwk("r0"),
            f.rsa[1].jwk("r1"),
            f.ec[0].jwk("e0"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "skipped"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
        ]});
        let keys = load_text(&dir, "jwks.json", &doc.to_string()).unwrap();
        assert_eq!(keys.public_key_counts(), (2, 1));
        assert_eq!(keys.candidates(Algorithm::RS256, None).unwrap().len(), 2);
        assert_eq!(
            keys.candidates(Algorithm::RS256, Some("r1")).unwrap().len(),
            1
        );
        assert_eq!(
            keys.candidates(Algorithm::RS256, Some("e0")).err(),
            Some(Failure::UnknownKey),
            "a kid of the other kind names no RS256 key"
        );
        assert_eq!(
            keys.candidates(Algorithm::RS256, Some("nope")).err(),
            Some(Failure::UnknownKey)
        );
        assert_eq!(
            keys.candidates(Algorithm::ES256, Some("e0")).unwrap().len(),
            1
        );
    }

    #[test]
    fn key_file_error_table() {
        let f = fixture::keys();
        let dir = TempDir::new();
        let good_rsa = f.rsa[0].jwk("r0");
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty.pem", String::new(), "no RSA or EC P-256 public key found"),
            ("text.pem", "hello\n".into(), "no RSA or EC P-256 public key found"),
            ("private.pem", f.ec[0].private_pem.clone(), "PEM block 1 (PRIVATE KEY): a private key"),
            (
                "second.pem",
                format!("{}{}", f.rsa[0].public_pem, f.rsa[0].private_pem),
                "PEM block 2 (PRIVATE KEY)",
            ),
            (
                "garbled.pem",
                "-----BEGIN PUBLIC KEY-----\nAAAA!!\n-----END PUBLIC KEY-----\n".into(),
                "PEM block 1 (PUBLIC KEY): bad PEM",
            ),
            (
                "unterminated.pem",
                f.rsa[0].public_pem.replace("-----END PUBLIC KEY-----", ""),
                "no END line",
            ),
            (
                "params.pem",
                "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n".into(),
                "not a public key",
            ),
            ("p384.pem", f.p384_public_pem.clone(), "not an EC P-256 public key"),
            ("notjwks.json", "{\"kays\": []}".into(), "not a JWKS document"),
            ("emptyjwks.json", "{\"keys\": []}".into(), "no RSA or EC P-256 public key found"),
            (
                "badentry.json",
                serde_json::json!({"keys": [good_rsa, {"kty": "RSA", "kid": "k2", "n": "!!", "e": "AQAB"}]})
                    .to_string(),
                "JWKS entry 2 (kid \"k2\"): bad RSA n or e",
            ),
            (
                "noe.json",
                r#"{"keys": [{"kty": "RSA", "n": "AQAB"}]}"#.into(),
                "JWKS entry 1: an RSA key needs n and e",
            ),
            (
                "badpoint.json",
                r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}"#.into(),
                "JWKS entry 1: not an EC P-256 public key",
            ),
            ("notype.json", r#"{"keys": [{"n": "AQAB"}]}"#.into(), "JWKS entry 1: missing field `kty`"),
        ];
        for (name, text, want) in cases {
            let err = load_text(&dir, name, &text).err().unwrap_or_default();
            assert!(
                err.contains(name),
                "{name}: the error names the file: {err}"
            );
            assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
        }
        let missing = dir.path().join("absent.pem");
        let err = KeySet::load(&cfg(None, Some(missing))).unwrap_err();
        assert!(err.contains("absent.pem: cannot read"), "{err}");
        let binary = dir.write_bytes("binary.pem", &[0xff, 0xfe, 0]);
        let err = KeySet::load(&cfg(None, Some(binary))).unwrap_err();
        assert!(err.contains("not UTF-8"), "{err}");
        let many = f.ec[0].public_pem.repeat(MAX_KEYS + 1);
        let err = load_text(&dir, "many.pem", &many).unwrap_err();
        assert!(err.contains("more than the 32 allowed"), "{err}");
    }
}
