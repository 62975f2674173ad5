#!/usr/bin/env python3
"""Tiny QMP driver for the benchmarks; works the same against vmm and QEMU.
usage: qmp.py SOCKET COMMAND [ARGS-JSON]   prints the "return" value as JSON
       qmp.py SOCKET wait-migration SECS   polls query-migrate until it ends,
                                           prints the final query-migrate"""
import json
import socket
import sys
import time


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
            continue
        if "error" in r:
            sys.exit(f"qmp.py: {cmd}: {r['error'].get('desc')}")
        return r["return"]


def main():
    f = connect(sys.argv[1])
    if sys.argv[2] == "wait-migration":
        deadline = time.time() + float(sys.argv[3])
        r = {}
        while time.time() < deadline:
            r = call(f, "query-migrate")
            if r.get("status") in ("completed", "failed", "cancelled"):
                print(json.dumps(r))
                return
            time.sleep(0.5)   # the VMMs time the migration themselves; polling is overhead
        sys.exit(f"qmp.py: migration did not finish in time; last query-migrate: {json.dumps(r)}")
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(call(f, sys.argv[2], args)))


if __name__ == "__main__":
    main()
