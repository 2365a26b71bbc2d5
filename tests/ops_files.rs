//! The deployment files (Dockerfile, tuning/k8s, tuning/prometheus,
//! tuning/grafana) checked against the real binary: the metric names they use
//! exist in a live /metrics, promtool accepts the rules and the scrape config,
//! the Kubernetes manifests agree with each other and their ringcast.toml
//! starts a server, and the Dockerfile's health check works.
mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `present`, or else: a failure under CI (which installs the tool), a
/// skip elsewhere.
fn require(present: bool, what: &str) -> bool {
    support::require(present, what, "apt-get install prometheus python3-yaml")
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn have_promtool() -> bool {
    require(
        succeeds(Command::new("promtool").arg("--version")),
        "promtool",
    )
}

fn have_pyyaml() -> bool {
    require(
        succeeds(Command::new("python3").args(["-c", "import yaml"])),
        "python3 with PyYAML",
    )
}

/// Runs promtool with `args` (in the repository root), feeding `stdin`;
/// panics with its output unless it exits 0.
fn promtool(args: &[&str], stdin: &[u8]) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool {args:?}:\n{text}");
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
}

/// Every `ringcast_*` identifier in `text` (PromQL, annotations, JSON).
fn ringcast_names(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("ringcast_") {
        // Only at the start of an identifier (not inside e.g. foo_ringcast_x).
        if text[..i].chars().next_back().is_some_and(word) {
            continue;
        }
        let name: String = text[i..].chars().take_while(|&c| word(c)).collect();
        out.insert(name);
    }
    out
}

/// The names a /metrics text exposes: every sample name (so a histogram's
/// `_bucket`, `_sum` and `_count` series) and every `# TYPE` family name (so
/// the histogram's own name). A name outside this set is a typo; e.g.
/// `ringcast_history_bytes_bucket` is not in it.
fn exposed_names(metrics: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            out.insert(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_owned());
        }
    }
    out
}

/// A live /metrics after some traffic: one subscriber, five events
/// delivered, so counters and the latency histogram have values.
fn live_metrics() -> String {
    let s = Server::start("");
    let mut sub = Sse::open(s.addr(), "topic=ops");
    wait_subscribers(&s, 1);
    for i in 0..5 {
        publish(s.addr(), "ops", None, &format!("event {i}"));
    }
    sub.take(5);
    s.metric_until("ringcast_publish_to_write_seconds_count", |v| v >= 5.0);
    let r = get(s.addr(), "/metrics");
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[test]
fn rules_and_dashboard_use_only_live_metric_names_and_metrics_pass_promtool() {
    let metrics = live_metrics();
    let exposed = exposed_names(&metrics);
    assert!(
        exposed.contains("ringcast_frames_delivered_total"),
        "{metrics}"
    );
    for file in [
        "tuning/prometheus/ringcast-alerts.yml",
        "tuning/grafana/ringcast-dashboard.json",
    ] {
        let used = ringcast_names(&read(file));
        assert!(!used.is_empty(), "{file} uses no ringcast_ metric");
        let unknown: Vec<_> = used.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics that /metrics does not expose: {unknown:?}\nexposed: {exposed:?}"
        );
    }
    if have_promtool() {
        promtool(&["check", "metrics"], metrics.as_bytes());
    }
}

#[test]
fn alert_rules_and_scrape_config_pass_promtool() {
    if !have_promtool() {
        return;
    }
    promtool(
        &["check", "rules", "tuning/prometheus/ringcast-alerts.yml"],
        b"",
    );
    promtool(
        &["check", "config", "tuning/prometheus/prometheus.yml"],
        b"",
    );
}

#[test]
fn dashboard_is_importable_with_a_query_in_every_panel() {
    let dash: Value = serde_json::from_str(&read("tuning/grafana/ringcast-dashboard.json"))
        .expect("dashboard is JSON");
    assert!(
        dash["schemaVersion"].as_u64().unwrap() >= 36,
        "schemaVersion"
    );
    // Grafana's import asks for a Prometheus data source through this input.
    let inputs = dash["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input: {inputs:?}"
    );
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "only {} panels", panels.len());
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id in {p}");
        assert!(!p["title"].as_str().unwrap().is_empty(), "{p}");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{p}"));
        assert!(!targets.is_empty(), "no targets in {}", p["title"]);
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("ringcast_")),
                "{t}"
            );
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{t}");
        }
    }
    // The latency panel's quantiles come from the histogram's buckets.
    let text = dash.to_string();
    for q in ["0.5", "0.9", "0.99"] {
        assert!(
            text.contains(&format!(
                "histogram_quantile({q}, sum by (le) (rate(ringcast_publish_to_write_seconds_bucket"
            )),
            "no p{q} latency query"
        );
    }
}

/// Every document of a YAML file, through PyYAML's safe loader, as JSON.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{} is not valid YAML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// A Kubernetes quantity ("2Gi", "512Mi", "2", "1500m") in base units.
fn quantity(q: &Value) -> f64 {
    let s = match q {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    for (suffix, mult) in [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("m", 1e-3),
    ] {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * mult;
        }
    }
    s.parse().unwrap()
}

fn port_of(listen: &str) -> u16 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn k8s_manifests_agree_and_their_config_starts_ringcast() {
    if !have_pyyaml() {
        return;
    }
    let dir = root().join("tuning/k8s");
    let mut docs = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path.file_name().unwrap().to_str().unwrap().to_owned());
            docs.extend(yaml_docs(&path));
        }
    }
    let kind = |k: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in tuning/k8s"))
    };
    let (deploy, service, pdb, cm) = (
        kind("Deployment"),
        kind("Service"),
        kind("PodDisruptionBudget"),
        kind("ConfigMap"),
    );
    if let Some(k) = docs.iter().find(|d| d["kind"] == "Kustomization") {
        for r in k["resources"].as_array().unwrap() {
            assert!(files.contains(&r.as_str().unwrap().to_owned()), "{r}");
        }
    }

    let toml_text = cm["data"]["ringcast.toml"]
        .as_str()
        .expect("configmap data ringcast.toml");
    let config: toml::Table = toml_text.parse().expect("configmap toml parses");
    let key = |section: &str, k: &str| config.get(section).and_then(|s| s.get(k)).cloned();
    let shutdown_ms = key("server", "shutdown_timeout_ms")
        .map(|v| v.as_integer().unwrap())
        .unwrap_or(10_000);
    let listen = key("server", "listen").expect("server.listen");
    let port = port_of(listen.as_str().unwrap());

    let pod = &deploy["spec"]["template"];
    let spec = &pod["spec"];
    // Service links would put RINGCAST_SERVICE_HOST etc. in the environment,
    // which ringcast refuses as unknown keys (checked below).
    assert_eq!(spec["enableServiceLinks"], false);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["runAsUser"].as_u64(),
        Some(dockerfile_uid()),
        "runAsUser differs from the Dockerfile's USER"
    );
    let c = &spec["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let http = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .expect("container port named http");
    assert_eq!(http["containerPort"].as_u64(), Some(port as u64));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let labels = &pod["metadata"]["labels"];
    for (what, sel) in [
        ("Deployment", &deploy["spec"]["selector"]["matchLabels"]),
        ("Service", &service["spec"]["selector"]),
        (
            "PodDisruptionBudget",
            &pdb["spec"]["selector"]["matchLabels"],
        ),
    ] {
        for (k, v) in sel.as_object().unwrap() {
            assert_eq!(&labels[k], v, "{what} selector does not match the pods");
        }
    }

    // The kubelet SIGKILLs after the grace period, counted from the start of
    // preStop: it must outlast preStop plus the whole drain.
    let grace_ms = spec["terminationGracePeriodSeconds"].as_i64().unwrap() * 1000;
    let pre_stop_ms = match c["lifecycle"]["preStop"]["exec"]["command"].as_array() {
        Some(cmd) => {
            assert_eq!(cmd[0], "sleep", "preStop {cmd:?}");
            cmd[1].as_str().unwrap().parse::<i64>().unwrap() * 1000
        }
        None => 0,
    };
    assert!(
        grace_ms > pre_stop_ms + shutdown_ms,
        "terminationGracePeriodSeconds ({grace_ms} ms) does not cover preStop ({pre_stop_ms} ms) + server.shutdown_timeout_ms ({shutdown_ms})"
    );

    // The config file is the mounted ConfigMap.
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == cm["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap volume is mounted");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = format!("{}/ringcast.toml", mount["mountPath"].as_str().unwrap());
    assert!(
        args.windows(2)
            .any(|w| w == ["--config", config_path.as_str()]),
        "args {args:?} do not read {config_path}"
    );

    // Resources agree with the configuration: one worker per CPU, and room
    // for the queued-output and history memory bounds.
    let limits = &c["resources"]["limits"];
    if let Some(workers) = key("server", "workers") {
        assert_eq!(
            quantity(&limits["cpu"]),
            workers.as_integer().unwrap() as f64
        );
    }
    let queued = key("sse", "max_queued_bytes").map_or(1 << 30, |v| v.as_integer().unwrap());
    let history = key("history", "max_bytes").map_or(256 << 20, |v| v.as_integer().unwrap());
    assert!(
        quantity(&limits["memory"]) > (queued + history) as f64,
        "memory limit below sse.max_queued_bytes + history.max_bytes"
    );

    // The real binary accepts the ConfigMap's file (listen overridden to a
    // free local port by the harness).
    let s = Server::start_with(toml_text, &[], &[]);
    assert_eq!(get(s.addr(), "/healthz").status, 200);
    assert_eq!(get(s.addr(), "/readyz").status, 200);
    drop(s);
    // And refuses a service-link variable: why enableServiceLinks is false.
    let file = write_temp("k8s.toml", toml_text);
    let (status, out) = run_binary(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("RINGCAST_SERVICE_HOST", "10.0.0.1")],
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(status.code(), Some(2), "{out}");
}

/// The Dockerfile's instructions, comments dropped and `\` continuations
/// joined: (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(t);
                let (ins, args) = cur.split_once(' ').unwrap_or((&cur, ""));
                out.push((ins.to_ascii_uppercase(), args.trim().to_owned()));
                cur.clear();
            }
        }
    }
    out
}

fn instructions(ins: &str) -> Vec<String> {
    dockerfile()
        .into_iter()
        .filter(|(i, _)| i == ins)
        .map(|(_, a)| a)
        .collect()
}

/// The numeric uid of the Dockerfile's last USER.
fn dockerfile_uid() -> u64 {
    let users = instructions("USER");
    let user = users.last().expect("a USER instruction");
    let uid = user.split(':').next().unwrap();
    uid.parse()
        .unwrap_or_else(|_| panic!("USER {user} is not numeric (runAsNonRoot needs a uid)"))
}

#[test]
fn dockerfile_runs_unprivileged_drains_on_sigterm_and_its_healthcheck_works() {
    assert!(instructions("FROM").len() >= 2, "not multi-stage");
    assert_ne!(dockerfile_uid(), 0, "runs as root");
    assert_eq!(instructions("STOPSIGNAL"), ["SIGTERM"]);
    assert!(instructions("COPY")
        .iter()
        .any(|a| a == "tuning/ringcast.toml /etc/ringcast/ringcast.toml"));
    let listen = instructions("ENV")
        .iter()
        .find_map(|a| a.strip_prefix("RINGCAST_SERVER_LISTEN=").map(str::to_owned))
        .expect("ENV RINGCAST_SERVER_LISTEN");
    let port = port_of(&listen);
    assert_eq!(instructions("EXPOSE"), [port.to_string()]);
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");

    let health = instructions("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(health[0].contains("/healthz"), "{}", health[0]);
    let (_, cmd) = health[0].split_once("CMD ").expect("HEALTHCHECK CMD");
    let argv: Vec<String> = serde_json::from_str(cmd).expect("exec-form CMD");
    // Run the check as Docker would, against a live server on its port.
    let s = Server::start("");
    let target = format!("127.0.0.1/{port}");
    let live: Vec<String> = argv
        .iter()
        .map(|a| a.replace(&target, &format!("127.0.0.1/{}", s.addr().port())))
        .collect();
    assert_ne!(live, argv, "the check does not connect to 127.0.0.1:{port}");
    let ok = Command::new(&live[0]).args(&live[1..]).status().unwrap();
    assert!(ok.success(), "health check failed against a live server");
    drop(s);
    // And fails when nothing listens there.
    let failed = Command::new(&live[0])
        .args(&live[1..])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!failed.success(), "health check passes with no server");
}
