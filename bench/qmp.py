#!/usr/bin/env python3
"""Tiny QMP driver for the benchmarks; works the same against vmm and QEMU.
usage: qmp.py SOCKET COMMAND [ARGS-JSON]   prints the "return" value as JSON
       qmp.py SOCKET wait-migration SECS   polls query-migrate until it ends,
                                           prints the final query-migrate
       qmp.py SOCKET migrate-wait ARGS-JSON SECS PID...
           migrate, then wait-migration, and add "bench": the CPU time the PIDs
           used meanwhile (ms) and the peak resident memory of each beyond
           guest RAM (KiB: all of smaps' Rss but the mapping exactly
           BENCH_GUEST_KIB long, default 512 MiB: vmm's guest RAM),
           sampled at every poll: one process does it all, since under
           emulation every extra process slows the migration it measures;
           with BENCH_DST_QMP (the destination's socket) also the time the
           guest stood still as both VMMs report it the same way: from the
           source's STOP event to the destination's RESUME (ms, by the
           events' own timestamps)"""
import json
import os
import socket
import sys
import time

EVENTS = {}   # connection -> the events seen on it, in order


def connect(path, tries=600):
    for _ in range(tries):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            f = s.makefile("rw")
            json.loads(f.readline())
            call(f, "qmp_capabilities")
            return f
        except (OSError, ValueError):
            time.sleep(0.1)
    sys.exit(f"qmp.py: cannot connect to {path}")


def call(f, cmd, args=None):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\r\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "event" in r:
            EVENTS.setdefault(f, []).append(r)
            continue
        if "error" in r:
            sys.exit(f"qmp.py: {cmd}: {r['error'].get('desc')}")
        return r["return"]


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as st:
        fields = st.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    ram = int(os.environ.get("BENCH_GUEST_KIB", 512 * 1024))
    kib, size = 0, 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            name = line.split(maxsplit=1)[0]
            if name == "Size:":
                size = int(line.split()[1])
            elif name == "Rss:" and size != ram:
                kib += int(line.split()[1])
    return kib


def wait_migration(f, secs, pids=()):
    deadline = time.time() + secs
    peak = [rss_kib(p) for p in pids]
    r = {}
    while time.time() < deadline:
        r = call(f, "query-migrate")
        peak = [max(k, rss_kib(p)) for k, p in zip(peak, pids)]
        if r.get("status") in ("completed", "failed", "cancelled"):
            return r, peak
        time.sleep(0.5)   # the VMMs time the migration themselves; polling is overhead
    sys.exit(f"qmp.py: migration did not finish in time; last query-migrate: {json.dumps(r)}")


def event_s(f, name, last=False):
    """Timestamp (s) of the first (or LAST) NAME event seen on F, or None."""
    t = [e["timestamp"] for e in EVENTS.get(f, []) if e["event"] == name]
    if not t:
        return None
    ts = t[-1] if last else t[0]
    return ts["seconds"] + ts["microseconds"] / 1e6


def stop_to_resume_ms(src, dst, secs=10):
    """From the source's last STOP to the destination's first RESUME (the
    destination may start a moment after the source reports completion)."""
    deadline = time.time() + secs
    while not event_s(dst, "RESUME") and time.time() < deadline:
        call(dst, "query-status")
        time.sleep(0.05)
    stop, resume = event_s(src, "STOP", last=True), event_s(dst, "RESUME")
    return round((resume - stop) * 1000, 1) if stop and resume else None


def main():
    f = connect(sys.argv[1])
    if sys.argv[2] == "wait-migration":
        print(json.dumps(wait_migration(f, float(sys.argv[3]))[0]))
        return
    if sys.argv[2] == "migrate-wait":
        pids = [int(p) for p in sys.argv[5:]]
        dst = connect(os.environ["BENCH_DST_QMP"]) if os.environ.get("BENCH_DST_QMP") else None
        cpu0 = sum(cpu_ms(p) for p in pids)
        call(f, "migrate", json.loads(sys.argv[3]))
        r, peak = wait_migration(f, float(sys.argv[4]), pids)
        r["bench"] = {"cpu-ms": sum(cpu_ms(p) for p in pids) - cpu0, "peak-kib": peak}
        if dst:
            r["bench"]["stop-to-resume-ms"] = stop_to_resume_ms(f, dst)
        print(json.dumps(r))
        return
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(call(f, sys.argv[2], args)))


if __name__ == "__main__":
    main()
