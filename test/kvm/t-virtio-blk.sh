#!/bin/bash
# t-virtio-blk.sh -- virtio-blk with the stock kernel: data written with a
# checksum reads back identical after restarting the VMM (and matches the image
# on the host), a read-only disk refuses writes, discard punches a hole, the
# serial is reported, and a second VMM cannot open a disk that is in use.
# Environment: VMM, VMM_BUILD, VMM_KERNEL, VMM_TEST_CPUS (see virtio-lib.sh).
# Exit: 0 pass, 1 fail, 77 skipped (no /dev/kvm).
set -euo pipefail
NAME=t-virtio-blk
. "$(dirname "$0")/virtio-lib.sh"

DISK=$WORK/disk.img
RO=$WORK/ro.img
truncate -s 64M "$DISK"
head -c 1048576 /dev/urandom >"$RO"
RO_SUM=$(md5sum <"$RO" | cut -d' ' -f1)

# Boot 1: write 4 MiB of random data at 1 MiB, checksum it; read-only disk.
G1='dd if=/dev/urandom of=/dev/vda bs=1M seek=1 count=4 2>/dev/null; sync;
echo SUM1=$(dd if=/dev/vda bs=1M skip=1 count=4 2>/dev/null | md5sum | cut -c1-32);
echo SERIAL=$(cat /sys/block/vda/serial);
echo RO_FLAG=$(cat /sys/block/vdb/ro);
echo ROSUM=$(md5sum </dev/vdb | cut -c1-32);
if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>/dev/null; then echo ROWRITE=accepted; else echo ROWRITE=refused; fi;
echo LOCKWAIT; sleep 6'
vm_start "$WORK/boot1.log" "$G1" --disk "$DISK,serial=blk-test-1" --disk "$RO,readonly=on"
wait_log "$WORK/boot1.log" LOCKWAIT "$BOOT_TIMEOUT" || fail "boot 1 did not reach the lock check: $(tail -5 "$WORK/boot1.log")"
# While it runs: a second VMM must refuse the same image.
if timeout 60 "$VMM" run --kernel "$KERNEL" --initrd "$INITRD" --memory 64M --serial none \
	--disk "$DISK" </dev/null >"$WORK/second.log" 2>&1; then
	fail "a second vmm opened a disk in use"
fi
grep -q "locked" "$WORK/second.log" || fail "second vmm failed without saying the disk is locked: $(cat "$WORK/second.log")"
ok "second vmm refused the locked disk"
# A read-only user may share a read-only image.
wait "$VM_PID" || fail "boot 1: vmm exited $?"
VM_PID=
SUM1=$(log_value "$WORK/boot1.log" SUM1)
[ -n "$SUM1" ] || fail "boot 1 printed no checksum: $(tail -20 "$WORK/boot1.log")"
[ "$(log_value "$WORK/boot1.log" SERIAL)" = blk-test-1 ] || fail "serial not reported"
ok "serial reported"
[ "$(log_value "$WORK/boot1.log" RO_FLAG)" = 1 ] || fail "read-only disk not marked ro in the guest"
[ "$(log_value "$WORK/boot1.log" ROWRITE)" = refused ] || fail "write to the read-only disk accepted"
[ "$(log_value "$WORK/boot1.log" ROSUM)" = "$RO_SUM" ] || fail "read-only disk content differs"
[ "$(md5sum <"$RO" | cut -d' ' -f1)" = "$RO_SUM" ] || fail "read-only image changed"
ok "read-only disk reads right and refuses writes"
HOST_SUM=$(dd if="$DISK" bs=1M skip=1 count=4 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$HOST_SUM" = "$SUM1" ] || fail "image on the host ($HOST_SUM) differs from what the guest wrote ($SUM1)"
ok "guest writes reached the image"

# Boot 2: a new VMM reads the same data back; discard the first MiB.
head -c 1048576 /dev/urandom | dd of="$DISK" conv=notrunc 2>/dev/null
G2='echo SUM2=$(dd if=/dev/vda bs=1M skip=1 count=4 2>/dev/null | md5sum | cut -c1-32);
echo DISCARD_MAX=$(cat /sys/block/vda/queue/discard_max_bytes);
blkdiscard -o 0 -l 1048576 /dev/vda && echo DISCARD=ok;
echo ZSUM=$(dd if=/dev/vda bs=1M count=1 iflag=direct 2>/dev/null | md5sum | cut -c1-32)'
vm_run "$WORK/boot2.log" "$BOOT_TIMEOUT" "$G2" --disk "$DISK" || fail "boot 2: vmm exited $?"
[ "$(log_value "$WORK/boot2.log" SUM2)" = "$SUM1" ] || fail "data differs after restart: $(tail -20 "$WORK/boot2.log")"
ok "data identical after restarting the VMM"
ZERO_SUM=$(head -c 1048576 /dev/zero | md5sum | cut -d' ' -f1)
[ "$(log_value "$WORK/boot2.log" DISCARD)" = ok ] || fail "blkdiscard failed: $(tail -20 "$WORK/boot2.log")"
[ "$(log_value "$WORK/boot2.log" ZSUM)" = "$ZERO_SUM" ] || fail "discarded range does not read as zeros"
[ "$(dd if="$DISK" bs=1M count=1 2>/dev/null | md5sum | cut -d' ' -f1)" = "$ZERO_SUM" ] ||
	fail "discarded range not zero in the image"
ok "discard punched a hole"
echo "$NAME: PASS"
