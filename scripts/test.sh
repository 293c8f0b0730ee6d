#!/usr/bin/env bash
# Runs every test of p3 after the set-up (packages + build):
#   1. the Catch2 suites (build/tests/**/test_*), every test case counted;
#   2. the shell tests (tests/sh/NN-name.sh: exit 0 pass, 77 skip, else fail), which start
#      p3d, p3ctl and helpers for real;
#   3. a smoke run of every libFuzzer target (clang build in build-fuzz/) on its seed corpus.
# The last line is "N passed, N failed" (skips are counted on the line before); the exit status is non-zero on any failure.
#
# Environment: FUZZ_SECONDS (per target, default 2: a smoke run in the suite; 0 skips fuzzing), P3_TEST_FILTER (a
# substring: run only the suites and scripts whose name contains it), P3_TEST_JOBS (suites and scripts run at once,
# default 2; 1 runs them one by one).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
fuzz_build=$root/build-fuzz
fuzz_seconds=${FUZZ_SECONDS:-2}
filter=${P3_TEST_FILTER:-}

passed=0 failed=0 skipped=0
failures=()

if ! "$root/scripts/setup.sh"; then
  echo "set-up failed"
  echo "0 passed, 1 failed"
  exit 1
fi

cleanup_dpdk() { rm -rf /var/run/dpdk/p3* 2>/dev/null || true; }
cleanup_dpdk

selected() { [ -z "$filter" ] || [[ "$1" == *"$filter"* ]]; }

# The fuzz targets are a clang build with sanitizers, made when their phase comes: built
# beside the other tests it took the CPU from them (autogroups share the CPU per session,
# whatever the nice value), and end-to-end tests ran several times longer.
fuzz_wanted=
if [ "$fuzz_seconds" != 0 ] && { [ -z "$filter" ] || [[ "fuzz" == *"$filter"* ]] || [[ "$filter" == fuzz* ]]; }; then
  fuzz_wanted=1
fi
# Through ccache when it is there, as build/ is (meson puts it before gcc by itself, but not
# before a compiler named in CXX): a clean clone then recompiles only the sources that changed.
# The objects carry line tables relative to the build directory (meson.build), so the
# directory need not be hashed: a clone in another folder finds them too.
build_fuzz_targets() {  # lists the targets in $fuzz_list and builds them; the log in $fuzz_log
  local cxx=clang++
  if command -v ccache >/dev/null; then cxx="ccache clang++"; export CCACHE_NOHASHDIR=true; fi
  if [ ! -f "$fuzz_build/build.ninja" ]; then
    CXX=$cxx meson setup "$fuzz_build" "$root" -Dfuzz=true -Db_sanitize=address,undefined \
      -Db_lundef=false --buildtype=debugoptimized >"$fuzz_log" 2>&1 || return 1
  fi
  # Regenerate first: a build directory configured before a target was added would not list it.
  ninja -C "$fuzz_build" build.ninja >>"$fuzz_log" 2>&1
  meson introspect --targets "$fuzz_build" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys,os
for t in json.load(sys.stdin):
    if t["type"]=="executable" and t["name"].startswith("fuzz_"):
        print(os.path.relpath(t["filename"][0], sys.argv[1]))' "$fuzz_build" >"$fuzz_list"
  local targets
  mapfile -t targets <"$fuzz_list"
  ((${#targets[@]} == 0)) || ninja -C "$fuzz_build" -j2 "${targets[@]}" >>"$fuzz_log" 2>&1
}

# Seconds each suite and script took in the last CI run: what runs two at a time starts the
# longest first, so that both slots end together. Only the order depends on it.
jobs_max=${P3_TEST_JOBS:-2}
declare -A expected=()
while read -r name secs _; do
  [[ -z "$name" || "$name" == \#* ]] || expected[$name]=$secs
done <"$root/scripts/test-durations.txt"
longest_first() {  # names...: prints them longest first; one not listed counts 60 s (new: early)
  local n
  for n in "$@"; do echo "${expected[$n]:-60} $n"; done | sort -k1,1nr -k2,2 | cut -d' ' -f2
}

# --- 1. Catch2 suites ------------------------------------------------------------------
# P3_TEST_JOBS of them at once too (each names its DPDK file prefix after its PID); reported
# in name order once all have run.
echo "== unit and in-process suites  [at ${SECONDS}s: set-up and build done]"
unit_out=$(mktemp -d)
run_suite() {  # name: runs $build/name, leaves its output and "rc seconds" in $unit_out
  local start=$SECONDS id=${1//\//_}
  (cd "$root" && timeout 600 "$build/$1" --order decl) >"$unit_out/$id.log" 2>&1
  echo "$? $((SECONDS - start))" >"$unit_out/$id.rc"
}
suites=()
while IFS= read -r bin; do
  name=${bin#"$build"/}
  selected "$name" && suites+=("$name")
done < <(find "$build/tests" -type f -name 'test_*' -perm -u+x ! -name '*.p' 2>/dev/null | sort)
if ((${#suites[@]})); then
  mapfile -t order < <(longest_first "${suites[@]}")
  for name in "${order[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n; done
    run_suite "$name" &
  done
  wait
fi
for name in "${suites[@]}"; do
  log=$unit_out/${name//\//_}.log
  read -r rc secs <"$unit_out/${name//\//_}.rc"
  total=0 bad=0
  if line=$(grep -E '^All tests passed \(' "$log" | tail -1) && [ -n "$line" ]; then
    total=$(sed -E 's/.* in ([0-9]+) test case.*/\1/' <<<"$line")
  elif line=$(grep -E '^test cases: ' "$log" | tail -1) && [ -n "$line" ]; then
    total=$(sed -E 's/^test cases: *([0-9]+).*/\1/' <<<"$line")
    bad=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  fi
  # A crash, a timeout or an exit status the summary does not explain is one more failure.
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; total=$((total + 1)); fi
  ok=$((total - bad))
  passed=$((passed + ok)); failed=$((failed + bad))
  printf '%-40s %4d passed %4d failed  (%ds)\n' "$name" "$ok" "$bad" "$secs"
  if [ "$bad" -ne 0 ]; then
    failures+=("$name")
    echo "---- $name output (last 150 lines, rc=$rc)"
    tail -n 150 "$log"
    echo "----"
  fi
done
rm -rf "$unit_out"
cleanup_dpdk

# --- 2. shell tests --------------------------------------------------------------------
# Most of them wait on timers (rekeys, heartbeats, recovery) far more than they compute, so
# P3_TEST_JOBS of them (default 2) run at once. A test that measures or loads the machine
# (a flood, a benchmark, a stream that must lose nothing) says "# p3-test: alone" in its
# header and runs with nothing beside it. Every test names its namespaces, links and DPDK
# file prefixes after its own PID, so running side by side is safe; the DPDK runtime
# directories are swept whenever nothing runs.
# Order: the tests that run alone first, one after the other, then the others longest first,
# so that the slots end together instead of one waiting on a long test that started late, or
# on the next test that must run alone.
echo "== end-to-end and tool tests  [at ${SECONDS}s]"
results=$(mktemp -d)
declare -A running=()
run_script() {  # name path: runs it, leaves "rc seconds" in $results/name.rc
  local start=$SECONDS
  (cd "$root" && BUILD=$build ROOT=$root timeout 600 bash "$2") >"$results/$1.log" 2>&1
  echo "$? $((SECONDS - start))" >"$results/$1.rc"
}
report() {
  local name=$1 rc secs
  read -r rc secs <"$results/$name.rc"
  case $rc in
    0) passed=$((passed + 1)); printf '%-40s pass  (%ds)\n' "$name" "$secs" ;;
    77) skipped=$((skipped + 1)); printf '%-40s skip  (%s)\n' "$name" "$(tail -n 1 "$results/$name.log" | sed 's/^skip: *//I')" ;;
    *) failed=$((failed + 1)); failures+=("$name")
       printf '%-40s FAIL (rc=%d, %ds)\n' "$name" "$rc" "$secs"
       echo "---- $name output (last 80 lines)"; tail -n 80 "$results/$name.log"; echo "----" ;;
  esac
}
reap_one() {  # waits for one of the running tests (any other child that ends is not ours)
  local pid
  while :; do
    pid=
    wait -n -p pid || true
    [ -n "$pid" ] || { echo "test runner: lost track of ${running[*]}" >&2; failed=$((failed + ${#running[@]})); running=(); return; }
    [ -n "${running[$pid]+set}" ] && break
  done
  report "${running[$pid]}"
  unset "running[$pid]"
}
drain() { while ((${#running[@]})); do reap_one; done; cleanup_dpdk; }
alone=() shared=()
for t in "$root"/tests/sh/*.sh; do
  [ -e "$t" ] || continue
  name=$(basename "$t" .sh)
  selected "$name" || continue
  if ((jobs_max <= 1)) || grep -q '^# p3-test: alone' "$t"; then
    alone+=("$name")
  else
    shared+=("$name")
  fi
done
for name in "${alone[@]}"; do
  run_script "$name" "$root/tests/sh/$name.sh"; report "$name"; cleanup_dpdk
done
# (a command substitution, not a process substitution: wait -n below would reap that too)
if ((${#shared[@]})); then mapfile -t shared <<<"$(longest_first "${shared[@]}")"; fi
for name in "${shared[@]}"; do
  while ((${#running[@]} >= jobs_max)); do reap_one; done
  run_script "$name" "$root/tests/sh/$name.sh" &
  running[$!]=$name
done
drain
rm -rf "$results"

# --- 3. fuzz smoke ---------------------------------------------------------------------
if [ -n "$fuzz_wanted" ]; then
  echo "== fuzz targets (${fuzz_seconds}s each)  [at ${SECONDS}s]"
  fuzz_list=$(mktemp) fuzz_log=$(mktemp)
  build_fuzz_targets
  fuzz_rc=$?
  mapfile -t targets <"$fuzz_list"
  if [ "$fuzz_rc" -ne 0 ]; then
    failed=$((failed + 1)); failures+=("fuzz build")
    echo "fuzz build FAIL"; tail -n 60 "$fuzz_log"
  else
    # Each target is one process on one core: two run at once.
    fuzz_one() {  # rel: runs it on its seeds, leaves "rc runs" in $fuzz_out/NAME.rc
      local rel=$1 name work log seeds rc runs
      name=$(basename "$rel")
      seeds=$(find "$root/tests" -type d -path "*/corpus/$name" | head -n 1)
      work=$(mktemp -d)
      log=$fuzz_out/$name.log
      (cd "$work" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0 timeout $((fuzz_seconds + 120)) \
        "$fuzz_build/$rel" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$work" ${seeds:+"$seeds"}) >"$log" 2>&1
      rc=$?
      runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
      rm -rf "$work"
      echo "$rc $runs" >"$fuzz_out/$name.rc"
    }
    fuzz_out=$(mktemp -d)
    for rel in "${targets[@]}"; do  # the next one starts as soon as either slot is free
      while (($(jobs -rp | wc -l) >= 2)); do wait -n; done
      fuzz_one "$rel" &
    done
    wait
    for rel in "${targets[@]}"; do
      name=$(basename "$rel")
      read -r rc runs <"$fuzz_out/$name.rc"
      if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1)); printf '%-40s pass  (%s inputs)\n' "$name" "$runs"
      else
        failed=$((failed + 1)); failures+=("$name")
        printf '%-40s FAIL (rc=%d)\n' "$name" "$rc"; tail -n 60 "$fuzz_out/$name.log"
      fi
    done
    rm -rf "$fuzz_out"
  fi
  rm -f "$fuzz_list" "$fuzz_log"
  cleanup_dpdk
fi

echo "(all tests ran in ${SECONDS}s)"
if ((${#failures[@]})); then echo "failed: ${failures[*]}"; fi
if [ "$skipped" -gt 0 ]; then echo "$skipped skipped (reasons above)"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
