"""The inputs of the ipsec-secgw comparison (perf/secgw/cmp.py): captures and configurations.

The clear frames are those of the throughput suite's pcap mode: tests/tools/p3_traffic.py with
the same arguments (512 UDP packets, 16 flows, our hosts 10.1.5.0/24 <-> the peer's 10.2.0.0/24,
7:4:1 IMIX). Inbound, the peer's clear frames are sealed twice under the same key and salt: as
P3 by tests/tools/p3_decode.py (p3d's input) and as ESP tunnel mode (RFC 4303, AES-GCM per
RFC 4106: 8-byte IV = the sequence number, AAD = SPI || sequence) by esp_capture() below
(ipsec-secgw's input), whose first frames are checked against scapy's own ESP decryption.
Both wire formats put 36 bytes before the ciphertext (outer IPv4 20 + P3 header 16, or ESP
header 8 + IV 8), pad the plaintext and its 2 trailer bytes to 4 and end in a 16-byte tag, so
every sealed frame has the same size in both captures (checked in esp_capture()).
"""
import logging
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOLS = os.path.join(ROOT, "tests", "tools")
sys.path.insert(0, TOOLS)
import p3_decode  # noqa: E402

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# The throughput suite's AES-128 static keys: p3d sends under TX, receives under RX; the
# ipsec-secgw SAs carry the same key and salt (its aead_key is key || salt).
TX_KEY, TX_SALT, TX_ID = "000102030405060708090a0b0c0d0e0f", "0a0b0c0d", 0x101
RX_KEY, RX_SALT, RX_ID = "f0e0d0c0b0a090807060504030201000", "01020304", 0x201
LOCAL, PEER = "192.0.2.1", "198.51.100.2"
OUR_NET, PEER_NET = "10.1.5.0/24", "10.2.0.0/24"
PCAP_MAC = "02:70:63:61:70:00"               # net_pcap0, the receiving port of both programs
WAN_GW_MAC, LAN_GW_MAC = "02:00:00:00:00:fe", "02:00:00:00:00:fd"
NH_IPV4 = 4


def clear_capture(work, size, packets, from_peer=False):
    """Clear frames of one size ("imix" for the 7:4:1 mix): ours to the peer's subnet, or the
    peer's hosts to ours (what the peer seals for the inbound direction)."""
    path = os.path.join(work, "clear-%s%s.pcap" % (size, "-peer" if from_peer else ""))
    if os.path.exists(path):
        return path
    src, dst = (PEER_NET, OUR_NET) if from_peer else (OUR_NET, PEER_NET)
    args = [sys.executable, os.path.join(TOOLS, "p3_traffic.py"), path, "--count", str(packets),
            "--family", "4", "--proto", "udp", "--flows", "16", "--dst-mac", PCAP_MAC,
            "--src4", src, "--dst4", dst]
    args += ["--imix"] if size == "imix" else ["--sizes", str(size)]
    subprocess.run(args, check=True)
    return path


def p3_capture(work, size, packets):
    """What a P3 peer sends us: the peer's clear frames under p3d's receive key."""
    path = os.path.join(work, "p3-%s.pcap" % size)
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(TOOLS, "p3_decode.py"), "encode",
                        clear_capture(work, size, packets, from_peer=True), path, "--key", RX_KEY,
                        "--salt", RX_SALT, "--id", hex(RX_ID), "--src", PEER, "--dst", LOCAL,
                        "--dst-mac", PCAP_MAC, "--src-mac", WAN_GW_MAC],
                       check=True, stdout=subprocess.DEVNULL)
    return path


def esp_seal(aead, salt, spi, seq, inner):
    pad = (-(len(inner) + 2)) % 4
    plain = inner + bytes(range(1, pad + 1)) + bytes([pad, NH_IPV4])
    hdr, iv = struct.pack(">II", spi, seq), struct.pack(">Q", seq)
    return hdr + iv + aead.encrypt(salt + iv, plain, hdr)


def frame_sizes(path):
    return [len(f) for f, _ in p3_decode.read_frames(path)]


def esp_capture(work, size, packets):
    """What an ESP peer sends us: the same clear frames, as ESP tunnel mode under the same key
    and salt (SPI = RX_ID, sequences from 1, as the P3 capture)."""
    path = os.path.join(work, "esp-%s.pcap" % size)
    if os.path.exists(path):
        return path
    key, salt = bytes.fromhex(RX_KEY), bytes.fromhex(RX_SALT)
    aead = p3_decode.AESGCM(key)
    src, dst = (bytes(int(x) for x in a.split(".")) for a in (PEER, LOCAL))
    l2 = bytes.fromhex(PCAP_MAC.replace(":", "")) + bytes.fromhex(WAN_GW_MAC.replace(":", "")) + b"\x08\x00"
    inner = p3_decode.expected_packets(clear_capture(work, size, packets, from_peer=True))
    frames = []
    for i, p in enumerate(inner):
        body = esp_seal(aead, salt, RX_ID, i + 1, p)
        frames.append(l2 + p3_decode.ipv4_header(src, dst, len(body), 50, p[1] & 0xfc) + body)
    check_with_scapy(frames[:8], inner[:8], key + salt)
    if [len(f) for f in frames] != frame_sizes(p3_capture(work, size, packets)):
        raise RuntimeError("ESP and P3 frames differ in size for %s" % size)
    from scapy.packet import Raw
    from scapy.utils import PcapWriter
    with PcapWriter(path, linktype=1, sync=False) as w:
        for f in frames:
            w.write(Raw(f))
    return path


def check_with_scapy(frames, inner, key_salt):
    """scapy's independent ESP implementation must open what esp_seal() wrote."""
    from scapy.layers.inet import IP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    sa = SecurityAssociation(ESP, spi=RX_ID, crypt_algo="AES-GCM", crypt_key=key_salt,
                             tunnel_header=IP(src=PEER, dst=LOCAL))
    for f, want in zip(frames, inner):
        got = bytes(sa.decrypt(IP(f[14:])))
        if got != want:
            raise RuntimeError("scapy does not open the ESP capture as expected")


def aead_key(key_hex, salt_hex):
    b = bytes.fromhex(key_hex + salt_hex)
    return ":".join("%02x" % x for x in b)


def secgw_config(work, direction, sa_type):
    """ipsec-secgw's -f file: one SA and one SP rule per direction (tunnel mode, AES-128-GCM),
    and the route and next-hop MAC of the direction measured. Port 0 is net_pcap0, port 1
    net_null0; ipsec-secgw's "unprotected" ports are those that carry ESP (-u)."""
    path = os.path.join(work, "secgw-%s-%s.cfg" % (direction, sa_type))
    typ = "" if sa_type == "no-offload" else " type %s" % sa_type
    route, gw = ((PEER + "/32", WAN_GW_MAC) if direction == "out" else (OUR_NET, LAN_GW_MAC))
    with open(path, "w") as f:
        f.write("""# generated by perf/secgw/cmp.py (%s)
sp ipv4 out esp protect %d pri 1 dst %s sport 0:65535 dport 0:65535
sp ipv4 in esp protect %d pri 1 dst %s sport 0:65535 dport 0:65535
sa out %d aead_algo aes-128-gcm aead_key %s mode ipv4-tunnel src %s dst %s%s
sa in %d aead_algo aes-128-gcm aead_key %s mode ipv4-tunnel src %s dst %s%s
rt ipv4 dst %s port 1
neigh port 1 %s
""" % ("outbound" if direction == "out" else "inbound",
            TX_ID, PEER_NET, RX_ID, OUR_NET,
            TX_ID, aead_key(TX_KEY, TX_SALT), LOCAL, PEER, typ,
            RX_ID, aead_key(RX_KEY, RX_SALT), PEER, LOCAL, typ,
            route, gw))
    os.chmod(path, 0o600)
    return path


def p3d_config(work, direction):
    """p3d's configuration, as the throughput suite writes it for AES-128 (one remote with
    static keys; inbound without the window, as the looped capture repeats its sequences)."""
    lan, wan = ("net_pcap0", "net_null0") if direction == "out" else ("net_null0", "net_pcap0")
    path = os.path.join(work, "p3d-%s.conf" % direction)
    with open(path, "w") as f:
        f.write("""role = "primary";
local = { ip = 4; address = "%s"; port = 5653; state_dir = "%s";
          subnets = [ "%s" ]; };
dataplane = {
  lan = { port = "%s"; address = "10.1.0.1/24"; gateway = "10.1.0.254"; gateway_mac = "%s"; };
  wan = { port = "%s"; address = "%s/24"; gateway = "192.0.2.254"; gateway_mac = "%s"; mtu = 1500; };
  idle_backoff_us = 0;
};
remotes = (
  { id = 1; ip = 4; address = "%s"; subnets = [ "%s" ]; key_type = "AES128";
    static_keys = { tx_id = %d; tx_key = "%s"; tx_salt = "%s"; rx_id = %d; rx_key = "%s"; rx_salt = "%s";
                    anti_replay = %s; }; }
);
""" % (LOCAL, os.path.join(work, "state"), OUR_NET, lan, LAN_GW_MAC, wan, LOCAL, WAN_GW_MAC, PEER, PEER_NET,
                TX_ID, TX_KEY, TX_SALT, RX_ID, RX_KEY, RX_SALT, "false" if direction == "in" else "true"))
    os.chmod(path, 0o600)
    return path
