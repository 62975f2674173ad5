#!/bin/bash
# t-qmp.sh -- the QMP control socket against a running default guest: boots
# `$VMM run` with --qmp on a tmpfs socket, waits for "VMM-GUEST: ready", then runs
# test/kvm/qmp-client.py (every command and error class, malformed/oversized/
# flooding/vanishing clients, two concurrent clients, stop/cont with events),
# exercises `vmm ctl` (one-shot and shell), and ends with system_powerdown: both
# clients must see SHUTDOWN and vmm must exit 0 and remove its socket.
#
# Environment: VMM (the binary, required), VMM_BUILD (build dir; default: VMM's
# dir), VMM_KERNEL (default: newest /boot/vmlinuz-*), VMM_TEST_CPUS (default 2).
# Exit: 0 pass, 1 fail, 77 skipped (no /dev/kvm).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VMM=${VMM:?set VMM to the vmm binary}
VMM_BUILD=${VMM_BUILD:-$(dirname "$VMM")}
CPUS=${VMM_TEST_CPUS:-2}
BOOT_TIMEOUT=${VMM_BOOT_TIMEOUT:-300}
PY=$(command -v python3 || true)

fail() { echo "t-qmp: FAIL: $*" >&2; exit 1; }
skip() { echo "t-qmp: SKIP: $*" >&2; exit 77; }

[ -e /dev/kvm ] || skip "no /dev/kvm"
[ -x "$VMM" ] || fail "VMM=$VMM is not executable"
[ -n "$PY" ] || fail "python3 not found"
KERNEL=${VMM_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
INITRD=$VMM_BUILD/guest/initramfs.img
[ -r "$KERNEL" ] || fail "no readable kernel ($KERNEL)"
[ -r "$INITRD" ] || fail "no initramfs at $INITRD (build the guest target)"

# Unix sockets cannot live on the sandbox's 9p share: use a tmpfs.
WORK=$(mktemp -d /run/vmm-t-qmp.XXXXXX 2>/dev/null ||
	mktemp -d /dev/shm/vmm-t-qmp.XXXXXX 2>/dev/null ||
	mktemp -d "${TMPDIR:-/tmp}/vmm-t-qmp.XXXXXX")
SOCK=$WORK/qmp.sock
LOG=$WORK/serial.log
VMM_PID=
PASSED=0

cleanup() {
	if [ -n "$VMM_PID" ] && kill -0 "$VMM_PID" 2>/dev/null; then
		kill "$VMM_PID" 2>/dev/null || true
		sleep 1
		kill -9 "$VMM_PID" 2>/dev/null || true
	fi
	if [ "$PASSED" != 1 ] && [ -f "$LOG" ]; then
		echo "t-qmp: --- last lines of the guest console ---" >&2
		tail -n 30 "$LOG" >&2 || true
		[ -f "$WORK/vmm.err" ] && { echo "t-qmp: --- vmm stderr ---" >&2; tail -n 20 "$WORK/vmm.err" >&2; }
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

ctl() { "$VMM" ctl --qmp "unix:$SOCK" "$@"; }

# --- boot ---------------------------------------------------------------------
"$VMM" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline "console=ttyS0" \
	--memory 256M --cpus "$CPUS" --serial "file:$LOG" --qmp "unix:$SOCK" \
	2>"$WORK/vmm.err" &
VMM_PID=$!

for ((i = 0; i < BOOT_TIMEOUT * 2; i++)); do
	grep -q "VMM-GUEST: ready" "$LOG" 2>/dev/null && break
	kill -0 "$VMM_PID" 2>/dev/null || fail "vmm exited before the guest was ready"
	sleep 0.5
done
grep -q "VMM-GUEST: ready" "$LOG" || fail "guest not ready within ${BOOT_TIMEOUT}s"
echo "t-qmp: guest ready"

[ -S "$SOCK" ] || fail "no socket at $SOCK"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "socket mode is $(stat -c %a "$SOCK"), want 600"
echo "ok: socket mode 0600"

# A second vmm on the same live socket must refuse and leave the socket alone.
if timeout 120 "$VMM" run --kernel "$KERNEL" --initrd "$INITRD" --memory 64M \
	--serial none --qmp "unix:$SOCK" >/dev/null 2>"$WORK/second.err"; then
	fail "a second vmm started on a live QMP socket"
fi
[ -S "$SOCK" ] || fail "the refused second vmm removed the live socket"
echo "ok: second vmm refused ($(head -n 1 "$WORK/second.err"))"

# --- protocol scenario ------------------------------------------------------------
"$PY" "$HERE/qmp-client.py" "$SOCK" scenario --cpus "$CPUS" || fail "QMP scenario"
kill -0 "$VMM_PID" 2>/dev/null || fail "vmm died during the QMP scenario"

# --- vmm ctl ------------------------------------------------------------------------
out=$(ctl query-status) || fail "vmm ctl query-status exited $?"
grep -q '"status": "running"' <<<"$out" || fail "vmm ctl query-status printed: $out"
echo "ok: vmm ctl query-status"
ctl stop >/dev/null || fail "vmm ctl stop"
grep -q '"paused"' <<<"$(ctl query-status)" || fail "not paused after vmm ctl stop"
ctl cont >/dev/null || fail "vmm ctl cont"
grep -q '"running"' <<<"$(ctl query-status)" || fail "not running after vmm ctl cont"
echo "ok: vmm ctl stop/cont"
rc=0; ctl no-such-command >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "vmm ctl on an error reply exited $rc, want 1"
rc=0; ctl query-status '{"bogus": 1}' >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "vmm ctl with a bad argument exited $rc, want 1"
rc=0; ctl query-status '[not json' >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "vmm ctl accepted malformed ARGS-JSON"
rc=0; "$VMM" ctl --qmp "unix:$WORK/nonexistent" query-status >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "vmm ctl on a missing socket exited 0"
echo "ok: vmm ctl exit statuses"
out=$(printf 'query-status\nno-such-command\nquery-cpus-fast {}\n' | ctl) ||
	fail "vmm ctl shell exited $?"
grep -q '"status"' <<<"$out" && grep -q 'CommandNotFound' <<<"$out" &&
	grep -q '"cpu-index"' <<<"$out" || fail "vmm ctl shell printed: $out"
echo "ok: vmm ctl shell"

# --- clean shutdown through the ACPI power button -------------------------------------
"$PY" "$HERE/qmp-client.py" "$SOCK" powerdown || fail "system_powerdown"
status=0
for ((i = 0; i < 240; i++)); do
	kill -0 "$VMM_PID" 2>/dev/null || break
	sleep 0.5
done
kill -0 "$VMM_PID" 2>/dev/null && fail "vmm still running 120s after SHUTDOWN"
wait "$VMM_PID" || status=$?
VMM_PID=
[ "$status" = 0 ] || fail "vmm exited $status after system_powerdown, want 0"
[ -e "$SOCK" ] && fail "vmm left its socket behind"
grep -q "power button pressed" "$LOG" || echo "t-qmp: note: the guest did not log the button press"
echo "ok: vmm exited 0 after system_powerdown and removed its socket"
PASSED=1
echo "t-qmp: PASS"
