#!/usr/bin/env bash
# Realserver mode behind a director (docs/cluster.md): two members m1, m2 share the WAN
# address 192.0.2.1 (the VIP, director = "lvs"), each sends under its own lanes of one
# static-key session with the secondary s; a director namespace spreads the secondary's
# packets over both members by rewriting the destination MAC (nftables netdev ingress,
# round robin), a bridge switches them by MAC; the members answer directly (direct routing).
#
#   hS 10.2.0.2 -- [sLan] p3d s [sWan] -- dS |br0 (ns d)| d1 -- [m1Wan] p3d m1 [m1Lan] --+
#                                   VIP's MAC: 02:00:00:00:0d:01     d2 -- [m2Wan] p3d m2 [m2Lan] --+-- brL -- hA
#   hA: 10.1.0.2 (default via m1 at 10.1.0.1) and 10.1.0.4 (routed via m2 at 10.1.0.3)
#
# Asserts: ping both ways from both host addresses; UDP transfers both ways; both members
# receive the one session's packets; the secondary sees two sets of P3 IDs (0x2000 from m1,
# 0x2001 from m2); no member answers ARP for the VIP; after m2 is killed and the director
# stops sending to it, traffic continues through m1 (loss printed, bounded).
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl nft tcpdump
. "$here/lib/cluster.sh"
py=/usr/bin/python3
"$py" -c 'import scapy' 2>/dev/null || { echo "SKIP: /usr/bin/python3 lacks python3-scapy"; exit 77; }
tel="$here/../tools/p3_telemetry.py"
p3d_names="s m1 m2"
ns_hs=$tag-hs ns_s=$tag-s ns_d=$tag-d ns_m1=$tag-m1 ns_m2=$tag-m2 ns_l=$tag-l
all_ns="$ns_hs $ns_s $ns_d $ns_m1 $ns_m2 $ns_l"
VMAC=02:00:00:00:0d:01 SMAC=02:00:00:00:0a:02 M1MAC=02:00:00:00:01:01 M2MAC=02:00:00:00:02:01

# ---- namespaces and links -----------------------------------------------------------------
ip netns add "$ns_hs" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
for n in $ns_s $ns_d $ns_m1 $ns_m2 $ns_l; do ip netns add "$n" || fail "netns $n"; done
link "$ns_hs" hS "$ns_s" sLan
link "$ns_s" sWan "$ns_d" dS
link "$ns_m1" m1Wan "$ns_d" d1
link "$ns_m2" m2Wan "$ns_d" d2
link "$ns_m1" m1Lan "$ns_l" l1
link "$ns_m2" m2Lan "$ns_l" l2
link "$ns_l" hA "$ns_l" lA
in_ns "$ns_s" ip link set sWan address $SMAC
in_ns "$ns_m1" ip link set m1Wan address $M1MAC
in_ns "$ns_m2" ip link set m2Wan address $M2MAC
links_up "$ns_hs hS" "$ns_s sLan" "$ns_s sWan" "$ns_d dS" "$ns_d d1" "$ns_d d2" "$ns_m1 m1Wan" "$ns_m1 m1Lan" \
         "$ns_m2 m2Wan" "$ns_m2 m2Lan" "$ns_l l1" "$ns_l l2" "$ns_l hA" "$ns_l lA"
# The director: a bridge (the switch behind it, members' MACs static) and the netdev ingress
# rule on the secondary's side that picks a member per packet.
director_bridge "$ns_d" dS "$M1MAC=d1" "$M2MAC=d2"
spread() { director "$ns_d" dS "ether daddr $VMAC ether daddr set numgen inc mod 2 map { $1 }"; }   # the member MACs
spread "0 : $M1MAC, 1 : $M2MAC"
# The LAN: both members and host A on one bridge.
mkbridge "$ns_l" brL l1 l2 lA
in_ns "$ns_l" ip addr add 10.1.0.2/24 dev hA
in_ns "$ns_l" ip addr add 10.1.0.4/24 dev hA
in_ns "$ns_l" ip route add default via 10.1.0.1 src 10.1.0.2
in_ns "$ns_l" ip route add default via 10.1.0.3 table 100
in_ns "$ns_l" ip rule add from 10.1.0.4 lookup 100
in_ns "$ns_hs" ip addr add 10.2.0.2/24 dev hS
in_ns "$ns_hs" ip route add default via 10.2.0.1

# ---- configurations: one static-key session, its lanes per member ---------------------------
K1=00112233445566778899aabbccddeeff S1=01020304   # secondary -> members
K2=ffeeddccbbaa99887766554433221100 S2=0a0b0c0d   # members -> secondary (lane 0; 1 derived)
cluster_key   # the same on every member
member_conf() {  # n lan-address
  cat >"$work/m$1.conf" <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; cluster_state = 1; state_dir = "$work/state$1"; };
cluster = { member = $1; max_members = 2; director = "lvs"; key_file = "$work/cluster.key"; role = "primary"; };
dataplane = { wan = { port = 0; address = "192.0.2.1/24"; gateway = "192.0.2.2"; gateway_mac = "$SMAC"; };
  lan = { port = 1; address = "$2/24"; }; $dp_tuning };
remotes = ( { id = 7; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ];
  static_keys = { tx_id = 0x2000; tx_key = "$K2"; tx_salt = "$S2"; rx_id = 0x1000; rx_key = "$K1"; rx_salt = "$S1";
                  lanes = 1; persist_sequence = false; }; } );
CONF
  chmod 600 "$work/m$1.conf"
}
member_conf 1 10.1.0.1
member_conf 2 10.1.0.3
cat >"$work/s.conf" <<CONF
role = "secondary";
local = { ip = 4; address = "192.0.2.2"; state_dir = "$work/states"; };
dataplane = { wan = { port = 0; address = "192.0.2.2/24"; gateway = "192.0.2.1"; gateway_mac = "$VMAC"; };
  lan = { port = 1; address = "10.2.0.1/24"; }; $dp_tuning };
remotes = ( { id = 1; ip = 4; address = "192.0.2.1"; subnets = [ "10.1.0.0/24" ];
  static_keys = { tx_id = 0x1000; tx_key = "$K1"; tx_salt = "$S1"; rx_id = 0x2000; rx_key = "$K2"; rx_salt = "$S2";
                  lanes = 2; persist_sequence = false; }; } );
CONF
chmod 600 "$work/s.conf"
conf_check m1 m2 s

# ---- start ------------------------------------------------------------------------------------
start s "$ns_s" 0 sWan sLan; pid_s=$!
start m1 "$ns_m1" 0 m1Wan m1Lan; pid_m1=$!
start m2 "$ns_m2" "$cpu2" m2Wan m2Lan; pid_m2=$!
for n in s m1 m2; do v=pid_$n; wait_for "$n" "${!v}" 'P3-I0001' 15 "start"; done
grep -q 'sending on lanes 1..1 (P3 IDs 0x2001..) of 2' "$work/m2.log" || fail "m2 does not say it sends on its lane 1"

in_ns "$ns_d" tcpdump -i dS -nn -U -w "$work/ds.pcap" 'ip proto 50' >/dev/null 2>&1 &
pid_dump=$!
sleep 0.5
in_ns "$ns_l" ping -c 3 -i 0.2 -W 1 -I 10.1.0.2 10.2.0.2 >/dev/null 2>&1   # neighbours learnt
in_ns "$ns_l" ping -c 3 -i 0.2 -W 1 -I 10.1.0.4 10.2.0.2 >/dev/null 2>&1
in_ns "$ns_l" ping -c 10 -i 0.1 -W 1 -I 10.1.0.2 10.2.0.2 >"$work/ping1" 2>&1
in_ns "$ns_l" ping -c 10 -i 0.1 -W 1 -I 10.1.0.4 10.2.0.2 >"$work/ping2" 2>&1
in_ns "$ns_hs" ping -c 10 -i 0.1 -W 1 10.1.0.4 >"$work/ping3" 2>&1
for f in ping1 ping2 ping3; do
  [ "$(ping_replies "$work/$f")" -ge 9 ] || fail "$f: $(ping_replies "$work/$f")/10 replies"
done
echo "ping through m1, through m2, and from the secondary's side: all answered"

# UDP transfers both ways: secondary's side -> host A (spread over both members by the
# director), host A -> secondary's side from both of its addresses (out through m1 and m2).
udp() {  # ns-rx bind-address ns-tx "src,src..." dst count -> prints packets received
  in_ns "$1" "$py" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 9000)); s.settimeout(2)
n = 0
try:
    while True:
        s.recv(2048); n += 1
except socket.timeout:
    pass
print(n)' "$2" >"$work/udp-rx" 2>&1 &
  local rx=$!
  sleep 0.3
  in_ns "$3" "$py" -c '
import socket, sys, time
srcs, dst, count = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
socks = []
for a in srcs:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((a, 0)); socks.append(s)
for i in range(count):
    socks[i % len(socks)].sendto(b"x" * 1000, (dst, 9000))
    if i % 50 == 0: time.sleep(0.01)' "$4" "$5" "$6"
  wait "$rx"
  cat "$work/udp-rx"
}
got=$(udp "$ns_l" 10.1.0.2 "$ns_hs" 0.0.0.0 10.1.0.2 2000)
echo "UDP 2000 x 1000 B secondary's side -> host A: $got received"
[ "${got:-0}" -ge 1800 ] || fail "UDP transfer to host A: $got of 2000"
got=$(udp "$ns_hs" 10.2.0.2 "$ns_l" 10.1.0.2,10.1.0.4 10.2.0.2 2000)
echo "UDP 2000 x 1000 B host A (through m1 and m2) -> secondary's side: $got received"
[ "${got:-0}" -ge 1800 ] || { for n in s m1 m2; do echo "$n: $("$py" "$tel" "$tag-$n" /p3/drops | tr -d "\n " | grep -oE "\"[a-z_0-9]+\":[1-9][0-9]*" | tr "\n" " ")"; done; fail "UDP transfer from host A: $got of 2000"; }

rx1=$("$py" "$tel" "$tag-m1" /p3/stats rx_wan_pkts) rx2=$("$py" "$tel" "$tag-m2" /p3/stats rx_wan_pkts)
echo "WAN packets received: m1 $rx1, m2 $rx2"
[ "${rx1:-0}" -gt 500 ] && [ "${rx2:-0}" -gt 500 ] || fail "the session's packets did not reach both members"

# The secondary's side of the director: what the members sent, by P3 ID.
sleep 0.5; kill "$pid_dump"; wait "$pid_dump" 2>/dev/null; pid_dump=
# P3 ID: bytes 4..7 of the P3 header (the IP payload; no NAT here), by the member's MAC.
ids=$("$py" - "$work/ds.pcap" "$M1MAC" "$M2MAC" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
macs = {bytes.fromhex(m.replace(":", "")): n for n, m in (("m1", sys.argv[2]), ("m2", sys.argv[3]))}
seen = {"m1": {}, "m2": {}}
off = 24
while off + 16 <= len(data):
    incl = struct.unpack_from("<I", data, off + 8)[0]
    f = data[off + 16:off + 16 + incl]
    off += 16 + incl
    who = macs.get(f[6:12])
    if who is None or f[12:14] != b"\x08\x00":
        continue
    ihl = (f[14] & 15) * 4
    pid = struct.unpack_from(">I", f, 14 + ihl + 4)[0]
    seen[who][pid] = seen[who].get(pid, 0) + 1
print(" ".join("%s:%s" % (n, ",".join("0x%x=%d" % kv for kv in sorted(seen[n].items()))) for n in ("m1", "m2")))
PY
)
echo "P3 IDs the members sent to the secondary (ID=packets): $ids"
case $ids in
  "m1:0x2000="[0-9]*" m2:0x2001="[0-9]*) ;;
  *) fail "each member must send under its own lane only (m1 0x2000, m2 0x2001): $ids" ;;
esac
ar=$("$py" "$tel" "$tag-s" /p3/drops p3_auth)
[ "${ar:-0}" -eq 0 ] || fail "the secondary failed $ar packets' authentication"

# No member answers ARP for the VIP (the director's neighbour entry is static).
arp=$(in_ns "$ns_d" "$py" - <<'PY' 2>/dev/null
import logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, ARP, srp, conf
conf.verb = 0
ans, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="192.0.2.1", psrc="192.0.2.100"), iface="br0", timeout=1.5,
             retry=1, multi=True)
print(len(ans))
PY
)
echo "ARP replies for the VIP: ${arp:-?}"
[ "$arp" = 0 ] || fail "ARP for the VIP answered ($arp replies)"
na=$(( $("$py" "$tel" "$tag-m1" /p3/drops cluster_no_answer) + $("$py" "$tel" "$tag-m2" /p3/drops cluster_no_answer) ))
[ "$na" -ge 2 ] || fail "the members did not count the ARP requests they left unanswered ($na)"

# A member killed: the director's health check takes it out; traffic goes on through m1.
in_ns "$ns_hs" ping -c 60 -i 0.05 -W 1 10.1.0.2 >"$work/ping4" 2>&1 &
pid_ping=$!
sleep 1
kill -KILL "$pid_m2"; wait "$pid_m2" 2>/dev/null; pid_m2=
sleep 0.3   # the health check's delay
spread "0 : $M1MAC, 1 : $M1MAC"
wait "$pid_ping"; pid_ping=
got=$(ping_replies "$work/ping4")
echo "member m2 killed during 60 pings at 50 ms: $got answered, $((60 - got)) lost"
[ "$got" -ge 40 ] || fail "only $got of 60 pings answered across the member's loss"
in_ns "$ns_hs" ping -c 10 -i 0.1 -W 1 10.1.0.2 >"$work/ping5" 2>&1
[ "$(ping_replies "$work/ping5")" -ge 9 ] || fail "after m2 left: $(ping_replies "$work/ping5")/10 replies"
echo "PASS: 84-cluster-rs"
