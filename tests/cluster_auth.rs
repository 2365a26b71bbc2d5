//! Cluster mode with auth (SPEC §5 and §8): tenants hold across nodes
//! exactly as on one node — live, on a resume read from JetStream, and in
//! a snapshot read from JetStream — because a tenant's topics are its own
//! subjects (`<prefix>.<tenant>.<topic>`, `<prefix>._.<topic>` without one).
mod support;

use serde_json::json;
use support::auth::{bearer, claims, hs256, hs256_config, subscribe};
use support::nats::{self, node, Nats};
use support::*;

fn publish_as(addr: std::net::SocketAddr, token: &str, topic: &str, data: &str) -> u64 {
    let r = post_with(
        addr,
        &format!("/publish?topic={}", enc(topic)),
        "text/plain",
        &[("Authorization", &bearer(token))],
        data.as_bytes(),
    );
    assert_eq!(r.status, 200, "publish {topic}: {:?}", r.json());
    r.json()["id"].as_str().unwrap().parse().unwrap()
}

fn ids(sub: &mut Sse, n: usize) -> Vec<u64> {
    sub.take(n).iter().map(Event::id_u64).collect()
}

#[test]
fn tenants_stay_apart_across_nodes_live_on_resume_and_in_snapshots() {
    if !nats::available() {
        return;
    }
    let n = Nats::start();
    // Node B keeps 2 events per topic, so older ones come from JetStream.
    let a = node(&n, &hs256_config(""));
    let b = node(&n, &hs256_config("[history]\nper_topic = 2\n"));
    let tok = |tenant: Option<&str>| {
        let mut c = json!({"subscribe": [">"], "publish": [">"]});
        if let Some(t) = tenant {
            c["tenant"] = json!(t);
        }
        hs256(&claims(c))
    };
    let (tok_a, tok_b, tok_d) = (tok(Some("a")), tok(Some("b")), tok(None));

    let mut sub_a = subscribe(b.addr(), "topic=quotes.X", &tok_a);
    let mut sub_b = subscribe(b.addr(), "topic=%3E", &tok_b);
    let mut sub_d = subscribe(b.addr(), "topic=%3E", &tok_d);
    wait_subscribers(&b, 3);
    // Published on A, delivered by B: each tenant only its own, in one
    // global id order.
    let a1 = publish_as(a.addr(), &tok_a, "quotes.X", "a1");
    let b1 = publish_as(a.addr(), &tok_b, "quotes.X", "b1");
    let d1 = publish_as(a.addr(), &tok_d, "quotes.X", "d1");
    let mut a_more = Vec::new();
    for i in 2..=5 {
        a_more.push(publish_as(a.addr(), &tok_a, "quotes.X", &format!("a{i}")));
    }
    let b2 = publish_as(a.addr(), &tok_b, "quotes.X", "b2");
    assert!(a1 < b1 && b1 < d1 && d1 < a_more[0]);
    let mut want_a = vec![a1];
    want_a.extend(&a_more);
    assert_eq!(ids(&mut sub_a, 5), want_a);
    assert_eq!(ids(&mut sub_b, 2), [b1, b2], "tenant b sees only its own");
    let d2 = publish_as(a.addr(), &tok_d, "quotes.Y", "d2");
    assert_eq!(ids(&mut sub_d, 2), [d1, d2], "no tenant sees only its own");

    // A resume on B from before a1: B's history keeps 2 events per topic,
    // so this is read from JetStream — and still only tenant a's events.
    let before = (a1 - 1).to_string();
    let mut r = Sse::open_with(
        b.addr(),
        "topic=%3E",
        &[
            ("Authorization", &bearer(&tok_a)),
            ("Last-Event-ID", &before),
        ],
    );
    assert_eq!(
        ids(&mut r, 5),
        want_a,
        "replay from JetStream, tenant a only"
    );
    let a6 = publish_as(a.addr(), &tok_a, "quotes.X", "a6");
    assert_eq!(ids(&mut r, 1), [a6], "then live, nothing of b or d between");

    // A snapshot on a node started after all of it: JetStream's newest
    // value per subject, each tenant its own.
    let c = node(&n, &hs256_config(""));
    let mut snap_b = subscribe(c.addr(), "topic=%3E&snapshot=1", &tok_b);
    let got = snap_b.take(1);
    assert_eq!(got[0].id_u64(), b2);
    assert_eq!(got[0].data, "b2");
    let mut snap_d = subscribe(c.addr(), "topic=quotes.*&snapshot=1", &tok_d);
    let got: Vec<(u64, String)> = snap_d
        .take(2)
        .into_iter()
        .map(|e| (e.id_u64(), e.data))
        .collect();
    assert_eq!(got, [(d1, "d1".to_owned()), (d2, "d2".to_owned())]);
    // Tenant b's snapshot ended with b2: the next event it sees is its own
    // live one, not a's or d's.
    let _ = publish_as(c.addr(), &tok_a, "quotes.X", "a7");
    let b3 = publish_as(c.addr(), &tok_b, "quotes.Z", "b3");
    assert_eq!(ids(&mut snap_b, 1), [b3]);
}
