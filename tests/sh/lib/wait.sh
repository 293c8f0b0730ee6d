# Sourced by shell tests (not a test itself). Needs the caller's fail MSG (prints, exits 1).
# wait_log LOG PID PATTERN SECONDS WHAT: returns once LOG has a line matching PATTERN; fails
# when process PID exits first or SECONDS pass. WHAT names what is awaited in the message.
wait_log() {
  local log=$1 pid=$2 pattern=$3 secs=$4 what=$5 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -q -- "$pattern" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || fail "exited while waiting for: $what"
    sleep 0.1
  done
  fail "no $what within $secs s"
}
