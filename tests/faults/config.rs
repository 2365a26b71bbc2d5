//! A careless operator's configuration (SPEC §1, §5): settings that would
//! start a server open or silent are refused (exit 2, naming the key and
//! where it came from, on one line), risky values start with a warning that
//! names them, and SIGHUP says which changed keys wait for a restart.

use super::*;

/// The reproduction: `[auth]` with an issuer but no key (the
/// operator forgot to export RINGCAST_AUTH_HS256_SECRET) started with auth
/// off.
#[test]
fn auth_settings_without_a_key_exit_2_naming_it() {
    let cfg = write_temp(
        "auth.toml",
        "[auth]\nissuer = \"https://auth.example.com/\"\n",
    );
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["--check-config", "--config", cfg],
        vec!["--config", cfg, "--listen", "127.0.0.1:0"],
    ] {
        let (status, out) = run_binary(&args, &[]);
        assert_eq!(status.code(), Some(2), "{args:?}: {out}");
        assert!(out.contains("`auth.issuer` is set (from file"), "{out}");
        assert!(
            out.contains("auth.hs256_secret or auth.public_key_file"),
            "{out}"
        );
        assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    }
    let (status, out) = run_binary(&["--check-config"], &[("RINGCAST_AUTH_DELAY_MS", "60000")]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("(from environment RINGCAST_AUTH_DELAY_MS)"),
        "{out}"
    );
}

/// The reproduction: `log.level = "warnig"` passed --check-config
/// and turned off every log line (tracing read it as a target name).
#[test]
fn a_log_level_that_is_not_a_level_exits_2() {
    let cfg = write_temp("log.toml", "[log]\nlevel = \"warnig\"\n");
    let (status, out) = run_binary(&["--check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("`log.level` (from file") && out.contains("\"warnig\" is not a level"),
        "{out}"
    );
    let (status, out) = run_binary(
        &["--check-config"],
        &[("RINGCAST_LOG_LEVEL", "info,ringcast=debug")],
    );
    assert_eq!(status.code(), Some(0), "a directive is fine: {out}");
}

/// Refused: what cannot mean anything; warned, by name: what works but is
/// wrong for a production feed.
#[test]
fn risky_values_are_refused_or_warned_by_name() {
    let (status, out) = run_binary(&["--check-config"], &[("RINGCAST_HISTORY_PER_TOPIC", "0")]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("history.per_topic"), "{out}");
    let cfg = write_temp(
        "risky.toml",
        "[sse]\nretry_ms = 0\nheartbeat_ms = 1\nmax_pending_bytes = 4096\n[auth]\nhs256_secret = \"abc\"\n",
    );
    let (status, out) = run_binary(&["--check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(0), "{out}");
    for key in [
        "sse.retry_ms",
        "sse.heartbeat_ms",
        "limits.max_event_bytes",
        "auth.hs256_secret",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ringcast: warning: ") && l.contains(key)),
            "{key} is warned about: {out}"
        );
    }
}

/// Configuration errors are one line that names the key (or the file and
/// line) and where the value came from.
#[test]
fn configuration_errors_are_one_line_naming_the_source() {
    let cfg = write_temp("syntax.toml", "[sse]\nretry_ms = \n");
    let (status, out) = run_binary(&["--check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    assert!(
        out.contains(cfg.to_str().unwrap()) && out.contains("line 2"),
        "{out}"
    );
    let (status, out) = run_binary(
        &["--check-config"],
        &[("RINGCAST_HISTORY_MAX_BYTES", "99999999999999999999")],
    );
    assert_eq!(status.code(), Some(2));
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    assert!(
        out.contains("`history.max_bytes` (from environment RINGCAST_HISTORY_MAX_BYTES)"),
        "{out}"
    );
}

/// SIGHUP reloads the auth keys only; a changed key that needs a restart
/// is named in the log instead of being ignored in silence.
#[test]
fn sighup_names_the_changed_keys_that_need_a_restart() {
    let path = write_temp("hup.toml", "[sse]\nretry_ms = 2000\n");
    let s = Server::start_with(
        "",
        &["--workers", "2", "--config", path.to_str().unwrap()],
        &[],
    );
    std::fs::write(&path, "[sse]\nretry_ms = 3000\n[server]\nworkers = 1\n").unwrap();
    s.signal(libc::SIGHUP);
    eventually(TIMEOUT, "the SIGHUP warning", || {
        s.stderr
            .lock()
            .unwrap()
            .lines()
            .any(|l| l.contains("only after a restart") && l.contains("sse.retry_ms"))
    });
    let log = s.stderr.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("only after a restart"))
        .unwrap();
    assert!(
        !line.contains("server.workers"),
        "--workers 2 still wins over the file: {line}"
    );
    let _ = std::fs::remove_file(&path);
}
