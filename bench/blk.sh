#!/bin/bash
# bench/blk.sh [BUILD] -- the same dd O_DIRECT jobs in the guest on the same raw
# image (on ext4, so the host side can use O_DIRECT) under vmm and under QEMU
# (virtio-blk-pci, aio=io_uring), like for like: vmm direct=on against QEMU
# cache=none, and vmm's default (host page cache) against QEMU
# cache=writeback, in the same run; prints throughput and IOPS for each and
# the vmm/QEMU ratios (higher is better for vmm). Emulated timings swing from
# run to run, so each configuration boots ROUNDS times (default 3), the four
# taking turns, and every figure is the median. Without
# /dev/kvm it re-runs itself inside the nested-KVM sandbox, where times are
# emulated and only the ratios mean anything. Needs root (loop mount).
# BENCH_LOGS=DIR (visible on both sides, e.g. under the work tree) keeps the
# guest serial logs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(readlink -f "${1:-${VMM_BUILD:-build}}")
if [ ! -w /dev/kvm ] && [ -z "${VMM_IN_SANDBOX:-}" ]; then
	echo "bench: no /dev/kvm here; running inside the nested-KVM sandbox"
	exec bash test/sandbox/sandbox.sh --timeout 3000 -- env VMM_IN_SANDBOX=1 BENCH_LOGS="${BENCH_LOGS:-}" \
		ROUNDS="${ROUNDS:-3}" bash bench/blk.sh "$BUILD"
fi
VMM=$BUILD/vmm
KERNEL=$(ls /boot/vmlinuz-* | sort -V | tail -1)
INITRD=$BUILD/guest/initramfs.img
QEMU=$(command -v qemu-system-x86_64)
[ -x "$VMM" ] && [ -r "$INITRD" ] || { echo "bench: build $BUILD first" >&2; exit 1; }

# A small ext4 on a loop device in guest-local tmpfs: O_DIRECT works there.
W=$(mktemp -d /run/vmm-bench-blk.XXXXXX)
cleanup() { umount "$W/mnt" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
modprobe loop 2>/dev/null || true
truncate -s 700M "$W/fs.img"
mkfs.ext4 -q -F "$W/fs.img"
mkdir -p "$W/mnt"
mount -o loop "$W/fs.img" "$W/mnt"
IMG=$W/mnt/disk.img
fallocate -l 512M "$IMG"

# The jobs: sequential 1 MiB writes and reads, 4 KiB reads and writes (QD1).
JOBS='u() { read s x </proc/uptime; echo $s; };
a=$(u); dd if=/dev/zero of=/dev/vda bs=1M count=128 oflag=direct 2>/dev/null; echo SEQW=$a,$(u);
a=$(u); dd if=/dev/vda of=/dev/null bs=1M count=128 iflag=direct 2>/dev/null; echo SEQR=$a,$(u);
a=$(u); dd if=/dev/vda of=/dev/null bs=4k count=2000 skip=1000 iflag=direct 2>/dev/null; echo RND4R=$a,$(u);
a=$(u); dd if=/dev/zero of=/dev/vda bs=4k count=1000 seek=5000 oflag=direct 2>/dev/null; echo RND4W=$a,$(u)'
JOBS=$(printf '%s' "$JOBS" | tr '\n' ' ')
CMDLINE="console=ttyS0 quiet vmm.action=poweroff vmm.run=\"$JOBS\""

run() {   # run NAME CMD... -> NAME.log
	local name=$1 t0=$SECONDS
	shift
	echo "bench: running $name" >&2
	# Every run starts from an empty host page cache: without the sync, the
	# run after a page-cache one overwrote its still-dirty pages, which is
	# far cheaper than filling fresh ones (and qemu-wb always followed vmm-wb).
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	timeout 900 "$@" </dev/null >"$W/$name.log" 2>&1 || { echo "bench: $name failed" >&2; tail -5 "$W/$name.log" >&2; exit 1; }
	[ -z "${BENCH_LOGS:-}" ] || cp "$W/$name.log" "$BENCH_LOGS/"
	grep -q "RND4W=" "$W/$name.log" || { echo "bench: $name: no results" >&2; tail -20 "$W/$name.log" >&2; exit 1; }
	echo "bench: $name took $((SECONDS - t0)) s" >&2
}
VARGS=(run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --cpus 2 --serial stdio
	--cmdline "$CMDLINE")
QARGS=(-accel kvm -cpu host -m 256M -smp 2 -nodefaults -display none -no-user-config -no-reboot
	-serial stdio -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE")
ROUNDS=${ROUNDS:-3}
for r in $(seq 1 "$ROUNDS"); do
	run "vmm-direct.$r" "$VMM" "${VARGS[@]}" --disk "$IMG,direct=on"
	run "qemu-none.$r" "$QEMU" "${QARGS[@]}" \
		-drive "file=$IMG,if=none,id=d0,format=raw,cache=none,aio=io_uring" \
		-device virtio-blk-pci,drive=d0
	run "vmm-wb.$r" "$VMM" "${VARGS[@]}" --disk "$IMG"
	run "qemu-wb.$r" "$QEMU" "${QARGS[@]}" \
		-drive "file=$IMG,if=none,id=d0,format=raw,cache=writeback,aio=io_uring" \
		-device virtio-blk-pci,drive=d0
done

# "SEQW=12.34,15.67" (guest uptime before, after) in each round's log ->
# the median seconds
secs() {
	for r in $(seq 1 "$ROUNDS"); do
		tr -d '\r' <"$W/$1.$r.log" | sed -n "s/^$2=\([0-9.]*\),\([0-9.]*\)$/\2 - \1/p" |
			tail -1 | bc -l
	done | sort -g | sed -n "$(( (ROUNDS + 1) / 2 ))p"
}
echo "medians of $ROUNDS rounds:"
printf '%-8s %12s %12s %14s   %12s %12s %14s\n' job vmm-direct qemu-none ratio vmm-wb qemu-wb ratio
for j in SEQW:128:MB/s SEQR:128:MB/s RND4R:2000:IOPS RND4W:1000:IOPS; do
	IFS=: read -r name n unit <<<"$j"
	d=$(secs vmm-direct "$name"); q=$(secs qemu-none "$name")
	v=$(secs vmm-wb "$name"); w=$(secs qemu-wb "$name")
	printf '%-8s %9.1f%s %9.1f%s %14.2f   %9.1f%s %9.1f%s %14.2f\n' "$name" \
		"$(echo "$n / $d" | bc -l)" " $unit" "$(echo "$n / $q" | bc -l)" " $unit" \
		"$(echo "$q / $d" | bc -l)" \
		"$(echo "$n / $v" | bc -l)" " $unit" "$(echo "$n / $w" | bc -l)" " $unit" \
		"$(echo "$w / $v" | bc -l)"
done
echo "(sandbox times are emulated: only the ratios mean anything; ratio > 1: vmm faster)"
