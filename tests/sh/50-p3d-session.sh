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
set -u
BUILD=${BUILD:-build}
p3d=$BUILD/dataplane/p3d
[ -x "$p3d" ] || { echo "FAIL: $p3d not built"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip nsenter ethtool ping; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

tag=p3t50-$$
ns_ha=$tag-ha ns_a=$tag-a ns_b=$tag-b ns_hb=$tag-hb
work=$(mktemp -d /tmp/p3t50.XXXXXX)
pid_a= pid_b=
cleanup() {
  for p in $pid_a $pid_b; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for ns in $ns_ha $ns_a $ns_b $ns_hb; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "/var/run/dpdk/$tag-a" "/var/run/dpdk/$tag-b" "/var/run/dpdk/$tag-c" "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for n in a b; do echo "---- p3d $n log (last 40 lines)"; tail -n 40 "$work/$n.log" 2>/dev/null; done
  exit 1
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

. "$(dirname "$0")/../../scripts/lib/topology.sh"
p3_topology "$ns_ha" "$ns_a" "$ns_b" "$ns_hb"
case $? in
  0) ;;
  2) echo "SKIP: cannot create network namespaces"; exit 77 ;;
  3) echo "SKIP: cannot create veth pairs"; exit 77 ;;
  *) fail "network namespaces and veth pairs (scripts/lib/topology.sh)" ;;
esac

# The pair's pre-shared key (the primary's remote 7 and the secondary's remote 1 name it),
# owner-only; short timers so that a few seconds show several rekeys.
printf 'p3 test key: %s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$work/psk"
chmod 600 "$work/psk"
cat >"$work/a.conf" <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test";
          rekey_wait = 2; heartbeat_time = 1; heartbeat_fail = 5; };
dataplane = {
  wan = { port = 0; address = "192.0.2.1/24"; };
  lan = { port = 1; address = "10.1.0.1/24"; };
  idle_backoff_us = 50; mbufs = 4095;
};
remotes = ( { id = 7; ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test"; psk_file = "$work/psk";
              subnets = [ "10.2.0.0/24" ]; } );
CONF
cat >"$work/b.conf" <<CONF
role = "secondary";
local = { ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test"; };
dataplane = {
  wan = { port = 0; address = "192.0.2.2/24"; };
  lan = { port = 1; address = "10.2.0.1/24"; };
  idle_backoff_us = 50; mbufs = 4095;
};
remotes = ( { id = 1; ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test"; psk_file = "$work/psk";
              subnets = [ "10.1.0.0/24" ]; } );
CONF

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

# Through nsenter, which execs: $! is p3d itself (SIGTERM reaches it, wait gives its status).
start() {  # name ns cpu wan lan
  nsenter --net="/run/netns/$2" -- "$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-$1" --lcores "0@$3" \
    --vdev "net_af_packet0,iface=$4" --vdev "net_af_packet1,iface=$5" \
    -- -c "$work/$1.conf" -f >"$work/$1.log" 2>&1 &
}
. "$(dirname "$0")/lib/wait.sh"
wait_for() { wait_log "$work/$1.log" "$2" "$3" "$4" "p3d $1: $5"; }  # name pid pattern seconds what
ncpu=$(nproc)
start a "$ns_a" 0 aWan aLan; pid_a=$!
wait_for a "$pid_a" 'P3-I0001' 15 "start"
start b "$ns_b" $((ncpu > 1 ? 1 : 0)) bWan bLan; pid_b=$!
wait_for b "$pid_b" 'P3-I0001' 15 "start"

# The session comes up: each side names the other's identity, and the control channel runs.
wait_for a "$pid_a" 'P3-I0401: setup with remote 7 (secondary.p3.test' 20 "session up with the secondary"
wait_for b "$pid_b" 'P3-I0401: setup with remote 1 (primary.p3.test' 20 "session up with the primary"
wait_for a "$pid_a" 'P3-I0501: remote 7 (secondary.p3.test): control channel up as primary' 5 "control channel"
wait_for b "$pid_b" 'P3-I0501: remote 1 (primary.p3.test): control channel up as secondary' 5 "control channel"

# Neighbours on both LANs and the WAN learnt (not counted), then 30 pings over 6 s: every one
# answered while the primary rekeys every 2 s.
in_ns "$ns_ha" ping -c 3 -i 0.2 -W 1 10.2.0.2 >/dev/null 2>&1
done_before_a=$(grep -c 'P3-I0509' "$work/a.log")
done_before_b=$(grep -c 'P3-I0509' "$work/b.log")
in_ns "$ns_ha" ping -c 30 -i 0.2 -W 2 10.2.0.2 >"$work/ping.txt" 2>&1
received=$(grep -oE '[0-9]+ received' "$work/ping.txt" | grep -oE '^[0-9]+' || echo 0)
rekeys_a=$(($(grep -c 'P3-I0509' "$work/a.log") - done_before_a))
rekeys_b=$(($(grep -c 'P3-I0509' "$work/b.log") - done_before_b))
echo "pings answered: $received/30; rekeys completed meanwhile: primary $rekeys_a, secondary $rekeys_b"
[ "$received" -eq 30 ] || { cat "$work/ping.txt"; fail "$received of 30 pings answered"; }
[ "$rekeys_a" -ge 2 ] || fail "primary completed $rekeys_a rekeys during the pings (want >= 2)"
[ "$rekeys_b" -ge 2 ] || fail "secondary completed $rekeys_b rekeys during the pings (want >= 2)"
grep -q 'P3-E0\(601\|602\)\|P3-W0510' "$work/a.log" "$work/b.log" && fail "a session was lost or a rekey attempt failed"

# The secondary restarts: it sets up a new session, the primary drops the old one (P3-W0607)
# and traffic flows again under the new keys.
kill -TERM "$pid_b"; wait "$pid_b"; rc=$?; pid_b=
[ "$rc" -eq 0 ] || fail "p3d b exit status $rc after SIGTERM"
mv "$work/b.log" "$work/b1.log"
start b "$ns_b" $((ncpu > 1 ? 1 : 0)) bWan bLan; pid_b=$!
wait_for b "$pid_b" 'P3-I0401: setup with remote 1 (primary.p3.test' 20 "session up again"
wait_for a "$pid_a" 'P3-W0607: remote 7 (secondary.p3.test): the peer set up a new session' 5 "restart noticed"
# (one may go while the new p3d B learns the neighbours on its LAN and WAN)
in_ns "$ns_ha" ping -c 10 -i 0.2 -W 2 10.2.0.2 >"$work/ping2.txt" 2>&1
received2=$(grep -oE '[0-9]+ received' "$work/ping2.txt" | grep -oE '^[0-9]+' || echo 0)
[ "$received2" -ge 9 ] || { cat "$work/ping2.txt"; fail "after the restart $received2 of 10 pings answered"; }

# SIGTERM: both stop with status 0 and leave nothing behind.
for n in a b; do
  p=$([ $n = a ] && echo "$pid_a" || echo "$pid_b")
  kill -TERM "$p"
  wait "$p"; rc=$?
  [ $n = a ] && pid_a= || pid_b=
  [ "$rc" -eq 0 ] || fail "p3d $n exit status $rc after SIGTERM"
  grep -q 'P3-I0002' "$work/$n.log" || fail "p3d $n did not log its stop"
done
for ns in $ns_ha $ns_a $ns_b $ns_hb; do ip netns del "$ns" || fail "ip netns del $ns"; done
rm -rf "/var/run/dpdk/$tag-a" "/var/run/dpdk/$tag-b"
left=$(ip netns list | grep -c "^$tag-")
[ "$left" -eq 0 ] || fail "$left namespace(s) left"
[ ! -e "/var/run/dpdk/$tag-a" ] && [ ! -e "/var/run/dpdk/$tag-b" ] || fail "DPDK runtime directories left"
echo "PASS: session set up with a pre-shared key, 30/30 pings through $rekeys_a rekeys, $received2/10 after the secondary restarted, clean stop"
exit 0
