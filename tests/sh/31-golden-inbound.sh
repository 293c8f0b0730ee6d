#!/usr/bin/env bash
# Golden test, inbound: the independent encoder (tests/tools/p3_decode.py encode: scapy +
# cryptography, written from DESIGN.md) seals clear packets the way the peer would; p3d with
# static keys decrypts them and puts exactly the clear packets on its LAN, unchanged. Forged
# tags, replays, an unknown P3 ID, an inner source outside the peer's subnets, an inner
# destination outside ours and a valid packet re-sent from another outer address are
# appended: each is counted under its reason and none reaches the LAN.
#
#   wan_in.pcap --rx--> net_pcap1 (WAN 192.0.2.1, MAC 02:70:63:61:70:01)
#                          p3d -l 0, remote 1 = 198.51.100.2 (subnets 10.2.0.0/24), static keys
#   lan_out.pcap <--tx-- net_pcap0 (LAN 10.1.0.1/24; hosts 10.1.5.0/24 behind 10.1.0.254)
P3D_LOG_LINES=30
. "$(dirname "$0")/lib/p3d-test.sh"
py=/usr/bin/python3
tools=$ROOT/tests/tools
"$py" -c 'import scapy, cryptography' 2>/dev/null ||
  { echo "skip: /usr/bin/python3 lacks python3-scapy or python3-cryptography"; exit 77; }

RX_KEY=f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000
RX_SALT=01020304
RX_ID=0x201
PEER=198.51.100.2
LOCAL=192.0.2.1

# Clear packets as the peer's LAN sends them (10.2.0.0/24 -> our hosts), 20 B to 1446 B IP.
"$py" - "$work/clear.pcap" "$work/stranger.pcap" "$work/outsider.pcap" <<'PY' || { echo "FAIL: could not write the clear pcap"; exit 1; }
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, UDP, TCP, ICMP, Raw, wrpcap
pk = []
for i, n in enumerate([20, 21, 28, 46, 64, 100, 255, 512, 1000, 1400, 1446] * 2):
    ip = IP(src="10.2.0.%d" % (10 + i % 5), dst="10.1.5.%d" % (20 + i % 7), ttl=60 + i % 3, id=i, tos=(i % 4) << 2)
    if n < 28:
        p = ip / Raw(bytes(range(n - 20)))
        p[IP].proto = 253
    elif i % 3 == 0:
        p = ip / UDP(sport=1000 + i, dport=53) / Raw(bytes((i + j) & 255 for j in range(n - 28)))
    elif i % 3 == 1 and n >= 40:
        p = ip / TCP(sport=2000 + i, dport=443, flags="PA") / Raw(bytes((3 * j) & 255 for j in range(n - 40)))
    else:
        p = ip / ICMP(type=8, id=i) / Raw(bytes((5 * j) & 255 for j in range(n - 28)))
    pk.append(Ether(src="02:00:00:00:02:01", dst="02:00:00:00:02:02") / IP(bytes(p[IP])))
wrpcap(sys.argv[1], pk)
# An inner source the peer does not own (10.9.0.1): authenticated, still never forwarded.
wrpcap(sys.argv[2], [Ether() / IP(src="10.9.0.1", dst="10.1.5.20") / UDP(sport=1, dport=2) / Raw(b"x" * 30)])
# An inner destination that is not ours (10.7.0.1, neither the LAN prefix nor local.subnets).
wrpcap(sys.argv[3], [Ether() / IP(src="10.2.0.9", dst="10.7.0.1") / UDP(sport=1, dport=2) / Raw(b"y" * 30)])
PY
count=22

enc() {  # $1 input, $2 output, $3 first sequence, $4 key
  "$py" "$tools/p3_decode.py" encode "$1" "$2" --key "$4" --salt "$RX_SALT" --id "$RX_ID" \
    --src "$PEER" --dst "$LOCAL" --dst-mac 02:70:63:61:70:01 --src-mac 02:00:00:00:00:fe \
    --first-seq "$3" >/dev/null || fail "encoder failed"
}
enc "$work/clear.pcap" "$work/good.pcap" 1 "$RX_KEY"
enc "$work/stranger.pcap" "$work/stranger_p3.pcap" 100 "$RX_KEY"
enc "$work/stranger.pcap" "$work/wrongkey.pcap" 101 "${RX_KEY/f0/0f}"
enc "$work/outsider.pcap" "$work/outsider_p3.pcap" 102 "$RX_KEY"
# WAN input: the good ones; then replays of the first two, a forged tag, a wrong key, an
# unknown P3 ID, the stranger, the outsider, and the sixth good packet again from 203.0.113.9
# (a captured packet re-sent from elsewhere: refused before it reaches the replay window).
"$py" - "$work/good.pcap" "$work/stranger_p3.pcap" "$work/wrongkey.pcap" "$work/wan_in.pcap" "$work/outsider_p3.pcap" <<'PY' ||
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.utils import rdpcap, wrpcap
from scapy.packet import Raw
good = [bytes(p) for p in rdpcap(sys.argv[1])]
stranger = bytes(rdpcap(sys.argv[2])[0])
wrong = bytes(rdpcap(sys.argv[3])[0])
forged = bytearray(good[3]); forged[-1] ^= 1
unknown = bytearray(good[4]); unknown[14 + 20 + 6] ^= 0x40       # P3 ID 0x201 -> 0x4201
# Sequences of the appended copies: replays of 1 and 2; the forged one reuses 4 (already seen
# by then, so it is a replay before it is a bad tag): give it a fresh sequence instead.
forged[14 + 20 + 15] = 200
from scapy.all import Ether, IP
outsider = bytes(rdpcap(sys.argv[5])[0])
moved = Ether(good[5])
moved[IP].src = "203.0.113.9"
del moved[IP].chksum
out = good + [good[0], good[1], bytes(forged), wrong, bytes(unknown), stranger, outsider, bytes(moved)]
wrpcap(sys.argv[4], [Raw(f) for f in out])
PY
  fail "could not write the WAN input"
"$py" -c 'import sys; from scapy.utils import PcapWriter; PcapWriter(sys.argv[1], linktype=1).close()' "$work/empty.pcap"

cat >"$work/p3d.conf" <<CONF
role = "primary";
local = { ip = 4; address = "$LOCAL"; port = 5653; state_dir = "$work/state";
          subnets = [ "10.1.5.0/24" ]; };   # the hosts behind the LAN gateway
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; gateway = "10.1.0.254"; gateway_mac = "02:00:00:00:00:fd"; };
  wan = { port = 1; address = "$LOCAL/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; mtu = 1500; };
  idle_backoff_us = 100;
};
remotes = (
  { id = 1; ip = 4; address = "$PEER"; subnets = [ "10.2.0.0/24" ]; key_type = "AES256";
    static_keys = { tx_id = 0x101; tx_key = "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f";
                    tx_salt = "0a0b0c0d"; rx_id = $RX_ID; rx_key = "$RX_KEY"; rx_salt = "$RX_SALT"; }; }
);
CONF
chmod 600 "$work/p3d.conf"
prefix=p3t31-$$
"$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 \
  --vdev "net_pcap0,rx_pcap=$work/empty.pcap,tx_pcap=$work/lan_out.pcap" \
  --vdev "net_pcap1,rx_pcap=$work/wan_in.pcap,tx_pcap=$work/wan_out.pcap" \
  -- -c "$work/p3d.conf" -f >"$work/log" 2>&1 &
pid=$!
wait_started
"$py" "$tools/p3_telemetry.py" "$prefix" --wait-socket 10 || fail "no telemetry socket"
total=$((count + 8))
for _ in $(seq 100); do
  rx=$("$py" "$tools/p3_telemetry.py" "$prefix" /p3/stats rx_wan_pkts)
  [ "${rx:-0}" -ge "$total" ] && break
  sleep 0.1
done
sleep 0.3
"$py" "$tools/p3_telemetry.py" "$prefix" /p3/stats >"$work/stats.json"
"$py" "$tools/p3_telemetry.py" "$prefix" /p3/drops >"$work/drops.json"
"$py" "$tools/p3_telemetry.py" "$prefix" /p3/session,1 >"$work/session.json"
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
rm -rf "/var/run/dpdk/$prefix"
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"

"$py" - "$work" "$count" <<'PY' || fail "inbound result differs"
import sys, json, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.utils import rdpcap
w, count = sys.argv[1], int(sys.argv[2])
clear = [bytes(p)[14:] for p in rdpcap(w + "/clear.pcap")]
out = [bytes(p) for p in rdpcap(w + "/lan_out.pcap")]
stats, drops, ses = (json.load(open(w + f)) for f in ("/stats.json", "/drops.json", "/session.json"))
ok = True
def check(cond, what):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok &= bool(cond)
check(len(out) == count, "%d frames on the LAN, %d expected" % (len(out), count))
check(all(f[:6] == bytes.fromhex("0200000000fd") and f[6:12] == bytes.fromhex("027063617000") for f in out),
      "every LAN frame goes from our LAN MAC to the LAN gateway")
check(sorted(f[14:] for f in out) == sorted(clear), "the LAN frames carry exactly the clear packets, byte for byte")
check(stats.get("decrypted") == count + 2,
      "decrypted %s: the clear ones, the stranger and the outsider (refused after)" % stats.get("decrypted"))
for reason, n in (("p3_replay", 2), ("p3_auth", 2), ("p3_unknown_id", 1), ("p3_inner_src", 1),
                  ("p3_inner_dst", 1), ("p3_wrong_peer", 1)):
    check(drops.get(reason) == n, "%s = %s, expected %d" % (reason, drops.get(reason), n))
check(ses.get("rx_pkts") == count and ses.get("rx_replayed") == 2 and ses.get("rx_auth_failed") == 2,
      "session counters: rx %s, replayed %s, auth failed %s" % (ses.get("rx_pkts"), ses.get("rx_replayed"),
                                                                 ses.get("rx_auth_failed")))
sys.exit(0 if ok else 1)
PY
echo "ok: inbound: $count packets decrypted to the LAN unchanged; forgeries and replays counted, never forwarded"
exit 0
