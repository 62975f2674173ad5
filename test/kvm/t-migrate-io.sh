#!/bin/bash
# Live-migrates a stock-kernel guest with a disk and a NIC while it keeps
# writing checksummed 1 MiB files to the disk and reading them back with
# O_DIRECT (device writes into guest RAM during pre-copy), and while the host
# pings it. Both vmm share the image (shared storage) and sit on one bridge
# with their own taps. Checks: every round the guest checked, before and
# after the move, read back what it wrote; the image on the host holds the
# last round's data; the destination announces the guest's MAC on its tap
# (RARP) and the host's pings are answered again within seconds of the
# switch; the disk lock moved to the destination.
set -euo pipefail
. "$(dirname "$0")/mig-lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root for the bridge and taps"
KERNEL=${VMM_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
INITRD=$VMM_BUILD/guest/initramfs.img
[ -r "$KERNEL" ] && [ -r "$INITRD" ] || fail "no stock kernel ($KERNEL) or initramfs ($INITRD)"
modprobe tun 2>/dev/null || true
modprobe bridge 2>/dev/null || true
BR=vmmbr$$ TA=vmmta$$ TB=vmmtb$$
BR=${BR:0:15} TA=${TA:0:15} TB=${TB:0:15}
HOST_IP=169.254.80.1 GUEST_IP=169.254.80.2 MAC=52:54:00:80:00:02
ip link add "$BR" type bridge || fail "cannot create a bridge"
trap 'cleanup; ip link del "$TA" 2>/dev/null; ip link del "$TB" 2>/dev/null; ip link del "$BR" 2>/dev/null' EXIT
for t in "$TA" "$TB"; do
	ip tuntap add dev "$t" mode tap
	ip link set "$t" master "$BR"
	ip link set "$t" up
done
ip addr add "$HOST_IP/24" dev "$BR"
ip link set "$BR" up

DISK=$T/disk.img
truncate -s 64M "$DISK"
# Round i: 1 MiB (its number, then random bytes) into slot i%8, read back
# with O_DIRECT.
G="ip link set eth0 up; ip addr add $GUEST_IP/24 dev eth0; echo NET=up; i=0;
dd if=/dev/urandom of=/tmp/r bs=64k count=16 2>/dev/null;
while true; do i=\$((i+1)); s=\$((i%8));
(echo \$i; cat /tmp/r) | head -c 1048576 >/tmp/f; w=\$(md5sum </tmp/f | cut -c1-32);
dd if=/tmp/f of=/dev/vda bs=1M seek=\$s conv=fsync 2>/dev/null;
r=\$(dd if=/dev/vda bs=1M skip=\$s count=1 iflag=direct 2>/dev/null | md5sum | cut -c1-32);
if [ \$w = \$r ]; then echo ROUND=\$i:\$s:\$w:ok; else echo ROUND=\$i:\$s:\$w:BAD:\$r; fi; done"
ARGS=(--kernel "$KERNEL" --initrd "$INITRD" --memory 256M --cpus 1 --disk "$DISK")
start_vmm dst "${ARGS[@]}" --net "tap=$TB" --incoming "unix:$T/mig.sock"
start_vmm src "${ARGS[@]}" --net "tap=$TA,mac=$MAC" \
	--cmdline "console=ttyS0 quiet vmm.action=poweroff vmm.run=\"$(tr '\n' ' ' <<<"$G")\""
echo "booting the source guest"
wait_for "$T/src.log" "ROUND=2:" 400
echo "guest runs its disk rounds; host pings it"
ping -D -i 0.2 -W 1 "$GUEST_IP" >"$T/ping.log" 2>&1 &
PING=$!
PIDS+=("$PING")
sleep 3
grep -q "bytes from $GUEST_IP" "$T/ping.log" || fail "the guest does not answer pings before migration"

# Count RARP frames from the guest's MAC arriving on the destination's tap.
# (Its output goes to a file: a background job holding the test's stdout
# would keep the suite's pipe open after the test ends.)
python3 - "$TB" "$MAC" "$T/rarp" >"$T/rarp.out" 2>&1 <<'PY' &
import signal, socket, sys
signal.alarm(900)
# ETH_P_ALL: a bridge port hands frames to the bridge before any handler
# bound to one protocol could see them.
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((sys.argv[1], 0))
mac, n = bytes.fromhex(sys.argv[2].replace(':', '')), 0
open(sys.argv[3] + '.ready', 'w').write('ready')
while True:
    try:
        f = s.recv(2048)
    except OSError:      # ENETDOWN is reported once if the tap blinks
        continue
    if f[6:12] == mac and f[12:14] == b'\x80\x35' and f[20:22] == b'\x00\x03':
        n += 1
        open(sys.argv[3], 'w').write(str(n))
PY
PIDS+=($!)
wait_for "$T/rarp.ready" ready 60
before=$(grep -c "ROUND=" "$T/src.log")
echo "migrating after $before rounds"
qmp src migrate-set-parameters '{"downtime-limit":300}' >/dev/null
qmp src migrate "{\"uri\":\"unix:$T/mig.sock\"}" >/dev/null
st=$(wait_mig src 300)
done_at=$(date +%s.%N)
qmp src query-migrate
[ "$st" = completed ] || fail "migration ended '$st': $(qmp src query-migrate | grep error-desc)"
during=$(( $(grep -c "ROUND=" "$T/src.log") - before ))
[ "$(run_status dst)" = running ] || fail "destination is not running"
# The lock moved: the source let go, the destination holds it.
flock -n -x "$DISK" true && fail "nobody holds the disk lock after migration"

sleep 5
[ "$(cat "$T/rarp" 2>/dev/null)" -ge 3 ] 2>/dev/null ||
	fail "the destination did not announce the guest's MAC ($(cat "$T/rarp" 2>/dev/null || echo 0) RARP frames)"
echo "self-announce: $(cat "$T/rarp") RARP frames from $MAC on $TB"
# Pings answered again within 5 s of the switch.
python3 - "$T/ping.log" "$done_at" <<'PY' || fail "pings not answered after the switch: $(tail -5 "$T/ping.log")"
import re, sys
t0 = float(sys.argv[2])
ok = [float(m.group(1)) for m in re.finditer(r'^\[(\d+\.\d+)\] \d+ bytes from', open(sys.argv[1]).read(), re.M)]
after = [t for t in ok if t > t0]
print(f"pings: {len(ok)} answered, {len(after)} after the switch, first {after[0] - t0:.2f} s after" if after else "pings: none answered after the switch")
sys.exit(0 if after and after[0] - t0 < 5 else 1)
PY

# The guest goes on writing and checking on the destination.
n=$(grep -c "ROUND=" "$T/dst.log" || true)
for _ in $(seq 1 600); do
	[ "$(grep -c "ROUND=" "$T/dst.log" || true)" -ge $((n + 2)) ] && break
	sleep 0.5
done
[ "$(grep -c "ROUND=" "$T/dst.log" || true)" -ge $((n + 2)) ] || fail "the guest does no disk rounds on the destination"
qmp dst stop >/dev/null
kill "$PING" 2>/dev/null || true
cat "$T/src.log" "$T/dst.log" | tr -d '\r' | grep "ROUND=" >"$T/rounds"
echo "disk rounds: $(wc -l <"$T/rounds") ($during during pre-copy on the source)"
grep -q ":BAD" "$T/rounds" && fail "a read-back differed: $(grep ':BAD' "$T/rounds" | head -3)"
last=$(tail -n 1 "$T/rounds")
IFS=: read -r _ slot sum _ <<<"${last#ROUND=}"
host=$(dd if="$DISK" bs=1M skip="$slot" count=1 2>/dev/null | md5sum | cut -c1-32)
[ "$host" = "$sum" ] || fail "image slot $slot holds $host, the guest wrote $sum"
qmp dst quit >/dev/null
qmp src quit >/dev/null
wait "$PID_dst" || fail "destination exited non-zero"
wait "$PID_src" || fail "source exited non-zero"
echo "migration with disk and net I/O: ok"
