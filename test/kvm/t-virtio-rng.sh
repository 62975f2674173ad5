#!/bin/bash
# t-virtio-rng.sh -- virtio-rng with the stock kernel: /dev/hwrng is backed by
# virtio_rng and yields bytes that are not all the same; virtio uses MSI-X.
# Environment: VMM, VMM_BUILD, VMM_KERNEL, VMM_TEST_CPUS (see virtio-lib.sh).
# Exit: 0 pass, 1 fail, 77 skipped (no /dev/kvm).
set -euo pipefail
NAME=t-virtio-rng
. "$(dirname "$0")/virtio-lib.sh"

G='echo RNG_CURRENT=$(cat /sys/class/misc/hw_random/rng_current);
echo RNG_BYTES=$(dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c);
echo RNG_DISTINCT=$(dd if=/dev/hwrng bs=256 count=1 2>/dev/null | od -An -v -tx1 -w1 | sort -u | wc -l);
echo MSIX=$(grep -c PCI-MSI /proc/interrupts)'
vm_run "$WORK/rng.log" "$BOOT_TIMEOUT" "$G" || fail "vmm exited $?: $(tail -20 "$WORK/rng.log")"
case $(log_value "$WORK/rng.log" RNG_CURRENT) in virtio_rng*) ;; *) fail "hwrng is not virtio_rng: $(tail -20 "$WORK/rng.log")" ;; esac
[ "$(log_value "$WORK/rng.log" RNG_BYTES)" = 256 ] || fail "short read from /dev/hwrng"
[ "$(log_value "$WORK/rng.log" RNG_DISTINCT)" -gt 64 ] || fail "hwrng bytes look constant"
[ "$(log_value "$WORK/rng.log" MSIX)" -ge 2 ] || fail "no MSI-X vectors in use"
ok "/dev/hwrng yields random bytes over MSI-X"
echo "$NAME: PASS"
