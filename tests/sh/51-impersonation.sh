#!/usr/bin/env bash
# Credentials are per remote: a secondary holding its own pre-shared key that claims another
# remote's identity is refused, and the victim's session keeps passing traffic.
#
#   host ns              primary ns            switch ns             A ns                 host A ns
#   10.1.0.2 ---veth--- [LAN] p3d P [WAN] ---veth--- br ---veth--- [WAN] p3d A [LAN] ---veth--- 10.2.0.2
#                        10.1.0.1  192.0.2.1         |              192.0.2.2 10.2.0.1
#                                                    +---veth--- [WAN] p3d B [LAN] (veth, nothing behind)
#                                                                 192.0.2.3 10.3.0.1   B ns
#
# The primary knows remote 7 = A (a.p3.test, key A), remote 8 = B (b.p3.test, key B) and
# remote 9, whose key file is not there yet (logged at start; only remote 9 stays down).
# A comes up and answers pings. Then B's appliance, holding key B but configured with A's
# identity, tries to set up: the primary logs P3-E0402 naming the claimed remote, B gets no
# session, A's session stays up at its own address and pings still pass. Then B under its own
# identity comes up as remote 8 (its key is good: the refusal was the binding, not the key).
#
# Needs root and network namespaces with veth and bridge (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl
ns_h=$tag-h ns_p=$tag-p ns_sw=$tag-sw ns_a=$tag-a ns_ha=$tag-ha ns_b=$tag-b
all_ns="$ns_h $ns_p $ns_sw $ns_a $ns_ha $ns_b"
p3d_names="p a b"
dp_tuning="idle_backoff_us = 100; mbufs = 2047;"

# Topology.
ip netns add "$ns_h" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
for ns in $ns_p $ns_sw $ns_a $ns_ha $ns_b; do ip netns add "$ns" || fail "ip netns add $ns"; done
ip link add hP netns "$ns_h" type veth peer name pLan netns "$ns_p" 2>/dev/null || { echo "SKIP: no veth"; exit 77; }
in_ns "$ns_sw" ip link add br0 type bridge 2>/dev/null || { echo "SKIP: no bridge"; exit 77; }
ip link add pWan netns "$ns_p" type veth peer name swP netns "$ns_sw" &&
  ip link add aWan netns "$ns_a" type veth peer name swA netns "$ns_sw" &&
  ip link add bWan netns "$ns_b" type veth peer name swB netns "$ns_sw" &&
  ip link add aLan netns "$ns_a" type veth peer name hA netns "$ns_ha" &&
  ip link add bLan netns "$ns_b" type veth peer name bStub netns "$ns_b" || fail "veth pairs"
for ns in $all_ns; do
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  in_ns "$ns" ip link set lo up
done
for pair in "$ns_h hP" "$ns_p pLan" "$ns_p pWan" "$ns_sw swP" "$ns_sw swA" "$ns_sw swB" "$ns_a aWan" \
            "$ns_a aLan" "$ns_ha hA" "$ns_b bWan" "$ns_b bLan" "$ns_b bStub" "$ns_sw br0"; do
  set -- $pair
  in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
  in_ns "$1" ip link set "$2" up || fail "link $2 up"
done
for p in swP swA swB; do in_ns "$ns_sw" ip link set "$p" master br0 || fail "bridge port $p"; done
in_ns "$ns_h" ip addr add 10.1.0.2/24 dev hP && in_ns "$ns_h" ip route add default via 10.1.0.1 &&
  in_ns "$ns_ha" ip addr add 10.2.0.2/24 dev hA && in_ns "$ns_ha" ip route add default via 10.2.0.1 ||
  fail "host addresses"

# Each secondary its own key (owner-only, 16+ bytes); the primary holds both, one per remote.
psk a.psk; psk b.psk
primary_conf "heartbeat_time = 1; heartbeat_fail = 5;" \
  "$(remote 7 192.0.2.2 a.p3.test a.psk 10.2.0.0/24)" \
  "$(remote 8 192.0.2.3 b.p3.test b.psk 10.3.0.0/24)" \
  "$(remote 9 192.0.2.4 c.p3.test c.psk 10.4.0.0/24)" >"$work/p.conf"
secondary_conf 192.0.2.2 10.2.0.1 a.p3.test a.psk >"$work/a.conf"
secondary_conf 192.0.2.3 10.3.0.1 a.p3.test b.psk >"$work/impostor.conf"   # B's key, A's identity
secondary_conf 192.0.2.3 10.3.0.1 b.p3.test b.psk >"$work/b.conf"
for c in p a impostor b; do
  "$p3ctl" config check "$work/$c.conf" >/dev/null 2>"$work/check.err" || { cat "$work/check.err"; fail "config $c refused"; }
done

session() { "$p3ctl" stats --prefix "$tag-p" session "$1"; }
pings() {  # count -> answered
  in_ns "$ns_h" ping -c "$1" -i 0.2 -W 2 10.2.0.2 >"$work/ping.txt" 2>&1
  ping_replies "$work/ping.txt"
}

start p "$ns_p" 0 pWan pLan p; pid_p=$!
wait_for p "$pid_p" 'P3-I0001' 15 "start"
# Start-up checks are per remote: remote 9's key is not there yet, so only remote 9 stays down.
grep -q "P3-W0110: remote 9: $work/c.psk: No such file or directory" "$work/p.log" || fail "no P3-W0110 for remote 9's key"
start a "$ns_a" $cpu2 aWan aLan a; pid_a=$!
wait_for a "$pid_a" 'P3-I0501: remote 1 (primary.p3.test): control channel up' 20 "A's session up"
wait_for p "$pid_p" 'P3-I0501: remote 7 (a.p3.test): control channel up' 5 "A's session up at the primary"
in_ns "$ns_h" ping -c 3 -i 0.2 -W 1 10.2.0.2 >/dev/null 2>&1  # neighbours learnt
n=$(pings 10); [ "$n" -eq 10 ] || fail "before the attempt: $n of 10 pings through A's session"
before=$(session 7) || fail "p3ctl stats session 7"
grep -qx 'state=up' <<<"$before" && grep -qx 'peer=192.0.2.2' <<<"$before" || fail "A's session before: $before"

# The impostor: B's appliance with B's own key, claiming A's identity.
start b "$ns_b" 0 bWan bLan impostor; pid_b=$!
wait_for p "$pid_p" 'P3-E0402: setup with a.p3.test (192.0.2.3:[0-9]*, claiming remote 7, not authenticated) failed' 20 \
  "the impostor's AUTH refused"
wait_for b "$pid_b" 'P3-E0411' 5 "the impostor told AUTHENTICATION_FAILED"
grep -q 'P3-I0401' "$work/b.log" && fail "the impostor set up a session"
grep -q 'P3-W0607\|P3-I0401: setup with remote 7 (a.p3.test, 192.0.2.3' "$work/p.log" &&
  fail "the primary replaced A's session"
n=$(pings 10); [ "$n" -eq 10 ] || fail "after the attempt: $n of 10 pings through A's session"
after=$(session 7) || fail "p3ctl stats session 7"
grep -qx 'state=up' <<<"$after" && grep -qx 'peer=192.0.2.2' <<<"$after" || fail "A's session after: $after"
kill -TERM "$pid_b"; wait "$pid_b"; pid_b=
rm -rf "/var/run/dpdk/$tag-b"

# The same appliance and key under its own identity: remote 8, and A still untouched.
: >"$work/b.log"
start b "$ns_b" 0 bWan bLan b; pid_b=$!
wait_for p "$pid_p" 'P3-I0401: setup with remote 8 (b.p3.test, 192.0.2.3' 20 "B up under its own identity"
n=$(pings 5); [ "$n" -eq 5 ] || fail "with B up: $n of 5 pings through A's session"

for p in $pid_b $pid_a $pid_p; do kill -TERM "$p"; wait "$p" || fail "p3d exit status $? after SIGTERM"; done
pid_p= pid_a= pid_b=
echo "PASS: B's key under A's identity refused (P3-E0402), A's session kept (10/10 pings after), B up as itself"
exit 0
