# boot-lib.sh -- shared helpers for the boot tests test/kvm/t-boot-*.sh, t-reboot.sh,
# t-bad-kernel.sh (sourced, not run). Sets KERNEL (VMM_KERNEL or the newest
# /boot/vmlinuz-*), INITRD ($VMM_BUILD/guest/initramfs.img, generated with
# guest/mkinitramfs.sh when absent or older than the script) and WORK (a temp dir,
# removed on exit unless VMM_TEST_KEEP is set), and provides:
#   boot_vmm LOG CMDLINE VMM-ARGS...  runs `vmm run` with the default guest, serial to
#       file:LOG, bounded by VMM_BOOT_TIMEOUT (default 300 s); sets RC, OUT, ERR.
#   expect_ready LOG CPUS  fails unless LOG has "VMM-GUEST: ready cpus=CPUS".
#   fail MSG  prints "NAME: FAIL: MSG" (plus the logs of the last boot) and exits 1.
NAME=${NAME:?set NAME before sourcing boot-lib.sh}
VMM=${VMM:?set VMM to the vmm binary (run via test/kvm/run-suite.sh BUILD)}
VMM_BUILD=${VMM_BUILD:-$(dirname "$VMM")}
VMM_SRC=${VMM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BOOT_TIMEOUT=${VMM_BOOT_TIMEOUT:-300}

OUT= ERR= RC= LASTLOG=
fail() {
	echo "$NAME: FAIL: $*" >&2
	if [ -n "$LASTLOG" ]; then
		[ -s "$ERR" ] && { echo "--- vmm stderr:"; sed 's/^/| /' "$ERR"; } >&2
		[ -s "$OUT" ] && { echo "--- vmm stdout (last 20 lines):"; tail -n 20 "$OUT" | sed 's/^/| /'; } >&2
		[ -s "$LASTLOG" ] && { echo "--- guest serial (last 40 lines):"; tail -n 40 "$LASTLOG" | tr -d '\r' | sed 's/^/| /'; } >&2
	fi
	exit 1
}
ok() { echo "$NAME: ok: $*"; }

[ -x "$VMM" ] || fail "VMM=$VMM is not executable"
[ -c /dev/kvm ] || fail "no /dev/kvm (run through test/kvm/run-suite.sh, which uses the sandbox)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmm-$NAME.XXXXXX")
trap '[ -n "${VMM_TEST_KEEP:-}" ] && echo "$NAME: kept $WORK" || rm -rf "$WORK"' EXIT

KERNEL=${VMM_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
[ -n "$KERNEL" ] && [ -r "$KERNEL" ] || fail "no readable kernel (${KERNEL:-no /boot/vmlinuz-*}; set VMM_KERNEL)"

INITRD=$VMM_BUILD/guest/initramfs.img
MKINITRAMFS=$VMM_SRC/guest/mkinitramfs.sh
if [ ! -s "$INITRD" ] || [ "$MKINITRAMFS" -nt "$INITRD" ]; then
	echo "$NAME: generating $INITRD"
	mkdir -p "$VMM_BUILD/guest" || fail "cannot create $VMM_BUILD/guest"
	bash "$MKINITRAMFS" "$INITRD" "${KERNEL##*/vmlinuz-}" || fail "guest/mkinitramfs.sh failed"
fi

boot_vmm() {
	local log=$1 cmdline=$2
	shift 2
	LASTLOG=$log OUT=$WORK/vmm.out ERR=$WORK/vmm.err
	: >"$log"
	local t0=$SECONDS
	set +e
	timeout -k 10 "$BOOT_TIMEOUT" "$VMM" run --kernel "$KERNEL" --initrd "$INITRD" \
		--cmdline "$cmdline" --serial "file:$log" "$@" </dev/null >"$OUT" 2>"$ERR"
	RC=$?
	set -e
	echo "$NAME: vmm run $* -> exit $RC after $((SECONDS - t0))s"
	[ "$RC" -ne 124 ] || fail "vmm did not exit within ${BOOT_TIMEOUT}s (guest hung or poweroff/reboot not handled)"
}

expect_ready() {
	local log=$1 cpus=$2 line
	line=$(tr -d '\r' <"$log" | grep -a -o 'VMM-GUEST: ready cpus=[0-9]*' | head -n 1)
	[ -n "$line" ] || fail "guest never printed 'VMM-GUEST: ready' (serial log: $log)"
	[ "$line" = "VMM-GUEST: ready cpus=$cpus" ] || fail "expected 'VMM-GUEST: ready cpus=$cpus', guest printed '$line'"
	ok "$line"
}
