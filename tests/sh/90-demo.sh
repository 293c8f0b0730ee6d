#!/usr/bin/env bash
# The README's first command, end to end: scripts/demo.sh --no-setup (one primary, two minimal
# secondaries from config/demo/, ping, iperf3 with forced rekeys, a WAN observer; the topology
# is drawn at the top of scripts/demo.sh). Passes when the demo exits 0, its summary is there
# with a nonzero throughput to both hosts and at least two rekeys of each session, the observer
# saw one P3 ID per direction and nothing inner in clear, and nothing of it is left behind: no
# namespace, no p3d, no DPDK runtime directory, no temporary directory.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
export BUILD=${BUILD:-$ROOT/build}
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip nsenter ethtool tcpdump iperf3 ss; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
probe=p3t90-probe-$$
ip netns add "$probe" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
ip netns del "$probe"

tmp=$(mktemp -d /tmp/p3t90.XXXXXX)
out=$tmp/demo.txt
trap 'rm -rf "$tmp"' EXIT
# In the background, so that its pid, the $$ of the demo's shell, names what it creates
# (namespaces p3demo-PID-*, DPDK prefixes p3demo-PID-*); a watchdog stops it after 150 s.
mkdir "$tmp/tmp"
TMPDIR=$tmp/tmp "$ROOT/scripts/demo.sh" --no-setup >"$out" 2>&1 &
demo=$!
( sleep 150; kill -TERM "$demo" 2>/dev/null ) & dog=$!
wait "$demo"; rc=$?
kill "$dog" 2>/dev/null; wait "$dog" 2>/dev/null
tag=p3demo-$demo
fail() { echo "FAIL: $*"; echo "---- demo output"; cat "$out"; exit 1; }

[ "$rc" -eq 0 ] || fail "demo exit status $rc"
grep -q '^== demo passed in [0-9]* s' "$out" || fail "no pass verdict"
for h in B C; do
  grep -Eq "^  host A -> host $h \(10\.[23]\.0\.2\): 3 packets transmitted, 3 received" "$out" ||
    fail "the pings to host $h are not all answered"
done
tp=$(grep -E '^  throughput ' "$out") || fail "no throughput line in the summary"
grep -Eq 'host B [1-9][0-9]* Mbit/s, host C [1-9][0-9]* Mbit/s' <<<"$tp" || fail "throughput not nonzero to both hosts: $tp"
grep -Eq '^  packets +remote 2: [1-9][0-9]* in, [1-9][0-9]* out; remote 3: [1-9][0-9]* in, [1-9][0-9]* out' "$out" ||
  fail "no packet counts for both sessions in the summary"
rk=$(grep -E '^  rekeys ' "$out") || fail "no rekeys line in the summary"
grep -Eq 'remote 2: ([2-9]|[1-9][0-9]+), remote 3: ([2-9]|[1-9][0-9]+); 0 failed' <<<"$rk" ||
  fail "not two rekeys or more of each session, none failed: $rk"
grep -Eq '^  drops +none by rekeys or keys' "$out" || fail "drops by rekeys or keys, or no drops line"
grep -Eq '^  observer +P3 IDs per direction A->B=1 A->C=1 B->A=1 C->A=1 ' "$out" ||
  fail "the observer did not see exactly one P3 ID per direction"
grep -Eq '^  the WAN +nowhere ' "$out" || fail "something inner was found in clear on the WAN"
[ "$(grep -c '^  [A-C]->[A-C] .* under 1 P3 ID .*only up$' "$out")" -eq 4 ] ||
  fail "not four directions each under one P3 ID with sequences only up"

left=$(ip netns list | grep -c "^$tag-")
[ "$left" -eq 0 ] || fail "$left namespaces $tag-* left behind"
pgrep -f -- "--file-prefix $tag-" >/dev/null && fail "a p3d of the demo is still running"
ls -d /var/run/dpdk/"$tag"-* >/dev/null 2>&1 && fail "DPDK runtime directories /var/run/dpdk/$tag-* left behind"
[ -z "$(ls -A "$tmp/tmp")" ] || fail "the demo left files in its TMPDIR: $(ls -A "$tmp/tmp")"
echo "PASS: $(grep -o 'demo passed in [0-9]* s' "$out"); $tp; $rk; nothing left behind"
exit 0
