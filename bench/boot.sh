#!/bin/bash
# Boot-to-poweroff time of the stock kernel + the project's initramfs with 2
# vCPUs under vmm and under QEMU (-accel kvm), in the same run on the same
# machine; prints the ratio (lower is better for vmm). Without /dev/kvm it
# re-runs itself inside the nested-KVM sandbox, where times are emulated and
# only the ratio means anything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
if [ ! -w /dev/kvm ] && [ -z "${VMM_IN_SANDBOX:-}" ]; then
	bash scripts/build.sh >/dev/null
	echo "bench: no /dev/kvm here; running inside the nested-KVM sandbox"
	exec bash test/sandbox/sandbox.sh --timeout 3000 -- env VMM_IN_SANDBOX=1 ROUNDS="$ROUNDS" bash bench/boot.sh
fi
KERNEL=$(ls /boot/vmlinuz-* | sort -V | tail -1)
INITRD=build/guest/initramfs.img
CMDLINE="console=ttyS0 vmm.action=poweroff"

now() { date +%s.%N; }
# time_cmd LOG CMD...: runs CMD, checks the guest reached poweroff, prints seconds.
time_cmd() {
	local log=$1 t0 t1
	shift
	t0=$(now)
	timeout 600 "$@" >"$log" 2>&1 </dev/null || { echo "bench: run failed:" >&2; tail -5 "$log" >&2; exit 1; }
	t1=$(now)
	grep -q "VMM-GUEST: ready cpus=2" "$log" || { echo "bench: guest did not boot" >&2; exit 1; }
	echo "$t1 - $t0" | bc -l
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

L=$(mktemp -d)
vmm_t=() qemu_t=()
for r in $(seq 1 "$ROUNDS"); do
	vmm_t+=("$(time_cmd "$L/vmm.log" build/vmm run --kernel "$KERNEL" --initrd "$INITRD" \
		--cmdline "$CMDLINE" --memory 512M --cpus 2 --serial stdio)")
	qemu_t+=("$(time_cmd "$L/qemu.log" qemu-system-x86_64 -accel kvm -cpu host -m 512 -smp 2 \
		-kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" -nographic -no-reboot \
		-nodefaults -serial stdio)")
	echo "round $r: vmm ${vmm_t[-1]} s, qemu ${qemu_t[-1]} s"
done
v=$(printf '%s\n' "${vmm_t[@]}" | median)
q=$(printf '%s\n' "${qemu_t[@]}" | median)
printf 'boot-to-poweroff (median of %d): vmm %.2f s, qemu %.2f s, ratio vmm/qemu = %.2f\n' \
	"$ROUNDS" "$v" "$q" "$(echo "$v / $q" | bc -l)"
rm -rf "$L"
