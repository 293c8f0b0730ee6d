#!/usr/bin/env bash
# p3d starts on virtual ports (no NIC, no hugepages), logs what it set up, switches core
# dumps off (RLIMIT_CORE 0 seen in /proc/PID/limits, P3-I0008), says its version, serves its
# telemetry commands (read with p3ctl stats), and stops cleanly on SIGTERM (exit 0, ports closed) — once with one
# lcore (-l 0: the control thread shares the CPU), once with two workers.
#
#   net_ring0 (port 0) = LAN      p3d      net_null0 (port 1) = WAN
P3D_LOG_LINES=1000
. "$(dirname "$0")/lib/p3d-test.sh"

cat >"$work/p3d.conf" <<'CONF'
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; };
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; };
  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; mtu = 1500; };
  idle_backoff_us = 200;
};
remotes = (
  { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24", "10.5.0.0/16" ]; },
  { id = 2; ip = 4; address = "198.51.100.7"; subnets = [ "10.3.0.0/24" ]; }
);
CONF

p3ctl=$BUILD/control/p3ctl
[ -x "$p3ctl" ] || fail "$p3ctl not built"

# p3d --version: the project's version and DPDK's, exit 0, nothing started.
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$ROOT/meson.build" | head -1)
"$p3d" --version >"$work/version" 2>&1 || fail "p3d --version: exit $?"
grep -Eqx "p3d $version \(DPDK [0-9.]+.*\)" "$work/version" || fail "p3d --version: $(cat "$work/version")"
# What an administrator reads: p3ctl stats [WHAT [ID]], key=value per line.
telemetry() { "$p3ctl" stats --prefix "$prefix" "$@"; }

run_once() {
  local conf=$1 lcores=$2 workers=$3
  prefix=p3t20-$$-$workers
  : >"$work/log"
  "$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" $lcores \
    --vdev net_ring0 --vdev net_null0 -- -c "$conf" -f >"$work/log" 2>&1 &
  pid=$!
  wait_started "p3d ($lcores)"
  # What it set up: both ports, the workers and their queues.
  grep -q 'P3-I0205: lan port 0 (net_ring0' "$work/log" || fail "LAN port set-up not logged"
  grep -q 'P3-I0205: wan port 1 (net_null0' "$work/log" || fail "WAN port set-up not logged"
  [ "$(grep -c 'P3-I0208: worker' "$work/log")" -eq "$workers" ] || fail "expected $workers worker lines"
  grep -q "P3-I0001: p3d started: role primary, $workers worker lcore(s), 2 remote(s)" "$work/log" ||
    fail "start line wrong"
  # Keys never in a core dump: dumps off for the whole process before any key, and said so.
  grep -q 'P3-I0008: core dumps off; key memory excluded from dumps' "$work/log" || fail "no P3-I0008 line"
  grep -Eq '^Max core file size +0 +0 ' "/proc/$pid/limits" ||
    fail "core dumps not off: $(grep -i core "/proc/$pid/limits")"

  # Telemetry: counters are served (the WAN is net_null, which delivers nothing: rx stays 0).
  if [ -S "/var/run/dpdk/$prefix/dpdk_telemetry.v2" ]; then
    out=$(telemetry) || fail "p3ctl stats"
    grep -qx "workers=$workers" <<<"$out" || fail "telemetry workers: $out"
    grep -qx "routes4=3" <<<"$out" || fail "telemetry routes4: $out"   # both configurations: 3
    grep -qx "sessions=2" <<<"$out" || fail "telemetry sessions: $out"
    grep -q "^polls=[1-9]" <<<"$out" || fail "telemetry: the worker does not poll: $out"
    out=$(telemetry session 2) || fail "p3ctl stats session 2"
    grep -qx "peer=198.51.100.7" <<<"$out" || fail "telemetry session 2: $out"
    grep -qx "state=down" <<<"$out" || fail "session without keys should be down: $out"
    grep -q "^subnets=10.3.0.0/24" <<<"$out" || fail "telemetry session 2 subnets: $out"
    out=$(telemetry drops) || fail "p3ctl stats drops"
    grep -qx "no_route=0" <<<"$out" || fail "telemetry drops: $out"
    # net_null delivers a stream of zeroed frames on the WAN: not for our MAC, all dropped.
    grep -q "^not_our_mac=[1-9]" <<<"$out" || fail "telemetry drops (net_null frames): $out"
    out=$(telemetry ports) || fail "p3ctl stats ports"
    grep -qx "lan.device=net_ring0" <<<"$out" || fail "p3ctl stats ports: $out"
    # An unknown remote, and no p3d under a prefix: said so, exit 1.
    telemetry session 99 2>"$work/err" && fail "p3ctl stats session 99 succeeded"
    grep -q "p3d has no session 99" "$work/err" || fail "p3ctl stats session 99: $(cat "$work/err")"
    "$p3ctl" stats --prefix "$prefix-none" 2>"$work/err"; [ $? -eq 1 ] || fail "p3ctl stats without p3d: not exit 1"
    grep -q "no p3d answers with EAL prefix '$prefix-none'" "$work/err" || fail "p3ctl stats without p3d: $(cat "$work/err")"
    "$p3ctl" stats --prefix "$prefix" --json | grep -q '^{"/p3/stats":{' || fail "p3ctl stats --json"
  else
    fail "no telemetry socket in /var/run/dpdk/$prefix"
  fi

  # SIGHUP re-reads the file: a broken one changes nothing (P3-E0707, p3d runs on); a remote
  # added to it comes up as a session with its route, nothing restarted.
  if [ "$conf" = "$work/p3d.conf" ]; then
    cp "$conf" "$work/good.conf"
    echo 'remotes = oops;' >>"$conf"
    kill -HUP "$pid"
    for _ in $(seq 50); do grep -q 'P3-E0707' "$work/log" && break; sleep 0.1; done
    grep -q 'P3-E0707: SIGHUP: configuration not reloaded' "$work/log" || fail "a broken file on SIGHUP: no P3-E0707"
    kill -0 "$pid" 2>/dev/null || fail "p3d died on SIGHUP"
    sed 's|subnets = \[ "10.3.0.0/24" \]; }|&,\n  { id = 3; ip = 4; address = "198.51.100.9"; subnets = [ "10.4.0.0/24" ]; }|' \
      "$work/good.conf" >"$conf"
    kill -HUP "$pid"
    for _ in $(seq 50); do telemetry | grep -qx "sessions=3" && break; sleep 0.1; done
    out=$(telemetry)
    grep -qx "sessions=3" <<<"$out" || fail "SIGHUP did not add remote 3: $out"
    grep -qx "routes4=4" <<<"$out" || fail "SIGHUP: remote 3's route missing: $out"
    grep -q 'P3-I0709: remote 3 added' "$work/log" || fail "SIGHUP: remote 3 added not logged"
    kill -0 "$pid" 2>/dev/null || fail "p3d died on the second SIGHUP"
    cp "$work/good.conf" "$conf"
  fi

  kill -TERM "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "p3d ($lcores) still running 5 s after SIGTERM"
  wait "$pid"
  rc=$?
  pid=
  [ "$rc" -eq 0 ] || fail "p3d ($lcores) exit status $rc after SIGTERM, expected 0"
  grep -q 'P3-I0209: port 0 (net_ring0) stopped and closed' "$work/log" || fail "LAN port not closed"
  grep -q 'P3-I0209: port 1 (net_null0) stopped and closed' "$work/log" || fail "WAN port not closed"
  grep -q 'P3-I0002: p3d stopped on signal 15' "$work/log" || fail "no stop line"
  rm -rf "/var/run/dpdk/$prefix"
  echo "ok: p3d $lcores: started with $workers worker(s), telemetry served, SIGTERM -> exit 0"
}

# The example configuration (LAN port 0, WAN port 1), then ours with two workers on one CPU.
run_once "$ROOT/config/primary.conf" "-l 0" 1
run_once "$work/p3d.conf" "--lcores 0@0,1@0" 2
exit 0
