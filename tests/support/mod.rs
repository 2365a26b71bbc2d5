//! Black-box harness: spawns the real `ringcast` binary on an ephemeral
//! 127.0.0.1 port and talks to it over real sockets with a tiny HTTP/1.1
//! client and an SSE parser that follows the WHATWG EventSource rules.
#![allow(dead_code, unreachable_pub)]

pub mod auth;
pub mod nats;
pub mod nginx;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A free port on 127.0.0.1 (bound, then released for a server the test
/// starts, e.g. nats-server or nginx).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    child: Child,
    addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
    config: Option<std::path::PathBuf>,
}

fn unique(name: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("ringcast-test-{}-{n}-{name}", std::process::id()))
}

impl Server {
    /// Starts ringcast with 2 workers and `toml` as its config file.
    pub fn start(toml: &str) -> Server {
        Self::start_with(toml, &["--workers", "2"], &[])
    }

    pub fn start_with(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
        // An ephemeral port unless the test names one (a restart on the
        // same port).
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args);
        let config = if toml.is_empty() {
            None
        } else {
            let p = unique("config.toml");
            std::fs::write(&p, toml).unwrap();
            cmd.arg("--config").arg(&p);
            Some(p)
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("RINGCAST_SERVER_PIN_CORES", "false");
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ringcast");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[ringcast] {line}");
                // Record the line before announcing the address, so a test
                // that reads the log after start() sees the listening line.
                {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on http://".len()..];
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
                        .collect();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "ringcast did not start; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Server {
            child,
            addr,
            stderr,
            config,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill_term(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process by pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of one metric series (exact name with labels), polled
    /// until `pred` holds or the deadline passes.
    pub fn metric_until(&self, series: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.metric(series);
            if pred(v) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn metric(&self, series: &str) -> f64 {
        let r = get(self.addr, "/metrics");
        let text = String::from_utf8(r.body).unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    pub fn metric_sum(&self, prefix: &str) -> f64 {
        let r = get(self.addr, "/metrics");
        let text = String::from_utf8(r.body).unwrap();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(p) = &self.config {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs the binary to completion with `args`/`env` and returns its status and stderr.
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status, out);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("ringcast {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let p = unique(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The ids of a 200 ndjson publish acknowledgement, `{"ids":[...]}`.
    pub fn batch_ids(&self) -> Vec<u64> {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        self.json()["ids"]
            .as_array()
            .expect("an ids array")
            .iter()
            .map(|v| {
                v.as_str()
                    .expect("a string id")
                    .parse()
                    .expect("a decimal id")
            })
            .collect()
    }

    /// Asserts a SPEC §6 error body with `status`.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(v["message"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    }

    /// Asserts a SPEC §6 error body with `status` and error `code`.
    pub fn assert_error_code(&self, status: u16, code: &str) {
        self.assert_error(status);
        assert_eq!(self.json()["error"], code, "status {status}");
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads one response from `r` (Content-Length framed, or until close).
pub fn read_response(r: &mut BufReader<TcpStream>) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "bad status line {line:?}");
    let status: u16 = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if status == 100 || status == 204 {
        return resp;
    }
    match resp.header("content-length") {
        Some(n) => {
            let mut body = vec![0; n.parse().unwrap()];
            r.read_exact(&mut body).unwrap();
            resp.body = body;
        }
        None => {
            r.read_to_end(&mut resp.body).unwrap();
        }
    }
    resp
}

/// Sends raw request bytes on a fresh connection and reads one response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    read_response(&mut BufReader::new(s))
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Response {
    post_with(addr, path, content_type, &[], body)
}

/// `get` with extra request headers.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    request(addr, raw.as_bytes())
}

/// `post` with extra request headers.
pub fn post_with(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    request(addr, &raw)
}

pub fn enc(s: &str) -> String {
    s.replace('>', "%3E").replace('*', "%2A")
}

/// Publishes one event and returns its id.
/// Publishes `data` on `topic` as one ndjson batch (a burst that no
/// scheduling can spread out), with `headers`; the acknowledged ids.
pub fn publish_burst(
    addr: SocketAddr,
    topic: &str,
    data: &[String],
    headers: &[(&str, &str)],
) -> Vec<u64> {
    let body: String = data
        .iter()
        .map(|d| format!("{}\n", serde_json::json!({"topic": topic, "data": d})))
        .collect();
    post_with(
        addr,
        "/publish",
        "application/x-ndjson",
        headers,
        body.as_bytes(),
    )
    .batch_ids()
}

pub fn publish(addr: SocketAddr, topic: &str, event: Option<&str>, data: &str) -> u64 {
    let mut path = format!("/publish?topic={}", enc(topic));
    if let Some(e) = event {
        path.push_str(&format!("&event={e}"));
    }
    let r = post(addr, &path, "text/plain", data.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().parse().unwrap()
}

/// A publisher on one keep-alive connection.
pub struct Publisher {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Publisher {
    pub fn new(addr: SocketAddr) -> Publisher {
        let s = connect(addr);
        Publisher {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, topic: &str, data: &str) {
        let req = format!(
            "POST /publish?topic={} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{data}",
            enc(topic),
            data.len()
        );
        self.w.write_all(req.as_bytes()).unwrap();
    }

    /// Sends raw request bytes (the caller's headers) on the connection.
    pub fn send_raw(&mut self, raw: &[u8]) {
        self.w.write_all(raw).unwrap();
    }

    pub fn recv_id(&mut self) -> u64 {
        let r = read_response(&mut self.r);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["id"].as_str().unwrap().parse().unwrap()
    }

    pub fn publish(&mut self, topic: &str, data: &str) -> u64 {
        self.send(topic, data);
        self.recv_id()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub id: String,
    pub event: String,
    pub data: String,
}

impl Event {
    pub fn id_u64(&self) -> u64 {
        self.id
            .parse()
            .unwrap_or_else(|_| panic!("id {:?} is not an integer", self.id))
    }
}

/// An SSE subscriber over a raw socket.
pub struct Sse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The raw response head, exactly as received.
    pub head: String,
    r: BufReader<TcpStream>,
    pub comments: Vec<String>,
    pub retry: Option<u64>,
    pub raw: Vec<u8>,
}

impl Sse {
    pub fn open(addr: SocketAddr, query: &str) -> Sse {
        Self::open_with(addr, query, &[])
    }

    pub fn open_with(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Sse {
        let (r, head) = send_get(connect(addr), &format!("/events?{query}"), headers);
        let status = head[9..12].parse().unwrap();
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Sse {
            status,
            headers,
            head,
            r,
            comments: Vec::new(),
            retry: None,
            raw: Vec::new(),
        }
    }

    /// Opens a subscription that must be refused and returns the error
    /// answer; a `200` stream fails the test at once instead of waiting
    /// for a body that never ends.
    pub fn refused(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Response {
        let mut sse = Self::open_with(addr, query, headers);
        assert_ne!(
            sse.status, 200,
            "expected a refusal, got a stream: {}",
            sse.head
        );
        let mut resp = Response {
            status: sse.status,
            headers: sse.headers.clone(),
            body: Vec::new(),
        };
        let n: usize = resp
            .header("content-length")
            .expect("an error answer has a length")
            .parse()
            .unwrap();
        resp.body = vec![0; n];
        sse.r.read_exact(&mut resp.body).unwrap();
        resp
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_timeout(&mut self, t: Duration) {
        self.r.get_ref().set_read_timeout(Some(t)).unwrap();
    }

    /// One line without its terminator; `None` at EOF or timeout.
    fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match self.r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                self.raw.extend_from_slice(&buf);
                let s = String::from_utf8(buf).unwrap();
                Some(s.strip_suffix('\n').unwrap_or(&s).to_owned())
            }
        }
    }

    /// The next dispatched event (WHATWG rules; the server only uses `\n`),
    /// or `None` at EOF/timeout.
    pub fn next_event(&mut self) -> Option<Event> {
        let mut ev = Event::default();
        let mut data: Option<String> = None;
        loop {
            let line = self.line()?;
            if line.is_empty() {
                if let Some(d) = data.take() {
                    ev.data = d;
                    return Some(ev);
                }
                ev = Event::default();
                continue;
            }
            if let Some(c) = line.strip_prefix(':') {
                self.comments.push(c.trim_start().to_owned());
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "id" => ev.id = value,
                "event" => ev.event = value,
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => data = Some(value),
                },
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
    }

    /// Reads up to and including the next comment line (a heartbeat) and
    /// returns its text; `None` at EOF or timeout. For stretches where
    /// nothing but heartbeats may arrive: an event field fails the test
    /// (a `retry:` line is let through: it opens every stream).
    pub fn next_comment(&mut self) -> Option<String> {
        loop {
            let line = self.line()?;
            if let Some(c) = line.strip_prefix(':') {
                let c = c.trim_start().to_owned();
                self.comments.push(c.clone());
                return Some(c);
            }
            assert!(
                line.is_empty() || line.starts_with("retry:"),
                "expected only heartbeats, got {line:?}"
            );
        }
    }

    /// Reads `n` events, panicking with what arrived if fewer come.
    pub fn take(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next_event() {
                Some(e) => out.push(e),
                None => panic!("got {} of {n} events: {:?}", out.len(), out.last()),
            }
        }
        out
    }

    /// Reads raw bytes until `pat` has been seen (or EOF/timeout); returns all raw bytes so far.
    pub fn read_raw_until(&mut self, pat: &[u8]) -> Vec<u8> {
        while !self.raw.windows(pat.len()).any(|w| w == pat) {
            if self.line().is_none() {
                break;
            }
        }
        self.raw.clone()
    }

    /// True when the server closes the stream (EOF) within the read timeout.
    pub fn at_eof(&mut self) -> bool {
        loop {
            let mut buf = [0u8; 4096];
            match self.r.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
    }
}

/// Waits until `n` subscribers are registered, so publishes that follow
/// reach them (subscription is registered before the head is sent, but the
/// test thread may see the head before the metrics update).
/// The reason of a `resync` frame (SPEC §3), asserting that it is one.
pub fn resync_reason(ev: &Event) -> String {
    assert_eq!(ev.event, "resync", "expected a resync first, got {ev:?}");
    assert!(ev.id.is_empty(), "resync carries no id");
    let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
    v["reason"].as_str().unwrap().to_owned()
}

pub fn wait_subscribers(server: &Server, n: usize) {
    let v = server.metric_until_sum("ringcast_subscribers_active{", |v| v >= n as f64);
    assert!(v >= n as f64, "only {v} of {n} subscribers registered");
}

impl Server {
    pub fn metric_until_sum(&self, prefix: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.metric_sum(prefix);
            if pred(v) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Sends `GET path` with `headers` on `s` and reads the response head
/// (through the blank line); returns the reader, positioned at the body.
pub fn send_get(
    mut s: TcpStream,
    path: &str,
    headers: &[(&str, &str)],
) -> (BufReader<TcpStream>, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed in the head: {head:?}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    (r, head)
}

/// True when an external tool a test needs is present. Missing, it fails
/// the test in CI (env `CI` set) and skips it elsewhere, saying how to
/// install it (`install`).
pub fn require(present: bool, what: &str, install: &str) -> bool {
    if present {
        return true;
    }
    let msg = format!("{what} is not installed (see .ci/run: {install})");
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}
