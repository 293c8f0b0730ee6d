# Sourced by the cluster tests after lib/netns-pair.sh (not a test itself): the rig they share
# (docs/cluster.md). Uses netns-pair.sh's tag, work, in_ns, fail, wait_log, psk, dp_tuning
# (85, which has its own harness, takes only corosync_conf: it needs work and fail).
#
# Links and namespaces:
# link NS1 IF1 NS2 IF2: a veth pair IF1 in NS1, IF2 in NS2.
# links_up "NS IF" ...: each interface up, IPv6 off in its namespace, offloads off (the
#   af_packet ports see the frames as they are on the wire).
# mkbridge NS BR PORT...: a bridge BR in NS, up, with the ports enslaved.
# mgmt_net NS_BRIDGE SUBNET NS...: the management network: a bridge brM in NS_BRIDGE, and in the
#   i-th NS (1-based) an interface mgI at SUBNET.I/24 whose bridge port is gI; lo up there.
#
# corosync, one per member namespace (docs/cluster.md §Tests): each runs under unshare -m with
# a private tmpfs /run (it locks the fixed path /var/run/corosync.pid) and its own state_dir;
# its IPC (libqb) uses abstract unix sockets, which are per network namespace, so the p3d of a
# namespace reaches the corosync of that namespace.
# corosync_conf NAME ADDRESS...: $work/authkey (once) and $work/corosyncI.conf for node I at the
#   I-th ADDRESS, cluster_name NAME, knet with aes256 + sha256, token $CL_TOKEN ms (default 1000).
# corosync_start I NS: corosync I in NS (log $work/corosyncI.log); sets pid_corosyncI, which
#   netns-pair.sh's exit trap kills.
# corosync_ready I...: each corosync says "ready to provide service" within 10 s.
# corosync_kill I: SIGKILL to corosync I, reaped.
#
# p3d members:
# cluster_key: $work/cluster.key, 32 random bytes, owner-only (the same file for every member).
# member_conf N LAN_ADDRESS ROLE: $work/mN.conf, a member of the cluster at the VIP 192.0.2.1:5653
#   (primary.p3.test) with one PSK remote ${CL_REMOTE_ID:-7} (secondary.p3.test at 192.0.2.2, 10.2.0.0/24, key
#   $work/psk, 1 lane), its LAN at LAN_ADDRESS/24. Settings from the caller's variables:
#   CL_GROUP (corosync group), CL_MAX (max_members, 2), CL_DIRECTOR ("lvs"), CL_LOCAL (more of
#   local: timers, load_balance), CL_WAN (more of the WAN port: gateway_mac), CL_REMOTE (more of
#   the remote: rekey_wait).
# secondary_member_conf LOCAL WAN: $work/s.conf, the secondary at 192.0.2.2 (LAN 10.2.0.1/24)
#   whose primary remote 1 is the VIP; LOCAL and WAN: more settings of local and the WAN port.
# conf_check NAME...: p3ctl config check of each $work/NAME.conf.
# wait_group N M...: p3d mN has seen every other listed member join the CPG group (P3-I0924).
#
# The director (LVS direct routing played by nftables, docs/cluster.md §The director):
# director_bridge NS UPLINK MAC=PORT...: a bridge br0 in NS with UPLINK (towards the secondary)
#   and each member's port, the members' MACs static in its FDB.
# director NS UPLINK STATEMENT...: replaces the ruleset of NS by a netdev ingress chain on
#   UPLINK with the statements, one rule each (e.g. "ether daddr $VMAC ether daddr set $M1MAC").
#
# Reading p3d:
# p3_json NAME PATH ARGS...: a value from p3ctl's --json answer of `p3ctl ARGS` at $work/NAME.sock;
#   PATH is dotted keys, a key of the form id=7 picks the element of a list whose "id" is 7
#   (sessions.id=7.rx_pkts); -1 when there is no such value.
# tel_drop NAME DROP: the dataplane drop counter DROP of p3d NAME (tools/p3_telemetry.py).
# count NAME PATTERN: lines of $work/NAME.log matching PATTERN.

link() { ip link add "$2" netns "$1" type veth peer name "$4" netns "$3" || fail "veth $2-$4"; }
links_up() {
  local pair
  for pair; do
    set -- $pair
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
    in_ns "$1" ip link set "$2" up || fail "link $2 up"
  done
}
mkbridge() {
  local ns=$1 br=$2 p
  shift 2
  in_ns "$ns" ip link add "$br" type bridge && in_ns "$ns" ip link set "$br" up || fail "bridge $br"
  for p; do in_ns "$ns" ip link set "$p" master "$br" || fail "bridge port $p"; done
}
mgmt_net() {
  local nsb=$1 net=$2 i=0 ns ports=()
  shift 2
  for ns; do
    i=$((i + 1))
    link "$ns" "mg$i" "$nsb" "g$i"
    ports+=("g$i")
    in_ns "$ns" ip addr add "$net.$i/24" dev "mg$i"
    links_up "$ns mg$i" "$nsb g$i"
    in_ns "$ns" ip link set lo up
  done
  mkbridge "$nsb" brM "${ports[@]}"
}

corosync_conf() {
  local name=$1 i n a
  shift
  [ -s "$work/authkey" ] || corosync-keygen -l -k "$work/authkey" >/dev/null 2>&1 || fail "corosync-keygen"
  for ((i = 1; i <= $#; i++)); do
    mkdir -p "$work/cstate$i"
    {
      printf 'totem {\n  version: 2\n  cluster_name: %s\n  transport: knet\n  crypto_cipher: aes256\n' "$name"
      printf '  crypto_hash: sha256\n  keyfile: %s\n  token: %s\n}\nnodelist {\n' "$work/authkey" "${CL_TOKEN:-1000}"
      n=0
      for a; do
        n=$((n + 1))
        printf '  node {\n    ring0_addr: %s\n    nodeid: %d\n  }\n' "$a" "$n"
      done
      printf '}\nlogging {\n  to_stderr: yes\n  to_syslog: no\n  to_logfile: no\n}\n'
      printf 'system {\n  state_dir: %s\n}\n' "$work/cstate$i"
    } >"$work/corosync$i.conf"
  done
}
corosync_start() {
  in_ns "$2" unshare -m sh -c "mount -t tmpfs p3t /run && exec corosync -f -c $work/corosync$1.conf" \
    >>"$work/corosync$1.log" 2>&1 &
  printf -v "pid_corosync$1" '%s' "$!"
}
corosync_ready() {
  local i v
  for i; do
    v=pid_corosync$i
    wait_log "$work/corosync$i.log" "${!v}" "ready to provide service" 10 "corosync $i ready"
  done
}
corosync_kill() {
  local v=pid_corosync$1
  [ -n "${!v}" ] || return 0
  kill -KILL "${!v}" 2>/dev/null; wait "${!v}" 2>/dev/null
  printf -v "$v" ''
}

cluster_key() { (umask 077; head -c 32 /dev/urandom >"$work/cluster.key"); }
member_conf() {
  cat >"$work/m$1.conf" <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test"; cluster_state = 1;
  state_dir = "$work/state$1"; ${CL_LOCAL:-}
  admin = { socket = "$work/m$1.sock"; audit = "$work/m$1-audit.jsonl"; }; };
cluster = { member = $1; max_members = ${CL_MAX:-2}; director = "${CL_DIRECTOR:-lvs}"; group = "$CL_GROUP";
  key_file = "$work/cluster.key"; role = "$3"; };
dataplane = { wan = { port = 0; address = "192.0.2.1/24"; gateway = "192.0.2.2"; ${CL_WAN:-} };
  lan = { port = 1; address = "$2/24"; }; $dp_tuning };
remotes = ( { id = ${CL_REMOTE_ID:-7}; ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test"; psk_file = "$work/psk";
  subnets = [ "10.2.0.0/24" ]; lanes = 1; ${CL_REMOTE:-} } );
CONF
  chmod 600 "$work/m$1.conf"
}
secondary_member_conf() {
  cat >"$work/s.conf" <<CONF
role = "secondary";
local = { ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test"; state_dir = "$work/states"; $1
  admin = { socket = "$work/s.sock"; audit = "$work/s-audit.jsonl"; }; };
dataplane = { wan = { port = 0; address = "192.0.2.2/24"; gateway = "192.0.2.1"; $2 };
  lan = { port = 1; address = "10.2.0.1/24"; }; $dp_tuning };
remotes = ( { id = 1; ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test";
  psk_file = "$work/psk"; subnets = [ "10.1.0.0/24" ]; } );
CONF
  chmod 600 "$work/s.conf"
}
conf_check() {
  local n
  for n; do
    "$p3ctl" config check "$work/$n.conf" >"$work/check-$n.txt" 2>&1 || { cat "$work/check-$n.txt"; fail "config check $n"; }
  done
}
wait_group() {
  local n=$1 m v=pid_m$1
  shift
  for m; do
    [ "$m" = "$n" ] || wait_for "m$n" "${!v}" "P3-I0924: cluster: member $m (" 15 "member $m in the group"
  done
}

director_bridge() {
  local ns=$1 up=$2 mp
  shift 2
  in_ns "$ns" ip link add br0 type bridge || fail "director bridge"
  in_ns "$ns" ip link set "$up" master br0
  for mp; do
    in_ns "$ns" ip link set "${mp#*=}" master br0
    in_ns "$ns" bridge fdb add "${mp%=*}" dev "${mp#*=}" master static
  done
  in_ns "$ns" ip link set br0 up
  in_ns "$ns" ip addr add 192.0.2.100/24 dev br0
}
director() {
  local ns=$1 up=$2 s
  shift 2
  {
    printf 'flush ruleset\ntable netdev director {\n  chain in {\n'
    printf '    type filter hook ingress device "%s" priority 0;\n' "$up"
    for s; do printf '    %s\n' "$s"; done
    printf '  }\n}\n'
  } | in_ns "$ns" nft -f - || fail "nft director rule"
}

p3_json() {
  local n=$1 path=$2
  shift 2
  "$p3ctl" -s "$work/$n.sock" --json "$@" 2>/dev/null | /usr/bin/python3 -c '
import json, sys
try:
    j = json.load(sys.stdin)
    j = j.get("result", j)
    for k in sys.argv[1].split("."):
        if "=" in k:
            f, v = k.split("=", 1)
            j = next(e for e in j if str(e.get(f)) == v)
        else:
            j = j[k]
    print(j)
except Exception:
    print(-1)' "$path"
}
tel_drop() { /usr/bin/python3 "$here/../tools/p3_telemetry.py" "$tag-$1" /p3/drops "$2"; }
count() { grep -c -- "$2" "$work/$1.log"; }
