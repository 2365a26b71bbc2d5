#!/usr/bin/env bash
# Ingest cost, A/B between two server binaries (issue 11, item 5): one
# worker on core 0, ringcast-load on core 1, 8 publishing keep-alive
# connections sending ndjson batches (or single events) on 100 topics, one
# subscriber (on topic 0, so 1% of the events are delivered). Prints events
# per second and server CPU per event; every run is bounded (--timeout-s).
#
#   scripts/ingest-ab.sh OLD_BINARY NEW_BINARY [REPS] [BATCH ...]
set -u
cd "$(dirname "$0")/.."
old=$1 new=$2 reps=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
batches=("$@"); [ ${#batches[@]} -gt 0 ] || batches=(100 1000)
port=19500
for rep in $(seq "$reps"); do
  for bin in "$old" "$new"; do
    for b in "${batches[@]}"; do
      port=$((port + 1))
      events=1000000; [ "$b" = 1 ] && events=100000
      taskset -c 0 "$bin" --listen "127.0.0.1:$port" --workers 1 2>/dev/null &
      pid=$!
      for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
      taskset -c 1 target/release/ringcast-load --addr "127.0.0.1:$port" --server-pid "$pid" --server-core 0 \
        --timeout-s 60 --json --subscribers 1 --topics 100 --events "$events" --batch "$b" --inflight 8 |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); d=r["delivery"]; cpu=r["server"]["cpu_us_per_delivery"]*d["delivered"]/1e6
print(sys.argv[1], "batch", sys.argv[2], "events/s", round(d["published"]/r["run"]["publish_s"]), "server CPU us/event", round(cpu/d["published"]*1e6, 3), "events per server CPU-s", round(d["published"]/cpu), "lost", d["lost"])' "$bin" "$b"
      kill "$pid"; wait "$pid" 2>/dev/null
    done
  done
done
