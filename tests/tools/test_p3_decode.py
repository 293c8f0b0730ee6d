#!/usr/bin/python3
"""Unit check of p3_decode.py against hand-built P3 packets.

The vectors are assembled here byte by byte from DESIGN.md §Wire format, with the lane
derivation written out as RFC 5869 HKDF over hmac/hashlib (itself checked against RFC 5869
test case 1), so the decoder is compared with a second reading of the specification, not
with itself. Run: /usr/bin/python3 tests/tools/test_p3_decode.py
"""

import hashlib
import logging
import hmac
import io
import json
import os
import struct
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.inet import IP, UDP, TCP, ICMP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import p3_decode  # noqa: E402

KEY128 = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
KEY256 = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
SALT = bytes.fromhex("0a0b0c0d")
BASE = 0x101


def hkdf_sha256(ikm, info, length, salt=b""):
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def lane(key, salt, n):
    if n == 0:
        return key, salt
    okm = hkdf_sha256(key + salt, b"p3 lane" + n.to_bytes(4, "big"), len(key) + 4)
    return okm[:len(key)], okm[len(key):]


def p3(key, salt, pid, seq, inner, nh, pad=0, flags=0, tamper=False):
    k, s = key, salt
    plain = inner + bytes(pad) + bytes([pad, nh])
    aad = struct.pack(">IIQ", flags, pid, seq)
    ct = AESGCM(k).encrypt(s + struct.pack(">Q", seq), plain, aad)
    if tamper:
        ct = ct[:-1] + bytes([ct[-1] ^ 1])
    return aad + ct


def outer4(body, ttl=64, nat=False):
    if nat:
        return Ether(src="02:70:63:61:70:01", dst="02:00:00:00:00:fe") / IP(src="192.0.2.1", dst="192.0.2.2", ttl=ttl) / UDP(sport=4500, dport=4500) / Raw(body)
    return Ether(src="02:70:63:61:70:01", dst="02:00:00:00:00:fe") / IP(src="192.0.2.1", dst="192.0.2.2", proto=50, ttl=ttl) / Raw(body)


def outer6(body):
    return Ether(src="02:70:63:61:70:01", dst="02:00:00:00:00:fe") / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=50, hlim=64) / Raw(body)


def inner4(n=0):
    return bytes(IP(src="10.1.0.7", dst="10.2.0.9", ttl=63) / UDP(sport=1000 + n, dport=53) / Raw(b"x" * (10 + n)))


def inner6(n=0):
    return bytes(IPv6(src="2001:db8:1::7", dst="2001:db8:2::9") / TCP(sport=2000 + n, dport=80) / Raw(b"y" * n))


class Decoder(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="p3dec")

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_decode(self, frames, key=KEY128, lanes=1, expected=None, extra=()):
        wrpcap(self.path("wan.pcap"), frames)
        args = ["decode", self.path("wan.pcap"), "--key", key.hex(), "--salt", SALT.hex(),
                "--id", hex(BASE), "--lanes", str(lanes), "--json", "--write", self.path("inner.pcap")]
        if expected is not None:
            wrpcap(self.path("lan.pcap"), [Ether() / IP(p) if p[0] >> 4 == 4 else Ether() / IPv6(p) for p in expected])
            args += ["--compare", self.path("lan.pcap")]
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = p3_decode.main(args + list(extra))
        return rc, json.loads(buf.getvalue())

    def test_hkdf_reference(self):
        # RFC 5869 A.1: the helper this test uses for lanes is HKDF-SHA256 itself.
        okm = hkdf_sha256(bytes.fromhex("0b" * 22), bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42,
                          salt=bytes.fromhex("000102030405060708090a0b0c"))
        self.assertEqual(okm.hex(), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                                    "34007208d5b887185865")
        for n in (1, 2, 7):
            self.assertEqual(p3_decode.lane_keys(KEY128, SALT, n), lane(KEY128, SALT, n))
            self.assertEqual(p3_decode.lane_keys(KEY256, SALT, n), lane(KEY256, SALT, n))
        self.assertNotEqual(lane(KEY128, SALT, 1), lane(KEY128, SALT, 2))

    def test_lanes_families_nat_and_compare(self):
        pkts, frames = [], []
        for i in range(3):
            p = inner4(i)
            pkts.append(p)
            frames.append(outer4(p3(KEY128, SALT, BASE, i + 1, p, 4)))
        k1, s1 = lane(KEY128, SALT, 1)
        p = inner6(5)
        pkts.append(p)
        frames.append(outer6(p3(k1, s1, BASE + 1, 1, p, 41, pad=3)))
        p = inner4(9)
        pkts.append(p)
        frames.append(outer4(p3(KEY128, SALT, BASE, 4, p, 4, flags=0x80000000), nat=True))  # the UDP bit in UDP
        frames.append(outer4(b"\xff", nat=True))  # NAT keepalive: not P3
        frames.append(outer4(p3(KEY128, SALT, BASE, 5, b"", 59, pad=30)))  # dummy
        frames.append(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())  # not P3
        rc, out = self.run_decode(frames, lanes=2, expected=pkts)
        self.assertEqual(rc, 0, out)
        st = out["stats"]
        self.assertEqual(st["p3"], 6)
        self.assertEqual(st["decrypted"], 6)
        self.assertEqual(st["dummy"], 1)
        self.assertEqual(st["nat"], 1)
        self.assertEqual(st["lane1"], 1)
        self.assertEqual(st["not_p3"], 2)
        self.assertIsNone(out["mismatch"])
        from scapy.utils import rdpcap
        self.assertEqual(sorted(bytes(x) for x in rdpcap(self.path("inner.pcap"))), sorted(pkts))

    def test_aes256(self):
        p = inner6(100)
        rc, out = self.run_decode([outer6(p3(KEY256, SALT, BASE, 1, p, 41))], key=KEY256, expected=[p])
        self.assertEqual(rc, 0, out)

    def test_each_fault_is_reported(self):
        p = inner4()
        cases = [
            ("tag", outer4(p3(KEY128, SALT, BASE, 1, p, 4, tamper=True))),
            ("unknown flags", outer4(p3(KEY128, SALT, BASE, 1, p, 4, flags=0x80000000))),
            ("unknown P3 ID", outer4(p3(KEY128, SALT, BASE + 1, 1, p, 4))),  # only one lane given
            ("outer TTL", outer4(p3(KEY128, SALT, BASE, 1, p, 4), ttl=63)),
            ("next header", outer4(p3(KEY128, SALT, BASE, 1, p, 17))),
            ("inner packet inconsistent", outer4(p3(KEY128, SALT, BASE, 1, p, 41))),
            ("pad length", outer4(p3(KEY128, SALT, BASE, 1, b"", 4, pad=0)[:16] + b"")),
            ("sequence 0", outer4(p3(KEY128, SALT, BASE, 0, p, 4))),
            ("truncated", outer4(b"\0" * 20)),
        ]
        for what, frame in cases:
            with self.subTest(what=what):
                if what == "pad length":
                    # plaintext of two bytes claiming 200 bytes of padding
                    hdr = struct.pack(">IIQ", 0, BASE, 1)
                    ct = AESGCM(KEY128).encrypt(SALT + hdr[8:], bytes([0, 0, 200, 4]), hdr)
                    frame = outer4(hdr + ct)
                rc, out = self.run_decode([frame])
                self.assertEqual(rc, 1)
                self.assertTrue(any(what in pr.get("error", "") for pr in out["problems"]), out)

    def test_repeated_sequence(self):
        p = inner4()
        f = outer4(p3(KEY128, SALT, BASE, 7, p, 4))
        rc, out = self.run_decode([f, f])
        self.assertEqual(rc, 1)
        self.assertIn("repeated", out["problems"][0]["error"])

    def test_compare_detects_missing_and_changed(self):
        a, b = inner4(1), inner4(2)
        rc, out = self.run_decode([outer4(p3(KEY128, SALT, BASE, 1, a, 4))], expected=[a, b])
        self.assertEqual(rc, 1)
        self.assertEqual(out["mismatch"]["missing"], 1)
        # The TTL differs: a mismatch unless told to ignore it.
        c = bytearray(a)
        c[8] -= 1
        rc, out = self.run_decode([outer4(p3(KEY128, SALT, BASE, 1, bytes(c), 4))], expected=[a])
        self.assertEqual(rc, 1)
        rc, out = self.run_decode([outer4(p3(KEY128, SALT, BASE, 1, bytes(c), 4))], expected=[a],
                                  extra=["--ignore-ttl"])
        self.assertEqual(rc, 0, out)

    def test_inner_fragments_reassemble(self):
        from scapy.layers.inet import fragment
        whole = IP(src="10.1.0.7", dst="10.2.0.9", flags=0, id=99) / UDP(sport=1, dport=2) / Raw(bytes(range(256)) * 6)
        frags = [bytes(x) for x in fragment(whole, fragsize=1000)]
        self.assertEqual(len(frags), 2)
        frames = [outer4(p3(KEY128, SALT, BASE, i + 1, f, 4)) for i, f in enumerate(reversed(frags))]
        big_df = bytes(IP(src="10.1.0.7", dst="10.2.0.9", flags="DF") / UDP() / Raw(b"z" * 1500))
        rc, out = self.run_decode(frames, expected=[bytes(whole), big_df], extra=["--defrag", "--max-size", "1446"])
        self.assertEqual(rc, 0, out)
        self.assertEqual(out["stats"]["inner_fragments"], 2)
        rc, out = self.run_decode(frames[:1], expected=[bytes(whole)], extra=["--defrag"])
        self.assertEqual(rc, 1)

    def test_encode_round_trip(self):
        pkts = [inner4(i) for i in range(5)] + [inner6(i * 50) for i in range(5)]
        wrpcap(self.path("lan.pcap"), [Ether() / IP(p) if p[0] >> 4 == 4 else Ether() / IPv6(p) for p in pkts])
        with redirect_stdout(io.StringIO()):
            rc = p3_decode.main(["encode", self.path("lan.pcap"), self.path("wan.pcap"), "--key", KEY256.hex(),
                                 "--salt", SALT.hex(), "--id", hex(BASE), "--lane", "1",
                                 "--src", "2001:db8::1", "--dst", "2001:db8::2"])
        self.assertEqual(rc, 0)
        # Decrypt one frame by hand, independently of the decoder.
        from scapy.utils import rdpcap
        frames = [bytes(f) for f in rdpcap(self.path("wan.pcap"))]
        self.assertEqual(len(frames), 10)
        f = frames[0]
        self.assertEqual(struct.unpack(">H", f[12:14])[0], 0x86dd)
        body = f[14 + 40:]
        flags, pid, seq = struct.unpack(">IIQ", body[:16])
        self.assertEqual((flags, pid, seq), (0, BASE + 1, 1))
        k, s = lane(KEY256, SALT, 1)
        plain = AESGCM(k).decrypt(s + body[8:16], body[16:], body[:16])
        self.assertEqual(plain[-1], 4)
        self.assertEqual(plain[:len(plain) - 2 - plain[-2]], pkts[0])
        self.assertEqual((len(plain)) % 4, 0)
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = p3_decode.main(["decode", self.path("wan.pcap"), "--key", KEY256.hex(), "--salt", SALT.hex(),
                                 "--id", hex(BASE), "--lanes", "2", "--compare", self.path("lan.pcap"), "--ordered"])
        self.assertEqual(rc, 0, buf.getvalue())


if __name__ == "__main__":
    unittest.main(verbosity=1)
