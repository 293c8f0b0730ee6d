#!/usr/bin/env bash
# p3 benchmark harness: the one entry point (perf/README.md says how to run and read it).
#
#   perf/bench.sh [--smoke] [--runs N] [--duration S] [--sizes 64,512] [--keys 128] [--dirs out,in]
#                 [--core N] [--profile] [--out DIR] [--suite throughput|rekey|setup|all]
#                 [--rekeys N] [--remotes N] [--no-pair] [--pair-duration S] [--pair-trial S]
#
# Builds what it needs (p3d, raw_gcm, rekey_bench, setup_bench, p3-traffic) in $BUILD (default: build/), then runs perf/bench.py
# with /usr/bin/python3 (python3-scapy, python3-cryptography; gnuplot-nox for the chart).
# Results: DIR/results.json, DIR/table.txt, DIR/throughput.png (default DIR: perf/results/DATE).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
case " $* " in *" --suite secgw "*) exec /usr/bin/python3 "$root/perf/secgw/cmp.py" --build "$build" "$@";; esac  # perf/secgw/
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" >/dev/null
fi
ninja -C "$build" p3d/p3d perf/raw_gcm perf/rekey/rekey_bench perf/setup/setup_bench perf/p3-traffic >/dev/null
exec /usr/bin/python3 "$root/perf/bench.py" --build "$build" "$@"
