#!/usr/bin/env bash
# The observer of the interop tests (tests/sh/lib/esp_check.py) can fail: it is fed a capture
# made here, ESP-in-UDP packets sealed with known keys the way RFC 4303/4106/3948 say (one SA
# each way without ESN, one with ESN), and a key log in p3d's format, and must
#   - pass the good capture (every packet decrypts, tshark agrees on the non-ESN ones), and
#   - fail each spoiled variant: a flipped ICV bit, a key-log key that is not the one used,
#     an SA sealed with ESN but logged without, an IV repeated under one SPI, a sequence number
#     repeated, an inbound SPI below 256, a packet under an SPI no key-log line names, fewer
#     packets than asked for.
# No root needed. Needs /usr/bin/python3 with cryptography and tshark (77 otherwise).
set -u
here=$(cd "$(dirname "$0")" && pwd)
check=$here/lib/esp_check.py
/usr/bin/python3 -c 'import cryptography' 2>/dev/null || { echo "SKIP: /usr/bin/python3 without cryptography"; exit 77; }
command -v tshark >/dev/null || { echo "SKIP: tshark not installed"; exit 77; }
work=$(mktemp -d /tmp/p3t74.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# make VARIANT: $work/VARIANT.pcap and $work/VARIANT.keys
make() {
  /usr/bin/python3 - "$work" "$1" <<'PY'
import struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
work, variant = sys.argv[1], sys.argv[2]
P3D, PEER = "192.0.2.1", "192.0.2.2"
# (direction, spi, key, salt, esn): p3d's tx SAs are sent by 192.0.2.1, its rx SAs by the peer.
sas = [("tx", 0x0000a001, bytes(range(16)), b"\xa0\xa1\xa2\xa3", False),
       ("rx", 0x00000101 if variant != "low-spi" else 0x000000ff, bytes(range(16, 32)), b"\xb0\xb1\xb2\xb3", False),
       ("tx", 0x0000a002, bytes(range(32, 64)), b"\xc0\xc1\xc2\xc3", True),
       ("rx", 0x00000102, bytes(range(64, 80)), b"\xd0\xd1\xd2\xd3", True)]

def ip4(a):
    return bytes(int(x) for x in a.split("."))

def csum(h):
    s = sum(struct.unpack("!%dH" % (len(h) // 2), h))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def frame(src, dst, esp):
    udp = struct.pack("!HHHH", 4500, 4500, 8 + len(esp), 0) + esp
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, ip4(src), ip4(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + h + udp

def inner(n):
    body = bytes(20 + n % 7)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), n, 0, 64, 17, 0, ip4("10.1.0.2"), ip4("10.2.0.2")) + body

frames = []
for d, spi, key, salt, esn in sas:
    src, dst = (P3D, PEER) if d == "tx" else (PEER, P3D)
    for seq in range(1, 6):
        iv_seq = seq
        if variant == "repeat-iv" and d == "tx" and seq == 3:
            iv_seq = 2
        wire_seq = 2 if variant == "repeat-seq" and d == "tx" and seq == 3 else seq
        iv = struct.pack("!Q", iv_seq)
        pt = inner(seq)
        pad = (-(len(pt) + 2)) % 4
        pt += bytes(range(1, pad + 1)) + bytes([pad, 4])
        aad = struct.pack("!I", spi) + (b"\0\0\0\0" if esn else b"") + struct.pack("!I", wire_seq)
        esp = bytearray(struct.pack("!II", spi, wire_seq) + iv + AESGCM(key).encrypt(salt + iv, pt, aad))
        if variant == "bad-icv" and d == "tx" and seq == 4:
            esp[-1] ^= 1
        frames.append(frame(src, dst, bytes(esp)))
if variant == "unknown-spi":
    frames.append(frame(P3D, PEER, struct.pack("!II", 0x0000beef, 1) + bytes(40)))
# IKE behind the non-ESP marker and a NAT keepalive: not ESP, never counted.
frames.append(frame(PEER, P3D, b"\0\0\0\0" + bytes(28)))
frames.append(frame(PEER, P3D, b"\xff"))
with open("%s/%s.pcap" % (work, variant), "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i, fr in enumerate(frames):
        f.write(struct.pack("<IIII", 1000 + i, 0, len(fr), len(fr)) + fr)
with open("%s/%s.keys" % (work, variant), "w") as f:
    for d, spi, key, salt, esn in sas:
        if variant == "wrong-key" and d == "tx" and not esn:
            key = bytes(16)
        if variant == "esn-unlogged" and esn:
            esn = False
        src, dst = (P3D, PEER) if d == "tx" else (PEER, P3D)
        f.write("1.0 session=1 remote=1 dir=%s p3_id=0x%x lanes=1 key=%s salt=%s wire=esp esn=%d src=%s dst=%s\n"
                % (d, spi, key.hex(), salt.hex(), 1 if esn else 0, src, dst))
        f.write("1.0 session=1 remote=1 dir=%s p3_id=0x%x lanes=1 key=%s salt=%s\n" % (d, spi + 0x10000, key.hex(), salt.hex()))
PY
}

run() { /usr/bin/python3 "$check" --pcap "$work/$1.pcap" --keylog "$work/$1.keys" --p3d 192.0.2.1 --min-sas 2 "${@:2}" >"$work/$1.out" 2>&1; }

make good || fail "could not write the capture"
run good --min-p3d 10 || { cat "$work/good.out"; fail "the observer refused a capture sealed by the book"; }
grep -q '^ESP packets decrypted: p3d 10, peer 10; failed 0; p3d sent under 2 SAs' "$work/good.out" ||
  { cat "$work/good.out"; fail "the observer miscounted the good capture"; }
grep -q '^tshark: 5 of p3d.s non-ESN ESP packets with a good ICV, 0 not' "$work/good.out" ||
  { cat "$work/good.out"; fail "tshark did not verify the non-ESN packets"; }
echo "good capture: $(tail -n 1 "$work/good.out")"
run good --min-p3d 11 && fail "the observer passed with fewer packets than asked for"
echo "fewer packets than asked: refused"

for v in bad-icv wrong-key esn-unlogged repeat-iv repeat-seq low-spi unknown-spi; do
  make "$v" || fail "could not write the $v capture"
  if run "$v" --min-p3d 1; then cat "$work/$v.out"; fail "the observer passed the $v capture"; fi
  echo "$v: refused ($(grep -m1 -E 'ICV|repeats|SPI|key' "$work/$v.out" | cut -c1-100))"
done
echo "PASS: the observer verifies ESP sealed by the book (with and without ESN) and refuses every spoiled variant"
exit 0
