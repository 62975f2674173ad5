#!/bin/bash
# Sets up this machine, builds vmm and runs every test: the unit tests (no KVM
# needed) and the KVM suite (inside the nested-KVM sandbox when this machine
# has no /dev/kvm). Ends with one line "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
bash scripts/build.sh || exit 1

out=build/test-summary.txt
meson test -C build --print-errorlogs --num-processes 2 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
count() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$out" | tail -1; }
ok=$(count Ok)
fail=$(( ${ok:+0} + $(count Fail || echo 0) + $(count Timeout || echo 0) + $(count 'Unexpected Pass' || echo 0) ))
skipped=$(count Skipped)
# A skipped test hides a failure here: none is allowed.
[ "${skipped:-0}" = 0 ] || { echo "tests: ${skipped} skipped, which is not allowed"; status=1; }
[ "${ok:-0}" -gt 0 ] || status=1
echo "tests: ${ok:-0} passed, ${fail} failed"
exit "$status"
