#!/bin/bash
# t-ready.sh BUILD -- the units' readiness protocol: runs each unit's
# ExecStart command line (as systemd would, with %i and the paths mapped to
# BUILD and a temporary config running the test guest) with NOTIFY_SOCKET
# pointing at a datagram socket this test listens on. On READY=1 the test
# freezes vmm (SIGSTOP) and connects to the QMP socket: that must succeed, so
# READY=1 came only after the socket accepted. Then it checks the greeting and
# STATUS=, quits through QMP and expects STOPPING=1 and exit status 0.
# Exit 0 pass, 1 fail, 77 skip (no /dev/kvm).
set -euo pipefail
BUILD=$(cd "${1:?usage: t-ready.sh BUILD}" && pwd)
[ -e /dev/kvm ] || { echo "t-ready: SKIP: no /dev/kvm"; exit 77; }
# Sockets need a local file system (the sandbox shares / over 9p).
W=$(mktemp -d /run/vmm-t-ready.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$W"' EXIT
cat >"$W/t-ready.conf" <<CONF
# test guest, no console
kernel = $BUILD/test/guest/test-guest
memory = 64M
cpus = 1
serial = none
CONF

status=0
for unit in vmm@.service vmm-incoming@.service; do
	python3 - "$BUILD" "$W" "$unit" <<'PY' || status=1
import os, shlex, signal, socket, subprocess, sys, time

build, w, unit = sys.argv[1:4]
text = open(os.path.join(build, "systemd", unit)).read()
line = next(l for l in text.splitlines() if l.startswith("ExecStart="))[len("ExecStart="):]
argv = shlex.split(line)
bindir = os.path.dirname(argv[0])
env = dict(os.environ, VMM_INCOMING="defer")
def mapword(a):
    a = a.replace("%i", "t-ready").replace("${VMM_INCOMING}", env["VMM_INCOMING"])
    a = a.replace(bindir + "/vmm", os.path.join(build, "vmm"))
    if a.endswith("/vmm/t-ready.conf"):
        a = os.path.join(w, "t-ready.conf")
    return a.replace("/run/vmm/", w + "/")
argv = [mapword(a) for a in argv]
qmp = os.path.join(w, "t-ready.qmp")
assert any(qmp in a for a in argv), "ExecStart does not set the QMP socket: %s" % argv

def fail(msg):
    print("t-ready: FAIL: %s: %s" % (unit, msg))
    sys.exit(1)

ns = os.path.join(w, "notify.sock")
if os.path.exists(ns):
    os.unlink(ns)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind(ns)
srv.settimeout(60)
env["NOTIFY_SOCKET"] = ns
proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
msgs = []
try:
    while True:
        try:
            m = srv.recv(4096).decode()
        except socket.timeout:
            fail("no READY=1 within 60 s; vmm said: %r" % proc.stdout.read1(4096))
        msgs.append(m)
        if "READY=1" in m.split("\n"):
            break
    os.kill(proc.pid, signal.SIGSTOP)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(qmp)
    except OSError as e:
        fail("READY=1 arrived but the QMP socket does not accept: %s" % e)
    os.kill(proc.pid, signal.SIGCONT)
    print("t-ready: %s: READY=1 after the QMP socket accepts: ok" % unit)
    st = [l for l in msgs[-1].split("\n") if l.startswith("STATUS=")]
    want = "incoming" if "incoming" in unit else "running"
    if not st or want not in st[0]:
        fail("READY=1 without STATUS=...%s...: %r" % (want, msgs[-1]))
    print("t-ready: %s: %s: ok" % (unit, st[0]))
    c.settimeout(30)
    f = c.makefile("rwb")
    greet = f.readline()
    if b'"QMP"' not in greet:
        fail("no QMP greeting: %r" % greet)
    mode = os.stat(qmp).st_mode & 0o777
    if mode != 0o600:
        fail("QMP socket mode is %o, not 600" % mode)
    for cmd in (b'{"execute":"qmp_capabilities"}', b'{"execute":"quit"}'):
        f.write(cmd + b"\r\n")
        f.flush()
        f.readline()
    rc = proc.wait(60)
    srv.settimeout(5)
    try:
        while True:
            msgs.append(srv.recv(4096).decode())
            if "STOPPING=1" in msgs[-1]:
                break
    except socket.timeout:
        fail("no STOPPING=1 (got %r)" % msgs)
    print("t-ready: %s: STOPPING=1 on quit: ok" % unit)
    if rc != 0:
        fail("vmm exited %d after quit: %r" % (rc, proc.stdout.read()))
    print("t-ready: %s: exit status 0: ok" % unit)
finally:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()
PY
done
[ $status = 0 ] && echo "t-ready: all ok"
exit $status
