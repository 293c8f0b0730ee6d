#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# perf/bench.sh --suite secgw (p3d against DPDK's ipsec-secgw, perf/secgw/): on a machine
# without ipsec-secgw it says "skipped" and exits 0, writing nothing; the ESP capture it would
# feed ipsec-secgw is opened by scapy's own ESP code and matches the P3 capture frame for
# frame in size. With SECGW=PATH (an ipsec-secgw build) it also runs a smoke comparison.
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; [ -f "$out/log" ] && tail -n 30 "$out/log"; exit 1; }

BUILD=$(cd "$BUILD" && pwd) "$ROOT/perf/bench.sh" --suite secgw --out "$out/r" >"$out/log" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "--suite secgw without --secgw exited $rc"
grep -q "secgw: skipped" "$out/log" || fail "no 'skipped' message"
[ ! -e "$out/r/results.json" ] || fail "a skipped suite wrote results"
"$ROOT/perf/bench.sh" --suite secgw --secgw "$out/no-such-secgw" >"$out/log" 2>&1 || fail "a missing --secgw PATH is not a skip"
grep -q "secgw: skipped" "$out/log" || fail "no 'skipped' message for a missing PATH"

# esp_capture() raises unless scapy opens its frames and they match the P3 capture in size
/usr/bin/python3 - "$ROOT" "$out" >"$out/log" 2>&1 <<'PY' || fail "the ESP capture is not standard ESP of the P3 capture's size"
import sys
sys.path.insert(0, sys.argv[1] + "/perf/secgw")
import inputs
for size in ("64", "imix"):
    esp = inputs.frame_sizes(inputs.esp_capture(sys.argv[2], size, 24))
    assert len(esp) == 24 and esp == inputs.frame_sizes(inputs.p3_capture(sys.argv[2], size, 24)), size
PY

if [ -n "${SECGW:-}" ]; then
  BUILD=$(cd "$BUILD" && pwd) "$ROOT/perf/bench.sh" --suite secgw --secgw "$SECGW" --smoke --out "$out/r" >"$out/log" 2>&1 \
    || fail "--suite secgw --smoke exited $?"
  /usr/bin/python3 - "$out/r/results.json" <<'PY' || fail "no figure for both programs in both directions"
import json, sys
rows = json.load(open(sys.argv[1]))["suites"]["secgw"]["rows"]
assert {(r["dir"], r["size"]) for r in rows if r["p3d"]["median"] > 0 and r["secgw"]["median"] > 0} == {("out", "64"), ("in", "64")}
PY
fi
echo "ok: secgw suite skipped without ipsec-secgw; ESP input verified${SECGW:+; smoke run against $SECGW}"
