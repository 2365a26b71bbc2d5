//! A real `nats-server -js` for the cluster tests (SPEC §8): private ports
//! and store directory, readiness from its monitoring endpoint, stop and
//! restart on the same port and store (an outage JetStream survives), a
//! raw NATS client request (to delete a stream), and ringcast nodes on it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, get, Server, TIMEOUT};

/// A ringcast node on `nats` with `toml` for its other sections and
/// `cluster` for more `[cluster]` keys; returns once `/readyz` says 200.
pub fn node_with(nats: &Nats, toml: &str, cluster: &str) -> Server {
    let toml = format!(
        "{toml}\n[cluster]\nnats_url = \"{}\"\n{cluster}\n",
        nats.url()
    );
    let s = Server::start_with(&toml, &["--workers", "2"], &[]);
    wait_readyz(&s, 200, TIMEOUT);
    s
}

pub fn node(nats: &Nats, toml: &str) -> Server {
    node_with(nats, toml, "")
}

/// Polls `/readyz` until it answers `status`. Readiness (reaching
/// JetStream) has no other observable event, so a poll with a deadline it is.
pub fn wait_readyz(s: &Server, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = get(s.addr(), "/readyz").status;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {got}, not {status}, after {within:?}; log:\n{}",
            s.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The binary: `nats-server` on PATH, else where Debian's package puts it.
fn binary() -> Option<&'static str> {
    ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// True when nats-server is installed; fails the test in CI when it is
/// not, skips it elsewhere (see `support::require`).
pub fn available() -> bool {
    super::require(
        binary().is_some(),
        "nats-server",
        "apt-get install nats-server",
    )
}

/// One nats-server with JetStream. Killed, and its directory removed, on drop.
pub struct Nats {
    /// `None` while stopped.
    child: Option<Child>,
    /// Client port; kept across `restart` so that nodes find it again.
    port: u16,
    /// HTTP monitoring port, for `/healthz`.
    monitor: u16,
    /// Holds `store/` (JetStream's files, kept across `restart`) and `nats.log`.
    dir: PathBuf,
    /// More command-line arguments (`start_with`), kept across `restart`.
    extra: Vec<String>,
}

impl Nats {
    /// Starts a nats-server on fresh ports with an empty store; returns once
    /// JetStream is enabled. Ports are picked by binding port 0 and
    /// releasing it, so another process may take one in between: then
    /// nats-server exits and this tries other ports.
    pub fn start() -> Nats {
        Self::start_with(&[])
    }

    /// `start` with more nats-server arguments, e.g. `--tls ...`. With
    /// TLS required, `request` (plain TCP) does not work.
    pub fn start_with(extra: &[&str]) -> Nats {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringcast-nats-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).unwrap();
        let mut nats = Nats {
            child: None,
            port: 0,
            monitor: 0,
            dir,
            extra: extra.iter().map(|&a| a.to_owned()).collect(),
        };
        for _ in 0..5 {
            nats.port = free_port();
            nats.monitor = free_port();
            if nats.port != nats.monitor && nats.spawn_and_wait() {
                return nats;
            }
        }
        panic!("nats-server did not start:\n{}", nats.log());
    }

    /// The client URL for `cluster.nats_url`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (nats-server shuts JetStream down cleanly), then waits for
    /// the exit; SIGKILL if it takes longer than `TIMEOUT`.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: sending a signal to our own child process by pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same store, and waits
    /// until JetStream is enabled. The port was ours until `stop`; should a
    /// stray socket hold it for a moment, this tries again until `TIMEOUT`.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + TIMEOUT;
        while !self.spawn_and_wait() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not restart on port {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Deletes the JetStream stream `stream` (`$JS.API.STREAM.DELETE`) and
    /// panics unless JetStream answers `"success":true`.
    pub fn delete_stream(&self, stream: &str) {
        let reply = self.request(&format!("$JS.API.STREAM.DELETE.{stream}"), b"");
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_else(|e| {
            panic!(
                "JetStream reply is not JSON ({e}): {}",
                String::from_utf8_lossy(&reply)
            )
        });
        assert_eq!(v["success"], true, "deleting stream {stream}: {v}");
    }

    /// One NATS request over the raw client protocol (no client library):
    /// publishes `payload` on `subject` with a private inbox as the reply
    /// subject and returns the first reply's payload. Answers the server's
    /// PINGs; panics on `-ERR`, on a no-responders status, or after `TIMEOUT`.
    pub fn request(&self, subject: &str, payload: &[u8]) -> Vec<u8> {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to nats-server");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let line = |r: &mut BufReader<TcpStream>| {
            let mut l = String::new();
            let n = r.read_line(&mut l).expect("a line from nats-server");
            assert!(n > 0, "nats-server closed the connection");
            l.trim_end_matches(['\r', '\n']).to_owned()
        };
        let info = line(&mut r);
        assert!(info.starts_with("INFO "), "expected INFO, got {info:?}");
        let mut out = Vec::new();
        out.extend_from_slice(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n",
        );
        out.extend_from_slice(b"SUB _INBOX.t 1\r\n");
        out.extend_from_slice(format!("PUB {subject} _INBOX.t {}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\nPING\r\n");
        w.write_all(&out).unwrap();
        loop {
            let l = line(&mut r);
            let words: Vec<&str> = l.split(' ').collect();
            match words[0] {
                "PING" => w.write_all(b"PONG\r\n").unwrap(),
                "PONG" | "+OK" => {}
                // MSG <subject> <sid> [reply] <bytes>
                "MSG" => {
                    let n: usize = words.last().unwrap().parse().unwrap();
                    let mut body = vec![0; n + 2];
                    r.read_exact(&mut body).unwrap();
                    body.truncate(n);
                    return body;
                }
                // HMSG <subject> <sid> [reply] <header bytes> <total bytes>:
                // a reply with headers, here only a status such as
                // `NATS/1.0 503` (no responders: no JetStream).
                "HMSG" => {
                    let n: usize = words.last().unwrap().parse().unwrap();
                    let h: usize = words[words.len() - 2].parse().unwrap();
                    let mut body = vec![0; n + 2];
                    r.read_exact(&mut body).unwrap();
                    let head = String::from_utf8_lossy(&body[..h]);
                    let status = head.lines().next().unwrap_or_default();
                    assert!(
                        status.trim() == "NATS/1.0" || status.contains(" 200"),
                        "{subject}: reply with status {head:?}"
                    );
                    return body[h..n].to_vec();
                }
                _ => panic!("{subject}: nats-server said {l:?}"),
            }
        }
    }

    /// Everything nats-server has logged (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
    }

    /// Spawns nats-server on `port`/`monitor` and waits for
    /// `/healthz?js-enabled-only=true` to answer 200. False when the process
    /// exits first (a port taken); panics when it neither exits nor gets
    /// ready within `TIMEOUT`.
    fn spawn_and_wait(&mut self) -> bool {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("nats.log"))
            .unwrap();
        let child = Command::new(binary().expect("nats-server is installed"))
            .args(["-js", "-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .arg("-sd")
            .arg(self.dir.join("store"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        let child = self.child.insert(child);
        let monitor: SocketAddr = ([127, 0, 0, 1], self.monitor).into();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if child.try_wait().unwrap().is_some() {
                self.child = None;
                return false;
            }
            if healthz(monitor) == Some(200) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// The status of `GET /healthz?js-enabled-only=true` on the monitoring
/// port; `None` while nothing answers.
fn healthz(monitor: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&monitor, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(
        b"GET /healthz?js-enabled-only=true HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("nats-server log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
