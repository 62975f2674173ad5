#!/bin/bash
# Every failure that keeps the guest on the source leaves it running exactly
# as before: an incompatible destination, a destination killed in pre-copy,
# at its end, in stop-and-copy and between READY and GO, one that cannot
# start the guest after GO, a cut link, a flipped byte, a stalled link and
# migrate_cancel. After all of them the same source still migrates, and not
# one of the guest's writes is lost.
set -euo pipefail
. "$(dirname "$0")/mig-lib.sh"
PROXY="python3 $(dirname "$0")/mig-proxy.py"
export VMM_MIGRATE_TIMEOUT_MS=5000
MEM=128M

start_vmm src --kernel "$GUEST" --cmdline dirty=16 --memory $MEM
wait_for "$T/src.log" "guest: pass" 30

# expect_failed WHAT: the last migration failed or was cancelled, the source
# guest is running and still making progress.
expect_failed() {
	local st n1 n2
	st=$(wait_mig src 120)
	[ "$st" = failed ] || [ "$st" = cancelled ] || fail "$1: migration ended '$st'"
	[ "$(run_status src)" = running ] || fail "$1: source guest not running"
	n1=$(grep -c "guest: pass" "$T/src.log" || true)
	sleep 1
	n2=$(grep -c "guest: pass" "$T/src.log" || true)
	[ "$n2" -gt "$n1" ] || fail "$1: source guest makes no progress"
	echo "$1: $st, source guest running: $(qmp src query-migrate | grep error-desc || true)"
}

# new_dst [ENV...]: a fresh destination listening on $T/dst.mig
n=0
new_dst() {
	n=$((n + 1))
	rm -f "$T/dst.sock" "$T/dst.mig"
	env "$@" "$VMM" run --qmp "unix:$T/dst.sock" --serial "file:$T/dst$n.log" --memory $MEM \
		--incoming "unix:$T/dst.mig" >"$T/dst$n.out" 2>&1 &
	PIDS+=($!)
	DST=$!
	for _ in $(seq 1 100); do [ -S "$T/dst.mig" ] && return 0; sleep 0.1; done
	fail "destination $n did not listen"
}

migrate_to() { qmp src migrate "{\"uri\":\"unix:$1\"}" >/dev/null; }

# 1. A destination that cannot host the guest refuses it before any page.
rm -f "$T/dst.sock"
"$VMM" run --qmp "unix:$T/dst.sock" --serial none --memory 64M --incoming "unix:$T/dst.mig" \
	>"$T/small.out" 2>&1 &
PIDS+=($!); DST=$!
for _ in $(seq 1 100); do [ -S "$T/dst.mig" ] && break; sleep 0.1; done
migrate_to "$T/dst.mig"
expect_failed "incompatible destination"
qmp src query-migrate | grep -q "128 MiB of RAM" || fail "refusal reason not reported"
wait $DST && fail "refusing destination exited 0"
grep -q "incoming migration failed" "$T/small.out" || fail "destination did not say why"

# 2. Destination killed during pre-copy (slowed down so it is in pre-copy),
# with two page streams.
qmp src migrate-set-parameters '{"max-bandwidth":1000000,"multifd-channels":2}' >/dev/null
new_dst
migrate_to "$T/dst.mig"
sleep 1
[ "$(mig_status src)" = active ] || fail "not in pre-copy"
kill -9 $DST
expect_failed "destination killed in pre-copy"
qmp src migrate-set-parameters '{"max-bandwidth":0,"multifd-channels":1}' >/dev/null

# 3. Destination dies at the SYNC that ends pre-copy, before the pause.
new_dst VMM_TEST_FAULT=sync
migrate_to "$T/dst.mig"
expect_failed "destination killed at the end of pre-copy"
qmp src query-migrate | grep -q "waiting for SYNC" || fail "SYNC failure not reported"

# 4. Destination dies at its first vCPU state (stop-and-copy).
new_dst VMM_TEST_FAULT=cpu
migrate_to "$T/dst.mig"
expect_failed "destination killed in stop-and-copy"
qmp src query-migrate | grep -q "stop-and-copy\|waiting for READY" ||
	fail "stop-and-copy failure not reported"

# 5. Destination dies right after READY, before GO.
new_dst VMM_TEST_FAULT=ready
migrate_to "$T/dst.mig"
expect_failed "destination killed between READY and GO"

# 6. After GO the destination cannot start the vCPUs: it says so, lets go
# of the guest, and the source runs it again.
new_dst VMM_TEST_FAULT=start
migrate_to "$T/dst.mig"
expect_failed "destination cannot start the guest after GO"
qmp src query-migrate | grep -q "cannot start the vCPUs: the guest stays on the source" ||
	fail "the destination's failed start not reported"
wait $DST && fail "destination exited 0 after a failed start"

# 7-9. A cut link (truncated stream), a flipped byte and a stalled link.
# The guest's regions (4 MiB at 8 MiB written once, 16 MiB at 16 MiB
# dirtied, neither ever a zero page) make pass 1 carry more than 20 MiB, so
# each offset lands inside it. The flip lands in the data of a page of the
# first region (pass 1 sends it from about 0.1 MiB on): the page fails its
# check there, never comes again, and the destination refuses the guest at
# the end of the stream. A page of the dirtied region would come again
# intact, and the migration would rightly complete.
for mode in cut:3000000 flip:2000000 stall:1000000; do
	new_dst
	rm -f "$T/proxy.mig"
	$PROXY "$T/proxy.mig" "$T/dst.mig" "$mode" &
	PIDS+=($!)
	for _ in $(seq 1 300); do [ -S "$T/proxy.mig" ] && break; sleep 0.1; done
	migrate_to "$T/proxy.mig"
	expect_failed "link $mode"
	kill -9 $DST 2>/dev/null || true
	wait $DST 2>/dev/null && fail "destination ran after a broken stream ($mode)"
	grep -q "incoming migration failed" "$T/dst$n.out" || [ "${mode%%:*}" = stall ] ||
		fail "destination did not report the broken stream ($mode)"
	grep -q "failed its check and never came again" "$T/dst$n.out" ||
		[ "${mode%%:*}" != flip ] || fail "the flipped page was not caught"
done

# 10. migrate_cancel, with two page streams.
qmp src migrate-set-parameters '{"max-bandwidth":1000000,"multifd-channels":2}' >/dev/null
new_dst
migrate_to "$T/dst.mig"
sleep 1
qmp src migrate_cancel >/dev/null
expect_failed "migrate_cancel"
kill -9 $DST 2>/dev/null || true
qmp src migrate-set-parameters '{"max-bandwidth":0,"multifd-channels":1}' >/dev/null

# After all that the same source migrates, losing nothing.
new_dst
migrate_to "$T/dst.mig"
st=$(wait_mig src 120)
[ "$st" = completed ] || fail "final migration ended '$st'"
[ "$(run_status src)" = postmigrate ] || fail "source not postmigrate"
check_dirty_region dst 16
qmp dst quit >/dev/null
wait $DST || fail "destination exited non-zero"
echo "all fault cases: ok"
