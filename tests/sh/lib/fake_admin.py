#!/usr/bin/env python3
"""A stand-in for p3d's admin socket (DESIGN.md §Administration) for p3ctl's tests: answers
each request line with a fixed response chosen by the request, and logs every request line to
LOG. Usage: fake_admin.py SOCKET LOG"""
import json
import os
import socketserver
import sys

SESSIONS = [
    {"id": 1, "state": "up", "peer": "192.0.2.1:4500", "identity": "CN=branch1", "group": "branches",
     "uptime_s": 93784, "rekeys": 12, "rekey_failures": 0, "last_rekey_s": 312, "last_rekey_result": "ok",
     "key_age_s": 312, "lanes": {"in": 4, "out": 4}, "key_type": "AES256", "rekey_dh": True,
     "arrays": {"data": {"age_s": 60, "unused": 7}, "control": {"age_s": None, "unused": 0}},
     "heartbeat_rtt_ms": 3, "rx_pkts": 1000, "tx_pkts": 2000, "rx_bytes": 1, "tx_bytes": 2,
     "drops": {"auth": 1, "replay": 2, "other": 3}},
    {"id": 7, "state": "connecting", "peer": "198.51.100.7:500", "identity": "", "group": "",
     "uptime_s": 0, "rekeys": 0, "rekey_failures": 0, "last_rekey_s": None, "last_rekey_result": None,
     "key_age_s": 0, "lanes": {"in": 0, "out": 0}, "key_type": "AES128", "rekey_dh": False,
     "arrays": {"data": {"age_s": None, "unused": 0}, "control": {"age_s": None, "unused": 0}},
     "heartbeat_rtt_ms": None, "rx_pkts": 0, "tx_pkts": 0, "rx_bytes": 0, "tx_bytes": 0,
     "drops": {"auth": 0, "replay": 0, "other": 0}},
]
AUDIT = [
    {"time": "2026-12-07T00:00:01Z", "uid": 0, "user": "root", "cmd": "status", "target": "all", "result": "ok"},
    {"time": "2026-12-07T00:00:02Z", "uid": 1001, "user": "alice", "cmd": "rekey", "target": "id 1", "result": "denied"},
]
AUDIT_TIMES = {"2026-12-07T00:00:01Z": 1796601601, "2026-12-07T00:00:02Z": 1796601602}


def error(kind, message):
    return {"v": 1, "ok": False, "error": {"kind": kind, "message": message}}


def answer(req):
    cmd, target = req.get("cmd"), req.get("target", {})
    tid, group = target.get("id"), target.get("group")
    if tid == 99 or group == "nope":
        return error("unknown_id", "no remote %s" % (tid if tid is not None else group))
    if tid == 66:
        return error("denied", "uid 1001 (alice) is a viewer")
    if tid == 77:
        return error("bad_request", "target: expected id, group or all")
    if tid == 13:
        return error("failed", "a rekey is already under way")
    if tid == 14:
        return error("unsupported", "not in this version")
    if cmd == "status":
        if tid is not None:
            s = [x for x in SESSIONS if x["id"] == tid]
        elif group is not None:
            s = [x for x in SESSIONS if x["group"] == group]
        else:
            s = SESSIONS
        return {"v": 1, "ok": True, "result": {"role": "primary", "sessions": s}}
    if cmd in ("rekey", "keyarray.generate", "keyarray.flush"):
        done = [tid] if tid is not None else [1, 3]
        return {"v": 1, "ok": True, "result": {"done": done}}
    if cmd in ("shutdown", "start"):
        return {"v": 1, "ok": True, "result": {"done": [tid] if tid is not None else [1, 3]}}
    if cmd in ("remote.add", "remote.set", "remote.remove", "reload"):
        diff = {"added": [], "removed": [], "changed": [], "restart_needed": []}
        if cmd == "remote.add":
            diff["added"] = [3]
        elif cmd == "remote.remove":
            diff["removed"] = [tid]
        elif cmd == "remote.set":
            keys = [kv[0] for kv in req.get("args", {}).get("settings", [])]
            diff["changed"] = [{"id": tid, "fields": keys, "reestablished": "rekey_wait" in keys}]
        else:
            diff["restart_needed"] = ["dataplane.wan"]
        return {"v": 1, "ok": True, "result": diff}
    if cmd == "config.save":
        path = req.get("args", {}).get("path", "/etc/p3/p3d.conf")
        return {"v": 1, "ok": True, "result": {"path": path, "previous": path + ".prev"}}
    if cmd == "audit":
        since = req.get("args", {}).get("since", 0)
        if since == 5:   # the most an answer holds: 1000 lines, longer than a request may be
            line = dict(AUDIT[0], target="group with a long name " + "x" * 100)
            return {"v": 1, "ok": True, "result": {"lines": [line] * 1000}}
        return {"v": 1, "ok": True, "result": {"lines": [a for a in AUDIT if since <= AUDIT_TIMES[a["time"]]]}}
    return error("bad_request", "unknown command")


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(65537)
        with open(sys.argv[2], "ab") as log:
            log.write(line)
        try:
            req = json.loads(line)
        except ValueError:
            self.wfile.write(b'{"v":1,"ok":false,"error":{"kind":"bad_request","message":"not JSON"}}\n')
            return
        tid = req.get("target", {}).get("id")
        if tid == 55:
            self.wfile.write(b"this is not json\n")
            return
        if tid == 56:
            return   # closes without an answer
        self.wfile.write(json.dumps(answer(req), separators=(",", ":")).encode() + b"\n")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if os.path.exists(sys.argv[1]):
    os.unlink(sys.argv[1])
Server(sys.argv[1], Handler).serve_forever()
