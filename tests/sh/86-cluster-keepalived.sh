#!/usr/bin/env bash
# Failover election with the real keepalived, as dist/keepalived/keepalived.conf sets it up:
# two members in their own network namespaces on a management bridge, VRRP unicast, both
# BACKUP with nopreempt and no virtual_ipaddress (the DPDK port holds the VIP). The notify
# hooks run a command that records each call (in production: p3ctl cluster promote|demote).
# Checks: one master is elected (the higher priority) and its notify_master runs; the master
# cut off the management network (its link down: as a dead host, no last advert): it goes to
# FAULT (notify_fault) and the other is promoted (time measured); its link back: it stays
# backup (nopreempt); then its keepalived killed and started again: still backup.
set -u
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip keepalived unshare; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tag=k86$$
work=$(mktemp -d /tmp/p3t86.XXXXXX)
chmod 755 "$work"
br=br$tag
declare -A pid_k
cleanup() {
  local p
  for p in "${pid_k[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for i in 1 2; do ip netns pids "${tag}n$i" 2>/dev/null | xargs -r kill -KILL 2>/dev/null; ip netns del "${tag}n$i" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "---- hook calls"; cat "$work/calls" 2>/dev/null
  for i in 1 2; do echo "---- keepalived $i"; tail -n 12 "$work/k$i.log" 2>/dev/null; done
  exit 1
}
wait_line() {  # file pattern seconds what
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no $4 within $3 s"
}

ip link add "$br" type bridge 2>/dev/null || { echo "SKIP: cannot make a bridge"; exit 77; }
ip link set "$br" up
for i in 1 2; do
  ip netns add "${tag}n$i" || { echo "SKIP: cannot make network namespaces"; exit 77; }
  ip link add "v${tag}$i" type veth peer name mgmt0 netns "${tag}n$i"
  ip link set "v${tag}$i" master "$br" up
  ip -n "${tag}n$i" addr add "10.86.0.$i/24" dev mgmt0
  ip -n "${tag}n$i" link set mgmt0 up
done

# The hook: records "MEMBER STATE" (keepalived runs it as p3ctl would be run).
cat > "$work/record" <<'SH'
#!/bin/sh
echo "$1 $2" >> "$(dirname "$0")/calls"
SH
chmod 755 "$work/record"
# Each member's configuration: the example's, with this test's addresses, priorities and hook.
for i in 1 2; do
  peer=$((3 - i))
  prio=$((i == 1 ? 150 : 100))
  sed -e "s|router_id p3-member-1|router_id p3t86-$i|" \
      -e "s|^  enable_script_security|  # enable_script_security (the test's hook lives under /tmp)|" \
      -e "s|priority 150|priority $prio|" \
      -e "s|unicast_src_ip 10.85.0.1|unicast_src_ip 10.86.0.$i|" \
      -e "s|^    10.85.0.2|    10.86.0.$peer|" \
      -e "s|\"/usr/bin/p3ctl cluster promote\"|\"$work/record $i master\"|" \
      -e "s|\"/usr/bin/p3ctl cluster demote\"|\"$work/record $i backup\"|g" \
      "$ROOT/dist/keepalived/keepalived.conf" > "$work/k$i.conf"
  grep -q "record $i master" "$work/k$i.conf" || fail "the example's notify_master line was not found"
done
keepalived_start() {
  ip netns exec "${tag}n$1" unshare -m sh -c "mount -t tmpfs p3t86 /run && exec keepalived -n -l -D -P \
    -f $work/k$1.conf -p $work/k$1.pid -r $work/k$1.vrrp.pid" >> "$work/k$1.log" 2>&1 &
  pid_k[$1]=$!
}

keepalived_start 1
keepalived_start 2
wait_line "$work/calls" "^1 master" 10 "member 1 (priority 150) elected master"
wait_line "$work/calls" "^2 backup" 5 "member 2's notify_backup"
sleep 2
[ "$(grep -c master "$work/calls")" -eq 1 ] || fail "more than one master elected"

ip link set "v${tag}1" down
t0=$(date +%s.%N)
wait_line "$work/calls" "^2 master" 10 "member 2 promoted after member 1 was cut off"
t_over=$(echo "$(date +%s.%N) - $t0" | bc)

# Member 1 returns: nopreempt keeps it backup; member 2 stays master.
n_before=$(wc -l < "$work/calls")
ip link set "v${tag}1" up
sleep 4
kill -KILL "${pid_k[1]}"; wait "${pid_k[1]}" 2>/dev/null
keepalived_start 1
sleep 5
tail -n +$((n_before + 1)) "$work/calls" | grep -q "^1 master" && fail "the returned member 1 took the master role back"
tail -n +$((n_before + 1)) "$work/calls" | grep -q "^2 backup" && fail "member 2 was demoted when member 1 returned"
grep -q "Entering BACKUP STATE" "$work/k1.log" || fail "member 1 did not enter BACKUP after its return"
printf 'PASS: keepalived elects member 1; member 2 promoted %.1f s after member 1 was cut off; the returned member stays backup\n' "$t_over"
