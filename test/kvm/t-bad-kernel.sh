#!/bin/bash
# t-bad-kernel.sh -- `vmm run --kernel /etc/passwd` (not a kernel) must fail cleanly:
# non-zero exit that is not a signal (<128, and not a timeout), with a message on
# stderr that names the kernel file.
# Run via test/kvm/run-suite.sh BUILD (needs /dev/kvm; uses the sandbox without it).
set -euo pipefail
NAME=t-bad-kernel
. "$(dirname "$0")/boot-lib.sh"

BAD=/etc/passwd
OUT=$WORK/vmm.out ERR=$WORK/vmm.err
set +e
timeout -k 5 60 "$VMM" run --kernel "$BAD" --cmdline "console=ttyS0" --memory 512M \
	--cpus 1 --serial none </dev/null >"$OUT" 2>"$ERR"
rc=$?
set -e
echo "$NAME: vmm run --kernel $BAD -> exit $rc"
echo "$NAME: stderr: $(head -c 400 "$ERR")"
[ "$rc" -ne 124 ] || fail "vmm hung on a bad kernel (killed after 60s)"
[ "$rc" -ne 0 ] || fail "vmm accepted $BAD as a kernel (exit 0)"
[ "$rc" -lt 128 ] || fail "vmm died from a signal (exit $rc) instead of failing cleanly"
[ -s "$ERR" ] || fail "no error message on stderr"
grep -q -F "$BAD" "$ERR" || fail "the error message does not name the kernel file $BAD"
ok "rejected with exit $rc and a message naming $BAD"
