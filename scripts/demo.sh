#!/usr/bin/env bash
# The p3 demo: one primary and two secondaries, each a p3d in its own network namespace, on a
# machine with no NIC and no hugepages.
#
#   host A ns       primary ns                   WAN ns                secondary B ns           host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [wA]                  [bWan] p3d b [bLan] -veth- 10.2.0.2
#                   10.1.0.1     192.0.2.1         br0 -[wB]-veth-   192.0.2.2    10.2.0.1
#                                                      -[wC]-veth-   [cWan] p3d c [cLan] -veth- 10.3.0.2
#                                                   tcpdump on       192.0.2.3    10.3.0.1      host C ns
#                                                   wA, wB, wC       secondary C ns
#
# The appliances run from config/demo/: the primary's file names both secondaries (address,
# key, subnets); each secondary's file names only its primary's address and their pre-shared
# key, and the primary pushes the rest when the session comes up. The demo copies the files
# into a temporary directory, writes fresh keys there (owner-only) and adds each p3d's admin
# socket and audit file there, then:
#   1. starts the primary, then the secondaries, and shows `p3ctl status` once both sessions are up;
#   2. pings host B and host C from host A through the tunnel;
#   3. runs an iperf3 TCP transfer to each, forcing two rekeys (`p3ctl rekey ID`) in the middle;
#   4. shows what an observer on the WAN saw (captures of the bridge's ports): one P3 ID per
#      lane for the whole run, and no inner address, ping payload or iperf3 payload in clear;
#   5. prints a summary (throughput, packets, rekeys, drops), stops the three p3d (SIGTERM) and
#      removes every namespace, process and file it made.
#
#   scripts/demo.sh [--no-setup] [--seconds N]
#
# Needs root (namespaces), iperf3 and tcpdump. Runs scripts/setup.sh first (packages, build)
# unless --no-setup. --seconds: each transfer's length (default 3). About 40 s once built.
# Exit 0 only when every step shown worked; the p3d logs are shown when one did not.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
secs=3
setup=1
while (($#)); do
  case $1 in
    --no-setup) setup=0 ;;
    --seconds) secs=$2; shift ;;
    -h|--help) sed -n 2,29p "$0"; exit 0 ;;
    *) echo "demo: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $secs =~ ^[0-9]+$ ]] && ((secs >= 3 && secs <= 30)) || { echo "demo: --seconds takes 3 to 30" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 2; }
if ((setup)); then "$root/scripts/setup.sh" || exit 1; fi
p3d=$build/p3d/p3d p3ctl=$build/control/p3ctl py=/usr/bin/python3
for f in "$p3d" "$p3ctl"; do [ -x "$f" ] || { echo "demo: $f missing (run scripts/setup.sh)" >&2; exit 1; }; done
for t in ip nsenter ethtool ping tcpdump iperf3 ss "$py"; do
  command -v "$t" >/dev/null || { echo "demo: $t is not installed (apt-get install ${t##*/})" >&2; exit 1; }
done

start_time=$SECONDS
tag=p3demo-$$
ns_ha=$tag-ha ns_a=$tag-a ns_w=$tag-w ns_b=$tag-b ns_hb=$tag-hb ns_c=$tag-c ns_hc=$tag-hc
all_ns=
work=$(mktemp -d "${TMPDIR:-/tmp}/p3demo.XXXXXX")
failures=()
# Every background process's id is kept in a variable pid_*: the cleanup reaches each of them.
cleanup() {
  local v
  for v in ${!pid_@}; do [ -z "${!v}" ] || kill -KILL "${!v}" 2>/dev/null; done
  for v in ${!pid_@}; do [ -z "${!v}" ] || wait "${!v}" 2>/dev/null; done
  for v in $all_ns; do ip netns del "$v" 2>/dev/null; done
  rm -rf "/var/run/dpdk/$tag"-* "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf "\n== %s   [%d s]\n" "$*" $((SECONDS - start_time)); }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
failed() { failures+=("$*"); echo "  FAILED: $*"; }
logs() { local n; for n in a b c; do echo "---- p3d $n log (last 15 lines)"; tail -n 15 "$work/$n.log" 2>/dev/null; done; }
die() { echo "demo FAILED: $*"; logs; exit 1; }
ctl() { local n=$1; shift; "$p3ctl" -s "$work/$n.sock" "$@"; }
# jq-like: EXPR (python, the JSON on stdin as r) printed.
jget() { "$py" -c 'import json, sys; r = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" 2>/dev/null; }
sfield() { ctl "$3" --json status "$1" 2>/dev/null | jget "r['sessions'][0]['$2']"; }   # id field p3d
# until_ok SECONDS COMMAND...: true as soon as COMMAND is, false after SECONDS.
until_ok() { local i; for ((i = 0; i < $1 * 10; i++)); do "${@:2}" && return 0; sleep 0.1; done; return 1; }

# ---- The topology drawn above (the approach of tests/sh/lib/netns-trio.sh). Offloads off on
# every veth end: each frame is complete (checksums filled in, no GSO), as a NIC would hand it.
link() { ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"; }   # ns1 if1 ns2 if2
topology() {
  local ns pair
  ip netns add "$ns_ha" || return 1
  all_ns=$ns_ha
  for ns in $ns_a $ns_w $ns_b $ns_hb $ns_c $ns_hc; do ip netns add "$ns" || return 1; all_ns+=" $ns"; done
  link "$ns_ha" hA "$ns_a" aLan && link "$ns_a" aWan "$ns_w" wA && link "$ns_b" bWan "$ns_w" wB &&
    link "$ns_c" cWan "$ns_w" wC && link "$ns_b" bLan "$ns_hb" hB && link "$ns_c" cLan "$ns_hc" hC || return 1
  # mcast_snooping 0: the bridge sends no IGMP of its own onto the WAN the observer reads.
  in_ns "$ns_w" ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0 || return 1
  for ns in $all_ns; do
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 &&
      in_ns "$ns" ip link set lo up || return 1
  done
  for pair in "$ns_ha hA" "$ns_a aLan" "$ns_a aWan" "$ns_w wA" "$ns_w wB" "$ns_w wC" "$ns_b bWan" \
              "$ns_b bLan" "$ns_hb hB" "$ns_c cWan" "$ns_c cLan" "$ns_hc hC"; do
    set -- $pair
    in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
    in_ns "$1" ip link set "$2" up || return 1
  done
  for pair in wA wB wC; do in_ns "$ns_w" ip link set "$pair" master br0 || return 1; done
  in_ns "$ns_w" ip link set br0 up &&
    in_ns "$ns_ha" ip addr add 10.1.0.2/24 dev hA && in_ns "$ns_ha" ip route add default via 10.1.0.1 &&
    in_ns "$ns_hb" ip addr add 10.2.0.2/24 dev hB && in_ns "$ns_hb" ip route add default via 10.2.0.1 &&
    in_ns "$ns_hc" ip addr add 10.3.0.2/24 dev hC && in_ns "$ns_hc" ip route add default via 10.3.0.1
}

say "1. Network: seven namespaces, a bridge for the WAN"
topology || die "cannot build the namespaces, veth pairs and bridge (is this a container without CAP_NET_ADMIN?)"
echo "  host A 10.1.0.2 -- primary (LAN 10.1.0.1, WAN 192.0.2.1) -- WAN bridge"
echo "     -- secondary B (WAN 192.0.2.2, LAN 10.2.0.1) -- host B 10.2.0.2"
echo "     -- secondary C (WAN 192.0.2.3, LAN 10.3.0.1) -- host C 10.3.0.2"

# ---- The appliances. The copies differ from config/demo/ only by where the admin socket and
# the audit trail go (here, not /run/p3 and /var/log/p3); the keys are fresh, owner-only.
say "2. Appliances: one primary, two secondaries (config/demo/)"
for x in b c; do
  (umask 077; head -c 32 /dev/urandom | base64 >"$work/branch-$x.psk") || die "cannot write the key $work/branch-$x.psk"
done
admin() { echo "admin = { socket = \"$work/$1.sock\"; audit = \"$work/audit-$1.jsonl\"; };"; }
sed "s|^local = {|local = {\n  $(admin a)|" "$root/config/demo/primary.conf" >"$work/a.conf"
for x in b c; do
  sed "s|^dataplane = {|local = { $(admin $x) };\n\ndataplane = {|" "$root/config/demo/branch-$x.conf" >"$work/$x.conf"
done
for n in a b c; do
  "$p3ctl" config check "$work/$n.conf" >/dev/null 2>"$work/check-$n.txt" ||
    { cat "$work/check-$n.txt"; die "p3ctl config check refused the copy of $n's configuration"; }
done
echo "  primary:     config/demo/primary.conf (remotes 2 and 3: address, key, subnets)"
for x in b c; do
  echo "  secondary ${x^^}: config/demo/branch-$x.conf: $(grep '^remotes' "$root/config/demo/branch-$x.conf")"
done
ncpu=$(nproc)
cpu2=$((ncpu > 1 ? 1 : 0))
# Started in this shell through nsenter, which execs: $! is p3d itself (SIGTERM reaches it,
# `wait` returns its exit status). The primary on CPU 0, the secondaries on the other CPU.
start() {  # name ns cpu
  nsenter --net="/run/netns/$2" -- "$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-$1" --lcores "0@$3" \
    --vdev "net_af_packet0,iface=${1}Wan" --vdev "net_af_packet1,iface=${1}Lan" \
    -- -c "$work/$1.conf" -f >"$work/$1.log" 2>&1 &
  printf -v "pid_$1" '%s' $!
}
started() { grep -q 'P3-I0001' "$work/$1.log"; }
start a "$ns_a" 0
until_ok 15 started a || die "the primary did not start"
start b "$ns_b" "$cpu2"
start c "$ns_c" "$cpu2"
up_from=$SECONDS
until_ok 15 started b && until_ok 15 started c || die "a secondary did not start"

say "3. Sessions: the secondaries connect, the primary pushes their settings (p3ctl status)"
session_up() { [ "$(sfield "$1" state "$2")" = up ]; }
until_ok 20 session_up 2 a && until_ok 20 session_up 3 a || { ctl a status; die "the sessions did not come up within 20 s"; }
until_ok 5 session_up 1 b && until_ok 5 session_up 1 c || die "a secondary does not see its session up"
echo "  both sessions up $((SECONDS - up_from)) s after the secondaries started; on the primary:"
ctl a status | sed 's/^/  /'
for n in a b c; do ctl "$n" --json status >"$work/status-up-$n.json" 2>&1; done   # drops before any traffic

# ---- The captures: on the WAN bridge's ports (each frame once, as it enters the bridge) and,
# for comparison, on host A's LAN (its first 4000 frames: the pings, the start of a transfer).
# The first 200 bytes of each frame: the outer and P3 headers, then where an inner header and
# the start of its payload would be if they were in clear (a gigabit of frames in whole takes
# the observer a minute to read).
snap=200
capture() {  # name ns interface file [filter...]
  local name=$1 ns=$2 ifc=$3 file=$4
  shift 4
  ip netns exec "$ns" tcpdump -i "$ifc" -Q in -B 16384 -s "$snap" -U -n -w "$file" "$@" 2>"$work/tcpdump-$name.txt" &
  printf -v "pid_cap$name" '%s' $!
}
capture wA "$ns_w" wA "$work/wan-a.pcap"
capture wB "$ns_w" wB "$work/wan-b.pcap"
capture wC "$ns_w" wC "$work/wan-c.pcap"
capture lan "$ns_a" aLan "$work/lan.pcap" -c 4000
for name in wA wB wC lan; do
  until_ok 5 grep -q 'listening on' "$work/tcpdump-$name.txt" || die "tcpdump on $name did not start"
done

say "4. Ping through the tunnel: 3 to each host, the payload marked 'p3-demo-marker!!'"
marker=$(printf 'p3-demo-marker!!' | od -An -tx1 | tr -d ' \n')
for x in b c; do
  addr=10.$([ $x = b ] && echo 2 || echo 3).0.2
  in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 2 -p "$marker" "$addr" >"$work/ping-$x.txt" 2>&1
  printf '  host A -> host %s (%s): %s\n' "${x^^}" "$addr" "$(grep 'packets transmitted' "$work/ping-$x.txt")"
  grep -q ' 3 received' "$work/ping-$x.txt" || failed "not every ping to host ${x^^} was answered"
done

say "5. iperf3 TCP from host A, $secs s each, two forced rekeys in the middle (p3ctl rekey)"
# transfer X ID: iperf3 to host X's server; at 1/3 and 2/3 of the transfer, `p3ctl rekey ID`
# on the primary, each awaited in the session's rekey count before the next.
transfer() {
  local x=$1 id=$2 ns=ns_h$1 addr=10.$2.0.2 t0 r0 r k ms
  in_ns "${!ns}" iperf3 -s -1 -B "$addr" >"$work/iperf-server-$x.txt" 2>&1 &
  pid_server=$!
  until_ok 5 eval "in_ns \"\${!ns}\" ss -Hltn 'sport = :5201' | grep -q LISTEN" || { failed "iperf3 server on host ${x^^}"; return; }
  r0=$(sfield "$id" rekeys a)
  ip netns exec "$ns_ha" iperf3 -c "$addr" -t "$secs" -J --repeating-payload -w 256K >"$work/iperf-$x.json" 2>&1 &
  pid_client=$!
  t0=$(date +%s%3N)
  for k in 1 2; do
    ms=$((t0 + secs * 1000 * k / 3 - $(date +%s%3N)))
    ((ms <= 0)) || sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    ms=$(($(date +%s%3N) - t0))
    r=$(ctl a rekey "$id" 2>&1) || failed "p3ctl rekey $id: $r"
    if until_ok 3 eval '[ "$(sfield "$id" rekeys a)" -ge $((r0 + k)) ]'; then
      printf '  at %d.%d s: p3ctl rekey %s: %s; completed, remote %s has %s rekeys\n' \
        $((ms / 1000)) $((ms % 1000 / 100)) "$id" "$r" "$id" "$((r0 + k))"
    else
      failed "rekey $k of remote $id not counted within 3 s"
    fi
  done
  kill -0 "$pid_client" 2>/dev/null || failed "the transfer to host ${x^^} ended before the rekeys were done"
  wait "$pid_client"; r=$?; pid_client=
  wait "$pid_server" 2>/dev/null; pid_server=
  [ "$r" -eq 0 ] || failed "iperf3 to host ${x^^}: exit status $r"
  "$py" - "$work/iperf-$x.json" "${x^^}" <<'PY' || failed "iperf3 to host ${x^^} reported no transfer"
import json, sys
r = json.load(open(sys.argv[1]))
e = r.get("end", {}).get("sum_received", {})
if r.get("error") or not e.get("bytes"):
    print("  iperf3 error: %s" % r.get("error", "no bytes received")); sys.exit(1)
s = r["end"]["sum_sent"]
print("  host A -> host %s: %.1f MB in %.1f s, %.0f Mbit/s received, %d TCP retransmissions"
      % (sys.argv[2], e["bytes"] / 1e6, e["seconds"], e["bits_per_second"] / 1e6, s.get("retransmits", 0)))
PY
}
transfer b 2
transfer c 3

for name in wA wB wC lan; do v=pid_cap$name; kill -INT "${!v}" 2>/dev/null; wait "${!v}" 2>/dev/null; printf -v "$v" ''; done

say "6. What an observer on the WAN saw (captured on the bridge during the pings and transfers)"
# The P3 header of every frame, read as anyone on the link could (DESIGN.md §Wire format):
# per direction (outer source and destination), how many P3 IDs and whether each one's
# sequence only goes up. (tests/sh/lib/observer.py checks the same on whole frames; its pcap
# reader is used here.) Then every captured byte is searched for the inner IPv4 addresses as
# an inner header holds them (source then destination), the ping marker and iperf3's repeating
# payload; host A's LAN capture shows the same search finding them where they are in clear.
"$py" - "$root/tests/sh/lib" "$work" "$marker" <<'PY' || failed "the observer's checks (above)"
import mmap, os, socket, struct, sys
sys.path.insert(0, sys.argv[1])
from observer import read_pcap
work, marker = sys.argv[2], bytes.fromhex(sys.argv[3])
name = {socket.inet_aton("192.0.2.%d" % i): x for i, x in ((1, "A"), (2, "B"), (3, "C"))}
lanes = {}   # (from, to) -> {P3 ID: [packets, first seq, last seq, steps not up]}
other = {"ARP": 0, "other": 0}
for s in "abc":
    for _, f in read_pcap("%s/wan-%s.pcap" % (work, s))[0]:
        if len(f) < 14 + 20 + 16 or f[12:14] != b"\x08\x00" or f[23] != 50:
            other["ARP" if f[12:14] == b"\x08\x06" else "other"] += 1
            continue
        off = 14 + (f[14] & 15) * 4
        _flags, pid, seq = struct.unpack_from(">IIQ", f, off)
        d = lanes.setdefault((name.get(f[26:30], "?"), name.get(f[30:34], "?")), {})
        if pid not in d:
            d[pid] = [0, seq, seq, 0]
        e = d[pid]
        e[0] += 1
        e[3] += seq <= e[2] and e[0] > 1
        e[2] = seq
ok = True
for d in (("A", "B"), ("B", "A"), ("A", "C"), ("C", "A")):
    ids = lanes.get(d, {})
    print("  %s->%s %7d P3 packets under %d P3 ID (%s), sequences %s" % (
        d[0], d[1], sum(e[0] for e in ids.values()), len(ids), " ".join("0x%x" % i for i in ids) or "-",
        " ".join("%d..%d%s" % (e[1], e[2], ", %d not up" % e[3] if e[3] else ", only up") for e in ids.values()) or "-"))
    ok &= len(ids) == 1 and all(e[3] == 0 for e in ids.values())
print("  besides P3:  %d ARP, %d other frames" % (other["ARP"], other["other"]))
with open(work + "/observer.txt", "w") as f:
    f.write(" ".join("%s->%s=%d" % (k[0], k[1], len(v)) for k, v in sorted(lanes.items())))
ip = socket.inet_aton
hosts = {"A": ip("10.1.0.2"), "B": ip("10.2.0.2"), "C": ip("10.3.0.2")}
patterns = {"inner addresses": [hosts[x] + hosts[y] for x in "ABC" for y in "ABC" if x != y],
            "ping marker": [marker], "iperf3 payload": [b"0123456789" * 4]}
def found(path, every):  # every: how many times each kind occurs; else 0 or 1 (the WAN's: any at all)
    with open(path, "rb") as f:
        if every or os.fstat(f.fileno()).st_size == 0:
            data = f.read()
            return {k: sum(data.count(p) for p in ps) for k, ps in patterns.items()}
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return {k: int(any(m.find(p) >= 0 for p in ps)) for k, ps in patterns.items()}
lan = found(work + "/lan.pcap", True)
wan = {k: 0 for k in patterns}
size = 0
for s in "abc":
    path = "%s/wan-%s.pcap" % (work, s)
    size += os.path.getsize(path)
    for k, v in found(path, False).items():
        wan[k] += v
print("  searched for  %s" % ", ".join(patterns))
print("  host A's LAN  found %s (%d kB captured)" % (", ".join("%d times" % v for v in lan.values()),
                                                     os.path.getsize(work + "/lan.pcap") // 1000))
print("  the WAN       %s (%d MB captured)" % ("nowhere" if not any(wan.values()) else
                                               "FOUND: " + ", ".join("%s %d" % kv for kv in wan.items()), size // 1000000))
sys.exit(0 if ok and not any(wan.values()) and all(lan.values()) else 1)
PY

# The sessions' counters as p3ctl shows them, once they have settled after the transfers.
settled() { ctl a --json status >"$work/status-a.json" 2>&1 && cmp -s "$work/status-a.json" "$work/status-prev.json" ||
  { cp "$work/status-a.json" "$work/status-prev.json"; return 1; }; }
until_ok 5 settled || true
for n in a b c; do ctl "$n" --json status >"$work/status-$n.json" 2>&1 || failed "p3ctl --json status on $n"; done

say "Summary"
"$py" - "$work" <<'PY' || failed "the summary's checks (above)"
import json, sys
work = sys.argv[1]
def load(name):
    try:
        return json.load(open("%s/%s" % (work, name)))
    except (OSError, ValueError):
        return {}
ok = True
rates = []
for x in "BC":
    e = load("iperf-%s.json" % x.lower()).get("end", {}).get("sum_received", {})
    rates.append("host %s %.0f Mbit/s" % (x, e.get("bits_per_second", 0) / 1e6))
    ok &= e.get("bits_per_second", 0) > 0
print("  throughput  %s (iperf3 TCP, received)" % ", ".join(rates))
a = load("status-a.json")
sess = {s["id"]: s for s in a.get("sessions", [])}
print("  packets     %s (primary, p3ctl status)" % "; ".join(
    "remote %d: %d in, %d out" % (i, s["rx_pkts"], s["tx_pkts"]) for i, s in sorted(sess.items())))
ch = a.get("control", {}).get("channel", {})
print("  rekeys      %s; %d failed (forced during the transfers)" % (
    ", ".join("remote %d: %d" % (i, s["rekeys"]) for i, s in sorted(sess.items())), ch.get("rekey_failures", -1)))
ok &= len(sess) == 2 and all(s["rekeys"] >= 2 for s in sess.values()) and ch.get("rekey_failures") == 0
# Drops: a session's losses to keys (auth, replay, old key) and to a session down or policy
# must be none; what else each appliance counted is shown with its reason (p3ctl status).
why = {"too_big": 'packets over the tunnel MTU, answered with ICMP "fragmentation needed"',
       "not_for_us": "WAN frames for another appliance on the shared bridge"}
lost, counted = {}, []
for n, who in (("a", "primary"), ("b", "secondary B"), ("c", "secondary C")):
    st = load("status-%s.json" % n)
    for s in st.get("sessions", []):
        for k in ("auth", "replay", "old_key", "policy", "down"):
            lost[k] = lost.get(k, 0) + s["drops"].get(k, 0)
    ok &= bool(st.get("sessions"))
    early = load("status-up-%s.json" % n).get("control", {}).get("drops", {})
    counted += [(who, k, v, early.get(k, 0)) for k, v in st.get("control", {}).get("drops", {}).items() if v]
print("  drops       %s by rekeys or keys (%s)" % (
    "none" if not any(lost.values()) else "SOME", ", ".join("%s %d" % kv for kv in lost.items())))
ok &= not any(lost.values())
for who, k, v, early in counted:
    print("              %s %s %d%s%s" % (who, k, v, ": " + why[k] if k in why else "",
                                          " (%s before the first ping)" % (
                                              "all" if early == v else "%d" % early) if early else ""))
try:
    obs = open(work + "/observer.txt").read()
except OSError:
    obs = "-"
print("  observer    P3 IDs per direction %s (one lane each); no inner address or payload in clear" % obs)
sys.exit(0 if ok else 1)
PY

say "Teardown"
# The secondaries first: each says goodbye, the primary acknowledges; then the primary, alone.
for group in "b c" a; do
  for n in $group; do v=pid_$n; kill -TERM "${!v}"; done
  for n in $group; do
    v=pid_$n
    until_ok 10 eval '! kill -0 "${!v}" 2>/dev/null' || failed "p3d $n still running 10 s after SIGTERM"
    wait "${!v}"; rc=$?; printf -v "$v" ''
    [ "$rc" -eq 0 ] || failed "p3d $n exit status $rc after SIGTERM"
  done
done
echo "  secondaries B and C, then the primary stopped (SIGTERM: goodbye, exit status 0 each)"
for ns in $all_ns; do ip netns del "$ns" || failed "ip netns del $ns"; done
all_ns=
rm -rf "/var/run/dpdk/$tag"-*
echo "  namespaces and DPDK runtime directories removed (the temporary directory goes on exit)"

if ((${#failures[@]} == 0)); then
  say "demo passed in $((SECONDS - start_time)) s"
  exit 0
fi
say "demo FAILED: ${#failures[@]} step(s)"
printf '  %s\n' "${failures[@]}"
logs
exit 1
