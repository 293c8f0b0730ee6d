#!/usr/bin/env bash
# Packet capture on a running p3d with dpdk-dumpcap (rte_pdump, registered at start).
#
#   in.pcap --rx--> net_pcap0 (LAN, infinite_rx)  p3d  net_null0 (WAN)
#                       ^
#                  dpdk-dumpcap (secondary process) -i <LAN port> -c 20 -w cap.pcapng
#
# dpdk-dumpcap is a DPDK secondary process: it maps the primary's hugepage memory and talks to
# it over the multi-process channel. A primary started with --no-huge (or --no-shconf) has
# neither, so on a machine without hugepages this test only checks that p3d registered the
# pdump service (no P3-W0210 in its log) and skips the capture, saying why.
P3D_LOG_LINES=30
. "$(dirname "$0")/lib/p3d-test.sh"
py=/usr/bin/python3
"$py" -c 'import scapy' 2>/dev/null || { echo "skip: /usr/bin/python3 lacks python3-scapy"; exit 77; }

free_huge=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
dumpcap=$(command -v dpdk-dumpcap || true)
if [ "${free_huge:-0}" -ge 256 ] && [ -n "$dumpcap" ]; then
  mem="-m 512"            # hugepages: a secondary process can attach
  huge=1
else
  mem="--no-huge -m 512"
  huge=0
fi

"$py" - "$work/in.pcap" <<'PY' || fail "could not write the input pcap"
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, UDP, wrpcap
wrpcap(sys.argv[1], [Ether(src="02:00:00:00:01:07", dst="02:70:63:61:70:00") /
                     IP(src="10.1.0.7", dst="10.2.0.9") / UDP(sport=4000 + i, dport=9) / (b"x" * 40)
                     for i in range(8)])
PY
cat >"$work/p3d.conf" <<'CONF'
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; };
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; };
  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; };
  idle_backoff_us = 200;
};
remotes = ( { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; } );
CONF

prefix=p3t33-$$
# shellcheck disable=SC2086
"$p3d" $mem --no-pci --file-prefix "$prefix" -l 0 \
  --vdev "net_pcap0,rx_pcap=$work/in.pcap,infinite_rx=1" --vdev net_null0 \
  -- -c "$work/p3d.conf" -f >"$work/log" 2>&1 &
pid=$!
wait_started
if grep -q 'P3-W0210' "$work/log"; then
  fail "p3d could not register the pdump service"
fi

if [ "$huge" = 1 ]; then
  timeout 20 "$dumpcap" --file-prefix "$prefix" -i 0 -c 20 -w "$work/cap.pcapng" -q >"$work/dumpcap.log" 2>&1 ||
    { cat "$work/dumpcap.log"; fail "dpdk-dumpcap could not capture on p3d's LAN port"; }
  n=$("$py" -c 'import sys,logging; logging.getLogger("scapy.runtime").setLevel(40)
from scapy.utils import rdpcap; print(len(rdpcap(sys.argv[1])))' "$work/cap.pcapng")
  [ "$n" -ge 20 ] || fail "dpdk-dumpcap captured $n packets, expected 20"
fi
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
if [ "$huge" = 0 ]; then
  echo "skip: pdump is registered, but no capture here: dpdk-dumpcap is a secondary process and" \
       "cannot attach to a --no-huge primary (HugePages_Free=${free_huge:-0}, dpdk-dumpcap: ${dumpcap:-missing})"
  exit 77
fi
echo "ok: dpdk-dumpcap captured $n packets on p3d's LAN port"
exit 0
