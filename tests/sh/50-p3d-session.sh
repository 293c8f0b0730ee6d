#!/usr/bin/env bash
# Two p3d with a pre-shared key bring a session up by themselves (setup exchange, then the
# control channel), pass traffic between their LANs, and rekey every 2 s without losing a
# packet; both stop cleanly on SIGTERM.
#
#   host A ns            primary ns                    secondary ns              host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ---veth--- [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#                        10.1.0.1   192.0.2.1          192.0.2.2   10.2.0.1
#
# Needs root and network namespaces with veth (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-pair.sh"
log_lines=40
pair_topology

# The pair's pre-shared key (the primary's remote 7 and the secondary's remote 1 name it),
# owner-only; short timers so that a few seconds show several rekeys.
pair_conf "rekey_wait = 2; heartbeat_time = 1; heartbeat_fail = 5;"

# An empty pre-shared key file is refused: one line with its reason code, exit 2.
: >"$work/psk-open"; chmod 600 "$work/psk-open"
sed "s|$work/psk\"|$work/psk-open\"|" "$work/a.conf" >"$work/open.conf"
"$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-c" -l 0 -- -c "$work/open.conf" >"$work/open.log" 2>&1
rc=$?
rm -rf "/var/run/dpdk/$tag-c"
[ "$rc" -eq 2 ] || { cat "$work/open.log"; fail "empty psk: exit $rc, want 2"; }
grep -q "P3-E0114: $work/open.conf:[0-9]*: remote 7: psk_file $work/psk-open: pre-shared key of 0 bytes, fewer than 16" \
  "$work/open.log" || { cat "$work/open.log"; fail "no P3-E0114 line"; }
# A shared local.psk_file (one key for every remote) is refused, saying what to write instead.
sed "s|identity = \"primary.p3.test\";|identity = \"primary.p3.test\"; psk_file = \"$work/psk\";|" "$work/a.conf" >"$work/shared.conf"
"$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-c" -l 0 -- -c "$work/shared.conf" >"$work/shared.log" 2>&1
rc=$?
rm -rf "/var/run/dpdk/$tag-c"
[ "$rc" -eq 2 ] || { cat "$work/shared.log"; fail "shared psk_file: exit $rc, want 2"; }
grep -q "P3-E0113: .*local.psk_file: one pre-shared key for every remote is refused" "$work/shared.log" ||
  { cat "$work/shared.log"; fail "no P3-E0113 line"; }

pair_start

# The session comes up: each side names the other's identity, and the control channel runs.
wait_for a "$pid_a" 'P3-I0401: setup with remote 7 (secondary.p3.test' 20 "session up with the secondary"
wait_for b "$pid_b" 'P3-I0401: setup with remote 1 (primary.p3.test' 20 "session up with the primary"
pair_wait_up 5

# Neighbours on both LANs and the WAN learnt (not counted), then 30 pings over 6 s: every one
# answered while the primary rekeys every 2 s.
pair_neighbours
done_before_a=$(grep -c 'P3-I0509' "$work/a.log")
done_before_b=$(grep -c 'P3-I0509' "$work/b.log")
in_ns "$ns_ha" ping -c 30 -i 0.2 -W 2 10.2.0.2 >"$work/ping.txt" 2>&1
received=$(ping_replies "$work/ping.txt")
rekeys_a=$(($(grep -c 'P3-I0509' "$work/a.log") - done_before_a))
rekeys_b=$(($(grep -c 'P3-I0509' "$work/b.log") - done_before_b))
echo "pings answered: $received/30; rekeys completed meanwhile: primary $rekeys_a, secondary $rekeys_b"
[ "$received" -eq 30 ] || { cat "$work/ping.txt"; fail "$received of 30 pings answered"; }
[ "$rekeys_a" -ge 2 ] || fail "primary completed $rekeys_a rekeys during the pings (want >= 2)"
[ "$rekeys_b" -ge 2 ] || fail "secondary completed $rekeys_b rekeys during the pings (want >= 2)"
grep -q 'P3-E0\(601\|602\)\|P3-W0510' "$work/a.log" "$work/b.log" && fail "a session was lost or a rekey attempt failed"

# The secondary crashes (SIGKILL: no goodbye) and starts again: it sets up a new session, the
# primary drops the old one (P3-W0607) and traffic flows again under the new keys. (A stop on
# purpose says goodbye first: tests/sh/61-e2e-restart.sh.)
kill -KILL "$pid_b"; wait "$pid_b" 2>/dev/null; pid_b=
rm -rf "/var/run/dpdk/$tag-b"
mv "$work/b.log" "$work/b1.log"
start b "$ns_b" "$cpu2" bWan bLan; pid_b=$!
wait_for b "$pid_b" 'P3-I0401: setup with remote 1 (primary.p3.test' 20 "session up again"
wait_for a "$pid_a" 'P3-W0607: remote 7 (secondary.p3.test): the peer set up a new session' 5 "restart noticed"
# (one may go while the new p3d B learns the neighbours on its LAN and WAN)
in_ns "$ns_ha" ping -c 10 -i 0.2 -W 2 10.2.0.2 >"$work/ping2.txt" 2>&1
received2=$(ping_replies "$work/ping2.txt")
[ "$received2" -ge 9 ] || { cat "$work/ping2.txt"; fail "after the restart $received2 of 10 pings answered"; }

# SIGTERM: both stop with status 0 and leave nothing behind.
pair_stop
for n in a b; do grep -q 'P3-I0002' "$work/$n.log" || fail "p3d $n did not log its stop"; done
for ns in $ns_ha $ns_a $ns_b $ns_hb; do ip netns del "$ns" || fail "ip netns del $ns"; done
rm -rf "/var/run/dpdk/$tag-a" "/var/run/dpdk/$tag-b"
left=$(ip netns list | grep -c "^$tag-")
[ "$left" -eq 0 ] || fail "$left namespace(s) left"
[ ! -e "/var/run/dpdk/$tag-a" ] && [ ! -e "/var/run/dpdk/$tag-b" ] || fail "DPDK runtime directories left"
echo "PASS: session set up with a pre-shared key, 30/30 pings through $rekeys_a rekeys, $received2/10 after the secondary restarted, clean stop"
exit 0
