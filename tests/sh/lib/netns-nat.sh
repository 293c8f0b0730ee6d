# Sourced by the end-to-end tests that put a router doing NAT between a primary and a secondary
# (not a test itself: scripts/test.sh runs only tests/sh/*.sh). Builds on netns-pair.sh
# (sourced here with this file's arguments, the commands a test needs, besides nft and
# conntrack which this file needs; it sets BUILD, p3d, p3ctl, tag, work, cpu2, start, fail,
# wait_for, in_ns, psk, ping_replies, pair_start, pair_stop and the EXIT trap).
#
#   host A ns      primary ns                   router ns (NAT)                    secondary ns              host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [rA]  forwards  [rB] -veth- [bWan] p3d b [bLan] -veth- 10.2.0.2
#     hA           10.1.0.1   192.0.2.1/24   192.0.2.254   198.51.100.254   198.51.100.2/24 10.2.0.1      hB
#                  gateway 192.0.2.254       nft: oifname rA masquerade     gateway 198.51.100.254
#
# The two WANs are different subnets; each appliance's WAN gateway is the router, reached by
# ARP. Everything the secondary sends towards the primary leaves the router from 192.0.2.254
# (nftables `masquerade` in ip nat postrouting on rA, which keeps the source port when it is
# free), so the primary sees the secondary as 192.0.2.254 and the setup exchange detects the
# NAT. Offloads off and IPv6 off everywhere, the p3d interfaces up without a kernel address
# (p3d owns them), as in netns-pair.sh.
#
# nat_topology UDP_TIMEOUT: sets ns_ha ns_a ns_r ns_b ns_hb (and all_ns) and builds the
#   topology above; the router's conntrack UDP timeouts (nf_conntrack_udp_timeout and
#   _udp_timeout_stream) become UDP_TIMEOUT seconds, so a mapping nothing refreshes goes soon.
#   Skips (77) where namespaces, veth pairs or nftables NAT cannot be made. $nat_rules (empty
#   unless the test sets it): nftables rules of the router's postrouting chain before the
#   masquerade (e.g. one that maps the secondary's nat_port to other ports).
# nat_conf LOCAL: writes the key $work/psk, $work/a.conf (the primary: 192.0.2.1:5653 as
#   primary.p3.test, LAN 10.1.0.1/24, remote 7 secondary.p3.test at its own address
#   198.51.100.2 with 10.2.0.0/24) and $work/b.conf (its secondary, LAN 10.2.0.1/24, its primary
#   at 192.0.2.1:5653). LOCAL: further settings of the primary's local (timers, admin), which
#   it pushes; $nat_b_local: further settings of the secondary's local (e.g. admin).
# The appliances start and stop with pair_start / pair_stop (a: aWan/aLan, b: bWan/bLan).
. "$(dirname "${BASH_SOURCE[0]}")/netns-pair.sh" "$@"
for t in nft conntrack; do command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }; done
nat_b_local=
nat_rules=${nat_rules:-}

nat_link() { ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"; }  # ns1 if1 ns2 if2
nat_topology() {  # udp-timeout
  local timeout=$1 ns pair
  ns_ha=$tag-ha ns_a=$tag-a ns_r=$tag-r ns_b=$tag-b ns_hb=$tag-hb
  all_ns="$ns_ha $ns_a $ns_r $ns_b $ns_hb"
  ip netns add "$ns_ha" 2>/dev/null || { all_ns=; echo "SKIP: cannot create network namespaces"; exit 77; }
  for ns in $ns_a $ns_r $ns_b $ns_hb; do ip netns add "$ns" || fail "ip netns add $ns"; done
  nat_link "$ns_ha" hA "$ns_a" aLan 2>/dev/null || { echo "SKIP: cannot create veth pairs"; exit 77; }
  nat_link "$ns_a" aWan "$ns_r" rA && nat_link "$ns_r" rB "$ns_b" bWan && nat_link "$ns_b" bLan "$ns_hb" hB ||
    fail "veth pairs"
  for ns in $all_ns; do
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 &&
      in_ns "$ns" ip link set lo up || fail "namespace $ns: sysctl, lo"
  done
  for pair in "$ns_ha hA" "$ns_a aLan" "$ns_a aWan" "$ns_r rA" "$ns_r rB" "$ns_b bWan" "$ns_b bLan" "$ns_hb hB"; do
    set -- $pair
    in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
    in_ns "$1" ip link set "$2" up || fail "ip link set $2 up in $1"
  done
  in_ns "$ns_ha" ip addr add 10.1.0.2/24 dev hA && in_ns "$ns_ha" ip route add default via 10.1.0.1 &&
    in_ns "$ns_hb" ip addr add 10.2.0.2/24 dev hB && in_ns "$ns_hb" ip route add default via 10.2.0.1 &&
    in_ns "$ns_r" ip addr add 192.0.2.254/24 dev rA && in_ns "$ns_r" ip addr add 198.51.100.254/24 dev rB &&
    in_ns "$ns_r" sysctl -qw net.ipv4.ip_forward=1 || fail "host and router addresses and routes"
  in_ns "$ns_r" nft -f - <<NFT 2>"$work/nft.txt" || { echo "SKIP: nftables NAT unavailable: $(cat "$work/nft.txt")"; exit 77; }
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    $nat_rules
    oifname "rA" masquerade
  }
}
NFT
  # The conntrack sysctls exist once the NAT table has loaded nf_conntrack.
  in_ns "$ns_r" sysctl -qw net.netfilter.nf_conntrack_udp_timeout="$timeout" \
    net.netfilter.nf_conntrack_udp_timeout_stream="$timeout" || fail "the router's conntrack UDP timeouts"
}

nat_dataplane() {  # wan-address/len gateway lan-address/len
  echo "dataplane = { wan = { port = 0; address = \"$1\"; gateway = \"$2\"; }; lan = { port = 1; address = \"$3\"; };
  $dp_tuning };"
}
nat_conf() {  # local-settings
  psk psk
  {
    echo 'role = "primary";'
    echo "local = { ip = 4; address = \"192.0.2.1\"; port = 5653; identity = \"primary.p3.test\"; $1 };"
    nat_dataplane 192.0.2.1/24 192.0.2.254 10.1.0.1/24
    echo "remotes = ( { id = 7; ip = 4; address = \"198.51.100.2\"; identity = \"secondary.p3.test\";"
    echo "              psk_file = \"$work/psk\"; subnets = [ \"10.2.0.0/24\" ]; } );"
  } >"$work/a.conf"
  {
    echo 'role = "secondary";'
    echo "local = { ip = 4; address = \"198.51.100.2\"; identity = \"secondary.p3.test\"; $nat_b_local };"
    nat_dataplane 198.51.100.2/24 198.51.100.254 10.2.0.1/24
    echo "remotes = ( { id = 1; ip = 4; address = \"192.0.2.1\"; port = 5653; identity = \"primary.p3.test\";"
    echo "              psk_file = \"$work/psk\"; subnets = [ \"10.1.0.0/24\" ]; } );"
  } >"$work/b.conf"
}
