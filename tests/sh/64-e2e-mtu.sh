#!/usr/bin/env bash
# The tunnel MTU as a user meets it: a ping with DF set one byte above the tunnel MTU gets ICMP
# "fragmentation needed" (type 3 code 4) from the appliance's LAN address, its next-hop MTU the
# tunnel MTU; a DF ping of exactly that size passes both ways; a TCP transfer of 8 MB each way
# arrives whole (the receiver's SHA-256 matches), each sending host having learned the tunnel
# MTU by path MTU discovery (its route cache shows it). Then size hiding is turned on (`p3ctl remote set 7 size_hiding=true`: the
# session is set up again) and the same holds: padding stops at the WAN MTU, so the tunnel MTU
# does not shrink; the WAN shows the padded sizes.
#
#   host A ns              primary ns                        secondary ns              host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ------veth------ [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#   ping -M do, TCP      10.1.0.1   192.0.2.1            ^  192.0.2.2   10.2.0.1         TCP
#   tcpdump icmp on hA                           tcpdump -Q in on bWan (A -> B, size hiding)
#
# Every link has MTU 1500 and p3d's wan.mtu is its default, 1500. Tunnel MTU (docs/dataplane-mtu.md):
# the plaintext (inner + trailer 2) padded to 4 must fit 1500 - outer IPv4 20 - P3 header 16 -
# ICV 16, so 1446 (a 1418-byte ping payload + 28 bytes of ICMP and IP headers).
# Needs root, network namespaces with veth and tcpdump (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl tcpdump
t0=$(date +%s)
log_lines=40
wan_mtu=1500
tmtu=$((((wan_mtu - 20 - 16 - 16) & ~3) - 2))
# p3d without an admin section listens on /run/p3/PREFIX.sock; one killed on failure leaves it.
trap 'cleanup; rm -f "/run/p3/$tag"-*.sock' EXIT
pair_topology

admin="admin = { socket = \"$work/a.sock\"; viewer_group = \"nogroup\"; audit = \"$work/audit-a.jsonl\"; };"
pair_conf "rekey_wait = 600; heartbeat_time = 1; heartbeat_fail = 5; $admin"
ctl() { "$p3ctl" -s "$work/a.sock" "$@"; }
up_count() { grep -c 'P3-I0501: remote 7 (secondary.p3.test): control channel up as primary' "$work/a.log"; }

# tcpdump_start NAME NS IFACE FILTER...: a capture into $work/NAME.pcap (pid_cap_NAME), listening.
tcpdump_start() {
  local name=$1 ns=$2 ifc=$3
  shift 3
  ip netns exec "$ns" tcpdump -i "$ifc" --immediate-mode -B 8192 -s 0 -U -n -w "$work/$name.pcap" "$@" >"$work/tcpdump-$name.txt" 2>&1 &
  printf -v "pid_cap_$name" '%s' $!
  local v=pid_cap_$name
  wait_log "$work/tcpdump-$name.txt" "${!v}" 'listening on' 10 "tcpdump $name"
}
tcpdump_stop() {  # name: stops it once it has written what it has seen
  local v=pid_cap_$1
  sleep 0.5
  kill -INT "${!v}"; wait "${!v}"; printf -v "$v" ''
}
# route_mtu NS DEST: the path MTU the kernel in NS has cached for DEST (empty when none).
route_mtu() { in_ns "$1" ip route get "$2" | grep -oE 'mtu [0-9]+' | grep -oE '[0-9]+'; }
# frag_needed PCAP: the ICMP "fragmentation needed" replies in PCAP, one line each: source,
# next-hop MTU, the quoted datagram's destination and total length.
frag_needed() {
  /usr/bin/python3 - "$1" <<'PY'
import sys
from scapy.all import rdpcap, IP, ICMP, IPerror
for p in rdpcap(sys.argv[1]):
    if IP in p and ICMP in p and p[ICMP].type == 3 and p[ICMP].code == 4 and IPerror in p:
        print(p[IP].src, p[ICMP].nexthopmtu, p[IPerror].dst, p[IPerror].len)
PY
}
# xfer ROUND FROM_NS TO_NS TO_ADDR: 8 MB over one TCP connection; the receiver answers with the
# byte count and SHA-256 of what it read, which must be what was sent.
xfer() {
  local rnd=$1
  ip netns exec "$3" /usr/bin/python3 "$work/xfer.py" recv 5202 >"$work/xfer-recv-$rnd.txt" 2>&1 & pid_xrecv=$!
  wait_log "$work/xfer-recv-$rnd.txt" "$pid_xrecv" listening 5 "TCP receiver ($rnd)"
  in_ns "$2" /usr/bin/python3 "$work/xfer.py" send "$4" 5202 $((8 << 20)) >"$work/xfer-send-$rnd.txt" 2>&1
  local rc=$?
  wait "$pid_xrecv"; pid_xrecv=
  cat "$work/xfer-send-$rnd.txt"
  [ "$rc" -eq 0 ] || fail "TCP transfer $rnd: $(cat "$work/xfer-recv-$rnd.txt")"
}
cp "$(dirname "$0")/lib/xfer.py" "$work/xfer.py"   # the exact-byte transfer (tests/sh/lib/xfer.py)
# mtu_round ROUND: the DF pings (above: fragmentation needed, naming the tunnel MTU; at: passes),
# read by host A's ping and by a capture on host A's link.
mtu_round() {
  local rnd=$1 got
  in_ns "$ns_ha" ip route flush cache
  [ -z "$(route_mtu "$ns_ha" 10.2.0.2)" ] || fail "$rnd: host A still has a path MTU cached for 10.2.0.2"
  tcpdump_start "icmp_$rnd" "$ns_ha" hA icmp
  in_ns "$ns_ha" ping -n -M do -s $((tmtu - 28 + 1)) -c 1 -W 2 10.2.0.2 >"$work/ping-big-$rnd.txt" 2>&1
  grep -q "From 10.1.0.1 .*Frag needed and DF set (mtu = $tmtu)" "$work/ping-big-$rnd.txt" ||
    fail "$rnd: a DF ping of $((tmtu + 1)) bytes did not get 'fragmentation needed' with mtu $tmtu: $(cat "$work/ping-big-$rnd.txt")"
  [ "$(route_mtu "$ns_ha" 10.2.0.2)" = "$tmtu" ] || fail "$rnd: host A did not take path MTU $tmtu from the reply"
  in_ns "$ns_ha" ping -n -M do -s $((tmtu - 28)) -c 3 -i 0.2 -W 2 10.2.0.2 >"$work/ping-at-$rnd.txt" 2>&1
  [ "$(ping_replies "$work/ping-at-$rnd.txt")" = 3 ] ||
    { cat "$work/ping-at-$rnd.txt"; for n in a b; do echo "== $n"; "$p3ctl" stats --prefix "$tag-$n" | grep -v "=0$"; done; fail "$rnd: DF pings of exactly $tmtu bytes were not all answered"; }
  grep -q "$((tmtu - 28 + 8)) bytes from 10.2.0.2" "$work/ping-at-$rnd.txt" || fail "$rnd: the replies are not full size"
  tcpdump_stop "icmp_$rnd"
  got=$(frag_needed "$work/icmp_$rnd.pcap")
  [ "$got" = "10.1.0.1 $tmtu 10.2.0.2 $((tmtu + 1))" ] ||
    fail "$rnd: on host A's link, want one ICMP 3/4 from 10.1.0.1 with next-hop MTU $tmtu quoting the $((tmtu + 1))-byte datagram; got: ${got:-none}"
  echo "$rnd: DF $((tmtu + 1)) bytes -> ICMP 3/4 from 10.1.0.1, next-hop MTU $tmtu; DF $tmtu bytes -> 3/3 replies"
}
# tcp_round ROUND: a transfer each way, each starting with no path MTU cached on either host (a
# host that knows the path MTU would advertise the smaller MSS and spare the other the lesson).
tcp_round() {
  local rnd=$1
  in_ns "$ns_ha" ip route flush cache; in_ns "$ns_hb" ip route flush cache
  xfer "$rnd-ab" "$ns_ha" "$ns_hb" 10.2.0.2
  [ "$(route_mtu "$ns_ha" 10.2.0.2)" = "$tmtu" ] || fail "$rnd: host A's TCP did not learn path MTU $tmtu"
  in_ns "$ns_ha" ip route flush cache; in_ns "$ns_hb" ip route flush cache
  xfer "$rnd-ba" "$ns_hb" "$ns_ha" 10.1.0.2
  [ "$(route_mtu "$ns_hb" 10.1.0.2)" = "$tmtu" ] || fail "$rnd: host B's TCP did not learn path MTU $tmtu"
  echo "$rnd: TCP each way complete; hosts A and B learned path MTU $tmtu"
}

pair_start
pair_wait_up 20
pair_neighbours

mtu_round off
tcp_round off

# Size hiding on: the session is set up again with it (pushed to the secondary).
ups=$(up_count)
ctl remote set 7 size_hiding=true >"$work/set.txt" 2>&1 || fail "p3ctl remote set 7 size_hiding=true: $(cat "$work/set.txt")"
for ((i = 0; i < 100; i++)); do [ "$(up_count)" -gt "$ups" ] && break; sleep 0.1; done
[ "$(up_count)" -gt "$ups" ] || fail "the session was not set up again with size hiding"
wait_for b "$pid_b" 'P3-I0501: remote 1 (primary.p3.test): control channel up as secondary' 5 "control channel"
sleep 0.5
tcpdump_start wan_hiding "$ns_b" bWan -Q in 'ip proto 50'
mtu_round on
in_ns "$ns_ha" ping -n -s 72 -c 2 -i 0.2 -W 2 10.2.0.2 >"$work/ping-small.txt" 2>&1
[ "$(ping_replies "$work/ping-small.txt")" = 2 ] || fail "size hiding on: 100-byte pings not answered"
tcpdump_stop wan_hiding
# What the WAN carried from A to B: the 1446-byte echo requests padded to exactly the WAN MTU
# (never over it), the 100-byte ones to the first bucket (inner + trailer rounded up to 256:
# 308 bytes outer), everything to a bucket.
/usr/bin/python3 - "$work/wan_hiding.pcap" "$wan_mtu" <<'PY' || fail "size hiding: the WAN sizes are not what it promises (above)"
import sys
from collections import Counter
from scapy.all import rdpcap, IP
sizes = Counter(p[IP].len for p in rdpcap(sys.argv[1]) if IP in p)
mtu = int(sys.argv[2])
print("size hiding on: outer IP lengths A->B:", dict(sorted(sizes.items())))
bucketed = all(n == mtu or (n - 20 - 16 - 16) % 256 == 0 for n in sizes)
sys.exit(0 if sizes[mtu] >= 3 and sizes[20 + 16 + 256 + 16] >= 2 and max(sizes) == mtu and bucketed else 1)
PY
tcp_round on

pair_stop
grep -q 'P3-E0\(601\|602\)' "$work/a.log" "$work/b.log" && fail "a session was lost"
for ns in $all_ns; do ip netns del "$ns" || fail "ip netns del $ns"; done
all_ns=
echo "PASS: tunnel MTU $tmtu (WAN MTU $wan_mtu) with size hiding off and on: DF above it gets ICMP 3/4 with it, DF at it passes, TCP each way learns it ($(($(date +%s) - t0)) s)"
exit 0
