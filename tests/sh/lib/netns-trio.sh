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
#
# Families and size hiding: set before trio_topology (defaults keep the picture above).
#   trio_wan 4|6: the WAN's family; 6 puts the appliances at 2001:db8::1, ::2, ::3 (/64).
#   trio_inner 4|6: the family of p3d's LAN address (one address per LAN port): 6 puts the
#     appliances at fd00:1::1, fd00:2::1, fd00:3::1 (/64), where the hosts' IPv6 default routes
#     point (whichever family p3d serves). It may change between trio_stop and trio_start. The hosts always carry both families: 10.N.0.2/24 and fd00:N::2/64 (IPv6 on in host
#     namespaces only; the appliances' and the WAN's namespaces keep it off, so the kernel adds
#     nothing to the WAN).
#   trio_size_hiding true|false|"": size_hiding in the primary's local (pushed); "" leaves it out.
#   trio_wan and trio_size_hiding are read when a configuration is written: a test may change
#   them between runs of the same topology.
# trio_wan_addr N, trio_lan_addr N, trio_host_addr N [FAMILY]: appliance N's (1 a, 2 b, 3 c) WAN
#   and LAN address, its host's address (FAMILY defaults to trio_inner); trio_lan_net N: that
#   LAN's prefix (10.N.0.0/24 or fd00:N::/64).
# trio_iperf_server NAME NS: iperf3 -s in NS in the background (pid_iperf_NAME), listening.
# trio_iperf NS DEST SECS OUT [ARGS...]: iperf3 -c DEST -t SECS -J from NS, payload read from
#   $trio_payload (a file of the repeated $trio_marker), socket buffers 256 KiB, JSON in OUT; prints "sent N received N
#   retransmits N" and returns 1 with a reason when iperf3 reports an error, nothing arrived, or
#   the server counted more than 4 MiB less than was sent (it stops counting at the test's end,
#   with data still in flight).
# trio_capture_start NAME: tcpdump on br0 in the WAN namespace (every frame between the
#   appliances) into $work/NAME.pcap, pid_cap_NAME; returns once it listens.
# trio_capture_stop NAME: stops it; fails when the kernel dropped frames.
# trio_capture_clean NAME ADDRESS...: reads $work/NAME.pcap and fails unless every frame is ARP,
#   IPv6 neighbour discovery, P3 (IP protocol 50, or UDP port 4500) or setup UDP (port 5653)
#   between WAN addresses, and no frame carries one of ADDRESS (binary: an IPv6 address alone,
#   IPv4 ones as source-destination pairs) or $trio_marker; prints what it counted.
. "$(dirname "${BASH_SOURCE[0]}")/netns-pair.sh" "$@"
trio_wan=${trio_wan:-4}
trio_inner=${trio_inner:-4}
trio_size_hiding=${trio_size_hiding:-}
trio_marker=P3-INNER-PAYLOAD-MARKER
trio_payload=$work/payload.bin

trio_wan_addr() { if [ "$trio_wan" = 6 ]; then echo "2001:db8::$1"; else echo "192.0.2.$1"; fi; }
trio_wan_len() { if [ "$trio_wan" = 6 ]; then echo 64; else echo 24; fi; }
trio_lan_addr() { if [ "$trio_inner" = 6 ]; then echo "fd00:$1::1"; else echo "10.$1.0.1"; fi; }
trio_lan_len() { if [ "$trio_inner" = 6 ]; then echo 64; else echo 24; fi; }
trio_lan_net() { if [ "$trio_inner" = 6 ]; then echo "fd00:$1::/64"; else echo "10.$1.0.0/24"; fi; }
trio_host_addr() { if [ "${2:-$trio_inner}" = 6 ]; then echo "fd00:$1::2"; else echo "10.$1.0.2"; fi; }
trio_dataplane() {  # n: the dataplane section of appliance n
  echo "dataplane = { wan = { port = 0; address = \"$(trio_wan_addr "$1")/$(trio_wan_len)\"; };" \
    "lan = { port = 1; address = \"$(trio_lan_addr "$1")/$(trio_lan_len)\"; };
  $dp_tuning };"
}

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
  in_ns "$ns_w" ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0 2>/dev/null ||
    { echo "SKIP: cannot create a bridge"; exit 77; }
  for ns in $all_ns; do
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 &&
      in_ns "$ns" ip link set lo up || fail "namespace $ns: sysctl, lo"
  done
  # The kernel must not speak on the WAN: the interfaces p3d owns (on a real appliance a NIC
  # bound to DPDK), the bridge and its ports send no IGMP/MLD reports of their own — switched
  # off before they come up, which is when the first reports go.
  for pair in "$ns_a aWan" "$ns_b bWan" "$ns_c cWan" "$ns_w br0" "$ns_w wA" "$ns_w wB" "$ns_w wC"; do
    set -- $pair
    in_ns "$1" ip link set "$2" multicast off 2>/dev/null
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
  for pair in "$ns_ha hA 1" "$ns_hb hB 2" "$ns_hc hC 3"; do
    set -- $pair
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
      "net.ipv6.conf.$2.disable_ipv6=0" "net.ipv6.conf.$2.accept_ra=0" &&
      in_ns "$1" ip -6 addr add "fd00:$3::2/64" dev "$2" nodad || fail "IPv6 on host $2"
    in_ns "$1" ip -6 route add default via "fd00:$3::1" dev "$2" || fail "IPv6 default route on $2"
  done
}

trio_primary_conf() {  # remotes local-settings groups
  local sh=
  [ -z "$trio_size_hiding" ] || sh="size_hiding = $trio_size_hiding; "
  echo 'role = "primary";'
  echo "local = { ip = $trio_wan; address = \"$(trio_wan_addr 1)\"; port = 5653; $sh$2 };"
  trio_dataplane 1
  printf 'groups = ( %s );\nremotes = (\n%s\n);\n' "$3" "$1"
}
trio_remote() {  # id address key subnet...
  local id=$1 address=$2 key=$3 list='' sep='' s
  shift 3
  for s; do list+="$sep\"$s\""; sep=', '; done
  local ip=4
  [[ $address != *:* ]] || ip=6
  echo "  { id = $id; ip = $ip; address = \"$address\"; psk_file = \"$work/$key\"; subnets = [ $list ]; }"
}
trio_secondary_conf() {  # form wan lan admin key
  local form=$1 wan=$2 lan=$3 admin=$4 key=$5 wlen=24 llen=24 fam=4 primary
  primary=$(trio_wan_addr 1)
  [[ $wan != *:* ]] || wlen=64 fam=6
  [[ $lan != *:* ]] || llen=64
  echo 'role = "secondary";'
  if [ "$form" = minimal ]; then
    echo "local = { admin = { $admin }; };"
  else
    echo "local = { ip = $fam; address = \"$wan\"; admin = { $admin }; };"
  fi
  echo "dataplane = { wan = { port = 0; address = \"$wan/$wlen\"; }; lan = { port = 1; address = \"$lan/$llen\"; };
  $dp_tuning };"
  if [ "$form" = minimal ]; then
    echo "remotes = ( { address = \"$primary\"; psk_file = \"$work/$key\"; } );"
  else
    echo "remotes = ( { id = 1; ip = $fam; address = \"$primary\"; port = 5653; psk_file = \"$work/$key\";"
    echo "              subnets = [ \"$(trio_lan_net 1)\" ]; } );"
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

trio_iperf_server() {  # name ns
  ip netns exec "$2" iperf3 -s -p 5201 --forceflush >"$work/iperf-server-$1.txt" 2>&1 &
  printf -v "pid_iperf_$1" '%s' $!
  local v=pid_iperf_$1
  wait_log "$work/iperf-server-$1.txt" "${!v}" 'Server listening' 10 "iperf3 server $1"
}
trio_iperf() {  # ns dest secs out [args...]
  local ns=$1 dest=$2 secs=$3 out=$4
  shift 4
  [ -s "$trio_payload" ] || /usr/bin/python3 -c 'import sys
open(sys.argv[1], "wb").write((sys.argv[2] + " ").encode() * ((64 << 20) // 24))' "$trio_payload" "$trio_marker"
  in_ns "$ns" timeout $((secs + 30)) iperf3 -c "$dest" -p 5201 -t "$secs" -J -l 1000 -w 256K -F "$trio_payload" \
    --connect-timeout 3000 "$@" >"$out" 2>&1
  /usr/bin/python3 - "$out" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except ValueError:
    print("iperf3 printed no JSON: " + open(sys.argv[1]).read()[-300:]); sys.exit(1)
if r.get("error"):
    print("iperf3 error: " + r["error"]); sys.exit(1)
e = r["end"]
sent, recv = e["sum_sent"]["bytes"], e["sum_received"]["bytes"]
print("sent %d received %d retransmits %s (%.1f Mbit/s)" % (sent, recv, e["sum_sent"].get("retransmits"),
                                                            e["sum_received"]["bits_per_second"] / 1e6))
# The server stops counting when the client ends the test: what was still in flight then is
# not in sum_received, so allow that much (a few socket buffers), never a loss TCP would hide.
if recv < sent - 4 * 1024 * 1024:
    print("  the server received %d bytes fewer than were sent" % (sent - recv)); sys.exit(1)
sys.exit(0 if recv > 0 else 1)
PY
}

trio_capture_start() {  # name
  ip netns exec "$ns_w" tcpdump -i br0 -B 32768 -s 0 -U -n -w "$work/$1.pcap" >"$work/tcpdump-$1.txt" 2>&1 &
  printf -v "pid_cap_$1" '%s' $!
  local v=pid_cap_$1
  wait_log "$work/tcpdump-$1.txt" "${!v}" 'listening on' 10 "tcpdump on br0"
}
trio_capture_stop() {  # name
  local v=pid_cap_$1
  kill -INT "${!v}"; wait "${!v}"; printf -v "$v" ''
  grep -Eq '(^| )0 packets dropped by kernel' "$work/tcpdump-$1.txt" ||
    fail "the WAN capture $1 is incomplete: $(grep dropped "$work/tcpdump-$1.txt" | tr '\n' ' ')"
}
trio_capture_clean() {  # name address...
  local name=$1
  shift
  /usr/bin/python3 - "$work/$name.pcap" "$trio_marker" "$(trio_wan_addr 1) $(trio_wan_addr 2) $(trio_wan_addr 3)" "$@" <<'PY' ||
import ipaddress, struct, sys
data = open(sys.argv[1], "rb").read()
marker, wan = sys.argv[2].encode(), {ipaddress.ip_address(a).packed for a in sys.argv[3].split()}
# An IPv6 address is looked for alone; an IPv4 one as a source-destination pair (any two of those
# given, as an inner header carries them): four bytes alone turn up in 10^5 ciphertexts by chance.
given = [ipaddress.ip_address(a).packed for a in sys.argv[4:]]
secrets = [a for a in given if len(a) == 16] + [marker, marker[:12]]
secrets += [a + b for a in given for b in given if a != b and len(a) == len(b) == 4]
endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
off, n, kinds, bad = 24, 0, {}, []
def kind(f):
    et = struct.unpack("!H", f[12:14])[0]
    if et == 0x0806: return "arp"
    if et == 0x0800:
        ihl = (f[14] & 15) * 4
        src, dst, proto, l4 = f[26:30], f[30:34], f[23], f[14 + ihl:]
    elif et == 0x86DD:
        src, dst, proto, l4 = f[22:38], f[38:54], f[20], f[54:]
        if proto == 58 and l4[0] in (133, 134, 135, 136, 137): return "nd"
    else:
        return None
    if src not in wan or dst not in wan: return None
    if proto == 50: return "p3"
    if proto == 17:
        sport, dport = struct.unpack("!HH", l4[:4])
        if 4500 in (sport, dport): return "p3-udp"
        if 5653 in (sport, dport): return "setup"
    return None
while off + 16 <= len(data):
    incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
    f = data[off + 16:off + 16 + incl]
    off += 16 + incl
    n += 1
    k = kind(f)
    kinds[k] = kinds.get(k, 0) + 1
    if k is None or any(s in f for s in secrets):
        bad.append((n, k, f[:64].hex()))
print("WAN capture: %d frames %s" % (n, {str(k): v for k, v in sorted(kinds.items(), key=str)}))
for b in bad[:5]:
    print("  frame %d (%s) is not P3/setup or carries an inner address or the marker: %s" % b)
sys.exit(0 if n > 0 and kinds.get("p3", 0) + kinds.get("p3-udp", 0) > 0 and not bad else 1)
PY
    fail "the WAN capture $name shows something besides P3 and setup, or something in clear (above)"
}
