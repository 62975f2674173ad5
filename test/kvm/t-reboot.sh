#!/bin/bash
# t-reboot.sh -- the default guest runs `reboot -f` (vmm.action=reboot): vmm must end
# the VM and exit 0 (a reboot ends `vmm run`), after the guest reached "ready" once.
# Run via test/kvm/run-suite.sh BUILD (needs /dev/kvm; uses the sandbox without it).
set -euo pipefail
NAME=t-reboot
. "$(dirname "$0")/boot-lib.sh"

LOG=$WORK/serial.log
boot_vmm "$LOG" "console=ttyS0 vmm.action=reboot" --cpus 1 --memory 512M
[ "$RC" -eq 0 ] || fail "vmm exited $RC after the guest's reboot (expected 0)"
expect_ready "$LOG" 1
n=$(tr -d '\r' <"$LOG" | grep -a -c 'VMM-GUEST: ready' || true)
[ "$n" -eq 1 ] || fail "guest reached ready $n times (the reboot should end the VM)"
ok "guest rebooted, vmm exited 0"
