#!/bin/bash
# run-suite.sh BUILD_DIR -- runs the KVM test suite: every test/kvm/t-*.sh, each under
# a timeout, output indented, then "PASS name" / "FAIL name", and finally one line
# "kvm: N passed, M failed". Exits non-zero if any test failed or none ran.
# Without a usable /dev/kvm (or with VMM_FORCE_SANDBOX=1) it re-runs itself inside ONE
# boot of test/sandbox/sandbox.sh (nested KVM under QEMU TCG) with VMM_IN_SANDBOX=1.
# Should that boot die or wedge mid-suite (nested KVM under TCG occasionally wedges),
# the remaining tests continue in a fresh boot; the interrupted test is retried, twice at
# most. A wedge is the sandbox's own: its init prints a heartbeat every 20 s whatever the
# tests do, so a hung test or guest times out and fails; it cannot pass for a wedge.
#
# Tests get: VMM=$BUILD/vmm, VMM_BUILD=$BUILD, VMM_SRC=<repo root>.
# Knobs: VMM_KVM_TESTS="t-boot-* t-qmp"  only tests whose name matches one of the globs
#        VMM_TEST_TIMEOUT=SECS           per-test bound (default 600)
#        VMM_SANDBOX_TIMEOUT=SECS        bound on all sandbox boots together (default 3300)
#        VMM_SANDBOX_BOOTS=N             at most N sandbox boots (default 5: one CI run
#                                        once saw three wedges)
#        SANDBOX_STALL=SECS              a boot silent this long is wedged (default 120:
#                                        its heartbeat comes every 20 s, and the whole
#                                        suite's longest silence measured 15 s)
# A failed test's last lines are printed again at the end, where meson's cut log keeps them.
# A test that exits 77 ("skipped") counts as FAILED: nothing may skip silently.

# One { ...; } group: bash reads it whole, so editing this file can't upset a running suite.
{
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

selected() {
	local name=$1 pat
	[ -z "${VMM_KVM_TESTS:-}" ] && return 0
	for pat in $VMM_KVM_TESTS; do
		# shellcheck disable=SC2254
		case $name in $pat|$pat.sh) return 0 ;; esac
	done
	return 1
}

TESTS=()
for t in "$HERE"/t-*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	selected "$name" && TESTS+=("$name")
done
if [ "${#TESTS[@]}" -eq 0 ]; then
	echo "kvm: 0 passed, 0 failed"
	echo "run-suite: no test to run${VMM_KVM_TESTS:+ (VMM_KVM_TESTS=$VMM_KVM_TESTS)}" >&2
	exit 1
fi

summary() {  # passed failed failed-names...
	local p=$1 f=$2
	shift 2
	[ "$f" -eq 0 ] || echo "kvm: failed: $*"
	echo "kvm: $p passed, $f failed"
	[ $((p + f)) -gt 0 ] && [ "$f" -eq 0 ]
}

# --- outside the sandbox: boot it (again, if a boot dies mid-suite) -----------------
if [ "${VMM_IN_SANDBOX:-0}" != 1 ] && { [ "${VMM_FORCE_SANDBOX:-0}" = 1 ] || ! kvm_usable; }; then
	if [ "${VMM_FORCE_SANDBOX:-0}" = 1 ]; then why="VMM_FORCE_SANDBOX=1"; else why="no usable /dev/kvm here"; fi
	# The sandbox covers /tmp and /run with its own tmpfs: the build must be elsewhere.
	case $BUILD/ in /tmp/*|/run/*)
		echo "run-suite: build dir $BUILD is under /tmp or /run, which the sandbox cannot see" >&2
		exit 1 ;;
	esac
	echo "run-suite: $why; running the suite in the nested-KVM sandbox (one boot)"
	deadline=$((SECONDS + ${VMM_SANDBOX_TIMEOUT:-3300}))
	max_boots=${VMM_SANDBOX_BOOTS:-5}
	declare -A cut=()	# how often each test's boot ended under it
	remaining=("${TESTS[@]}") passed=0 failed=0 failed_names=() boots=0
	RECAP_LINES=80
	LOG=$(mktemp "${TMPDIR:-/tmp}/vmm-run-suite.XXXXXX") RECAPS=$(mktemp "${TMPDIR:-/tmp}/vmm-run-suite.XXXXXX")
	trap 'rm -f "$LOG" "$RECAPS"' EXIT
	trap 'echo "run-suite: interrupted" >&2; exit 130' INT
	trap 'echo "run-suite: terminated" >&2; exit 143' TERM
	while [ "${#remaining[@]}" -gt 0 ]; do
		left=$((deadline - SECONDS))
		if [ "$boots" -ge "$max_boots" ] || [ "$left" -lt 60 ]; then
			echo "run-suite: giving up after $boots sandbox boot(s); not run: ${remaining[*]}"
			failed=$((failed + ${#remaining[@]})); failed_names+=("${remaining[@]}")
			break
		fi
		boots=$((boots + 1))
		VMM_IN_SANDBOX=1 VMM_SUITE_INNER=1 VMM_KVM_TESTS="${remaining[*]}" \
			SANDBOX_STALL=${SANDBOX_STALL:-120} bash "$SRC/test/sandbox/sandbox.sh" --timeout "$left" -- bash "$SELF" "$BUILD" |
			tee "$LOG"
		src=${PIPESTATUS[0]}
		case $src in 129|130|143) echo "run-suite: sandbox stopped by a signal" >&2; exit "$src" ;; esac
		# Account for every test this boot was given.
		next=() progress=0
		for name in "${remaining[@]}"; do
			if grep -qx "PASS $name" "$LOG"; then
				passed=$((passed + 1)); progress=1
			elif grep -qx "FAIL $name" "$LOG"; then
				failed=$((failed + 1)); failed_names+=("$name"); progress=1
				{ echo "=== $name, its last $RECAP_LINES lines:"
				  sed -n "/^--- $name\$/,/^FAIL $name\$/p" "$LOG" | tail -n "$RECAP_LINES"; } >>"$RECAPS"
			elif grep -qx -- "--- $name" "$LOG"; then
				progress=1
				echo "FAIL-INTERRUPTED $name: the sandbox boot ended (exit $src) while it ran"
				cut[$name]=$((${cut[$name]:-0} + 1))
				if [ "${cut[$name]}" -gt 2 ]; then
					echo "FAIL $name"
					failed=$((failed + 1)); failed_names+=("$name")
				else
					next+=("$name")
				fi
			else
				next+=("$name")
			fi
		done
		remaining=("${next[@]}")
		[ "${#remaining[@]}" -eq 0 ] && break
		if [ "$progress" = 0 ] || grep -q '^kvm-inner: ' "$LOG"; then
			# Nothing started, or the inner run finished without running these: no retry.
			echo "run-suite: the sandbox (exit $src) did not run: ${remaining[*]}"
			failed=$((failed + ${#remaining[@]})); failed_names+=("${remaining[@]}")
			break
		fi
		echo "run-suite: sandbox boot $boots ended early (exit $src); ${#remaining[@]} test(s) left, booting a fresh sandbox"
	done
	if [ -s "$RECAPS" ]; then
		echo "kvm: the failed tests' output again"
		sed 's/^/    /' "$RECAPS"
	fi
	summary "$passed" "$failed" "${failed_names[@]}"
	exit
fi

# --- with /dev/kvm: run the tests here -------------------------------------------------
if [ "${VMM_IN_SANDBOX:-0}" = 1 ] && ! kvm_usable; then
	echo "run-suite: VMM_IN_SANDBOX=1 but /dev/kvm is not usable here" >&2
	echo "kvm: 0 passed, 1 failed"
	exit 1
fi

export VMM=$BUILD/vmm VMM_BUILD=$BUILD VMM_SRC=$SRC
TEST_TIMEOUT=${VMM_TEST_TIMEOUT:-600}

# A failed test's output is printed again at the end: meson shows only the last
# 100 lines of the suite's log, and that is where CI readers look. (Inside a
# sandbox boot the outer run does it, boots that died included.)
RECAP=$(mktemp "${TMPDIR:-/tmp}/vmm-kvm-recap.XXXXXX") RECAP_LINES=80
trap 'rm -f "$RECAP"' EXIT
passed=0 failed=0 failed_names=()
echo "kvm: $(uname -r), $(nproc) cpu(s), /dev/kvm ok${VMM_IN_SANDBOX:+, in sandbox}"
for name in "${TESTS[@]}"; do
	echo "--- $name"
	start=$SECONDS
	# timeout runs the test in its own process group (its pid is the group's id)
	# and on expiry signals all of it. The output goes through a file, followed
	# while the test runs, so a leftover background job cannot hold the suite's
	# pipe open; whatever the test left running is killed with its group.
	log=$(mktemp "${TMPDIR:-/tmp}/vmm-kvm-$name.XXXXXX")
	timeout -k 15 "$TEST_TIMEOUT" bash "$HERE/$name.sh" </dev/null >"$log" 2>&1 &
	tpid=$!
	tail -n +1 -s 0.5 -f --pid="$tpid" "$log" | sed -u 's/^/    /'
	wait "$tpid"
	rc=$?
	kill -9 -- "-$tpid" 2>/dev/null
	[ "$rc" -eq 0 ] || { echo "=== $name (exit $rc), its last $RECAP_LINES lines:"; tail -n "$RECAP_LINES" "$log"; } >>"$RECAP"
	rm -f "$log"
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

if [ -s "$RECAP" ] && [ "${VMM_SUITE_INNER:-0}" != 1 ]; then
	echo "kvm: the failed tests' output again"
	sed 's/^/    /' "$RECAP"
fi
if [ "${VMM_SUITE_INNER:-0}" = 1 ]; then
	# Inside a sandbox boot started by run-suite.sh: the outer run prints the summary.
	echo "kvm-inner: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
fi
summary "$passed" "$failed" "${failed_names[@]}"
exit
}
