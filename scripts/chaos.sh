#!/usr/bin/env bash
# Chaos soak: faults at random against one node (history.dir) and a
# two-node cluster (nats-server), ~200 subscribers checking that they never
# miss an event without a resync. Prints a table; exits 1 on any silent gap
# or duplicate. Bounded: --minutes N (default 10) plus about 30 s.
#   scripts/chaos.sh --minutes 10 [--seed S] [--rate R] [--fault-every SECONDS]
# Needs target/release/ringcast (built here if missing), python3 and
# nats-server (apt-get install nats-server).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/release/ringcast ]; then
  cargo build --release --quiet --bin ringcast
fi
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || {
  echo "chaos: nats-server is not installed (apt-get install nats-server)" >&2
  exit 2
}
exec python3 scripts/chaos.py "$@"
