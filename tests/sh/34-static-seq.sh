#!/usr/bin/env bash
# Static keys never repeat a nonce across restarts: p3d persists each static key's sequence
# mark ahead of its lanes (local.state_dir), so after a stop (SIGTERM) or a crash (SIGKILL)
# the first sequence it sends is above every sequence sent before. A fresh state directory
# starts at 1 (what the golden tests rely on). Without a usable state directory static keys
# are refused at start (P3-E0810, exit 2).
#
#   in.pcap --rx--> net_pcap0 (LAN 10.1.0.1/24)   p3d -l 0, remote 1 on static keys
#                                                 net_pcap1 (WAN) --tx--> wanN.pcap
# Runs: 1 fresh -> SIGTERM -> 2 -> SIGKILL -> 3; the P3 sequences of each run's WAN capture
# are compared (outer IPv4 without options: the sequence is at bytes 42..49 of the frame).
P3D_LOG_LINES=20
. "$(dirname "$0")/lib/p3d-test.sh"
py=/usr/bin/python3
tools=$ROOT/tests/tools
"$py" -c 'import scapy' 2>/dev/null || { echo "skip: /usr/bin/python3 lacks python3-scapy"; exit 77; }

N=40
"$py" - "$work/in.pcap" "$N" <<'PY' || fail "could not write the input pcap"
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, UDP, Raw, wrpcap
wrpcap(sys.argv[1], [Ether(src="02:00:00:00:01:07", dst="02:70:63:61:70:00") /
                     IP(src="10.1.0.64", dst="10.2.0.%d" % (1 + i)) / UDP(sport=1000 + i, dport=9) / Raw(b"s" * 64)
                     for i in range(int(sys.argv[2]))])
PY
"$py" -c 'import sys; from scapy.utils import PcapWriter; PcapWriter(sys.argv[1], linktype=1).close()' "$work/empty.pcap"

conf() {  # $1 = state_dir
  cat >"$work/p3d.conf" <<CONF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; state_dir = "$1"; };
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; };
  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; };
  idle_backoff_us = 100;
};
remotes = (
  { id = 1; ip = 4; address = "198.51.100.2"; subnets = [ "10.2.0.0/24" ];
    static_keys = { tx_id = 0x101; tx_key = "000102030405060708090a0b0c0d0e0f"; tx_salt = "0a0b0c0d";
                    rx_id = 0x201; rx_key = "f0e0d0c0b0a090807060504030201000"; rx_salt = "01020304"; }; }
);
CONF
  chmod 600 "$work/p3d.conf"
}

start() {  # $1 = run number: sends the LAN input once, WAN to $work/wan$1.pcap
  prefix=p3t33-$$-$1
  "$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 \
    --vdev "net_pcap0,rx_pcap=$work/in.pcap,tx_pcap=$work/lan$1.pcap" \
    --vdev "net_pcap1,rx_pcap=$work/empty.pcap,tx_pcap=$work/wan$1.pcap" \
    -- -c "$work/p3d.conf" -f >"$work/log" 2>&1 &
  pid=$!
  wait_started "p3d (run $1)"
  "$py" "$tools/p3_telemetry.py" "$prefix" --wait-socket 10 || fail "run $1: no telemetry socket"
  local tx=0
  for _ in $(seq 100); do
    tx=$("$py" "$tools/p3_telemetry.py" "$prefix" /p3/stats tx_wan_pkts)
    [ "${tx:-0}" -ge "$N" ] && break
    sleep 0.1
  done
  [ "${tx:-0}" -ge "$N" ] || fail "run $1: sent ${tx:-0} of $N packets on the WAN"
  sleep 0.2
}

stop() {  # $1 = signal
  kill "-$1" "$pid"; wait "$pid" 2>/dev/null; local rc=$?; pid=
  rm -rf "/var/run/dpdk/$prefix"
  if [ "$1" = TERM ]; then [ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"; fi
}

seqs() {  # $1 = capture: "first last count" of its P3 sequences
  "$py" - "$1" <<'PY'
import sys, struct, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.utils import rdpcap
s = [struct.unpack(">Q", bytes(p)[42:50])[0] for p in rdpcap(sys.argv[1]) if bytes(p)[23] == 50]
print(min(s) if s else 0, max(s) if s else 0, len(s))
PY
}

state="$work/state"
conf "$state"

start 1
stop TERM
read -r first1 last1 n1 < <(seqs "$work/wan1.pcap")
echo "run 1 (fresh state): sequences $first1..$last1 ($n1 packets)"
[ "$n1" -eq "$N" ] && [ "$first1" -eq 1 ] && [ "$last1" -eq "$N" ] || fail "run 1: want sequences 1..$N, got $first1..$last1 ($n1)"
files=("$state"/seq-*)
[ "${#files[@]}" -eq 1 ] && [ -f "${files[0]}" ] || fail "no state file in $state"
[ "$(stat -c %a "${files[0]}")" = 600 ] || fail "state file mode $(stat -c %a "${files[0]}"), want 600"
[ "$(stat -c %a "$state")" = 700 ] || fail "state directory mode $(stat -c %a "$state"), want 700"
grep -q "P3-I0812: remote 1: static-key lanes start after sequence 0" "$work/log" || fail "run 1: no P3-I0812"

start 2
stop KILL
read -r first2 last2 n2 < <(seqs "$work/wan2.pcap")
echo "run 2 (after SIGTERM): sequences $first2..$last2 ($n2 packets)"
[ "$n2" -ge 1 ] && [ "$first2" -gt "$last1" ] || fail "run 2: first sequence $first2 is not above run 1's last $last1"

start 3
stop TERM
read -r first3 last3 n3 < <(seqs "$work/wan3.pcap")
echo "run 3 (after SIGKILL): sequences $first3..$last3 ($n3 packets)"
[ "$n3" -eq "$N" ] && [ "$first3" -gt "$last2" ] || fail "run 3: first sequence $first3 is not above run 2's last $last2"
[ "$last3" -eq $((first3 + N - 1)) ] || fail "run 3: sequences not consecutive ($first3..$last3)"

# No usable state: a regular file where the directory should be, or a directory others may
# write (they could rewind the mark): refused before anything starts, exit 2.
: >"$work/notadir"
for bad in "$work/notadir" "$work/open"; do
  [ "$bad" = "$work/open" ] && { mkdir -p "$bad"; chmod 777 "$bad"; }
  conf "$bad"
  prefix=p3t33-$$-bad
  "$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 \
    --vdev "net_pcap0,rx_pcap=$work/empty.pcap" --vdev "net_pcap1,rx_pcap=$work/empty.pcap" \
    -- -c "$work/p3d.conf" -f >"$work/log" 2>&1
  rc=$?
  rm -rf "/var/run/dpdk/$prefix"; prefix=
  [ "$rc" -eq 2 ] || fail "state_dir $bad: exit $rc, want 2"
  grep -q "error P3-E0810: remote 1: static keys not started" "$work/log" || fail "state_dir $bad: no P3-E0810"
done
echo "ok: static-key sequences resume above the persisted mark after SIGTERM and SIGKILL; no state, no start"
exit 0
