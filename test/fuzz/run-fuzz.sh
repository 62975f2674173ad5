#!/bin/bash
# run-fuzz.sh NAME SECONDS [LIBFUZZER-ARGS...] -- builds the libFuzzer target
# test/fuzz/fuzz_NAME.c with clang (-fsanitize=fuzzer,address,undefined) together
# with the sources listed for NAME below, and runs it for SECONDS. Seeds come from
# test/fuzz/corpus/NAME/ and a dictionary from test/fuzz/fuzz_NAME.dict when they
# exist; the growing corpus and any crash artifacts go to $FUZZ_OUT (default
# build-fuzz/NAME). Exit status: 0 when no crash was found, else libFuzzer's.
# Adding a target: write fuzz_NAME.c and add one line to SRCS (and LIBS if needed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)

declare -A SRCS=(
	[qmp]="src/vmm/qmp.c src/vmm/qmp_cmd.c src/vmm/loop.c src/vmm/log.c"
	[virtq]="src/devices/virtqueue.c src/devices/virtio_pci.c src/devices/virtio_blk.c src/devices/virtio_net.c src/devices/virtio_rng.c src/devices/pci.c src/devices/bus.c src/vmm/irq.c src/vmm/mem.c src/vmm/log.c src/vmm/privilege.c src/migrate/vmstate.c src/migrate/stream.c src/migrate/stream_simd.c"
)
declare -A LIBS=(
	[qmp]="-ljson-c -lpthread"
	[virtq]="-luring -lpthread -lseccomp -lcap-ng"
)

die() { echo "run-fuzz: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: $0 NAME SECONDS [LIBFUZZER-ARGS...] (targets: ${!SRCS[*]})"
NAME=$1
SECS=$2
shift 2
[ -n "${SRCS[$NAME]+x}" ] || die "unknown target '$NAME' (targets: ${!SRCS[*]})"
case $SECS in ''|*[!0-9]*) die "SECONDS must be a whole number" ;; esac
CC=${CC_FUZZ:-clang}
command -v "$CC" >/dev/null || die "$CC not found (install clang)"

OUT=${FUZZ_OUT:-$ROOT/build-fuzz/$NAME}
mkdir -p "$OUT/corpus" "$OUT/artifacts"
BIN=$OUT/fuzz_$NAME
VERSION=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$ROOT/meson.build" | head -n 1)

srcs=()
for s in ${SRCS[$NAME]}; do
	srcs+=("$ROOT/$s")
done
# shellcheck disable=SC2086 # LIBS holds several words on purpose
"$CC" -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-D_GNU_SOURCE -DVMM_VERSION="\"${VERSION:-0.0.0}\"" -I"$ROOT/include" \
	-Wall -Wno-unused-parameter \
	"$ROOT/test/fuzz/fuzz_$NAME.c" "${srcs[@]}" ${LIBS[$NAME]:-} -o "$BIN"

args=(-max_total_time="$SECS" -timeout=20 -artifact_prefix="$OUT/artifacts/" -print_final_stats=1)
[ -f "$ROOT/test/fuzz/fuzz_$NAME.dict" ] && args+=(-dict="$ROOT/test/fuzz/fuzz_$NAME.dict")
seeds=()
[ -d "$ROOT/test/fuzz/corpus/$NAME" ] && seeds+=("$ROOT/test/fuzz/corpus/$NAME")
echo "run-fuzz: running $BIN for ${SECS}s" >&2
"$BIN" "${args[@]}" "$@" "$OUT/corpus" "${seeds[@]}"
