#!/usr/bin/env bash
# Traffic through one primary and two minimal secondaries: ping and a short iperf3 TCP transfer
# from host A to host B and to host C (the primary routes by subnet), with IPv4 and IPv6 inner
# traffic, over an IPv4 and an IPv6 WAN, size hiding on and off. A capture on the WAN bridge
# must show nothing but P3, setup UDP and address resolution between the appliances: no inner
# address, no payload marker (iperf3 sends a file of it, ping carries it as its pattern).
#
#   host A ns        primary ns                 WAN ns                 secondary B ns          host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [wA]                  [bWan] p3d b [bLan] -veth- 10.2.0.2
#   fd00:1::2        10.1.0.1   192.0.2.1          br0 -[wB]-veth-    192.0.2.2   10.2.0.1       fd00:2::2
#     hA           | fd00:1::1 | 2001:db8::1       tcpdump  |         2001:db8::2 | fd00:2::1      hB
#                                                      -[wC]-veth-   [cWan] p3d c [cLan] -veth- 10.3.0.2
#                                                                     192.0.2.3   10.3.0.1       fd00:3::2
#                                                                   | 2001:db8::3 | fd00:3::1      hC
#
# p3d has one LAN address per port, so each run serves one inner family (its LAN addresses in
# it); the hosts carry both. Runs (WAN inner size-hiding), every dimension covered both ways:
#   here 4 4 off, 4 6 on; 60-e2e-traffic-wan6.sh (which runs this file) 6 4 on, 6 6 off.
# P3_E2E_RUNS (e.g. "4:4:false 6:6:true") picks other runs. Each run: the three p3d started on
# fresh configurations, both sessions up, host A pings B and C (every reply), iperf3 2 s to
# each (all bytes received, no error), the WAN capture clean.
# Needs root, network namespaces with veth and a bridge, iperf3 and tcpdump (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-trio.sh" p3ctl iperf3 tcpdump
trio_topology
adm=$work/adm
mkdir -m 700 "$adm"
admin() { echo "socket = \"$adm/$1.sock\"; audit = \"$work/audit-$1.jsonl\";"; }
ctl() { local n=$1; shift; "$p3ctl" -s "$adm/$n.sock" "$@"; }
state_of() {  # p3d id
  ctl "$1" --json status "$2" 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["sessions"][0]["state"])' 2>/dev/null
}
wait_up() {  # p3d id seconds
  local i
  for ((i = 0; i < $3 * 5; i++)); do [ "$(state_of "$1" "$2")" = up ] && return 0; sleep 0.2; done
  fail "session $2 at p3d $1 not up within $3 s"
}
psk psk-b; psk psk-c
trio_iperf_server b "$ns_hb"
trio_iperf_server c "$ns_hc"
pattern=$(printf '%s' "${trio_marker:0:12}" | od -An -tx1 | tr -d ' \n')

run() {  # wan inner size-hiding
  trio_wan=$1 trio_inner=$2 trio_size_hiding=$3
  local what="WAN IPv$1, inner IPv$2, size hiding $3" t0=$SECONDS n dest out
  trio_primary_conf "$(trio_remote 2 "$(trio_wan_addr 2)" psk-b "$(trio_lan_net 2)"),
$(trio_remote 3 "$(trio_wan_addr 3)" psk-c "$(trio_lan_net 3)")" \
    "heartbeat_time = 1; heartbeat_fail = 5; admin = { $(admin a) };" "" >"$work/a.conf"
  trio_secondary_conf minimal "$(trio_wan_addr 2)" "$(trio_lan_addr 2)" "$(admin b)" psk-b >"$work/b.conf"
  trio_secondary_conf minimal "$(trio_wan_addr 3)" "$(trio_lan_addr 3)" "$(admin c)" psk-c >"$work/c.conf"
  for n in a b c; do
    "$p3ctl" config check "$work/$n.conf" >/dev/null 2>"$work/check-$n.txt" ||
      fail "$what: $n.conf refused: $(cat "$work/check-$n.txt")"
  done
  trio_capture_start "wan$1$2"
  trio_start a b c
  wait_up a 2 20; wait_up a 3 10; wait_up b 1 5; wait_up c 1 5
  for n in 2 3; do
    dest=$(trio_host_addr $n)
    in_ns "$ns_ha" ping -n -c 2 -i 0.2 -W 1 "$dest" >/dev/null 2>&1   # every hop learns its neighbours
    out=$work/ping-$1$2-$n.txt
    in_ns "$ns_ha" ping -n -c 10 -i 0.05 -W 2 -s 600 -p "$pattern" "$dest" >"$out" 2>&1
    [ "$(ping_replies "$out")" -eq 10 ] || { cat "$out"; fail "$what: ping to $dest: $(ping_replies "$out") of 10 replies"; }
    out=$work/iperf-$1$2-$n.json
    r=$(trio_iperf "$ns_ha" "$dest" 2 "$out") || fail "$what: iperf3 to $dest: $r"
    echo "  $what: $dest: ping 10/10, iperf3 $r"
  done
  for n in a b c; do trio_stop "$n"; done   # one at a time: each exits within 10 s
  trio_capture_stop "wan$1$2"
  trio_capture_clean "wan$1$2" 10.1.0.2 10.2.0.2 10.3.0.2 fd00:1::2 fd00:2::2 fd00:3::2 \
    10.1.0.1 10.2.0.1 10.3.0.1 fd00:1::1 fd00:2::1 fd00:3::1
  echo "ok: $what ($((SECONDS - t0)) s)"
}
for r in ${P3_E2E_RUNS:-${e2e_runs:-4:4:false 4:6:true}}; do
  IFS=: read -r w i h <<<"$r"
  run "$w" "$i" "$h"
done
echo "PASS: traffic to both secondaries, every run; the WAN shows only P3 and setup"
