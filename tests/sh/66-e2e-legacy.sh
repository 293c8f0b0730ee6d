#!/usr/bin/env bash
# A pair configured in the seed specification's own line format (Appendix A: `localstart …
# localend`, then `N/keyword value` lines; config/legacy-*.txt, docs/configuration.md) runs as
# well as one in libconfig: `p3ctl config check` accepts both files and reads the roles from
# the keywords alone (no `role` line), the session comes up, p3ctl status shows it up on both
# sides, ping passes both ways, and rekeys happen (rekey_wait 2 from the primary's local
# section, pushed to the secondary) with ping losing nothing.
#
#   host A ns              primary ns                        secondary ns              host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ------veth------ [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#                        10.1.0.1   192.0.2.1             192.0.2.2   10.2.0.1
#                        a.conf (line format)             b.conf (line format)
#
# p3d tells the format by the first keyword (localstart), not by the file's name, so the
# harness's NAME.conf holds the line format here. Appendix A carries no dataplane section and no admin socket: the ports and addresses are the
# documented extension keywords (lan_port, lan_address, wan_port, wan_address, mbufs, ...);
# the admin socket is the default one for the EAL file prefix, /run/p3/PREFIX.sock.
# Needs root and network namespaces with veth (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl
t0=$(date +%s)
log_lines=40
# p3d without an admin section listens on /run/p3/PREFIX.sock; one killed on failure leaves it.
trap 'cleanup; rm -f "/run/p3/$tag"-*.sock' EXIT
pair_topology
psk psk

cat >"$work/a.conf" <<EOF
# p3 primary in the line format (Appendix A, 1 Primary), with the dataplane extensions.
localstart
ip 4
address 192.0.2.1
port 5653
key_generation 1
rekey_wait 2
array_size 64
data_array_time 86400
control_array_time 82800
heartbeat_time 1
heartbeat_fail 5
cluster_state 0
load_balance 0
identity primary.p3.test
wan_port 0
wan_address 192.0.2.1/24
lan_port 1
lan_address 10.1.0.1/24
idle_backoff_us 50
mbufs 4095
localend

# Remote host 7: the secondary.
7/ip 4
7/address 192.0.2.2
7/subnet1 10.2.0.0
7/mask1 255.255.255.0
7/key_type AES256
7/identity secondary.p3.test
7/psk_file $work/psk
EOF
cat >"$work/b.conf" <<EOF
# p3 secondary in the line format (Appendix A, 2 Secondary).
localstart
ip 4
address 192.0.2.2
cluster_state 0
load_balance 0
identity secondary.p3.test
wan_port 0
wan_address 192.0.2.2/24
lan_port 1
lan_address 10.2.0.1/24
idle_backoff_us 50
mbufs 4095
localend

# Remote host 1: the primary.
1/ip 4
1/address 192.0.2.1
1/subnet1 10.1.0.0
1/mask1 255.255.255.0
1/port 5653
1/identity primary.p3.test
1/psk_file $work/psk
EOF
for n in a b; do
  "$p3ctl" config check "$work/$n.conf" >"$work/check-$n.txt" 2>&1 || fail "config check $n.txt: $(cat "$work/check-$n.txt")"
done
grep -q 'role = "primary"' "$work/check-a.txt" || fail "a.txt is not read as a primary's file"
grep -q 'role = "secondary"' "$work/check-b.txt" || fail "b.txt is not read as a secondary's file"

pair_start
pair_wait_up 20
pair_neighbours
ctl() { local n=$1; shift; "$p3ctl" -s "/run/p3/$tag-$n.sock" "$@"; }
for n in a b; do
  id=7; [ "$n" = b ] && id=1
  ctl "$n" status >"$work/status-$n.txt" 2>&1 || fail "p3ctl status at $n: $(cat "$work/status-$n.txt")"
  grep -Eq "^ *$id +up " "$work/status-$n.txt" || { cat "$work/status-$n.txt"; fail "status at $n does not show remote $id up"; }
done
cat "$work/status-a.txt"
grep -q 'AES-256' "$work/a.log" && grep -q 'AES-256' "$work/b.log" || fail "7/key_type AES256 was not applied"

in_ns "$ns_ha" ping -n -c 5 -i 0.2 -W 2 10.2.0.2 >"$work/ping-ab.txt" 2>&1
[ "$(ping_replies "$work/ping-ab.txt")" = 5 ] || fail "host A -> host B: $(grep transmitted "$work/ping-ab.txt")"
in_ns "$ns_hb" ping -n -c 5 -i 0.2 -W 2 10.1.0.2 >"$work/ping-ba.txt" 2>&1
[ "$(ping_replies "$work/ping-ba.txt")" = 5 ] || fail "host B -> host A: $(grep transmitted "$work/ping-ba.txt")"
echo "sessions up, shown up by p3ctl status on both sides; ping both ways 5/5"

# Rekeys every ~2 s (the primary's rekey_wait, pushed): a ping at 10/s across several.
r0=$(grep -c 'P3-I0509' "$work/b.log")
in_ns "$ns_ha" ping -n -i 0.1 -c 60 -W 2 10.2.0.2 >"$work/ping-rekey.txt" 2>&1
rekeys_a=$(grep -c 'P3-I0509' "$work/a.log"); rekeys_b=$(($(grep -c 'P3-I0509' "$work/b.log") - r0))
[ "$(ping_replies "$work/ping-rekey.txt")" = 60 ] || fail "ping during rekeys: $(grep transmitted "$work/ping-rekey.txt")"
[ "$rekeys_b" -ge 2 ] || fail "the secondary completed $rekeys_b rekeys in 6 s with rekey_wait 2"
ctl a --json status 7 | /usr/bin/python3 -c 'import json, sys
s = json.load(sys.stdin)["sessions"][0]
print("status 7 at the primary: state %s, key_type %s, rekeys %d, last %s" % (s["state"], s["key_type"], s["rekeys"], s["last_rekey_result"]))
sys.exit(0 if s["state"] == "up" and s["rekeys"] >= 2 and s["key_type"] == "AES256" and s["last_rekey_result"] == "ok" else 1)' ||
  fail "p3ctl status does not count the rekeys"
grep -q 'P3-E0\(601\|602\)\|P3-W0510' "$work/a.log" "$work/b.log" && fail "a session was lost or a rekey attempt failed"
echo "rekeys: primary $rekeys_a, secondary $rekeys_b during 60 pings at 10/s, none lost"

pair_stop
for ns in $all_ns; do ip netns del "$ns" || fail "ip netns del $ns"; done
all_ns=
echo "PASS: a pair in the Appendix A line format: up, status up, ping both ways, $rekeys_b rekeys without loss ($(($(date +%s) - t0)) s)"
exit 0
