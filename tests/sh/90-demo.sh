#!/usr/bin/env bash
# The README's first command, end to end: scripts/demo.sh builds two appliances in network
# namespaces on veth pairs and host A pings host B through them. Passes when every ping is
# answered through the tunnel and both p3d stop with exit status 0 (the demo's own verdict),
# and nothing of the demo is left behind (namespaces, DPDK runtime directories).
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root (network namespaces)"; exit 77; }
ip netns add p3t90-probe 2>/dev/null || { echo "skip: cannot create network namespaces here"; exit 77; }
ip netns del p3t90-probe
ip netns list | grep -q '^p3demo-' && { echo "skip: a demo is already running (p3demo-* namespaces exist)"; exit 77; }

out=$(BUILD=${BUILD:-$ROOT/build} timeout 180 "$ROOT/scripts/demo.sh" --no-setup --count 5 2>&1)
rc=$?
fail() { echo "FAIL: $*"; echo "---- demo output"; echo "$out"; exit 1; }
[ "$rc" -eq 0 ] || fail "demo exit status $rc"
grep -q '5 packets transmitted, 5 received' <<<"$out" || fail "not every ping was answered"
grep -q 'demo passed: 5/5 pings' <<<"$out" || fail "no pass verdict"
[ "$(grep -c 'exit status 0' <<<"$out")" -eq 2 ] || fail "both appliances must stop with exit status 0"
# What crossed the WAN is P3 (protocol 50) between the two WAN addresses, never the hosts' addresses.
grep -q '192.0.2.[12] > 192.0.2.[12]: ESP' <<<"$out" || fail "no P3 packet seen on the WAN"
grep -E '^  [0-9:.]+ IP ' <<<"$out" | grep -q '10\.[12]\.0\.2' && fail "a protected address appeared on the WAN"
ip netns list | grep -q '^p3demo-' && fail "namespaces left behind"
ls -d /var/run/dpdk/p3demo-* >/dev/null 2>&1 && fail "DPDK runtime directories left behind"
echo "demo: 5/5 pings through the tunnel, both appliances stopped cleanly"
exit 0
