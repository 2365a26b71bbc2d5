#!/usr/bin/env bash
# End-to-end smoke test with curl: start ringcast on an ephemeral port,
# subscribe on quotes.>, publish 100 events over one keep-alive connection,
# check that all 100 arrive in publish order with strictly increasing ids,
# then SIGTERM the server and check it exits 0. Prints "smoke: ok" or
# "smoke: FAIL ..." (exit 1). Every wait is bounded (about a minute in all,
# plus a release build when target/release/ringcast is missing). Cleans up
# its processes and temporary files on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/ringcast
tmp=$(mktemp -d)
server="" sub=""

cleanup() {
  for p in $sub $server; do
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "smoke: FAIL: $*" >&2
  if [ -s "$tmp/err" ]; then
    echo "--- server stderr (last 20 lines)" >&2
    tail -n 20 "$tmp/err" >&2
  fi
  exit 1
}

if [ ! -x "$bin" ]; then
  echo "smoke: building $bin"
  timeout 20m cargo build --release
fi

# 1. Start the server on a free port; read the port from its log line.
"$bin" --listen 127.0.0.1:0 2>"$tmp/err" &
server=$!
port=""
for _ in $(seq 100); do # up to 10 s
  port=$(grep -ao 'listening on http://127\.0\.0\.1:[0-9]*' "$tmp/err" | head -n1 | sed 's/.*://' || true)
  [ -n "$port" ] && break
  kill -0 "$server" 2>/dev/null || fail "server exited during start-up"
  sleep 0.1
done
[ -n "$port" ] || fail "no 'listening on' line within 10 s"
base="http://127.0.0.1:$port"
echo "smoke: server pid $server on $base"

# 2. One subscriber on quotes.> (">" is %3E in a URL). The "retry:" line
#    arrives once the subscription is registered; publish only after it.
curl -sN --max-time 60 "$base/events?topic=quotes.%3E" >"$tmp/stream" &
sub=$!
for _ in $(seq 50); do # up to 5 s
  grep -q '^retry:' "$tmp/stream" 2>/dev/null && break
  sleep 0.1
done
grep -q '^retry:' "$tmp/stream" || fail "subscriber got no 'retry:' line within 5 s"

# 3. Publish 100 events with one curl: --next starts a new request that
#    reuses the same keep-alive connection. Each prints its status code.
args=()
for i in $(seq 100); do
  [ "$i" -gt 1 ] && args+=(--next)
  args+=(-s -o /dev/null -w '%{http_code}\n'
    "$base/publish?topic=quotes.SMOKE.S$((i % 7))&event=tick"
    --data-binary "tick $i")
done
curl --max-time 30 "${args[@]}" >"$tmp/codes" || fail "publishing curl failed (exit $?)"
ok=$(grep -c '^200$' "$tmp/codes" || true)
[ "$ok" -eq 100 ] || fail "$ok of 100 publishes answered 200: $(sort "$tmp/codes" | uniq -c | tr '\n' ' ')"

# 4. Wait until all 100 events arrived.
n=0
for _ in $(seq 100); do # up to 10 s
  n=$(grep -c '^id: ' "$tmp/stream" || true)
  [ "$n" -ge 100 ] && break
  sleep 0.1
done
[ "$n" -eq 100 ] || fail "subscriber got $n of 100 events within 10 s"

# 5. Ids strictly increasing (compared as decimal strings: longer is
#    larger, then lexicographic, so no precision limit), and the data in
#    publish order.
sed -n 's/^id: //p' "$tmp/stream" | awk '
  NR > 1 && !(length($0) > length(prev) || (length($0) == length(prev) && ($0 "") > (prev ""))) {
    print "id " $0 " after " prev; bad = 1
  }
  { prev = $0 }
  END { exit bad }' >"$tmp/order" || fail "ids not strictly increasing: $(head -n3 "$tmp/order")"
[ "$(sed -n 's/^data: //p' "$tmp/stream")" = "$(seq -f 'tick %g' 100)" ] \
  || fail "event data missing or out of publish order"

# 6. SIGTERM: the server drains and must exit 0 within 20 s (its default
#    server.shutdown_timeout_ms is 10 s). An exited child stays a zombie
#    (state Z) until waited for, so poll its state, then collect the status.
kill -TERM "$server"
for _ in $(seq 200); do # up to 20 s
  state=$(sed 's/.*) //' "/proc/$server/stat" 2>/dev/null | cut -d' ' -f1 || true)
  [ -z "$state" ] || [ "$state" = Z ] && break
  sleep 0.1
done
[ -z "$state" ] || [ "$state" = Z ] || fail "server still running 20 s after SIGTERM"
status=0
wait "$server" || status=$?
server=""
[ "$status" -eq 0 ] || fail "exit status $status after SIGTERM"

echo "smoke: ok (100 events, ids strictly increasing, exit 0 after SIGTERM)"
