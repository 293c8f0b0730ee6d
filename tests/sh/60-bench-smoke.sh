#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# The benchmark harness, smoke-sized (perf/bench.sh --smoke --suite all): every suite runs and
# writes what an operator reads — the throughput table with a figure for each direction and
# size, the chart, the rekey suite with nothing lost and its two-p3d part (a rate found, rekeys
# at it, the blocked time reported), the setup suite with every secondary up — into one
# results.json. It checks the harness, not the numbers (no figure is asserted).
# First the zero-copy source (perf/src/p3src.c, loaded into p3d with EAL -d): p3d fed by it
# encrypts and decrypts with 1 and 2 workers, one session and four (inbound: two lanes each),
# every packet received is sealed or opened, and the table gives a scaling figure.
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; echo "---- bench output (last 40 lines)"; tail -n 40 "$out/log"; exit 1; }
mkdir -p "$out/zc"
BUILD=$(cd "$BUILD" && pwd) "$ROOT/perf/bench.sh" --smoke --suite throughput --io zc --workers 1,2 --sessions 4 \
  --sizes 64 --no-imix --out "$out/zc" >"$out/log" 2>&1 || fail "perf/bench.sh --io zc --workers 1,2 --sessions 4 exited $?"
/usr/bin/python3 - "$out/zc/results.json" <<'PY' || fail "the zero-copy source did not feed p3d as it should"
import json, sys
t = json.load(open(sys.argv[1]))["suites"]["throughput"]
seen = set()
for k, samples in t["samples"].items():
    for m in samples:
        seen.add((m["dir"], m["workers"], m["sessions"]))
        assert m["io"] == "zc", k
        assert m["received"] > 0 and m["packets"] > 0, "%s: nothing measured: %s" % (k, m)
        pw = m["per_worker"]
        assert pw is not None and len(pw) == m["workers"], "%s: per-worker counts %s" % (k, pw)
        # Every worker has traffic: four sessions' outer addresses hash to both queues (inbound
        # with one session would not: its lanes arrive on one queue, and spread_lanes is off).
        if not (m["dir"] == "in" and m["sessions"] == 1):
            assert all(x > 0 for x in pw), "%s: a worker got nothing: %s" % (k, pw)
        # Nothing dropped, but where a handed-over lane may find its ring full (inbound, 2 workers).
        if m["dir"] == "out" or m["workers"] == 1:
            assert m["dropped"] == 0, "%s: %d dropped %s" % (k, m["dropped"], m["top_drops"])
want = {(d, w, s) for d in ("out", "in") for w in (1, 2) for s in (4,)}
assert seen == want, "points measured %s, wanted %s" % (sorted(seen), sorted(want))
two = [r for r in t["rows"] if r["workers"] == 2]
assert two and all(r.get("scaling", 0) > 0 for r in two), "no scaling figure: %s" % two
print("zc: %d points, scaling %s" % (len(seen), ", ".join("%s S%d %.2f" % (r["dir"], r["sessions"], r["scaling"]) for r in two)))
PY
grep -q "^zc   out  AES-128    64  2     4 .*| [0-9.]* \(ok\|MISS\)$" "$out/zc/table.txt" || fail "table.txt has no scaling for 2 workers"
if command -v gnuplot >/dev/null; then
  [ -s "$out/zc/scaling.png" ] || fail "gnuplot is installed but no scaling.png"
fi

BUILD=$(cd "$BUILD" && pwd) "$ROOT/perf/bench.sh" --smoke --suite all --out "$out" >"$out/log" 2>&1
rc=$?
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
        assert m["io"] == "zc", "%s: the throughput suite is fed by net_p3src by default" % k
        assert m["received"] > 0 and m["packets"] > 0, "%s: nothing measured" % k
        assert m["dropped"] == 0, "%s: %d dropped %s" % (k, m["dropped"], m["top_drops"])
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
grep -q "^zc   out  AES-128    64  1     1 | " "$out/table.txt" || fail "table.txt has no outbound 64 B row"
echo "PASS: bench smoke: $(tail -n 1 "$out/log")"
