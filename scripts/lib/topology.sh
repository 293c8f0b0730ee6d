# Sourced (not run) by scripts/demo.sh and the end-to-end tests that need a pair of appliances:
#
#   host A ns           appliance A ns                 appliance B ns           host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ---veth--- [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#     hA                 aLan       aWan               bWan       bLan              hB
#
# p3_topology HOST_A APP_A APP_B HOST_B creates the four namespaces and three veth pairs: IPv6
# off, offloads off (every frame on a veth is complete: checksums filled in, no GSO
# super-frames), the appliances' interfaces up without a kernel address (p3d owns them), the
# hosts at 10.1.0.2 and 10.2.0.2 routing through 10.1.0.1 and 10.2.0.1.
# Returns 0; 2 when namespaces cannot be created here, 3 when veth pairs cannot (callers that
# are tests skip then); 1 on any other failure. The caller deletes the namespaces.
p3_topology() {
  local ha=$1 a=$2 b=$3 hb=$4 ns pair
  ip netns add "$ha" 2>/dev/null || return 2
  for ns in "$a" "$b" "$hb"; do ip netns add "$ns" || return 1; done
  ip link add hA netns "$ha" type veth peer name aLan netns "$a" 2>/dev/null || return 3
  ip link add aWan netns "$a" type veth peer name bWan netns "$b" || return 1
  ip link add bLan netns "$b" type veth peer name hB netns "$hb" || return 1
  for ns in "$ha" "$a" "$b" "$hb"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || return 1
    ip netns exec "$ns" ip link set lo up || return 1
  done
  for pair in "$ha hA" "$a aLan" "$a aWan" "$b bWan" "$b bLan" "$hb hB"; do
    set -- $pair
    ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
    ip netns exec "$1" ip link set "$2" up || return 1
  done
  ip netns exec "$ha" ip addr add 10.1.0.2/24 dev hA &&
    ip netns exec "$ha" ip route add default via 10.1.0.1 &&
    ip netns exec "$hb" ip addr add 10.2.0.2/24 dev hB &&
    ip netns exec "$hb" ip route add default via 10.2.0.1 || return 1
}
