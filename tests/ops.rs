//! Operations: health, readiness, metrics, CLI and configuration errors.
mod support;

use support::*;

#[test]
fn health_ready_and_every_metric_series() {
    let s = Server::start("");
    assert_eq!(get(s.addr(), "/healthz").status, 200);
    assert_eq!(get(s.addr(), "/readyz").status, 200);
    let m = get(s.addr(), "/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(m.body).unwrap();
    for series in [
        "ringcast_connections_active{worker=\"0\"}",
        "ringcast_connections_active{worker=\"1\"}",
        "ringcast_connections_total",
        "ringcast_events_published_total",
        "ringcast_frames_delivered_total",
        "ringcast_bytes_written_total",
        "ringcast_slow_disconnects_total",
        "ringcast_conflated_events_total",
        "ringcast_resyncs_total",
        "ringcast_http_responses_total{code=\"200\"}",
        "ringcast_publish_to_write_seconds_bucket{le=\"+Inf\"}",
        "ringcast_publish_to_write_seconds_sum",
        "ringcast_publish_to_write_seconds_count",
        "ringcast_history_bytes",
        "# TYPE ringcast_publish_to_write_seconds histogram",
        "# TYPE ringcast_stage_seconds histogram",
        "ringcast_stage_seconds_bucket{stage=\"sequenced\",le=\"+Inf\"}",
        "ringcast_stage_seconds_bucket{stage=\"ring\",le=\"+Inf\"}",
        "ringcast_stage_seconds_bucket{stage=\"fanout\",le=\"+Inf\"}",
        "ringcast_stage_seconds_bucket{stage=\"write_submitted\",le=\"+Inf\"}",
        "# TYPE ringcast_connections_active gauge",
    ] {
        assert!(text.contains(series), "missing {series}");
    }
}

#[test]
fn counters_move_with_traffic() {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=m");
    let before = s.metric("ringcast_events_published_total");
    for i in 0..7 {
        publish(s.addr(), "m", None, &format!("{i}"));
    }
    assert_eq!(s.metric("ringcast_events_published_total"), before + 7.0);
    sub.take(7);
    assert_eq!(
        s.metric_until("ringcast_frames_delivered_total", |v| v >= 7.0),
        7.0
    );
    assert_eq!(
        s.metric_until("ringcast_publish_to_write_seconds_count", |v| v >= 7.0),
        7.0
    );
    assert!(s.metric("ringcast_bytes_written_total") > 7.0 * 10.0);
    assert!(s.metric("ringcast_history_bytes") > 0.0);
    // Every stage saw the events: one observation per publish request
    // (sequenced), per ring message on each of the 2 workers (ring,
    // fanout), per write to the one subscriber (write_submitted).
    assert_eq!(
        s.metric("ringcast_stage_seconds_count{stage=\"sequenced\"}"),
        7.0
    );
    for (stage, most) in [("ring", 14.0), ("fanout", 14.0), ("write_submitted", 7.0)] {
        let n = s.metric(&format!(
            "ringcast_stage_seconds_count{{stage=\"{stage}\"}}"
        ));
        assert!((1.0..=most).contains(&n), "{stage}: {n}");
    }
}

#[test]
fn help_lists_every_flag() {
    let (status, out) = run_binary(&["--help"], &[]);
    assert!(status.success());
    for flag in [
        "--config",
        "--listen",
        "--workers",
        "--demo",
        "--log-format",
        "--check-config",
        "--version",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
}

#[test]
fn unknown_keys_and_bad_values_exit_2_naming_the_key() {
    let file = write_temp(
        "bad.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\nbogus_key = 1\n",
    );
    let (status, out) = run_binary(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("server.bogus_key"), "{out}");

    let cases: [(&str, &str, &str); 4] = [
        ("RINGCAST_SERVER_BOGUS", "1", "server.bogus"),
        ("RINGCAST_SSE_HEARTBEAT_MS", "abc", "sse.heartbeat_ms"),
        ("RINGCAST_SSE_SLOW_POLICY", "drop", "sse.slow_policy"),
        ("RINGCAST_SERVER_LISTEN", "not-an-address", "server.listen"),
    ];
    for (k, v, key) in cases {
        // No --listen: a flag would override RINGCAST_SERVER_LISTEN. Every
        // case fails before binding, so the default port is never used.
        let (status, out) = run_binary(&[], &[(k, v)]);
        assert_eq!(status.code(), Some(2), "{k}={v}: {out}");
        assert!(out.contains(key), "{k}={v}: {out}");
    }
    let (status, out) = run_binary(&["--config", "/nonexistent/ringcast.toml"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(out.contains("/nonexistent/ringcast.toml"), "{out}");
}

#[test]
fn address_in_use_exits_1() {
    let s = Server::start("");
    let addr = s.addr().to_string();
    let (status, out) = run_binary(&["--listen", &addr], &[]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains(&addr), "{out}");
}

#[test]
fn env_overrides_file_and_flag_overrides_env() {
    let file = write_temp(
        "prec.toml",
        "[sse]\nretry_ms = 111\nheartbeat_ms = 100000\n",
    );
    let s = Server::start_with(
        "",
        &["--config", file.to_str().unwrap(), "--workers", "1"],
        &[
            ("RINGCAST_SSE_RETRY_MS", "222"),
            ("RINGCAST_SERVER_WORKERS", "3"),
        ],
    );
    let mut sub = Sse::open(s.addr(), "topic=p");
    assert_eq!(sub.read_raw_until(b"\n\n"), b"retry: 222\n\n");
    let text = String::from_utf8(get(s.addr(), "/metrics").body).unwrap();
    assert!(text.contains("ringcast_connections_active{worker=\"0\"}"));
    assert!(
        !text.contains("ringcast_connections_active{worker=\"1\"}"),
        "--workers 1 beats the env"
    );
}

#[test]
fn json_logs_carry_connection_ids() {
    let s = Server::start_with(
        "",
        &["--log-format", "json"],
        &[("RINGCAST_LOG_LEVEL", "debug")],
    );
    let _ = get(s.addr(), "/healthz");
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let log = s.stderr.lock().unwrap().clone();
        let conn_lines: Vec<&str> = log.lines().filter(|l| l.contains("\"conn\"")).collect();
        if conn_lines.len() >= 2 {
            for l in &conn_lines {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v["fields"]["conn"].is_u64(), "{l}");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection lines in\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn over_capacity_subscribers_get_200_retry_and_close_publishers_503() {
    let s = Server::start("[limits]\nmax_connections = 2\n[sse]\nretry_ms = 1000\n");
    let _a = Sse::open(s.addr(), "topic=cap");
    let _b = Sse::open(s.addr(), "topic=cap");
    let mut shed = Sse::open(s.addr(), "topic=cap");
    assert_eq!(shed.status, 200, "a browser must not give up");
    let body = String::from_utf8(shed.read_raw_until(b"\n\n")).unwrap();
    let retry: u64 = body
        .strip_prefix("retry: ")
        .unwrap()
        .split('\n')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1000..=3000).contains(&retry), "randomised retry {retry}");
    assert!(body.contains("\n: over capacity\n"), "{body:?}");
    assert!(shed.at_eof(), "closed after the hint");
    let r = post(s.addr(), "/publish?topic=cap", "text/plain", b"x");
    r.assert_error(503);
    assert!(r.header("retry-after").is_some());
    assert!(s.metric("ringcast_shed_total") >= 1.0);
}

#[test]
fn per_ip_limit_is_429_with_retry_after() {
    let s = Server::start("[limits]\nmax_connections_per_ip = 2\n");
    let _a = Sse::open(s.addr(), "topic=ip");
    let _b = Sse::open(s.addr(), "topic=ip");
    let r = get(s.addr(), "/events?topic=ip");
    r.assert_error(429);
    assert!(r.header("retry-after").is_some());
    // Operations endpoints stay reachable for monitoring.
    assert_eq!(get(s.addr(), "/healthz").status, 200);
}

/// An operator whose fd limit cannot hold `limits.max_connections` is told so
/// at start-up, naming the setting to change; one whose limit fits is not.
#[test]
fn warns_when_the_fd_limit_is_below_max_connections() {
    let hard = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        .unwrap();
    let above = hard
        .parse::<u64>()
        .map_or(u64::MAX / 2, |h| h + 1000)
        .to_string();
    let s = Server::start_with(
        "",
        &["--workers", "1"],
        &[("RINGCAST_LIMITS_MAX_CONNECTIONS", &above)],
    );
    let log = s.stderr.lock().unwrap().clone();
    assert!(
        log.contains("open-files limit is below limits.max_connections")
            && log.contains("LimitNOFILE"),
        "{log}"
    );
    drop(s);
    let s = Server::start_with(
        "",
        &["--workers", "1"],
        &[("RINGCAST_LIMITS_MAX_CONNECTIONS", "100")],
    );
    let log = s.stderr.lock().unwrap().clone();
    assert!(!log.contains("open-files limit is below"), "{log}");
}

/// The size of `pid`'s descriptor table (`FDSize` in its status).
fn fd_table_size(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// The descriptor table is grown once at start-up to what
/// `limits.max_connections` needs (within the open-files limit and a 2 MiB
/// cap), so that a connection storm after a start never waits for the
/// kernel to grow it: each growth of a multi-threaded process's table waits
/// for an RCU grace period, 10-30 ms of every worker's accepts.
#[test]
fn the_descriptor_table_is_sized_for_max_connections_at_start() {
    let s = Server::start_with(
        "",
        &["--workers", "2"],
        &[("RINGCAST_LIMITS_MAX_CONNECTIONS", "3000")],
    );
    let size = fd_table_size(s.pid());
    // 3,000 connections and 1,024 spare; the kernel rounds up to a power of
    // two, but not further: the size follows the setting.
    assert!((4024..=8192).contains(&size), "FDSize {size}");
    drop(s);
    let hard: usize = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).and_then(|v| v.parse().ok()))
        .unwrap_or(usize::MAX);
    let s = Server::start_with("", &["--workers", "1"], &[]);
    let size = fd_table_size(s.pid());
    let want = hard.min(1 << 18);
    assert!(
        size >= want,
        "FDSize {size}, want {want} (hard limit {hard})"
    );
    // Growing the table holds no descriptor: the server still runs.
    assert_eq!(get(s.addr(), "/healthz").status, 200);
}

#[test]
fn version_names_the_commit_and_io_uring() {
    let (status, out) = run_binary(&["--version"], &[]);
    assert!(status.success(), "{out}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("ringcast {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let commit = first
        .rsplit("commit ")
        .next()
        .unwrap()
        .trim_end_matches(')');
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{out}"
    );
    assert!(
        out.contains("io_uring: usable") || out.contains("io_uring: not usable"),
        "{out}"
    );
}

#[test]
fn check_config_validates_without_binding() {
    // The port is taken: a server would exit 1, a check must not care.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let good = write_temp(
        "check-good.toml",
        &format!("[server]\nlisten = \"{addr}\"\n"),
    );
    let (status, out) = run_binary(&["--check-config", "--config", good.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("configuration ok"), "{out}");
    // The environment and the flags are part of what is checked.
    let (status, out) = run_binary(
        &["--check-config", "--config", good.to_str().unwrap()],
        &[("RINGCAST_SSE_HEARTBEAT_MS", "often")],
    );
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("sse.heartbeat_ms"), "{out}");
    let (status, out) = run_binary(&["--check-config", "--workers", "0"], &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    let bad = write_temp("check-bad.toml", "[sse]\nheartbeat_msec = 5\n");
    let (status, out) = run_binary(&["--check-config", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("heartbeat_msec"), "{out}");
    drop(taken);
}

/// Reads datagrams from the notify socket until `want` arrives.
fn expect_notify(
    sock: &std::os::unix::net::UnixDatagram,
    want: &str,
    seen: &mut Vec<String>,
) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut buf = [0u8; 512];
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no {want} among {seen:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.starts_with(want) {
                return msg;
            }
        }
    }
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    let path = write_temp("notify.sock", "");
    std::fs::remove_file(&path).unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let notify = path.to_str().unwrap();
    let mut s = Server::start_with(
        "",
        &["--workers", "2"],
        // A 300 ms watchdog: pings every 150 ms.
        &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "300000")],
    );
    let mut seen = Vec::new();
    expect_notify(&sock, "READY=1", &mut seen);
    publish(s.addr(), "sd.a", None, "x");
    let status = expect_notify(&sock, "STATUS=", &mut seen);
    assert!(
        status.contains("connections") && status.contains("events/s"),
        "{status}"
    );
    // Fed repeatedly while the workers run, at about half the period.
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        expect_notify(&sock, "WATCHDOG=1", &mut seen);
    }
    assert!(t0.elapsed() < std::time::Duration::from_secs(2), "{seen:?}");
    s.kill_term();
    expect_notify(&sock, "STOPPING=1", &mut seen);
    assert!(s.wait_exit(TIMEOUT).is_some_and(|st| st.success()));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_fed() {
    let path = write_temp("notify-other.sock", "");
    std::fs::remove_file(&path).unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let s = Server::start_with(
        "",
        &["--workers", "1"],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let mut seen = Vec::new();
    expect_notify(&sock, "READY=1", &mut seen);
    // Nothing can be awaited here: listen for six watchdog periods, in which
    // pings meant for us would have come at least ten times.
    let until = std::time::Instant::now() + std::time::Duration::from_millis(600);
    let mut buf = [0u8; 512];
    while std::time::Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    s.kill_term();
    expect_notify(&sock, "STOPPING=1", &mut seen);
    assert!(!seen.iter().any(|m| m.starts_with("WATCHDOG")), "{seen:?}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn answers_and_log_lines_carry_the_request_id() {
    let s = Server::start_with(
        "",
        &["--workers", "1", "--log-format", "json"],
        &[("RINGCAST_LOG_LEVEL", "debug")],
    );
    let publish = |rid: &str| {
        let raw = format!(
            "POST /publish?topic=rid.a HTTP/1.1\r\nHost: x\r\nX-Request-ID: {rid}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
        );
        request(s.addr(), raw.as_bytes())
    };
    // A proxy's sane id is echoed.
    let r = publish("7f3a9c2e4b5d6a7f8e9d0c1b2a3f4e5d");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-request-id"),
        Some("7f3a9c2e4b5d6a7f8e9d0c1b2a3f4e5d")
    );
    // An insane one is replaced by the connection's own id.
    let r = publish("<b>evil</b>");
    let own = r.header("x-request-id").expect("an id").to_string();
    assert!(own.parse::<u64>().is_ok(), "{own}");
    // Without one: the connection id, on errors too.
    let r = get(s.addr(), "/events?topic=bad..topic");
    assert_eq!(r.status, 400);
    assert!(r
        .header("x-request-id")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
    // The event stream's head, and every log line about that connection.
    let sub = Sse::open_with(s.addr(), "topic=rid.b", &[("X-Request-ID", "trace-42")]);
    assert_eq!(sub.header("x-request-id"), Some("trace-42"));
    drop(sub);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let log = s.stderr.lock().unwrap().clone();
        let tagged: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["request_id"] == "trace-42")
            .collect();
        let msgs: Vec<&str> = tagged
            .iter()
            .filter_map(|v| v["fields"]["message"].as_str())
            .collect();
        if msgs.contains(&"subscribed") && msgs.contains(&"closed") {
            let conn = &tagged[0]["fields"]["conn"];
            assert!(
                tagged.iter().all(|v| &v["fields"]["conn"] == conn),
                "{tagged:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tagged subscribe/close lines in\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn stats_lists_the_busiest_patterns_and_every_worker() {
    let s = Server::start("");
    let subs: Vec<Sse> = ["st.a", "st.a", "st.a", "st.b", "st.*"]
        .iter()
        .map(|t| Sse::open(s.addr(), &format!("topic={}", enc(t))))
        .collect();
    wait_subscribers(&s, subs.len());
    for i in 0..4 {
        publish(s.addr(), "st.a", None, &format!("{i}"));
    }
    publish(s.addr(), "st.b", None, "b");
    // Every worker has fanned the events out once its subscriber saw them.
    let mut subs = subs;
    for (i, sub) in subs.iter_mut().enumerate().take(3) {
        assert_eq!(sub.take(4).len(), 4, "subscriber {i}");
    }
    let r = get(s.addr(), "/stats?top=2");
    assert_eq!(r.status, 200);
    let v = r.json();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "{v}");
    assert_eq!(top[0]["pattern"], "st.a", "{v}");
    assert_eq!(top[0]["subscribers"], 3, "{v}");
    assert_eq!(top[0]["history_depth"], 4, "{v}");
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{v}");
    let conns: u64 = workers
        .iter()
        .map(|w| w["connections"].as_u64().unwrap())
        .sum();
    assert!(conns >= 5, "{v}");
    let subs_seen: u64 = workers
        .iter()
        .map(|w| w["subscribers"].as_u64().unwrap())
        .sum();
    assert_eq!(subs_seen, 5, "{v}");
    assert!(
        workers.iter().all(|w| w["age_ms"].as_u64().is_some()),
        "{v}"
    );
    // The wildcard pattern is listed as a pattern.
    let all = get(s.addr(), "/stats?top=100").json();
    assert!(
        all["top"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pattern"] == "st.*" && p["subscribers"] == 1),
        "{all}"
    );
}
