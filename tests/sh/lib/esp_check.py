#!/usr/bin/python3
"""esp_check.py - an observer with the keys checks the standard ESP of a capture (interop tests).

Reads p3d's --insecure-key-log (the ESP lines:
  <time> session=S remote=R dir=rx|tx p3_id=0xSPI lanes=1 key=HEX salt=HEX wire=esp esn=0|1 src=A dst=B)
and, when given, charon's log at chd level 4 (the child SA keys strongSwan derived, key||salt,
and the SPIs each child SA was established with), then checks:

  1. every ESP SA in p3d's key log is one charon set up: p3d's tx SA (charon's inbound SPI) and
     rx SA (charon's outbound SPI) carry the two keys charon derived for that child SA, one each;
  2. every ESP packet of the capture (ESP-in-UDP on 4500, or IP protocol 50) decrypts with
     AES-GCM under the key its SPI has in the key log (cryptography's AESGCM, apart from p3d and
     charon): the ICV verifies and the plaintext ends in a valid RFC 4303 trailer (pad bytes
     1, 2, 3, ..., next header 4 or 41) around an IPv4/IPv6 packet; with ESN the AAD carries the
     high 32 bits of the sequence (RFC 4106 section 5; 0 in a short capture);
  3. p3d's packets never repeat an IV or a sequence number under one SPI, and every inbound SPI
     p3d chose is in 256..0x7fffffff (RFC 4303 reserves 1..255; the top bit marks P3 on UDP);
  4. tshark (an independent implementation) decrypts every ESP packet of a non-ESN SA p3d sent
     and shows its ICV good (esp.icv_good), and counts as many as step 2.

Packets under an SPI no key-log line names fail the check (p3d writes every SA it installs).
Prints one summary line per SPI; --json writes the counts. Exit 0 only when every check holds
and p3d sent at least --min-p3d ESP packets.

Usage: esp_check.py --pcap P --keylog K --p3d ADDR [--charon-log L] [--min-p3d N]
                    [--min-sas N] [--json OUT] [--no-tshark] [--any-spi]
"""
import argparse
import json
import re
import struct
import subprocess
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.exceptions import InvalidTag

KEYLOG_RE = re.compile(r"\bdir=(rx|tx) p3_id=0x([0-9a-f]+) .*\bkey=([0-9a-f]+) salt=([0-9a-f]{8})\b(.*)$")


def bare_address(a):
    """An outer address as tshark's SA table wants it: without a port ("192.0.2.1:4500",
    "[2001:db8::1]:4500") or brackets."""
    if a.startswith("["):
        return a[1:a.index("]")] if "]" in a else a
    return a.split(":")[0] if a.count(":") == 1 else a


def read_keylog(path):
    """ESP SAs of p3d's key log: {spi: dict(dir, key, salt, esn, src, dst)}."""
    sas = {}
    for line in open(path):
        if "wire=esp" not in line:
            continue
        m = KEYLOG_RE.search(line)
        if not m:
            sys.exit("key log: unreadable ESP line: %s" % line.strip()[:60])
        rest = dict(kv.split("=", 1) for kv in m.group(5).split() if "=" in kv)
        spi = int(m.group(2), 16)
        sa = dict(dir=m.group(1), key=bytes.fromhex(m.group(3)), salt=bytes.fromhex(m.group(4)),
                  esn=rest.get("esn") == "1", src=bare_address(rest.get("src", "*")),
                  dst=bare_address(rest.get("dst", "*")))
        if spi in sas and sas[spi]["key"] != sa["key"]:
            sys.exit("key log: SPI 0x%08x written twice with different keys" % spi)
        sas[spi] = sa
    return sas


def read_charon_log(path):
    """Child SAs charon established: list of (spi_in, spi_out, {key_i||salt, key_r||salt})."""
    lines = open(path, errors="replace").read().splitlines()
    pending = {}   # thread -> [initiator key, responder key] of the SA being set up
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\S+ (\d+)\[CHD\] encryption (initiator|responder) key => (\d+) bytes", line)
        if m:
            thread, n, hx = m.group(1), int(m.group(3)), ""
            i += 1
            while i < len(lines):
                mm = re.match(r"\S+ \d+\[CHD\]\s+\d+: ((?:[0-9A-F]{2} )+)", lines[i])
                if not mm:
                    break
                hx += mm.group(1).replace(" ", "")
                i += 1
            pending.setdefault(thread, []).append(bytes.fromhex(hx[: 2 * n]))
            continue
        m = re.match(r"\S+ (\d+)\[IKE\] (?:inbound )?CHILD_SA \S+ established with SPIs ([0-9a-f]{8})_i ([0-9a-f]{8})_o", line)
        if m:
            keys = pending.pop(m.group(1), [])
            if len(keys) >= 2:
                out.append((int(m.group(2), 16), int(m.group(3), 16), keys[-2:]))
        i += 1
    return out


def check_keys(sas, children):
    """Step 1: p3d's SAs are charon's, with charon's keys. Returns the number of problems."""
    bad = 0
    by_in = {c[0]: c for c in children}
    by_out = {c[1]: c for c in children}
    for spi, sa in sorted(sas.items()):
        material = sa["key"] + sa["salt"]
        # p3d sends (tx) under charon's inbound SPI and receives (rx) under its outbound one.
        child = (by_in if sa["dir"] == "tx" else by_out).get(spi)
        if child is None:
            print("key check: p3d's %s SA 0x%08x is no child SA charon established" % (sa["dir"], spi))
            bad += 1
            continue
        peer_spi = child[1] if sa["dir"] == "tx" else child[0]
        if material not in child[2]:
            print("key check: p3d's %s key of SPI 0x%08x is not one charon derived" % (sa["dir"], spi))
            bad += 1
        elif peer_spi in sas and sas[peer_spi]["key"] + sas[peer_spi]["salt"] == material:
            print("key check: p3d uses one key both ways on SPIs 0x%08x/0x%08x" % (spi, peer_spi))
            bad += 1
    return bad


def pcap_packets(path):
    """(frame number, outer src, outer dst, ESP bytes from the SPI on) of every ESP packet."""
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        sys.exit("%s: not a classic pcap file" % path)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off, frame = 24, 0
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "IIII", data[off:off + 16])[2]
        pkt = data[off + 16: off + 16 + incl]
        off += 16 + incl
        frame += 1
        if linktype == 1:                      # Ethernet
            if len(pkt) < 14 or pkt[12:14] != b"\x08\x00":
                continue
            ip = pkt[14:]
        elif linktype == 113:                  # Linux cooked (tcpdump -i any)
            if len(pkt) < 16 or pkt[14:16] != b"\x08\x00":
                continue
            ip = pkt[16:]
        else:
            sys.exit("%s: link type %d not handled" % (path, linktype))
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        ip = ip[:total]
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        if struct.unpack("!H", ip[6:8])[0] & 0x3FFF:
            continue                           # a fragment: not expected on this link
        if ip[9] == 50:
            esp = ip[ihl:]
        elif ip[9] == 17 and len(ip) >= ihl + 8:
            sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
            esp = ip[ihl + 8:]
            if 4500 not in (sport, dport) or len(esp) < 8 or esp[:4] == b"\0\0\0\0":
                continue                       # not ESP-in-UDP: IKE behind the marker, keepalive
        else:
            continue
        yield frame, src, dst, esp


def open_esp(sa, esp):
    """Decrypts one ESP packet (RFC 4303 + 4106); returns (seq, iv, inner version) or a reason."""
    if len(esp) < 8 + 8 + 16 + 2:
        return "too short"
    spi, seq = struct.unpack("!II", esp[:8])
    iv = esp[8:16]
    aad = esp[:4] + (b"\0\0\0\0" if sa["esn"] else b"") + esp[4:8]
    try:
        plain = AESGCM(sa["key"]).decrypt(sa["salt"] + iv, esp[16:], aad)
    except InvalidTag:
        return "ICV does not verify"
    padlen, nh = plain[-2], plain[-1]
    if padlen + 2 > len(plain) or plain[-2 - padlen:-2] != bytes(range(1, padlen + 1)):
        return "bad padding (RFC 4303 section 2.4)"
    inner = plain[:-2 - padlen]
    if nh == 4 and inner and inner[0] >> 4 == 4 or nh == 41 and inner and inner[0] >> 4 == 6:
        return (seq, iv, nh)
    if nh == 59:
        return (seq, iv, nh)
    return "next header %d does not match the inner packet" % nh


def tshark_count(pcap, sas, p3d):
    """Step 4: tshark's verdict on p3d's ESP packets of non-ESN SAs: (good, bad)."""
    opts = ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"]
    for spi, sa in sas.items():
        if sa["esn"]:
            continue                          # Wireshark 4.0 has no ESN in its AAD
        opts += ["-o", 'uat:esp_sa:"IPv4","%s","%s","0x%08x","AES-GCM with 16 octet ICV [RFC4106]","0x%s","NULL","0x"'
                 % (sa["src"], sa["dst"], spi, (sa["key"] + sa["salt"]).hex())]
    esn_spis = ",".join("0x%08x" % s for s, sa in sas.items() if sa["esn"]) or "0"
    flt = "esp && esp.spi != 0 && ip.src == %s && !(esp.spi in {%s})" % (p3d, esn_spis.replace(",", ", "))
    res = subprocess.run(["tshark", "-n", "-r", pcap, "-d", "udp.port==4500,udpencap"] + opts +
                         ["-Y", flt, "-T", "fields", "-e", "frame.number", "-e", "esp.spi", "-e", "esp.icv_good",
                          "-e", "ip.src"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("tshark failed: %s" % res.stderr.strip()[:300])
    good = bad = 0
    for row in res.stdout.splitlines():
        f = row.split("\t")
        # A decrypted packet has two ip.src (outer, inner); icv_good is 1/True only when verified.
        if len(f) >= 4 and f[2] in ("1", "True") and "," in f[3]:
            good += 1
        else:
            if bad < 5:
                print("tshark: frame %s SPI %s: ICV %s, inner %s" % (f[0], f[1] if len(f) > 1 else "?",
                                                                    f[2] if len(f) > 2 else "?", f[3:]))
            bad += 1
    return good, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--keylog", required=True)
    ap.add_argument("--p3d", required=True, help="p3d's WAN address (outer source of its packets)")
    ap.add_argument("--charon-log")
    ap.add_argument("--min-p3d", type=int, default=1)
    ap.add_argument("--min-sas", type=int, default=1, help="p3d tx SAs that must carry packets")
    ap.add_argument("--json")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--any-spi", action="store_true", help="no SPI range check (the key log is not p3d's)")
    a = ap.parse_args()

    sas = read_keylog(a.keylog)
    problems = 0
    if not any(sa["dir"] == "tx" for sa in sas.values()) or not any(sa["dir"] == "rx" for sa in sas.values()):
        print("key log: no ESP SA for both directions (%d ESP lines)" % len(sas))
        return 1
    for spi, sa in sorted(sas.items()):
        # RFC 4303 section 2.1 reserves SPIs 1..255; DESIGN.md keeps the top bit for P3 on UDP.
        if sa["dir"] == "rx" and not a.any_spi and not 256 <= spi < 0x80000000:
            print("key log: p3d chose the inbound SPI 0x%08x (want 256..0x7fffffff)" % spi)
            problems += 1
    if a.charon_log:
        children = read_charon_log(a.charon_log)
        print("charon established %d child SAs; p3d's key log names %d ESP SAs" % (len(children), len(sas)))
        problems += check_keys(sas, children)

    per_spi = {}
    seen = {}
    p3d_ok = peer_ok = 0
    for frame, src, dst, esp in pcap_packets(a.pcap):
        spi = struct.unpack("!I", esp[:4])[0]
        st = per_spi.setdefault(spi, dict(src=src, dst=dst, ok=0, bad=0, first=None, last=None))
        sa = sas.get(spi)
        if sa is None:
            r = "SPI in no key-log line"
        else:
            r = open_esp(sa, esp)
        if isinstance(r, str):
            st["bad"] += 1
            if st["bad"] <= 3:
                print("frame %d %s -> %s SPI 0x%08x: %s" % (frame, src, dst, spi, r))
            continue
        seq, iv, _ = r
        st["ok"] += 1
        st["first"] = seq if st["first"] is None else st["first"]
        st["last"] = seq
        if src == a.p3d:
            p3d_ok += 1
            ivs, seqs = seen.setdefault(spi, (set(), set()))
            if iv in ivs or seq in seqs:
                print("frame %d: p3d repeats %s under SPI 0x%08x" % (frame, "an IV" if iv in ivs else "sequence %d" % seq, spi))
                problems += 1
            ivs.add(iv)
            seqs.add(seq)
        else:
            peer_ok += 1
    failed = sum(st["bad"] for st in per_spi.values())
    for spi, st in sorted(per_spi.items(), key=lambda kv: (kv[1]["src"], kv[1]["first"] or 0)):
        who = "p3d" if st["src"] == a.p3d else "peer"
        print("SPI 0x%08x %s -> %s (%s sends%s): %d decrypted, %d failed, sequence %s..%s" % (
            spi, st["src"], st["dst"], who, ", ESN" if sas.get(spi, {}).get("esn") else "",
            st["ok"], st["bad"], st["first"], st["last"]))
    p3d_sas = sum(1 for st in per_spi.values() if st["src"] == a.p3d and st["ok"])
    print("ESP packets decrypted: p3d %d, peer %d; failed %d; p3d sent under %d SAs" % (p3d_ok, peer_ok, failed, p3d_sas))
    problems += failed
    if p3d_ok < a.min_p3d:
        print("p3d sent %d ESP packets that decrypt, want at least %d" % (p3d_ok, a.min_p3d))
        problems += 1
    if p3d_sas < a.min_sas:
        print("p3d sent under %d SAs, want at least %d" % (p3d_sas, a.min_sas))
        problems += 1

    t_good = t_bad = None
    if not a.no_tshark:
        want = sum(st["ok"] + st["bad"] for spi, st in per_spi.items()
                   if st["src"] == a.p3d and not sas.get(spi, {}).get("esn"))
        t_good, t_bad = tshark_count(a.pcap, sas, a.p3d)
        print("tshark: %d of p3d's non-ESN ESP packets with a good ICV, %d not (the decoder above saw %d)"
              % (t_good, t_bad, want))
        if t_bad or t_good != want:
            problems += 1
    if a.json:
        json.dump(dict(p3d_decrypted=p3d_ok, peer_decrypted=peer_ok, failed=failed, p3d_sas=p3d_sas,
                       tshark_good=t_good, tshark_bad=t_bad, problems=problems,
                       spis={"0x%08x" % k: v for k, v in per_spi.items()}), open(a.json, "w"), indent=1)
    print("esp_check: %s" % ("PASS" if not problems else "FAIL (%d problems)" % problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
