#!/bin/bash
# t-boot-1cpu.sh -- boots the stock Debian kernel with the default guest initramfs
# under `vmm run --cpus 1 --memory 512M` with vmm.action=poweroff: vmm must exit 0
# when the guest powers off, and the guest must have printed "VMM-GUEST: ready cpus=1".
# Run via test/kvm/run-suite.sh BUILD (needs /dev/kvm; uses the sandbox without it).
set -euo pipefail
NAME=t-boot-1cpu
. "$(dirname "$0")/boot-lib.sh"

LOG=$WORK/serial.log
boot_vmm "$LOG" "console=ttyS0 vmm.action=poweroff" --cpus 1 --memory 512M
[ "$RC" -eq 0 ] || fail "vmm exited $RC after the guest's poweroff (expected 0)"
expect_ready "$LOG" 1
ok "guest powered off, vmm exited 0"
