#!/usr/bin/env bash
# Delayed grants cost (issue 12): server CPU per delivery for 10k subscribers
# reading in real time against 10k reading through the delayed view
# (`subscribe_delayed`, auth.delay_ms), same server, same feed, runs
# interleaved. The server runs on core 0 with one worker, the load
# generator on core 1. Bounded: each run stops by itself (--timeout-s).
#
#   scripts/delayed-bench.sh [repeats]      (default 3)
#
# Writes benches/results/auth/delayed.md (and the raw JSON lines beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
out=benches/results/auth
mkdir -p "$out"
cargo build --release --bin ringcast --bin ringcast-load >/dev/null
secret=bench-secret-0123456789abcdef0123456789
# HS256 with the standard library: header.claims.signature, base64url.
mint() {
  python3 - "$secret" "$1" <<'PY'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=")
claims = json.loads(sys.argv[2]); claims["exp"] = int(time.time()) + 3600
msg = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b(json.dumps(claims).encode())
print((msg + b"." + b(hmac.new(sys.argv[1].encode(), msg, hashlib.sha256).digest())).decode())
PY
}
realtime=$(mint '{"sub":"rt","subscribe":[">"]}')
delayed=$(mint '{"sub":"dl","subscribe_delayed":[">"]}')
publisher=$(mint '{"sub":"pub","publish":[">"]}')
results="$out/delayed.jsonl"
: >"$results"
port=18900
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT
for rep in $(seq "$reps"); do
  for kind in realtime delayed; do
    port=$((port + 1))
    RINGCAST_AUTH_HS256_SECRET=$secret RINGCAST_AUTH_DELAY_MS=1000 \
      taskset -c 0 target/release/ringcast --listen "127.0.0.1:$port" --workers 1 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    token=$realtime
    [ "$kind" = delayed ] && token=$delayed
    echo "== $kind (run $rep)"
    line=$(taskset -c 1 target/release/ringcast-load --addr "127.0.0.1:$port" --server-pid "$pid" \
      --server-core 0 --timeout-s 90 --json --subscribers 10000 --topics 1 --events 300 --inflight 16 \
      --sub-token "$token" --pub-token "$publisher" || echo '{}')
    echo "$line"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); d["kind"]=sys.argv[2]; d["rep"]=int(sys.argv[3]); print(json.dumps(d))' \
      "$line" "$kind" "$rep" >>"$results"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
python3 - "$results" "$out/delayed.md" <<'PY'
import json, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def get(r, key):
    # A figure of the grouped report, by its dotted path ("delivery.lost").
    for part in key.split("."):
        r = r.get(part) if isinstance(r, dict) else None
    return r
def med(kind, key):
    v = sorted(get(r, key) for r in rows if r.get("kind") == kind and isinstance(get(r, key), (int, float)))
    return v[len(v) // 2] if v else None
key = "server.cpu_us_per_delivery"
rt, dl = med("realtime", key), med("delayed", key)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
with open(sys.argv[2], "w") as f:
    f.write(f"# Delayed grants: CPU per delivery\n\ncommit `{commit}`; `scripts/delayed-bench.sh`; 10k subscribers, 1 topic, 300 events of 100 B, auth on (HS256), auth.delay_ms = 1000, one worker on core 0, load generator on core 1; medians of {len(rows)//2} interleaved runs each.\n\n")
    f.write("| view | server CPU µs / delivery (= s / 1M deliveries; each run) | median |\n|---|---|---|\n")
    for kind in ("realtime", "delayed"):
        each = ", ".join(f"{v:.2f}" if isinstance(v := get(r, key), (int, float)) else "–" for r in rows if r.get("kind") == kind)
        f.write(f"| {kind} | {each} | {med(kind, key):.2f} |\n")
    deliv = {k: med(k, "delivery.delivered") for k in ("realtime", "delayed")}
    lost = {k: med(k, "delivery.lost") for k in ("realtime", "delayed")}
    f.write(f"\nDeliveries per run (median): real-time {deliv['realtime']}, delayed {deliv['delayed']}; lost: {lost['realtime']}, {lost['delayed']}.\n")
    if rt and dl:
        f.write(f"\nDelayed / real-time: **{dl/rt:.2f}×** (target: at most 1.0×, within this machine's ±15% run-to-run noise).\n")
print(open(sys.argv[2]).read())
PY
