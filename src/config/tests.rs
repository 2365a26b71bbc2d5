//! The configuration's loading, defaults and refusals.

use super::*;

fn load(env: &[(&str, &str)]) -> Result<Config, StartError> {
    Config::load(
        &Overrides::default(),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn default_demo_symbols_are_topics() {
    for t in DEFAULT_DEMO_SYMBOLS {
        crate::topic::validate_topic(t).unwrap();
    }
}

#[test]
fn defaults_match_spec() {
    let c = load(&[]).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.sse.heartbeat_ms, 15_000);
    assert_eq!(c.sse.max_pending_bytes, 1_048_576);
    assert_eq!(c.history.max_bytes, 268_435_456);
    assert_eq!(c.limits.max_event_bytes, 65_536);
    assert!(c.workers() >= 1);
}

#[test]
fn example_file_documents_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/ringcast.toml");
    let cli = Overrides {
        config: Some(path),
        ..Default::default()
    };
    assert_eq!(Config::load(&cli, []).unwrap(), Config::default());
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/ringcast.toml"),
    )
    .unwrap();
    let schema = load::Schema::of_defaults();
    assert_eq!(schema.keys().count(), 54, "the schema lists every key");
    for (section, key) in schema.keys() {
        let body = text
            .split(&format!("[{section}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("[{section}] undocumented"));
        let body = body.split("\n[").next().unwrap();
        assert!(
            body.contains(&format!("\n{key} = ")) || body.contains(&format!("\n# {key} = ")),
            "{section}.{key} undocumented in tuning/ringcast.toml"
        );
    }
}

#[test]
fn env_overlays_and_types() {
    let c = load(&[
        ("RINGCAST_SERVER_LISTEN", "127.0.0.1:9"),
        ("RINGCAST_SSE_HEARTBEAT_MS", "250"),
        (
            "RINGCAST_CORS_ALLOWED_ORIGINS",
            "http://a.test, http://b.test",
        ),
        ("RINGCAST_SERVER_PIN_CORES", "false"),
        (
            "RINGCAST_SERVER_TRUSTED_PROXIES",
            "127.0.0.1, 10.0.0.0/8, fd00::/8",
        ),
        ("HOME", "/root"),
    ])
    .unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9");
    assert_eq!(c.sse.heartbeat_ms, 250);
    // A string key takes the variable's own text, even when it reads as
    // a number.
    let s = load(&[("RINGCAST_AUTH_HS256_SECRET", "1e5")]).unwrap();
    assert_eq!(s.auth.hs256_secret.as_deref(), Some("1e5"));
    assert_eq!(
        c.cors.allowed_origins,
        vec!["http://a.test", "http://b.test"]
    );
    assert!(!c.server.pin_cores);
    assert_eq!(
        c.server.trusted_proxies,
        vec!["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
    );
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (("RINGCAST_SERVER_BOGUS", "1"), "server.bogus"),
        (("RINGCAST_NOPE_X", "1"), "nope"),
        (("RINGCAST_SSE_HEARTBEAT_MS", "abc"), "sse.heartbeat_ms"),
        (("RINGCAST_SSE_HEARTBEAT_MS", "0"), "sse.heartbeat_ms"),
        (("RINGCAST_SERVER_LISTEN", "nowhere"), "server.listen"),
        (("RINGCAST_SSE_SLOW_POLICY", "drop"), "sse.slow_policy"),
        (("RINGCAST_LOG_FORMAT", "xml"), "log.format"),
        (
            ("RINGCAST_SERVER_TRUSTED_PROXIES", "10.0.0.0/33"),
            "`server.trusted_proxies` (from environment RINGCAST_SERVER_TRUSTED_PROXIES): \"10.0.0.0/33\": the prefix length",
        ),
        (
            (
                "RINGCAST_SERVER_TRUSTED_PROXIES",
                "[\"127.0.0.1\", \"proxy.local\"]",
            ),
            "\"proxy.local\" is not an IP address or CIDR range",
        ),
        (
            ("RINGCAST_SERVER_TRUSTED_PROXIES", "10.1.0.0/8"),
            "did you mean \"10.0.0.0/8\"",
        ),
        (("RINGCAST_AUTH_HS256_SECRET", "\"\""), "auth.hs256_secret"),
        (("RINGCAST_AUTH_DELAY_MS", "-1"), "auth.delay_ms"),
        (("RINGCAST_CLUSTER_NATS_URL", "notaurl"), "cluster.nats_url"),
        (("RINGCAST_CLUSTER_STREAM", "a.b"), "cluster.stream"),
        (
            ("RINGCAST_CLUSTER_CREDENTIALS_FILE", "/nonexistent/x.creds"),
            "cluster.credentials_file",
        ),
        (
            ("RINGCAST_CLUSTER_PUBLISH_TIMEOUT_MS", "5"),
            "cluster.publish_timeout_ms",
        ),
        // Semantic checks name where the value came from too.
        (
            ("RINGCAST_HISTORY_PER_TOPIC", "0"),
            "`history.per_topic` (from environment RINGCAST_HISTORY_PER_TOPIC)",
        ),
        (
            ("RINGCAST_LOG_LEVEL", "warnig"),
            "`log.level` (from environment RINGCAST_LOG_LEVEL): \"warnig\" is not a level",
        ),
        (
            ("RINGCAST_HISTORY_MAX_BYTES", "99999999999999999999"),
            "history.max_bytes` (from environment RINGCAST_HISTORY_MAX_BYTES)",
        ),
        // An [auth] setting without a key never starts a server open.
        (
            ("RINGCAST_AUTH_ISSUER", "https://auth.example.com/"),
            "`auth.issuer` is set (from environment RINGCAST_AUTH_ISSUER) but auth has no key",
        ),
        (
            ("RINGCAST_AUTH_DELAY_MS", "60000"),
            "set auth.hs256_secret or auth.public_key_file",
        ),
    ];
    for ((k, v), want) in cases {
        let err = load(&[(k, v)]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(want), "{k}={v}: {err}");
        assert!(!err.to_string().contains('\n'), "{k}={v}: one line: {err}");
    }
}

#[test]
fn precedence_file_env_flag() {
    let dir = std::env::temp_dir().join(format!("ringcast-cfg-{}", std::process::id()));
    std::fs::write(
        &dir,
        "[server]\nlisten = \"127.0.0.1:1\"\nworkers = 3\n[sse]\nretry_ms = 7\n",
    )
    .unwrap();
    let cli = Overrides {
        config: Some(dir.clone()),
        listen: Some("127.0.0.1:3".into()),
        ..Default::default()
    };
    let c = Config::load(
        &cli,
        [
            (
                "RINGCAST_SERVER_LISTEN".to_string(),
                "127.0.0.1:2".to_string(),
            ),
            ("RINGCAST_SERVER_WORKERS".into(), "2".into()),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:3");
    assert_eq!(c.server.workers, Some(2));
    assert_eq!(c.sse.retry_ms, 7);
    std::fs::write(&dir, "[server]\nlistn = 1\n").unwrap();
    let err = Config::load(
        &Overrides {
            config: Some(dir.clone()),
            ..Default::default()
        },
        [],
    )
    .unwrap_err();
    assert!(err.to_string().contains("server.listn"), "{err}");
    // A TOML syntax error: one line, naming the file and the line.
    std::fs::write(&dir, "[sse]\nretry_ms = \n").unwrap();
    let err = Config::load(
        &Overrides {
            config: Some(dir.clone()),
            ..Default::default()
        },
        [],
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("line 2"),
        "{err}"
    );
    // The sources are kept: a semantic error names the file.
    std::fs::write(&dir, "[history]\nper_topic = 0\n").unwrap();
    let err = Config::load(
        &Overrides {
            config: Some(dir.clone()),
            ..Default::default()
        },
        [],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!(
            "`history.per_topic` (from file {})",
            dir.display()
        )),
        "{err}"
    );
    std::fs::remove_file(&dir).unwrap();
    let err = Config::load(
        &Overrides {
            config: Some(dir),
            ..Default::default()
        },
        [],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
}
