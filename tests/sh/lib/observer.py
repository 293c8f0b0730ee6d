#!/usr/bin/python3
"""The observer of tests/sh/54-invisible-rekey.sh: reads WAN captures the way someone watching
the link would, then decrypts them with the test-only key log (p3d --insecure-key-log).

  observer.py --capture DIR=PCAP ... --keylog DIR=SENDER_LOG,RECEIVER_LOG ... --lanes N --control-len L
              [--control-port 5653] [--min-switches N] [--min-jitter-ms MS] [--json OUT]

A capture is named by its direction (e.g. a2b=bwan.pcap: what arrived at B's WAN port). Checks,
each printed with what was measured; every failure is printed, then the exit status is 1:

 1. as an observer: per direction, exactly N P3 IDs (one per sender lane) for the whole run, and
    per P3 ID sequences strictly increasing in capture order. Each capture is taken on the
    receiving end of one veth (tcpdump -Q in): a veth delivers in order and each lane has one
    sending worker, so no reordering is allowed for.
 2. with the key log: every P3 packet opens under a logged key of its P3 ID (lane n of a logged
    base derived by HKDF as DESIGN.md §Wire format says), and under exactly one (every key tried
    where two could be in play: around each key change, every control packet, and a regular
    sample); the key changes (rekeys) seen that way, and the spread of the intervals between
    them (the rekey timer's jitter).
 3. every control packet (inner IPv4 to the other appliance's WAN address, TCP to the session
    port) has the same inner length, L.

Written from DESIGN.md alone; the pcap reader is its own (no scapy: a run is ~10^5 packets).
"""
import argparse
import json
import os
import statistics
import struct
import sys
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from p3_decode import lane_keys, p3_payload, strip_l2  # noqa: E402

from cryptography.exceptions import InvalidTag  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402


EXACT_NEAR = 64      # packets either side of a key change on which every key is tried
EXACT_EVERY = 16     # and every this many-th packet


def read_pcap(path):
    """[(time, frame bytes)], linktype. Classic pcap, either byte order, us or ns."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError("%s: not a pcap file" % path)
    ns = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(e + "I", data, 20)[0]
    off, out = 24, []
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(e + "IIII", data, off)
        off += 16
        out.append((sec + frac * (1e-9 if ns else 1e-6), data[off:off + incl]))
        off += incl
    return out, linktype


def read_keylog(path, direction):
    """{base: {(key, salt): lanes}} from the lines of one direction (rx or tx) of one key log.
    One key may be logged with different lane counts (the receiver's block, the sender's lanes):
    the widest is kept."""
    keys = defaultdict(dict)
    lines = 0
    with open(path) as f:
        for line in f:
            fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
            if fields.get("dir") != direction or not {"p3_id", "lanes", "key", "salt"} <= fields.keys():
                continue
            lines += 1
            ks = (bytes.fromhex(fields["key"]), bytes.fromhex(fields["salt"]))
            base = int(fields["p3_id"], 16)
            keys[base][ks] = max(keys[base].get(ks, 0), int(fields["lanes"]))
    return keys, lines


class KeyBook:
    """Every logged key that could open a P3 ID of one direction (the sender's tx lines and the
    receiver's rx lines, merged; each key once): [(label, AESGCM, salt)], lane-derived."""

    def __init__(self, logs):
        self.logged = defaultdict(dict)
        self.lines = 0
        for path, direction in logs:
            keys, n = read_keylog(path, direction)
            self.lines += n
            for base, entries in keys.items():
                for ks, lanes in entries.items():
                    self.logged[base][ks] = max(self.logged[base].get(ks, 0), lanes)
        self.cache = {}

    def distinct(self):
        return sum(len(v) for v in self.logged.values())

    def for_id(self, pid):
        if pid not in self.cache:
            cands = []
            for base, entries in self.logged.items():
                for (k, s), lanes in entries.items():
                    if base <= pid < base + lanes:
                        lk, ls = lane_keys(k, s, pid - base)
                        cands.append(((base, k.hex()[:8]), AESGCM(lk), ls))
            self.cache[pid] = cands
        return self.cache[pid]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capture", action="append", required=True, help="DIRECTION=FILE")
    ap.add_argument("--keylog", action="append", default=[],
                    help="DIRECTION=SENDER_LOG,RECEIVER_LOG: the key logs of that direction's sender and receiver")
    ap.add_argument("--lanes", type=int, default=1, help="lanes each sender sends on")
    ap.add_argument("--control-len", type=int, default=None, help="inner length every control packet must have")
    ap.add_argument("--control-port", type=int, default=5653)
    ap.add_argument("--min-switches", type=int, default=0, help="key changes each direction must show")
    ap.add_argument("--min-jitter-ms", type=float, default=0.0,
                    help="the intervals between key changes must spread over at least this much")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    failures = []
    report = {}

    def check(ok, what):
        print(("ok:   " if ok else "FAIL: ") + what, flush=True)
        if not ok:
            failures.append(what)

    books = {}
    for spec in a.keylog:
        name, logs = spec.split("=", 1)
        sender, receiver = logs.split(",")
        books[name] = KeyBook([(sender, "tx"), (receiver, "rx")])
        print("%s: key logs: %d lines, %d distinct keys" % (name, books[name].lines, books[name].distinct()))
    control_lens = defaultdict(int)

    for spec in a.capture:
        name, path = spec.split("=", 1)
        frames, lt = read_pcap(path)
        per_id = defaultdict(list)   # pid -> [(time, seq, p3 bytes, outer src, outer dst)]
        for t, frame in frames:
            et, l3 = strip_l2(frame, lt)
            if et is None:
                continue
            try:
                got = p3_payload(et, l3)
            except ValueError:
                continue
            if not got:
                continue
            p3 = got[0]
            if len(p3) < 16 + 16 + 2:
                continue
            _flags, pid, seq = struct.unpack_from(">IIQ", p3, 0)
            per_id[pid].append((t, seq, p3, l3[12:16], l3[16:20]))
        total = sum(len(v) for v in per_id.values())
        d = {"packets": total, "p3_ids": ["0x%x" % p for p in sorted(per_id)]}
        report[name] = d
        print("%s: %d P3 packets under %d P3 ID(s) %s" % (name, total, len(per_id), ", ".join(d["p3_ids"][:8])
                                                        + (" ..." if len(per_id) > 8 else "")))
        # 1. what anyone on the link sees
        check(total > 0, "%s: P3 packets captured" % name)
        check(len(per_id) == a.lanes,
              "%s: one P3 ID per sender lane for the whole run (%d lane(s)): %d P3 IDs seen" % (name, a.lanes, len(per_id)))
        bad_order = 0
        for pid, pkts in per_id.items():
            seqs = [s for _, s, _, _, _ in pkts]
            bad_order += sum(1 for x, y in zip(seqs, seqs[1:]) if y <= x)
            d.setdefault("seq_range", {})["0x%x" % pid] = [seqs[0], seqs[-1]]
        check(bad_order == 0, "%s: sequences strictly increasing per P3 ID: %d step(s) not up; ranges %s" % (
            name, bad_order, d.get("seq_range")))

        # 2. with the key log
        book = books.get(name)
        if book is None:
            continue
        # Pass 1: each packet under the first logged key that opens it, the last one tried
        # first (a key serves thousands of packets in a row). Pass 2: every key is tried on the
        # packets where two keys could both be in play (within EXACT_NEAR of a key change), on
        # every control packet and on every EXACT_EVERY-th packet: each must open under exactly
        # one. (Trying every key on every packet costs ~10^6 AES-GCM calls, a minute of Python.)
        opened_by = defaultdict(int)   # how many keys opened a packet -> packets (pass 2)
        unopened = 0
        switches = defaultdict(list)   # pid -> times of the first packet under each new key
        exact = 0
        for pid, pkts in per_id.items():
            cands = book.for_id(pid)
            labels, inners = [], []
            hint = 0
            for t, seq, p3, src, dst in pkts:
                plain, label = None, None
                for i in list(range(hint, len(cands))) + list(range(0, hint)):
                    lbl, aead, salt = cands[i]
                    try:
                        plain = aead.decrypt(salt + p3[8:16], p3[16:], p3[:16])
                    except InvalidTag:
                        continue
                    label, hint = lbl, i
                    break
                labels.append(label)
                inners.append(None)
                if plain is None:
                    unopened += 1
                    continue
                pad, nh = plain[-2], plain[-1]
                inner = plain[:len(plain) - 2 - pad] if pad + 2 <= len(plain) else b""
                if nh == 4 and len(inner) >= 24 and inner[9] == 6:
                    ihl = (inner[0] & 15) * 4
                    dport = struct.unpack_from(">H", inner, ihl + 2)[0] if len(inner) >= ihl + 4 else 0
                    if inner[16:20] == dst and inner[12:16] == src and dport == a.control_port:
                        control_lens[len(inner)] += 1
                        inners[-1] = "control"
            change_at = [i for i in range(1, len(labels))
                         if labels[i] is not None and labels[i - 1] is not None and labels[i] != labels[i - 1]]
            switches[pid] = [pkts[i][0] for i in change_at]
            near = set()
            for i in change_at:
                near.update(range(max(0, i - EXACT_NEAR), min(len(pkts), i + EXACT_NEAR)))
            for i, (t, seq, p3, src, dst) in enumerate(pkts):
                if i not in near and inners[i] != "control" and i % EXACT_EVERY:
                    continue
                exact += 1
                opened = 0
                for lbl, aead, salt in cands:
                    try:
                        aead.decrypt(salt + p3[8:16], p3[16:], p3[:16])
                        opened += 1
                    except InvalidTag:
                        pass
                opened_by[opened] += 1
        d["unopened"] = unopened
        d["opened_by_keys"] = dict(opened_by)
        check(unopened == 0, "%s: every packet opens under a logged key: %d of %d" % (name, total - unopened, total))
        check(set(opened_by) <= {1}, "%s: under exactly one logged key, every key tried on %d packets (every "
                                     "control packet, every %dth, all within %d of a key change): by number of keys "
                                     "that opened it: %s" % (name, exact, EXACT_EVERY, EXACT_NEAR,
                                                             dict(sorted(opened_by.items()))))
        gaps = [y - x for ts in switches.values() for x, y in zip(ts, ts[1:])]
        changes = min((len(ts) for ts in switches.values()), default=0) if len(switches) == len(per_id) else 0
        d["key_changes"] = changes
        d["key_change_intervals_s"] = [round(g, 3) for g in gaps]
        spread = (max(gaps) - min(gaps)) * 1000 if len(gaps) >= 2 else 0.0
        print("%s: %d key changes on the wire (fewest on one lane); intervals %s s (median %.3f, spread %.0f ms)" % (
            name, changes, " ".join("%.3f" % g for g in gaps[:20]) + (" ..." if len(gaps) > 20 else ""),
            statistics.median(gaps) if gaps else 0.0, spread))
        check(changes >= a.min_switches, "%s: at least %d key changes per lane seen with the key log: %d" % (
            name, a.min_switches, changes))
        if a.min_jitter_ms > 0:
            check(spread >= a.min_jitter_ms, "%s: rekey instants jittered: intervals spread over %.0f ms (want >= %.0f)"
                  % (name, spread, a.min_jitter_ms))

    # 3. the control channel's sizes
    if a.keylog:
        report["control_inner_lengths"] = {str(k): v for k, v in sorted(control_lens.items())}
        n = sum(control_lens.values())
        print("control packets: %d, inner lengths %s" % (n, dict(sorted(control_lens.items()))))
        check(n > 0, "control packets found among the decrypted ones")
        check(len(control_lens) == 1, "every control packet has one and the same length: %d distinct" % len(control_lens))
        if a.control_len is not None:
            check(set(control_lens) == {a.control_len}, "control packets' inner length is %d" % a.control_len)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    print("observer: %s" % ("%d check(s) failed" % len(failures) if failures else "every check passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
