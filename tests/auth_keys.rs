//! Keys (SPEC §5, §7): RS256 and ES256 tokens against every key of a PEM
//! file or the key a JWKS document names by `kid`, and SIGHUP swapping
//! keys and secret without touching the streams already open. Needs the
//! `openssl` CLI for the keys.
mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::auth::*;
use support::*;

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

/// Publishes with `token` until it is accepted (a reload is on its way);
/// returns the id, or panics when the deadline passes.
fn publish_once_accepted(s: &Server, token: &str, topic: &str, data: &str) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = try_publish(s.addr(), token, topic, data);
        if r.status == 200 {
            return r.json()["id"].as_str().unwrap().parse().unwrap();
        }
        r.assert_error_code(401, "invalid_token");
        assert!(Instant::now() < deadline, "the reload never took effect");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits (bounded) until the server logs a warning or error about a
/// reload or the key file after `from` bytes of its log: the only sign
/// that a failed reload has happened (a successful one is not enough).
fn wait_failed_reload_logged(s: &Server, from: usize, file: &std::path::Path) {
    let deadline = Instant::now() + TIMEOUT;
    let name = file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_ascii_lowercase();
    loop {
        let log = s.stderr.lock().unwrap()[from..].to_ascii_lowercase();
        let found = log.lines().any(|l| {
            (l.contains("warn") || l.contains("error"))
                && (l.contains("reload") || l.contains(&name))
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no warning or error about the failed reload in the log"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn sighup_rotates_the_keys_and_open_streams_stay() {
    if !openssl_ready() {
        return;
    }
    let (old, new) = (Key::rsa(), Key::ec());
    let file = write_temp("keys.pem", &old.public_pem);
    let s = Server::start(&format!(
        "[auth]\npublic_key_file = \"{}\"\n",
        file.display()
    ));
    let a = s.addr();
    let grant = claims(json!({"subscribe": ["r.>"], "publish": ["r.>"]}));
    let (by_old, by_new) = (old.sign(&grant), new.sign(&grant));

    let mut sub = subscribe(a, "topic=r.x", &by_old);
    wait_subscribers(&s, 1);
    let first = publish_as(a, &by_old, "r.x", "signed by the old key");
    assert_eq!(sub.next_event().unwrap().id_u64(), first);
    try_publish(a, &by_new, "r.x", "not yet").assert_error_code(401, "invalid_token");

    replace_file(&file, &new.public_pem);
    s.signal(libc::SIGHUP);
    let second = publish_once_accepted(&s, &by_new, "r.x", "signed by the new key");
    // The stream opened with the old key stays, and gets what the new key
    // published.
    let ev = sub.next_event().unwrap();
    assert_eq!(
        (ev.id_u64(), ev.data.as_str()),
        (second, "signed by the new key")
    );
    subscribe_refused(a, "topic=r.x", &by_old).assert_error_code(401, "invalid_token");
    try_publish(a, &by_old, "r.x", "old key").assert_error_code(401, "invalid_token");
    drop(subscribe(a, "topic=r.x", &by_new));

    // A broken file keeps the keys that were loaded.
    replace_file(
        &file,
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    );
    let log_len = s.stderr.lock().unwrap().len();
    s.signal(libc::SIGHUP);
    wait_failed_reload_logged(&s, log_len, &file);
    let third = publish_as(a, &by_new, "r.x", "after a failed reload");
    assert_eq!(sub.next_event().unwrap().id_u64(), third);
    try_publish(a, &by_old, "r.x", "old key").assert_error_code(401, "invalid_token");
    assert_eq!(get(a, "/healthz").status, 200);
    let _ = std::fs::remove_file(file);
}

#[test]
fn sighup_reloads_the_hs256_secret_from_the_config_file() {
    let config = |secret: &str| format!("[auth]\nhs256_secret = \"{secret}\"\n");
    let path = write_temp(
        "ringcast.toml",
        &config("the-first-secret-0123456789abcdef"),
    );
    let s = Server::start_with(
        "",
        &["--workers", "2", "--config", path.to_str().unwrap()],
        &[],
    );
    let a = s.addr();
    let grant = claims(json!({"subscribe": ["h.>"], "publish": ["h.>"]}));
    let first = hs256_with(b"the-first-secret-0123456789abcdef", &grant);
    let second = hs256_with(b"the-second-secret-0123456789abcde", &grant);

    let mut sub = subscribe(a, "topic=h.x", &first);
    wait_subscribers(&s, 1);
    try_publish(a, &second, "h.x", "not yet").assert_error_code(401, "invalid_token");
    replace_file(&path, &config("the-second-secret-0123456789abcde"));
    s.signal(libc::SIGHUP);
    let id = publish_once_accepted(&s, &second, "h.x", "new secret");
    assert_eq!(
        sub.next_event().unwrap().id_u64(),
        id,
        "the open stream stays"
    );
    try_publish(a, &first, "h.x", "old secret").assert_error_code(401, "invalid_token");
    let _ = std::fs::remove_file(path);
}
