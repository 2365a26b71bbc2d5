//! The documentation's recipes, run: every fenced block of `README.md` and
//! `docs/*.md` whose info string is `sh test` (GitHub shows it as an
//! ordinary `sh` block) is run by bash against the binary of this build, so
//! that what a user pastes keeps working.
//!
//! Each block runs as its own script (`set -e`, so a failed check fails it)
//! in a fresh temporary directory that holds a copy of `tuning/`, with the
//! binary's directory first on `PATH` (the recipes call it `ringcast`), the
//! `RINGCAST_*` variables of the caller removed, and in its own process
//! group: whatever it starts is killed when it ends, passes, fails or times
//! out. The ports the recipes use (8080, 8081, 8082 and NATS's 4222) are
//! rewritten to free ones (below the ephemeral range) in the block and in
//! its copy of `tuning/`, so a run collides neither with other tests nor
//! with a demo on 8080.
//!
//! `sh test needs=TOOL,...` names outside tools (a command, or an absolute
//! path that must exist): without them the block is skipped on a developer
//! machine and fails in CI (`support::require`).
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A block must finish within this, or it fails (and its group is killed).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The ports recipes may name; each is replaced by a free one per block.
const PORTS: [u16; 4] = [8080, 8081, 8082, 4222];

/// Free ports are picked below the kernel's ephemeral range: a port from
/// that range, free when picked, may be taken as the local port of some
/// other process's outgoing connection while a recipe restarts its server.
fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = if low > 12000 {
        (10000, low)
    } else {
        (1024, 10000)
    };
    loop {
        let p = fastrand::u16(from..to);
        if !PORTS.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// Where Debian installs nats-server and nginx; an ordinary user's PATH
/// may lack it, and the README's PATH line adds it too.
const SBIN: &str = "/usr/sbin";

struct Recipe {
    /// `file:line` of the opening fence.
    place: String,
    code: String,
    needs: Vec<String>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The runnable blocks of a Markdown document.
fn recipes(file: &str, text: &str) -> Vec<Recipe> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let fence = line.trim_start();
        let ticks = fence.chars().take_while(|&c| c == '`').count();
        if ticks < 3 {
            continue;
        }
        let words: Vec<&str> = fence[ticks..].split_whitespace().collect();
        let mut code = String::new();
        for (_, l) in lines.by_ref() {
            let t = l.trim();
            if t.len() >= ticks && t.chars().all(|c| c == '`') {
                break;
            }
            code.push_str(l);
            code.push('\n');
        }
        if words.len() >= 2 && matches!(words[0], "sh" | "bash") && words[1] == "test" {
            let needs = words[2..]
                .iter()
                .filter_map(|w| w.strip_prefix("needs="))
                .flat_map(|list| list.split(','))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            out.push(Recipe {
                place: format!("{file}:{}", n + 1),
                code,
                needs,
            });
        }
    }
    out
}

/// `text` with every whole number in `map` replaced (a port is never part
/// of a longer run of digits).
fn rewrite_ports(text: &str, map: &[(u16, u16)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        let to = map
            .iter()
            .find(|(from, _)| from.to_string() == *digits)
            .map(|(_, to)| to.to_string());
        out.push_str(to.as_deref().unwrap_or(digits));
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// Copies `from` into `to` (a directory tree of text files), rewriting the
/// ports as in the recipe.
fn copy_tree(from: &Path, to: &Path, map: &[(u16, u16)]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, map);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(target, rewrite_ports(&text, map)).unwrap();
        }
    }
}

/// The PATH a recipe runs with: the binary's directory first, `/usr/sbin`
/// last.
fn recipe_path() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_ringcast")).parent().unwrap();
    let inherited = std::env::var("PATH").unwrap_or_default();
    format!("{}:{inherited}:{SBIN}", bin.display())
}

/// True when `tool` (a command on `path`, or an absolute path) is there.
fn present(tool: &str, path: &str) -> bool {
    if tool.starts_with('/') {
        return Path::new(tool).exists();
    }
    path.split(':')
        .any(|dir| !dir.is_empty() && Path::new(dir).join(tool).is_file())
}

/// A fresh directory for one block.
fn scratch(place: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag: String = place
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = std::env::temp_dir().join(format!("ringcast-docs-{}-{n}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills every process of the group `pgid` (the script and what it
/// started).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Runs one recipe; Err with its output when it fails or times out.
fn run(recipe: &Recipe) -> Result<(), String> {
    let path = recipe_path();
    let missing: Vec<&str> = recipe
        .needs
        .iter()
        .map(String::as_str)
        .filter(|t| !present(t, &path))
        .collect();
    if !missing.is_empty() {
        let what = format!("{} for the recipe at {}", missing.join(", "), recipe.place);
        // Panics in CI; skips (with a message) elsewhere.
        support::require(
            false,
            &what,
            "apt-get install nats-server nginx libnginx-mod-stream",
        );
        return Ok(());
    }

    let map: Vec<(u16, u16)> = PORTS
        .iter()
        .scan(Vec::<u16>::new(), |taken, &p| {
            let free = loop {
                let f = free_port();
                if !taken.contains(&f) {
                    break f;
                }
            };
            taken.push(free);
            Some((p, free))
        })
        .collect();
    let dir = scratch(&recipe.place);
    copy_tree(&root().join("tuning"), &dir.join("tuning"), &map);
    let script = dir.join("recipe.sh");
    std::fs::write(
        &script,
        format!(
            "set -e\ntrap 'set +e; kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT\n{}",
            rewrite_ports(&recipe.code, &map)
        ),
    )
    .unwrap();
    let log = dir.join("output.txt");
    let out = std::fs::File::create(&log).unwrap();

    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RINGCAST_") || k == "BASH_ENV" || k == "ENV" {
            cmd.env_remove(k);
        }
    }
    let listen = map[0].1;
    cmd.env("PATH", &path)
        .env("RINGCAST_SERVER_PIN_CORES", "false")
        .env("RINGCAST_SERVER_LISTEN", format!("127.0.0.1:{listen}"));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);

    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn bash");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > BLOCK_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill_group(child.id());
    let _ = child.wait();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let took = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Some(s) if s.success() => {
            eprintln!("docs: {} ok in {took:.1} s", recipe.place);
            Ok(())
        }
        Some(s) => Err(format!(
            "{} failed ({s}) after {took:.1} s; ports {map:?}; its output:\n{output}",
            recipe.place
        )),
        None => Err(format!(
            "{} did not finish within {BLOCK_TIMEOUT:?}; its output:\n{output}",
            recipe.place
        )),
    }
}

/// Runs the recipes of `files` (paths from the repository's root), one
/// thread each, and fails with every failure's output.
fn run_all(files: &[PathBuf]) -> usize {
    let all: Vec<Recipe> = files
        .iter()
        .flat_map(|f| {
            let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
            recipes(&rel, &std::fs::read_to_string(f).unwrap())
        })
        .collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = all.iter().map(|r| s.spawn(|| run(r))).collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    all.len()
}

#[test]
fn readme_recipes_work_as_pasted() {
    let readme = root().join("README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    // The sections a newcomer pastes are marked runnable, so they are run.
    let marked = recipes("README.md", &text);
    for section in [
        "## A tour of the endpoints",
        "## Security in two minutes",
        "## Cluster in five minutes",
    ] {
        let at = text
            .find(section)
            .unwrap_or_else(|| panic!("{section}: gone"));
        let line = text[..at].lines().count() + 1;
        let next = text[at + section.len()..]
            .find("\n## ")
            .map_or(text.len(), |i| at + section.len() + i);
        let last = text[..next].lines().count();
        assert!(
            marked.iter().any(|r| {
                let n: usize = r.place.rsplit(':').next().unwrap().parse().unwrap();
                (line..=last).contains(&n)
            }),
            "{section} has no `sh test` block"
        );
    }
    assert_eq!(run_all(&[readme]), marked.len());
}

#[test]
fn guide_recipes_work_as_pasted() {
    let mut guides: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    guides.sort();
    let n = run_all(&guides);
    assert!(n >= 4, "only {n} runnable recipes in docs/");
}

#[test]
fn ports_are_rewritten_only_as_whole_numbers() {
    let map = [(8080, 40001), (4222, 40002)];
    assert_eq!(
        rewrite_ports("127.0.0.1:8080 -p 4222 id 18080 80800 x8080", &map),
        "127.0.0.1:40001 -p 40002 id 18080 80800 x40001"
    );
}

#[test]
fn runnable_blocks_are_found_with_their_needs() {
    let doc = "text\n```sh\nnot run\n```\n```sh test needs=nats-server,/usr/x\necho hi\n````\n\n```sh test\n  echo indented\n```\n";
    let r = recipes("x.md", doc);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].place, "x.md:5");
    assert_eq!(r[0].code, "echo hi\n");
    assert_eq!(r[0].needs, ["nats-server", "/usr/x"]);
    assert_eq!(r[1].code, "  echo indented\n");
    assert!(r[1].needs.is_empty());
}
