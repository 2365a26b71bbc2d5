#!/usr/bin/env bash
# A/B: server.sequencer thread vs worker, interleaved, ringcast only.
# usage: scripts/sequencer-ab.sh REPS NAME "WORKERS|RINGCAST-LOAD ARGS" [NAME SPEC ...]
# Appends JSON lines to $SEQ_AB_OUT (default benches/results/performance/sequencer.jsonl); every run is bounded by --timeout-s 90.
set -u
cd "$(dirname "$0")/.."
reps=$1; shift
out=${SEQ_AB_OUT:-benches/results/performance/sequencer.jsonl}
port=19100
while [ $# -gt 0 ]; do
  name=$1; spec=$2; shift 2
  IFS='|' read -r workers largs <<<"$spec"
  cores=$(seq -s, 0 $((workers - 1)))
  core="--server-core 0"; [ "$workers" = 1 ] || core=
  for rep in $(seq "$reps"); do
    for kind in thread worker; do
      port=$((port + 1))
      RINGCAST_SERVER_SEQUENCER=$kind taskset -c "$cores" target/release/ringcast --listen 127.0.0.1:$port --workers "$workers" 2>/dev/null &
      pid=$!
      for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
      line=$(taskset -c 1 target/release/ringcast-load --addr 127.0.0.1:$port --server-pid $pid $core --timeout-s 90 --json $largs || echo '{}')
      python3 -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); d["scenario"]=sys.argv[2]; d["kind"]=sys.argv[3]; d["rep"]=int(sys.argv[4]); print(json.dumps(d))' "$line" "$name" "$kind" "$rep" >> $out
      python3 -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); g=lambda g, k: d.get(g, {}).get(k); print(sys.argv[2], sys.argv[3], "cpu us/delivery", g("server", "cpu_us_per_delivery"), "dps", g("delivery", "per_s") or 0, "p50", g("latency_ms", "p50"), "p99", g("latency_ms", "p99"), "pub_s", g("run", "publish_s"), "lost", g("delivery", "lost"))' "$line" "$name" "$kind"
      kill $pid; wait $pid 2>/dev/null
    done
  done
done
