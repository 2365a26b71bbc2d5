//! Cluster mode over TLS to NATS (docs/cluster.md; `cluster.tls_ca_file`,
//! `cluster.tls_cert_file`, `cluster.tls_key_file`): a nats-server that
//! requires TLS and verifies client certificates (`--tlsverify`), with a
//! private CA made by openssl. Nodes with the CA and a client certificate
//! reach JetStream and share events; a node without a client certificate,
//! and one trusting another CA, never become ready and refuse publishes.
//! Needs nats-server and openssl (`.ci/run` installs them); in CI a missing
//! one fails the test, on a developer machine it is reported and skipped.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::nats::{self, wait_readyz, Nats};
use support::*;

fn openssl_ready() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    require(ok, "openssl", "apt-get install openssl")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private PKI in a temporary directory, removed on drop (kept when the
/// test fails): `ca.pem` signs `server.pem` (for 127.0.0.1) and
/// `client.pem`; `other-ca.pem` is a second CA that signed nothing.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringcast-pki-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for ca in ["ca", "other-ca"] {
            let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
            let subj = format!("/CN=ringcast test {ca}");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "1"];
            args.extend(ec);
            args.extend(["-subj", &subj, "-keyout", &key]);
            args.extend(["-out", &pem]);
            openssl(&dir, &args);
        }
        for (name, serial, ext) in [
            (
                "server",
                "2",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "3", "extendedKeyUsage=clientAuth\n"),
        ] {
            let (key, csr, pem, extfile) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            std::fs::write(dir.join(&extfile), ext).unwrap();
            let subj = format!("/CN=ringcast test {name}");
            let mut args = vec!["req", "-new", "-nodes"];
            args.extend(ec);
            args.extend(["-subj", &subj, "-keyout", &key, "-out", &csr]);
            openssl(&dir, &args);
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    serial,
                    "-days",
                    "1",
                    "-sha256",
                    "-extfile",
                    &extfile,
                    "-out",
                    &pem,
                ],
            );
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    /// nats-server with JetStream, requiring TLS with `server.pem` and a
    /// client certificate signed by `ca.pem`.
    fn nats(&self) -> Nats {
        let (cert, key, ca) = (
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
        );
        Nats::start_with(&[
            "--tls",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--tlscacert",
            &ca,
            "--tlsverify",
        ])
    }

    /// A node on `nats` trusting `ca` (a file in here), with the client
    /// certificate when `client_cert`; returned at once, ready or not.
    fn node(&self, nats: &Nats, ca: &str, client_cert: bool) -> Server {
        let mut toml = format!(
            "[cluster]\nnats_url = \"{}\"\ntls_ca_file = \"{}\"\n",
            nats.url(),
            self.path(ca)
        );
        if client_cert {
            toml.push_str(&format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                self.path("client.pem"),
                self.path("client.key")
            ));
        }
        Server::start_with(&toml, &["--workers", "2"], &[])
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("certificates kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn ready() -> bool {
    nats::available() && openssl_ready()
}

/// How many TLS handshakes nats-server has refused or seen fail so far.
fn handshake_errors(nats: &Nats) -> usize {
    nats.log().matches("TLS handshake error").count()
}

/// A node that cannot complete the TLS handshake with nats-server: once
/// nats-server has logged its failed handshake, the node stays unready for
/// a while (a bounded look: nothing announces "never"), reports itself
/// disconnected, and answers publishes with 503.
fn assert_never_ready(nats: &Nats, start: impl FnOnce() -> Server) {
    let before = handshake_errors(nats);
    let s = start();
    let deadline = Instant::now() + TIMEOUT;
    while handshake_errors(nats) == before {
        assert!(
            Instant::now() < deadline,
            "no failed TLS handshake in the nats-server log:\n{}",
            nats.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        let r = get(s.addr(), "/readyz");
        assert_eq!(
            r.status,
            503,
            "/readyz after {:?}; log:\n{}",
            watch.elapsed(),
            s.stderr.lock().unwrap()
        );
        assert_eq!(s.metric("ringcast_cluster_connected"), 0.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = post(s.addr(), "/publish?topic=t.a", "text/plain", b"refused");
    r.assert_error(503);
}

/// Two nodes with the CA and a client certificate reach JetStream over
/// mutual TLS; an event published on one reaches a subscriber on the other.
#[test]
fn nodes_with_ca_and_client_certificate_share_events_over_tls() {
    if !ready() {
        return;
    }
    let pki = Pki::new();
    let nats = pki.nats();
    let (a, b) = (
        pki.node(&nats, "ca.pem", true),
        pki.node(&nats, "ca.pem", true),
    );
    wait_readyz(&a, 200, TIMEOUT);
    wait_readyz(&b, 200, TIMEOUT);
    assert_eq!(a.metric("ringcast_cluster_connected"), 1.0);
    let mut sub = Sse::open(b.addr(), "topic=t.a");
    assert_eq!(sub.status, 200, "{}", sub.head);
    wait_subscribers(&b, 1);
    let r = post(a.addr(), "/publish?topic=t.a", "text/plain", b"over tls");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), serde_json::json!({"id": "1"}));
    let ev = sub.next_event().expect("the event on the other node");
    assert_eq!((ev.id.as_str(), ev.data.as_str()), ("1", "over tls"));
}

/// With only the CA, the node has no certificate to show, and nats-server
/// (`--tlsverify`) refuses it.
#[test]
fn node_without_client_certificate_never_becomes_ready() {
    if !ready() {
        return;
    }
    let pki = Pki::new();
    let nats = pki.nats();
    assert_never_ready(&nats, || pki.node(&nats, "ca.pem", false));
}

/// Trusting a CA that did not sign nats-server's certificate, the node
/// refuses the server (its client certificate is a good one).
#[test]
fn node_trusting_another_ca_never_becomes_ready() {
    if !ready() {
        return;
    }
    let pki = Pki::new();
    let nats = pki.nats();
    assert_never_ready(&nats, || pki.node(&nats, "other-ca.pem", true));
}
