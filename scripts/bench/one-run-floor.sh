#!/usr/bin/env bash
# one-run-floor.sh WINDOW "LOADARGS": the same against ringcast-floor --write-delay-ms WINDOW
# (frames per write from the counts it prints on stderr, less the 10,000 response heads).
win=$1; largs=$2
cd "$(dirname "$0")/../.." && ulimit -n 20000
P=$((19000 + RANDOM % 900))
taskset -c 0 target/release/ringcast-floor --listen 127.0.0.1:$P --max-s 200 --write-delay-ms $win 2>"${TMPDIR:-/tmp}/floor.err" & pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
out=$(taskset -c 1 target/release/ringcast-load --addr 127.0.0.1:$P --server floor --server-pid $pid --server-core 0 --timeout-s 90 --json $largs)
kill $pid; wait $pid 2>/dev/null
python3 - "$out" "$(tail -1 "${TMPDIR:-/tmp}/floor.err")" "$win" <<'PY'
import json,sys,re
d=json.loads(sys.argv[1]); x=re.search(r'writes (\d+) frames (\d+)',sys.argv[2])
w,f=int(x.group(1)),int(x.group(2))
print(f"       floor w{sys.argv[3]} dps={d['delivery']['per_s']:.0f} cpu1M={d['server']['cpu_us_per_delivery']:.2f} p50={d['latency_ms']['p50']:.1f} p99={d['latency_ms']['p99']:.1f} frames/write={(f-10000)/max(w-10000,1):.2f} lost={d['delivery']['lost']} srv={d['server']['cores_busy']['publish']:.2f} gen={d['loadgen']['cores_busy']['publish']:.2f}")
PY
