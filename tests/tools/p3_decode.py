#!/usr/bin/python3
"""Independent P3 decoder and encoder: the oracle for bytes p3d puts on the wire.

Written from DESIGN.md §Wire format alone (no code shared with p3d):

  outer IPv4 (protocol 50) or IPv6 (next header 50), or either with UDP port 4500 (NAT traversal)
  P3 Flags (32) | P3 ID (32) | Sequence (64) | ciphertext | ICV (128)
  nonce = salt (4) || Sequence (8);  AAD = Flags || ID || Sequence
  plaintext = inner packet | padding | pad length (8) | next header (8: 4, 41 or 59)
  lane 0 = the key material as is; lane n > 0: HKDF-SHA256(IKM = key || salt, no salt,
  info = "p3 lane" || n (32-bit big-endian), length = key length + 4) -> key || salt;
  lane n's P3 ID = base ID + n.

decode: reads a WAN capture, decrypts every P3 packet sent under the given keys, checks the tag,
flags, sequence uniqueness per lane, outer TTL/hop limit and the trailer, writes the inner packets
(raw IP, or with an Ethernet header) and compares them with the expected ones.
encode: encrypts the IP packets of a LAN capture into P3 packets (lane 0), e.g. to feed p3d's
inbound path in benchmarks.

Exit status: 0 all good, 1 a check failed, 2 bad usage or unreadable input.
Requires /usr/bin/python3 with python3-scapy and python3-cryptography.
"""

import argparse
import logging
import json
import struct
import sys
from collections import Counter, defaultdict

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

P3_HEADER = 16
ICV = 16
NH_IPV4, NH_IPV6, NH_DUMMY = 4, 41, 59
NAT_PORT = 4500
OUTER_TTL = 64


def lane_keys(key: bytes, salt: bytes, lane: int):
    """Key and salt of a lane, exactly as DESIGN.md §Lanes says."""
    if lane == 0:
        return key, salt
    okm = HKDF(algorithm=hashes.SHA256(), length=len(key) + 4, salt=None,
               info=b"p3 lane" + struct.pack(">I", lane)).derive(key + salt)
    return okm[:len(key)], okm[len(key):]


class Keys:
    def __init__(self, key: bytes, salt: bytes, base_id: int, lanes: int):
        if len(key) not in (16, 32):
            raise ValueError("key must be 16 or 32 bytes (AES-128 / AES-256)")
        if len(salt) != 4:
            raise ValueError("salt must be 4 bytes")
        self.by_id = {}
        for n in range(lanes):
            k, s = lane_keys(key, salt, n)
            self.by_id[(base_id + n) & 0xffffffff] = (n, AESGCM(k), s)


# --- framing -----------------------------------------------------------------------------

def strip_l2(frame: bytes, linktype: int):
    """(ethertype, l3 bytes) of a captured frame, or (None, None)."""
    if linktype == 1:  # Ethernet
        if len(frame) < 14:
            return None, None
        off, et = 12, struct.unpack_from(">H", frame, 12)[0]
        while et in (0x8100, 0x88a8) and len(frame) >= off + 6:
            off += 4
            et = struct.unpack_from(">H", frame, off)[0]
        return et, frame[off + 2:]
    if linktype in (101, 12, 14):  # raw IP
        if not frame:
            return None, None
        return (0x0800 if frame[0] >> 4 == 4 else 0x86dd), frame
    return None, None


def ip_packet_len(l3: bytes):
    """Length the IP header claims, or None when it is not a consistent IP packet."""
    if len(l3) >= 20 and l3[0] >> 4 == 4:
        ihl = (l3[0] & 15) * 4
        total = struct.unpack_from(">H", l3, 2)[0]
        return total if ihl >= 20 and ihl <= total <= len(l3) else None
    if len(l3) >= 40 and l3[0] >> 4 == 6:
        total = 40 + struct.unpack_from(">H", l3, 4)[0]
        return total if total <= len(l3) else None
    return None


def p3_payload(et: int, l3: bytes):
    """(p3 bytes, outer ttl, outer family, nat) when the packet is P3, else None.
    Raises ValueError for an outer fragment (not decodable here)."""
    n = ip_packet_len(l3)
    if n is None:
        return None
    l3 = l3[:n]  # link padding is not payload
    if et == 0x0800 and l3[0] >> 4 == 4:
        ihl = (l3[0] & 15) * 4
        proto, ttl = l3[9], l3[8]
        if struct.unpack_from(">H", l3, 6)[0] & 0x3fff:
            if proto == 50 or proto == 17:
                raise ValueError("outer IPv4 fragment")
            return None
        body, fam = l3[ihl:], 4
    elif et == 0x86dd and l3[0] >> 4 == 6:
        proto, ttl, body, fam = l3[6], l3[7], l3[40:], 6
        if proto == 44:
            raise ValueError("outer IPv6 fragment")
    else:
        return None
    if proto == 50:
        return body, ttl, fam, False
    if proto == 17 and len(body) >= 8:
        sport, dport = struct.unpack_from(">HH", body, 0)
        if NAT_PORT in (sport, dport):
            payload = body[8:]
            if payload == b"\xff":  # NAT keepalive (RFC 3948)
                return None
            return payload, ttl, fam, True
    return None


# --- decode ------------------------------------------------------------------------------

def decode_one(p3: bytes, keys: Keys, udp: bool = False):
    """(result dict, inner bytes or None). udp: carried in UDP, where P3 Flags = the UDP bit."""
    if len(p3) < P3_HEADER + ICV + 2:
        return {"error": "truncated"}, None
    flags, pid, seq = struct.unpack_from(">IIQ", p3, 0)
    res = {"id": pid, "seq": seq, "flags": flags}
    if pid not in keys.by_id:
        res["error"] = "unknown P3 ID"
        return res, None
    lane, aead, salt = keys.by_id[pid]
    res["lane"] = lane
    if flags != (0x80000000 if udp else 0):
        res["error"] = "unknown flags"
        return res, None
    nonce = salt + p3[8:16]
    try:
        plain = aead.decrypt(nonce, p3[P3_HEADER:], p3[:P3_HEADER])
    except InvalidTag:
        res["error"] = "tag"
        return res, None
    pad_len, nh = plain[-2], plain[-1]
    res["next_header"] = nh
    if pad_len + 2 > len(plain):
        res["error"] = "pad length"
        return res, None
    inner = plain[:len(plain) - 2 - pad_len]
    res["pad"] = pad_len
    if nh == NH_DUMMY:
        return res, None
    if nh not in (NH_IPV4, NH_IPV6):
        res["error"] = "next header %d" % nh
        return res, None
    want_version = 4 if nh == NH_IPV4 else 6
    if not inner or inner[0] >> 4 != want_version or ip_packet_len(inner) != len(inner):
        res["error"] = "inner packet inconsistent with trailer"
        return res, None
    return res, inner


def read_frames(path):
    from scapy.utils import PcapReader
    frames = []
    with PcapReader(path) as r:
        lt = getattr(r, "linktype", 1)
        for pkt in r:
            frames.append((bytes(pkt), lt))
    return frames


def expected_packets(path):
    """The IP packets of a LAN capture (L2 and link padding removed)."""
    out = []
    for frame, lt in read_frames(path):
        et, l3 = strip_l2(frame, lt)
        if et not in (0x0800, 0x86dd):
            continue
        n = ip_packet_len(l3)
        if n is not None:
            out.append(l3[:n])
    return out


def normalise(pkt: bytes, ignore_ttl: bool):
    """With ignore_ttl, TTL/hop limit and the IPv4 header checksum are zeroed (a router may
    decrement the TTL of what it forwards)."""
    if not ignore_ttl:
        return pkt
    b = bytearray(pkt)
    if b[0] >> 4 == 4:
        b[8] = 0
        b[10:12] = b"\0\0"
    elif b[0] >> 4 == 6:
        b[7] = 0
    return bytes(b)


def defragment(packets):
    """Reassembles inner IPv4 fragments (p3d fragments inner packets before encryption);
    returns (packets, fragments seen, incomplete groups)."""
    whole, groups, order = [], {}, []
    for p in packets:
        if p[0] >> 4 == 4 and struct.unpack_from(">H", p, 6)[0] & 0x3fff:
            key = (p[12:20], p[9], p[4:6])
            if key not in groups:
                groups[key] = []
                order.append(key)
                whole.append(key)
            groups[key].append(p)
        else:
            whole.append(p)
    nfrag = sum(len(v) for v in groups.values())
    incomplete = 0
    out = []
    for item in whole:
        if not isinstance(item, tuple):
            out.append(item)
            continue
        frags = groups[item]
        pieces, last, first = {}, None, None
        for f in frags:
            ihl = (f[0] & 15) * 4
            fo = struct.unpack_from(">H", f, 6)[0]
            off = (fo & 0x1fff) * 8
            pieces[off] = f[ihl:]
            if off == 0:
                first = f
            if not fo & 0x2000:
                last = off + len(f) - ihl
        data, pos = b"", 0
        while pos in pieces:
            data += pieces[pos]
            pos += len(pieces[pos])
        if first is None or last is None or pos != last:
            incomplete += 1
            continue
        ihl = (first[0] & 15) * 4
        h = bytearray(first[:ihl])
        struct.pack_into(">H", h, 2, ihl + len(data))
        struct.pack_into(">H", h, 6, struct.unpack_from(">H", h, 6)[0] & 0x4000)
        struct.pack_into(">H", h, 10, 0)
        c = sum(struct.unpack(">%dH" % (ihl // 2), bytes(h)))
        while c >> 16:
            c = (c & 0xffff) + (c >> 16)
        struct.pack_into(">H", h, 10, ~c & 0xffff)
        out.append(bytes(h) + data)
    return out, nfrag, incomplete


def cmd_decode(a):
    keys = Keys(bytes.fromhex(a.key), bytes.fromhex(a.salt), a.id, a.lanes)
    frames = read_frames(a.pcap)
    stats = Counter()
    seen = defaultdict(set)
    inners, problems = [], []
    for i, (frame, lt) in enumerate(frames):
        et, l3 = strip_l2(frame, lt)
        try:
            p = p3_payload(et, l3) if et else None
        except ValueError as e:
            stats["outer_fragment"] += 1
            problems.append({"frame": i + 1, "error": str(e)})
            continue
        if p is None:
            stats["not_p3"] += 1
            continue
        p3, ttl, fam, nat = p
        stats["p3"] += 1
        stats["nat" if nat else "esp"] += 1
        res, inner = decode_one(p3, keys, nat)
        res["frame"] = i + 1
        if "error" not in res:
            if ttl != OUTER_TTL:
                res["error"] = "outer TTL/hop limit %d, expected %d" % (ttl, OUTER_TTL)
            elif res["seq"] in seen[res["id"]]:
                res["error"] = "sequence %d repeated on lane %d" % (res["seq"], res["lane"])
            elif res["seq"] == 0:
                res["error"] = "sequence 0 (sequences start at 1)"
        if "error" in res:
            stats["bad"] += 1
            problems.append(res)
            continue
        seen[res["id"]].add(res["seq"])
        stats["decrypted"] += 1
        stats["lane%d" % res["lane"]] += 1
        if inner is None:
            stats["dummy"] += 1
            continue
        inners.append(inner)
    if a.defrag:
        inners, nfrag, incomplete = defragment(inners)
        stats["inner_fragments"] = nfrag
        if incomplete:
            problems.append({"error": "%d inner packet(s) with missing fragments" % incomplete})
    if a.write:
        write_packets(a.write, inners, a.write_ethernet)
    mismatch = None
    if a.compare:
        want = [normalise(p, a.ignore_ttl) for p in expected_packets(a.compare)]
        got = [normalise(p, a.ignore_ttl) for p in inners]
        if a.max_size:
            want = [p for p in want if len(p) <= a.max_size or (p[0] >> 4 == 4 and a.defrag and
                                                                not struct.unpack_from(">H", p, 6)[0] & 0x4000)]
        if not a.ordered:
            want_s, got_s = sorted(want), sorted(got)
        else:
            want_s, got_s = want, got
        if want_s != got_s:
            missing = Counter(want) - Counter(got)
            extra = Counter(got) - Counter(want)
            mismatch = {"expected": len(want), "decrypted": len(got),
                        "missing": sum(missing.values()), "unexpected": sum(extra.values()),
                        "order_only": not missing and not extra}
        stats["compared"] = len(want)
    summary = {"stats": dict(stats), "problems": problems[:50], "mismatch": mismatch}
    ok = not problems and mismatch is None and (stats["p3"] > 0 or a.allow_empty)
    summary["ok"] = ok
    if a.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
    else:
        print("frames %d  p3 %d  decrypted %d  inner %d  bad %d  not-p3 %d" % (
            len(frames), stats["p3"], stats["decrypted"], len(inners), stats["bad"], stats["not_p3"]))
        for p in problems[:20]:
            print("  problem:", p)
        if mismatch:
            print("  MISMATCH with %s: %s" % (a.compare, mismatch))
        elif a.compare:
            print("  inner packets match %s (%d packets)" % (a.compare, stats["compared"]))
        print("OK" if ok else "FAILED")
    return 0 if ok else 1


def write_packets(path, packets, ethernet):
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import PcapWriter
    with PcapWriter(path, linktype=1 if ethernet else 101, sync=False) as w:
        for p in packets:
            if ethernet:
                et = 0x0800 if p[0] >> 4 == 4 else 0x86dd
                w.write(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01", type=et) / Raw(p))
            else:
                w.write(Raw(p))


# --- encode ------------------------------------------------------------------------------

def seal(aead, salt, pid, seq, inner, nh, align):
    pad = (-(len(inner) + 2)) % align if align > 1 else 0
    plain = inner + bytes(range(1, pad + 1)) + bytes([pad, nh])
    hdr = struct.pack(">IIQ", 0, pid, seq)
    return hdr + aead.encrypt(salt + hdr[8:], plain, hdr)


def ipv4_header(src, dst, payload_len, proto, dscp_ecn=0):
    h = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, dscp_ecn, 20 + payload_len, 0, 0x4000,
                              OUTER_TTL, proto, 0, src, dst))
    s = sum(struct.unpack(">10H", bytes(h)))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    struct.pack_into(">H", h, 10, ~s & 0xffff)
    return bytes(h)


def cmd_encode(a):
    import ipaddress
    key, salt = bytes.fromhex(a.key), bytes.fromhex(a.salt)
    k, s = lane_keys(key, salt, a.lane)
    aead = AESGCM(k)
    pid = a.id + a.lane
    src, dst = ipaddress.ip_address(a.src), ipaddress.ip_address(a.dst)
    if src.version != dst.version:
        print("p3_decode: --src and --dst must be the same family", file=sys.stderr)
        return 2
    smac, dmac = bytes.fromhex(a.src_mac.replace(":", "")), bytes.fromhex(a.dst_mac.replace(":", ""))
    frames = []
    seq = a.first_seq
    for p in expected_packets(a.input):
        nh = NH_IPV4 if p[0] >> 4 == 4 else NH_IPV6
        tos = p[1] if nh == NH_IPV4 else ((p[0] & 15) << 4 | p[1] >> 4)
        body = seal(aead, s, pid, seq, p, nh, a.align)
        seq += 1
        if src.version == 4:
            l3 = ipv4_header(src.packed, dst.packed, len(body), 50, tos & 0xfc)
            et = 0x0800
        else:
            l3 = struct.pack(">IHBB16s16s", (6 << 28) | ((tos & 0xfc) << 20), len(body), 50,
                             OUTER_TTL, src.packed, dst.packed)
            et = 0x86dd
        frames.append(dmac + smac + struct.pack(">H", et) + l3 + body)
    from scapy.packet import Raw
    from scapy.utils import PcapWriter
    with PcapWriter(a.output, linktype=1, sync=False) as w:
        for f in frames:
            w.write(Raw(f))
    print("encoded %d packets, sequences %d..%d, P3 ID 0x%x" % (len(frames), a.first_seq, seq - 1, pid))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode", help="decrypt a WAN capture")
    d.add_argument("pcap")
    e = sub.add_parser("encode", help="encrypt the IP packets of a LAN capture")
    e.add_argument("input")
    e.add_argument("output")
    for p in (d, e):
        p.add_argument("--key", required=True, help="lane 0 key, hex (16 or 32 bytes)")
        p.add_argument("--salt", required=True, help="lane 0 salt, hex (4 bytes)")
        p.add_argument("--id", required=True, type=lambda x: int(x, 0), help="base P3 ID (lane 0)")
    d.add_argument("--lanes", type=int, default=1, help="lanes the sender uses (IDs base..base+n-1)")
    d.add_argument("--write", help="write the inner packets to this pcap")
    d.add_argument("--write-ethernet", action="store_true", help="with an Ethernet header (else raw IP)")
    d.add_argument("--compare", help="expected inner packets: a LAN capture")
    d.add_argument("--ignore-ttl", action="store_true", help="compare ignoring TTL/hop limit (and IPv4 checksum)")
    d.add_argument("--defrag", action="store_true", help="reassemble inner IPv4 fragments first")
    d.add_argument("--ordered", action="store_true", help="require the same order (one lane)")
    d.add_argument("--allow-empty", action="store_true", help="no P3 packet at all is not an error")
    d.add_argument("--max-size", type=int, default=0,
                   help="tunnel MTU: expected packets above it are not carried (IPv4 without DF is, with --defrag)")
    d.add_argument("--json", action="store_true")
    e.add_argument("--lane", type=int, default=0)
    e.add_argument("--first-seq", type=int, default=1)
    e.add_argument("--src", required=True, help="outer source address (the sending appliance)")
    e.add_argument("--dst", required=True, help="outer destination address (the receiving appliance)")
    e.add_argument("--src-mac", default="02:00:00:00:00:01")
    e.add_argument("--dst-mac", default="02:70:63:61:70:01")
    e.add_argument("--align", type=int, default=4, help="pad plaintext + trailer to this multiple")
    a = ap.parse_args(argv)
    try:
        return cmd_decode(a) if a.cmd == "decode" else cmd_encode(a)
    except (OSError, ValueError) as ex:
        print("p3_decode: %s" % ex, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
