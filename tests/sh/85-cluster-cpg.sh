#!/usr/bin/env bash
# The cluster engine on real corosync: three corosync instances, one per network namespace on
# a management bridge (knet, aes256 + sha256, one authkey), and in each namespace a cpg_probe
# (tests/cluster/cpg_probe.cpp: the engine of control/cluster/ on its CPG transport). Checks
# what a member sees: membership as members join; the sessions (sealed under the cluster key)
# at a member that was there, at a late joiner; a member whose corosync is killed leaves (the
# others say so, it says its corosync is gone); a rekey while it is away; corosync started
# again: it rejoins by itself and gets the new state; a promote reaches every member.
# Member 1 is p3d itself (virtual ports; the configuration's cluster block): p3ctl cluster
# status shows the members and the sessions it holds, promote reaches the others and is
# audited; a p3d without a cluster says so and refuses promote.
#
#   ns n1: corosync + p3d (member 1)    ns n2: corosync + cpg_probe 2    ns n3: corosync + cpg_probe 3
#          mgmt0 10.85.0.1                     mgmt0 10.85.0.2                  mgmt0 10.85.0.3
#             '--------------------------- bridge br$tag ---------------------------'
#
# Each corosync runs in its own mount namespace with a private /run (corosync locks
# /var/run/corosync.pid, a fixed path) and its own state_dir; its IPC (libqb) uses abstract
# unix sockets, which are per network namespace, so each probe reaches its own corosync.
set -u
BUILD=${BUILD:-build}
probe=$BUILD/tests/cluster/cpg_probe
p3d=$BUILD/p3d/p3d
p3ctl=$BUILD/control/p3ctl
for b in "$probe" "$p3d" "$p3ctl"; do [ -x "$b" ] || { echo "FAIL: $b not built"; exit 1; }; done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip corosync corosync-keygen unshare; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

tag=c85$$
work=$(mktemp -d /tmp/p3t85.XXXXXX)
br=br$tag
declare -A pid_coro pid_probe
pid_p3d=
cleanup() {
  local p
  for p in $pid_p3d "${pid_probe[@]}" "${pid_coro[@]}"; do
    kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  for i in 1 2 3; do ip netns pids "${tag}n$i" 2>/dev/null | xargs -r kill -KILL 2>/dev/null; ip netns del "${tag}n$i" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  rm -rf "$work" /var/run/dpdk/"$tag"-*
}
trap cleanup EXIT
fail() {
  local p
  echo "FAIL: $*"
  for p in "${pid_probe[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  echo "---- p3d (member 1)"; grep -v KNET "$work/p3d.log" 2>/dev/null | tail -n 15
  for i in 1 2 3; do
    echo "---- probe $i"; tail -n 15 "$work/probe$i.log" 2>/dev/null
    echo "---- corosync $i"; tail -n 5 "$work/corosync$i.log" 2>/dev/null
  done
  exit 1
}
. "$(dirname "$0")/lib/cluster.sh"   # corosync_conf (its count is replaced below)
# wait_line FILE PATTERN SECONDS WHAT
wait_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no $4 within $3 s"
}
count() { grep -c -- "$2" "$1" 2>/dev/null || true; }

ip link add "$br" type bridge 2>/dev/null || { echo "SKIP: cannot make a bridge"; exit 77; }
ip link set "$br" up
for i in 1 2 3; do
  ip netns add "${tag}n$i" || { echo "SKIP: cannot make network namespaces"; exit 77; }
  ip link add "v${tag}$i" type veth peer name mgmt0 netns "${tag}n$i"
  ip link set "v${tag}$i" master "$br" up
  ip -n "${tag}n$i" addr add "10.85.0.$i/24" dev mgmt0
  ip -n "${tag}n$i" link set mgmt0 up
  ip -n "${tag}n$i" link set lo up
done

head -c 32 /dev/urandom > "$work/cluster.key"
chmod 600 "$work/cluster.key"
corosync_conf p3t85 10.85.0.1 10.85.0.2 10.85.0.3   # lib/cluster.sh

corosync_start() {
  ip netns exec "${tag}n$1" unshare -m sh -c "mount -t tmpfs p3t85 /run && exec corosync -f -c $work/corosync$1.conf" \
    >> "$work/corosync$1.log" 2>&1 &
  pid_coro[$1]=$!
}
probe_start() {  # member extra-args...
  local m=$1; shift
  ip netns exec "${tag}n$m" "$probe" --member "$m" --group p3t85 --key "$work/cluster.key" "$@" \
    >> "$work/probe$m.log" 2>&1 &
  pid_probe[$m]=$!
}

for i in 1 2 3; do corosync_start $i; done
for i in 1 2 3; do wait_line "$work/corosync$i.log" "ready to provide service" 10 "corosync $i ready"; done

p3d_conf() {  # name [1: member 1 of the cluster]
  local cl=""
  [ "${2:-0}" = 1 ] && cl="cluster = { member = 1; max_members = 4; director = \"lvs\"; group = \"p3t85\";
  key_file = \"$work/cluster.key\"; role = \"backup\"; };"
  cat > "$work/$1.conf" <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; cluster_state = ${2:-0};
  admin = { socket = "$work/$1.sock"; audit = "$work/$1-audit.jsonl"; }; };
$cl
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; };
  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; };
  idle_backoff_us = 200; mbufs = 4095;
};
remotes = ( { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; } );
CONF
}
p3d_start() {  # name
  ip netns exec "${tag}n1" "$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-$1" -l 0 \
    --vdev net_ring0 --vdev net_null0 -- -c "$work/$1.conf" -f >> "$work/$1.log" 2>&1 &
  pid_p3d=$!
  wait_line "$work/$1.log" "P3-I0704" 15 "p3d $1's admin socket"
}
ctl() { "$p3ctl" -s "$work/$1.sock" "${@:2}"; }

# A p3d without a cluster: status says so, promote fails (exit 5) with the same words.
p3d_conf solo
p3d_start solo
ctl solo cluster status > "$work/solo-status" 2>&1 || fail "cluster status without a cluster: exit $?"
grep -q "runs without a cluster" "$work/solo-status" || fail "status without a cluster: $(cat "$work/solo-status")"
ctl solo cluster promote > "$work/solo-promote" 2>&1; rc=$?
[ "$rc" -eq 5 ] || fail "promote without a cluster: exit $rc, want 5"
grep -q "runs without a cluster" "$work/solo-promote" || fail "promote without a cluster: $(cat "$work/solo-promote")"
kill -TERM "$pid_p3d"; wait "$pid_p3d"; pid_p3d=

# Member 1 is p3d (backup); member 2 the primary with three sessions of its own; 3 joins late.
p3d_conf m1 1
p3d_start m1
probe_start 2 --role primary --publish 3
wait_line "$work/m1.log" "P3-I0924: cluster: member 2 (primary) joined" 10 "member 2 at p3d"
wait_line "$work/probe2.log" "members 1,2$" 5 "p3d (member 1) in member 2's view"
probe_start 3
wait_line "$work/probe3.log" "session 3 epoch 1 keys ok" 10 "sessions at the late joiner (member 3)"
wait_line "$work/probe2.log" "members 1,2,3" 5 "member 3 in member 2's view"
[ "$(count "$work/probe3.log" 'keys ok')" -ge 3 ] || fail "member 3 got fewer than 3 sessions"
# Status once member 3's HELLO says it has applied the state (at most a second).
for _ in $(seq 30); do
  ctl m1 cluster status > "$work/status" 2>&1 || fail "p3ctl cluster status: exit $?"
  grep -Eq '^3 +backup +[0-9.]+ s +0$' "$work/status" && break
  sleep 0.1
done
cat "$work/status"
grep -q "this member 1 (backup), 3 sessions replicated" "$work/status" || fail "status: not member 1 backup with 3 sessions"
grep -Eq '^2 +primary +[0-9.]+ s +0$' "$work/status" || fail "status: member 2 not shown as primary, lag 0"
grep -Eq '^3 +backup +[0-9.]+ s +0$' "$work/status" || fail "status: member 3 not shown synced, lag 0"
# The probes' records are not p3d's sessions: one of a remote p3d does not have (2, 3) and one
# whose lanes are not this cluster's (remote 1: 8 lanes, one tx ID) are dropped and counted.
grep -q "P3-W0931.*record of remote 2 .*no such remote here" "$work/m1.log" || fail "record of an unknown remote not refused"
grep -q "P3-W0931.*record of remote 1 .*lanes or wire differ" "$work/m1.log" || fail "record with other lanes not refused"
ctl m1 cluster status --json > "$work/status.json" 2>&1
grep -Eq '"dropped": ?[3-9]' "$work/status.json" || fail "status does not count the dropped records: $(cat "$work/status.json")"

# Member 3's corosync dies: the others see it leave; member 3 sees its corosync gone.
kill -KILL "${pid_coro[3]}"; wait "${pid_coro[3]}" 2>/dev/null
t0=$(date +%s.%N)
wait_line "$work/probe2.log" "member 3 (backup) left" 10 "member 3 leaving (member 2)"
t_leave=$(echo "$(date +%s.%N) - $t0" | bc)
wait_line "$work/m1.log" "member 3 (backup) left" 5 "member 3 leaving (p3d)"
wait_line "$work/probe3.log" "P3-W0921" 5 "member 3 noticing its corosync is gone"

# A rekey while it is away; then its corosync comes back: it rejoins and gets epoch 2.
kill -USR1 "${pid_probe[2]}"
grep -q "epoch 2" "$work/probe3.log" && fail "member 3 got epoch 2 while its corosync was down"
corosync_start 3
t0=$(date +%s.%N)
wait_line "$work/probe3.log" "session 3 epoch 2 keys ok" 20 "epoch 2 at member 3 after its corosync restarted"
t_back=$(echo "$(date +%s.%N) - $t0" | bc)
wait_line "$work/probe2.log" "members 1,2,3" 5 "member 3 back in member 2's view"
[ "$(count "$work/probe2.log" 'members 1,2,3')" -ge 2 ] || fail "member 2 did not see member 3 come back"

# keepalived's notify_master on member 1: p3ctl cluster promote. Every member hears ROLE; the
# audit trail has the command and the role-change event.
ctl m1 cluster promote > "$work/promote" 2>&1 || fail "p3ctl cluster promote: exit $?"
grep -q "member 1 is now primary" "$work/promote" || fail "promote said: $(cat "$work/promote")"
wait_line "$work/probe2.log" "role 1 primary" 5 "ROLE from p3d at member 2"
wait_line "$work/probe3.log" "role 1 primary" 5 "ROLE from p3d at member 3"
grep -q '"cmd":"cluster.promote".*"result":"ok"' "$work/m1-audit.jsonl" || fail "promote not audited"
[ "$(count "$work/m1-audit.jsonl" '"cmd":"event:role","target":"member 1","result":"primary"')" -eq 1 ] ||
  fail "the promote is not audited exactly once as a role event"
# The same path changed the dataplane's role (behind a director the WAN stays as it is).
grep -q "P3-I0908: cluster member 1 is now primary" "$work/m1.log" || fail "promote did not reach the dataplane"
ctl m1 cluster status > "$work/status2" 2>&1
grep -q "this member 1 (primary), 3 sessions replicated" "$work/status2" || fail "status after promote: $(cat "$work/status2")"
ctl m1 cluster demote > "$work/demote" 2>&1 || fail "p3ctl cluster demote: exit $?"
wait_line "$work/probe3.log" "role 1 backup" 5 "ROLE backup from p3d at member 3"
grep -q "P3-I0908: cluster member 1 is now backup" "$work/m1.log" || fail "demote did not reach the dataplane"

for i in 2 3; do
  grep -q "keys bad" "$work/probe$i.log" && fail "member $i applied a session with wrong keys"
  grep -q "P3-W0923" "$work/probe$i.log" && fail "member $i dropped a message"
  kill -TERM "${pid_probe[$i]}"; wait "${pid_probe[$i]}" || fail "probe $i exited with $?"
  unset "pid_probe[$i]"
done
grep -q "P3-W0923" "$work/m1.log" && fail "p3d dropped a message"
kill -TERM "$pid_p3d"; wait "$pid_p3d" || fail "p3d exited with $?"
pid_p3d=
printf 'PASS: corosync CPG in 3 namespaces: p3d and two probes: join, late joiner, leave seen in %.1f s, rejoin with new state in %.1f s, cluster status, promote, demote\n' "$t_leave" "$t_back"
