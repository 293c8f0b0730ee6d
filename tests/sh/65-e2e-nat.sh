#!/usr/bin/env bash
# A NAT between the appliances: the setup exchange detects it (P3-I0416 on both sides) and the
# session's P3 travels in UDP between the nat_ports (4500). The router forgets an idle UDP
# mapping after 5 s; with heartbeat_time 1 the heartbeats hold the one mapping for the whole
# run (the router's conntrack events: one mapping of port 4500 made, none destroyed), through
# 12 s with no user traffic. Ping and TCP pass both ways (TCP learning the UDP mode's tunnel
# MTU, 1438), and rekeys every ~2 s pass with a
# ping at 10/s losing nothing, a TCP transfer whole, and no packet refused under any key. On the router's primary
# side the capture shows only ARP, setup UDP (5653) and UDP 4500 between the NAT's address and
# the primary: no ESP-like protocol 50, no inner address.
#
#   host A ns      primary ns                   router ns (NAT)                    secondary ns              host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [rA]  forwards  [rB] -veth- [bWan] p3d b [bLan] -veth- 10.2.0.2
#     hA           10.1.0.1   192.0.2.1/24   192.0.2.254   198.51.100.254   198.51.100.2/24 10.2.0.1      hB
#                  gateway 192.0.2.254     ^ nft: oifname rA masquerade ^   gateway 198.51.100.254
#                                    tcpdump on rA            tcpdump on rB
#                                          conntrack -E (UDP timeouts 5 s)
#
# Needs root, network namespaces with veth, nftables NAT (nft), conntrack and tcpdump (exit 77
# otherwise).
. "$(dirname "$0")/lib/netns-nat.sh" p3ctl tcpdump
t0=$(date +%s)
log_lines=40
udp_timeout=5
nat_topology "$udp_timeout"

admin() { echo "admin = { socket = \"$work/$1.sock\"; viewer_group = \"nogroup\"; audit = \"$work/audit-$1.jsonl\"; };"; }
nat_b_local=$(admin b)
nat_conf "rekey_wait = 2; heartbeat_time = 1; heartbeat_fail = 5; $(admin a)"
ctl() { local n=$1; shift; "$p3ctl" -s "$work/$n.sock" "$@"; }
rekeys() { grep -c 'P3-I0509' "$work/$1.log"; }

# tcpdump_start NAME IFACE: every frame on the router's IFACE into $work/NAME.pcap (pid_cap_NAME).
tcpdump_start() {
  ip netns exec "$ns_r" tcpdump -i "$2" --immediate-mode -B 16384 -s 0 -U -n -w "$work/$1.pcap" \
    >"$work/tcpdump-$1.txt" 2>&1 &
  printf -v "pid_cap_$1" '%s' $!
  local v=pid_cap_$1
  wait_log "$work/tcpdump-$1.txt" "${!v}" 'listening on' 10 "tcpdump on $2"
}
tcpdump_stop() {
  local v=pid_cap_$1
  sleep 0.5
  kill -INT "${!v}"; wait "${!v}"; printf -v "$v" ''
  grep -q '^0 packets dropped by kernel' "$work/tcpdump-$1.txt" ||
    fail "the capture $1 is incomplete: $(grep dropped "$work/tcpdump-$1.txt" | tr '\n' ' ')"
}
# ping_lossless NS DEST COUNT WHAT: COUNT pings at 10/s, every one answered.
ping_lossless() {
  in_ns "$1" ping -n -i 0.1 -c "$3" -W 2 "$2" >"$work/ping.txt" 2>&1
  [ "$(ping_replies "$work/ping.txt")" = "$3" ] || fail "$4: $(grep -E 'transmitted' "$work/ping.txt")"
}
# xfer WHAT FROM_NS TO_NS TO_ADDR MB: MB megabytes over one TCP connection; the receiver answers
# with the byte count and SHA-256 of what it read, which must be what was sent.
xfer() {
  ip netns exec "$3" /usr/bin/python3 "$work/xfer.py" recv 5202 >"$work/xfer-recv.txt" 2>&1 & pid_xrecv=$!
  wait_log "$work/xfer-recv.txt" "$pid_xrecv" listening 5 "TCP receiver ($1)"
  in_ns "$2" /usr/bin/python3 "$work/xfer.py" send "$4" 5202 $(($5 << 20)) >"$work/xfer-send.txt" 2>&1
  local rc=$?
  wait "$pid_xrecv"; pid_xrecv=
  echo "$1: $(cat "$work/xfer-send.txt")"
  [ "$rc" -eq 0 ] || fail "TCP transfer $1: $(cat "$work/xfer-recv.txt")"
}
cp "$(dirname "$0")/lib/xfer.py" "$work/xfer.py"   # the exact-byte transfer (tests/sh/lib/xfer.py)

# The router's view from before the first packet: both captures and its conntrack events.
tcpdump_start ra rA
tcpdump_start rb rB
ip netns exec "$ns_r" conntrack -E -p udp -o timestamp >"$work/conntrack.txt" 2>"$work/conntrack-err.txt" & pid_ct=$!
sleep 0.3
kill -0 "$pid_ct" 2>/dev/null || fail "conntrack -E in the router: $(cat "$work/conntrack-err.txt")"

pair_start
wait_for a "$pid_a" 'P3-I0416: setup with remote 7 (secondary.p3.test): NAT detected (peer is behind it)' 20 "NAT detected"
wait_for b "$pid_b" 'P3-I0416: setup with remote 1 (primary.p3.test): NAT detected (we are behind it)' 5 "NAT detected"
pair_wait_up 5
peer=$(ctl a --json status 7 | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["sessions"][0]["peer"])')
[ "${peer%:*}" = 192.0.2.254 ] || fail "the primary sends to $peer, not to the NAT's address 192.0.2.254"
echo "1. NAT detected on both sides; the primary's peer is the NAT's $peer; session up"

ping_lossless "$ns_ha" 10.2.0.2 10 "host A -> host B"
ping_lossless "$ns_hb" 10.1.0.2 10 "host B -> host A"
xfer "TCP A->B" "$ns_ha" "$ns_hb" 10.2.0.2 8
xfer "TCP B->A" "$ns_hb" "$ns_ha" 10.1.0.2 8
# The tunnel MTU in UDP mode is 8 bytes less than native (docs/dataplane-mtu.md): 1438 at WAN
# MTU 1500; host A's TCP learned it by path MTU discovery.
pmtu=$(in_ns "$ns_ha" ip route get 10.2.0.2 | grep -oE 'mtu [0-9]+')
[ "$pmtu" = "mtu 1438" ] || fail "host A's path MTU to host B through the NAT: '${pmtu:-none}', want 1438"
echo "2. ping both ways 10/10; TCP both ways whole; host A learned the UDP-mode tunnel MTU 1438"

# No user traffic for well over twice the router's UDP timeout: only heartbeats (and rekeys).
sleep $((udp_timeout * 2 + 2))
ping_lossless "$ns_hb" 10.1.0.2 5 "host B -> host A after $((udp_timeout * 2 + 2)) s without user traffic"
ping_lossless "$ns_ha" 10.2.0.2 5 "host A -> host B after $((udp_timeout * 2 + 2)) s without user traffic"
echo "3. after $((udp_timeout * 2 + 2)) s without user traffic (router UDP timeout ${udp_timeout} s): ping both ways 5/5"

# Rekeys under traffic: a ping at 10/s for 8 s (alone, so that no queue a bulk transfer fills
# can lose one), then a TCP transfer while the rekeys go on.
ra0=$(rekeys a); rb0=$(rekeys b)
ping_lossless "$ns_ha" 10.2.0.2 80 "ping at 10/s during rekeys"
ra=$(($(rekeys a) - ra0)); rb=$(($(rekeys b) - rb0))
[ "$ra" -ge 3 ] && [ "$rb" -ge 3 ] || fail "rekeys during the 8 s: primary $ra, secondary $rb (want >= 3 each)"
xfer "TCP A->B during rekeys" "$ns_ha" "$ns_hb" 10.2.0.2 32
echo "4. rekeys during 8 s of ping at 10/s: primary $ra, secondary $rb; ping 80/80; TCP whole"

# Nothing refused on either side: no tag failure, replay, old key or policy drop.
for n in a b; do
  id=7; [ "$n" = b ] && id=1
  ctl "$n" --json status "$id" >"$work/status-$n.json" || fail "p3ctl status at $n"
  /usr/bin/python3 - "$work/status-$n.json" "$n" <<'PY' || fail "p3d $n counted drops on the session (above)"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["sessions"][0]
d = s["drops"]
print("p3d %s: state %s, rekeys %d, rx %d tx %d packets, session drops %s; appliance drops %s" % (sys.argv[2],
      s["state"], s["rekeys"], s["rx_pkts"], s["tx_pkts"], d, r.get("control", {}).get("drops")))
sys.exit(0 if s["state"] == "up" and not any(d[k] for k in ("auth", "replay", "old_key", "policy", "down")) else 1)
PY
done
grep -q 'P3-E0\(601\|602\)\|P3-W0510' "$work/a.log" "$work/b.log" && fail "a session was lost or a rekey attempt failed"
[ "$(grep -c 'P3-I0501' "$work/a.log")" = 1 ] || fail "the session was set up more than once"

pair_stop
tcpdump_stop ra
tcpdump_stop rb
kill -INT "$pid_ct"; wait "$pid_ct"; pid_ct=

# The router's conntrack: one mapping for the P3 port, never destroyed while the session ran.
/usr/bin/python3 - "$work/conntrack.txt" <<'PY' || fail "the NAT mapping of the P3 port was not held (above)"
import re, sys
new, gone = [], []
for line in open(sys.argv[1]):
    if "dport=4500" not in line:
        continue
    (new if "[NEW]" in line else gone if "[DESTROY]" in line else []).append(line.strip())
print("router conntrack, UDP to 4500: %d mapping(s) made, %d destroyed" % (len(new), len(gone)))
for l in new + gone:
    print("  " + l)
sys.exit(0 if len(new) == 1 and not gone else 1)
PY

# The wire on both sides of the router: ARP, setup UDP 5653 and UDP 4500 only, between the
# addresses each side should show; no protocol 50; no inner address or payload in clear.
/usr/bin/python3 - "$work/ra.pcap" "$work/rb.pcap" <<'PY' || fail "the WAN carried something else (above)"
import sys
from collections import Counter
from scapy.all import rdpcap, ARP, IP, UDP
ok = True
for path, side, ends in ((sys.argv[1], "primary side (rA)", {"192.0.2.1", "192.0.2.254"}),
                         (sys.argv[2], "secondary side (rB)", {"192.0.2.1", "198.51.100.2"})):
    kinds, bad = Counter(), []
    for p in rdpcap(path):
        raw = bytes(p)
        if ARP in p:
            kinds["arp"] += 1
            continue
        if IP in p and UDP in p and {p[IP].src, p[IP].dst} == ends:
            ports = {p[UDP].sport, p[UDP].dport}
            if ports == {4500}:
                kinds["udp 4500<->4500"] += 1
            elif ports == {5653}:
                kinds["setup udp 5653"] += 1
            else:
                bad.append(p.summary())
            # An inner IPv4 header in clear holds source and destination side by side; a lone
            # 4-byte address turns up in ciphertext by chance (about once in 10^5 frames).
            a, b = bytes([10, 1, 0, 2]), bytes([10, 2, 0, 2])
            if a + b in raw or b + a in raw:
                bad.append("inner address in clear: " + p.summary())
            continue
        bad.append(p.summary())
    print("%s: %s; other: %d %s" % (side, dict(kinds), len(bad), bad[:5]))
    ok &= not bad and kinds["udp 4500<->4500"] > 100 and kinds["setup udp 5653"] >= 2
sys.exit(0 if ok else 1)
PY

for ns in $all_ns; do ip netns del "$ns" || fail "ip netns del $ns"; done
all_ns=
echo "PASS: through the NAT in UDP mode: one mapping held by heartbeats, ping and TCP both ways, $ra rekeys without loss; the WAN carried only UDP 4500 and setup ($(($(date +%s) - t0)) s)"
exit 0
