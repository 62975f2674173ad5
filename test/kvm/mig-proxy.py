#!/usr/bin/env python3
"""Faulty link for the migration tests: listens on one unix socket, connects
to another, and forwards both directions, misbehaving in the source-to-
destination direction as told:
  pass        forward faithfully
  flip:N      flip one bit of byte N
  cut:N       close both sides after N bytes (a cut link, a truncated stream)
  stall:N     stop forwarding after N bytes but keep both sides open
Accepts one connection, exits when it is over (or after 600 s)."""
import os
import signal
import socket
import sys
import threading


def main():
    listen_path, target_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    kind, _, arg = mode.partition(":")
    at = int(arg) if arg else 0
    signal.alarm(600)
    if os.path.exists(listen_path):
        os.unlink(listen_path)
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(listen_path)
    ls.listen(1)
    a, _ = ls.accept()
    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    b.connect(target_path)
    done = threading.Event()

    def close_all():
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        done.set()

    def forward(src, dst, faulty):
        seen = 0
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if faulty and kind == "flip" and seen <= at < seen + len(data):
                    data = bytearray(data)
                    data[at - seen] ^= 0x10
                    data = bytes(data)
                if faulty and kind in ("cut", "stall") and seen + len(data) > at:
                    dst.sendall(data[:max(0, at - seen)])
                    if kind == "cut":
                        break
                    done.wait(600)
                    return
                dst.sendall(data)
                seen += len(data)
        except OSError:
            pass
        close_all()

    t1 = threading.Thread(target=forward, args=(a, b, True), daemon=True)
    t2 = threading.Thread(target=forward, args=(b, a, False), daemon=True)
    t1.start()
    t2.start()
    done.wait(600)


if __name__ == "__main__":
    main()
