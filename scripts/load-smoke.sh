#!/usr/bin/env bash
# A small, fast run of the load generator against a fresh ringcast: a few
# hundred subscribers over several topics, a few thousand events with 16
# publishes in flight; fails unless every event reached every subscriber
# exactly once and in order. The same run then goes against ringcast-floor
# (the plain-writev floor that scripts/compare.sh runs beside ringcast): its
# figures are only worth comparing if it delivers the same events exactly
# once and in order too, with and without its coalescing window
# (--write-delay-ms, which compare.sh gives it beside ringcast's
# sse.write_delay_ms). Bounded in time; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/ringcast ] && [ -x target/release/ringcast-load ] && [ -x target/release/ringcast-floor ] ||
  cargo build --release --quiet --bin ringcast --bin ringcast-load --bin ringcast-floor
tmp=$(mktemp -d)
servers=()
cleanup() { for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# smoke NAME COMMAND...: starts the server on an ephemeral port, runs the
# load against it and checks the report.
smoke() {
  local name=$1 addr="" pid
  shift
  "$@" 2>"$tmp/$name.err" &
  pid=$!
  servers+=("$pid")
  for _ in $(seq 100); do
    addr=$(grep -ao 'listening on http://127.0.0.1:[0-9]*' "$tmp/$name.err" | sed 's|.*http://||' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$tmp/$name.err"; echo "load-smoke: $name did not start"; exit 1; }
  timeout 60 target/release/ringcast-load --addr "$addr" --server "$name" --subscribers 300 --topics 5 \
    --events 3000 --inflight 16 --source-ips 3 --server-pid "$pid" --timeout-s 45 --json | tee "$tmp/$name.json"
  python3 - "$tmp/$name.json" "$name" <<'PY'
import json, sys
r, name = json.load(open(sys.argv[1])), sys.argv[2]
d, c = r["delivery"], r["connect"]
bad = {k: d[k] for k in ("lost", "duplicated", "reordered", "misrouted", "unfinished_subscribers", "publish_errors") if d[k]}
bad.update({"connect_errors": c["errors"]} if c["errors"] else {})
if bad or d["delivered"] != 300 * 3000 // 5:
    sys.exit(f"load-smoke: {name} FAILED {bad} delivered={d['delivered']}")
# Every subscriber held its connection until the publish phase was measured,
# then closed it (the closing is measured apart from the deliveries).
close_us = r["server"].get("cpu_us_per_close")
if c.get("closed_after_publish") != 300 or close_us is None:
    sys.exit(f"load-smoke: {name} FAILED closed_after_publish={c.get('closed_after_publish')} cpu/close={close_us}")
print(f"load-smoke: {name} ok ({d['delivered']} deliveries, {d['per_s']}/s, p99 {r['latency_ms']['p99']} ms, zero loss)")
PY
}

smoke ringcast target/release/ringcast --listen 127.0.0.1:0 --workers 2
smoke floor target/release/ringcast-floor --listen 127.0.0.1:0 --max-s 60
smoke floor_w5 target/release/ringcast-floor --listen 127.0.0.1:0 --max-s 60 --write-delay-ms 5
