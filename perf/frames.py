"""The throughput suite's input: S remotes with static keys and the frames p3d is fed.

Remote i (0-based) is the peer PEER(i) with the subnet 10.(2 + i/256).(i%256).0/24, its own keys
(remote 0: the fixed keys of the suite, others derived from i) and P3 IDs 16 apart. Frame j of a
capture belongs to remote j mod S; outbound it is a UDP packet from one of 16 hosts of ours
(10.1.5.1-16, its own source port) to a host of that remote's subnet; inbound it is the packet
that remote's appliance would send us: a UDP packet of its subnet to one of our hosts, sealed
under lane (j / S) mod L of its transmit key (= our receive key; lane keys per DESIGN.md), by the
independent encoder of tests/tools/p3_decode.py. Frame sizes include the FCS (64 B = 46 B IP).
"""
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "tools"))
import p3_decode  # noqa: E402

FCS = 4
IMIX = [64] * 7 + [594] * 4 + [1420]
LOCAL = "192.0.2.1"
DST_MAC = "02:70:63:61:70:00"   # p3d's receiving port: net_pcap0's MAC, given to net_p3src0 too
GW_MAC = "02:00:00:00:00:fe"    # the WAN gateway (the peer's frames come from it)
LAN_MAC = "02:00:00:00:01:07"   # a LAN host
TX_SALT, RX_SALT = "0a0b0c0d", "01020304"
TX_ID, RX_ID = 0x101, 0x201
FIXED_KEYS = {
    128: ("000102030405060708090a0b0c0d0e0f", "f0e0d0c0b0a090807060504030201000"),
    256: ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
          "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000"),
}


def peer(i):
    return "198.51.100.2" if i == 0 else "198.18.%d.%d" % (i // 200, 2 + i % 200)


def subnet(i):
    return "10.%d.%d.0/24" % (2 + i // 256, i % 256)


def keys(bits, i):
    """(tx_key, rx_key) hex of remote i: every key distinct, as p3d requires."""
    if i == 0:
        return FIXED_KEYS[bits]
    d = lambda tag: hashlib.sha256(b"p3 bench %s %d %d" % (tag, bits, i)).hexdigest()[:bits // 4]  # noqa: E731
    return d(b"tx"), d(b"rx")


def ids(i):
    return TX_ID + 16 * i, RX_ID + 16 * i


def remotes_conf(bits, sessions, lanes, anti_replay):
    out = []
    for i in range(sessions):
        tk, rk = keys(bits, i)
        tid, rid = ids(i)
        out.append("""  { id = %d; ip = 4; address = "%s"; subnets = [ "%s" ]; key_type = "AES%d";
    static_keys = { tx_id = %d; tx_key = "%s"; tx_salt = "%s"; rx_id = %d; rx_key = "%s"; rx_salt = "%s";
                    lanes = %d; anti_replay = %s; }; }""" % (
            i + 1, peer(i), subnet(i), bits, tid, tk, TX_SALT, rid, rk, RX_SALT, lanes,
            "true" if anti_replay else "false"))
    return ",\n".join(out)


def _ip(a):
    return bytes(int(x) for x in a.split("."))


def _host(net, n):
    b = _ip(net.split("/")[0])
    return b[:3] + bytes([1 + n % 250])


def _mac(m):
    return bytes.fromhex(m.replace(":", ""))


def _udp_ip(src, dst, sport, dport, l3len, ident):
    """An IPv4/UDP packet of l3len bytes (header checksum set; UDP checksum 0, as allowed)."""
    body = l3len - 20 - 8
    payload = bytes((ident + k) & 0xff for k in range(body))
    udp = struct.pack(">HHHH", sport, dport, 8 + body, 0)
    h = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, l3len, ident & 0xffff, 0, 64, 17, 0, src, dst))
    s = sum(struct.unpack(">10H", bytes(h)))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    struct.pack_into(">H", h, 10, ~s & 0xffff)
    return bytes(h) + udp + payload


def _size(size, j):
    return IMIX[j % len(IMIX)] if size == "imix" else int(size)


def outbound(size, count, sessions):
    """Clear frames from our LAN hosts to the remotes' subnets."""
    frames = []
    for j in range(count):
        s, flow = j % sessions, (j // sessions) % 16
        ip = _udp_ip(_host("10.1.5.0/24", flow), _host(subnet(s), flow), 10000 + flow, 5000 + j % 7,
                     _size(size, j) - FCS - 14, j)
        frames.append(_mac(DST_MAC) + _mac(LAN_MAC) + b"\x08\x00" + ip)
    return frames


def inbound(size, count, sessions, lanes, bits):
    """P3 frames the remotes' appliances would send us, sealed under their lanes' keys. The
    size is that of the clear frame they carry, as in the outbound direction."""
    aes = {}
    frames = []
    for j in range(count):
        s, lane = j % sessions, (j // sessions) % lanes
        flow = (j // (sessions * lanes)) % 16
        if (s, lane) not in aes:
            k, salt = p3_decode.lane_keys(bytes.fromhex(keys(bits, s)[1]), bytes.fromhex(RX_SALT), lane)
            aes[(s, lane)] = (p3_decode.AESGCM(k), salt)
        aead, salt = aes[(s, lane)]
        inner = _udp_ip(_host(subnet(s), flow), _host("10.1.5.0/24", flow), 10000 + flow, 5000 + j % 7,
                        _size(size, j) - FCS - 14, j)
        body = p3_decode.seal(aead, salt, ids(s)[1] + lane, j // (sessions * lanes) + 1, inner,
                              p3_decode.NH_IPV4, 4)
        outer = p3_decode.ipv4_header(_ip(peer(s)), _ip(LOCAL), len(body), 50)
        frames.append(_mac(DST_MAC) + _mac(GW_MAC) + b"\x08\x00" + outer + body)
    return frames


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for n, fr in enumerate(frames):
            f.write(struct.pack("<IIII", n // 1000000, n % 1000000, len(fr), len(fr)))
            f.write(fr)
