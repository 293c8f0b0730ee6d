#!/usr/bin/env bash
# Replicated keys and load balancing end to end (docs/cluster.md §Replicated keys, §Taking over
# a control session): two Realserver members behind the nftables director of 84-cluster-rs.sh,
# each with its own corosync (one per namespace, on a management bridge) in one CPG group; the
# rig is lib/cluster.sh; load_balance = 1. The secondary sets up a PSK session with the VIP;
# the director hands the secondary's packets to member 1 for the setup exchange, member 2 has
# the session only from the record member 1 publishes over corosync, and the cluster's hash
# gives remote 9's control session to member 2: member 1 hands it over once it is up, member 2
# takes it over from the record (no second setup). Then the director spreads the secondary's
# packets round robin over both members: the control messages that land on m1 are forwarded to
# m2 over corosync (docs/cluster.md §Forwarded control messages). Host A sends to the
# secondary's side through both members (10.1.0.2 via m1, 10.1.0.4 via m2); a forced rekey on
# m2 during a transfer through m1: m1 switches its own lanes from the replicated record before
# the secondary promotes its new key, and the rekey's answers that reach m1 are forwarded, so
# nothing is lost and the rekey completes on both sides. Then m2 stops (SIGTERM): it hands the
# control session to m1 instead of saying goodbye, and the secondary keeps its session.
#
#   hS 10.2.0.2 -- [sLan] p3d s [sWan] -- dS |br0 (ns d)| d1 -- [m1Wan] p3d m1 [m1Lan] --+
#                                                         d2 -- [m2Wan] p3d m2 [m2Lan] --+-- brL -- hA
#                 m1 mg1 10.87.0.1 --+-- brM (ns g) --+-- mg2 10.87.0.2 m2   (corosync, knet)
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl nft corosync corosync-keygen unshare
. "$here/lib/cluster.sh"
py=/usr/bin/python3
"$py" -c 'import scapy' 2>/dev/null || { echo "SKIP: /usr/bin/python3 lacks python3-scapy"; exit 77; }
p3d_names="s m1 m2"
ns_hs=$tag-hs ns_s=$tag-s ns_d=$tag-d ns_m1=$tag-m1 ns_m2=$tag-m2 ns_l=$tag-l ns_g=$tag-g
all_ns="$ns_hs $ns_s $ns_d $ns_m1 $ns_m2 $ns_l $ns_g"
VMAC=02:00:00:00:0d:01 SMAC=02:00:00:00:0a:02 M1MAC=02:00:00:00:01:01 M2MAC=02:00:00:00:02:01

# ---- namespaces and links -----------------------------------------------------------------
ip netns add "$ns_hs" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
for n in $ns_s $ns_d $ns_m1 $ns_m2 $ns_l $ns_g; do ip netns add "$n" || fail "netns $n"; done
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
director "$ns_d" dS "ether daddr $VMAC ether daddr set $M1MAC"
# The LAN: both members and host A on one bridge.
mkbridge "$ns_l" brL l1 l2 lA
in_ns "$ns_l" ip addr add 10.1.0.2/24 dev hA
in_ns "$ns_l" ip addr add 10.1.0.4/24 dev hA
in_ns "$ns_l" ip route add default via 10.1.0.1 src 10.1.0.2
in_ns "$ns_l" ip route add default via 10.1.0.3 table 100
in_ns "$ns_l" ip rule add from 10.1.0.4 lookup 100
in_ns "$ns_hs" ip addr add 10.2.0.2/24 dev hS
in_ns "$ns_hs" ip route add default via 10.2.0.1

# ---- corosync in each member's namespace, on the management bridge ----------------------------
mgmt_net "$ns_g" 10.87.0 "$ns_m1" "$ns_m2"
corosync_conf p3t87 10.87.0.1 10.87.0.2
corosync_start 1 "$ns_m1"
corosync_start 2 "$ns_m2"
corosync_ready 1 2

# ---- configurations: a PSK remote on both members, the same cluster key ---------------------
psk psk
cluster_key
CL_GROUP=p3t87 CL_REMOTE_ID=9 CL_LOCAL="heartbeat_time = 1; heartbeat_fail = 10; load_balance = 1;" CL_WAN="gateway_mac = \"$SMAC\";"
member_conf 1 10.1.0.1 primary
member_conf 2 10.1.0.3 backup
secondary_member_conf "" "gateway_mac = \"$VMAC\";"
conf_check m1 m2 s

# ---- start: the members first (m2 in the group before the session exists), then the secondary --
start m1 "$ns_m1" 0 m1Wan m1Lan; pid_m1=$!
start m2 "$ns_m2" "$cpu2" m2Wan m2Lan; pid_m2=$!
wait_for m2 "$pid_m2" 'P3-I0924: cluster: member 1 (primary) joined' 15 "member 1 in the group"
start s "$ns_s" 0 sWan sLan; pid_s=$!
wait_for m1 "$pid_m1" 'P3-I0401: setup with remote 9' 20 "session up with the secondary"
wait_for m2 "$pid_m2" 'P3-I0930: cluster: remote 9: replicated keys installed' 5 "the session replicated to m2"
wait_for m1 "$pid_m1" 'P3-I0935: cluster: remote 9: control session handed to member 2' 5 "the control session handed to m2"
wait_for m2 "$pid_m2" 'P3-I0933: remote 9 .*: control channel taken over' 5 "m2 taking the control session over"
grep -q 'P3-I0401' "$work/m2.log" && fail "m2 ran a setup exchange itself"
[ "$(grep -c 'P3-I0401' "$work/s.log")" -eq 1 ] || fail "the secondary set up more than once"
[ "$(p3_json m2 control_sessions.held cluster status)" = 1 ] && [ "$(p3_json m1 control_sessions.held cluster status)" = 0 ] ||
  fail "m2 does not hold the control session alone (m1 $(p3_json m1 control_sessions.held cluster status), m2 $(p3_json m2 control_sessions.held cluster status))"

in_ns "$ns_l" ping -c 3 -i 0.2 -W 1 -I 10.1.0.2 10.2.0.2 >/dev/null 2>&1   # neighbours learnt
in_ns "$ns_l" ping -c 3 -i 0.2 -W 1 -I 10.1.0.4 10.2.0.2 >/dev/null 2>&1
in_ns "$ns_l" ping -c 10 -i 0.1 -W 1 -I 10.1.0.4 10.2.0.2 >"$work/ping2" 2>&1
[ "$(ping_replies "$work/ping2")" -ge 9 ] || fail "through m2 (replicated keys): $(ping_replies "$work/ping2")/10 replies"
echo "ping through m2 on replicated keys: answered"

udp_rx() {  # ns bind seconds -> prints packets received (background; writes $work/udp-rx)
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
  pid_rx=$!
}
udp_tx() {  # ns src dst count per-10ms
  in_ns "$1" "$py" -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0))
count, burst = int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    s.sendto(b"x" * 1000, (sys.argv[2], 9000))
    if i % burst == 0: time.sleep(0.01)' "$2" "$3" "$4" "$5"
}
drops() { tel_drop "$1" "$2"; }
unclaimed() { p3_json "$1" control.channel.unclaimed status; }
retrans() { p3_json "$1" control.channel.retransmits status; }
fwd() { p3_json "$1" "control.$2" cluster status; }
# From now on the director spreads every packet of the secondary over both members, round robin.
director "$ns_d" dS "ether daddr $VMAC ether daddr set numgen inc mod 2 map { 0 : $M1MAC, 1 : $M2MAC }"
unc0=$(unclaimed m1) rt0=$(retrans m2)
auth0=$(drops s p3_auth) old0=$(drops s p3_old_key)
# A transfer through m1 of about 5 s; m2 (the holder) rekeys 1 s into it. The secondary
# promotes its new key 3 s after the switch: by then m1 must send under it.
n=4000
udp_rx "$ns_hs" 10.2.0.2
sleep 0.3
udp_tx "$ns_l" 10.1.0.2 10.2.0.2 $n 8 &
pid_tx=$!
sleep 1
"$p3ctl" -s "$work/m2.sock" rekey 9 >"$work/rekey.out" 2>&1 || { cat "$work/rekey.out"; fail "p3ctl rekey 9 on m2"; }
wait "$pid_tx"; wait "$pid_rx"
got=$(cat "$work/udp-rx")
auth=$(( $(drops s p3_auth) - auth0 )) old=$(( $(drops s p3_old_key) - old0 ))
applied=$(grep -c 'P3-I0930' "$work/m1.log")
echo "UDP $n x 1000 B host A -> secondary's side through m1, rekeyed on m2 meanwhile: $got received; secondary: p3_auth +$auth, p3_old_key +$old; records installed on m1: $applied"
grep -q 'P3-I0509' "$work/m2.log" || fail "the rekey did not complete on m2"
grep -q 'P3-I0509' "$work/s.log" || fail "the rekey did not complete on the secondary"
unc=$(( $(unclaimed m1) - unc0 )) rt=$(( $(retrans m2) - rt0 ))
fw=$(fwd m1 forwarded) dl=$(fwd m2 delivered) dr1=$(fwd m1 dropped_rate) dr2=$(fwd m2 dropped)
echo "control messages over the round-robin director: forwarded by m1 $fw, delivered on m2 $dl; unclaimed on m1 +$unc; m2 retransmits +$rt; dropped: m1 rate $dr1, m2 $dr2"
[ "$unc" -eq 0 ] || fail "m1 left $unc control messages unclaimed (lost, not forwarded)"
[ "$fw" -ge 1 ] && [ "$dl" -ge 1 ] || fail "no control message forwarded from m1 to m2 ($fw sent, $dl delivered)"
# The holder's resends are reported, not asserted (a control message can be lost on a loaded
# machine; the channel resends it).
[ "$applied" -ge 2 ] || fail "m1 installed $applied records (next key and switch expected)"
[ "$auth" -eq 0 ] && [ "$old" -eq 0 ] || fail "the secondary refused m1's packets across the rekey (auth $auth, old key $old)"
[ "${got:-0}" -ge $((n * 95 / 100)) ] || fail "through m1 across the rekey: $got of $n"
in_ns "$ns_l" ping -c 10 -i 0.1 -W 1 -I 10.1.0.2 10.2.0.2 >"$work/ping3" 2>&1
[ "$(ping_replies "$work/ping3")" -ge 9 ] || fail "through m1 after the rekey: $(ping_replies "$work/ping3")/10"
in_ns "$ns_hs" ping -c 10 -i 0.1 -W 1 -I 10.2.0.2 10.1.0.2 >"$work/ping4" 2>&1   # spread over m1 and m2
[ "$(ping_replies "$work/ping4")" -ge 9 ] || fail "from the secondary's side over both members: $(ping_replies "$work/ping4")/10"
grep -q 'P3-W0931' "$work/m2.log" && fail "m2 dropped a record"
grep -q 'P3-W0932' "$work/m1.log" "$work/m2.log" && fail "a control message was dropped: $(grep -h P3-W0932 "$work"/m[12].log | head -3)"

# ---- m2, the holder, stops on purpose (SIGTERM): it hands the control session to m1 and says
# no goodbye; the director leaves it out (a health check). The secondary keeps its session.
director "$ns_d" dS "ether daddr $VMAC ether daddr set $M1MAC"
kill -TERM "$pid_m2"; wait "$pid_m2" 2>/dev/null; pid_m2=
grep -q 'P3-I0935: cluster: remote 9: control session handed to member 1' "$work/m2.log" ||
  fail "the stopping m2 did not hand the control session to m1"
wait_for m1 "$pid_m1" 'P3-I0933: remote 9 .*: control channel taken over' 5 "m1 taking over from the stopping m2"
grep -q 'P3-W0609' "$work/s.log" && fail "the secondary heard a goodbye from a member that handed its session over"
rekeys0=$(grep -c 'P3-I0509' "$work/s.log")
"$p3ctl" -s "$work/s.sock" rekey 1 >"$work/rekey.out" 2>&1 || { cat "$work/rekey.out"; fail "p3ctl rekey on the secondary"; }
for ((i = 0; i < 50; i++)); do [ "$(grep -c 'P3-I0509' "$work/s.log")" -gt "$rekeys0" ] && break; sleep 0.1; done
[ "$(grep -c 'P3-I0509' "$work/s.log")" -gt "$rekeys0" ] || fail "a rekey with m1 after m2 stopped did not complete"
[ "$(grep -c 'P3-I0401' "$work/s.log")" -eq 1 ] || fail "the secondary set up again after m2 stopped"
in_ns "$ns_hs" ping -c 10 -i 0.1 -W 1 -I 10.2.0.2 10.1.0.2 >"$work/ping5" 2>&1
[ "$(ping_replies "$work/ping5")" -ge 9 ] || fail "through m1 after m2 stopped: $(ping_replies "$work/ping5")/10"
echo "m2 stopped: the control session handed to m1, the secondary kept its session and rekeyed with m1"
echo "PASS: 87-cluster-replicate"
