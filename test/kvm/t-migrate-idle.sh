#!/bin/bash
# Live-migrates a guest whose vCPUs never leave KVM_RUN by themselves (halted
# with interrupts off, the APs never started): nothing in the migration may
# wait for a running vCPU (a vCPU ioctl from another thread blocks until the
# vCPU exits, which such a guest never does), so it must complete quickly.
set -euo pipefail
. "$(dirname "$0")/mig-lib.sh"

start_vmm dst --memory 128M --cpus 2 --incoming "unix:$T/mig.sock"
start_vmm src --kernel "$GUEST" --cmdline idle --memory 128M --cpus 2
wait_for "$T/src.log" "guest: idle" 30
sleep 1
# The destination's vCPU threads wait from its start (so their creation is no
# part of the downtime), but nothing runs there before the handoff.
cpus=$(qmp dst query-cpus-fast)
[ "$(grep -c '"thread-id": [1-9]' <<<"$cpus")" = 2 ] ||
	fail "the destination's vCPU threads are not there before the migration: $cpus"
[ "$(run_status dst)" = inmigrate ] || fail "destination is not inmigrate before the migration"
# Management tools learn that the guest runs on the destination from its
# RESUME event, as with QEMU.
python3 "$(dirname "$0")/qmp-client.py" "$T/dst.sock" wait-event RESUME >"$T/resume.out" 2>&1 &
ev=$!
PIDS+=("$ev")
wait_for "$T/resume.out" "^ready" 30
python3 "$(dirname "$0")/qmp-client.py" "$T/src.sock" events >"$T/src-events.out" 2>&1 &
evs=$!
PIDS+=("$evs")
wait_for "$T/src-events.out" "^ready" 30
qmp src migrate "{\"uri\":\"unix:$T/mig.sock\"}" >/dev/null
st=$(wait_mig src 60)
qmp src query-migrate
[ "$st" = completed ] || fail "migration of an idle guest ended '$st'"
[ "$(run_status src)" = postmigrate ] || fail "source is not postmigrate"
[ "$(run_status dst)" = running ] || fail "destination is not running"
wait "$ev" || fail "no RESUME event from the destination"
grep -q '"event": "RESUME"' "$T/resume.out" || fail "no RESUME event from the destination"
# The source rehearses its pause before the first pass, to time stopping the
# vCPUs and saving their state for the expected downtime.
grep -Eq "switching over .*vCPU stop [1-9][0-9]* us, state save [1-9][0-9]* us" "$T/src.out" ||
	fail "the source did not time its pause ahead of it: $(grep 'switching over' "$T/src.out")"
# The destination pauses and resumes the halted guest like any other.
qmp dst stop >/dev/null
[ "$(run_status dst)" = paused ] || fail "destination could not pause the halted guest"
qmp dst cont >/dev/null
qmp dst quit >/dev/null
qmp src quit >/dev/null
wait "$PID_dst" || fail "destination exited non-zero"
wait "$PID_src" || fail "source exited non-zero"
# The rehearsal is no pause to the guest's users: one STOP (the pause
# itself), and the guest never ran on the source again.
wait "$evs" || fail "the source's event listener failed: $(cat "$T/src-events.out")"
stops=$(grep -Ec '"event": ?"STOP"' "$T/src-events.out" || true)
[ "$stops" = 1 ] && ! grep -Eq '"event": ?"RESUME"' "$T/src-events.out" ||
	fail "the source sent $stops STOP events, or a RESUME: $(cat "$T/src-events.out")"
echo "migration of an idle guest: ok"
