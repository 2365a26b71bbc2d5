//! Publishing: raw and ndjson bodies, all-or-nothing batches, keep-alive and
//! pipelining, and every error status of SPEC §6.
mod support;

use std::io::{BufReader, Write};
use support::*;

#[test]
fn raw_publish_returns_the_id_subscribers_see() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=q.a");
    let r = post(
        s.addr(),
        "/publish?topic=q.a&event=tick",
        "text/plain",
        b"1.25",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let ev = sub.next_event().unwrap();
    assert_eq!(
        (ev.id.as_str(), ev.event.as_str(), ev.data.as_str()),
        (id.as_str(), "tick", "1.25")
    );
}

#[test]
fn ndjson_batch_ids_in_order() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=n.%3E");
    let body = b"{\"topic\":\"n.a\",\"data\":\"first\"}\n{\"topic\":\"n.b\",\"event\":\"e\",\"data\":\"two\\nlines\"}\r\n\n{\"topic\":\"x\",\"data\":\"elsewhere\"}\n";
    let r = post(s.addr(), "/publish", "application/x-ndjson", body);
    let ids = r.batch_ids();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let got = sub.take(2);
    assert_eq!((got[0].id_u64(), got[0].data.as_str()), (ids[0], "first"));
    assert_eq!(
        (got[1].id_u64(), got[1].event.as_str(), got[1].data.as_str()),
        (ids[1], "e", "two\nlines")
    );
}

#[test]
fn ndjson_batch_is_all_or_nothing() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=b.%3E");
    let before = s.metric("ringcast_events_published_total");
    let body = b"{\"topic\":\"b.ok\",\"data\":\"1\"}\n{\"topic\":\"b.*\",\"data\":\"2\"}\n{\"topic\":\"b.ok\",\"data\":\"3\"}\n";
    let r = post(s.addr(), "/publish", "application/x-ndjson", body);
    r.assert_error(400);
    assert!(
        r.json()["message"].as_str().unwrap().contains("line 2"),
        "{}",
        r.json()
    );
    let r = post(
        s.addr(),
        "/publish",
        "application/x-ndjson",
        b"{\"topic\":\"b.ok\",\"data\":\"1\"}\nnot json\n",
    );
    r.assert_error(400);
    assert!(r.json()["message"].as_str().unwrap().contains("line 2"));
    assert_eq!(s.metric("ringcast_events_published_total"), before);
    // The first event the subscriber sees is the next valid publish.
    let id = publish(s.addr(), "b.after", None, "valid");
    let ev = sub.next_event().unwrap();
    assert_eq!((ev.id_u64(), ev.data.as_str()), (id, "valid"));
}

#[test]
fn ten_thousand_publishes_on_one_keep_alive_connection() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=k");
    let mut p = Publisher::new(s.addr());
    let ids: Vec<u64> = (0..10_000)
        .map(|i| p.publish("k", &i.to_string()))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let got = sub.take(10_000);
    for (i, (ev, id)) in got.iter().zip(&ids).enumerate() {
        assert_eq!(
            (ev.id_u64(), ev.data.as_str()),
            (*id, i.to_string().as_str())
        );
    }
    // One subscriber, one publisher connection, and the /metrics request itself.
    assert_eq!(s.metric("ringcast_connections_total"), 3.0);
}

/// Concurrent publishers on both workers, with history in memory and with
/// the journal (`history.dir`) beside the order: every acknowledged id
/// reaches the subscriber once, in strictly increasing order, and each
/// publisher's events keep its order.
#[test]
fn concurrent_publishers_get_one_order_with_and_without_a_journal() {
    let dir = std::env::temp_dir().join(format!("ringcast-publish-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let journal = format!("[history]\ndir = \"{}\"\n", dir.display());
    for (kind, extra) in [("in memory", ""), ("journal", journal.as_str())] {
        let s = Server::start(&format!("[server]\nworkers = 2\n{extra}"));
        let mut sub = Sse::open(s.addr(), "topic=c.%3E");
        let addr = s.addr();
        let publishers: Vec<_> = (0..4)
            .map(|p| {
                std::thread::spawn(move || {
                    let mut conn = Publisher::new(addr);
                    (0..500)
                        .map(|i| conn.publish(&format!("c.p{p}"), &format!("{p} {i}")))
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let acked: Vec<Vec<u64>> = publishers.into_iter().map(|h| h.join().unwrap()).collect();
        let got = sub.take(2000);
        let ids: Vec<u64> = got.iter().map(|e| e.id_u64()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{kind}: one increasing order"
        );
        let mut all: Vec<u64> = acked.concat();
        all.sort_unstable();
        assert_eq!(ids, all, "{kind}: exactly the acknowledged ids");
        for (p, mine) in acked.iter().enumerate() {
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "{kind}: publisher {p} in order"
            );
            let data: Vec<String> = got
                .iter()
                .filter(|e| e.data.starts_with(&format!("{p} ")))
                .map(|e| e.data.clone())
                .collect();
            let want: Vec<String> = (0..500).map(|i| format!("{p} {i}")).collect();
            assert_eq!(data, want, "{kind}: publisher {p}'s events in its order");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start("");
    let mut conn = connect(s.addr());
    let mut raw = Vec::new();
    for i in 0..100 {
        let body = format!("p{i}");
        raw.extend_from_slice(
            format!(
                "POST /publish?topic=pipe HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        if i == 50 {
            raw.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        }
    }
    conn.write_all(&raw).unwrap();
    let mut r = BufReader::new(conn);
    let mut last = 0;
    for i in 0..101 {
        let resp = read_response(&mut r);
        assert_eq!(resp.status, 200);
        if i == 51 {
            assert_eq!(resp.json()["status"], "ok");
            continue;
        }
        let id: u64 = resp.json()["id"].as_str().unwrap().parse().unwrap();
        assert!(id > last);
        last = id;
    }
}

#[test]
fn chunked_and_expect_continue_bodies() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=c");
    let r = request(
        s.addr(),
        b"POST /publish?topic=c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(sub.next_event().unwrap().data, "hello world");
    let mut conn = connect(s.addr());
    conn.write_all(b"POST /publish?topic=c HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    assert_eq!(read_response(&mut r).status, 100);
    conn.write_all(b"body").unwrap();
    assert_eq!(read_response(&mut r).status, 200);
    assert_eq!(sub.next_event().unwrap().data, "body");
}

#[test]
fn chunked_body_in_small_writes_then_a_pipelined_request() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=c");
    let data = "x".repeat(3000);
    let mut req =
        b"POST /publish?topic=c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in data.as_bytes().chunks(700) {
        req.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut conn = connect(s.addr());
    let mut r = BufReader::new(conn.try_clone().unwrap());
    // Splits land inside size lines, data and CRLFs alike.
    for piece in req.chunks(13) {
        conn.write_all(piece).unwrap();
        conn.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    assert_eq!(read_response(&mut r).status, 200);
    assert_eq!(read_response(&mut r).json()["status"], "ok");
    assert_eq!(sub.next_event().unwrap().data, data);
}

#[test]
fn error_statuses() {
    let s = Server::start(
        "[limits]\nmax_body_bytes = 1000\nmax_event_bytes = 100\ntopics_per_subscription = 4\n",
    );
    let a = s.addr();
    let cases: Vec<(Response, u16)> = vec![
        (post(a, "/publish?topic=a.%2A", "text/plain", b"x"), 400),
        (post(a, "/publish?topic=a.%3E", "text/plain", b"x"), 400),
        (post(a, "/publish?topic=a..b", "text/plain", b"x"), 400),
        (post(a, "/publish", "text/plain", b"x"), 400),
        (
            post(a, "/publish?topic=a&event=resync", "text/plain", b"x"),
            400,
        ),
        (post(a, "/publish?topic=a", "text/plain", b"\xff\xfe"), 400),
        (post(a, "/publish?topic=a", "text/plain", &[b'x'; 101]), 413),
        (
            post(a, "/publish?topic=a", "text/plain", &[b'x'; 1001]),
            413,
        ),
        (get(a, "/nope"), 404),
        (
            request(
                a,
                b"DELETE /publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            ),
            405,
        ),
        (post(a, "/events?topic=a", "text/plain", b""), 405),
        (get(a, "/events"), 400),
        (get(a, "/events?topic=a..b"), 400),
        (get(a, "/events?topic=a.%3E.b"), 400),
        (
            get(a, "/events?topic=a&topic=b&topic=c&topic=d&topic=e"),
            400,
        ),
        (request(a, b"GARBAGE\r\n\r\n"), 400),
    ];
    for (i, (r, status)) in cases.iter().enumerate() {
        eprintln!("case {i}");
        r.assert_error(*status);
    }
    let r = request(
        a,
        b"DELETE /publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    // 431: a head over 16 KiB.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "y".repeat(17 * 1024)
    );
    request(a, big.as_bytes()).assert_error(431);
    assert_eq!(s.metric("ringcast_http_responses_total{code=\"431\"}"), 1.0);
    // The server is unharmed: a publish still works.
    publish(a, "still.ok", None, "x");
}

#[test]
fn request_head_timeout_is_408() {
    let s = Server::start("[limits]\nheader_timeout_ms = 300\n");
    let mut conn = connect(s.addr());
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(conn));
    r.assert_error(408);
    assert_eq!(s.metric("ringcast_http_responses_total{code=\"408\"}"), 1.0);
}
