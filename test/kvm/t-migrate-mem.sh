#!/bin/bash
# Live-migrates the freestanding test guest while it increments a byte in
# every page of a 64 MiB region, over three page streams (multifd-channels),
# then checks that not one write was lost,
# that the guest runs on at the destination and that the source stays
# postmigrate with `cont` refused.
set -euo pipefail
. "$(dirname "$0")/mig-lib.sh"

start_vmm dst --kernel "$GUEST" --memory 256M --cpus 2 --incoming "unix:$T/mig.sock"
[ "$(run_status dst)" = inmigrate ] || fail "destination is not inmigrate"
start_vmm src --kernel "$GUEST" --cmdline dirty=64 --memory 256M --cpus 2
wait_for "$T/src.log" "guest: pass" 30
qmp src migrate-set-parameters '{"downtime-limit":300,"multifd-channels":3}' >/dev/null
qmp src migrate "{\"uri\":\"unix:$T/mig.sock\"}" >/dev/null
st=$(wait_mig src 240)
qmp src query-migrate
[ "$st" = completed ] || fail "migration ended '$st'"
grep -q "migration: 3 page streams" "$T/src.out" || fail "the migration did not use 3 page streams"
[ "$(run_status src)" = postmigrate ] || fail "source is not postmigrate"
qmp src cont >/dev/null 2>&1 && fail "cont was accepted on a migrated-away source"
[ "$(run_status dst)" = running ] || fail "destination is not running"
before=$(grep -c "guest: pass" "$T/dst.log" || true)
sleep 2
after=$(grep -c "guest: pass" "$T/dst.log" || true)
[ "$after" -gt "$before" ] || fail "the guest makes no progress on the destination"
check_dirty_region dst 64
qmp dst quit >/dev/null
qmp src quit >/dev/null
wait "$PID_dst" || fail "destination exited non-zero"
wait "$PID_src" || fail "source exited non-zero"
echo "migration of a dirtying guest: ok"
