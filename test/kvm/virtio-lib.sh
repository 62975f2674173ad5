# virtio-lib.sh -- shared helpers for test/kvm/t-virtio-*.sh (sourced, not run).
# Sets KERNEL, INITRD and WORK (on /work-visible disk when the caller gives
# VMM_TEST_DIR, else a tmpfs) and provides:
#   vm_run LOG TIMEOUT "GUEST-CMDS" VMM-ARGS...   boots the default guest with
#       (GUEST-CMDS: no double quotes; newlines become spaces, so end lines with ;)
#       vmm.run="GUEST-CMDS" and vmm.action=poweroff, serial to LOG; returns vmm's status
#   vm_start LOG "GUEST-CMDS" VMM-ARGS...   same, in the background (VM_PID)
#   wait_log LOG PATTERN SECS   waits until LOG has PATTERN
#   log_value LOG KEY   prints the value of the last "KEY=value" line in LOG
NAME=${NAME:?}
VMM=${VMM:?set VMM to the vmm binary}
VMM_BUILD=${VMM_BUILD:-$(dirname "$VMM")}
CPUS=${VMM_TEST_CPUS:-2}
BOOT_TIMEOUT=${VMM_BOOT_TIMEOUT:-300}

fail() { echo "$NAME: FAIL: $*" >&2; exit 1; }
skip() { echo "$NAME: SKIP: $*" >&2; exit 77; }
ok() { echo "$NAME: ok: $*"; }

[ -e /dev/kvm ] || skip "no /dev/kvm"
[ -x "$VMM" ] || fail "VMM=$VMM is not executable"
KERNEL=${VMM_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
INITRD=$VMM_BUILD/guest/initramfs.img
[ -r "$KERNEL" ] || fail "no readable kernel ($KERNEL)"
[ -r "$INITRD" ] || fail "no initramfs at $INITRD (build the guest target)"

WORK=$(mktemp -d "${VMM_TEST_DIR:-/run}/vmm-$NAME.XXXXXX" 2>/dev/null ||
	mktemp -d "${TMPDIR:-/tmp}/vmm-$NAME.XXXXXX")
VM_PID=
cleanup_vm() {
	if [ -n "$VM_PID" ]; then
		kill "$VM_PID" 2>/dev/null || true
		wait "$VM_PID" 2>/dev/null || true
	fi
	VM_PID=
}
cleanup_work() { [ -n "${VMM_TEST_KEEP:-}" ] || rm -rf "$WORK"; }
trap 'cleanup_vm; cleanup_work' EXIT

vm_run() {
	local log=$1 secs=$2 cmds
	cmds=$(printf '%s' "$3" | tr '\n' ' ')
	shift 3
	timeout "$secs" "$VMM" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
		--cpus "$CPUS" --serial stdio \
		--cmdline "console=ttyS0 quiet vmm.action=poweroff vmm.run=\"$cmds\"" "$@" \
		</dev/null >"$log" 2>&1
}

vm_start() {
	local log=$1 cmds
	cmds=$(printf '%s' "$2" | tr '\n' ' ')
	shift 2
	"$VMM" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --cpus "$CPUS" \
		--serial stdio \
		--cmdline "console=ttyS0 quiet vmm.action=poweroff vmm.run=\"$cmds\"" "$@" \
		</dev/null >"$log" 2>&1 &
	VM_PID=$!
}

wait_log() {
	local log=$1 pat=$2 secs=$3 i
	for ((i = 0; i < secs * 5; i++)); do
		grep -q -- "$pat" "$log" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

log_value() {
	tr -d '\r' <"$1" | sed -n "s/^$2=//p" | tail -n 1
}
