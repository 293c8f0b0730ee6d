#!/usr/bin/env bash
# Appliances that die, stop and come back, as their LAN hosts and their administrator see it:
# a secondary killed (lost within heartbeat_fail, its LAN answered with RST / unreachable, the
# other secondary untouched) and restarted (up again at its own first attempt); the back-off of
# a secondary the primary refuses (5 s, then 10 s); the primary killed and restarted (both
# secondaries come back by themselves after heartbeat_fail + 5 s); the primary stopped with
# SIGTERM (it says goodbye: both secondaries know within a second, it exits 0) and restarted
# (both up again within seconds, through their first attempt's retransmissions).
#
#   host A ns        primary ns                 WAN ns                 secondary B ns          host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [wA]                  [bWan] p3d b [bLan] -veth- 10.2.0.2
#     hA             10.1.0.1   192.0.2.1          br0 -[wB]-veth-    192.0.2.2   10.2.0.1       hB
#                        |                             -[wC]-veth-   [cWan] p3d c [cLan] -veth- 10.3.0.2
#                        |                                            192.0.2.3   10.3.0.1       hC
#                      p3ctl -s $work/a.sock (b.sock, c.sock)        secondary C ns          host C ns
#
# Remotes 2 (B, 10.2.0.0/24) and 3 (C, 10.3.0.0/24) on the primary; minimal secondary files
# (the primary's address and key). Timers: heartbeat_time 1, heartbeat_fail 5. Each step prints
# what it measured (seconds, from this script's clock).
# Needs root and network namespaces with veth and a bridge (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-trio.sh" p3ctl
log_lines=40
trio_topology

psk psk-b; psk psk-c
admin() { echo "socket = \"$work/$1.sock\"; audit = \"$work/audit-$1.jsonl\";"; }
a_local="heartbeat_time = 1; heartbeat_fail = 5; admin = { $(admin a) };"
trio_primary_conf "$(trio_remote 2 192.0.2.2 psk-b 10.2.0.0/24),
$(trio_remote 3 192.0.2.3 psk-c 10.3.0.0/24)" "$a_local" "" >"$work/a.conf"
trio_secondary_conf minimal 192.0.2.2 10.2.0.1 "$(admin b)" psk-b >"$work/b.conf"
trio_secondary_conf minimal 192.0.2.3 10.3.0.1 "$(admin c)" psk-c >"$work/c.conf"

ctl() { local n=$1; shift; "$p3ctl" -s "$work/$n.sock" "$@"; }
# state ID: the primary's state of remote ID ("" when p3ctl gets no answer).
state() {
  ctl a --json status "$1" 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["sessions"][0]["state"])' 2>/dev/null
}
up() { [ "$(state "$1")" = up ]; }
both_up() { up 2 && up 3; }
now() { date +%s.%N; }
since() { /usr/bin/python3 -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }
le() { /usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$1" "$2"; }
# until_ok SECS WHAT CMD...: polls CMD every 0.1 s; fails after SECS.
until_ok() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do "$@" && return 0; sleep 0.1; done
  fail "$what: not within $secs s"
}
# count NAME PATTERN: lines of p3d NAME's log matching PATTERN.
count() { grep -c -- "$2" "$work/$1.log"; }
more_than() { [ "$(count "$1" "$2")" -gt "$3" ]; }   # name pattern n
reaches() { in_ns "$ns_ha" ping -n -c 1 -W 1 "$1" >/dev/null 2>&1; }
ping_ok() {  # address what: three pings, all answered
  in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 1 "$1" >"$work/ping.txt" 2>&1
  [ "$(ping_replies "$work/ping.txt")" -eq 3 ] || { cat "$work/ping.txt"; fail "$2: pings to $1 not all answered"; }
}
ip netns exec "$ns_hb" /usr/bin/python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.2.0.2", 7000)); s.listen(16)
while True: s.accept()[0].close()' & pid_listen=$!
tcp_probe() {  # what host A's connect to host B port 7000 gets
  in_ns "$ns_ha" /usr/bin/python3 -c '
import errno, socket
s = socket.socket(); s.settimeout(3)
try:
    s.connect(("10.2.0.2", 7000)); print("connected")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))'
}

t=$(now)
trio_start a b c
until_ok 20 "remotes 2 and 3 up at the primary" both_up
in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 1 10.2.0.2 >/dev/null 2>&1   # every hop learns its neighbours
in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 1 10.3.0.2 >/dev/null 2>&1
ping_ok 10.2.0.2 "start"; ping_ok 10.3.0.2 "start"
[ "$(tcp_probe)" = connected ] || fail "TCP from host A to host B before anything failed"
echo "step 0: a, b, c started, 2 and 3 up after $(since "$t") s, host A reaches hosts B and C"

# ---- 1. B killed: lost at the primary within heartbeat_fail (P3-E0601), host B refused with
# RST / unreachable, host C still reachable; B restarted: up at its first attempt.
e0601=$(count a 'P3-E0601: remote 2')
t=$(now)
kill -KILL "$pid_b"; wait "$pid_b" 2>/dev/null; pid_b=
until_ok 9 "remote 2 not up at the primary after B was killed" eval '! up 2'
lost_b=$(since "$t")
le "$lost_b" 7 || fail "remote 2 lost after $lost_b s, want within heartbeat_fail + 2 = 7 s"
until_ok 2 "P3-E0601 for remote 2" more_than a 'P3-E0601: remote 2' "$e0601"
probe=$(tcp_probe)
[ "$probe" = ECONNREFUSED ] || fail "TCP from host A to host B with B lost: $probe, want ECONNREFUSED (RST)"
in_ns "$ns_ha" ping -n -c 1 -W 1 10.2.0.2 >"$work/ping-down.txt" 2>&1
grep -q 'Unreachable' "$work/ping-down.txt" || { cat "$work/ping-down.txt"; fail "no ICMP unreachable for host B"; }
up 3 || fail "remote 3 not up while B is lost"
ping_ok 10.3.0.2 "B lost"
echo "step 1: B killed: remote 2 lost after $lost_b s (P3-E0601), TCP to host B refused (RST), ping unreachable, host C reachable"
t=$(now)
nb=$(wc -l <"$work/b.log")
trio_start b
until_ok 15 "remote 2 up again after B restarted" up 2
back_b=$(since "$t")
ping_ok 10.2.0.2 "B restarted"
[ "$(tcp_probe)" = connected ] || fail "TCP from host A to host B after B restarted"
# Its own first attempt: the restarted B logged no failed attempt.
tail -n +$((nb + 1)) "$work/b.log" | grep -E 'P3-W0605|P3-[EW]04' &&
  fail "restarted B needed more than its first attempt (above)"
echo "step 1: B restarted: remote 2 up $back_b s after its start (its first attempt), host B reachable"

# ---- 2. The back-off: the primary refuses B (administrator shutdown of remote 2). After the
# goodbye B tries at once, then waits 5 s, then 10 s, each refused (P3-I0603 says the wait).
n0603=$(count b 'P3-I0603')
ctl a shutdown 2 >/dev/null || fail "p3ctl shutdown 2"
declare -a at
for want in now "in 5 s" "in 10 s"; do
  until_ok 15 "B: next setup attempt $want" more_than b 'P3-I0603' "$n0603"
  n0603=$((n0603 + 1))
  got=$(grep 'P3-I0603' "$work/b.log" | sed -n "${n0603}p")
  [[ $got == *"next setup attempt $want" ]] || fail "B's back-off: '$got', want 'next setup attempt $want'"
  at+=("$(now)")
done
i1=$(/usr/bin/python3 -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "${at[1]}" "${at[2]}")
/usr/bin/python3 -c 'import sys; sys.exit(0 if 4.5 <= float(sys.argv[1]) <= 6.5 else 1)' "$i1" ||
  fail "B's attempt after 'in 5 s' failed $i1 s later, want about 5 s"
t=$(now)
ctl a start 2 >/dev/null || fail "p3ctl start 2"
until_ok 13 "remote 2 up at B's next attempt (10 s)" up 2
echo "step 2: refused by the primary, B retried at once, then 5 s ($i1 s measured), then 10 s; started: up $(since "$t") s later"

# ---- 3. The primary killed: the secondaries lose it by heartbeat and come back by themselves
# once it runs again (lost at heartbeat_fail, the first attempt 5 s later).
n0603b=$(count b 'P3-I0603'); n0603c=$(count c 'P3-I0603')
t=$(now)
kill -KILL "$pid_a"; wait "$pid_a" 2>/dev/null; pid_a=
trio_start a
until_ok 20 "remotes 2 and 3 up after the primary was killed and restarted" both_up
back_kill=$(since "$t")
for n in b c; do
  v=n0603$n
  grep 'P3-I0603' "$work/$n.log" | tail -n +$((${!v} + 1)) | head -1 | grep -q 'next setup attempt in 5 s' ||
    fail "secondary $n: the first retry after the heartbeat loss is not 5 s later"
done
ping_ok 10.2.0.2 "primary restarted"; ping_ok 10.3.0.2 "primary restarted"
echo "step 3: primary killed and restarted: 2 and 3 up again $back_kill s after the kill (5 s heartbeat_fail + 5 s back-off), pings pass"

# ---- 4. The primary stopped with SIGTERM says goodbye: both secondaries know within a second
# (P3-W0609, not P3-E0601 5 s later), its goodbyes are answered within 0.5 s, it exits 0; restarted, both come back
# within seconds (their first attempt, at once after the goodbye, is retransmitted 1 s, 3 s, 7 s
# later and reaches the new primary).
w0609b=$(count b 'P3-W0609'); w0609c=$(count c 'P3-W0609')
t=$(now)
kill -TERM "$pid_a"
until_ok 1 "secondary B told (P3-W0609)" more_than b 'P3-W0609' "$w0609b"
until_ok 1 "secondary C told (P3-W0609)" more_than c 'P3-W0609' "$w0609c"
told=$(since "$t")
# Its workers stop once both goodbyes are answered (P3-I0011 says how long that took, at most
# 0.5 s); closing the ports and the EAL take the rest.
until_ok 5 "the primary's exit after SIGTERM" eval '! kill -0 "$pid_a" 2>/dev/null'
gone=$(since "$t")
wait "$pid_a"; rc=$?; pid_a=
[ "$rc" -eq 0 ] || fail "primary exit status $rc after SIGTERM"
grep -q 'P3-I0011: stopping: goodbye to 2 peer' "$work/a.log" || fail "the primary did not say goodbye to 2 peers"
done_ms=$(grep -o 'P3-I0011: stopping: the control plane is done after [0-9]* ms' "$work/a.log" | grep -o '[0-9]* ms')
[ -n "$done_ms" ] || fail "the primary's goodbyes were not all answered within 0.5 s"
[ "$(grep -c 'session shut down (goodbye acknowledged)' "$work/a.log")" -ge 2 ] || fail "the goodbyes were not both acknowledged"
grep -q 'P3-I0002: p3d stopped on signal 15' "$work/a.log" || fail "no stop line P3-I0002"
t=$(now)
trio_start a
until_ok 10 "remotes 2 and 3 up after the primary's restart" both_up
back_term=$(since "$t")
ping_ok 10.2.0.2 "after SIGTERM and restart"; ping_ok 10.3.0.2 "after SIGTERM and restart"
echo "step 4: SIGTERM: both secondaries told within $told s, answered within $done_ms, primary exited 0 after $gone s; restarted: 2 and 3 up $back_term s after the restart"

kill "$pid_listen"; wait "$pid_listen" 2>/dev/null; pid_listen=
trio_stop a b c
for ns in $all_ns; do ip netns del "$ns" || fail "ip netns del $ns"; done
all_ns=
echo "PASS: a killed secondary, a refused one, a killed primary and a stopped one all come back by themselves"
