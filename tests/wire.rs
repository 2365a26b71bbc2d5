//! Exact bytes on the wire: stream head, retry line, frames, heartbeats,
//! HEAD and CORS.
mod support;

use std::time::Duration;
use support::*;

const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\nVary: Accept-Encoding\r\nX-Request-ID: <id>\r\n\r\n";

/// The stream head is exactly HEAD, where the request id (no proxy sent
/// one) is the connection's numeric id.
fn assert_head(head: &str) {
    let line = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("X-Request-ID: "))
        .expect("X-Request-ID in the head");
    assert!(line.parse::<u64>().is_ok(), "{head}");
    let id_line = format!("X-Request-ID: {line}\r\n");
    assert_eq!(
        head.replace(&id_line, "X-Request-ID: <id>\r\n"),
        HEAD,
        "exact head"
    );
}

#[test]
fn stream_head_and_retry_come_before_any_event() {
    let s = Server::start("[sse]\nretry_ms = 1234\n");
    let mut sub = Sse::open(s.addr(), "topic=a.b");
    assert_head(&sub.head);
    assert!(sub.header("transfer-encoding").is_none());
    assert!(sub.header("content-length").is_none());
    // Nothing published yet: the retry line must already be there.
    let raw = sub.read_raw_until(b"retry: 1234\n\n");
    assert_eq!(raw, b"retry: 1234\n\n");
}

#[test]
fn frames_are_exact_bytes() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=t.x");
    sub.read_raw_until(b"\n\n");
    let cases: [(Option<&str>, &str, &str); 7] = [
        (None, "hello", "data: hello\n"),
        (Some("quote"), "x", "event: quote\ndata: x\n"),
        (None, "a\nb", "data: a\ndata: b\n"),
        (None, "a\r\nb\rc\nd", "data: a\ndata: b\ndata: c\ndata: d\n"),
        (None, "tail\n", "data: tail\ndata: \n"),
        (None, "", "data: \n"),
        (
            Some("e-1"),
            "{\"k\":1}\r\n",
            "event: e-1\ndata: {\"k\":1}\ndata: \n",
        ),
    ];
    for (event, data, want_body) in cases {
        let id = publish(s.addr(), "t.x", event, data);
        let want = format!("id: {id}\n{want_body}\n");
        let before = sub.raw.len();
        let raw = sub.read_raw_until(want.as_bytes());
        assert_eq!(
            std::str::from_utf8(&raw[before..]).unwrap(),
            want,
            "data {data:?}"
        );
    }
}

#[test]
fn multiline_data_reassembles_like_eventsource() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=t");
    for data in ["one", "l1\nl2\nl3", "crlf\r\nmixed\rlines\n", "\n\n"] {
        publish(s.addr(), "t", Some("m"), data);
        let ev = sub.next_event().unwrap();
        assert_eq!(ev.event, "m");
        assert_eq!(ev.data, data.replace("\r\n", "\n").replace('\r', "\n"));
    }
}

#[test]
fn heartbeat_on_idle_connection() {
    let s = Server::start("[sse]\nheartbeat_ms = 200\n");
    let mut sub = Sse::open(s.addr(), "topic=quiet");
    let raw = sub.read_raw_until(b":\n\n:\n\n");
    assert!(
        raw.ends_with(b":\n\n:\n\n"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(s.metric("ringcast_heartbeats_total") >= 2.0);
}

#[test]
fn head_request_answers_headers_only() {
    let s = Server::start("");
    let r = request(
        s.addr(),
        b"HEAD /events?topic=a HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(r.body.is_empty());
}

#[test]
fn cors_for_allowed_origins_only() {
    let s = Server::start("[cors]\nallowed_origins = [\"http://example.test\"]\n");
    let pre = request(
        s.addr(),
        b"OPTIONS /events HTTP/1.1\r\nHost: t\r\nOrigin: http://example.test\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://example.test")
    );
    assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some("last-event-id")
    );
    let sub = Sse::open_with(s.addr(), "topic=a", &[("Origin", "http://example.test")]);
    assert_eq!(
        sub.header("access-control-allow-origin"),
        Some("http://example.test")
    );
    let other = Sse::open_with(s.addr(), "topic=a", &[("Origin", "http://evil.test")]);
    assert_eq!(other.status, 200);
    assert!(other.header("access-control-allow-origin").is_none());
}

#[test]
fn legacy_driver_serves_the_same_bytes() {
    let s = Server::start("[server]\nio_driver = \"legacy\"\n[sse]\nheartbeat_ms = 200\n");
    assert!(s.stderr.lock().unwrap().contains("driver=\"legacy\""));
    let mut sub = Sse::open(s.addr(), "topic=t.%3E");
    assert_head(&sub.head);
    let id = publish(s.addr(), "t.a", Some("q"), "x\ny");
    let raw = sub.read_raw_until(b"data: y\n\n");
    assert!(raw.ends_with(format!("id: {id}\nevent: q\ndata: x\ndata: y\n\n").as_bytes()));
    sub.set_timeout(Duration::from_secs(5));
    let raw = sub.read_raw_until(b":\n\n");
    assert!(raw.ends_with(b":\n\n"));
}
