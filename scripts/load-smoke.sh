#!/usr/bin/env bash
# A small, fast run of the load generator against a fresh ringcast: a few
# hundred subscribers over several topics, a few thousand events with 16
# publishes in flight; fails unless every event reached every subscriber
# exactly once and in order. Bounded in time; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/ringcast ] && [ -x target/release/ringcast-load ] && [ -x target/release/ringcast-floor ] ||
  cargo build --release --quiet --bin ringcast --bin ringcast-load --bin ringcast-floor
tmp=$(mktemp -d)
server=""
floor=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; [ -n "$floor" ] && kill "$floor" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

target/release/ringcast --listen 127.0.0.1:0 --workers 2 2>"$tmp/err" &
server=$!
for _ in $(seq 100); do
  addr=$(grep -ao 'listening on http://127.0.0.1:[0-9]*' "$tmp/err" | sed 's|.*http://||' || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "${addr:-}" ] || { cat "$tmp/err"; echo "load-smoke: server did not start"; exit 1; }

timeout 60 target/release/ringcast-load --addr "$addr" --subscribers 300 --topics 5 \
  --events 3000 --inflight 16 --source-ips 3 --server-pid "$server" --timeout-s 45 --json | tee "$tmp/report.json"
python3 - "$tmp/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = {k: r[k] for k in ("lost", "duplicated", "reordered", "unfinished_subscribers", "connect_errors", "publish_errors") if r[k]}
if bad or r["delivered"] != 300 * 3000 // 5:
    sys.exit(f"load-smoke: FAILED {bad} delivered={r['delivered']}")
print(f"load-smoke: ok ({r['delivered']} deliveries, {r['deliveries_per_s']:.0f}/s, p99 {r['latency_p99_ms']} ms, zero loss)")
PY

# The same check against ringcast-floor (the plain-writev floor that
# scripts/compare.sh runs beside ringcast): its figures are only worth
# comparing if it delivers the same events exactly once and in order.
target/release/ringcast-floor --listen 127.0.0.1:0 --max-s 60 2>"$tmp/floor.err" &
floor=$!
faddr=""
for _ in $(seq 100); do
  faddr=$(grep -ao 'listening on http://127.0.0.1:[0-9]*' "$tmp/floor.err" | sed 's|.*http://||' || true)
  [ -n "$faddr" ] && break
  sleep 0.1
done
[ -n "$faddr" ] || { cat "$tmp/floor.err"; echo "load-smoke: ringcast-floor did not start"; exit 1; }
timeout 60 target/release/ringcast-load --addr "$faddr" --server floor --subscribers 300 --topics 5 \
  --events 3000 --inflight 16 --source-ips 3 --server-pid "$floor" --timeout-s 45 --json >"$tmp/floor.json"
python3 - "$tmp/floor.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = {k: r[k] for k in ("lost", "duplicated", "reordered", "misrouted", "unfinished_subscribers", "connect_errors", "publish_errors") if r[k]}
if bad or r["delivered"] != 300 * 3000 // 5:
    sys.exit(f"load-smoke: ringcast-floor FAILED {bad} delivered={r['delivered']}")
print(f"load-smoke: ringcast-floor ok ({r['delivered']} deliveries, zero loss)")
PY
