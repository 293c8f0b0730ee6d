# Sourced by the end-to-end tests that run one primary p3d and two secondaries (not a test
# itself: scripts/test.sh runs only tests/sh/*.sh). Builds on netns-pair.sh (sourced here with
# this file's arguments: the commands a test needs; it sets BUILD, p3d, p3ctl, tag, work,
# cpu2, start, fail, wait_for, in_ns, psk, dataplane, ping_replies and the EXIT trap).
#
#   host A ns        primary ns                 WAN ns                 secondary B ns          host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [wA]                  [bWan] p3d b [bLan] -veth- 10.2.0.2
#     hA             10.1.0.1   192.0.2.1          br0 -[wB]-veth-    192.0.2.2   10.2.0.1       hB
#                                                      -[wC]-veth-   [cWan] p3d c [cLan] -veth- 10.3.0.2
#                                                                     192.0.2.3   10.3.0.1       hC
#                                                                    secondary C ns          host C ns
#
# The WAN is a Linux bridge (br0, no STP, no forwarding delay) in a namespace of its own: the
# three p3d reach each other by ARP on 192.0.2.0/24 as on a switch. Offloads are off on every
# veth end (every frame complete: checksums filled in, no GSO), IPv6 off; the p3d interfaces
# are up without a kernel address (p3d owns them through net_af_packet). Each host routes
# through its appliance's LAN address (.1).
#
# trio_topology: sets ns_ha ns_a ns_w ns_b ns_hb ns_c ns_hc (and all_ns, p3d_names "a b c")
#   and builds the topology above; skips (77) where namespaces or veth pairs cannot be made,
#   or where the bridge cannot (no bridge module).
# trio_primary_conf REMOTES LOCAL GROUPS: a primary's configuration on stdout: 192.0.2.1, port
#   5653, no identity (its identity is its address), LAN 10.1.0.1/24. REMOTES: the text inside
#   `remotes = ( ... )`; LOCAL: further settings of local (timers, admin); GROUPS: the text
#   inside `groups = ( ... )` (may be empty).
# trio_remote ID ADDRESS KEY SUBNET... : one entry of a primary's remotes, no identity (the
#   secondary's identity is its address), key $work/KEY.
# trio_secondary_conf FORM WAN LAN ADMIN KEY: a secondary's configuration on stdout. FORM
#   "minimal" (DESIGN.md §Session life 6): role, dataplane (WAN/24, LAN/24), local.admin
#   (ADMIN: the text inside `admin = { ... }`), and one remote with only the primary's address
#   and its psk_file $work/KEY: no id, no subnets, no local.address; the primary pushes the rest. FORM "full": the same plus local.ip/address,
#   the remote's id 1, ip, port and subnet 10.1.0.0/24 (what a loader without defaults needs).
# trio_start NAME...: starts each named p3d (a: CPU 0, aWan/aLan; b: CPU $cpu2, bWan/bLan;
#   c: CPU 0, cWan/cLan), then waits until each said P3-I0001 (15 s); sets pid_NAME.
# trio_stop NAME...: SIGTERM to each; each must exit with status 0 within 10 s.
. "$(dirname "${BASH_SOURCE[0]}")/netns-pair.sh" "$@"

trio_link() {  # ns1 if1 ns2 if2
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
}
trio_topology() {
  local ns pair
  ns_ha=$tag-ha ns_a=$tag-a ns_w=$tag-w ns_b=$tag-b ns_hb=$tag-hb ns_c=$tag-c ns_hc=$tag-hc
  all_ns="$ns_ha $ns_a $ns_w $ns_b $ns_hb $ns_c $ns_hc"
  p3d_names="a b c"
  ip netns add "$ns_ha" 2>/dev/null || { all_ns=; echo "SKIP: cannot create network namespaces"; exit 77; }
  for ns in $ns_a $ns_w $ns_b $ns_hb $ns_c $ns_hc; do ip netns add "$ns" || fail "ip netns add $ns"; done
  trio_link "$ns_ha" hA "$ns_a" aLan 2>/dev/null || { echo "SKIP: cannot create veth pairs"; exit 77; }
  trio_link "$ns_a" aWan "$ns_w" wA && trio_link "$ns_b" bWan "$ns_w" wB && trio_link "$ns_c" cWan "$ns_w" wC &&
    trio_link "$ns_b" bLan "$ns_hb" hB && trio_link "$ns_c" cLan "$ns_hc" hC || fail "veth pairs"
  in_ns "$ns_w" ip link add br0 type bridge stp_state 0 forward_delay 0 2>/dev/null ||
    { echo "SKIP: cannot create a bridge"; exit 77; }
  for ns in $all_ns; do
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 &&
      in_ns "$ns" ip link set lo up || fail "namespace $ns: sysctl, lo"
  done
  for pair in "$ns_ha hA" "$ns_a aLan" "$ns_a aWan" "$ns_w wA" "$ns_w wB" "$ns_w wC" "$ns_b bWan" \
              "$ns_b bLan" "$ns_hb hB" "$ns_c cWan" "$ns_c cLan" "$ns_hc hC"; do
    set -- $pair
    in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
    in_ns "$1" ip link set "$2" up || fail "ip link set $2 up in $1"
  done
  for pair in wA wB wC; do in_ns "$ns_w" ip link set "$pair" master br0 || fail "$pair into br0"; done
  in_ns "$ns_w" ip link set br0 up || fail "br0 up"
  in_ns "$ns_ha" ip addr add 10.1.0.2/24 dev hA && in_ns "$ns_ha" ip route add default via 10.1.0.1 &&
    in_ns "$ns_hb" ip addr add 10.2.0.2/24 dev hB && in_ns "$ns_hb" ip route add default via 10.2.0.1 &&
    in_ns "$ns_hc" ip addr add 10.3.0.2/24 dev hC && in_ns "$ns_hc" ip route add default via 10.3.0.1 ||
    fail "host addresses and routes"
}

trio_primary_conf() {  # remotes local-settings groups
  echo 'role = "primary";'
  echo "local = { ip = 4; address = \"192.0.2.1\"; port = 5653; $2 };"
  dataplane 192.0.2.1 10.1.0.1
  printf 'groups = ( %s );\nremotes = (\n%s\n);\n' "$3" "$1"
}
trio_remote() {  # id address key subnet...
  local id=$1 address=$2 key=$3 list='' sep='' s
  shift 3
  for s; do list+="$sep\"$s\""; sep=', '; done
  echo "  { id = $id; ip = 4; address = \"$address\"; psk_file = \"$work/$key\"; subnets = [ $list ]; }"
}
trio_secondary_conf() {  # form wan lan admin key
  local form=$1 wan=$2 lan=$3 admin=$4 key=$5
  echo 'role = "secondary";'
  if [ "$form" = minimal ]; then
    echo "local = { admin = { $admin }; };"
  else
    echo "local = { ip = 4; address = \"$wan\"; admin = { $admin }; };"
  fi
  echo "dataplane = { wan = { port = 0; address = \"$wan/24\"; }; lan = { port = 1; address = \"$lan/24\"; };
  $dp_tuning };"
  if [ "$form" = minimal ]; then
    echo "remotes = ( { address = \"192.0.2.1\"; psk_file = \"$work/$key\"; } );"
  else
    echo "remotes = ( { id = 1; ip = 4; address = \"192.0.2.1\"; port = 5653; psk_file = \"$work/$key\";"
    echo "              subnets = [ \"10.1.0.0/24\" ]; } );"
  fi
}

trio_start() {  # name...
  local n ns cpu v
  for n; do
    ns=ns_$n cpu=0
    [ "$n" != b ] || cpu=$cpu2
    start "$n" "${!ns}" "$cpu" "${n}Wan" "${n}Lan"
    printf -v "pid_$n" '%s' $!
  done
  for n; do v=pid_$n; wait_for "$n" "${!v}" 'P3-I0001' 15 "start"; done
}
trio_stop() {  # name...
  local n v rc i
  for n; do v=pid_$n; kill -TERM "${!v}"; done
  for n; do
    v=pid_$n
    for ((i = 0; i < 100; i++)); do kill -0 "${!v}" 2>/dev/null || break; sleep 0.1; done
    kill -0 "${!v}" 2>/dev/null && fail "p3d $n still running 10 s after SIGTERM"
    wait "${!v}"; rc=$?
    printf -v "$v" ''
    [ "$rc" -eq 0 ] || fail "p3d $n exit status $rc after SIGTERM"
  done
}
