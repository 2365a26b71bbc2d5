//! What a token allows (SPEC §5): subscription patterns and publish
//! topics covered by its grants, one kind of grant per subscription,
//! tenants as separate namespaces, and the publish rate per holder.
mod support;

use std::time::Duration;

use serde_json::json;
use support::auth::*;
use support::*;

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
    let ids = r.batch_ids();
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
    assert_eq!(ids(&mut r, 2), [d0, d1]);

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
    // 2 events/s: a unit takes 500 ms to come back, far longer than the
    // requests between a refusal and the check that follows it.
    let s = Server::start(&hs256_config("[limits]\npublish_rate_per_token = 2\n"));
    let a = s.addr();
    let holder = |who| hs256(&claims(merge(json!({"publish": ["p.>"]}), who)));
    let two = [("p.x", "1"), ("p.x", "2")];
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
    assert_eq!(try_publish_batch(a, &p1, &two).status, 200);
    let wait = limited(try_publish_batch(a, &p1, &two));
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
    assert_eq!(try_publish_batch(a, &alice, &two).status, 200);
    limited(try_publish(
        a,
        &holder(json!({"sub": "alice", "exp": now_s() + 90})),
        "p.x",
        "6",
    ));
    publish_as(a, &holder(json!({"sub": "bob"})), "p.x", "bob");

    // Single publishes count too: the burst passes, then the bucket runs dry.
    let p3 = holder(json!({"jti": "p3"}));
    for i in 0..2 {
        publish_as(a, &p3, "p.x", &i.to_string());
    }
    let refused = (0..3).find_map(|_| {
        let r = try_publish(a, &p3, "p.x", "more");
        (r.status != 200).then_some(r)
    });
    limited(refused.expect("the bucket runs dry"));

    // Time refills it (time is the subject here).
    std::thread::sleep(Duration::from_secs(wait));
    publish_as(a, &p1, "p.x", "refilled");
}
