//! The HTTP edge (SPEC §6): an answer that says `Connection: close`
//! closes, framing is strict (digits-only `Content-Length`, exactly one
//! `Host`), absolute-form targets are served, duplicate credentials are
//! refused, and accept errors at the open-files limit do not flood the log.

use std::io::BufReader;
use std::net::TcpStream;

use serde_json::json;
use support::auth::{claims, hs256, hs256_config};

use super::*;

/// The reproduction: a 413 `event_too_large` said `Connection:
/// close` but the connection went on reading, so a publish pipelined after
/// it was executed — and a client that believed the header sent it again.
#[test]
fn an_answer_that_says_close_closes_and_runs_nothing_after_it() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=p");
    wait_subscribers(&s, 1);
    let big = "x".repeat(70_000);
    let mut c = connect(s.addr());
    let req = format!(
        "POST /publish?topic=p HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{big}\
         POST /publish?topic=p HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\npipelined",
        big.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let first = read_response(&mut r);
    first.assert_error_code(413, "event_too_large");
    assert_eq!(first.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "nothing after the close: {:?}",
        String::from_utf8_lossy(&rest)
    );
    // Nothing was published: the next event the subscriber sees is this one.
    let id = publish(s.addr(), "p", None, "after");
    let ev = sub.next_event().unwrap();
    assert_eq!((ev.id_u64(), ev.data.as_str()), (id, "after"));
}

#[test]
fn framing_is_strict_and_absolute_form_targets_are_served() {
    let s = Server::start("");
    for (raw, why) in [
        (
            "POST /publish?topic=a HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc",
            "a sign in Content-Length",
        ),
        ("GET /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 without Host"),
        (
            "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "two Hosts",
        ),
    ] {
        let r = request(s.addr(), raw.as_bytes());
        assert_eq!(r.status, 400, "{why}: {}", String::from_utf8_lossy(&r.body));
        r.assert_error(400);
    }
    let target = format!("http://{}/healthz", s.addr());
    let r = request(
        s.addr(),
        format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            s.addr()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "absolute-form target");
    let id = {
        let raw = format!(
            "POST http://{}/publish?topic=abs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            s.addr()
        );
        request(s.addr(), raw.as_bytes()).json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(!id.is_empty());
}

/// Two tokens in one place are refused instead of one being picked
/// silently (the last `Authorization` used to win, the first
/// `access_token`); two cookies take the first, as browsers order them.
#[test]
fn duplicate_credentials_are_refused() {
    let s = Server::start(&hs256_config(""));
    let good = hs256(&claims(json!({"subscribe": [">"], "publish": [">"]})));
    let bad = "not.a.token";
    let auth = |t: &str| format!("Bearer {t}");
    let r = Sse::refused(
        s.addr(),
        "topic=a",
        &[
            ("Authorization", &auth(&good)),
            ("Authorization", &auth(&good)),
        ],
    );
    r.assert_error_code(400, "duplicate_credentials");
    let r = Sse::refused(
        s.addr(),
        &format!("topic=a&access_token={good}&access_token={bad}"),
        &[],
    );
    r.assert_error_code(400, "duplicate_credentials");
    let r = get_with(
        s.addr(),
        "/events?topic=a",
        &[
            ("Cookie", &format!("ringcast_token={bad}")),
            ("Cookie", &format!("ringcast_token={good}")),
        ],
    );
    assert_eq!(r.status, 401, "the first cookie is the one taken");
    let sub = Sse::open_with(
        s.addr(),
        "topic=a",
        &[
            ("Cookie", &format!("ringcast_token={good}")),
            ("Cookie", &format!("ringcast_token={bad}")),
        ],
    );
    assert_eq!(sub.status, 200);
}

/// At the open-files limit every accept fails (EMFILE) and the loop
/// retries every 10 ms: the warning is logged at most once a second, with
/// the count of those held back.
#[test]
fn accept_errors_at_the_open_files_limit_are_logged_once_a_second() {
    // The shell lowers its own limit and execs ringcast in its place, so
    // the child killed at the end is ringcast itself.
    let mut cmd = std::process::Command::new("bash");
    cmd.args([
        "-c",
        "ulimit -n 96 && exec \"$0\" --listen 127.0.0.1:0 --workers 1",
        env!("CARGO_BIN_EXE_ringcast"),
    ])
    .env("RINGCAST_SERVER_PIN_CORES", "false")
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("ringcast starts with 96 descriptors");
        if let Some(i) = line.find("listening on http://") {
            let addr: String = line[i + 20..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            break addr.parse().unwrap();
        }
    };
    // Connections that send their request line are accepted until the
    // descriptors run out; the rest meet EMFILE on every accept.
    let conns: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    let watch = Instant::now();
    let mut warnings = Vec::new();
    while watch.elapsed() < Duration::from_millis(2500) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("accept failed") {
                warnings.push(line);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(conns);
    assert!(!warnings.is_empty(), "EMFILE was reached and logged");
    assert!(
        warnings.len() <= 4,
        "at most one line a second: {warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .skip(1)
            .any(|w| w.contains("suppressed=") && !w.contains("suppressed=0")),
        "later lines count what they held back: {warnings:#?}"
    );
}
