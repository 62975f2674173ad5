#!/bin/bash
# sandbox.sh -- run a command inside a throwaway software-emulated (QEMU TCG) Linux guest
# that has /dev/kvm, for machines without hardware virtualization. The guest boots this
# host's kernel, shares the host's whole file system in over virtio-9p, chroots into it,
# cds to the caller's cwd and runs CMD; CMD's output streams to stdout as it runs and
# CMD's exit status becomes this script's exit status.
#
# Usage: sandbox.sh [--timeout SECS] [--mem MB] [--smp N] [--keep] -- CMD [ARGS...]
#   --timeout SECS  bound on the whole run, boot included (default 3000). On expiry QEMU
#                   is killed and the script exits 124.
#   --mem MB        guest memory (default 4096).
#   --smp N         emulated CPUs (default 1, the stable setting; N>1 uses one host
#                   thread round-robin unless SANDBOX_MTTCG=1). With 2, nested guests
#                   with 2 vCPUs often hung at "Bringing up secondary CPUs".
#   --keep          keep the run directory (kernel console log etc.) and print its path.
# Environment:
#   SANDBOX_ENV="A B"   extra variable names to pass in (always passed: PATH HOME USER
#                       LOGNAME LANG LC_ALL TZ TERM CI and every VMM_* variable).
#   SANDBOX_KVER        kernel version to boot (default: newest one that has both
#                       /boot/vmlinuz-KVER and /lib/modules/KVER).
#   SANDBOX_CACHE       cache dir (default ${XDG_CACHE_HOME:-~/.cache}/vmm-sandbox).
#   SANDBOX_SMP=N       same as --smp N.
#   SANDBOX_KVM_AMD_OPTS  kvm_amd module options inside (default "vgif=0", see below).
#   SANDBOX_STALL=SECS  declare the guest wedged (exit 125) after SECS without console
#                       output; the guest prints a heartbeat every 20 s (default 300).
# Exit status: CMD's status; 124 on timeout; 125 when the sandbox itself failed (QEMU
# died, guest panicked, no /dev/kvm inside, 9p mount failed...) -- with a message on stderr.
#
# Inside the guest: / is the host's / (9p, root, passthrough); /proc /sys /dev /dev/pts
# /dev/shm are fresh; /run and /tmp are guest tmpfs (unix sockets can't live on 9p, and
# the host's /tmp is NOT visible there); CMD's stdin is /dev/null; `modprobe` (also the
# kernel's auto-loading) uses the host's /lib/modules; kvm_amd is loaded with vgif=0.
# By default one CPU is emulated (-smp 1: multi-threaded TCG was seen to panic under
# load), so everything is slow: compare ratios measured in the same run, never
# absolute times.

# The whole script is one { ...; } group: bash parses it completely before running it,
# so editing this file never disturbs sandboxes that are already running.
{
set -euo pipefail

SELF=$(readlink -f "$0")
TIMEOUT=3000
MEM=4096
SMP=${SANDBOX_SMP:-1}
KEEP=0

die() { echo "sandbox: $*" >&2; exit 125; }

while [ $# -gt 0 ]; do
	case $1 in
	--timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
	--timeout=*) TIMEOUT=${1#*=}; shift ;;
	--mem) MEM=${2:?--mem needs a value}; shift 2 ;;
	--mem=*) MEM=${1#*=}; shift ;;
	--smp) SMP=${2:?--smp needs a value}; shift 2 ;;
	--smp=*) SMP=${1#*=}; shift ;;
	--keep) KEEP=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option '$1' (usage: sandbox.sh [--timeout SECS] [--mem MB] -- CMD...)" ;;
	esac
done
[ $# -gt 0 ] || die "no command given (usage: sandbox.sh [--timeout SECS] [--mem MB] -- CMD...)"
case $TIMEOUT in ''|*[!0-9]*) die "--timeout must be whole seconds" ;; esac
case $MEM in ''|*[!0-9]*) die "--mem must be megabytes" ;; esac
case $SMP in ''|*[!0-9]*|0) die "--smp must be a CPU count" ;; esac
# Several vCPUs are emulated round-robin by one host thread (thread=single), which
# avoids multi-threaded TCG (seen to panic the guest under load); SANDBOX_MTTCG=1
# uses one host thread per vCPU instead.
ACCEL=tcg
[ "$SMP" -gt 1 ] && [ "${SANDBOX_MTTCG:-0}" != 1 ] && ACCEL=tcg,thread=single

START=$SECONDS
QEMU=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found (install qemu-system-x86)"
[ -x /bin/busybox ] || die "/bin/busybox not found (install busybox-static)"
command -v cpio >/dev/null || die "cpio not found (install cpio)"

# --- kernel: the one whose modules are in /lib/modules -----------------------------
KVER=${SANDBOX_KVER:-}
if [ -z "$KVER" ]; then
	for k in $(ls -1 /lib/modules 2>/dev/null | sort -rV); do
		[ -f "/boot/vmlinuz-$k" ] && { KVER=$k; break; }
	done
fi
[ -n "$KVER" ] && [ -f "/boot/vmlinuz-$KVER" ] && [ -d "/lib/modules/$KVER" ] ||
	die "no kernel with both /boot/vmlinuz-KVER and /lib/modules/KVER (install linux-image-amd64)"
[ -r "/boot/vmlinuz-$KVER" ] || die "/boot/vmlinuz-$KVER is not readable"

# Modules for the outer guest, loaded in this order (dependencies resolved by modprobe
# from the staged modules.dep). Built-in ones are fine: modprobe treats them as loaded.
# The guest prints a heartbeat every HEARTBEAT s; no console output for STALL s means
# it is wedged (seen with nested KVM under TCG): qemu is then killed early.
HEARTBEAT=20
STALL=${SANDBOX_STALL:-300}
case $STALL in ''|*[!0-9]*) die "SANDBOX_STALL must be seconds" ;; esac
[ "$STALL" -ge $((HEARTBEAT * 3)) ] || die "SANDBOX_STALL must be at least $((HEARTBEAT * 3)) s"

KVM_MODULES="irqbypass ccp kvm kvm_amd"
# kvm_amd vgif=0: with QEMU 7.2's TCG emulation of virtual GIF, nested guests with 2+
# vCPUs (e.g. qemu -accel kvm -smp 2) hung at random points in about half the boots
# (sometimes wedging this whole guest); with vgif=0 every such boot completed.
KVM_AMD_OPTS=${SANDBOX_KVM_AMD_OPTS-vgif=0}
case $KVM_AMD_OPTS in *[!A-Za-z0-9_=,.\ -]*) die "SANDBOX_KVM_AMD_OPTS has odd characters" ;; esac
P9_MODULES="netfs fscache 9pnet virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci 9pnet_virtio 9p"

# --- the outer guest's /init (hashed into the cache key together with this script) --
guest_init() {
	cat <<'EOF'
#!/bin/sh
# vmm sandbox outer-guest init (generated by test/sandbox/sandbox.sh).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# stdio -> ttyS0, which the host writes to console.log (not to the caller's stdout).
exec </dev/null >/dev/console 2>&1
fatal() {
	echo "VMM-SANDBOX-FATAL: $*"
	sync
	poweroff -f
	sleep 10
}
say() { echo "VMM-SANDBOX: $*"; }

run=
for arg in $(cat /proc/cmdline); do
	case $arg in sandbox.run=*) run=${arg#sandbox.run=} ;; esac
done
[ -n "$run" ] || fatal "no sandbox.run= on the kernel command line"

say "loading kvm modules"
for m in @KVM_MODULES@; do
	case $m in kvm_amd) opts="@KVM_AMD_OPTS@" ;; *) opts= ;; esac
	modprobe "$m" $opts || say "warning: modprobe $m $opts failed"
done
[ -c /dev/kvm ] || modprobe kvm_intel 2>/dev/null
[ -c /dev/kvm ] || fatal "/dev/kvm did not appear (is SVM exposed? qemu -cpu max; dmesg: $(dmesg | grep -i -E 'kvm|svm' | tail -n 3 | tr '\n' ' '))"

say "loading 9p modules"
for m in @P9_MODULES@; do
	modprobe "$m" || fatal "modprobe $m failed"
done
ip link set lo up || say "warning: could not bring lo up"

mkdir -p /mnt /hostroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 host /mnt ||
	fatal "mounting the host's file system over 9p failed"
# A plain bind of the share (no submounts): the run directory stays reachable here
# even though /tmp and /run are covered by tmpfs inside the chroot.
mount -o bind /mnt /hostroot || fatal "bind mount of the 9p share failed"
R=/hostroot$run
[ -f "$R/cmd.sh" ] || fatal "$run/cmd.sh is not visible through 9p"

mount -t proc proc /mnt/proc || fatal "mount /proc in chroot failed"
mount -t sysfs sysfs /mnt/sys || fatal "mount /sys in chroot failed"
mount -t devtmpfs devtmpfs /mnt/dev || fatal "mount /dev in chroot failed"
mkdir -p /mnt/dev/pts /mnt/dev/shm /mnt/dev/net
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /mnt/dev/pts || fatal "mount /dev/pts failed"
mount -t tmpfs -o mode=1777 tmpfs /mnt/dev/shm
mount -t tmpfs -o mode=755 tmpfs /mnt/run || fatal "mount tmpfs /run failed"
mount -t tmpfs -o mode=1777 tmpfs /mnt/tmp || fatal "mount tmpfs /tmp failed"
[ -e /mnt/dev/net/tun ] || mknod -m 666 /mnt/dev/net/tun c 10 200
[ -e /mnt/dev/fd ] || ln -s /proc/self/fd /mnt/dev/fd
mkdir -p /mnt/run/vmm-sandbox
cp "$R/cmd.sh" /mnt/run/vmm-sandbox/cmd.sh
# Kernel module auto-loading (e.g. `ip link add type veth`) uses the host's modprobe.
echo /sbin/modprobe-chroot >/proc/sys/kernel/modprobe

# ttyS1 carries CMD's output to the caller's stdout: raw, so no \n -> \r\n.
stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null || say "warning: stty ttyS1 failed"
# Heartbeat on the console: the host declares the guest wedged when it stops.
(while :; do sleep @HEARTBEAT@; echo "VMM-SANDBOX: alive"; done) &
say "running command"
chroot /mnt /bin/bash /run/vmm-sandbox/cmd.sh </dev/null >/dev/ttyS1 2>&1
rc=$?
# Closing the last ttyS1 handle waits for the UART to drain; give it a moment more.
sleep 1
echo "$rc" >"$R/status.tmp" && mv "$R/status.tmp" "$R/status"
echo "VMM-SANDBOX-EXIT: $rc"
sync
poweroff -f
sleep 10
EOF
}

modprobe_chroot() {
	cat <<'EOF'
#!/bin/sh
# kernel.modprobe helper: run the host's modprobe against the host's /lib/modules.
exec chroot /mnt /sbin/modprobe "$@"
EOF
}

# --- cached initramfs ----------------------------------------------------------------
CACHE=${SANDBOX_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vmm-sandbox}
mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
KEY=$( { sha256sum "$SELF" /bin/busybox "/lib/modules/$KVER/modules.dep"; echo "$KVM_AMD_OPTS"; } |
	sha256sum | cut -c1-16)
INITRD=$CACHE/initramfs-$KVER-$KEY.img

build_initrd() {
	local stage m ko rel
	stage=$(mktemp -d "${TMPDIR:-/tmp}/vmm-sandbox-stage.XXXXXX")
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,mnt,hostroot,tmp,lib/modules/$KVER}
	cp /bin/busybox "$stage/bin/busybox"
	/bin/busybox --list-full | while read -r a; do
		[ "$a" = bin/busybox ] || ln -sf /bin/busybox "$stage/$a"
	done
	for m in $KVM_MODULES $P9_MODULES; do
		modprobe --show-depends -S "$KVER" "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }' || true
	done | sort -u | while read -r ko; do
		rel=${ko#/lib/modules/$KVER/}
		mkdir -p "$stage/lib/modules/$KVER/$(dirname "$rel")"
		cp "/lib/modules/$KVER/$rel" "$stage/lib/modules/$KVER/$rel"
	done
	cp "/lib/modules/$KVER/modules.builtin" "/lib/modules/$KVER/modules.builtin.modinfo" \
		"$stage/lib/modules/$KVER/" 2>/dev/null || true
	(cd "$stage/lib/modules/$KVER" && find kernel -name '*.ko*' | LC_ALL=C sort) \
		>"$stage/lib/modules/$KVER/modules.order"
	depmod -b "$stage" "$KVER" || { rm -rf "$stage"; die "depmod on the staged modules failed"; }
	guest_init | sed -e "s/@KVM_MODULES@/$KVM_MODULES/" -e "s/@P9_MODULES@/$P9_MODULES/" \
		-e "s/@KVM_AMD_OPTS@/$KVM_AMD_OPTS/" -e "s/@HEARTBEAT@/$HEARTBEAT/" >"$stage/init"
	modprobe_chroot >"$stage/sbin/modprobe-chroot"
	chmod 755 "$stage/init" "$stage/sbin/modprobe-chroot"
	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
		gzip -n -1 >"$INITRD.tmp.$$" || { rm -rf "$stage" "$INITRD.tmp.$$"; die "building the initramfs failed"; }
	mv -f "$INITRD.tmp.$$" "$INITRD"
	rm -rf "$stage"
}

if [ ! -s "$INITRD" ]; then
	exec 9>"$CACHE/.lock"
	flock -w 300 9 || die "timed out waiting for the cache lock $CACHE/.lock"
	if [ ! -s "$INITRD" ]; then
		echo "sandbox: building initramfs for $KVER -> $INITRD" >&2
		build_initrd
		# Drop stale images from older script versions / kernels.
		find "$CACHE" -maxdepth 1 -name 'initramfs-*.img' ! -name "${INITRD##*/}" -delete 2>/dev/null || true
	fi
	exec 9>&-
fi

# --- run directory: the command script, exit status, kernel console log --------------
RUN=$(mktemp -d "${TMPDIR:-/tmp}/vmm-sandbox-run.XXXXXX")
RUN=$(readlink -f "$RUN")
case $RUN in *[!A-Za-z0-9._/-]*) die "run dir path '$RUN' has unusual characters" ;; esac
QPID= WDPID=
cleanup() {
	[ -n "$WDPID" ] && kill "$WDPID" 2>/dev/null
	[ -n "$QPID" ] && kill -KILL "$QPID" 2>/dev/null
	if [ "$KEEP" = 1 ]; then echo "sandbox: run dir kept: $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
STOPPING=0
on_signal() {
	# The same signal can arrive twice (e.g. `timeout` signals the child and its group).
	[ "$STOPPING" = 1 ] && return
	STOPPING=1
	echo "sandbox: $2, stopping qemu" >&2
	exit "$1"
}
trap 'on_signal 130 interrupted' INT
trap 'on_signal 143 terminated' TERM
trap 'on_signal 129 hangup' HUP

{
	echo '# generated by sandbox.sh; run by bash in the chroot (%q quoting is bash syntax)'
	for v in PATH HOME USER LOGNAME LANG LC_ALL TZ TERM CI ${SANDBOX_ENV:-} \
		$(compgen -e | grep '^VMM_' || true); do
		[ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
	done
	printf 'cd %q || { echo "sandbox: cannot cd to %q inside the guest" >&2; exit 125; }\n' "$PWD" "$PWD"
	printf 'exec'; printf ' %q' "$@"; printf '\n'
} >"$RUN/cmd.sh"

LEFT=$((TIMEOUT - (SECONDS - START)))
[ "$LEFT" -gt 0 ] || { echo "sandbox: timed out after ${TIMEOUT}s before boot" >&2; exit 124; }

# --- boot ------------------------------------------------------------------------------
# ttyS0 = kernel console + init messages -> console.log; ttyS1 = CMD output -> stdout.
"$QEMU" -accel "$ACCEL" -cpu max -smp "$SMP" -m "$MEM" -machine pc \
	-nodefaults -display none -no-user-config -no-reboot \
	-kernel "/boot/vmlinuz-$KVER" -initrd "$INITRD" \
	-append "console=ttyS0 quiet panic=-1 mitigations=off sandbox.run=$RUN" \
	-serial "file:$RUN/console.log" -chardev stdio,id=out,signal=off -serial chardev:out \
	-virtfs local,path=/,mount_tag=host,security_model=passthrough,multidevs=remap \
	</dev/null 2>"$RUN/qemu.err" &
QPID=$!
# Watchdog: when the time is up (-> "timedout") or the guest console has been silent
# for STALL s (-> "stalled"), kill qemu (TERM, then KILL). Its own sleep is killed with
# it, so no stray sleeps outlive the script. The longest silence it saw goes to
# $RUN/silence, to tell how much of STALL a live guest ever needs.
(
	trap 'kill "$sp" 2>/dev/null; exit 0' TERM
	deadline=$((SECONDS + LEFT))
	longest=0
	while [ "$SECONDS" -lt "$deadline" ]; do
		sleep 10 & sp=$!; wait "$sp"
		last=$(stat -c %Y "$RUN/console.log" 2>/dev/null || echo 0)
		[ "$last" -gt 0 ] || continue
		quiet=$(( $(date +%s) - last ))
		[ "$quiet" -le "$longest" ] || { longest=$quiet; echo "$longest" >"$RUN/silence"; }
		[ "$quiet" -lt "$STALL" ] || { touch "$RUN/stalled"; break; }
	done
	[ -e "$RUN/stalled" ] || touch "$RUN/timedout"
	kill -TERM "$QPID" 2>/dev/null
	sleep 10 & sp=$!; wait "$sp"
	kill -KILL "$QPID" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
WDPID=$!
# From here on failures are handled explicitly (no errexit: a grep finding nothing
# must not end the script before it has reported).
set +e
wait "$QPID"
QRC=$?
QPID=
kill "$WDPID" 2>/dev/null; WDPID=
[ ! -s "$RUN/silence" ] || echo "sandbox: longest console silence $(cat "$RUN/silence") s" \
	"(heartbeat every ${HEARTBEAT} s, wedged after ${STALL} s)" >&2

show_console() {
	if [ -s "$RUN/qemu.err" ]; then
		echo "sandbox: qemu stderr:" >&2; sed 's/^/  | /' "$RUN/qemu.err" >&2
	fi
	if [ -s "$RUN/console.log" ]; then
		echo "sandbox: last lines of the guest console:" >&2
		tr -d '\r' <"$RUN/console.log" | grep -v '^VMM-SANDBOX: alive$' | tail -n 25 | sed 's/^/  | /' >&2
	fi
}

if [ -e "$RUN/stalled" ]; then
	echo "sandbox: FAILED: the sandbox guest stopped responding (no console output for ${STALL}s; nested KVM under TCG can wedge it); qemu killed" >&2
	show_console
	exit 125
fi
if [ -e "$RUN/timedout" ]; then
	echo "sandbox: TIMEOUT: command did not finish within ${TIMEOUT}s; qemu killed" >&2
	show_console
	exit 124
fi
if [ -s "$RUN/status" ]; then
	rc=$(cat "$RUN/status")
elif rc=$(tr -d '\r' <"$RUN/console.log" 2>/dev/null | sed -n 's/^VMM-SANDBOX-EXIT: \([0-9]*\)$/\1/p' | tail -n 1) && [ -n "$rc" ]; then
	: # status file missing but the console has it
else
	msg=$(tr -d '\r' <"$RUN/console.log" 2>/dev/null | grep -m1 'VMM-SANDBOX-FATAL:' | sed 's/^.*VMM-SANDBOX-FATAL: //') || true
	if [ -n "$msg" ]; then
		echo "sandbox: FAILED inside the guest: $msg" >&2
	elif grep -q 'Kernel panic' "$RUN/console.log" 2>/dev/null; then
		echo "sandbox: FAILED: the sandbox guest kernel panicked" >&2
	else
		echo "sandbox: FAILED: qemu exited (status $QRC) without reporting the command's exit status" >&2
	fi
	show_console
	exit 125
fi
case $rc in ''|*[!0-9]*) echo "sandbox: bad exit status '$rc' from the guest" >&2; exit 125 ;; esac
exit "$rc"
}
