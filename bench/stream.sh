#!/bin/bash
# Stream throughput without KVM: builds vmm and runs build/bench/stream-bench,
# which moves a memfd of guest RAM (random, repeated, mixed, zero and
# never-touched pages) through the real page sender and receiver over
# loopback TCP and prints, per page mix, MiB/s against the loopback limit
# (plain send()/recv() of as many non-zero bytes) measured in the same run,
# and for zero pages against memset/memcpy/read speed. Arguments go to
# stream-bench (--size 2G, --reps 3, --mix a,b, --fresh-dst; see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
exec build/bench/stream-bench "$@"
