#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
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
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl python3
pair_topology

# Short heartbeats: a control thread starved for 5 s loses the session.
pair_conf "heartbeat_time = 1; heartbeat_fail = 5;"

# The primary's WAN is a net_pcap port on aWan: net_af_packet asks the kernel to reassemble
# fragments before the socket sees them (PACKET_FANOUT_FLAG_DEFRAG), so p3d's own reassembly
# would never see the flood.
pair_start net_pcap0,iface=aWan
pair_wait_up 25
pair_neighbours
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
received=$(ping_replies "$work/ping1.txt")
in_ns "$ns_ha" ping -c 5 -i 0.2 -W 1 10.2.0.2 >"$work/ping2.txt" 2>&1
after=$(ping_replies "$work/ping2.txt")
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

pair_stop
echo "PASS: session up and $received/32 pings through a flood of $(cut -d' ' -f1 "$work/flood2.txt") fragments and setup datagrams; memory flat"
exit 0
