#!/usr/bin/env bash
# Single node against cluster mode (docs/cluster.md): the same
# ringcast-load runs against one ringcast node, then against a cluster of
# one nats-server (-js, file store in a temporary directory) and two
# ringcast nodes, all on 127.0.0.1. Every server process gets one worker,
# RINGCAST_SERVER_PIN_CORES=false, and is confined to the same core(s)
# (CLUSTER_BENCH_SERVER_CORES, default 0) so that both set-ups get the same
# hardware; the load generator runs on CLUSTER_BENCH_LOAD_CORES (default 1).
# In cluster mode one load-generator process spreads its subscribers and
# publishing connections over both nodes (--also-addr), so every event is
# published on one node and delivered by both, and loss, order and latency
# are checked on one clock.
#
# Scenarios (each against a fresh server, or a fresh cluster and stream):
#   fanout   2,000 subscribers on one topic, 2,000 events, 16 publishers
#            flat out: deliveries/s and CPU per delivery
#   publish  10 subscribers, 20,000 events, 16 publishers flat out:
#            acknowledged publishes/s, acknowledgement latency, CPU per event
#   rate500  200 subscribers over 10 topics, 500 events/s for 10 s (a moderate
#            load: 10k deliveries/s, about a fifth of the server core, so
#            the latency is the path's, not queueing on a saturated core):
#            acknowledgement latency and publish-to-receive p50/p99
# Figures: ringcast's CPU is the load generator's --server-pid reading
# (/proc/PID/stat utime+stime over the publish phase, every node added up);
# nats-server's is read the same way around the whole load-generator run
# (it has nothing to do while subscribers connect).
#
# Usage: scripts/cluster-bench.sh [fanout|publish|rate500 ...]  (default: all)
#   CLUSTER_BENCH_OUT=dir   results there instead of benches/results/cluster
#   CLUSTER_BENCH_REPS=N    runs per scenario and set-up, interleaved (default
#                           1; figures are then medians)
# Writes compare.md (the table, also printed) and the raw compare.jsonl.
# Meant to take about 2 minutes after the build, at most about 3 (the runs'
# --timeout-s add up to 150 s); every process started here is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in nats-server curl python3 taskset; do
  command -v "$tool" >/dev/null || {
    echo "cluster-bench: $tool is missing (Debian: apt-get install -y nats-server curl python3 util-linux)"
    exit 1
  }
done
# Always rebuild (a no-op when fresh): stale binaries would be measured.
cargo build --release --quiet --bins
ulimit -n "$(ulimit -Hn)"

out=${CLUSTER_BENCH_OUT:-benches/results/cluster}
reps=${CLUSTER_BENCH_REPS:-1}
server_cores=${CLUSTER_BENCH_SERVER_CORES:-0}
load_cores=${CLUSTER_BENCH_LOAD_CORES:-1}
if [ "$(nproc)" -lt 2 ]; then server_cores=0 load_cores=0; fi
mkdir -p "$out"
results="$out/compare.jsonl"
: >"$results"
tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

clk_tck=$(getconf CLK_TCK)
# CPU seconds (utime + stime) of a process, from /proc/PID/stat.
cpu_s() {
  local rest
  rest=$(sed 's/^.*) //' "/proc/$1/stat") || { echo null; return; }
  awk -v hz="$clk_tck" '{ printf "%.3f\n", ($12 + $13) / hz }' <<<"$rest"
}

# A port nobody listens on now (the kernel's pick).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until the port accepts; gives up when the process ($2) exited.
wait_port() {
  local _
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "cluster-bench: the process on port $1 exited"; return 1; }
    sleep 0.1
  done
  echo "cluster-bench: port $1 did not open"
  return 1
}

# Waits until GET /readyz answers 200 (a cluster node: JetStream reached and
# the stream usable).
wait_ready() {
  local _
  for _ in $(seq 200); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "cluster-bench: the node on port $1 exited"; return 1; }
    sleep 0.1
  done
  echo "cluster-bench: the node on port $1 was not ready within 20 s"
  return 1
}

# Starts one ringcast node in the background: $1 port, $2 NATS URL or "".
# Sets $pid.
start_node() {
  local port=$1 nats=$2
  local -a envs=(RINGCAST_SERVER_PIN_CORES=false)
  [ -z "$nats" ] || envs+=("RINGCAST_CLUSTER_NATS_URL=$nats")
  env "${envs[@]}" taskset -c "$server_cores" target/release/ringcast \
    --listen "127.0.0.1:$port" --workers 1 2>"$tmp/ringcast-$port.err" &
  pid=$!
  pids+=("$pid")
}

# Stops the processes given, and forgets them.
stop() {
  local p q keep=()
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  for q in "${pids[@]}"; do
    case " $* " in *" $q "*) ;; *) keep+=("$q") ;; esac
  done
  pids=("${keep[@]}")
}

# name | load-generator arguments
scenarios=(
  "fanout|--subscribers 2000 --topics 1 --events 2000 --inflight 16 --source-ips 4 --server-metrics --timeout-s 30"
  "publish|--subscribers 10 --topics 1 --events 20000 --inflight 16 --server-metrics --timeout-s 20"
  "rate500|--subscribers 200 --topics 10 --events 5000 --rate 500 --inflight 2 --source-ips 4 --server-metrics --timeout-s 25"
)
want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w
  for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

core_arg=()
case "$server_cores" in *[,-]*) ;; *) core_arg=(--server-core "$server_cores") ;; esac

for rep in $(seq "$reps"); do
  for entry in "${scenarios[@]}"; do
    IFS='|' read -r name largs <<<"$entry"
    selected "$name" || continue
    for mode in single cluster; do
      echo "== $name, $mode (run $rep)"
      nats_pid="" nats="" ok=1 nodes=()
      if [ "$mode" = cluster ]; then
        np=$(free_port)
        mkdir -p "$tmp/nats-$np"
        taskset -c "$server_cores" nats-server -js -a 127.0.0.1 -p "$np" -sd "$tmp/nats-$np" \
          2>"$tmp/nats-$np.log" &
        nats_pid=$!
        pids+=("$nats_pid")
        wait_port "$np" "$nats_pid" || ok=0
        nats="nats://127.0.0.1:$np"
      fi
      # The first node creates the stream; the second starts once it is there.
      p1=$(free_port)
      addr_args=(--addr "127.0.0.1:$p1")
      if [ "$ok" = 1 ]; then
        start_node "$p1" "$nats"
        nodes+=("$pid")
        wait_ready "$p1" "$pid" || ok=0
      fi
      if [ "$mode" = cluster ] && [ "$ok" = 1 ]; then
        p2=$(free_port)
        start_node "$p2" "$nats"
        nodes+=("$pid")
        addr_args+=(--also-addr "127.0.0.1:$p2")
        wait_ready "$p2" "$pid" || ok=0
      fi
      if [ "$ok" = 0 ]; then
        cat "$tmp"/ringcast-*.err 2>/dev/null | tail -n 5 || true
        stop ${nodes[@]+"${nodes[@]}"} ${nats_pid:+"$nats_pid"}
        echo "cluster-bench: $name on $mode did not start; skipped"
        continue
      fi
      pid_args=()
      for p in "${nodes[@]}"; do pid_args+=(--server-pid "$p"); done
      nats_cpu0=null
      [ -z "$nats_pid" ] || nats_cpu0=$(cpu_s "$nats_pid")
      # shellcheck disable=SC2086 # $largs is a list of arguments
      line=$(taskset -c "$load_cores" target/release/ringcast-load "${addr_args[@]}" "${pid_args[@]}" \
        "${core_arg[@]}" --json $largs || echo '{}')
      nats_cpu1=null
      [ -z "$nats_pid" ] || nats_cpu1=$(cpu_s "$nats_pid")
      # Every node's cluster series, to show the run had no reconnect.
      metrics=""
      if [ "$mode" = cluster ]; then
        for port in "$p1" "$p2"; do
          metrics+=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null |
            grep '^ringcast_cluster_' || true)
          metrics+=$'\n'
        done
      fi
      echo "$line"
      python3 - "$line" "$name" "$mode" "$rep" "$nats_cpu0" "$nats_cpu1" "$metrics" >>"$results" <<'PY'
import json, sys
line, name, mode, rep, n0, n1, metrics = sys.argv[1:8]
d = json.loads(line or "{}")
d.update(scenario=name, mode=mode, rep=int(rep))
if n0 != "null" and n1 != "null":
    d["nats_cpu_s"] = float(n1) - float(n0)
sums = {}
for l in metrics.splitlines():
    parts = l.split()
    if len(parts) == 2:
        key = parts[0].split("{")[0]
        try:
            sums[key] = sums.get(key, 0.0) + float(parts[1])
        except ValueError:
            pass
if sums:
    d["cluster_series"] = sums
print(json.dumps(d))
PY
      stop "${nodes[@]}" ${nats_pid:+"$nats_pid"}
    done
  done
done

python3 - "$results" "$out/compare.md" "$server_cores" "$load_cores" <<'PY'
import json, os, platform, subprocess, sys, time
# The report's groups flattened to dotted keys ("delivery.lost"); the
# cluster series this script added stay one dict.
def flat(d, pre=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "cluster_series":
            out.update(flat(v, f"{pre}{k}."))
        else:
            out[pre + k] = v
    return out
rows = [flat(json.loads(l)) for l in open(sys.argv[1]) if l.strip()]
server_cores, load_cores = sys.argv[3], sys.argv[4]

def sh(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    return (r.stdout.strip() or r.stderr.strip()) or "?"

def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)

def derived(r):
    """Figures computed from one run's record."""
    pub_s, published, delivered = r.get("run.publish_s"), r.get("delivery.published"), r.get("delivery.delivered")
    rc_m = r.get("server.cpu_us_per_delivery")
    rc_s = rc_m * delivered / 1e6 if num(rc_m) and num(delivered) else None
    nats_s = r.get("nats_cpu_s")
    total_s = (rc_s or 0) + (nats_s or 0) if rc_s is not None else None
    per = lambda cpu, n, scale: cpu / n * scale if num(cpu) and num(n) and n else None
    r = dict(r)
    r["publishes_per_s"] = published / pub_s if num(published) and num(pub_s) and pub_s else None
    r["nats_cpu_us_per_delivery"] = per(nats_s, delivered, 1e6)
    r["total_cpu_us_per_delivery"] = per(total_s, delivered, 1e6)
    r["ringcast_cpu_us_per_event"] = per(rc_s, published, 1e6)
    r["nats_cpu_us_per_event"] = per(nats_s, published, 1e6)
    r["total_cpu_us_per_event"] = per(total_s, published, 1e6)
    return r

groups = {}
for r in rows:
    groups.setdefault((r.get("scenario"), r.get("mode")), []).append(derived(r))

def median(rs, k):
    vals = sorted(r[k] for r in rs if num(r.get(k)))
    return vals[len(vals) // 2] if vals else None

def worst(rs, k):
    vals = [r[k] for r in rs if num(r.get(k))]
    return max(vals) if vals else None

def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)

figures = {
    "fanout": [
        ("delivery.per_s", "deliveries/s"),
        ("server.cpu_us_per_delivery", "ringcast CPU µs / delivery (all nodes)"),
        ("nats_cpu_us_per_delivery", "nats-server CPU µs / delivery"),
        ("total_cpu_us_per_delivery", "all server CPU µs / delivery"),
        ("server.core.busy", "server core busy, incl. softirq"),
        ("ack_ms.p50", "publish ack p50 ms (16 in flight)"),
        ("ack_ms.p99", "publish ack p99 ms (16 in flight)"),
        ("latency_ms.p50", "publish-to-receive p50 ms"),
        ("latency_ms.p99", "publish-to-receive p99 ms"),
    ],
    "publish": [
        ("publishes_per_s", "acknowledged publishes/s"),
        ("ringcast_cpu_us_per_event", "ringcast CPU µs / published event (all nodes)"),
        ("nats_cpu_us_per_event", "nats-server CPU µs / published event"),
        ("total_cpu_us_per_event", "all server CPU µs / published event"),
        ("ack_ms.p50", "publish ack p50 ms (16 in flight)"),
        ("ack_ms.p99", "publish ack p99 ms (16 in flight)"),
    ],
    "rate500": [
        ("ack_ms.p50", "publish ack p50 ms"),
        ("ack_ms.p99", "publish ack p99 ms"),
        ("latency_ms.p50", "publish-to-receive p50 ms"),
        ("latency_ms.p99", "publish-to-receive p99 ms"),
        ("latency_ms.p999", "publish-to-receive p99.9 ms"),
        ("latency_ms.max", "publish-to-receive max ms"),
        ("total_cpu_us_per_delivery", "all server CPU µs / delivery"),
    ],
}
checks = [("delivery.published", "events acknowledged"), ("delivery.publish_errors", "publish errors"),
          ("delivery.delivered", "delivered"), ("delivery.lost", "lost"), ("delivery.duplicated", "duplicated"),
          ("delivery.reordered", "reordered"), ("delivery.misrouted", "misrouted"),
          ("delivery.undelivered_at_deadline", "undelivered at deadline")]

cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
out = ["# ringcast: single node vs cluster mode (NATS JetStream)\n"]
reps = max((len(v) for v in groups.values()), default=0)
out.append(
    f"Generated by `scripts/cluster-bench.sh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
    f"commit `{sh('git rev-parse --short HEAD')}`; {cpu}, "
    f"{os.cpu_count()} cores; Linux {platform.release()}; {sh('nats-server --version')}. "
    f"Single node: one ringcast, 1 worker. Cluster: one nats-server (JetStream, file store) and two ringcast "
    f"nodes, 1 worker each; subscribers and publishers spread over both nodes. All server processes on "
    f"core(s) {server_cores}, the load generator on core(s) {load_cores}; "
    + (f"medians of {reps} interleaved runs. " if reps > 1 else "one run each. ")
    + "Raw records: `compare.jsonl`.\n")
for scen, figs in figures.items():
    single, cluster = groups.get((scen, "single")), groups.get((scen, "cluster"))
    if not single and not cluster:
        continue
    args = (single or cluster)[0]
    out.append(f"## {scen}\n")
    out.append(f"{args.get('run.subscribers')} subscribers, {args.get('run.topics')} topic(s), "
               f"{args.get('run.events')} events, {args.get('run.publishers')} publishing connection(s).\n")
    out.append("| figure | single node | cluster (2 nodes + NATS) | cluster / single |\n|---|---|---|---|")
    for key, label in figs + checks:
        # Counts of faults: the worst run, not the median.
        pick = worst if key in dict(checks) else median
        a = pick(single, key) if single else None
        b = pick(cluster, key) if cluster else None
        if a is None and b is None:
            continue
        ratio = fmt(b / a) + "×" if num(a) and num(b) and a and key not in dict(checks) else "–"
        out.append(f"| {label} | {fmt(a)} | {fmt(b)} | {ratio} |")
    if cluster:
        s = cluster[0].get("cluster_series") or {}
        if s:
            out.append("\nCluster series after the run, summed over both nodes: "
                       + ", ".join(f"`{k}` {fmt(v)}" for k, v in sorted(s.items())) + ".")
    out.append("")
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
