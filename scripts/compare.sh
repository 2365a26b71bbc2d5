#!/usr/bin/env bash
# Side-by-side: the same load-generator scenarios against ringcast and a
# private nginx + nchan (Debian's libnginx-mod-nchan) on 127.0.0.1, each
# server pinned to core 0 and the load generator to core 1. Writes
# benches/results/compare.md (the issue-4 targets computed from the run, then
# every figure for both servers and their ratio), the raw JSON lines
# (compare.jsonl) and a chart (compare.png, by ringcast-chart).
# Usage: scripts/compare.sh [scenario ...]   (default: all)
#   A scenario is a full name (a10k) or one letter for all of its runs
#   (h: the burst, i: the resume storm, j: the market). COMPARE_OUT=dir
#   writes the results there instead of benches/results (for a partial run).
# Every run is bounded (ringcast-load --timeout-s); servers are stopped on exit.
# Cluster mode (NATS JetStream) is ringcast against itself (two nodes and a
# nats-server against one node), not against nchan: `scripts/compare.sh
# cluster [fanout|publish|rate500 ...]` runs scripts/cluster-bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = cluster ]; then
  shift
  exec scripts/cluster-bench.sh "$@"
fi
# nginx + nchan from Debian's packages, installed when missing (as root).
if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan
  else
    echo "compare: install nginx and libnginx-mod-nchan first (apt-get install -y nginx libnginx-mod-nchan)"; exit 1
  fi
fi
mod=$(ls /usr/lib/nginx/modules/ngx_nchan_module.so 2>/dev/null || true)
[ -n "$mod" ] || { echo "compare: libnginx-mod-nchan is not installed"; exit 1; }
# Always rebuild (a no-op when fresh): stale binaries would be measured.
cargo build --release --quiet --bins
cargo build --release --quiet -p ringcast-load --features chart --bins
ulimit -n "$(ulimit -Hn)"
out=${COMPARE_OUT:-benches/results}
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

start_nchan() {
  local port=$1
  mkdir -p "$tmp/nginx"
  cat >"$tmp/nginx/nginx.conf" <<CONF
load_module $mod;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 20000; multi_accept on; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  nchan_max_reserved_memory 512M;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location ~ ^/sub/(.+)\$ { nchan_subscriber eventsource; nchan_channel_id \$1; }
    # Multi-channel subscribe (/msub/a,b): what nchan has for a wildcard.
    location ~ ^/msub/(.+)\$ { nchan_subscriber eventsource; nchan_channel_id \$1; nchan_channel_id_split_delimiter ","; }
    location ~ ^/pub/(.+)\$ { nchan_publisher; nchan_channel_id \$1; nchan_message_buffer_length 1024; }
  }
}
CONF
  taskset -c 0 nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" &
  pid=$!
}

# The fourth argument: a scenario's extra ringcast environment
# (space-separated NAME=value), e.g. RINGCAST_SSE_WRITE_DELAY_MS=5.
start_ringcast() {
  local port=$1 workers=$2 cores=$3 renv=${4:-}
  local -a envs=()
  [ -z "$renv" ] || read -ra envs <<<"$renv"
  env "${envs[@]}" taskset -c "$cores" target/release/ringcast --listen "127.0.0.1:$port" --workers "$workers" \
    2>"$tmp/ringcast-$port.err" &
  pid=$!
}

# The physical floor (issue 11): ringcast-floor, a plain epoll + writev loop
# of the same frames over the same sockets with no server logic, driven by
# the same load-generator run (ringcast's URL layout).
# A scenario's sse.write_delay_ms ($2, from RINGCAST_SSE_WRITE_DELAY_MS) is
# given to the floor as its own window.
start_floor() {
  local port=$1 window=0 kv
  for kv in $2; do
    case "$kv" in RINGCAST_SSE_WRITE_DELAY_MS=*) window=${kv#*=} ;; esac
  done
  taskset -c 0 target/release/ringcast-floor --listen "127.0.0.1:$port" --max-s 300 \
    --write-delay-ms "$window" 2>"$tmp/floor-$port.err" &
  pid=$!
}

# Waits for the port to open; gives up at once when the server ($2) exited.
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "compare: the server on port $1 exited"; return 1; }
    sleep 0.1
  done
  echo "compare: port $1 did not open"; return 1
}

# name | server workers | load-generator arguments [| ringcast environment].
# A row with a ringcast environment runs on ringcast only (nchan has no such
# setting; its figures are the row without). A row whose load-generator
# arguments carry --timeout-s keeps it (otherwise 90 s). Scenarios compared with
# each other (c vs f, 1 vs 2 workers) are listed three times, interleaved, so
# drift over the run hits both alike; each figure is the median of the runs
# (run-to-run noise on this machine is about ±15%). Event counts are sized so
# that nchan, the slower server, finishes each run well inside the timeout.
# 19,900 stands for "20k": the hard fd limit here is 20,000 per process.
# Market open (h, i): h is a burst, K=8 publishers sending ndjson batches of
# 480 events of 2 KB (about 1 MB) flat out, 40 batches in all, to 50
# subscribers reading as fast as they can; nchan, which has no batch
# publish, gets the same events one per request on the same 8 connections.
# i is a resume storm: 10k subscribers on wildcards quotes.*.S<k> over 400
# topics quotes.V<v>.S<k> (2 venues; nchan: multi-channel subscribe), 1,000
# events/s; after 2 s of warm-up and a 3 s calm window, 90% of them drop at
# once and, 1,000 events later, reconnect at once with Last-Event-ID (2.5
# missed events per topic, well inside the default history of 1,024 per
# topic), the other 10% stay. 400 topics (each subscriber gets 5 events/s,
# 50k deliveries/s in all, as c10k_rate) keep one server core below
# saturation in the calm window, so that the storm is what is measured.
# Market (j): 2,000 topics quotes.V<v>.S<k> (4 venues × 500 symbols); 10k
# subscribers, each on 20 of them in one multi-topic subscription (a
# different set each, every topic on 95 subscribers), and 5% of them (500) on
# a venue wildcard quotes.V<v>.> (125 per venue). 4 publishers send ndjson
# batches of 50 small events at a steady 20k events/s in all (10 events/s a
# topic), 20k events: 1 s of publishing at that rate, 220 deliveries per
# event, 4.4M in all (neither server keeps 20k/s on this 2-core machine: it
# is 4.4M deliveries/s; they publish as fast as their fan-out lets them, and
# ringcast took 45 s for 25k events at 123k deliveries/s in one run). nchan, which has no batch publish, gets the same events one per
# request on the same 4 connections (it publishes slower than 20k/s: each
# publish waits for its fan-out), and no wildcard: its 500 "wildcard"
# subscribers take 40 channels of their venue by multi-channel subscribe
# (400 events/s each instead of 5,000; 105 deliveries per event), which is
# NOT the same load; compare CPU per delivery, not totals. Each run stops at
# 45 s; a server that has not delivered everything by then shows it as
# undelivered_at_deadline. The coalescing windows (sse.write_delay_ms = 1,
# 5, 20 ms; 0 is j_market) are rows with a ringcast environment.
market_args="--subscribers 10000 --topics 2000 --venues 4 --topics-per-sub 20 --wildcard-pct 5 --events 20000 --rate 20000 --batch 50 --inflight 4 --source-ips 8 --server-metrics --timeout-s 45"
rate_args="--subscribers 10000 --topics 1 --events 100 --rate 5 --size 512 --inflight 4"
a10k_args="--subscribers 10000 --topics 1 --events 300 --inflight 16"
b100_args="--subscribers 10000 --topics 100 --events 20000 --inflight 16"
b2000_args="--subscribers 10000 --topics 2000 --events 50000 --inflight 16"
m_args="--subscribers 10000 --topics 100 --events 5000 --rate 500 --inflight 4"
gz="RINGCAST_SSE_COMPRESSION=gzip"
scenarios=(
  "a1k|1|--subscribers 1000 --topics 1 --events 2000 --inflight 16"
  "a10k|1|--subscribers 10000 --topics 1 --events 300 --inflight 16"
  "a10k_2workers|2|--subscribers 10000 --topics 1 --events 300 --inflight 16"
  "a10k_journal|1|--subscribers 10000 --topics 1 --events 300 --inflight 16|RINGCAST_HISTORY_DIR=$tmp/journal"
  "a10k|1|--subscribers 10000 --topics 1 --events 300 --inflight 16"
  "a10k_2workers|2|--subscribers 10000 --topics 1 --events 300 --inflight 16"
  "a10k_journal|1|--subscribers 10000 --topics 1 --events 300 --inflight 16|RINGCAST_HISTORY_DIR=$tmp/journal"
  "a10k|1|--subscribers 10000 --topics 1 --events 300 --inflight 16"
  "a10k_2workers|2|--subscribers 10000 --topics 1 --events 300 --inflight 16"
  "a10k_journal|1|--subscribers 10000 --topics 1 --events 300 --inflight 16|RINGCAST_HISTORY_DIR=$tmp/journal"
  "a20k|1|--subscribers 19900 --topics 1 --events 150 --inflight 16"
  # 100 topics flat out, three interleaved repeats (issue 11: at most 0.6x
  # nchan's CPU per delivery; ringcast-floor beside them).
  "b10k_100topics|1|--subscribers 10000 --topics 100 --events 20000 --inflight 16"
  "b10k_100topics|1|--subscribers 10000 --topics 100 --events 20000 --inflight 16"
  "b10k_100topics|1|--subscribers 10000 --topics 100 --events 20000 --inflight 16"
  # 2,000 topics, 5 subscribers per event (issue 11: CPU per delivery at
  # most 0.7x nchan's; ringcast-floor beside them), three interleaved
  # repeats. 100k events (500k deliveries, 7-10 s a run): with 20k the run
  # lasted 2.3 s and its first second weighed on the figure (0.81x nchan
  # at 20k events, 0.69-0.72x at 100k, on the same day).
  "b10k_2000topics|1|--subscribers 10000 --topics 2000 --events 100000 --inflight 16"
  "b10k_2000topics|1|--subscribers 10000 --topics 2000 --events 100000 --inflight 16"
  "b10k_2000topics|1|--subscribers 10000 --topics 2000 --events 100000 --inflight 16"
  "c10k_rate|1|$rate_args"
  "f10k_1pct_stalled|1|$rate_args --stalled-pct 1"
  "c10k_rate|1|$rate_args"
  "f10k_1pct_stalled|1|$rate_args --stalled-pct 1"
  "c10k_rate|1|$rate_args"
  "f10k_1pct_stalled|1|$rate_args --stalled-pct 1"
  "d20k_idle|1|--subscribers 19900 --connect-only --hold-s 3"
  "e10k_storm|1|--subscribers 10000 --connect-only --connect-concurrency 1024"
  "g10_publish_stress|1|--subscribers 10 --topics 1 --events 50000 --inflight 16"
  "h_burst|1|--subscribers 50 --topics 1 --events 19200 --batch 480 --size 2048 --inflight 8 --server-metrics"
  "i_resume_storm|1|--subscribers 10000 --topics 400 --venues 2 --events 12000 --rate 1000 --inflight 8 --resumers-pct 90 --resume-back 1000 --source-ips 8 --server-metrics"
  "j_market|1|$market_args"
  # 100 topics at a moderate rate (issue 11: p99 at most 2 ms, median of
  # interleaved repeats, and no worse than nchan's median).
  "k100_rate500|1|--subscribers 10000 --topics 100 --events 5000 --rate 500 --inflight 4"
  "k100_rate500|1|--subscribers 10000 --topics 100 --events 5000 --rate 500 --inflight 4"
  "k100_rate500|1|--subscribers 10000 --topics 100 --events 5000 --rate 500 --inflight 4"
  # Compressed streams (l, issue 29), ringcast against itself: the same
  # server (sse.compression = "gzip", the default, set in the environment so
  # that the rows run on ringcast only) answering subscribers that do not
  # ask for gzip (identity) and ones that do (--gzip, decoded as they
  # arrive). nchan's gzip does not apply to event streams; its identity
  # rows are a10k, b10k_100topics and b10k_2000topics. Three interleaved
  # repeats each; idle memory with 10,000 connections.
  "l1_identity|1|$a10k_args|$gz"
  "l1_gzip|1|$a10k_args --gzip|$gz"
  "l100_identity|1|$b100_args|$gz"
  "l100_gzip|1|$b100_args --gzip|$gz"
  "l2000_identity|1|$b2000_args|$gz"
  "l2000_gzip|1|$b2000_args --gzip|$gz"
  "l1_identity|1|$a10k_args|$gz"
  "l1_gzip|1|$a10k_args --gzip|$gz"
  "l100_identity|1|$b100_args|$gz"
  "l100_gzip|1|$b100_args --gzip|$gz"
  "l2000_identity|1|$b2000_args|$gz"
  "l2000_gzip|1|$b2000_args --gzip|$gz"
  "l1_identity|1|$a10k_args|$gz"
  "l1_gzip|1|$a10k_args --gzip|$gz"
  "l100_identity|1|$b100_args|$gz"
  "l100_gzip|1|$b100_args --gzip|$gz"
  "l2000_identity|1|$b2000_args|$gz"
  "l2000_gzip|1|$b2000_args --gzip|$gz"
  "l10k_idle_identity|1|--subscribers 10000 --connect-only --hold-s 3|$gz"
  "l10k_idle_gzip|1|--subscribers 10000 --connect-only --hold-s 3 --gzip|$gz"
  # Update rates (m, issue 29): k100_rate500's load with half the
  # subscribers at max_rate=1 (each topic ticks 5 times a second), against
  # the same load with none throttled; ringcast only (nchan has no
  # throttle). Three interleaved repeats.
  "m100_rate500|1|$m_args|$gz"
  "m100_rate500_half_throttled|1|$m_args --max-rate 1 --throttled-pct 50|$gz"
  "m100_rate500|1|$m_args|$gz"
  "m100_rate500_half_throttled|1|$m_args --max-rate 1 --throttled-pct 50|$gz"
  "m100_rate500|1|$m_args|$gz"
  "m100_rate500_half_throttled|1|$m_args --max-rate 1 --throttled-pct 50|$gz"
  # The coalescing windows (sse.write_delay_ms), ringcast only, compared
  # with nchan's row without a window.
  "j_market_w1|1|$market_args|RINGCAST_SSE_WRITE_DELAY_MS=1"
  "j_market_w5|1|$market_args|RINGCAST_SSE_WRITE_DELAY_MS=5"
  "j_market_w20|1|$market_args|RINGCAST_SSE_WRITE_DELAY_MS=20"
  "b10k_100topics_w1|1|--subscribers 10000 --topics 100 --events 20000 --inflight 16|RINGCAST_SSE_WRITE_DELAY_MS=1"
  "b10k_100topics_w5|1|--subscribers 10000 --topics 100 --events 20000 --inflight 16|RINGCAST_SSE_WRITE_DELAY_MS=5"
  "b10k_100topics_w20|1|--subscribers 10000 --topics 100 --events 20000 --inflight 16|RINGCAST_SSE_WRITE_DELAY_MS=20"
)
# Scenarios also run against ringcast-floor (the plain-writev floor).
floor_scenarios="a10k b10k_100topics b10k_2000topics k100_rate500 b10k_100topics_w5"
want=("$@")
# A full name, or one letter for every scenario of that letter.
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w
  for w in "${want[@]}"; do
    [ "$w" = "$1" ] && return 0
    [ ${#w} = 1 ] && [ "${1:0:1}" = "$w" ] && return 0
  done
  return 1
}
results="$out/compare.jsonl"
: >"$results"
port=18600
for entry in "${scenarios[@]}"; do
  IFS='|' read -r name workers largs renv <<<"$entry"
  selected "$name" || continue
  servers="ringcast nchan"
  # Worker scaling is ringcast's own figure (per server core, against a1k/a10k),
  # and so is a ringcast setting.
  [ "$workers" = 1 ] && [ -z "$renv" ] || servers=ringcast
  # The floor runs beside them where issue 11 sets a target against it.
  case " $floor_scenarios " in *" $name "*) servers="$servers floor" ;; esac
  tmo="--timeout-s 90"
  case " $largs " in *" --timeout-s "*) tmo="" ;; esac
  # The server's core from /proc/stat too (with softirqs, which loopback
  # TCP does not charge to the server's process): with one worker, core 0.
  core="--server-core 0"
  [ "$workers" = 1 ] || core=
  for server in $servers; do
    port=$((port + 1))
    # Both start in the background and set $pid (no subshell: the EXIT trap
    # must stay this shell's).
    if [ "$server" = nchan ]; then start_nchan "$port"
    elif [ "$server" = floor ]; then start_floor "$port" "$renv"
    else start_ringcast "$port" "$workers" "$(seq -s, 0 $((workers - 1)))" "$renv"; fi
    pids+=("$pid")
    if ! wait_port "$port" "$pid"; then
      # E.g. a ringcast environment naming a setting this build does not
      # have (exit 2): the row is skipped, the others go on.
      echo "compare: $name on $server did not start${renv:+ (with $renv)}"
      cat "$tmp/ringcast-$port.err" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      continue
    fi
    # nchan's work happens in nginx's worker process, not the master.
    measured=$pid
    if [ "$server" = nchan ]; then measured=$(pgrep -P "$pid" | head -n1); fi
    rep=$(python3 -c 'import json,sys; print(1 + sum(1 for l in open(sys.argv[1]) if l.strip()
      and json.loads(l).get("scenario") == sys.argv[2] and json.loads(l).get("run", {}).get("server") == sys.argv[3]))' \
      "$results" "$name" "$server")
    echo "== $name on $server (run $rep)"
    # shellcheck disable=SC2086
    line=$(taskset -c 1 target/release/ringcast-load --addr "127.0.0.1:$port" --server "$server" \
      --server-pid "$measured" $core $tmo --json $largs || echo '{}')
    echo "$line"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); d["scenario"]=sys.argv[2]; d["rep"]=int(sys.argv[3])
if sys.argv[4]: d["ringcast_env"]=sys.argv[4]
print(json.dumps(d))' \
      "$line" "$name" "$rep" "$renv" >>"$results"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
done

python3 - "$results" "$out/compare.md" <<'PY'
import json, os, platform, subprocess, sys, time
# The report's groups, flattened to dotted keys ("delivery.lost").
def flat(d, pre=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{pre}{k}."))
        else:
            out[pre + k] = v
    return out
rows = [flat(json.loads(l)) for l in open(sys.argv[1]) if l.strip()]
# Repeated scenarios: every numeric figure is the median over the runs.
groups = {}
for r in rows:
    groups.setdefault((r.get("scenario"), r.get("run.server")), []).append(r)
def median_record(rs):
    m = dict(rs[0])
    for k, v in rs[0].items():
        vals = sorted(r[k] for r in rs if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool))
        if isinstance(v, (int, float)) and not isinstance(v, bool) and vals:
            m[k] = vals[len(vals) // 2]
    return m
by = {}
for (scen, srv), rs in groups.items():
    by.setdefault(scen, {})[srv] = median_record(rs)
reps = {k: v for k, v in groups.items() if len(v) > 1}
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip() or subprocess.run(cmd, shell=True, capture_output=True, text=True).stderr.strip()
    except Exception:
        return "?"
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
nchan_ver = sh("dpkg-query -W -f='${Version}' libnginx-mod-nchan")
metrics = [
    ("delivery.per_s", "deliveries/s"),
    ("server.cpu_us_per_delivery", "server CPU µs / delivery (= s / 1M deliveries)"),
    ("latency_ms.p50", "p50 ms"),
    ("latency_ms.p90", "p90 ms"),
    ("latency_ms.p99", "p99 ms"),
    ("latency_ms.p999", "p99.9 ms"),
    ("latency_ms.max", "max ms"),
    ("server.cores_busy.publish", "server core busy (publish phase)"),
    ("server.core.busy", "server's core busy, any process incl. softirq (publish phase)"),
    ("server.core.softirq", "server's core in softirq (publish phase)"),
    ("loadgen.cores_busy.publish", "load-generator core busy (publish phase)"),
    ("connect.per_s", "connects/s"),
    ("connect.ttfb_ms.p99", "TTFB p99 ms"),
    ("server.cpu_us_per_connect", "server CPU us / connect"),
    ("server.cpu_us_per_close", "server CPU us / close (after the publish phase)"),
    ("server.connects_per_cpu_s", "connects per server CPU-second"),
    ("server.cores_busy.connect", "server core busy (connect phase)"),
    ("loadgen.cores_busy.connect", "load-generator core busy (connect phase)"),
    ("server.rss_growth_bytes_per_connection", "server RSS bytes / connection"),
    ("delivery.published", "published"),
    ("delivery.publish_errors", "publish errors"),
    ("delivery.delivered", "delivered"),
    ("delivery.lost", "lost"),
    ("delivery.duplicated", "duplicated"),
    ("delivery.reordered", "reordered"),
    ("delivery.misrouted", "misrouted (a topic not subscribed)"),
    ("delivery.undelivered_at_deadline", "undelivered at deadline"),
    # j (market) only.
    ("ringcast_env", "ringcast environment"),
    # l (compression) and m (max_rate) only.
    ("wire.ratio", "bytes read / decoded"),
    ("server.rss_growth_bytes_per_active_connection", "RSS growth per connection, streams active (bytes)"),
    ("server.cpu_us_per_event", "server CPU per published event µs"),
    ("throttled.subscribers", "throttled subscribers (max_rate)"),
    ("throttled.received", "events the throttled subscribers received"),
    ("market.topics_per_sub", "topics per subscription"),
    ("market.wildcard_subscribers", "venue-wildcard subscribers"),
    ("market.wildcard_as", "a venue wildcard is"),
    ("delivery.expected", "deliveries expected"),
    # h (burst) and i (resume storm) only.
    ("delivery.disconnected_subscribers", "reading subscribers disconnected"),
    ("server_metrics.slow_disconnects", "server slow disconnects (/metrics delta)"),
    ("server_metrics.fanout_paused", "server fan-out holds (/metrics delta)"),
    ("server_metrics.ingest_ring_full", "server ingest ring full (/metrics delta)"),
    ("ack_ms.p50", "publish ack p50 ms"),
    ("ack_ms.p99", "publish ack p99 ms"),
    ("storm.calm_window.ack_p99_ms", "publish ack p99 ms, calm window"),
    ("storm.storm_window.ack_p99_ms", "publish ack p99 ms, storm window"),
    ("storm.storm_over_calm.ack_p99", "publish ack p99, storm / calm"),
    ("storm.calm_window.live_p99_ms", "stayers' live p99 ms, calm window"),
    ("storm.storm_window.live_p99_ms", "stayers' live p99 ms, storm window"),
    ("storm.storm_over_calm.live_p99", "stayers' live p99, storm / calm"),
    ("storm.resumers", "resumers"),
    ("storm.resume.exact", "resumers with exactly the missed events, then live"),
    ("delivery.resyncs", "resync frames"),
    ("storm.resume.replayed_per_resumer", "events replayed per resumer"),
    ("storm.resume.ttfb_p99_ms", "resume TTFB p99 ms"),
    ("storm.resume.catchup_max_ms", "resume to first live event, max ms"),
    ("storm.calm_window.server_cores_busy", "server core busy (calm window)"),
    ("storm.storm_window.server_cores_busy", "server core busy (storm window)"),
    ("storm.storm_window.loadgen_lag_p99_ms", "load-generator timer lag p99 ms (storm window)"),
]
fmt = lambda v: "–" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
def get(s, srv, k):
    return by.get(s, {}).get(srv, {}).get(k)
def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
out = []
out.append("# ringcast vs nchan, side by side\n")
out.append(f"Generated by `scripts/compare.sh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
           f"commit `{sh('git rev-parse --short HEAD')}`; {cpu}, {os.cpu_count()} cores; "
           f"Linux {platform.release()}; {sh('nginx -v 2>&1')}, libnginx-mod-nchan "
           f"{nchan_ver}. "
           "Each server pinned to core 0 (1 worker / 1 nginx worker process), the load generator to core 1, "
           "same machine, same run. Raw records: `compare.jsonl`"
           + ("; chart: `compare.png`.\n" if any(str(s).startswith("a") for s in by) else " (no chart: it draws the a* scenarios).\n"))
# Targets (issue 4), computed from this run.
t = []
def target(name, value, ok, how):
    t.append(f"| {name} | {value} | {'met' if ok else 'missed'} | {how} |")
r = ratio(get("a10k", "ringcast", "server.cpu_us_per_delivery"), get("a10k", "nchan", "server.cpu_us_per_delivery"))
if r is not None:
    target("server CPU per delivery, 10k subscribers, 1 topic: ≤ 1/3 of nchan", f"{r:.2f}× nchan", r <= 1/3, "a10k")
one = get("a10k", "ringcast", "server.cpu_us_per_delivery")
two = get("a10k_2workers", "ringcast", "server.cpu_us_per_delivery")
if one and two:
    per_core = one / two  # deliveries per CPU-second, 2 workers / 1 worker
    target("2 workers: throughput per server core within 15% of 1 worker", f"{per_core:.2f}× the 1-worker figure", per_core >= 0.85,
           "deliveries per server CPU-second, a10k_2workers / a10k")
r = ratio(get("c10k_rate", "ringcast", "latency_ms.p99"), get("c10k_rate", "nchan", "latency_ms.p99"))
if r is not None:
    target("p99, 10k subscribers at a moderate rate: ≤ 1/2 of nchan", f"{r:.2f}× nchan", r <= 0.5, "c10k_rate")
rss = get("d20k_idle", "ringcast", "server.rss_growth_bytes_per_connection")
r = ratio(rss, get("d20k_idle", "nchan", "server.rss_growth_bytes_per_connection"))
if rss is not None and r is not None:
    target("memory per idle subscriber: < 2 KiB and ≤ 1/2 of nchan", f"{rss:.0f} B, {r:.2f}× nchan", rss < 2048 and r <= 0.5, "d20k_idle, server RSS delta / connection")
r = ratio(get("e10k_storm", "ringcast", "connect.per_s"), get("e10k_storm", "nchan", "connect.per_s"))
rc = ratio(get("e10k_storm", "ringcast", "server.connects_per_cpu_s"), get("e10k_storm", "nchan", "server.connects_per_cpu_s"))
if r is not None:
    lg = get("e10k_storm", "ringcast", "loadgen.cores_busy.connect")
    target("connection storm: ≥ 1.5× nchan's accepted connections/s", f"{r:.2f}× observed; {fmt(rc)}× per server CPU-second", r >= 1.5,
           f"e10k_storm; load generator core {fmt(lg)} busy")
for srv in ("ringcast", "nchan"):
    base, stalled = get("c10k_rate", srv, "latency_ms.p99"), get("f10k_1pct_stalled", srv, "latency_ms.p99")
    if base and stalled:
        rise = stalled / base - 1
        if srv == "ringcast":
            target("1% stalled subscribers: others' p99 rises ≤ 10%", f"{rise * 100:+.0f}% ({fmt(base)} → {fmt(stalled)} ms)", rise <= 0.10,
                   "f10k_1pct_stalled vs c10k_rate")
        else:
            t.append(f"| (nchan, same comparison) | {rise * 100:+.0f}% ({fmt(base)} → {fmt(stalled)} ms) | – | for reference |")
r = by.get("h_burst", {})
for srv in ("ringcast", "nchan"):
    x = r.get(srv)
    if not x or x.get("delivery.disconnected_subscribers") is None:
        continue
    disc, slow = x.get("delivery.disconnected_subscribers"), x.get("server_metrics.slow_disconnects")
    seen = f"{disc} of {x.get('run.subscribers')}" + (f" (server: {fmt(slow)} slow disconnects)" if slow is not None else "")
    how = (f"h_burst: {x.get('run.publishers')} publishers, {x.get('run.batch_as')}; "
           f"{fmt(x.get('delivery.per_s'))} deliveries/s, p99 {fmt(x.get('latency_ms.p99'))} ms")
    if srv == "ringcast":
        target("burst: reading subscribers disconnected = 0", seen, disc == 0 and not slow, how)
    else:
        t.append(f"| (nchan, same burst) | {seen} | – | for reference; {how} |")
r = by.get("i_resume_storm", {})
for srv in ("ringcast", "nchan"):
    x = r.get(srv)
    if not x or x.get("storm.resumers") is None:
        continue
    ra, rl = x.get("storm.storm_over_calm.ack_p99"), x.get("storm.storm_over_calm.live_p99")
    exact = x.get("storm.resume.exact") == x.get("storm.resumers") and not x.get("delivery.resyncs") and not any(
        x.get(k) for k in ("delivery.lost", "delivery.duplicated", "delivery.reordered"))
    seen = (f"ack p99 {fmt(x.get('storm.calm_window.ack_p99_ms'))} → {fmt(x.get('storm.storm_window.ack_p99_ms'))} ms ({fmt(ra)}×), "
            f"live p99 {fmt(x.get('storm.calm_window.live_p99_ms'))} → {fmt(x.get('storm.storm_window.live_p99_ms'))} ms ({fmt(rl)}×); "
            f"{x.get('storm.resume.exact')} of {x.get('storm.resumers')} resumers exact")
    how = (f"i_resume_storm: {x.get('storm.resumers')} resumers, {x.get('storm.stayers')} stayers, "
           f"{fmt(x.get('storm.resume.replayed_per_resumer'))} events replayed each; ack from when due")
    if srv == "ringcast":
        ok = ra is not None and rl is not None and ra <= 2 and rl <= 2 and exact
        target("resume storm: ack p99 and live p99 ≤ 2× without; exact resume", seen, ok, how)
    else:
        t.append(f"| (nchan, same storm, multi-channel subscribe) | {seen} | – | for reference; {how} |")
# j (market): CPU per delivery against nchan for each coalescing window
# (sse.write_delay_ms; nchan has none, so every window is set against
# nchan's j_market).
def window_of(x):
    e = x.get("ringcast_env") or ""
    ms = [kv.split("=", 1)[1] for kv in e.split() if kv.startswith("RINGCAST_SSE_WRITE_DELAY_MS=")]
    return f"sse.write_delay_ms = {ms[0]}" if ms else "sse.write_delay_ms = 0 (unset)"
nchan_market = get("j_market", "nchan", "server.cpu_us_per_delivery")
for scen in sorted((s for s in by if str(s).startswith("j_market")), key=lambda s: (len(s), s)):
    x = by[scen].get("ringcast")
    if not x:
        continue
    n = by.get("j_market", {}).get("nchan", {})
    a = x.get("server.cpu_us_per_delivery")
    r = ratio(a, nchan_market)
    seen = f"{fmt(r)}× nchan ({fmt(a)} vs {fmt(nchan_market)} µs per delivery)"
    how = (f"{scen}: deliveries/s {fmt(x.get('delivery.per_s'))} vs {fmt(n.get('delivery.per_s'))}, "
           f"p99 {fmt(x.get('latency_ms.p99'))} vs {fmt(n.get('latency_ms.p99'))} ms; "
           f"events published in the run {fmt(x.get('delivery.published'))} vs {fmt(n.get('delivery.published'))} of {fmt(x.get('run.events'))}; "
           f"server core busy with softirqs {fmt(x.get('server.core.busy'))} vs "
           f"{fmt(n.get('server.core.busy'))} (softirq {fmt(x.get('server.core.softirq'))} vs "
           f"{fmt(n.get('server.core.softirq'))}, not in CPU per delivery); "
           f"nchan's {fmt(n.get('market.wildcard_subscribers'))} venue-wildcard subscribers take "
           "channels of the venue instead (no wildcard in nchan: not the same load); "
           "issue targets ≤ 0.6× at 100 topics, ≤ 0.7× at 2,000 topics flat out")
    t.append(f"| market (2,000 topics, 20 per subscription, 5% venue wildcards), {window_of(x)}: "
             f"server CPU per delivery vs nchan | {seen} | reported | {how} |")
# Issue 29: compression and max_rate, ringcast against itself.
for topics, limit in (("1", 2.0), ("100", 1.3), ("2000", None)):
    i, g = by.get(f"l{topics}_identity", {}).get("ringcast"), by.get(f"l{topics}_gzip", {}).get("ringcast")
    if not (i and g):
        continue
    r = ratio(g.get("server.cpu_us_per_delivery"), i.get("server.cpu_us_per_delivery"))
    seen = (f"{fmt(r)}× identity ({fmt(g.get('server.cpu_us_per_delivery'))} vs {fmt(i.get('server.cpu_us_per_delivery'))} µs); "
            f"wire {fmt(g.get('wire.ratio'))}× the plain stream")
    how = (f"l{topics}_gzip vs l{topics}_identity (medians of interleaved runs); p99 {fmt(g.get('latency_ms.p99'))} vs "
           f"{fmt(i.get('latency_ms.p99'))} ms; active RSS per connection {fmt(g.get('server.rss_growth_bytes_per_active_connection'))} vs "
           f"{fmt(i.get('server.rss_growth_bytes_per_active_connection'))} B; nchan's identity stream: see "
           + {"1": "a10k", "100": "b10k_100topics", "2000": "b10k_2000topics"}[topics])
    if limit is None:
        t.append(f"| gzip CPU per delivery, {topics} topics (reported) | {seen} | reported | {how} |")
    else:
        target(f"gzip CPU per delivery, {topics} topic(s): ≤ {limit}× identity", seen, r is not None and r <= limit, how)
    ga, ia = g.get("server.rss_growth_bytes_per_active_connection"), i.get("server.rss_growth_bytes_per_active_connection")
    if topics == "100" and ga is not None and ia is not None:
        target("memory per compressed active subscriber ≤ 24 KB", f"{ga} B ({ga - ia:+} B against identity)", ga <= 24000,
               "l100_gzip, RSS growth at the end of the publish phase / connection")
gi, ii = get("l10k_idle_gzip", "ringcast", "server.rss_growth_bytes_per_connection"), get("l10k_idle_identity", "ringcast", "server.rss_growth_bytes_per_connection")
if gi is not None and ii is not None:
    target("idle compressed subscriber ≤ 2 KB above identity", f"{gi} vs {ii} B ({gi - ii:+} B)", gi - ii <= 2048, "l10k_idle_gzip vs l10k_idle_identity, 10,000 connections")
b, h = by.get("m100_rate500", {}).get("ringcast"), by.get("m100_rate500_half_throttled", {}).get("ringcast")
if b and h:
    ev = ratio(h.get("server.cpu_us_per_event"), b.get("server.cpu_us_per_event"))
    sent = h.get("delivery.delivered", 0) + h.get("throttled.received", 0)
    share = ratio(sent, b.get("delivery.delivered"))
    target("max_rate: CPU per published event falls with the deliveries skipped",
           f"{fmt(ev)}× (deliveries {fmt(share)}× of the unthrottled run)", ev is not None and share is not None and ev <= share * 1.15,
           f"m100_rate500_half_throttled vs m100_rate500: {fmt(h.get('server.cpu_us_per_event'))} vs {fmt(b.get('server.cpu_us_per_event'))} µs per event")
    p_h, p_b = h.get("latency_ms.p99"), b.get("latency_ms.p99")
    target("max_rate: p99 of the unthrottled half no worse than with none throttled", f"{fmt(p_h)} vs {fmt(p_b)} ms",
           p_h is not None and p_b is not None and p_h <= p_b * 1.1, "medians of interleaved runs (±10% allowed for noise)")
# Issue 11 against the physical floor (ringcast-floor: a plain epoll +
# writev loop of the same frames over the same sockets, same run).
def floor_row(scen, label, key, unit, scale, limit_abs=None, limit_nchan=None, nchan_scen=None):
    a, n, f = get(scen, "ringcast", key), get(nchan_scen or scen, "nchan", key), get(scen, "floor", key)
    if a is None:
        return
    parts = [f"ringcast {a * scale:.3g} {unit}"]
    if n is not None:
        parts.append(f"nchan {n * scale:.3g} ({fmt(ratio(a, n))}×)")
    if f is not None:
        parts.append(f"floor {f * scale:.3g} (ringcast {fmt(ratio(a, f))}× the floor; the floor is {fmt(ratio(f, n))}× nchan)")
    ok = (limit_abs is None or a * scale <= limit_abs) and (limit_nchan is None or (n and a / n <= limit_nchan))
    how = f"{scen}; floor = ringcast-floor, a plain epoll + writev loop, same frames, same run"
    if nchan_scen:
        how += f" (with the same window); nchan from {nchan_scen}, which has no window"
    if limit_abs is not None and f is not None and f * scale > limit_abs:
        how += f"; the floor itself is above {limit_abs:g} {unit}: a loop with no server logic misses it too"
    if limit_nchan is not None and f is not None and n and f / n > limit_nchan:
        how += f"; the floor itself is above {limit_nchan:g}× nchan: a loop with no server logic misses it too"
    target(label, ", ".join(parts), ok, how)
floor_row("a10k", "issue 11: CPU per delivery, 10k subscribers, 1 topic, flat out: ≤ 1.0 µs", "server.cpu_us_per_delivery", "µs", 1.0, limit_abs=1.0)
floor_row("b10k_100topics", "issue 11: CPU per delivery, 100 topics, flat out: ≤ 0.6× nchan", "server.cpu_us_per_delivery", "µs", 1.0, limit_nchan=0.6)
floor_row("b10k_2000topics", "issue 11: CPU per delivery, 2,000 topics, flat out: ≤ 0.7× nchan", "server.cpu_us_per_delivery", "µs", 1.0, limit_nchan=0.7)
floor_row("k100_rate500", "issue 11: p99, 100 topics × 500 events/s: ≤ 2 ms and ≤ nchan's", "latency_ms.p99", "ms", 1.0, limit_abs=2.0, limit_nchan=1.0)
floor_row("b10k_100topics_w5", "issue 11: CPU per delivery, 100 topics, flat out, sse.write_delay_ms = 5: ≤ 0.3× nchan", "server.cpu_us_per_delivery", "µs", 1.0, limit_nchan=0.3, nchan_scen="b10k_100topics")
for scen in ("a10k", "b10k_100topics", "b10k_2000topics", "k100_rate500"):
    floor_row(scen, f"issue 11: TTFB p99 at 256 concurrent connects ({scen}): ≤ nchan's", "connect.ttfb_ms.p99", "ms", 1.0, limit_nchan=1.0)
clean = [s for s in by if "stalled" not in s]
bad = [(s, srv) for s in clean for srv, r in by[s].items()
       if any(r.get(k) for k in ("delivery.lost", "delivery.duplicated", "delivery.reordered", "delivery.misrouted"))]
target("zero lost, duplicated, reordered or misrouted events (no stalled clients)",
       "none" if not bad else ", ".join(f"{s}/{srv}" for s, srv in bad), not any(srv == "ringcast" for _, srv in bad), "every scenario")
if reps:
    out.append("Repeated scenarios (figures are medians; p99 of each run): " + "; ".join(
        f"{s}/{srv} p99 {', '.join(fmt(r.get('latency_ms.p99')) for r in v)} ms, CPU "
        f"{', '.join(fmt(r.get('server.cpu_us_per_delivery')) for r in v)} µs/delivery"
        for (s, srv), v in sorted(reps.items())) + ".\n")
out.append("## Targets\n")
out.append("| target | this run | | from |\n|---|---|---|---|")
out.extend(t)
out.append("")
out.append("## All figures\n")
floors = any("floor" in v for v in by.values())
out.append("| scenario | metric | ringcast | nchan | ringcast / nchan |" + (" floor (plain writev) |" if floors else "")
           + "\n|---|---|---|---|---|" + ("---|" if floors else ""))
for scen, servers in by.items():
    rc, nc, fl = servers.get("ringcast", {}), servers.get("nchan", {}), servers.get("floor", {})
    for key, label in metrics:
        a, b, f = rc.get(key), nc.get(key), fl.get(key)
        if a is None and b is None:
            continue
        if not a and not b and key not in ("delivery.lost", "delivery.duplicated", "delivery.reordered", "delivery.misrouted", "delivery.disconnected_subscribers", "delivery.resyncs"):
            continue
        rr = ratio(a, b)
        out.append(f"| {scen} | {label} | {fmt(a)} | {fmt(b)} | {fmt(rr) if rr is not None else '–'} |"
                   + (f" {fmt(f) if fl else '–'} |" if floors else ""))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
# The chart draws the one-topic a* scenarios; a run without them has none.
if grep -q '"scenario": "a' "$results"; then
  target/release/ringcast-chart "$results" "$out/compare.png"
else
  echo "compare: no chart (no a* scenario in this run)"
fi
