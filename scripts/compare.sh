#!/usr/bin/env bash
# Side-by-side: the same load-generator scenarios against ringcast and a
# private nginx + nchan (Debian's libnginx-mod-nchan) on 127.0.0.1, each
# server pinned to core 0 and the load generator to core 1. Writes a
# markdown table with both figures and their ratio to
# benches/results/compare.md (and the raw JSON lines beside it).
# Usage: scripts/compare.sh [scenario ...]   (default: all)
# Every run is bounded (ringcast-load --timeout-s); servers are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null || { echo "compare: install nginx and libnginx-mod-nchan first"; exit 1; }
mod=$(ls /usr/lib/nginx/modules/ngx_nchan_module.so 2>/dev/null || true)
[ -n "$mod" ] || { echo "compare: libnginx-mod-nchan is not installed"; exit 1; }
[ -x target/release/ringcast ] && [ -x target/release/ringcast-load ] || cargo build --release --quiet --bins
ulimit -n "$(ulimit -Hn)"
out=benches/results
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
    location ~ ^/pub/(.+)\$ { nchan_publisher; nchan_channel_id \$1; nchan_message_buffer_length 1024; }
  }
}
CONF
  taskset -c 0 nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" &
  pid=$!
}

start_ringcast() {
  local port=$1 workers=$2 cores=$3
  taskset -c "$cores" target/release/ringcast --listen "127.0.0.1:$port" --workers "$workers" \
    2>"$tmp/ringcast-$port.err" &
  pid=$!
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "compare: port $1 did not open"; return 1
}

# name | load-generator arguments
scenarios=(
  "a1k|--subscribers 1000 --topics 1 --events 5000 --inflight 16"
  "a10k|--subscribers 10000 --topics 1 --events 500 --inflight 16"
  "a20k|--subscribers 19000 --topics 1 --events 250 --inflight 16"
  "b10k_100topics|--subscribers 10000 --topics 100 --events 20000 --inflight 16"
  "c10k_rate|--subscribers 10000 --topics 1 --events 600 --rate 100 --inflight 4"
  "d20k_idle|--subscribers 19000 --connect-only"
  "e10k_storm|--subscribers 10000 --connect-only --connect-concurrency 1024"
  "f10k_1pct_stalled|--subscribers 10000 --topics 1 --events 300 --rate 100 --inflight 4 --stalled-pct 1"
  "g10_publish_stress|--subscribers 10 --topics 1 --events 50000 --inflight 16"
)
want=("$@")
results="$out/compare.jsonl"
: >"$results"
port=18600
for entry in "${scenarios[@]}"; do
  name=${entry%%|*}
  largs=${entry#*|}
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $name " ]]; then continue; fi
  for server in ringcast nchan; do
    port=$((port + 1))
    # Both start in the background and set $pid (no subshell: the EXIT trap
    # must stay this shell's).
    if [ "$server" = nchan ]; then start_nchan "$port"; else start_ringcast "$port" 1 0; fi
    pids+=("$pid")
    wait_port "$port"
    # nchan's work happens in nginx's worker process, not the master.
    measured=$pid
    if [ "$server" = nchan ]; then measured=$(pgrep -P "$pid" | head -n1); fi
    echo "== $name on $server"
    # shellcheck disable=SC2086
    line=$(taskset -c 1 target/release/ringcast-load --addr "127.0.0.1:$port" --server "$server" \
      --server-pid "$measured" --timeout-s 90 --json $largs || echo '{}')
    echo "$line"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); d["scenario"]=sys.argv[2]; print(json.dumps(d))' \
      "$line" "$name" >>"$results"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
done

python3 - "$results" "$out/compare.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r.get("scenario"), {})[r.get("server")] = r
metrics = [
    ("deliveries_per_s", "deliveries/s", True),
    ("server_cpu_s_per_million_deliveries", "server CPU s / 1M deliveries", False),
    ("latency_p50_ms", "p50 ms", False),
    ("latency_p99_ms", "p99 ms", False),
    ("connects_per_s", "connects/s", True),
    ("ttfb_p99_ms", "TTFB p99 ms", False),
    ("server_rss_bytes_per_connection", "RSS bytes / connection", False),
    ("lost", "lost", False),
    ("duplicated", "duplicated", False),
    ("reordered", "reordered", False),
]
with open(sys.argv[2], "w") as f:
    f.write("| scenario | metric | ringcast | nchan | ringcast / nchan |\n|---|---|---|---|---|\n")
    for scen, servers in by.items():
        rc, nc = servers.get("ringcast", {}), servers.get("nchan", {})
        for key, label, _ in metrics:
            a, b = rc.get(key), nc.get(key)
            if a is None and b is None:
                continue
            ratio = f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "–"
            fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
            f.write(f"| {scen} | {label} | {fmt(a)} | {fmt(b)} | {ratio} |\n")
print(open(sys.argv[2]).read())
PY
