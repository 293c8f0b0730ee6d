#!/usr/bin/env bash
# p3ctl capture: a port's packets copied inside p3d (rte_pcapng) into a pcapng file, with
# --no-huge and no secondary process, read back with tshark; and tools/p3.lua on what was
# captured.
#
#   namespace $tag:  v1 (scapy sends here) -veth- v0 --af_packet--> LAN port 0 (10.1.0.1/24)
#                         p3d -l 0, remote 1 on static keys (tx P3 ID 0x101)
#                    WAN port 1: net_pcap1, tx_pcap=wire.pcap (what went on the wire)
#
# Run 1: `p3ctl capture --port wan -c 20` while 30 LAN packets pass: the file holds 20 packets,
#   each the same bytes as the wire's (ESP protocol 50, 192.0.2.1 -> 198.51.100.2), on an
#   interface named after the WAN port, P3 ID and sequences as the wire has them (p3.lua);
#   a second capture meanwhile is refused (exit 5, "running already"), and no file is left for
#   it; then `--port lan --direction rx -c 10` shows the 10 inner packets as sent.
# Run 2: LAN net_pcap looping one pcap at full speed (infinite_rx), WAN net_null, p3d and its
#   control thread on one CPU: the capture ring overflows; the copies lost are counted (the
#   answer, the file's statistics block, P3-W0716) and every packet received was still sent
#   (telemetry: tx_wan_pkts = rx_lan_pkts within a burst, no drop).
# Needs root (network namespace), tshark, scapy (exit 77 otherwise).
P3D_LOG_LINES=40
. "$(dirname "$0")/lib/p3d-test.sh"
py=/usr/bin/python3
p3ctl=$BUILD/control/p3ctl
tools=$ROOT/tests/tools
lua=$ROOT/tools/p3.lua
[ -x "$p3ctl" ] || fail "$p3ctl not built"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespace)"; exit 77; }
command -v tshark >/dev/null || { echo "SKIP: tshark not installed"; exit 77; }
"$py" -c 'import scapy' 2>/dev/null || { echo "SKIP: /usr/bin/python3 lacks scapy"; exit 77; }
tag=p3t83-$$
ns=$tag
cap_pids=
cleanup83() {
  local p
  for p in $cap_pids; do kill -KILL "$p" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  cleanup
}
trap cleanup83 EXIT
ip netns add "$ns" || { echo "SKIP: cannot create a network namespace"; exit 77; }
ip -n "$ns" link add v0 type veth peer name v1 || { echo "SKIP: cannot create veth pairs"; exit 77; }
# No IPv6 on the link: the kernel's router solicitations would be on the LAN port too.
ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
  net.ipv6.conf.v0.disable_ipv6=1 net.ipv6.conf.v1.disable_ipv6=1 >/dev/null 2>&1
for i in v0 v1 lo; do ip -n "$ns" link set "$i" up; done
ethtool_off() { ip netns exec "$ns" ethtool -K "$1" tx off rx off >/dev/null 2>&1 || true; }
ethtool_off v0; ethtool_off v1

conf() {  # the static-keys primary; its admin socket and audit in $work
  cat <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; state_dir = "$work/state";
          admin = { socket = "$work/adm.sock"; audit = "$work/audit.jsonl"; }; };
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; };
  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; };
  idle_backoff_us = 100;
};
remotes = ( { id = 1; ip = 4; address = "198.51.100.2"; subnets = [ "10.2.0.0/24" ]; key_type = "AES128";
    static_keys = { tx_id = 0x101; tx_key = "000102030405060708090a0b0c0d0e0f"; tx_salt = "0a0b0c0d";
                    rx_id = 0x201; rx_key = "f0e0d0c0b0a090807060504030201000"; rx_salt = "01020304"; }; } );
CONF
}
conf >"$work/p3d.conf"; chmod 600 "$work/p3d.conf"
ctl() { "$p3ctl" -s "$work/adm.sock" "$@"; }
wait_socket() { local i; for ((i = 0; i < 100; i++)); do [ -S "$work/adm.sock" ] && return 0; sleep 0.1; done; fail "no admin socket"; }
# wait_capturing FILE: p3ctl's stderr FILE says the capture runs (p3d armed the workers).
wait_capturing() {
  local i; for ((i = 0; i < 100; i++)); do grep -q 'capturing port' "$1" 2>/dev/null && return 0; sleep 0.1; done
  cat "$1"; fail "the capture did not start"
}
lan_mac=$(ip -n "$ns" -o link show v0 | grep -oE 'link/ether [0-9a-f:]+' | cut -d' ' -f2)
send() {  # first count: LAN frames to p3d's LAN port (v0's MAC), UDP 10.1.0.7 -> 10.2.0.9, sport first+i
  ip netns exec "$ns" "$py" - "$1" "$2" "$work/sent-$1.pcap" "$lan_mac" <<'PY'
import sys, logging, time
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, UDP, sendp, wrpcap
first, n = int(sys.argv[1]), int(sys.argv[2])
pk = [Ether(src="02:00:00:00:01:07", dst=sys.argv[4]) / IP(src="10.1.0.7", dst="10.2.0.9") /
      UDP(sport=first + i, dport=9) / (b"p3 capture %04d" % (first + i)).ljust(40, b".") for i in range(n)]
for p in pk:
    sendp(p, iface="v1", verbose=False)
    time.sleep(0.01)
wrpcap(sys.argv[3], pk)
PY
}

# ---- run 1 ----------------------------------------------------------------------------------
prefix=$tag-a
: >"$work/empty.pcap"; "$py" -c 'import sys; from scapy.utils import PcapWriter; PcapWriter(sys.argv[1], linktype=1).close()' "$work/empty.pcap"
ip netns exec "$ns" "$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 \
  --vdev net_af_packet0,iface=v0 --vdev "net_pcap1,rx_pcap=$work/empty.pcap,tx_pcap=$work/wire.pcap" \
  -- -c "$work/p3d.conf" -f >"$work/log" 2>&1 &
pid=$!
wait_started
wait_socket
ctl capture --port wan --direction tx -c 20 -w "$work/wan.pcapng" 2>"$work/cap-wan.err" &
cap_wan=$!; cap_pids="$cap_wan"
wait_capturing "$work/cap-wan.err"
# One capture at a time: the second is refused, says why, and leaves no file.
ctl capture --port lan -c 5 -w "$work/second.pcapng" 2>"$work/second.err"; rc=$?
[ "$rc" -eq 5 ] || { cat "$work/second.err"; fail "a second capture: exit $rc, want 5"; }
grep -q 'a capture of port wan is running already' "$work/second.err" || { cat "$work/second.err"; fail "no reason for the refusal"; }
[ ! -e "$work/second.pcapng" ] || fail "the refused capture left its file"
send 1000 30
wait "$cap_wan"; rc=$?; cap_pids=
[ "$rc" -eq 0 ] || { cat "$work/cap-wan.err"; fail "p3ctl capture --port wan: exit $rc"; }
grep -q 'capture ended (count): 20 packets written' "$work/cap-wan.err" || { cat "$work/cap-wan.err"; fail "WAN capture's end"; }
# The LAN side: the inner packets as received.
ctl capture --port lan --direction rx -c 10 -w "$work/lan.pcapng" 2>"$work/cap-lan.err" &
cap_lan=$!; cap_pids="$cap_lan"
wait_capturing "$work/cap-lan.err"
send 2000 10
wait "$cap_lan"; rc=$?; cap_pids=
[ "$rc" -eq 0 ] || { cat "$work/cap-lan.err"; fail "p3ctl capture --port lan: exit $rc"; }
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
rm -rf "/var/run/dpdk/$prefix"
grep -q 'P3-I0713: capture of port wan (DPDK port 1, net_pcap1), direction tx, count 20' "$work/log" || fail "no P3-I0713 line"
grep -q '"cmd":"capture","target":"port:wan","result":"ok"' "$work/audit.jsonl" || fail "the capture is not audited"
grep -q '"cmd":"capture","target":"port:lan","result":"failed"' "$work/audit.jsonl" || fail "the refusal is not audited"

# What tshark reads: count, interface (the WAN port: DPDK names a port without a kernel
# interface dpdk:ID), addresses, protocol; the file's comment names the port.
tshark -r "$work/wan.pcapng" -T fields -E separator=' ' -e frame.interface_name -e ip.src -e ip.dst -e ip.proto \
  >"$work/wan.txt" 2>/dev/null || fail "tshark cannot read the WAN capture"
n=$(wc -l <"$work/wan.txt")
[ "$n" -eq 20 ] || fail "WAN capture: $n packets, want 20"
[ "$(sort -u "$work/wan.txt")" = "dpdk:1 192.0.2.1 198.51.100.2 50" ] || { sort | uniq -c <"$work/wan.txt"; fail "WAN capture: not the ESP packets of the WAN port"; }
capinfos "$work/wan.pcapng" 2>/dev/null | grep -q 'Capture comment: *p3d port wan (DPDK port 1, net_pcap1), direction tx' ||
  fail "the capture's comment does not name the WAN port"
# The same bytes as on the wire, in the same order (the wire has the 30; the capture began
# before the first of them).
"$py" - "$work/wan.pcapng" "$work/wire.pcap" <<'PY' || fail "WAN capture differs from the wire"
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import rdpcap
cap, wire = [bytes(p) for p in rdpcap(sys.argv[1])], [bytes(p) for p in rdpcap(sys.argv[2])]
print("wire: %d frames, capture: %d" % (len(wire), len(cap)))
sys.exit(0 if len(wire) >= 30 and cap == wire[:len(cap)] else 1)
PY
# The dissector on it: P3 ID and sequences as the bytes say (native mode), and UDP mode.
"$py" "$tools/p3_lua_check.py" "$work/wan.pcapng" "$lua" --want 20 || fail "tools/p3.lua disagrees with the capture"
tshark -X "lua_script:$lua" -r "$work/wan.pcapng" -T fields -e p3.id -e p3.seq 2>/dev/null | head -1 | grep -qx $'0x00000101\t1' ||
  fail "the first captured packet is not P3 ID 0x101, sequence 1"
# The LAN capture: the 10 inner packets as sent, on the LAN's kernel interface.
"$py" - "$work/lan.pcapng" "$work/sent-2000.pcap" <<'PY' || fail "LAN capture is not the inner packets sent"
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import rdpcap
cap, sent = [bytes(p) for p in rdpcap(sys.argv[1])], [bytes(p) for p in rdpcap(sys.argv[2])]
print("LAN: sent %d, captured %d" % (len(sent), len(cap)))
sys.exit(0 if cap == sent else 1)
PY
[ "$(tshark -r "$work/lan.pcapng" -T fields -e frame.interface_name 2>/dev/null | sort -u)" = v0 ] || fail "LAN capture: interface is not v0"
echo "ok: WAN 20/20 packets as on the wire (P3 ID 0x101, seq 1..20 per tools/p3.lua), LAN 10/10 inner packets, second capture refused"

# ---- run 2: a full ring ---------------------------------------------------------------------
"$py" - "$work/loop.pcap" <<'PY'
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, UDP, wrpcap
wrpcap(sys.argv[1], [Ether(src="02:00:00:00:01:07", dst="02:70:63:61:70:00") / IP(src="10.1.0.7", dst="10.2.0.9") /
                     UDP(sport=4000 + i, dport=9) / (b"x" * 40) for i in range(8)])
PY
prefix=$tag-b
rm -f "$work/adm.sock"
taskset -c 0 "$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 \
  --vdev "net_pcap0,rx_pcap=$work/loop.pcap,infinite_rx=1" --vdev net_null0,no-rx=1 \
  -- -c "$work/p3d.conf" -f >"$work/log" 2>&1 &
pid=$!
wait_started
wait_socket
ctl --json capture --port wan --direction tx -c 3000 -w "$work/full.pcapng" >"$work/full.json" 2>"$work/full.err" ||
  { cat "$work/full.err"; fail "capture at full speed failed"; }
"$py" "$tools/p3_telemetry.py" "$prefix" /p3/stats rx_lan_pkts tx_wan_pkts >"$work/stats.txt" || fail "no telemetry"
"$py" "$tools/p3_telemetry.py" "$prefix" /p3/drops >"$work/drops.json" || fail "no telemetry"
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
read -r written lost < <("$py" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["written"], j["lost"])' "$work/full.json")
read -r rx tx < <(paste -sd' ' "$work/stats.txt")
drops=$("$py" -c 'import json,sys; print(sum(v for v in json.load(open(sys.argv[1])).values() if isinstance(v, int)))' "$work/drops.json")
echo "full ring: written $written, lost $lost; LAN received $rx, WAN sent $tx, drops $drops"
[ "$written" -eq 3000 ] || fail "full ring: $written packets written, want 3000"
[ "$(tshark -r "$work/full.pcapng" 2>/dev/null | wc -l)" -eq 3000 ] || fail "full ring: the file does not hold 3000 packets"
[ "$lost" -gt 0 ] || fail "full ring: no copy lost (the ring never filled?)"
grep -q "P3-W0716: capture of port wan lost $lost copies" "$work/log" || fail "no P3-W0716 line with $lost"
capinfos "$work/full.pcapng" >/dev/null 2>&1 || fail "capinfos cannot read the file"
[ "$drops" -eq 0 ] || { cat "$work/drops.json"; fail "packets were dropped while capturing"; }
[ $((rx - tx)) -le 128 ] && [ $((rx - tx)) -ge 0 ] || fail "forwarding: received $rx on the LAN, sent $tx on the WAN"
echo "PASS: capture of the WAN and LAN ports without hugepages; one at a time; a full ring loses copies, not packets"
exit 0
