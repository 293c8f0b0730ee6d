#!/usr/bin/python3
"""Reads p3d's counters over the DPDK telemetry v2 socket (what dpdk-telemetry.py shows).

  p3_telemetry.py PREFIX CMD                 print the JSON reply of CMD (e.g. /p3/stats)
  p3_telemetry.py PREFIX CMD KEY...          print the values of KEYs (a.b for nested), one per line
  p3_telemetry.py PREFIX --wait-socket SECS  wait until the socket accepts connections

PREFIX is p3d's EAL --file-prefix: the socket is /var/run/dpdk/PREFIX/dpdk_telemetry.v2.
Exit status 1 when the socket is not there or the key is missing.
"""
import json
import os
import socket
import sys
import time


def sock_path(prefix):
    base = os.environ.get("RUNTIME_DIRECTORY") or "/var/run/dpdk"
    return os.path.join(base, prefix, "dpdk_telemetry.v2")


def query(prefix, cmd):
    """The reply of CMD; a paged one (/p3/sessions, /p3/lcores: a "next" member) followed to its end."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    top = cmd.split(",")[0]
    merged = None
    try:
        s.connect(sock_path(prefix))
        s.recv(16384)  # greeting
        ask = cmd
        while True:
            s.send(ask.encode())
            reply = json.loads(s.recv(1 << 20).decode())
            body = reply.get(top, reply)
            if not isinstance(body, dict) or "next" not in body:
                return body if merged is None else {**merged, **(body or {})}
            nxt = body.pop("next")
            merged = {**(merged or {}), **body}
            ask = "%s,%d" % (top, nxt)
    finally:
        s.close()


def get(d, key):
    for part in key.split("."):
        d = d[part]
    return d


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    prefix = argv[1]
    if argv[2] == "--wait-socket":
        deadline = time.time() + float(argv[3] if len(argv) > 3 else 10)
        while time.time() < deadline:
            try:
                query(prefix, "/")
                return 0
            except OSError:
                time.sleep(0.1)
        return 1
    try:
        data = query(prefix, argv[2])
    except OSError as e:
        print("p3_telemetry: %s: %s" % (sock_path(prefix), e), file=sys.stderr)
        return 1
    if len(argv) == 3:
        print(json.dumps(data, indent=1, sort_keys=True))
        return 0
    try:
        for k in argv[3:]:
            print(get(data, k))
    except (KeyError, TypeError):
        print("p3_telemetry: no key %s in %s" % (k, argv[2]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
