//! ringcast behind a real nginx, configured with `tuning/nginx/ringcast.conf`
//! exactly as shipped (placeholders filled in): events and heartbeats pass
//! through unbuffered, Last-Event-ID resumes through the proxy, browsers'
//! HTTP/2 over TLS streams (checked with curl), and `server.trusted_proxies`
//! makes the per-IP limit count the forwarded client. Needs Debian's nginx,
//! openssl and curl with HTTP/2 (`.ci/run` installs them); in CI a missing
//! tool fails the test, on a developer machine it is reported and skipped.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// True when the tool is present; panics in CI when it is not.
fn require(present: bool, what: &str) -> bool {
    support::require(present, what, "apt-get install nginx openssl curl")
}

fn runs(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn nginx_ready() -> bool {
    require(runs("nginx", &["-v"]).is_some(), "nginx")
        && require(runs("openssl", &["version"]).is_some(), "openssl")
}

fn curl_http2_ready() -> bool {
    let ok = runs("curl", &["--version"]).is_some_and(|v| v.contains("HTTP2"));
    require(ok, "curl with HTTP/2")
}

/// A real nginx in front of a ringcast, run from a temporary prefix; stopped
/// (with its workers) on drop.
struct Nginx {
    _nginx: support::nginx::Nginx,
    /// The plain HTTP/1.1 listener.
    http: SocketAddr,
    /// The HTTPS (HTTP/2) listener.
    tls: SocketAddr,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Nginx {
        let dir = support::nginx::prefix("nginx");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/nginx/ringcast.conf"),
        )
        .unwrap();
        let site = example
            .replace("__UPSTREAM__", &upstream.to_string())
            .replace("__HTTP_LISTEN__", &http.to_string())
            .replace("__TLS_LISTEN__", &tls.to_string())
            .replace("__CERT__", cert.to_str().unwrap())
            .replace("__KEY__", key.to_str().unwrap());
        let left = site
            .lines()
            .find(|l| !l.trim_start().starts_with('#') && l.contains("__"));
        assert_eq!(left, None, "a placeholder is left");
        std::fs::write(dir.join("ringcast.conf"), site).unwrap();
        // The main context the example is included into. As root (CI), the
        // workers would switch to `nobody`; keep them root so that they can
        // use this directory as it is.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let d = dir.display();
        let main = format!(
            "{user}worker_processes 1;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             include {d}/ringcast.conf;\n\
             }}\n",
            user = if root { "user root;\n" } else { "" },
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        // Waits until nginx answers /healthz from ringcast.
        let nginx = support::nginx::Nginx::start(
            dir.clone(),
            &conf,
            &format!("pid {d}/nginx.pid;"),
            http,
            "/healthz",
        );
        Nginx {
            _nginx: nginx,
            http,
            tls,
        }
    }
}

/// A response body as nginx sends it to an HTTP/1.1 client: chunked when
/// the upstream gave no length (an event stream), else as it comes.
enum Body {
    Plain(BufReader<TcpStream>),
    Chunked {
        r: BufReader<TcpStream>,
        left: usize,
    },
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Body::Plain(r) => r.read(out),
            Body::Chunked { r, left } => {
                if *left == 0 {
                    let mut size = String::new();
                    r.read_line(&mut size)?;
                    let hex = size.trim().split(';').next().unwrap_or("");
                    *left = usize::from_str_radix(hex, 16).map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("bad chunk size {size:?}"),
                        )
                    })?;
                    if *left == 0 {
                        return Ok(0);
                    }
                }
                let n = (*left).min(out.len());
                let n = r.read(&mut out[..n])?;
                if n == 0 {
                    return Ok(0);
                }
                *left -= n;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    r.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

/// An HTTP/1.1 GET whose response is read incrementally (an event stream
/// through nginx).
struct Stream {
    status: u16,
    head: String,
    r: BufReader<Body>,
    comments: usize,
}

impl Stream {
    fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
        Self::open_on(connect(addr), path, headers)
    }

    fn open_on(s: TcpStream, path: &str, headers: &[(&str, &str)]) -> Stream {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (r, head) = send_get(s, path, headers);
        let status = head[9..12].parse().unwrap();
        let chunked = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
        let body = if chunked {
            Body::Chunked { r, left: 0 }
        } else {
            Body::Plain(r)
        };
        Stream {
            status,
            head,
            r: BufReader::new(body),
            comments: 0,
        }
    }

    fn set_timeout(&mut self, t: Duration) {
        let s = match self.r.get_ref() {
            Body::Plain(r) | Body::Chunked { r, .. } => r.get_ref(),
        };
        s.set_read_timeout(Some(t)).unwrap();
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// One line without its `\n`; `None` at EOF or timeout (after which
    /// the stream is not read again).
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.starts_with(':') {
                    self.comments += 1;
                }
                Some(line.strip_suffix('\n').unwrap_or(&line).to_owned())
            }
        }
    }

    /// The next event (comments are counted and skipped); `None` at EOF or
    /// timeout. The server's frames are `id:`, optional `event:`, one
    /// `data:` line here.
    fn next_event(&mut self) -> Option<Event> {
        let mut ev = Event::default();
        let mut has_data = false;
        loop {
            let line = self.line()?;
            if line.is_empty() {
                if has_data {
                    return Some(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((&line, ""));
            match field {
                "id" => ev.id = value.to_owned(),
                "event" => ev.event = value.to_owned(),
                "data" => {
                    ev.data = value.to_owned();
                    has_data = true;
                }
                _ => {}
            }
        }
    }

    /// The body of a short answer with Content-Length (an error).
    fn body(mut self) -> String {
        let n: usize = self
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("Content-Length");
        let mut body = vec![0; n];
        self.r.read_exact(&mut body).unwrap();
        String::from_utf8(body).unwrap()
    }
}

/// An event published through nginx reaches a subscriber through nginx at
/// once (no proxy buffering: the read timeout is far shorter than any
/// buffer would take to fill), and the heartbeat comments pass through too.
#[test]
fn events_and_heartbeats_pass_through_nginx_at_once() {
    if !nginx_ready() {
        return;
    }
    let s = Server::start("[sse]\nheartbeat_ms = 200\n");
    let nginx = Nginx::start(s.addr());
    let mut sub = Stream::open(nginx.http, "/events?topic=px.a", &[]);
    assert_eq!(sub.status, 200, "{}", sub.head);
    assert!(
        sub.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{}",
        sub.head
    );
    assert_eq!(sub.header("x-accel-buffering"), None, "nginx consumes it");
    wait_subscribers(&s, 1);
    // Heartbeats every 200 ms of silence: a few arrive within a second,
    // each well inside the short read timeout.
    sub.set_timeout(Duration::from_millis(1500));
    let t = Instant::now();
    while sub.comments < 3 {
        assert!(
            sub.line().is_some(),
            "stream stalled after {} heartbeats",
            sub.comments
        );
        assert!(t.elapsed() < Duration::from_secs(5), "heartbeats too slow");
    }
    for i in 0..5 {
        let data = format!("tick {i}");
        let t = Instant::now();
        let id = publish(nginx.http, "px.a", None, &data);
        let ev = sub.next_event().expect("event through nginx within 1.5 s");
        assert_eq!((ev.id_u64(), ev.data.as_str()), (id, data.as_str()));
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
    }
}

/// A subscriber that reconnects through nginx with Last-Event-ID gets
/// exactly the events it missed, then the live stream: nothing twice,
/// nothing lost.
#[test]
fn last_event_id_resume_through_nginx_gets_exactly_the_missed_events() {
    if !nginx_ready() {
        return;
    }
    let s = Server::start("");
    let nginx = Nginx::start(s.addr());
    let mut sub = Stream::open(nginx.http, "/events?topic=rs.%3E", &[]);
    assert_eq!(sub.status, 200, "{}", sub.head);
    wait_subscribers(&s, 1);
    let seen: Vec<u64> = (0..3)
        .map(|i| publish(nginx.http, "rs.a", None, &format!("seen {i}")))
        .collect();
    for want in &seen {
        assert_eq!(sub.next_event().unwrap().id_u64(), *want);
    }
    drop(sub);
    s.metric_until_sum("ringcast_subscribers_active{", |v| v == 0.0);
    let missed: Vec<(u64, String)> = (0..4)
        .map(|i| {
            let data = format!("missed {i}");
            (publish(nginx.http, &format!("rs.t{i}"), None, &data), data)
        })
        .collect();
    let last = seen.last().unwrap().to_string();
    let mut back = Stream::open(
        nginx.http,
        "/events?topic=rs.%3E",
        &[("Last-Event-ID", last.as_str())],
    );
    assert_eq!(back.status, 200, "{}", back.head);
    for (id, data) in &missed {
        let ev = back.next_event().unwrap();
        assert_ne!(ev.event, "resync", "{ev:?}");
        assert_eq!((ev.id_u64(), &ev.data), (*id, data));
    }
    wait_subscribers(&s, 1);
    let live = publish(nginx.http, "rs.live", None, "live");
    let ev = back.next_event().unwrap();
    assert_eq!((ev.id_u64(), ev.data.as_str()), (live, "live"));
}

/// Browsers reach ringcast over HTTP/2 with TLS: curl, speaking HTTP/2 to
/// nginx's TLS listener, receives an event published after it connected,
/// while its stream stays open.
#[test]
fn http2_over_tls_streams_events_to_curl() {
    if !nginx_ready() || !curl_http2_ready() {
        return;
    }
    let s = Server::start("");
    let nginx = Nginx::start(s.addr());
    let base = format!("https://{}", nginx.tls);
    // The protocol nginx negotiated with curl.
    let out = Command::new("curl")
        .args(["--http2", "-k", "-sS", "--noproxy", "*", "-o", "/dev/null"])
        .args(["-w", "%{http_version} %{http_code}"])
        .arg(format!("{base}/healthz"))
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut curl = Command::new("curl")
        .args(["--http2", "-k", "-N", "-sS", "--noproxy", "*"])
        .arg(format!("{base}/events?topic=h2.a"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn curl");
    let (tx, rx) = mpsc::channel();
    let stdout = curl.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("curl printed no {what}"))
    };
    // The head and `retry:` come at once: curl is connected and subscribed.
    assert!(next("retry line").starts_with("retry: "));
    wait_subscribers(&s, 1);
    for i in 0..3 {
        let data = format!("over h2 {i}");
        let id = publish(nginx.http, "h2.a", None, &data);
        let mut lines = Vec::new();
        while !lines.iter().any(|l: &String| l.starts_with("data: ")) {
            lines.push(next("event"));
        }
        let lines: Vec<&String> = lines.iter().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, [&format!("id: {id}"), &format!("data: {data}")]);
    }
    let _ = curl.kill();
    let _ = curl.wait();
}

/// With nginx in `server.trusted_proxies`, the per-IP limit counts the
/// client that X-Forwarded-For names: two clients behind the same nginx
/// are both admitted, a second stream of one of them is refused. (Here the
/// test's own address, 127.0.0.1, is trusted too, so the X-Forwarded-For
/// the test sends stands for the client addresses an outer proxy would
/// have written; nginx appends 127.0.0.1, which is skipped as trusted.)
/// A peer that is not trusted is counted on its own address whatever
/// header it sends.
#[test]
fn trusted_proxy_forwarded_for_is_the_per_ip_client() {
    if !nginx_ready() {
        return;
    }
    let s = Server::start(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_connections_per_ip = 1\n\
         [log]\nlevel = \"ringcast=debug,info\"\n",
    );
    let nginx = Nginx::start(s.addr());
    let q = "/events?topic=ip.a";
    let a = Stream::open(nginx.http, q, &[("X-Forwarded-For", "203.0.113.1")]);
    assert_eq!(a.status, 200, "{}", a.head);
    let b = Stream::open(nginx.http, q, &[("X-Forwarded-For", "203.0.113.2")]);
    assert_eq!(b.status, 200, "{}", b.head);
    wait_subscribers(&s, 2);
    let again = Stream::open(nginx.http, q, &[("X-Forwarded-For", "203.0.113.1")]);
    assert_eq!(again.status, 429, "{}", again.head);
    assert!(again.header("retry-after").is_some(), "{}", again.head);
    assert!(again.body().contains("rate_limited"));
    // The logs name the forwarded client, not nginx. The 429 can reach
    // the client before the server's log line reaches the test's pipe
    // reader, so wait for the line (with a deadline).
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let log = s.stderr.lock().unwrap().clone();
        let seen = log.contains("client=203.0.113.2")
            && log.contains("over limits.max_connections_per_ip conn=")
            && log.contains("client=203.0.113.1");
        if seen {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A proxied client's count is released when its stream closes.
    drop(a);
    s.metric_until_sum("ringcast_subscribers_active{", |v| v == 1.0);
    let deadline = Instant::now() + TIMEOUT;
    let a2 = loop {
        let a2 = Stream::open(nginx.http, q, &[("X-Forwarded-For", "203.0.113.1")]);
        if a2.status == 200 || Instant::now() > deadline {
            break a2;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(a2.status, 200, "{}", a2.head);
    // An untrusted peer (127.0.0.2, not in the list) claiming to forward
    // for others is counted on 127.0.0.2: its second connection is refused.
    let from_untrusted = |xff: &str| {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
        sock.bind(&local.into()).unwrap();
        sock.connect(&s.addr().into()).unwrap();
        Stream::open_on(sock.into(), q, &[("X-Forwarded-For", xff)])
    };
    let c = from_untrusted("198.51.100.1");
    assert_eq!(c.status, 200, "{}", c.head);
    let d = from_untrusted("198.51.100.2");
    assert_eq!(d.status, 429, "{}", d.head);
}

/// Without `server.trusted_proxies` the header is never believed: a direct
/// client sending a different fake X-Forwarded-For on each connection is
/// still counted on its peer address.
#[test]
fn forwarded_for_is_ignored_without_trusted_proxies() {
    let s = Server::start("[limits]\nmax_connections_per_ip = 1\n");
    let q = "topic=ip.b";
    let first = Sse::open_with(s.addr(), q, &[("X-Forwarded-For", "203.0.113.1")]);
    assert_eq!(first.status, 200, "{}", first.head);
    let r = request(
        s.addr(),
        format!("GET /events?{q} HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.2\r\n\r\n")
            .as_bytes(),
    );
    r.assert_error(429);
}

/// A trusted proxy's pooled keep-alive connection carries requests of many
/// clients: it counts for the client of the request in progress, and for
/// nobody while it idles. (No nginx needed: the test speaks as the proxy
/// from 127.0.0.1.)
#[test]
fn proxied_keep_alive_connection_is_counted_per_request() {
    let s = Server::start(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_connections_per_ip = 1\n",
    );
    let pooled = connect(s.addr());
    let mut r = BufReader::new(pooled.try_clone().unwrap());
    let mut w = pooled;
    let mut publish_as = |xff: &str| {
        let req = format!(
            "POST /publish?topic=ka.a HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {xff}\r\nContent-Length: 1\r\n\r\nx"
        );
        w.write_all(req.as_bytes()).unwrap();
        read_response(&mut r)
    };
    assert_eq!(publish_as("203.0.113.1").status, 200);
    // Idle now: 203.0.113.1 may open its one connection elsewhere.
    let stream = Sse::open_with(
        s.addr(),
        "topic=ka.a",
        &[("X-Forwarded-For", "203.0.113.1")],
    );
    assert_eq!(stream.status, 200, "{}", stream.head);
    wait_subscribers(&s, 1);
    // Another client's request on the pooled connection is fine ...
    assert_eq!(publish_as("203.0.113.2").status, 200);
    // ... one of 203.0.113.1, which already holds its one connection, is not.
    publish_as("203.0.113.1").assert_error(429);
}
