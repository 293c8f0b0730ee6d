#!/usr/bin/env bash
# The benchmark harness, smoke-sized (perf/bench.sh --smoke --suite all): every suite runs and
# writes what an operator reads — the throughput table with a figure for each direction and
# size, the chart, the rekey suite with nothing lost and its two-p3d part (a rate found, rekeys
# at it, the blocked time reported), the setup suite with every secondary up — into one
# results.json. It checks the harness, not the numbers (no figure is asserted).
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
BUILD=$(cd "$BUILD" && pwd) "$ROOT/perf/bench.sh" --smoke --suite all --out "$out" >"$out/log" 2>&1
rc=$?
fail() { echo "FAIL: $*"; echo "---- bench output (last 40 lines)"; tail -n 40 "$out/log"; exit 1; }
[ $rc -eq 0 ] || fail "perf/bench.sh --smoke --suite all exited $rc"
[ -s "$out/results.json" ] || fail "no results.json"
[ -s "$out/table.txt" ] || fail "no table.txt"
if command -v gnuplot >/dev/null; then
  [ -s "$out/throughput.png" ] || fail "gnuplot is installed but no throughput.png"
fi
/usr/bin/python3 - "$out/results.json" <<'PY' || fail "results.json is not what the harness promises"
import json, sys
r = json.load(open(sys.argv[1]))["suites"]
t = r["throughput"]
points = {(x["dir"], x["size"]) for x in t["rows"] if x.get("mpps", {}).get("median", 0) > 0}
want = {(d, s) for d in ("out", "in") for s in ("64", "1420", "imix")}
missing = want - points
assert not missing, "no throughput figure for %s" % sorted(missing)
for k, samples in t["samples"].items():
    for m in samples:
        assert m["received"] > 0 and m["packets"] > 0, "%s: nothing measured" % k
        assert m["raw_mpps"] > 0, "%s: no raw bound" % k
rk = r["rekey"]
assert rk["passed"] and rk["samples"], "rekey suite failed"
s = rk["samples"][0]
assert s["rekeys"] > 0 and s["packets_received"] > 0, s
assert s["lost"] == s["auth_failed"] == s["replayed"] == 0, s
# The two-p3d part: measured where namespaces can be made (root), said skipped elsewhere.
pr = rk["pair"]
assert "skipped" in pr or (pr["rate_no_loss"] > 0 and pr["sent"] > 0 and pr["rekeys"] > 0
                           and "blocked_time_s" in pr), pr
st = r["setup"]
assert st["passed"] and st["samples"], "setup suite failed"
for s in st["samples"]:
    assert s["failures"] == 0 and s["setups_per_s"] > 0, s
print("results.json: %d throughput points, %d rekeys, %d setup samples" % (len(points), rk["samples"][0]["rekeys"], len(st["samples"])))
PY
grep -q "^out  AES-128    64" "$out/table.txt" || fail "table.txt has no outbound 64 B row"
echo "PASS: bench smoke: $(tail -n 1 "$out/log")"
