//! Token auth (SPEC §5): which requests need a token and where it is read
//! from, what makes a token invalid (each refusal counted by reason), an
//! open stream closing when its token expires, and the CORS preflight.
//! Keys and their rotation are in `auth_keys.rs`, what a token allows in
//! `auth_grants.rs`, the delayed view in `auth_delayed.rs`.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::auth::*;
use support::*;

fn assert_bearer_challenge(r: &Response) {
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "a 401 names the scheme: {:?}",
        r.headers
    );
}

#[test]
fn only_streams_and_publishes_need_a_token() {
    let s = Server::start_with(&hs256_config(""), &["--workers", "2", "--demo"], &[]);
    let a = s.addr();
    for reason in REASONS {
        let series = format!("ringcast_auth_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(
            s.metric(&series),
            0.0,
            "{series} is exported from the start"
        );
    }
    for path in ["/healthz", "/readyz", "/metrics", "/stats", "/"] {
        assert_eq!(get(a, path).status, 200, "{path} needs no token");
    }
    for path in ["/events?topic=quotes.%3E", "/publish"] {
        let r = request(
            a,
            format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nOrigin: https://x.example\r\nAccess-Control-Request-Method: GET\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 204, "OPTIONS {path} needs no token");
    }

    let r = Sse::refused(a, "topic=quotes.%3E", &[]);
    r.assert_error_code(401, "unauthorized");
    assert_bearer_challenge(&r);
    let r = post(a, "/publish?topic=quotes.X", "text/plain", b"x");
    r.assert_error_code(401, "unauthorized");
    assert_bearer_challenge(&r);
    let r = post(
        a,
        "/publish",
        "application/x-ndjson",
        b"{\"topic\":\"quotes.X\",\"data\":\"x\"}\n",
    );
    r.assert_error_code(401, "unauthorized");
    // An Authorization header of another scheme carries no token.
    let r = Sse::refused(
        a,
        "topic=quotes.X",
        &[("Authorization", "Basic dXNlcjpwdw==")],
    );
    r.assert_error_code(401, "unauthorized");
    assert_eq!(
        s.metric_until("ringcast_auth_failures_total{reason=\"missing\"}", |v| v
            >= 4.0),
        4.0
    );
}

#[test]
fn the_token_comes_from_the_header_else_the_query_else_the_cookie() {
    let s = Server::start(&hs256_config(""));
    let a = s.addr();
    let grant = claims(json!({"subscribe": ["c.>"], "publish": ["c.>"]}));
    let good = hs256(&grant);
    let bad = hs256_with(b"not the server's secret, but long enough", &grant);
    let cookie = |t: &str| format!("theme=dark; ringcast_token={t}; lang=en");

    let mut by_header = Sse::open_with(a, "topic=c.x", &[("Authorization", &bearer(&good))]);
    let mut by_query = Sse::open(a, &format!("topic=c.x&access_token={good}"));
    let mut by_cookie = Sse::open_with(a, "topic=c.x", &[("Cookie", &cookie(&good))]);
    for sub in [&by_header, &by_query, &by_cookie] {
        assert_eq!(sub.status, 200, "{}", sub.head);
    }
    wait_subscribers(&s, 3);
    let mut ids = Vec::new();
    for (path, headers) in [
        (
            "/publish?topic=c.x".to_owned(),
            vec![("Authorization", bearer(&good))],
        ),
        (format!("/publish?topic=c.x&access_token={good}"), vec![]),
        (
            "/publish?topic=c.x".to_owned(),
            vec![("Cookie", cookie(&good))],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post_with(a, &path, "text/plain", &headers, b"x");
        assert_eq!(
            r.status,
            200,
            "{path} {headers:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        ids.push(r.json()["id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    for sub in [&mut by_header, &mut by_query, &mut by_cookie] {
        assert_eq!(
            sub.take(3).iter().map(Event::id_u64).collect::<Vec<_>>(),
            ids
        );
    }

    // The first place that holds a token decides; a valid token further
    // down does not rescue an invalid one.
    let r = Sse::refused(
        a,
        &format!("topic=c.x&access_token={good}"),
        &[("Authorization", &bearer(&bad))],
    );
    r.assert_error_code(401, "invalid_token");
    let r = Sse::refused(
        a,
        &format!("topic=c.x&access_token={bad}"),
        &[("Cookie", &cookie(&good))],
    );
    r.assert_error_code(401, "invalid_token");
    let r = post_with(
        a,
        &format!("/publish?topic=c.x&access_token={good}"),
        "text/plain",
        &[("Authorization", &bearer(&bad))],
        b"x",
    );
    r.assert_error_code(401, "invalid_token");
}

#[test]
fn invalid_tokens_are_refused_and_counted_by_reason() {
    let s = Server::start(&hs256_config(
        "issuer = \"https://issuer.test/\"\naudience = \"ringcast\"\n",
    ));
    let a = s.addr();
    let valid = |extra| {
        let base = json!({
            "iss": "https://issuer.test/",
            "aud": "ringcast",
            "subscribe": ["v.>"],
            "publish": ["v.>"],
        });
        merge(claims(base), extra)
    };
    // The controls: the claims every case below spoils are accepted.
    drop(subscribe(a, "topic=v.x", &hs256(&valid(json!({})))));
    let aud_list = hs256(&valid(json!({"aud": ["other", "ringcast"]})));
    drop(subscribe(a, "topic=v.x", &aud_list));
    publish_as(a, &hs256(&valid(json!({}))), "v.x", "ok");

    let mut rng = fastrand::Rng::with_seed(7);
    let random: String = (0..6 * 1024)
        .map(|_| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."[rng.usize(..65)]
                as char
        })
        .collect();
    let now = now_s();
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "expired",
            hs256(&valid(json!({"exp": now - 30}))),
            &["expired"],
        ),
        (
            "nbf ahead",
            hs256(&valid(json!({"nbf": now + 60}))),
            &["not_yet_valid"],
        ),
        (
            "issuer",
            hs256(&valid(json!({"iss": "https://evil.test/"}))),
            &["issuer"],
        ),
        (
            "no issuer",
            hs256(&valid(json!({"iss": null}))),
            &["issuer", "claims"],
        ),
        (
            "audience",
            hs256(&valid(json!({"aud": "someone-else"}))),
            &["audience"],
        ),
        (
            "audiences",
            hs256(&valid(json!({"aud": ["a", "b"]}))),
            &["audience"],
        ),
        (
            "no audience",
            hs256(&valid(json!({"aud": null}))),
            &["audience", "claims"],
        ),
        ("no exp", hs256(&valid(json!({"exp": null}))), &["claims"]),
        (
            "exp not a number",
            hs256(&valid(json!({"exp": "tomorrow"}))),
            &["claims", "malformed"],
        ),
        (
            "tenant not a string",
            hs256(&valid(json!({"tenant": 7}))),
            &["claims", "malformed"],
        ),
        (
            "subscribe not a list",
            hs256(&valid(json!({"subscribe": "v.>"}))),
            &["claims", "malformed"],
        ),
        (
            "wrong secret",
            hs256_with(b"a different secret of the same length!", &valid(json!({}))),
            &["signature"],
        ),
        (
            "alg none",
            unsigned(&valid(json!({}))),
            &["algorithm", "malformed"],
        ),
        (
            "HS384 (not on the whitelist)",
            sign(Algorithm::HS384, SECRET.as_bytes(), &valid(json!({}))),
            &["algorithm"],
        ),
        ("not a JWT", "not-a-jwt".to_owned(), &["malformed"]),
        ("three junk parts", "a.b.c".to_owned(), &["malformed"]),
        ("6 KB of random", random, &["malformed"]),
        (
            "signature cut off",
            {
                let t = hs256(&valid(json!({})));
                t[..t.rfind('.').unwrap() + 1].to_owned()
            },
            &["signature", "malformed"],
        ),
    ];
    for (what, token, reasons) in &cases {
        let before = failures(&s);
        let r = subscribe_refused(a, "topic=v.x", token);
        r.assert_error_code(401, "invalid_token");
        assert_bearer_challenge(&r);
        let reason = new_failure(&s, &before);
        assert!(
            reasons.contains(&reason.as_str()),
            "{what}: counted as {reason}, not {reasons:?}"
        );

        let before = failures(&s);
        try_publish(a, token, "v.x", "never").assert_error_code(401, "invalid_token");
        assert_eq!(
            new_failure(&s, &before),
            reason,
            "{what}: the same reason on /publish"
        );
    }
    assert_eq!(
        s.metric("ringcast_events_published_total"),
        1.0,
        "only the control"
    );
}

#[test]
fn leeway_allows_clock_skew_on_exp_and_nbf() {
    let s = Server::start(&hs256_config("leeway_ms = 5000\n"));
    let a = s.addr();
    let now = now_s();
    let grant = |extra| hs256(&merge(claims(json!({"subscribe": ["l.>"]})), extra));
    drop(subscribe(a, "topic=l.x", &grant(json!({"exp": now - 2}))));
    drop(subscribe(a, "topic=l.x", &grant(json!({"nbf": now + 2}))));
    let before = failures(&s);
    subscribe_refused(a, "topic=l.x", &grant(json!({"exp": now - 20})))
        .assert_error_code(401, "invalid_token");
    assert_eq!(new_failure(&s, &before), "expired");
    let before = failures(&s);
    subscribe_refused(a, "topic=l.x", &grant(json!({"nbf": now + 20})))
        .assert_error_code(401, "invalid_token");
    assert_eq!(new_failure(&s, &before), "not_yet_valid");
}

#[test]
fn oversized_tokens_never_pass_and_leave_the_server_up() {
    let s = Server::start(&hs256_config(""));
    let a = s.addr();
    let huge = "A".repeat(60 * 1024);
    for header in [
        format!("Authorization: Bearer {huge}"),
        format!("Cookie: ringcast_token={huge}"),
    ] {
        // The server may answer and close before it has read all of it:
        // writing and reading may then fail, but what arrives is a 431.
        let mut c = connect(a);
        let _ = c.write_all(
            format!("GET /events?topic=o.x HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n").as_bytes(),
        );
        let mut first = String::new();
        let _ = BufReader::new(c.try_clone().unwrap()).read_line(&mut first);
        assert!(
            first.is_empty() || first.starts_with("HTTP/1.1 431 "),
            "a 60 KB token gets {first:?}"
        );
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    }
    assert_eq!(get(a, "/healthz").status, 200);
    let ok = hs256(&claims(json!({"subscribe": ["o.>"]})));
    drop(subscribe(a, "topic=o.x", &ok));
}

/// The last line of what a stream carried before it ended.
fn last_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_stream_closes_when_its_token_expires_plus_leeway() {
    let leeway_ms = 1000;
    let s = Server::start(&hs256_config(&format!("leeway_ms = {leeway_ms}\n")));
    let a = s.addr();
    // exp is in whole seconds: E lies 1-2 s ahead.
    let exp = now_s() + 2;
    let close_at_ms = exp * 1000 + leeway_ms;
    let short = hs256(&json!({"exp": exp, "subscribe": ["x.>"]}));
    let long = hs256(&claims(json!({"subscribe": ["x.>"], "publish": ["x.>"]})));
    let mut sub = subscribe(a, "topic=x.a", &short);
    let mut stays = subscribe(a, "topic=x.a", &long);
    wait_subscribers(&s, 2);
    assert_eq!(s.metric("ringcast_token_expired_total"), 0.0);

    // Past exp but within the leeway the stream is still served.
    sleep_until_unix_ms(close_at_ms - 300);
    let before = publish_as(a, &long, "x.a", "before");
    assert_eq!(sub.next_event().unwrap().id_u64(), before);

    // Then it ends by itself (no heartbeat is due for 15 s), at
    // exp + leeway and within about a second of it.
    sub.set_timeout(Duration::from_millis(
        (close_at_ms + 1500).saturating_sub(now_ms()).max(1),
    ));
    assert!(
        sub.at_eof(),
        "still open {} ms after exp + leeway",
        now_ms() as i64 - close_at_ms as i64
    );
    let closed_ms = now_ms();
    assert!(
        closed_ms + 20 >= close_at_ms,
        "closed {} ms early",
        close_at_ms - closed_ms
    );
    assert!(
        closed_ms <= close_at_ms + 1200,
        "closed {} ms late",
        closed_ms - close_at_ms
    );
    let last = last_line(&sub.raw);
    assert!(
        last.strip_prefix("retry: ")
            .is_some_and(|ms| ms.parse::<u64>().is_ok()),
        "the last line is a retry: {last:?}"
    );
    assert_eq!(
        s.metric_until("ringcast_token_expired_total", |v| v >= 1.0),
        1.0
    );

    // The same token is now refused; the other stream goes on.
    subscribe_refused(a, "topic=x.a", &short).assert_error_code(401, "invalid_token");
    let after = publish_as(a, &long, "x.a", "after");
    assert_eq!(
        stays.take(2).iter().map(Event::id_u64).collect::<Vec<_>>(),
        [before, after]
    );
    assert_eq!(s.metric("ringcast_token_expired_total"), 1.0);
}

#[test]
fn the_cors_preflight_needs_no_token_and_allows_authorization() {
    let s = Server::start(&hs256_config(
        "[cors]\nallowed_origins = [\"https://app.example\"]\n",
    ));
    let a = s.addr();
    for (path, method, asked_headers) in [
        (
            "/events?topic=c.x",
            "GET",
            Some("authorization, last-event-id"),
        ),
        ("/events?topic=c.x", "GET", None),
        (
            "/publish?topic=c.x",
            "POST",
            Some("authorization, content-type"),
        ),
    ] {
        let mut raw = format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: {method}\r\n"
        );
        if let Some(h) = asked_headers {
            raw.push_str(&format!("Access-Control-Request-Headers: {h}\r\n"));
        }
        raw.push_str("\r\n");
        let r = request(a, raw.as_bytes());
        assert_eq!(
            r.status,
            204,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        let allowed = r
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(
            allowed.contains("authorization"),
            "{path}: allows {allowed:?}"
        );
    }
    // The refusal itself carries the CORS headers, so the page can read it.
    let r = Sse::refused(a, "topic=c.x", &[("Origin", "https://app.example")]);
    r.assert_error_code(401, "unauthorized");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}
