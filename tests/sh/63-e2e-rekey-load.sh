#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# Rekeys and key-array deliveries under load: an iperf3 TCP transfer from host A to host B and
# one to host C run at the same time for 8 s while the primary rekeys every ~2 s (rekey_wait 2)
# and the operator forces rekeys (`p3ctl rekey`) and delivers key arrays (`p3ctl keyarray
# generate`, `keyarray flush --regenerate`). Both transfers complete without error, every
# session counts the rekeys (p3ctl status), and no p3d counts a dropped packet on any session
# while they run (status JSON: no drops field grows, on both sides).
#
#   host A ns        primary ns                 WAN ns                 secondary B ns          host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [wA]                  [bWan] p3d b [bLan] -veth- 10.2.0.2
#     hA             10.1.0.1   192.0.2.1          br0 -[wB]-veth-    192.0.2.2   10.2.0.1    iperf3 -s
#   iperf3 -c x2                                       -[wC]-veth-   [cWan] p3d c [cLan] -veth- 10.3.0.2
#                                                                     192.0.2.3   10.3.0.1    iperf3 -s
#
# Needs root, network namespaces with veth and a bridge, and iperf3 (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-trio.sh" p3ctl iperf3
trio_topology
adm=$work/adm
mkdir -m 700 "$adm"
admin() { echo "socket = \"$adm/$1.sock\"; audit = \"$work/audit-$1.jsonl\";"; }
ctl() { local n=$1; shift; "$p3ctl" -s "$adm/$n.sock" "$@"; }
field() {  # p3d id python-expression-on-s
  ctl "$1" --json status "$2" 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys; s = json.load(sys.stdin)["sessions"][0]; print(eval(sys.argv[1]))' "$3" 2>/dev/null
}
wait_up() {  # p3d id seconds
  local i
  for ((i = 0; i < $3 * 5; i++)); do [ "$(field "$1" "$2" 's["state"]')" = up ] && return 0; sleep 0.2; done
  fail "session $2 at p3d $1 not up within $3 s"
}
psk psk-b; psk psk-c
trio_primary_conf "$(trio_remote 2 192.0.2.2 psk-b 10.2.0.0/24),
$(trio_remote 3 192.0.2.3 psk-c 10.3.0.0/24)" \
  "rekey_wait = 2; heartbeat_time = 1; heartbeat_fail = 5; admin = { $(admin a) };" "" >"$work/a.conf"
trio_secondary_conf minimal 192.0.2.2 10.2.0.1 "$(admin b)" psk-b >"$work/b.conf"
trio_secondary_conf minimal 192.0.2.3 10.3.0.1 "$(admin c)" psk-c >"$work/c.conf"
trio_iperf_server b "$ns_hb"
trio_iperf_server c "$ns_hc"
trio_start a b c
wait_up a 2 20; wait_up a 3 10; wait_up b 1 5; wait_up c 1 5
# Neighbours learnt (ARP) and the path MTU too: host A's first full-size TCP segments exceed the
# tunnel MTU and are answered "fragmentation needed" (counted as a drop, drops.other, and as
# too_big); the host keeps the learnt MTU per destination, so a warm-up transfer first.
for h in 10.2.0.2 10.3.0.2; do
  in_ns "$ns_ha" ping -n -c 2 -i 0.2 -W 1 "$h" >/dev/null 2>&1
  r=$(trio_iperf "$ns_ha" "$h" 1 "$work/warmup.json") || fail "warm-up iperf3 to $h: $r"
done
r2=$(field a 2 's["rekeys"]'); r3=$(field a 3 's["rekeys"]')
for pair in "a 2" "a 3" "b 1" "c 1"; do   # before the load (the first pings may wait on ARP)
  set -- $pair
  field "$1" "$2" 'json.dumps(s["drops"], sort_keys=True)' >"$work/drops0-$1$2.json"
done

trio_iperf "$ns_ha" 10.2.0.2 8 "$work/iperf-b.json" -b 100M >"$work/iperf-b.txt" & pid_load_b=$!
trio_iperf "$ns_ha" 10.3.0.2 8 "$work/iperf-c.json" -b 100M >"$work/iperf-c.txt" & pid_load_c=$!
sleep 1.5
for step in "rekey 2" "keyarray generate 3" "rekey 3" "keyarray flush 2 --regenerate" "rekey 2" \
            "keyarray flush 3 --regenerate" "keyarray generate 2" "rekey 3"; do
  ctl a $step >"$work/ctl.txt" 2>&1 || fail "p3ctl $step during the transfers: $(cat "$work/ctl.txt")"
  sleep 0.7
done
for n in b c; do
  v=pid_load_$n
  wait "${!v}" || fail "iperf3 to host ${n^^} during rekeys: $(cat "$work/iperf-$n.txt")"
  printf -v "$v" ''
  echo "host A -> host ${n^^} under rekeys: $(cat "$work/iperf-$n.txt")"
done

d2=$(( $(field a 2 's["rekeys"]') - r2 )); d3=$(( $(field a 3 's["rekeys"]') - r3 ))
echo "rekeys during the transfers: session 2: $d2, session 3: $d3"
[ "$d2" -ge 4 ] && [ "$d3" -ge 4 ] || fail "too few rekeys counted during 8 s (2 forced each, rekey_wait 2): $d2, $d3"
for pair in "a 2" "a 3" "b 1" "c 1"; do
  set -- $pair
  drops=$(field "$1" "$2" 'json.dumps(s["drops"], sort_keys=True)')
  [ -n "$drops" ] || fail "p3d $1: no drops in status $2"
  echo "p3d $1 session $2 drops: $drops (before the load: $(cat "$work/drops0-$1$2.json"))"
  /usr/bin/python3 -c 'import json, sys
d, d0 = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
sys.exit(0 if d and d.keys() == d0.keys() and d == d0 else 1)' "$drops" "$work/drops0-$1$2.json" ||
    { ctl "$1" --json status; fail "p3d $1 session $2 counted drops under rekeys: $drops (its status above)"; }
done
for n in a b c; do trio_stop "$n"; done   # one at a time: each exits within 10 s
echo "PASS: both transfers complete through $d2 and $d3 rekeys and key-array deliveries; no drop counted"
