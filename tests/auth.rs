//! Token auth (SPEC §5): which requests need a token and where it is read
//! from, what makes a token invalid (each refusal counted by reason),
//! RS256/ES256 keys from PEM and JWKS files, grants (what a token may
//! subscribe to and publish), tenants, the publish rate and the CORS
//! preflight. Expiry and key rotation are in `auth_stream.rs`, the delayed
//! view in `auth_delayed.rs`.
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

#[test]
fn rs256_and_es256_tokens_verify_against_every_key_in_the_pem_file() {
    if !openssl_ready() {
        return;
    }
    let (rsa, ec, stranger) = (Key::rsa(), Key::ec(), Key::rsa());
    let file = write_temp("keys.pem", &format!("{}{}", rsa.public_pem, ec.public_pem));
    let s = Server::start(&format!(
        "[auth]\npublic_key_file = \"{}\"\n",
        file.display()
    ));
    let a = s.addr();
    let grant = claims(json!({"subscribe": ["k.>"], "publish": ["k.>"]}));

    let mut by_rsa = subscribe(a, "topic=k.x", &rsa.sign(&grant));
    let mut by_ec = subscribe(a, "topic=k.x", &ec.sign(&grant));
    wait_subscribers(&s, 2);
    let ids = vec![
        publish_as(a, &rsa.sign(&grant), "k.x", "rs256"),
        publish_as(a, &ec.sign(&grant), "k.x", "es256"),
    ];
    for sub in [&mut by_rsa, &mut by_ec] {
        assert_eq!(
            sub.take(2).iter().map(Event::id_u64).collect::<Vec<_>>(),
            ids
        );
    }

    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "a key not in the file",
            stranger.sign(&grant),
            &["signature", "unknown_key"],
        ),
        (
            // The classic confusion: the public key used as an HMAC secret.
            "HS256 keyed with the public key",
            hs256_with(rsa.public_pem.as_bytes(), &grant),
            &["algorithm", "unknown_key"],
        ),
        (
            "HS256 with no secret configured",
            hs256(&grant),
            &["algorithm", "unknown_key"],
        ),
        (
            "RS384 (not on the whitelist)",
            rsa.sign_as(Algorithm::RS384, &grant),
            &["algorithm"],
        ),
        ("alg none", unsigned(&grant), &["algorithm", "malformed"]),
    ];
    for (what, token, reasons) in &cases {
        let before = failures(&s);
        subscribe_refused(a, "topic=k.x", token).assert_error_code(401, "invalid_token");
        let reason = new_failure(&s, &before);
        assert!(
            reasons.contains(&reason.as_str()),
            "{what}: counted as {reason}, not {reasons:?}"
        );
        try_publish(a, token, "k.x", "never").assert_error_code(401, "invalid_token");
    }
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_jwks_document_picks_the_key_by_kid() {
    if !openssl_ready() {
        return;
    }
    let (rsa, ec, stranger) = (Key::rsa(), Key::ec(), Key::rsa());
    let jwks = json!({"keys": [rsa.jwk("rsa-1"), ec.jwk("ec-1")]});
    let file = write_temp("jwks.json", &jwks.to_string());
    let s = Server::start(&format!(
        "[auth]\npublic_key_file = \"{}\"\n",
        file.display()
    ));
    let a = s.addr();
    let grant = claims(json!({"subscribe": ["j.>"], "publish": ["j.>"]}));

    drop(subscribe(a, "topic=j.x", &rsa.sign_kid("rsa-1", &grant)));
    drop(subscribe(a, "topic=j.x", &ec.sign_kid("ec-1", &grant)));
    publish_as(a, &ec.sign_kid("ec-1", &grant), "j.x", "ok");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "an unknown kid",
            rsa.sign_kid("rsa-2", &grant),
            &["unknown_key"],
        ),
        (
            "the kid of a key of another type",
            rsa.sign_kid("ec-1", &grant),
            &["algorithm", "unknown_key", "signature"],
        ),
        (
            "a listed kid, another key",
            stranger.sign_kid("rsa-1", &grant),
            &["signature"],
        ),
    ];
    for (what, token, reasons) in &cases {
        let before = failures(&s);
        subscribe_refused(a, "topic=j.x", token).assert_error_code(401, "invalid_token");
        let reason = new_failure(&s, &before);
        assert!(
            reasons.contains(&reason.as_str()),
            "{what}: counted as {reason}, not {reasons:?}"
        );
    }
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_subscription_pattern_needs_a_grant_that_covers_it() {
    let s = Server::start(&hs256_config(""));
    let a = s.addr();
    let cases: &[(serde_json::Value, &[&str], u16)] = &[
        (json!({"subscribe": ["quotes.*"]}), &["quotes.AAPL"], 200),
        (json!({"subscribe": ["quotes.*"]}), &["quotes.*"], 200),
        (json!({"subscribe": ["quotes.*"]}), &["quotes.>"], 403),
        (
            json!({"subscribe": ["quotes.*"]}),
            &["quotes.NASDAQ.AAPL"],
            403,
        ),
        (json!({"subscribe": ["quotes.>"]}), &["quotes.*.AAPL"], 200),
        (json!({"subscribe": ["quotes.>"]}), &["quotes.>"], 200),
        (json!({"subscribe": ["quotes.>"]}), &["quotes"], 403),
        (json!({"subscribe": ["quotes.>"]}), &[">"], 403),
        (
            json!({"subscribe": ["quotes.*.AAPL"]}),
            &["quotes.NYSE.AAPL"],
            200,
        ),
        (
            json!({"subscribe": ["quotes.*.AAPL"]}),
            &["quotes.*.*"],
            403,
        ),
        (
            json!({"subscribe": ["quotes.NASDAQ.AAPL"]}),
            &["quotes.NASDAQ.*"],
            403,
        ),
        (
            json!({"subscribe": [">"]}),
            &["fx.EUR.USD", "quotes.*.AAPL"],
            200,
        ),
        (
            json!({"subscribe": ["quotes.>", "fx.*"]}),
            &["quotes.A", "fx.EUR"],
            200,
        ),
        (
            json!({"subscribe": ["quotes.>", "fx.*"]}),
            &["quotes.A", "fx.EUR.USD"],
            403,
        ),
        (
            json!({"subscribe_delayed": ["quotes.>"]}),
            &["quotes.A"],
            200,
        ),
        (json!({"publish": [">"]}), &["quotes.A"], 403),
        (json!({}), &["quotes.A"], 403),
    ];
    let before = failures(&s);
    for (grant, patterns, status) in cases {
        let token = hs256(&claims(grant.clone()));
        let query: Vec<String> = patterns
            .iter()
            .map(|p| format!("topic={}", enc(p)))
            .collect();
        let query = query.join("&");
        if *status == 200 {
            drop(subscribe(a, &query, &token));
        } else {
            let r = subscribe_refused(a, &query, &token);
            assert_eq!(r.status, *status, "{grant} for {patterns:?}");
            r.assert_error_code(403, "forbidden");
        }
    }
    assert_eq!(failures(&s), before, "a 403 is not an invalid token");
}

#[test]
fn a_publish_needs_a_grant_that_covers_its_topic_and_a_batch_is_all_or_nothing() {
    let s = Server::start(&hs256_config(""));
    let a = s.addr();
    let reader = hs256(&claims(json!({"subscribe": [">"]})));
    let writer = hs256(&claims(json!({"publish": ["quotes.NASDAQ.*", "news.>"]})));
    let mut sub = subscribe(a, "topic=%3E", &reader);
    wait_subscribers(&s, 1);

    let ok = publish_as(a, &writer, "quotes.NASDAQ.AAPL", "ok");
    assert_eq!(sub.next_event().unwrap().id_u64(), ok);
    for topic in ["quotes.NYSE.IBM", "quotes.NASDAQ.AAPL.x", "news"] {
        try_publish(a, &writer, topic, "no").assert_error_code(403, "forbidden");
    }
    // Reading is not writing.
    try_publish(a, &reader, "quotes.NASDAQ.AAPL", "no").assert_error_code(403, "forbidden");
    let published = s.metric("ringcast_events_published_total");
    try_publish_batch(
        a,
        &writer,
        &[
            ("quotes.NASDAQ.MSFT", "1"),
            ("news.x.y", "2"),
            ("quotes.NYSE.IBM", "3"),
        ],
    )
    .assert_error_code(403, "forbidden");
    let r = try_publish_batch(
        a,
        &writer,
        &[("quotes.NASDAQ.MSFT", "4"), ("news.x.y", "5")],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ids: Vec<u64> = r.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    let got = sub.take(2);
    assert_eq!(
        got.iter().map(Event::id_u64).collect::<Vec<_>>(),
        ids,
        "nothing of the refused batch"
    );
    assert_eq!((got[0].data.as_str(), got[1].data.as_str()), ("4", "5"));
    assert_eq!(s.metric("ringcast_events_published_total"), published + 2.0);
}

#[test]
fn one_subscription_is_all_real_time_or_all_delayed() {
    let s = Server::start(&hs256_config(""));
    let a = s.addr();
    let token = hs256(&claims(json!({
        "subscribe": ["rt.>"],
        "subscribe_delayed": ["dl.>", "rt.both.>"],
    })));
    subscribe_refused(a, "topic=rt.a&topic=dl.b", &token).assert_error_code(400, "mixed_delay");
    subscribe_refused(a, "topic=dl.b&topic=rt.%3E", &token).assert_error_code(400, "mixed_delay");
    drop(subscribe(a, "topic=dl.a&topic=dl.%3E", &token));
    // A pattern covered by both kinds of grant is real-time.
    let mut rt = subscribe(a, "topic=rt.a&topic=rt.both.x", &token);
    wait_subscribers(&s, 1);
    let writer = hs256(&claims(json!({"publish": [">"]})));
    let id = publish_as(a, &writer, "rt.both.x", "now");
    let ev = rt.next_event().unwrap();
    assert_eq!(
        (ev.id_u64(), ev.data.as_str()),
        (id, "now"),
        "delivered at once"
    );
}

#[test]
fn tenants_never_see_each_others_events() {
    let s = Server::start(&hs256_config(""));
    let a = s.addr();
    let tok_a = hs256(&claims(
        json!({"tenant": "a", "subscribe": ["quotes.>"], "publish": ["quotes.>"]}),
    ));
    let tok_b = hs256(&claims(
        json!({"tenant": "b", "subscribe": [">"], "publish": [">"]}),
    ));
    let tok_d = hs256(&claims(json!({"subscribe": [">"], "publish": [">"]})));
    let b0 = publish_as(a, &tok_b, "quotes.X", "b0");
    let d0 = publish_as(a, &tok_d, "quotes.X", "d0");

    let mut sub_a = subscribe(a, "topic=quotes.X", &tok_a);
    let mut sub_b = subscribe(a, "topic=%3E&topic=quotes.X", &tok_b);
    let mut sub_d = subscribe(a, "topic=%3E", &tok_d);
    wait_subscribers(&s, 3);
    let a1 = publish_as(a, &tok_a, "quotes.X", "a1");
    let b1 = publish_as(a, &tok_b, "quotes.X", "b1");
    let d1 = publish_as(a, &tok_d, "quotes.X", "d1");
    let a2 = publish_as(a, &tok_a, "quotes.X", "a2");
    assert!(
        b0 < d0 && d0 < a1 && a1 < b1 && b1 < d1 && d1 < a2,
        "one global id sequence"
    );
    // Streams are in id order, so the next event of each proves that the
    // other tenants' earlier events were skipped.
    let ids = |sub: &mut Sse, n| sub.take(n).iter().map(Event::id_u64).collect::<Vec<_>>();
    assert_eq!(ids(&mut sub_a, 2), [a1, a2]);
    assert_eq!(ids(&mut sub_b, 1), [b1]);
    assert_eq!(ids(&mut sub_d, 1), [d1]);

    // Replay: from an id before all of them, each gets only its own.
    let b2 = publish_as(a, &tok_b, "quotes.X", "b2");
    let from = b0.to_string();
    let mut r = Sse::open_with(
        a,
        "topic=%3E",
        &[("Authorization", &bearer(&tok_b)), ("Last-Event-ID", &from)],
    );
    assert_eq!(ids(&mut r, 2), [b1, b2]);
    let mut r = Sse::open_with(
        a,
        "topic=quotes.%3E",
        &[("Authorization", &bearer(&tok_a)), ("Last-Event-ID", &from)],
    );
    assert_eq!(ids(&mut r, 2), [a1, a2]);
    let mut r = Sse::open_with(
        a,
        "topic=%3E",
        &[("Authorization", &bearer(&tok_d)), ("Last-Event-ID", &from)],
    );
    assert_eq!(ids(&mut r, 1), [d1]);

    // Snapshot: the newest value of quotes.X in each namespace.
    for (tok, want, data) in [(&tok_a, a2, "a2"), (&tok_b, b2, "b2"), (&tok_d, d1, "d1")] {
        let mut snap = subscribe(a, "topic=quotes.X&snapshot=1", tok);
        let ev = snap.next_event().unwrap();
        assert_eq!((ev.id_u64(), ev.data.as_str()), (want, data));
        // Then live, nothing else of the snapshot.
        let live = publish_as(a, tok, "quotes.X", "live");
        assert_eq!(snap.next_event().unwrap().id_u64(), live);
    }
}

#[test]
fn the_publish_rate_is_a_bucket_per_holder() {
    let s = Server::start(&hs256_config("[limits]\npublish_rate_per_token = 5\n"));
    let a = s.addr();
    let holder = |who| hs256(&claims(merge(json!({"publish": ["p.>"]}), who)));
    let five = [
        ("p.x", "1"),
        ("p.x", "2"),
        ("p.x", "3"),
        ("p.x", "4"),
        ("p.x", "5"),
    ];
    let limited = |r: Response| {
        r.assert_error_code(429, "rate_limited");
        let after: u64 = r
            .header("retry-after")
            .expect("a 429 says when to retry")
            .parse()
            .expect("Retry-After in whole seconds");
        assert!(after >= 1, "Retry-After {after}");
        after
    };

    // The bucket starts full with one second's worth; a batch takes one
    // unit per event.
    let p1 = holder(json!({"jti": "p1"}));
    assert_eq!(try_publish_batch(a, &p1, &five).status, 200);
    let wait = limited(try_publish_batch(a, &p1, &five));
    // Another token of the same holder (same jti) shares the bucket...
    limited(try_publish(
        a,
        &holder(json!({"jti": "p1", "exp": now_s() + 120})),
        "p.x",
        "6",
    ));
    // ...another holder has its own.
    publish_as(a, &holder(json!({"jti": "p2"})), "p.x", "other holder");

    // Without jti, sub names the holder.
    let alice = holder(json!({"sub": "alice"}));
    assert_eq!(try_publish_batch(a, &alice, &five).status, 200);
    limited(try_publish(
        a,
        &holder(json!({"sub": "alice", "exp": now_s() + 90})),
        "p.x",
        "6",
    ));
    publish_as(a, &holder(json!({"sub": "bob"})), "p.x", "bob");

    // Single publishes count too: the burst passes, then the bucket runs dry.
    let p3 = holder(json!({"jti": "p3"}));
    for i in 0..5 {
        publish_as(a, &p3, "p.x", &i.to_string());
    }
    let refused = (0..10).find_map(|_| {
        let r = try_publish(a, &p3, "p.x", "more");
        (r.status != 200).then_some(r)
    });
    limited(refused.expect("the bucket runs dry"));

    // Time refills it (time is the subject here).
    std::thread::sleep(Duration::from_secs(wait));
    publish_as(a, &p1, "p.x", "refilled");
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
