//! Real clients nobody on this project wrote, against a spawned ringcast:
//! Node's `eventsource` (v5), Python's `httpx-sse`, headless Chromium on the
//! demo page, and curl as the README shows it. The client scripts live in
//! `tests/compat/`. Their dependencies are installed by `.ci/run` (npm ci,
//! pip, Debian's chromium); in CI a missing dependency fails the test, on a
//! developer machine it is reported and the test is skipped.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// True when the dependency is present; panics in CI when it is not.
fn require(present: bool, what: &str) -> bool {
    support::require(present, what, "npm ci --prefix tests/compat, pip install -r tests/compat/requirements.txt, apt-get install chromium")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "client failed: {text}");
}

fn node_ready() -> bool {
    let ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && compat_dir().join("node_modules/eventsource").exists();
    require(ok, "node with tests/compat/node_modules")
}

#[test]
fn node_eventsource_parses_reconnects_and_resumes() {
    if !node_ready() {
        return;
    }
    let s = Server::start("[sse]\nretry_ms = 1500\n");
    run(Command::new("node").current_dir(compat_dir()).args([
        "eventsource.mjs",
        &s.addr().to_string(),
        "1500",
    ]));
}

#[test]
fn python_httpx_sse_parses_and_resumes() {
    let ok = Command::new("python3")
        .args(["-c", "import httpx, httpx_sse"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(ok, "python3 with httpx and httpx-sse") {
        return;
    }
    let s = Server::start("");
    run(Command::new("python3")
        .current_dir(compat_dir())
        .args(["httpx_client.py", &s.addr().to_string()]));
}

#[test]
fn chromium_shows_the_demo_board_and_reconnects() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !node_ready() || !require(Path::new(&chromium).exists(), "chromium") {
        return;
    }
    let s = Server::start_with(
        "[sse]\nretry_ms = 500\n[demo]\nevents_per_sec = 300\n",
        &["--workers", "2", "--demo"],
        &[],
    );
    // The same board with auth on: it must ask for the token's cookie.
    let secret = "compat-board-secret-0123456789abcdef";
    let authed = Server::start_with(
        &format!("[auth]\nhs256_secret = \"{secret}\"\n[demo]\nevents_per_sec = 300\n"),
        &["--workers", "1", "--demo"],
        &[],
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/compat");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("demo-board.png");
    let _ = std::fs::remove_file(&shot);
    run(Command::new("node")
        .current_dir(compat_dir())
        .env("CHROMIUM", &chromium)
        .args([
            "browser.mjs",
            &s.addr().to_string(),
            shot.to_str().unwrap(),
            &authed.addr().to_string(),
            secret,
        ]));
    assert!(shot.exists(), "screenshot written");
    eprintln!(
        "CI artifact: screenshot of the demo board at {}",
        shot.display()
    );
}

#[test]
fn curl_as_the_readme_shows_it() {
    if !require(
        Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "curl",
    ) {
        return;
    }
    let s = Server::start_with(
        "[demo]\nevents_per_sec = 300\n",
        &["--workers", "2", "--demo"],
        &[],
    );
    // The README's command, bounded in time.
    let url = format!("http://{}/events?topic=quotes.%3E&snapshot=1", s.addr());
    let out = Command::new("curl")
        .args(["-sN", "--max-time", "2", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("retry: 2000\n\n"), "{text}");
    let quotes = text.matches("event: quote\n").count();
    assert!(quotes >= 20, "only {quotes} quotes in 2 s:\n{text}");
    let first_data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let q: serde_json::Value = serde_json::from_str(first_data).unwrap();
    for field in ["symbol", "bid", "ask", "last", "volume", "ts"] {
        assert!(!q[field].is_null(), "quote lacks {field}: {q}");
    }
    // And the page the README points to.
    let page = get(s.addr(), "/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("new EventSource"));
}
