#!/usr/bin/env bash
# The p3 demo: a pair of appliances passing traffic, on a machine with no NIC and no hugepages.
#
#   host A ns           appliance A ns                 appliance B ns           host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ---veth--- [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#                        10.1.0.1   192.0.2.1          192.0.2.2   10.2.0.1
#
# Both p3d run on net_af_packet ports over veth pairs, each in its own network namespace,
# with the static keys of config/static-a.conf and config/static-b.conf. Host A pings host B
# through the tunnel; the demo shows a few packets as they cross the WAN (ESP, protocol 50,
# nothing readable), both appliances' counters, then stops both cleanly and removes everything
# it created.
#
#   scripts/demo.sh [--no-setup] [--count N]
#
# Needs root (namespaces). Runs scripts/setup.sh first (installs packages, builds) unless
# --no-setup. Exit 0 when every ping crossed the tunnel and both appliances stopped cleanly.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
count=5
setup=1
while (($#)); do
  case $1 in
    --no-setup) setup=0 ;;
    --count) count=$2; shift ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *) echo "demo: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 2; }
if ((setup)); then "$root/scripts/setup.sh" || exit 1; fi
p3d=$build/p3d/p3d
[ -x "$p3d" ] || { echo "demo: $p3d missing (run scripts/setup.sh)" >&2; exit 1; }

tag=p3demo
ns_ha=$tag-hostA ns_a=$tag-appA ns_b=$tag-appB ns_hb=$tag-hostB
work=$(mktemp -d /tmp/p3demo.XXXXXX)
pid_a= pid_b=
cleanup() {
  for p in $pid_a $pid_b; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in $pid_a $pid_b; do kill -KILL "$p" 2>/dev/null; done
  for ns in $ns_ha $ns_a $ns_b $ns_hb; do ip netns del "$ns" 2>/dev/null; done
  rm -rf /var/run/dpdk/$tag-* "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

say "network: four namespaces, three veth pairs"
cleanup 2>/dev/null; work=$(mktemp -d /tmp/p3demo.XXXXXX)
# The appliances' interfaces carry no kernel address (p3d owns them); scripts/lib/topology.sh.
. "$root/scripts/lib/topology.sh"
p3_topology $ns_ha $ns_a $ns_b $ns_hb || { echo "demo: cannot build the namespaces and veth pairs" >&2; exit 1; }
echo "host A 10.1.0.2 -- p3d A (LAN 10.1.0.1, WAN 192.0.2.1) == p3d B (WAN 192.0.2.2, LAN 10.2.0.1) -- host B 10.2.0.2"

# Started in this shell (not a subshell) through nsenter, which execs: $! is p3d itself,
# so SIGTERM reaches it and `wait` returns its exit status.
start() {  # name ns conf cpu wan lan
  local name=$1 ns=$2 conf=$3 cpu=$4 wan=$5 lan=$6
  nsenter --net="/run/netns/$ns" -- "$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag-$name" --lcores "0@$cpu" \
    --vdev "net_af_packet0,iface=$wan" --vdev "net_af_packet1,iface=$lan" \
    -- -c "$conf" -f >"$work/$name.log" 2>&1 &
}
wait_started() {  # name pid
  for _ in $(seq 150); do
    grep -q 'P3-I0001' "$work/$1.log" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "demo: p3d $1 did not start:"; cat "$work/$1.log"; return 1
}

say "starting two appliances (static keys, AES-256)"
ncpu=$(nproc)
# As installed: owner-only (the static keys are in the files), each with its own state
# directory for the keys' sequence marks (docs/configuration.md §Static keys).
for x in a b; do
  sed "s|^local = {|local = {\n  state_dir = \"$work/state-$x\";|" "$root/config/static-$x.conf" >"$work/static-$x.conf"
  chmod 600 "$work/static-$x.conf"
done
start a $ns_a "$work/static-a.conf" 0 aWan aLan; pid_a=$!
start b $ns_b "$work/static-b.conf" $((ncpu > 1 ? 1 : 0)) bWan bLan; pid_b=$!
wait_started a "$pid_a" || exit 1
wait_started b "$pid_b" || exit 1
grep -h 'P3-I0001\|P3-I0205\|P3-W0109' "$work/a.log" "$work/b.log" | sed 's/^/  /'

say "capturing the WAN between the appliances"
nsenter --net=/run/netns/$ns_a -- tcpdump -i aWan -n -c 6 -w "$work/wan.pcap" 'ip proto 50' >/dev/null 2>&1 &
cap=$!
sleep 1

say "host A pings host B through the tunnel"
in_ns $ns_ha ping -c "$count" -i 0.3 -W 2 10.2.0.2 | tee "$work/ping.txt"
received=$(grep -oE '[0-9]+ received' "$work/ping.txt" | grep -oE '^[0-9]+' || echo 0)

sleep 0.5; kill -TERM $cap 2>/dev/null; wait $cap 2>/dev/null
say "what crossed the WAN (tcpdump): outer addresses and ciphertext only"
echo "  (tcpdump reads the P3 header as ESP: its 'spi' is the P3 Flags word, its 'seq' the P3 ID)"
tcpdump -n -r "$work/wan.pcap" 2>/dev/null | head -n 6 | sed 's/^/  /'

telemetry() {  # prefix command
  /usr/bin/python3 - "/var/run/dpdk/$1/dpdk_telemetry.v2" "$2" <<'PY' 2>/dev/null
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1]); s.recv(4096); s.send(sys.argv[2].encode())
r = next(iter(json.loads(s.recv(1 << 20).decode()).values()))
keep = ("rx_lan_pkts", "rx_wan_pkts", "encrypted", "decrypted", "tx_lan_pkts", "tx_wan_pkts", "dropped")
print("  " + "  ".join(f"{k}={v}" for k, v in r.items() if any(k.startswith(p) for p in keep)))
PY
}
say "appliance counters (DPDK telemetry /p3/stats)"
for n in a b; do printf '  p3d %s:' "$n"; telemetry "$tag-$n" /p3/stats || echo " (telemetry unavailable)"; done

say "stopping both appliances (SIGTERM)"
rc_all=0
for n in a b; do
  p=$([ $n = a ] && echo "$pid_a" || echo "$pid_b")
  kill -TERM "$p"; wait "$p"; rc=$?
  echo "  p3d $n exit status $rc"
  [ "$rc" -eq 0 ] || rc_all=1
done
pid_a= pid_b=

if [ "$received" -eq "$count" ] && [ "$rc_all" -eq 0 ]; then
  say "demo passed: $received/$count pings crossed the encrypted tunnel"
  exit 0
fi
say "demo FAILED: $received/$count pings answered"
echo "---- p3d a log"; tail -n 20 "$work/a.log"; echo "---- p3d b log"; tail -n 20 "$work/b.log"
exit 1
