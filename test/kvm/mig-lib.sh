# Shared helpers for the migration KVM tests (sourced). Every wait is bounded.
# Expects VMM (the binary) and VMM_BUILD from run-suite.sh.
: "${VMM:?VMM must point at the vmm binary}" "${VMM_BUILD:?}"
GUEST=$VMM_BUILD/test/guest/test-guest
# Sockets must live on a local file system (not 9p): use a tmpfs dir.
T=$(mktemp -d /run/vmm-mig.XXXXXX 2>/dev/null || mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

# fail MESSAGE: says why, shows the end of each vmm's own output, exits 1.
fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/*.out; do
		[ -s "$f" ] && { echo "--- $(basename "$f"):"; tail -n 15 "$f"; } >&2
	done
	exit 1
}

# qmp NAME COMMAND [ARGS]: runs a QMP command on vmm NAME's socket.
qmp() { "$VMM" ctl --qmp "unix:$T/$1.sock" "${@:2}"; }

# wait_for FILE PATTERN SECONDS
wait_for() {
	for _ in $(seq 1 $(( $3 * 10 ))); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "timed out after $3 s waiting for '$2' in $1"
}

# start_vmm NAME ARGS...: starts vmm in the background with a QMP socket and
# the serial console in $T/NAME.log; its pid is in PID_<NAME>.
start_vmm() {
	local name=$1
	shift
	"$VMM" run --qmp "unix:$T/$name.sock" --serial "file:$T/$name.log" "$@" \
		>"$T/$name.out" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
	for _ in $(seq 1 100); do
		[ -S "$T/$name.sock" ] && return 0
		kill -0 "$!" 2>/dev/null || { cat "$T/$name.out"; fail "vmm $name exited at start"; }
		sleep 0.1
	done
	fail "vmm $name never opened its QMP socket"
}

# mig_status NAME: prints the status field of query-migrate.
mig_status() {
	local s
	s=$(qmp "$1" query-migrate | sed -n 's/^  "status": "\(.*\)",*$/\1/p')
	echo "${s:-none}"
}

# alive PID: true while PID runs (a zombie, dead but not yet waited for, is not).
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"; }

# wait_mig NAME SECONDS: waits until NAME's migration is no longer running;
# prints the final status.
wait_mig() {
	local s pid
	eval "pid=\${PID_$1:-}"
	for _ in $(seq 1 $(( $2 * 5 ))); do
		[ -z "$pid" ] || alive "$pid" || fail "vmm $1 died during the migration"
		s=$(mig_status "$1")
		case $s in completed|failed|cancelled) echo "$s"; return 0 ;; esac
		sleep 0.2
	done
	fail "migration on $1 still '$s' after $2 s"
}

# run_status NAME: prints query-status's status.
run_status() {
	qmp "$1" query-status | sed -n 's/^  "status": "\(.*\)",*$/\1/p'
}

# check_dirty_region NAME MIB: stops NAME and checks that the test guest's
# dirty=MIB region reads as one sweep (a run of k+1 then a run of k): a lost
# page write would break the pattern.
check_dirty_region() {
	qmp "$1" stop >/dev/null
	rm -f "$T/mem.bin"
	qmp "$1" pmemsave "{\"val\":16777216,\"size\":$(( $2 << 20 )),\"filename\":\"$T/mem.bin\"}" \
		>/dev/null || fail "pmemsave failed"
	python3 - "$T/mem.bin" <<'PY' || fail "guest memory is inconsistent after migration"
import sys
d = open(sys.argv[1], 'rb').read()
v = [d[i * 4096] for i in range(len(d) // 4096)]
i = 0
while i < len(v) and v[i] == v[0]:
    i += 1
j = i
while j < len(v) and v[j] == v[i]:
    j += 1
ok = j == len(v) and (i == len(v) or (v[0] - v[i]) % 256 == 1)
print(f"region: {len(v)} pages, {v[0]} x {i} then {v[i] if i < len(v) else '-'} x {j - i}:",
      "consistent" if ok else "INCONSISTENT")
sys.exit(0 if ok else 1)
PY
	qmp "$1" cont >/dev/null
}
