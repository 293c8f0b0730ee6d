# Sourced by the end-to-end tests that run p3d in network namespaces (not a test itself:
# scripts/test.sh runs only tests/sh/*.sh). Its arguments name what the test needs besides
# root, a built p3d and ip, nsenter, ethtool and ping: "p3ctl" (built) or further commands.
# Without a built p3d or p3ctl it exits 1, without the rest 77 (skip).
#
# Sets BUILD, p3d, p3ctl, here (tests/sh), tag (p3tNN-$$, NN the test's number: namespaces and
# DPDK file prefixes are named after it), work (a temporary directory: configurations, keys,
# NAME.log), cpu2 (1 when there is a second CPU, else 0), all_ns (empty: the namespaces to
# delete), p3d_names ("a b": whose logs fail shows), log_lines (30), dp_tuning (the dataplane
# settings of every configuration written here: idle back-off, a small mbuf pool), and an EXIT
# trap that kills and reaps every process whose id is in a variable pid_*, deletes $all_ns and
# removes /var/run/dpdk/$tag-* and $work.
# fail MSG: prints MSG and the last $log_lines lines of each p3d's log, exits 1.
# in_ns NS CMD...: runs CMD in network namespace NS.
# start NAME NS CPU WAN LAN [CONF]: p3d NAME in the background in NS (through nsenter, which
#   execs: $! is p3d itself), lcore 0@CPU, file prefix $tag-NAME, configuration $work/CONF.conf
#   (CONF defaults to NAME), log appended to $work/NAME.log; port 0 (WAN) is net_af_packet on
#   interface WAN, or the --vdev WAN itself when it has a '=' (e.g. net_pcap0,iface=aWan);
#   port 1 (LAN) is net_af_packet on interface LAN. $p3d_extra (empty unless the test sets it)
#   adds application options, NAME in it replaced by the p3d's name.
# wait_for NAME PID PATTERN SECONDS WHAT: wait.sh's wait_log on $work/NAME.log.
# ping_replies FILE: how many replies the ping whose output is FILE received (0 when none).
# psk FILE: writes a fresh random pre-shared key to $work/FILE, owner-only from the start.
# dataplane WAN LAN: a dataplane section, WAN port 0 at WAN/24, LAN port 1 at LAN/24.
# remote ID ADDRESS IDENTITY KEY SUBNET: one entry of a primary's remotes, key $work/KEY.
# primary_conf LOCAL REMOTE...: a primary's configuration, 192.0.2.1:5653 as primary.p3.test,
#   LAN 10.1.0.1/24; LOCAL: further settings of local (timers); REMOTE: entries from remote.
# secondary_conf ADDRESS LAN IDENTITY KEY: a secondary's configuration, its primary remote 1 at
#   192.0.2.1:5653 (primary.p3.test, key $work/KEY, subnet 10.1.0.0/24).
#
# The pair: primary p3d "a" and secondary p3d "b", as scripts/lib/topology.sh draws them.
# pair_topology: sets ns_ha ns_a ns_b ns_hb (and all_ns) and builds that topology; skips (77)
#   where namespaces or veth pairs cannot be made.
# pair_conf LOCAL: writes the key $work/psk, $work/a.conf (primary_conf LOCAL, remote 7 the
#   secondary.p3.test at 192.0.2.2 with 10.2.0.0/24) and $work/b.conf (its secondary, LAN 10.2.0.1).
# pair_start [A_WAN [B_WAN]]: starts a (CPU 0, aWan/aLan) and b (CPU $cpu2, bWan/bLan), each
#   within 15 s (P3-I0001); sets pid_a and pid_b. A_WAN, B_WAN: start's WAN for each.
# pair_wait_up SECS: the control channel up at a within SECS, then at b within 5 s (P3-I0501).
# pair_neighbours: three pings from host A to host B, not counted: every hop learns its neighbours.
# pair_stop: SIGTERM to a and b; each must exit with status 0.
set -u
BUILD=${BUILD:-build}
p3d=$BUILD/p3d/p3d
p3ctl=$BUILD/control/p3ctl
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$p3d" ] || { echo "FAIL: $p3d not built"; exit 1; }
for t in "$@"; do
  [ "$t" != p3ctl ] || [ -x "$p3ctl" ] || { echo "FAIL: $p3ctl not built"; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip nsenter ethtool ping "$@"; do
  [ "$t" = p3ctl ] || command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

np_num=$(basename "$0"); np_num=${np_num%%-*}
tag=p3t$np_num-$$
work=$(mktemp -d "/tmp/p3t$np_num.XXXXXX")
cpu2=$(($(nproc) > 1 ? 1 : 0))
all_ns=
p3d_names="a b"
log_lines=30
dp_tuning="idle_backoff_us = 50; mbufs = 4095;"
p3d_extra=
cleanup() {
  local v
  for v in ${!pid_@}; do
    [ -n "${!v}" ] || continue
    kill -KILL "${!v}" 2>/dev/null; wait "${!v}" 2>/dev/null
  done
  # Whatever still runs in a namespace of the test (a daemon started through a subshell,
  # whose pid the trap never saw) dies with it rather than outliving the test.
  for v in $all_ns; do
    ip netns pids "$v" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$v" 2>/dev/null
  done
  rm -rf "/var/run/dpdk/$tag"-* "$work"
}
trap cleanup EXIT
fail() {
  local n
  echo "FAIL: $*"
  for n in $p3d_names; do
    echo "---- p3d $n log (last $log_lines lines)"; tail -n "$log_lines" "$work/$n.log" 2>/dev/null
  done
  exit 1
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

start() {  # name ns cpu wan lan [conf]
  local wan=$4
  [[ $wan == *=* ]] || wan=net_af_packet0,iface=$wan
  nsenter --net="/run/netns/$2" -- "$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-$1" --lcores "0@$3" \
    --vdev "$wan" --vdev "net_af_packet1,iface=$5" \
    -- -c "$work/${6:-$1}.conf" -f ${p3d_extra//NAME/$1} >>"$work/$1.log" 2>&1 &
}
. "$(dirname "${BASH_SOURCE[0]}")/wait.sh"
wait_for() { wait_log "$work/$1.log" "$2" "$3" "$4" "p3d $1: $5"; }  # name pid pattern seconds what
ping_replies() { grep -oE '[0-9]+ received' "$1" | grep -oE '^[0-9]+' || echo 0; }

psk() {
  (umask 077; printf 'p3 test key %s: %s\n' "$1" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$work/$1")
  chmod 600 "$work/$1"
}
dataplane() {  # wan-address lan-address
  echo "dataplane = { wan = { port = 0; address = \"$1/24\"; }; lan = { port = 1; address = \"$2/24\"; };
  $dp_tuning };"
}
remote() {  # id address identity key subnet
  echo "{ id = $1; ip = 4; address = \"$2\"; identity = \"$3\"; psk_file = \"$work/$4\"; subnets = [ \"$5\" ]; }"
}
primary_conf() {  # local-settings remote...
  local settings=$1 sep='' r
  shift
  echo 'role = "primary";'
  echo "local = { ip = 4; address = \"192.0.2.1\"; port = 5653; identity = \"primary.p3.test\"; $settings };"
  dataplane 192.0.2.1 10.1.0.1
  echo "remotes = ("
  for r; do printf '%s  %s' "$sep" "$r"; sep=$',\n'; done
  printf '\n);\n'
}
secondary_conf() {  # address lan-address identity key
  echo 'role = "secondary";'
  echo "local = { ip = 4; address = \"$1\"; identity = \"$3\"; };"
  dataplane "$1" "$2"
  echo "remotes = ( { id = 1; ip = 4; address = \"192.0.2.1\"; port = 5653; identity = \"primary.p3.test\";"
  echo "              psk_file = \"$work/$4\"; subnets = [ \"10.1.0.0/24\" ]; } );"
}

. "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/lib/topology.sh"
pair_topology() {
  ns_ha=$tag-ha ns_a=$tag-a ns_b=$tag-b ns_hb=$tag-hb
  all_ns="$ns_ha $ns_a $ns_b $ns_hb"
  p3_topology "$ns_ha" "$ns_a" "$ns_b" "$ns_hb"
  case $? in
    0) ;;
    2) echo "SKIP: cannot create network namespaces"; exit 77 ;;
    3) echo "SKIP: cannot create veth pairs"; exit 77 ;;
    *) fail "network namespaces and veth pairs (scripts/lib/topology.sh)" ;;
  esac
}
pair_conf() {  # local-settings
  psk psk
  primary_conf "$1" "$(remote 7 192.0.2.2 secondary.p3.test psk 10.2.0.0/24)" >"$work/a.conf"
  secondary_conf 192.0.2.2 10.2.0.1 secondary.p3.test psk >"$work/b.conf"
}
pair_start() {  # [a-wan [b-wan]]
  start a "$ns_a" 0 "${1:-aWan}" aLan; pid_a=$!
  wait_for a "$pid_a" 'P3-I0001' 15 "start"
  start b "$ns_b" "$cpu2" "${2:-bWan}" bLan; pid_b=$!
  wait_for b "$pid_b" 'P3-I0001' 15 "start"
}
pair_wait_up() {  # seconds
  wait_for a "$pid_a" 'P3-I0501: remote 7 (secondary.p3.test): control channel up as primary' "$1" "control channel"
  wait_for b "$pid_b" 'P3-I0501: remote 1 (primary.p3.test): control channel up as secondary' 5 "control channel"
}
pair_neighbours() { in_ns "$ns_ha" ping -c 3 -i 0.2 -W 1 10.2.0.2 >/dev/null 2>&1; }
pair_stop() {
  local n v rc
  kill -TERM "$pid_a" "$pid_b"
  for n in a b; do
    v=pid_$n
    wait "${!v}"; rc=$?
    printf -v "$v" ''
    [ "$rc" -eq 0 ] || fail "p3d $n exit status $rc after SIGTERM"
  done
}
