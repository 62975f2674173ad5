#!/bin/bash
# The main job: sets this machine up, builds vmm, boots the default guest
# (the stock Debian kernel + the project's busybox initramfs) and live-migrates
# it between two local vmm processes, showing the progress line and the
# summary; then the migrated guest is powered off from the destination.
# Without /dev/kvm it all runs inside the nested-KVM sandbox, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VMM_DEMO_INSIDE:-}" ]; then
	bash scripts/setup.sh
	bash scripts/build.sh
	if [ ! -w /dev/kvm ]; then
		echo "demo: this machine has no usable /dev/kvm; running the demo inside the"
		echo "demo: nested-KVM sandbox (test/sandbox/sandbox.sh: a QEMU TCG guest with KVM)."
		echo "demo: everything there is emulated, so times are slow; ratios are what count."
		exec bash test/sandbox/sandbox.sh --timeout 1500 -- env VMM_DEMO_INSIDE=1 bash scripts/demo.sh
	fi
fi

VMM=$PWD/build/vmm
D=$(mktemp -d /run/vmm-demo.XXXXXX 2>/dev/null || mktemp -d)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$D"' EXIT

wait_for() {   # FILE PATTERN SECONDS
	for _ in $(seq 1 $(( $3 * 10 ))); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: timed out waiting for '$2' in $1" >&2
	tail -5 "$1" >&2 || true
	exit 1
}

GUEST_RUN='i=0; while :; do i=$((i+1)); echo guest counter $i; sleep 1; done &'
echo "demo: booting the default guest (512 MiB, 2 vCPUs) on the source vmm"
"$VMM" run --memory 512M --cpus 2 --qmp "unix:$D/src.qmp" --serial "file:$D/src.log" \
	--cmdline "console=ttyS0 vmm.run=\"$GUEST_RUN\"" &
src=$!
pids+=($src)
echo "demo: starting the destination vmm, waiting for an incoming guest"
"$VMM" run --memory 512M --cpus 2 --qmp "unix:$D/dst.qmp" --serial "file:$D/dst.log" \
	--incoming "unix:$D/migration.sock" &
dst=$!
pids+=($dst)
wait_for "$D/src.log" "VMM-GUEST: ready" 300
wait_for "$D/src.log" "guest counter 3" 60
echo "demo: the guest is up:"
grep -E "VMM-GUEST|Linux version" "$D/src.log" | sed 's/^/  source console: /'
tail -1 "$D/src.log" | sed 's/^/  source console: /'

echo "demo: vmm migrate --qmp unix:$D/src.qmp unix:$D/migration.sock"
"$VMM" migrate --qmp "unix:$D/src.qmp" "unix:$D/migration.sock"
echo "demo: source status: $("$VMM" ctl --qmp "unix:$D/src.qmp" query-status | grep '"status"')"
echo "demo: destination status: $("$VMM" ctl --qmp "unix:$D/dst.qmp" query-status | grep '"status"')"
last=$(grep -c "guest counter" "$D/dst.log" || true)
sleep 3
now=$(grep -c "guest counter" "$D/dst.log" || true)
echo "demo: the guest keeps counting on the destination ($last -> $now new lines):"
tail -2 "$D/dst.log" | sed 's/^/  destination console: /'
echo "demo: powering the guest off from the destination (ACPI power button)"
"$VMM" ctl --qmp "unix:$D/dst.qmp" system_powerdown >/dev/null
status=0
wait "$dst" || status=$?
"$VMM" ctl --qmp "unix:$D/src.qmp" quit >/dev/null || true
wait "$src" || true
echo "demo: destination vmm exited with status $status"
[ "$status" = 0 ] && [ "$now" -gt "$last" ]
