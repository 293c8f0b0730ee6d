#!/usr/bin/python3
"""Writes LAN test traffic as a pcap (scapy): IPv4/IPv6, UDP/TCP/ICMP, chosen frame sizes.

A "frame size" is the Ethernet frame as benchmarks count it, FCS included: a 64-byte frame is
60 bytes in the capture (14 Ethernet + 46 IP). IPv6 frames below 66 bytes cannot hold IPv6+UDP;
they are written at 66. IMIX is 7 x 64 : 4 x 594 : 1 x 1420 bytes (the classic 7:4:1 with the
large size capped at 1420 so every packet fits the tunnel MTU of a 1500-byte WAN).

  p3_traffic.py OUT.pcap --sizes 64,512,1420 [--imix] [--count N] [--family 4|6|both]
                [--dst-mac 02:70:63:61:70:00] [--flows 16] [--df] [--seed 1]

Packets go round-robin over the sizes (and families), with --flows different source ports and
addresses, so RSS and per-flow paths see several flows.
"""
import argparse
import ipaddress
import logging
import random
import sys

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.utils import PcapWriter  # noqa: E402

FCS = 4
IMIX = [64] * 7 + [594] * 4 + [1420]


def host(net, i):
    n = ipaddress.ip_network(net, strict=False)
    return str(n.network_address + 1 + (i % max(1, n.num_addresses - 2)))


def packet(a, size, fam, i, rng):
    l3len = size - FCS - 14
    flow = i % a.flows
    kind = a.proto if a.proto != "mixed" else ("udp", "tcp", "icmp")[i % 3]
    if fam == 4:
        ip = IP(src=host(a.src4, flow), dst=host(a.dst4, flow), ttl=64, id=i & 0xffff,
                flags="DF" if a.df else 0, tos=(i % 4) << 2)
        hdr = 20
    else:
        ip = IPv6(src=host(a.src6, flow), dst=host(a.dst6, flow), hlim=64, tc=(i % 4) << 2)
        hdr = 40
        l3len = max(l3len, 40 + 8)
    if kind == "tcp" and l3len >= hdr + 20:
        l4 = TCP(sport=20000 + flow, dport=443, flags="PA", seq=1000 * i, ack=1)
        room = l3len - hdr - 20
    elif kind == "icmp" and fam == 4 and l3len >= hdr + 8:
        l4 = ICMP(type=8, id=flow, seq=i & 0xffff)
        room = l3len - hdr - 8
    else:
        l4 = UDP(sport=10000 + flow, dport=5000 + (i % 7))
        room = l3len - hdr - 8
    payload = bytes(rng.getrandbits(8) for _ in range(max(0, room)))
    return Ether(src=a.src_mac, dst=a.dst_mac) / ip / l4 / Raw(payload)


def main(argv=None):
    ap = argparse.ArgumentParser(description="write LAN test traffic")
    ap.add_argument("out")
    ap.add_argument("--sizes", default="64,128,256,512,1024,1420", help="frame sizes, FCS included")
    ap.add_argument("--imix", action="store_true", help="7:4:1 IMIX instead of --sizes")
    ap.add_argument("--count", type=int, default=0, help="packets (default: one per size per family)")
    ap.add_argument("--family", default="4", choices=("4", "6", "both"))
    ap.add_argument("--proto", default="udp", choices=("udp", "tcp", "icmp", "mixed"))
    ap.add_argument("--flows", type=int, default=16)
    ap.add_argument("--df", action="store_true", help="set DF on IPv4")
    ap.add_argument("--dst-mac", default="02:70:63:61:70:00", help="p3d's LAN port (net_pcap0)")
    ap.add_argument("--src-mac", default="02:00:00:00:01:07")
    ap.add_argument("--src4", default="10.1.0.0/24")
    ap.add_argument("--dst4", default="10.2.0.0/24")
    ap.add_argument("--src6", default="2001:db8:1::/64")
    ap.add_argument("--dst6", default="2001:db8:2::/64")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    sizes = IMIX if a.imix else [int(x) for x in a.sizes.split(",") if x]
    fams = [4, 6] if a.family == "both" else [int(a.family)]
    if any(s < 64 or s > 9018 for s in sizes):
        print("p3_traffic: frame sizes must be 64..9018", file=sys.stderr)
        return 2
    combos = [(s, f) for s in sizes for f in fams]
    count = a.count or len(combos)
    rng = random.Random(a.seed)
    with PcapWriter(a.out, linktype=1, sync=False) as w:
        for i in range(count):
            s, f = combos[i % len(combos)]
            w.write(packet(a, s, f, i, rng))
    return 0


if __name__ == "__main__":
    sys.exit(main())
