#!/usr/bin/python3
# Floods a p3d's setup port from an AF_PACKET socket with spoofed sources (used by
# tests/sh/52-setup-flood.sh): IKE_SA_INIT requests that look real (SA, KE, nonce; random
# SPIs), the same with key exchange data of a wrong length, garbage, and datagrams behind the
# non-ESP marker, each from its own source address and port in 198.18.0.0/15 (RFC 2544
# benchmarking space, never routed). Bounded: at most COUNT frames and SECONDS seconds,
# paced to RATE frames per second. MIX "badke": only the requests with bad key exchange data.
# Prints "sent N in S s".
#   setup_flood.py IFACE DST_MAC DST_IP DST_PORT RATE SECONDS COUNT [MIX]
import os, socket, struct, sys, time

iface, dmac, dip, dport, rate, secs, count = sys.argv[1:8]
dport, rate, secs, count = int(dport), int(rate), float(secs), int(count)
mix = sys.argv[8] if len(sys.argv) > 8 else 'mix'
dmac = bytes.fromhex(dmac.replace(':', ''))
smac = bytes.fromhex('02aabbccdd01')
dst = socket.inet_aton(dip)


def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ike_sa_init(spi, ke_len):
    # SA: one IKE proposal ENCR_AES_GCM_16/256, PRF_HMAC_SHA2_256, X25519 (RFC 7296 §3.3).
    t1 = struct.pack('!BBHBBH', 3, 0, 12, 1, 0, 20) + struct.pack('!HH', 0x800e, 256)
    t2 = struct.pack('!BBHBBH', 3, 0, 8, 2, 0, 5)
    t3 = struct.pack('!BBHBBH', 0, 0, 8, 4, 0, 31)
    tr = t1 + t2 + t3
    prop = struct.pack('!BBHBBBB', 0, 0, 8 + len(tr), 1, 1, 0, 3) + tr
    sa = struct.pack('!BBH', 34, 0, 4 + len(prop)) + prop
    ke = struct.pack('!BBHHH', 40, 0, 8 + ke_len, 31, 0) + os.urandom(ke_len)
    nonce = struct.pack('!BBH', 0, 0, 4 + 32) + os.urandom(32)
    body = sa + ke + nonce
    hdr = struct.pack('!QQBBBBII', spi, 0, 33, 0x20, 34, 0x08, 0, 28 + len(body))
    return hdr + body


def frame(i, payload):
    src = struct.pack('!I', (198 << 24 | 18 << 16) + 1 + (i % 131000))
    sport = 1024 + (i * 7919) % 60000
    udp = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack('!BBH', 0, 17, len(udp))
    c = csum(pseudo + udp) or 0xffff
    udp = udp[:6] + struct.pack('!H', c) + udp[8:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    return dmac + smac + b'\x08\x00' + ip + udp


frames = []
n_pre = min(count, 120000)
junk = os.urandom(40)
for i in range(n_pre):
    kind = 1 if mix == 'badke' else i % 8
    spi = int.from_bytes(os.urandom(8), 'big') or 1
    if kind == 0:
        p = ike_sa_init(spi, 32)                       # looks real
    elif kind == 1:
        p = ike_sa_init(spi, 31)                       # wrong KE length
    elif kind < 6:
        p = b'\0\0\0\0' + junk                         # non-ESP marker, then junk
    else:
        p = b'\0\0\0\0' + ike_sa_init(spi, 32)         # marker, then a request
    frames.append(frame(i, p))

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
sent, start, batch = 0, time.monotonic(), 50
while sent < count:
    now = time.monotonic() - start
    if now >= secs:
        break
    if sent > now * rate:
        time.sleep(0.002)
        continue
    for _ in range(batch):
        try:
            s.send(frames[sent % n_pre])
        except OSError:
            pass
        sent += 1
print('sent %d in %.1f s' % (sent, time.monotonic() - start))
