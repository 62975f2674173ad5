#!/bin/bash
# Stream throughput without KVM: builds vmm and runs build/bench/stream-bench,
# which moves guest RAM (random, repeated, mixed, zero and
# never-touched pages) through the real page sender and receiver over
# loopback TCP, each mix over 1, 2 and 4 page streams (multifd-channels: one
# connection and receiving thread per stream), and prints, per page mix and
# number of streams, MiB/s against the loopback limit measured in the same
# run (plain send()/recv() of as many non-zero bytes over one connection,
# the denominator whatever the number of streams; also over as many parallel
# connections as streams), the CPU time vmm's run used per GiB against the
# limit run's, and for zero pages against memset/memcpy/read speed. Arguments go to stream-bench (--size 2G, --reps 3, --mix a,b,
# --streams 1,2,4, --fresh-dst; see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
exec build/bench/stream-bench "$@"
