#!/bin/bash
# t-privilege.sh -- least privilege in a running vmm:
#  1. a vCPU thread and the control thread that make a syscall off their
#     allowlist (test hook VMM_TEST_FORBIDDEN_SYSCALL=vcpu|control: getppid
#     right after the filter is loaded) kill vmm by SIGSYS, with a message
#     naming the thread kind and the call;
#  2. with --seccomp off the same hook is harmless;
#  3. --user nobody on the stock kernel + default guest (virtio-rng, a disk):
#     the guest boots, every thread runs as nobody with no capabilities and a
#     seccomp filter, the QMP socket is nobody's and 0600, QMP still works,
#     pmemsave writes a file as nobody, and quit exits 0.
# The migration and device tests run with the filter on by default.
# Environment: VMM, VMM_BUILD, VMM_KERNEL. Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
VMM=${VMM:?set VMM to the vmm binary}
VMM_BUILD=${VMM_BUILD:-$(dirname "$VMM")}
GUEST=$VMM_BUILD/test/guest/test-guest
KERNEL=${VMM_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
INITRD=$VMM_BUILD/guest/initramfs.img

fail() { echo "t-privilege: FAIL: $*" >&2; exit 1; }
ok() { echo "t-privilege: ok: $*"; }
[ -e /dev/kvm ] || { echo "t-privilege: SKIP: no /dev/kvm"; exit 77; }
T=$(mktemp -d /run/vmm-t-priv.XXXXXX 2>/dev/null || mktemp -d)
chmod 755 "$T"
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
qmp() { "$VMM" ctl --qmp "unix:$T/q.sock" "$@"; }

# 1. forbidden syscalls: SIGSYS (exit status 128+31) and a message.
for kind in vcpu control; do
	rc=0
	VMM_TEST_FORBIDDEN_SYSCALL=$kind timeout 120 "$VMM" run --kernel "$GUEST" --memory 64M \
		--cpus 2 --serial none --qmp "unix:$T/q.sock" >"$T/$kind.out" 2>&1 || rc=$?
	[ "$rc" = 159 ] || { cat "$T/$kind.out"; fail "$kind: exit status $rc, not 159 (SIGSYS)"; }
	grep -q "the $kind thread made the forbidden system call getppid" "$T/$kind.out" ||
		{ cat "$T/$kind.out"; fail "$kind: no message naming the call"; }
	ok "$kind thread: forbidden getppid kills vmm by SIGSYS with a message"
done

# 2. --seccomp off: the hook's call goes through; the guest powers off.
rc=0
VMM_TEST_FORBIDDEN_SYSCALL=vcpu timeout 120 "$VMM" run --kernel "$GUEST" --cmdline poweroff \
	--memory 64M --serial none --seccomp off >"$T/off.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$T/off.out"; fail "--seccomp off: exit status $rc"; }
ok "--seccomp off disables the filters"

# 3. --user nobody on the stock kernel.
[ -r "$KERNEL" ] && [ -r "$INITRD" ] || fail "need a kernel ($KERNEL) and $INITRD"
NOBODY=$(id -u nobody)
truncate -s 16M "$T/disk.img"
"$VMM" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --cpus 2 \
	--disk "$T/disk.img" --serial "file:$T/console.log" --qmp "unix:$T/q.sock" \
	--user nobody >"$T/user.out" 2>&1 &
PID=$!
for _ in $(seq 1 600); do
	grep -q "VMM-GUEST: ready" "$T/console.log" 2>/dev/null && break
	kill -0 "$PID" 2>/dev/null || { cat "$T/user.out"; fail "vmm --user nobody died"; }
	sleep 0.5
done
grep -q "VMM-GUEST: ready" "$T/console.log" || { tail "$T/console.log"; fail "guest not ready"; }
ok "stock kernel boots with --user nobody and the filters on"
n=0
for st in /proc/$PID/task/*/status; do
	read -r _ r e s f < <(grep '^Uid:' "$st")
	[ "$r $e $s $f" = "$NOBODY $NOBODY $NOBODY $NOBODY" ] || fail "$st: Uid $r $e $s $f"
	grep -q '^CapEff:[[:space:]]*0*$' "$st" || fail "$st: $(grep CapEff "$st")"
	grep -q '^CapPrm:[[:space:]]*0*$' "$st" || fail "$st: $(grep CapPrm "$st")"
	name=$(cat "${st%/status}/comm") tid=${st%/status}
	tid=${tid##*/}
	# The control thread and the named kinds must be filtered; virtio I/O
	# threads are once virtio_thread calls privilege_seccomp(THREAD_IO).
	if [ "$tid" = "$PID" ] || [ "$name" != vmm ]; then
		grep -q '^Seccomp:[[:space:]]*2' "$st" || fail "$name: $(grep '^Seccomp:' "$st")"
		# io_uring workers (iou-*) run each request with the credentials
		# of the thread that submitted it; their own bounding set, copied
		# when the ring was set up, grants nothing.
		case $name in iou-*) ;; *)
			grep -q '^CapBnd:[[:space:]]*0*$' "$st" ||
				fail "$name ($st): $(grep CapBnd "$st")" ;;
		esac
		n=$((n + 1))
	elif grep -q '^Seccomp:[[:space:]]*2' "$st"; then
		n=$((n + 1))
	else
		echo "t-privilege: note: thread $tid ($name) has no seccomp filter (I/O thread?)"
	fi
done
ok "every thread runs as nobody with no capabilities; $n have a seccomp filter and no bounding set"
[ "$(stat -c '%u %a' "$T/q.sock")" = "$NOBODY 600" ] ||
	fail "QMP socket is $(stat -c '%U %a' "$T/q.sock"), not nobody 600"
ok "QMP socket owned by nobody, mode 0600"
qmp query-status | grep -q '"running"' || fail "query-status"
mkdir "$T/out" && chown nobody "$T/out"
qmp pmemsave "{\"val\":0,\"size\":4096,\"filename\":\"$T/out/mem.bin\"}" >/dev/null ||
	fail "pmemsave"
[ "$(stat -c '%u %s' "$T/out/mem.bin")" = "$NOBODY 4096" ] ||
	fail "pmemsave file: $(stat -c '%U %s' "$T/out/mem.bin")"
ok "QMP works after the drop; pmemsave writes as nobody"
qmp quit >/dev/null || true
rc=0
wait "$PID" || rc=$?
PID=
[ "$rc" = 0 ] || { cat "$T/user.out"; fail "vmm exited $rc after quit"; }
ok "quit exits 0"
echo "t-privilege: all ok"
