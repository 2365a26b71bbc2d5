#!/usr/bin/env bash
# one-run-ringcast.sh BIN WINDOW "LOADARGS": one run against a ringcast binary with
# sse.write_delay_ms = WINDOW; prints deliveries/s, CPU per delivery, latency, the mean
# age of a held write at submission and frames per write (from /metrics).
bin=$1; win=$2; largs=$3
cd "$(dirname "$0")/../.." && ulimit -n 20000
P=$((19000 + RANDOM % 900))
RINGCAST_SSE_WRITE_DELAY_MS=$win taskset -c 0 $bin --listen 127.0.0.1:$P --workers 1 2>/dev/null & pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
out=$(taskset -c 1 target/release/ringcast-load --addr 127.0.0.1:$P --server ringcast --server-pid $pid --server-core 0 --timeout-s 90 --json $largs)
m=$(curl -s 127.0.0.1:$P/metrics)
kill $pid; wait $pid 2>/dev/null
python3 - "$out" "$m" "$bin" "$win" <<'PY'
import json,sys,re
d=json.loads(sys.argv[1]); m=sys.argv[2]
def g(pat):
    x=re.search(pat+r' ([0-9.e+-]+)',m); return float(x.group(1)) if x else float('nan')
ws=g(r'ringcast_stage_seconds_sum\{stage="write_submitted"\}'); wc=g(r'ringcast_stage_seconds_count\{stage="write_submitted"\}')
fr=g('ringcast_frames_delivered_total')
print(f"{sys.argv[3][-12:]:>12} w{sys.argv[4]} dps={d['delivery']['per_s']:.0f} cpu1M={d['server']['cpu_us_per_delivery']:.2f} p50={d['latency_ms']['p50']:.1f} p99={d['latency_ms']['p99']:.1f} ws_mean={1000*ws/max(wc,1):.2f}ms frames/fresh_write={fr/max(wc,1):.2f} lost={d['delivery']['lost']} srv={d['server']['cores_busy']['publish']:.2f} gen={d['loadgen']['cores_busy']['publish']:.2f}")
PY
