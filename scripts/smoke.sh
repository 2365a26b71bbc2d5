#!/usr/bin/env bash
# End-to-end smoke check with curl: start ringcast on an ephemeral port,
# subscribe on quotes.>, publish 100 events over one keep-alive connection,
# check all 100 arrive with strictly increasing ids, then SIGTERM and check
# the exit status. Bounded in time; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ringcast
[ -x "$bin" ] || cargo build --release --quiet
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

"$bin" --listen 127.0.0.1:0 --workers 2 2>"$tmp/err" &
server=$!
pids+=("$server")
for _ in $(seq 100); do
  port=$(grep -ao 'listening on http://127.0.0.1:[0-9]*' "$tmp/err" | grep -o '[0-9]*$' || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { cat "$tmp/err"; echo "smoke: server did not start"; exit 1; }
base="http://127.0.0.1:$port"

curl -sN "$base/events?topic=quotes.%3E" >"$tmp/stream" &
pids+=("$!")
for _ in $(seq 50); do grep -q '^retry:' "$tmp/stream" 2>/dev/null && break; sleep 0.1; done

args=()
for i in $(seq 100); do
  [ "$i" -gt 1 ] && args+=(--next)
  args+=(-s -o /dev/null -X POST "$base/publish?topic=quotes.NASDAQ.S$((i % 7))" --data-binary "tick $i")
done
curl "${args[@]}"

for _ in $(seq 100); do
  [ "$(grep -c '^id: ' "$tmp/stream")" -ge 100 ] && break
  sleep 0.1
done
n=$(grep -c '^id: ' "$tmp/stream" || true)
[ "$n" -eq 100 ] || { echo "smoke: got $n of 100 events"; exit 1; }
grep '^id: ' "$tmp/stream" | cut -d' ' -f2 | awk 'NR > 1 && $1 <= prev { bad = 1 } { prev = $1 } END { exit bad }' \
  || { echo "smoke: ids not strictly increasing"; exit 1; }

kill -TERM "$server"
status=0
wait "$server" || status=$?
[ "$status" -eq 0 ] || { echo "smoke: exit status $status after SIGTERM"; exit 1; }
echo "smoke: ok (100 events, ids increasing, clean shutdown)"
