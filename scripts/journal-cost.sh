#!/usr/bin/env bash
# What the journal (history.dir) costs on ndjson ingest: ringcast with one
# worker on core 0, the load generator on core 1, 1,000,000 events in
# ndjson batches of 100 and 1,000 to one subscriber, with and without
# RINGCAST_HISTORY_DIR, three interleaved repeats. Prints the worker
# thread's and the journal thread's CPU per ingested event (µs, from
# /proc/PID/task/*/stat) and the events/s acknowledged.
# Usage: scripts/journal-cost.sh [ringcast binary]   (bounded: 60 s a run)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/ringcast}
cargo build --release --quiet -p ringcast-load
tick_us=$((1000000 / $(getconf CLK_TCK)))
port=19800
for rep in 1 2 3; do
  for mode in plain journal; do
    for batch in 100 1000; do
      port=$((port + 1)); dir=""
      if [ "$mode" = journal ]; then dir=$(mktemp -d); fi
      env ${dir:+RINGCAST_HISTORY_DIR=$dir} taskset -c 0 "$bin" --listen "127.0.0.1:$port" --workers 1 2>/dev/null & pid=$!
      for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
      report=$(taskset -c 1 target/release/ringcast-load --addr "127.0.0.1:$port" --timeout-s 60 --json \
        --subscribers 1 --topics 100 --events 1000000 --batch "$batch" --inflight 8)
      worker=0; journal=0
      for t in /proc/"$pid"/task/*; do
        ticks=$(awk '{print $14 + $15}' "$t/stat")
        case $(cat "$t/comm") in ringcast-w0) worker=$ticks ;; ringcast-journa*) journal=$ticks ;; esac
      done
      python3 - "$report" "$mode" "$batch" "$worker" "$journal" "$tick_us" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); mode, batch = sys.argv[2], sys.argv[3]
worker, journal, tick = (int(x) for x in sys.argv[4:7])
n = r["delivery"]["published"]
print(f"{mode:7} batch {batch:>4}: worker {worker * tick / n:.3f} µs/event, journal {journal * tick / n:.3f} µs/event, "
      f"{n / r['run']['publish_s']:.0f} events/s acknowledged")
PY
      kill "$pid"; wait "$pid" 2>/dev/null || true
      [ -z "$dir" ] || rm -rf "$dir"
    done
  done
done
