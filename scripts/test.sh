#!/bin/bash
# Sets up this machine, builds vmm and runs every test: the unit tests (no KVM
# needed) and the KVM suite (inside the nested-KVM sandbox when this machine
# has no /dev/kvm). Ends with one line "tests: N passed, N failed", counting
# each unit test program and each KVM test script.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
bash scripts/build.sh || exit 1

out=build/test-output.txt
meson test -C build --print-errorlogs --num-processes 2 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
log=build/meson-logs/testlog.txt

# Unit programs from meson's per-test lines; KVM scripts from the suite's own
# "kvm: N passed, M failed" line (the suite counts as one meson test).
# meson repeats failed tests under "Summary of Failures": count each once.
results=$(grep -E '^ *[0-9]+/[0-9]+ vmm:' "$out" | grep -v 'vmm:kvm ' | sed 's/^ *[0-9]*\/[0-9]* //' |
	awk '{ print $1, $2, $3, $4 }' | sort -u)
unit_ok=$(grep -cE ' OK$' <<<"$results" || true)
unit_fail=$(grep -cE ' (FAIL|TIMEOUT|ERROR)$' <<<"$results" || true)
kvm_line=$(grep -E '^kvm: [0-9]+ passed, [0-9]+ failed' "$log" 2>/dev/null | tail -1)
kvm_ok=$(sed -n 's/^kvm: \([0-9]*\) passed.*/\1/p' <<<"$kvm_line")
kvm_fail=$(sed -n 's/^kvm: [0-9]* passed, \([0-9]*\) failed.*/\1/p' <<<"$kvm_line")
if grep -qE 'vmm:kvm / kvm-suite +(FAIL|TIMEOUT|ERROR)' "$out" && [ "${kvm_fail:-0}" = 0 ]; then
	kvm_fail=1   # the suite failed before it could count
fi
if grep -qE '^Skipped: *[1-9]' "$out"; then
	echo "tests: a test was skipped, which is not allowed"
	status=1
fi
[ -n "$kvm_line" ] && echo "$kvm_line"
passed=$((unit_ok + ${kvm_ok:-0}))
failed=$((unit_fail + ${kvm_fail:-0}))
[ "$passed" -gt 0 ] || status=1
echo "tests: $passed passed, $failed failed"
exit "$status"
