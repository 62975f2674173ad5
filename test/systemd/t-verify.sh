#!/bin/bash
# t-verify.sh BUILD -- `systemd-analyze verify` on the generated units. The
# units name the installed binary; here each is verified as an instance
# (vmm@t-verify.service) with ExecStart pointing at BUILD's binary, so the
# check does not depend on an installation. Any message about our units
# fails the test. Exit 0 pass, 1 fail.
set -euo pipefail
BUILD=$(cd "${1:?usage: t-verify.sh BUILD}" && pwd)
command -v systemd-analyze >/dev/null || { echo "t-verify: FAIL: no systemd-analyze (scripts/setup.sh installs systemd)"; exit 1; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
BINDIR=$(sed -n 's|^ExecStart=\(.*\)/vmm run .*|\1|p' "$BUILD/systemd/vmm@.service")
[ -n "$BINDIR" ] || { echo "t-verify: FAIL: no ExecStart in vmm@.service"; exit 1; }
status=0
for unit in vmm@.service vmm-incoming@.service; do
	inst=${unit/@/@t-verify}
	sed "s|$BINDIR/vmm|$BUILD/vmm|g" "$BUILD/systemd/$unit" >"$W/$inst"
	out=$(cd "$W" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$W/$inst" 2>&1) ||
		{ echo "t-verify: FAIL: $unit: systemd-analyze exited non-zero"; status=1; }
	# Messages about other units of this host are not ours to fix.
	ours=$(printf '%s\n' "$out" | grep -E "vmm(-incoming)?@t-verify" || true)
	if [ -n "$ours" ]; then
		printf '%s\n' "$ours"
		echo "t-verify: FAIL: $unit has warnings"
		status=1
	else
		echo "t-verify: $unit: ok"
	fi
done
exit $status
