#!/usr/bin/env python3
"""QMP test client for test/kvm/t-qmp.sh (python3 stdlib only).

    qmp-client.py SOCK scenario [--cpus N]   every command, error class, malformed
                                             input, two concurrent clients, stop/cont
    qmp-client.py SOCK powerdown             system_powerdown; both clients must see
                                             SHUTDOWN {"guest":true} and then EOF
    qmp-client.py SOCK wait-event NAME       prints "ready" once connected, then the
                                             first NAME event (JSON) when it comes
    qmp-client.py SOCK events                prints "ready" once connected, then
                                             every event (JSON, one a line) until
                                             the VMM closes the connection

Prints one "ok: ..." line per check; exits 1 with "FAIL: ..." on the first failure.
"""
import json
import socket
import sys
import threading
import time

TIMEOUT = 120.0          # everything is emulated in the sandbox: be patient


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok: " + what, flush=True)


class Client:
    """One QMP connection; events seen while waiting for replies are kept."""

    def __init__(self, path, name):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()

    def send_raw(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def recv_line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        if not line.endswith(b"\r"):
            raise Fail("%s: message not terminated by CRLF: %r" % (self.name, line[:80]))
        return line[:-1]

    def recv(self):
        line = self.recv_line()
        if line is None:
            raise Fail("%s: connection closed unexpectedly" % self.name)
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise Fail("%s: not a JSON object: %r" % (self.name, line[:80]))
        return msg

    def reply(self):
        """Next non-event message; events are queued in self.events."""
        while True:
            msg = self.recv()
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    def raw(self, data):
        self.send_raw(data)
        return self.reply()

    def cmd(self, name, args=None, **extra):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        req.update(extra)
        return self.raw(json.dumps(req) + "\r\n")

    def ok(self, name, args=None):
        r = self.cmd(name, args)
        if "return" not in r:
            raise Fail("%s: %s failed: %r" % (self.name, name, r))
        return r["return"]

    def wait_event(self, name, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                msg = self.recv()
            except socket.timeout:
                raise Fail("%s: no %s event within %ds" % (self.name, name, timeout))
            finally:
                self.sock.settimeout(TIMEOUT)
            if "event" not in msg:
                raise Fail("%s: unexpected reply while waiting for %s: %r"
                           % (self.name, name, msg))
            self.events.append(msg)

    def close(self):
        self.sock.close()


def expect_error(c, data, cls, desc=None, what=None):
    r = c.raw(data) if isinstance(data, (str, bytes)) else c.cmd(*data)
    err = r.get("error", {})
    good = err.get("class") == cls and (desc is None or err.get("desc") == desc)
    check(good, "%s -> %s%s (got %r)" % (what or repr(data)[:60], cls,
                                          " '%s'" % desc if desc else "", r))


def check_event(ev, name):
    ts = ev.get("timestamp", {})
    check(ev["event"] == name and isinstance(ts.get("seconds"), int)
          and isinstance(ts.get("microseconds"), int), "%s event with timestamp" % name)


def status(c, expect):
    r = c.ok("query-status")
    check(r.get("status") == expect and r.get("running") == (expect == "running")
          and r.get("singlestep") is False, "query-status %s (%r)" % (expect, r))


def greeting_and_negotiation(path):
    a, b = Client(path, "A"), Client(path, "B")
    g = a.greeting.get("QMP", {})
    v = g.get("version", {})
    check(all(isinstance(v.get("qemu", {}).get(k), int) for k in ("major", "minor", "micro"))
          and str(v.get("package", "")).startswith("vmm") and g.get("capabilities") == [],
          "greeting %r" % a.greeting)
    expect_error(a, ("query-status",), "CommandNotFound",
                 "Expecting capabilities negotiation with 'qmp_capabilities'",
                 "query-status before negotiation")
    for c in (a, b):
        c.ok("qmp_capabilities")
    expect_error(a, ("qmp_capabilities",), "CommandNotFound", None, "second qmp_capabilities")
    return a, b


def queries(a, cpus):
    v = a.ok("query-version")
    check("qemu" in v and "package" in v, "query-version %r" % v)
    names = {c["name"] for c in a.ok("query-commands")}
    want = {"qmp_capabilities", "query-version", "query-commands", "query-status", "stop",
            "cont", "quit", "system_powerdown", "system_reset", "query-cpus-fast"}
    check(want <= names, "query-commands lists %s" % sorted(want))
    status(a, "running")
    cl = a.ok("query-cpus-fast")
    check(len(cl) == cpus and sorted(c["cpu-index"] for c in cl) == list(range(cpus))
          and all(isinstance(c["thread-id"], int) and c["thread-id"] > 0
                  and c["target"] == "x86_64" and c["qom-path"].startswith("/machine/")
                  for c in cl), "query-cpus-fast %r" % cl)


def errors(a):
    expect_error(a, ("no-such-command",), "CommandNotFound",
                 "The command no-such-command has not been found")
    expect_error(a, "[1]\r\n", "GenericError", "QMP input must be a JSON object")
    expect_error(a, '{"id":1}\r\n', "GenericError", "QMP input lacks member 'execute'")
    expect_error(a, '{"execute":"stop","arguments":[]}\r\n', "GenericError",
                 "QMP input member 'arguments' must be an object")
    expect_error(a, '{"execute":"stop","bogus":1}\r\n', "GenericError",
                 "QMP input member 'bogus' is unexpected")
    expect_error(a, ("cont", {"x": 1}), "GenericError", "Parameter 'x' is unexpected")
    expect_error(a, '{"execute": tru}\r\n', "GenericError", None, "malformed JSON")
    expect_error(a, "}}}\r\n", "GenericError", None, "garbage")
    r = a.cmd("query-status", id={"tag": ["x", 1]})
    check(r.get("id") == {"tag": ["x", 1]}, "id echoed on success")
    r = a.cmd("no-such-command", id="e1")
    check(r.get("id") == "e1" and "error" in r, "id echoed on error")
    a.send_raw('{"execute":"query-')          # one request in two writes
    time.sleep(0.05)
    r = a.raw('status","id":7}{"execute":"query-status","id":8}\r\n')
    check(r.get("id") == 7 and a.reply().get("id") == 8, "split and batched requests")


def stop_cont(a, b):
    r = a.cmd("stop", id="stop-1")
    check(r.get("return") == {} and r.get("id") == "stop-1", "stop")
    check_event(a.wait_event("STOP"), "STOP")
    check_event(b.wait_event("STOP"), "STOP")
    status(a, "paused")
    status(b, "paused")
    a.ok("stop")                              # no-op when paused
    r = a.cmd("cont", id="cont-1")
    check(r.get("return") == {} and r.get("id") == "cont-1", "cont")
    check_event(a.wait_event("RESUME"), "RESUME")
    check_event(b.wait_event("RESUME"), "RESUME")
    status(a, "running")
    a.ok("cont")                              # no-op when running


def concurrent(path, a, b):
    """B hammers query-status from a thread while A stops and continues."""
    bad = []

    def hammer():
        try:
            for _ in range(100):
                st = b.ok("query-status")["status"]
                if st not in ("running", "paused"):
                    bad.append(st)
        except Exception as e:            # reported below
            bad.append(repr(e))

    t = threading.Thread(target=hammer)
    t.start()
    for _ in range(3):
        a.ok("stop")
        a.wait_event("STOP")
        a.ok("cont")
        a.wait_event("RESUME")
    t.join()
    check(not bad, "100 query-status on B during 3 stop/cont on A (%r)" % bad[:3])
    for _ in range(3):
        b.wait_event("STOP")
        b.wait_event("RESUME")
    status(b, "running")
    check(not b.events, "B saw exactly 3 STOP and 3 RESUME (left: %r)" % b.events)


def hostile_clients(path, a):
    c = Client(path, "big")
    c.ok("qmp_capabilities")
    c.send_raw('{"execute":"stop","id":"' + "a" * (70 * 1024))
    r = c.recv()
    check(r.get("error", {}).get("class") == "GenericError", "oversized request answered")
    try:
        gone = c.recv_line() is None
    except OSError:
        gone = True
    check(gone, "oversized request's client dropped")
    c.close()
    status(a, "running")

    d = Client(path, "vanish")
    d.ok("qmp_capabilities")
    d.send_raw('{"execute":"stop"}\r\n')
    d.close()                                 # gone before the reply
    a.wait_event("STOP")
    status(a, "paused")
    a.ok("cont")
    a.wait_event("RESUME")
    check(True, "client vanishing mid-command does not matter")

    f = Client(path, "flood")
    f.ok("qmp_capabilities")
    req = b'{"execute":"query-commands"}' * 64
    dropped = False
    deadline = time.monotonic() + 60
    f.sock.settimeout(5)
    while not dropped and time.monotonic() < deadline:
        try:
            f.sock.sendall(req)
        except socket.timeout:
            continue                          # slow server: keep pushing
        except OSError:
            dropped = True
    if not dropped:                           # drain: it must end in EOF
        f.sock.settimeout(TIMEOUT)
        try:
            while f.sock.recv(1 << 20):
                pass
            dropped = True
        except socket.timeout:
            pass
        except OSError:
            dropped = True
    check(dropped, "a client that never reads is dropped")
    f.close()
    status(a, "running")


def scenario(path, cpus):
    a, b = greeting_and_negotiation(path)
    queries(a, cpus)
    errors(a)
    stop_cont(a, b)
    concurrent(path, a, b)
    hostile_clients(path, a)
    a.close()
    b.close()


def powerdown(path):
    a, b = Client(path, "A"), Client(path, "B")
    for c in (a, b):
        c.ok("qmp_capabilities")
    check(a.ok("system_powerdown") == {}, "system_powerdown")
    for c in (a, b):
        ev = c.wait_event("SHUTDOWN")
        check_event(ev, "SHUTDOWN")
        check(ev.get("data") == {"guest": True, "reason": "guest-shutdown"},
              "%s: SHUTDOWN data %r" % (c.name, ev.get("data")))
        try:
            while c.recv_line() is not None:
                pass
            closed = True
        except OSError:
            closed = True
        check(closed, "%s: connection closed when vmm exits" % c.name)


def wait_event(path, name):
    c = Client(path, "client")
    c.ok("qmp_capabilities")
    print("ready", flush=True)
    ev = c.wait_event(name)
    check_event(ev, name)
    print(json.dumps(ev), flush=True)


def events(path):
    c = Client(path, "client")
    c.ok("qmp_capabilities")
    print("ready", flush=True)
    c.sock.settimeout(None)
    while (line := c.recv_line()) is not None:
        print(line.decode(), flush=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, mode = sys.argv[1], sys.argv[2]
    cpus = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--cpus" else 1
    try:
        if mode == "scenario":
            scenario(path, cpus)
        elif mode == "powerdown":
            powerdown(path)
        elif mode == "events":
            events(path)
        elif mode == "wait-event" and len(sys.argv) > 3:
            wait_event(path, sys.argv[3])
        else:
            sys.exit(__doc__)
    except (Fail, OSError, ValueError, KeyError) as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
