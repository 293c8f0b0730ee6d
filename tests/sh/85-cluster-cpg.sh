#!/usr/bin/env bash
# The cluster engine on real corosync: three corosync instances, one per network namespace on
# a management bridge (knet, aes256 + sha256, one authkey), and in each namespace a cpg_probe
# (tests/cluster/cpg_probe.cpp: the engine of control/cluster/ on its CPG transport). Checks
# what a member sees: membership as members join; the sessions (sealed under the cluster key)
# at a member that was there, at a late joiner; a member whose corosync is killed leaves (the
# others say so, it says its corosync is gone); a rekey while it is away; corosync started
# again: it rejoins by itself and gets the new state; a promote reaches every member.
#
# Each corosync runs in its own mount namespace with a private /run (corosync locks
# /var/run/corosync.pid, a fixed path) and its own state_dir; its IPC (libqb) uses abstract
# unix sockets, which are per network namespace, so each probe reaches its own corosync.
set -u
BUILD=${BUILD:-build}
probe=$BUILD/tests/cluster/cpg_probe
[ -x "$probe" ] || { echo "FAIL: $probe not built"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip corosync corosync-keygen unshare; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

tag=c85$$
work=$(mktemp -d /tmp/p3t85.XXXXXX)
br=br$tag
declare -A pid_coro pid_probe
cleanup() {
  local p
  for p in "${pid_probe[@]}" "${pid_coro[@]}"; do
    kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  for i in 1 2 3; do ip netns del "${tag}n$i" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  local p
  echo "FAIL: $*"
  for p in "${pid_probe[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for i in 1 2 3; do
    echo "---- probe $i"; tail -n 15 "$work/probe$i.log" 2>/dev/null
    echo "---- corosync $i"; tail -n 5 "$work/corosync$i.log" 2>/dev/null
  done
  exit 1
}
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

corosync-keygen -l -k "$work/authkey" >/dev/null 2>&1 || fail "corosync-keygen"
head -c 32 /dev/urandom > "$work/cluster.key"
chmod 600 "$work/cluster.key"
for i in 1 2 3; do
  mkdir -p "$work/state$i"
  cat > "$work/corosync$i.conf" <<CONF
totem {
  version: 2
  cluster_name: p3t85
  transport: knet
  crypto_cipher: aes256
  crypto_hash: sha256
  keyfile: $work/authkey
  token: 1000
}
nodelist {
  node {
    ring0_addr: 10.85.0.1
    nodeid: 1
  }
  node {
    ring0_addr: 10.85.0.2
    nodeid: 2
  }
  node {
    ring0_addr: 10.85.0.3
    nodeid: 3
  }
}
logging {
  to_stderr: yes
  to_syslog: no
  to_logfile: no
}
system {
  state_dir: $work/state$i
}
CONF
done

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

# Members 1 (primary, three sessions of its own) and 2; member 3 joins late.
probe_start 1 --role primary --publish 3
probe_start 2
wait_line "$work/probe2.log" "session 3 epoch 1 keys ok" 10 "sessions at member 2"
wait_line "$work/probe1.log" "members 1,2$" 5 "member 2 in member 1's view"
probe_start 3
wait_line "$work/probe3.log" "session 3 epoch 1 keys ok" 10 "sessions at the late joiner (member 3)"
wait_line "$work/probe1.log" "members 1,2,3" 5 "member 3 in member 1's view"
[ "$(count "$work/probe3.log" 'keys ok')" -ge 3 ] || fail "member 3 got fewer than 3 sessions"

# Member 3's corosync dies: members 1 and 2 see it leave; member 3 sees its corosync gone.
kill -KILL "${pid_coro[3]}"; wait "${pid_coro[3]}" 2>/dev/null
t0=$(date +%s.%N)
wait_line "$work/probe1.log" "member 3 (backup) left" 10 "member 3 leaving (member 1)"
t_leave=$(echo "$(date +%s.%N) - $t0" | bc)
wait_line "$work/probe2.log" "member 3 (backup) left" 5 "member 3 leaving (member 2)"
wait_line "$work/probe3.log" "P3-W0921" 5 "member 3 noticing its corosync is gone"

# A rekey while it is away; then its corosync comes back: it rejoins and gets epoch 2.
kill -USR1 "${pid_probe[1]}"
wait_line "$work/probe2.log" "session 3 epoch 2 keys ok" 5 "epoch 2 at member 2"
grep -q "epoch 2" "$work/probe3.log" && fail "member 3 got epoch 2 while its corosync was down"
corosync_start 3
t0=$(date +%s.%N)
wait_line "$work/probe3.log" "session 3 epoch 2 keys ok" 20 "epoch 2 at member 3 after its corosync restarted"
t_back=$(echo "$(date +%s.%N) - $t0" | bc)
wait_line "$work/probe1.log" "members 1,2,3" 5 "member 3 back in member 1's view"
[ "$(count "$work/probe1.log" 'members 1,2,3')" -ge 2 ] || fail "member 1 did not see member 3 come back"

# promote member 2: every member hears ROLE.
kill -USR2 "${pid_probe[2]}"
wait_line "$work/probe2.log" "this member is primary" 5 "member 2's own role hook"
wait_line "$work/probe1.log" "role 2 primary" 5 "ROLE at member 1"
wait_line "$work/probe3.log" "role 2 primary" 5 "ROLE at member 3"

for i in 1 2 3; do
  grep -q "keys bad" "$work/probe$i.log" && fail "member $i applied a session with wrong keys"
  grep -q "P3-W0923" "$work/probe$i.log" && fail "member $i dropped a message"
  kill -TERM "${pid_probe[$i]}"; wait "${pid_probe[$i]}" || fail "probe $i exited with $?"
  unset "pid_probe[$i]"
done
printf 'PASS: corosync CPG in 3 namespaces: join, late joiner, leave seen in %.1f s, rejoin with new state in %.1f s, promote\n' "$t_leave" "$t_back"
