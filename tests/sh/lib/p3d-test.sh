# Sourced by the shell tests that run one p3d (not a test itself: scripts/test.sh runs only
# tests/sh/*.sh). Sets BUILD, ROOT, p3d (the binary, which must be built), work (a temporary
# directory, p3d's log goes to $work/log), and an EXIT trap that kills p3d ($pid) if it is
# still running and removes its DPDK runtime directory ($prefix) and $work.
# fail MSG: prints MSG and the end of p3d's log (P3D_LOG_LINES, default 30), exits 1.
set -u
BUILD=${BUILD:-build}
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
p3d=$BUILD/p3d/p3d
[ -x "$p3d" ] || { echo "FAIL: $p3d not built"; exit 1; }

work=$(mktemp -d)
pid=
prefix=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  [ -n "$prefix" ] && rm -rf "/var/run/dpdk/$prefix"
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "---- p3d log (last ${P3D_LOG_LINES:-30} lines)"
  tail -n "${P3D_LOG_LINES:-30}" "$work/log" 2>/dev/null
  exit 1
}
# wait_started [WHAT]: waits up to 10 s for p3d ($pid, logging to $work/log) to say it started
# (P3-I0001); fails if it exits first or never says so. WHAT names this p3d in the message.
. "$(dirname "${BASH_SOURCE[0]}")/wait.sh"
wait_started() {
  wait_log "$work/log" "$pid" 'P3-I0001' 10 "${1:-p3d} to start (P3-I0001)"
}
