#!/usr/bin/env bash
# A primary under a flood of outer fragments that never complete, from many sources, and of
# datagrams to its setup port: the session with its secondary stays up (heartbeats answered,
# the control thread takes authenticated control messages first), pings pass during and
# after, the drop counters show the flood (reassembly share, setup policer) and p3d's memory
# stays flat.
#
#   host A ns            primary ns                    secondary ns              host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ---veth--- [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#                        10.1.0.1   192.0.2.1          192.0.2.2   10.2.0.1
#                                       ^
#                                       +-- flood: raw frames sent on bWan (secondary ns)
#
# Needs root and network namespaces with veth (exit 77 otherwise).
set -u
BUILD=${BUILD:-build}
p3d=$BUILD/dataplane/p3d
p3ctl=$BUILD/control/p3ctl
[ -x "$p3d" ] && [ -x "$p3ctl" ] || { echo "FAIL: $p3d or $p3ctl not built"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip nsenter ethtool ping python3; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

tag=p3t53-$$
ns_ha=$tag-ha ns_a=$tag-a ns_b=$tag-b ns_hb=$tag-hb
work=$(mktemp -d /tmp/p3t53.XXXXXX)
pid_a= pid_b= pid_flood= pid_ping=
cleanup() {
  for p in $pid_flood $pid_ping $pid_a $pid_b; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for ns in $ns_ha $ns_a $ns_b $ns_hb; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "/var/run/dpdk/$tag-a" "/var/run/dpdk/$tag-b" "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for n in a b; do echo "---- p3d $n log (last 30 lines)"; tail -n 30 "$work/$n.log" 2>/dev/null; done
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

printf 'p3 test key: %s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$work/psk"
chmod 600 "$work/psk"
# Short heartbeats: a control thread starved for 5 s loses the session.
cat >"$work/a.conf" <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test";
          heartbeat_time = 1; heartbeat_fail = 5; };
dataplane = {
  wan = { port = 0; address = "192.0.2.1/24"; };
  lan = { port = 1; address = "10.1.0.1/24"; };
  idle_backoff_us = 50; mbufs = 4095;
};
remotes = ( { id = 7; ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test";
              psk_file = "$work/psk"; subnets = [ "10.2.0.0/24" ]; } );
CONF
cat >"$work/b.conf" <<CONF
role = "secondary";
local = { ip = 4; address = "192.0.2.2"; identity = "secondary.p3.test"; };
dataplane = {
  wan = { port = 0; address = "192.0.2.2/24"; };
  lan = { port = 1; address = "10.2.0.1/24"; };
  idle_backoff_us = 50; mbufs = 4095;
};
remotes = ( { id = 1; ip = 4; address = "192.0.2.1"; port = 5653; identity = "primary.p3.test";
              psk_file = "$work/psk"; subnets = [ "10.1.0.0/24" ]; } );
CONF

# The primary's WAN is a net_pcap port on aWan: net_af_packet asks the kernel to reassemble
# fragments before the socket sees them (PACKET_FANOUT_FLAG_DEFRAG), so p3d's own reassembly
# would never see the flood.
start() {  # name ns cpu wan-vdev lan
  nsenter --net="/run/netns/$2" -- "$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-$1" --lcores "0@$3" \
    --vdev "$4" --vdev "net_af_packet1,iface=$5" \
    -- -c "$work/$1.conf" -f >"$work/$1.log" 2>&1 &
}
. "$(dirname "$0")/lib/wait.sh"
wait_for() { wait_log "$work/$1.log" "$2" "$3" "$4" "p3d $1: $5"; }
ncpu=$(nproc)
start a "$ns_a" 0 net_pcap0,iface=aWan aLan; pid_a=$!
wait_for a "$pid_a" 'P3-I0001' 15 "start"
start b "$ns_b" $((ncpu > 1 ? 1 : 0)) net_af_packet0,iface=bWan bLan; pid_b=$!
wait_for b "$pid_b" 'P3-I0001' 15 "start"
wait_for a "$pid_a" 'P3-I0501: remote 7 (secondary.p3.test): control channel up as primary' 25 "control channel"
wait_for b "$pid_b" 'P3-I0501: remote 1 (primary.p3.test): control channel up as secondary' 5 "control channel"
in_ns "$ns_ha" ping -c 3 -i 0.2 -W 1 10.2.0.2 >/dev/null 2>&1
in_ns "$ns_ha" ping -c 5 -i 0.2 -W 1 10.2.0.2 >"$work/ping0.txt" 2>&1 || { cat "$work/ping0.txt"; fail "no ping before the flood"; }

stat() { "$p3ctl" stats --prefix "$tag-a" "$@"; }
counter() { stat "$1" | sed -n "s/^$2=//p"; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid_a/status"; }

# The flood: raw Ethernet frames on bWan to aWan's MAC (the primary's WAN port). Outer IPv4
# fragments (protocol 50, MF set, 64 bytes) from 65536 sources with fresh ids, and UDP
# datagrams to the setup port, each at a fixed rate for a fixed time.
cat >"$work/flood.py" <<'PY'
import os, random, socket, struct, sys, time
iface, dst_mac, frag_rate, setup_rate, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
dmac = bytes.fromhex(dst_mac.replace(':', ''))
smac = bytes.fromhex('020000000053')
def csum(b):
    t = sum(struct.unpack('!10H', b))
    t = (t & 0xffff) + (t >> 16); t = (t & 0xffff) + (t >> 16)
    return (~t) & 0xffff
def ip(src, proto, frag, payload, ident):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, src, bytes([192, 0, 2, 1]))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + payload
eth = dmac + smac + b'\x08\x00'
sent_f = sent_s = 0
t0 = time.monotonic()
while True:
    el = time.monotonic() - t0
    if el >= secs: break
    while sent_f < frag_rate * el:
        src = bytes([198, 18 + (sent_f >> 16 & 1), sent_f >> 8 & 0xff, sent_f & 0xff])
        s.send(eth + ip(src, 50, 0x2000, os.urandom(8) * 8, random.getrandbits(16)))
        sent_f += 1
    while sent_s < setup_rate * el:
        src = bytes([203, 0, sent_s >> 8 & 0xff, sent_s & 0xff])
        udp = struct.pack('!HHHH', 40000 + (sent_s & 0xfff), 5653, 8 + 64, 0) + os.urandom(64)
        s.send(eth + ip(src, 17, 0, udp, random.getrandbits(16)))
        sent_s += 1
    time.sleep(0.002)
el = time.monotonic() - t0
print('%d fragments (%.0f/s) and %d setup datagrams (%.0f/s) in %.1f s' % (sent_f, sent_f / el, sent_s, sent_s / el, el))
PY
# p3d's own MAC on that port (net_pcap has its own), from its start-up line.
mac_a=$(sed -n 's/.*wan port 0 (net_pcap0, driver net_pcap, \([0-9A-Fa-f:]*\)).*/\1/p' "$work/a.log")
[ -n "$mac_a" ] || fail "no WAN MAC in p3d a's log"
flood() {  # seconds log
  in_ns "$ns_b" python3 "$work/flood.py" bWan "$mac_a" 5000 3000 "$1" >"$work/$2" 2>&1
}

# A first short flood warms the buffers p3d touches under load; then the measured one, with
# pings through the tunnel all along.
flood 3 flood1.txt || { cat "$work/flood1.txt"; fail "flood sender"; }
rss0=$(rss)
in_ns "$ns_ha" ping -c 32 -i 0.25 -W 2 10.2.0.2 >"$work/ping1.txt" 2>&1 &
pid_ping=$!
flood 8 flood2.txt || { cat "$work/flood2.txt"; fail "flood sender"; }
wait "$pid_ping"; pid_ping=
rss1=$(rss)
received=$(grep -oE '[0-9]+ received' "$work/ping1.txt" | grep -oE '^[0-9]+' || echo 0)
in_ns "$ns_ha" ping -c 5 -i 0.2 -W 1 10.2.0.2 >"$work/ping2.txt" 2>&1
after=$(grep -oE '[0-9]+ received' "$work/ping2.txt" | grep -oE '^[0-9]+' || echo 0)
echo "flood: $(cat "$work/flood2.txt")"

share=$(counter drops reasm_share) source=$(counter drops reasm_source) reasm=$(counter drops reassembly)
policed=$(counter drops setup_policed) full=$(counter drops ring_full_control)
held=$(counter lcores worker0.reasm_peak) bound=$(counter totals reasm_bound_per_worker)
# How the control thread spent its passes: messages by ring, passes that left setup waiting.
stat totals | grep '^control_' | tr '\n' ' '; echo
echo "pings during the flood: $received/32, after: $after/5; drops: reasm_share=$share reasm_source=$source" \
     "reassembly=$reasm setup_policed=$policed ring_full_control=$full; reassembly held at most $held (bound $bound);" \
     "RSS ${rss0} kB -> ${rss1} kB"
grep -q 'P3-E060[12]\|P3-W0510' "$work/a.log" "$work/b.log" && fail "the session was lost or a rekey failed under the flood"
[ "$received" -ge 31 ] || { cat "$work/ping1.txt"; fail "$received of 32 pings answered during the flood"; }
[ "$after" -eq 5 ] || { cat "$work/ping2.txt"; fail "$after of 5 pings answered after the flood"; }
[ "${share:-0}" -gt 0 ] || { stat drops | grep -v '=0$'; stat totals; fail "no fragment counted under reasm_share"; }
[ $(( ${share:-0} + ${reasm:-0} )) -ge 20000 ] || fail "fragments dropped: $share + $reasm (want most of the 40000 sent)"
[ "${policed:-0}" -gt 0 ] || fail "no setup datagram counted under setup_policed"
[ "${full:-1}" -eq 0 ] || fail "$full authenticated control messages dropped"
[ "${held:-9999}" -le "${bound:-0}" ] || fail "reassembly held $held fragments (bound $bound per worker)"
[ $((rss1 - rss0)) -le 2048 ] || fail "RSS grew from $rss0 kB to $rss1 kB during the flood"
grep -q 'P3-W0317' "$work/a.log" || fail "no P3-W0317 line for the reassembly share"
lines=$(grep -c 'P3-W0317' "$work/a.log")
[ "$lines" -le 14 ] || fail "$lines P3-W0317 lines in about 11 s of flood (at most one a second)"

for p in $pid_a $pid_b; do kill -TERM "$p"; done
wait "$pid_a"; rc_a=$?; pid_a=
wait "$pid_b"; rc_b=$?; pid_b=
[ "$rc_a" -eq 0 ] && [ "$rc_b" -eq 0 ] || fail "exit status $rc_a / $rc_b after SIGTERM"
echo "PASS: session up and $received/32 pings through a flood of $(cut -d' ' -f1 "$work/flood2.txt") fragments and setup datagrams; memory flat"
exit 0
