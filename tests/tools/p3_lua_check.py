#!/usr/bin/python3
"""Checks tools/p3.lua (the Wireshark dissector of the P3 header) against a capture.

The expected values come from the capture's bytes, read here with scapy from the layout of
docs/wire-format.md (P3 Flags, P3 ID, Sequence, ciphertext, 16-byte tag), never from the
dissector. Native mode: every IP protocol 50 packet of PCAP whose first word is 0. UDP mode:
the same P3 headers carried in UDP to the NAT port (flags 0x80000000), written into a second
capture among what shares that port and must not be taken for P3 (ESP under an SPI, IKE
behind the non-ESP marker, a NAT keepalive) and a native ESP packet; once on port 4500 and
once on another port set through the dissector's preference.

  p3_lua_check.py PCAP LUA [--work DIR] [--want N]
Exit 0 when tshark's p3.* fields equal the bytes for every packet (and at least N P3 packets
were found, default 1), 1 otherwise, 77 when tshark is missing.
"""
import argparse
import logging
import os
import shutil
import struct
import subprocess
import sys

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IP, IPv6, UDP, Ether, Raw, rdpcap, wrpcap  # noqa: E402


def p3_payload(pkt):
    """The IP protocol 50 payload of pkt, or None."""
    if IP in pkt and pkt[IP].proto == 50:
        return bytes(pkt[IP].payload)
    if IPv6 in pkt and pkt[IPv6].nh == 50:
        return bytes(pkt[IPv6].payload)
    return None


def fields(body):
    """(id, generation, index, seq, encrypted length) of a P3 payload, from its bytes."""
    _flags, pid, seq = struct.unpack("!IIQ", body[:16])
    return (pid, pid >> 20, pid & 0xFFFFF, seq, len(body) - 32)


def tshark(lua, path, prefs=()):
    cmd = ["tshark", "-X", "lua_script:" + lua, "-r", path, "-T", "fields", "-E", "separator=|",
           "-e", "p3.id", "-e", "p3.id.generation", "-e", "p3.id.index", "-e", "p3.seq", "-e", "p3.encrypted_len",
           "-e", "p3.flags", "-e", "p3.mode"]
    for p in prefs:
        cmd += ["-o", p]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        f = line.split("|")
        if not f[0]:
            rows.append(None)
            continue
        rows.append(((int(f[0], 0), int(f[1]), int(f[2]), int(f[3]), int(f[4])), int(f[5], 0), f[6]))
    return rows


def compare(what, rows, expected):
    if len(rows) != len(expected):
        print("%s: tshark shows %d packets, the capture has %d" % (what, len(rows), len(expected)))
        return False
    bad = 0
    for i, (got, want) in enumerate(zip(rows, expected)):
        if got != want:
            bad += 1
            if bad <= 5:
                print("%s: packet %d: dissector %r, bytes %r" % (what, i + 1, got, want))
    print("%s: %d packets, %d P3, %d disagree" % (what, len(rows), sum(1 for e in expected if e), bad))
    return bad == 0


def udp_capture(path, bodies, port):
    """bodies as UDP-encapsulated P3, among ESP-in-UDP, IKE, keepalives and native ESP."""
    pkts, expected = [], []
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for i, body in enumerate(bodies):
        udp = eth / IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=port, dport=port)
        p3 = struct.pack("!I", 0x80000000) + body[4:]
        pkts.append(udp / Raw(p3))
        expected.append((fields(p3), 0x80000000, "udp"))
        others = [udp / Raw(struct.pack("!IQ", 0x1000 + i, i + 1) + bytes(40)),   # ESP SPI 0x1000+i
                  udp / Raw(bytes(4) + bytes(28)),                                  # IKE, non-ESP marker
                  udp / Raw(b"\xff"),                                               # NAT keepalive
                  eth / IP(src="192.0.2.1", dst="198.51.100.2", proto=50) / Raw(struct.pack("!I", 0x80000000 | i) + bytes(40))]
        for o in others[i % 4: i % 4 + 1]:
            pkts.append(o)
            expected.append(None)
    wrpcap(path, pkts)
    return expected


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("lua")
    ap.add_argument("--work", default=None)
    ap.add_argument("--want", type=int, default=1)
    a = ap.parse_args()
    if shutil.which("tshark") is None:
        print("skip: tshark not installed")
        return 77
    work = a.work or os.path.dirname(os.path.abspath(a.pcap))
    pkts = rdpcap(a.pcap)
    expected, bodies = [], []
    for p in pkts:
        body = p3_payload(p)
        if body is not None and len(body) >= 32 and body[:4] == bytes(4):
            expected.append((fields(body), 0, "native"))
            bodies.append(body)
        else:
            expected.append(None)
    if len(bodies) < a.want:
        print("native: %d P3 packets in %s, want at least %d" % (len(bodies), a.pcap, a.want))
        return 1
    ok = compare("native", tshark(a.lua, a.pcap), expected)
    for port, prefs in ((4500, ()), (4789, ("p3w.udp_port:4789",))):
        path = os.path.join(work, "p3-udp-%d.pcap" % port)
        exp = udp_capture(path, bodies[:64], port)
        ok = compare("udp %d" % port, tshark(a.lua, path, prefs), exp) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
