#!/bin/bash
# run-suite.sh BUILD_DIR -- runs the KVM test suite: every test/kvm/t-*.sh, each under
# a timeout, output indented, then "PASS name" / "FAIL name", and finally one line
# "kvm: N passed, M failed". Exits non-zero if any test failed or none ran.
# Without a usable /dev/kvm (or with VMM_FORCE_SANDBOX=1) it re-runs itself inside ONE
# boot of test/sandbox/sandbox.sh (nested KVM under QEMU TCG) with VMM_IN_SANDBOX=1.
#
# Tests get: VMM=$BUILD/vmm, VMM_BUILD=$BUILD, VMM_SRC=<repo root>.
# Knobs: VMM_KVM_TESTS="t-boot-* t-qmp"  only tests whose name matches one of the globs
#        VMM_TEST_TIMEOUT=SECS           per-test bound (default 600)
#        VMM_SANDBOX_TIMEOUT=SECS        bound on the whole sandbox boot (default 3300)
# A test that exits 77 ("skipped") counts as FAILED: nothing may skip silently.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
SELF=$HERE/run-suite.sh

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "run-suite: no build dir '$1'" >&2; exit 1; }
[ -x "$BUILD/vmm" ] || { echo "run-suite: $BUILD/vmm is missing or not executable (build first)" >&2; exit 1; }

kvm_usable() {
	[ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null
}

if [ "${VMM_IN_SANDBOX:-0}" != 1 ]; then
	if [ "${VMM_FORCE_SANDBOX:-0}" = 1 ] || ! kvm_usable; then
		if [ "${VMM_FORCE_SANDBOX:-0}" = 1 ]; then why="VMM_FORCE_SANDBOX=1"; else why="no usable /dev/kvm here"; fi
		# The sandbox covers /tmp and /run with its own tmpfs: the build must be elsewhere.
		case $BUILD/ in /tmp/*|/run/*)
			echo "run-suite: build dir $BUILD is under /tmp or /run, which the sandbox cannot see" >&2
			exit 1 ;;
		esac
		echo "run-suite: $why; running the suite in the nested-KVM sandbox (one boot)"
		VMM_IN_SANDBOX=1 exec bash "$SRC/test/sandbox/sandbox.sh" \
			--timeout "${VMM_SANDBOX_TIMEOUT:-3300}" -- bash "$SELF" "$BUILD"
	fi
elif ! kvm_usable; then
	echo "run-suite: VMM_IN_SANDBOX=1 but /dev/kvm is not usable here" >&2
	echo "kvm: 0 passed, 1 failed"
	exit 1
fi

export VMM=$BUILD/vmm VMM_BUILD=$BUILD VMM_SRC=$SRC
TEST_TIMEOUT=${VMM_TEST_TIMEOUT:-600}

selected() {
	local name=$1 pat
	[ -z "${VMM_KVM_TESTS:-}" ] && return 0
	for pat in $VMM_KVM_TESTS; do
		# shellcheck disable=SC2254
		case $name in $pat|$pat.sh) return 0 ;; esac
	done
	return 1
}

passed=0 failed=0 failed_names=()
echo "kvm: $(uname -r), $(nproc) cpu(s), /dev/kvm ok${VMM_IN_SANDBOX:+, in sandbox}"
for t in "$HERE"/t-*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	selected "$name" || continue
	echo "--- $name"
	start=$SECONDS
	# timeout runs the test in its own process group and on expiry signals all of it.
	timeout -k 15 "$TEST_TIMEOUT" bash "$t" </dev/null 2>&1 | sed -u 's/^/    /'
	rc=${PIPESTATUS[0]}
	took=$((SECONDS - start))
	if [ "$rc" -eq 0 ]; then
		echo "    (${took}s)"
		echo "PASS $name"
		passed=$((passed + 1))
	else
		case $rc in
		124) why="timed out after ${TEST_TIMEOUT}s" ;;
		77) why="exit 77: the test skipped itself, which counts as a failure" ;;
		*) why="exit $rc" ;;
		esac
		echo "    ($why, ${took}s)"
		echo "FAIL $name"
		failed=$((failed + 1))
		failed_names+=("$name")
	fi
done

[ "$failed" -eq 0 ] || echo "kvm: failed: ${failed_names[*]}"
echo "kvm: $passed passed, $failed failed"
if [ $((passed + failed)) -eq 0 ]; then
	echo "run-suite: no test ran${VMM_KVM_TESTS:+ (VMM_KVM_TESTS=$VMM_KVM_TESTS)}" >&2
	exit 1
fi
[ "$failed" -eq 0 ]
