#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# The swarm suite, smoke-sized (perf/bench.sh --suite swarm --smoke): one real p3d primary and
# 20 secondaries played by perf/swarm/p3-swarm over a veth, rekey_wait = 5 s, a 7 s window.
# What a user reads in results.json must say: every secondary came up (p3d logged each control
# channel up), each completed at least one rekey the primary started (both ends count it), no
# session was lost, no heartbeat went unanswered, and every data packet the secondaries sent
# came out of p3d's LAN port. No figure is asserted.
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for t in ip nsenter ethtool taskset; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
BUILD=$(cd "$BUILD" && pwd) "$ROOT/perf/bench.sh" --smoke --suite swarm --out "$out" >"$out/log" 2>&1
rc=$?
fail() { echo "FAIL: $*"; echo "---- bench output (last 30 lines)"; tail -n 30 "$out/log"; exit 1; }
[ -s "$out/results.json" ] || fail "no results.json (exit $rc)"
summary=$(/usr/bin/python3 - "$out/results.json" 2>&1 <<'PY'
import json, sys
sw = json.load(open(sys.argv[1]))["suites"]["swarm"]
assert sw["samples"], "no sample: %s" % sw
s = sw["samples"][0]
assert "error" not in s, s["error"]
n = s["n"]
assert n == 20 and s["up"] == n, "up %s of %d" % (s.get("up"), n)
assert s["primary_log"]["channels_up"] == n, "p3d logged %d channels up" % s["primary_log"]["channels_up"]
assert s["rekeys"]["sessions_without"] == 0, "%d sessions had no rekey" % s["rekeys"]["sessions_without"]
assert s["primary_log"]["rekeys_done"] >= n, "p3d completed %d rekeys" % s["primary_log"]["rekeys_done"]
assert s["sessions"]["lost"] == 0 and s["sessions"]["not_up_at_end"] == 0, s["sessions"]
assert s["primary_log"]["sessions_lost"] == 0, s["primary_log"]
assert s["heartbeats"]["sent"] > 0 and s["heartbeats"]["unanswered"] == 0, s["heartbeats"]
p = s["packets"]
assert p["sent"] >= n and p["delivered_lan"] == p["sent"], p
assert s["tool"]["rx_auth_failed"] == 0 and s["tool"]["rx_replayed"] == 0, s["tool"]
assert sw["passed"] and s["ok"], "the suite says failed"
print("%d up in %.2f s, %d rekeys, %d heartbeats, %d/%d packets delivered" % (
    n, s["setup"]["wall_s"], s["rekeys"]["since_up"], s["heartbeats"]["sent"], p["delivered_lan"], p["sent"]))
PY
) || fail "the swarm did not come up, rekey and deliver as it must: ${summary##*$'\n'}"
[ $rc -eq 0 ] || fail "perf/bench.sh --smoke --suite swarm exited $rc"
echo "PASS: swarm smoke: $summary"
