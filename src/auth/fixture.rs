//! Test keys, made once per test run by the `openssl` command line (RSA
//! 2048 and EC P-256 pairs, a P-384 key, self-signed certificates), and
//! temporary directories to write key files into.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub(crate) fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringcast-auth-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` with `text`; its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        self.write_bytes(name, text.as_bytes())
    }

    /// Writes `name` with `bytes`; its path.
    pub(crate) fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One key pair in the forms the tests need.
pub(crate) struct Pair {
    /// RS256 or ES256.
    pub(crate) alg: Algorithm,
    /// PKCS#8 `PRIVATE KEY`.
    pub(crate) private_pem: String,
    /// SPKI `PUBLIC KEY`.
    pub(crate) public_pem: String,
    /// PKCS#1 `RSA PUBLIC KEY` (RSA pairs only; empty for EC).
    pub(crate) pkcs1_pem: String,
    /// A self-signed X.509 certificate for the key.
    pub(crate) certificate: String,
}

impl Pair {
    /// The signing key, for `jsonwebtoken::encode`.
    pub(crate) fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(self.private_pem.as_bytes()),
        }
        .expect("fixture key loads")
    }

    /// The public key as a JWK with `kid`.
    pub(crate) fn jwk(&self, kid: &str) -> Value {
        let jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg).expect("jwk");
        let mut v = serde_json::to_value(jwk).expect("jwk json");
        v["kid"] = Value::from(kid);
        v
    }
}

/// The fixture keys.
pub(crate) struct Keys {
    /// Two RSA 2048 pairs.
    pub(crate) rsa: [Pair; 2],
    /// Two EC P-256 pairs.
    pub(crate) ec: [Pair; 2],
    /// An EC P-384 public key, which we do not accept.
    pub(crate) p384_public_pem: String,
}

/// The keys, generated on first use.
pub(crate) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = TempDir::new();
        let rsa = "rsa_keygen_bits:2048";
        let ec = "ec_paramgen_curve:P-256";
        Keys {
            rsa: [pair(&dir, "r0", "RSA", rsa), pair(&dir, "r1", "RSA", rsa)],
            ec: [pair(&dir, "e0", "EC", ec), pair(&dir, "e1", "EC", ec)],
            p384_public_pem: pair(&dir, "p384", "EC", "ec_paramgen_curve:P-384").public_pem,
        }
    })
}

fn pair(dir: &TempDir, name: &str, algorithm: &str, option: &str) -> Pair {
    let private = dir.path().join(format!("{name}.key"));
    let private_s = private.to_str().expect("utf-8 temp path");
    openssl(&[
        "genpkey",
        "-algorithm",
        algorithm,
        "-pkeyopt",
        option,
        "-out",
        private_s,
    ]);
    let public_pem = openssl(&["pkey", "-in", private_s, "-pubout"]);
    let is_rsa = algorithm == "RSA";
    let pkcs1_pem = if is_rsa {
        openssl(&["rsa", "-in", private_s, "-RSAPublicKey_out"])
    } else {
        String::new()
    };
    let certificate = openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        private_s,
        "-subj",
        "/CN=ringcast test",
        "-days",
        "1",
    ]);
    Pair {
        alg: if is_rsa {
            Algorithm::RS256
        } else {
            Algorithm::ES256
        },
        private_pem: std::fs::read_to_string(&private).expect("read private key"),
        public_pem,
        pkcs1_pem,
        certificate,
    }
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("openssl prints text")
}
