#!/usr/bin/env bash
# The operator's console against a live primary with two minimal secondaries: sessions shown
# (table and JSON), a forced rekey counted, a secondary added, a subnet added, a session shut
# down (its LAN hosts get RST) and started again, the file edited and re-read (SIGHUP and
# `reload`), the running configuration saved and read back, a secondary removed, eight
# concurrent status clients, a caller refused and audited. Traffic to the session a command
# does not name must not lose one packet.
#
#   host A ns        primary ns                 WAN ns                 secondary B ns          host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [wA]                  [bWan] p3d b [bLan] -veth- 10.2.0.2
#     hA             10.1.0.1   192.0.2.1          br0 -[wB]-veth-    192.0.2.2   10.2.0.1       hB
#                        |                             -[wC]-veth-   [cWan] p3d c [cLan] -veth- 10.3.0.2
#                        |                                            192.0.2.3   10.3.0.1       hC
#                        |  admin socket $adm/a.sock (b.sock, c.sock)                             10.3.0.66
#                      p3ctl (root; uid 65534 of group nogroup: the viewer)                       10.3.0.130
#
# The primary starts with remote 2 (B) only; remote 3 (C) is added with `p3ctl remote add`,
# for 10.3.0.0/26; `remote set` adds 10.3.0.64/26, the edited file 10.3.0.128/26 (all on C's
# LAN, so host C answers on .2, .66 and .130 as each is routed to C by the primary).
# The secondaries' files are minimal (DESIGN.md §Session life 6): the primary's address and
# its pre-shared key, no id, no subnets, no local address; they route by what is pushed.
# Steps (each prints a line): 1 sessions up; 2 rekey; 3 remote add (ping to B lossless);
# 4 remote set subnets; 5 shutdown / start; 6 SIGHUP, reload, config save; 7 remote remove
# (ping to B lossless); 8 concurrent clients (paced ping lossless); 9 refusals and audit. A
# ping to C at 10/s runs through steps 4 to 6 and must lose nothing.
# Needs root and network namespaces with veth and a bridge (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-trio.sh" p3ctl setpriv
log_lines=40
trio_topology

# The sockets in a directory the viewer (uid 65534) may enter; $work itself only traversable.
adm=$work/adm
chmod 711 "$work"; mkdir -m 755 "$adm"
admin() { echo "socket = \"$adm/$1.sock\"; viewer_group = \"nogroup\"; audit = \"$work/audit-$1.jsonl\";"; }
psk psk-b; psk psk-c
a_local="rekey_wait = 600; heartbeat_time = 1; heartbeat_fail = 5; admin = { $(admin a) };"
r2=$(trio_remote 2 192.0.2.2 psk-b 10.2.0.0/24)
east='{ name = "east"; }'
trio_primary_conf "$r2" "$a_local" "$east" >"$work/a.conf"
trio_secondary_conf minimal 192.0.2.2 10.2.0.1 "$(admin b)" psk-b >"$work/b.conf"
trio_secondary_conf minimal 192.0.2.3 10.3.0.1 "$(admin c)" psk-c >"$work/c.conf"
for n in b c; do
  "$p3ctl" config check "$work/$n.conf" >/dev/null 2>"$work/check-$n.txt" ||
    fail "the minimal secondary file $n.conf is refused: $(cat "$work/check-$n.txt")"
done
in_ns "$ns_hc" ip addr add 10.3.0.66/24 dev hC && in_ns "$ns_hc" ip addr add 10.3.0.130/24 dev hC ||
  fail "host C's further addresses"

ctl() { local n=$1; shift; "$p3ctl" -s "$adm/$n.sock" "$@"; }
# jget EXPR: EXPR (python, the JSON on stdin as r) printed; lists, objects and null as JSON.
jget() {
  /usr/bin/python3 -c 'import json, sys
r = json.load(sys.stdin); v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1" 2>/dev/null
}
sfield() { ctl "${3:-a}" --json status "$1" 2>/dev/null | jget "r['sessions'][0]['$2']"; }  # id field [p3d]
state_is() { [ "$(sfield "$1" state "${3:-a}")" = "$2" ]; }                                  # id state [p3d]
wait_until() {  # seconds what command...
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do "$@" && return 0; sleep 0.2; done
  fail "$what: not within $secs s"
}
reaches() { in_ns "$ns_ha" ping -n -c 1 -W 1 "$1" >/dev/null 2>&1; }   # address: host A gets a reply
# ping_bg NAME ADDRESS: host A pings ADDRESS at 10/s in the background.
ping_bg() {
  ip netns exec "$ns_ha" ping -n -i 0.1 "$2" >"$work/ping-$1.txt" 2>&1 &
  printf -v "pid_ping$1" '%s' $!
}
# ping_end NAME WHAT: stops it; fails when any request but the last (possibly in flight) got no reply.
ping_end() {
  local v=pid_ping$1
  kill -INT "${!v}"; wait "${!v}"; printf -v "$v" ''
  /usr/bin/python3 - "$work/ping-$1.txt" "$2" <<'PY' || fail "$2: the ping lost packets (above)"
import re, sys
text = open(sys.argv[1]).read()
sent = int(re.search(r"(\d+) packets transmitted", text).group(1))
got = {int(s) for s in re.findall(r"bytes from .*icmp_seq=(\d+)", text)}
lost = [s for s in range(1, sent) if s not in got]
print("%s: %d sent at 10/s, %d answered, lost %s" % (sys.argv[2], sent, len(got), lost or "none"))
sys.exit(0 if sent >= 10 and not lost else 1)
PY
}
# diff_is JSON ADDED REMOVED CHANGED RESTART: a diff result, each part as compact JSON.
diff_is() {
  local got
  got=$(jget '[r["added"], r["removed"], [[c["id"], c["fields"], c["reestablished"]] for c in r["changed"]], r["restart_needed"]]' <<<"$1" | tr -d ' ')
  [ "$got" = "[$2,$3,$4,$5]" ] || fail "diff $1: want added $2 removed $3 changed $4 restart_needed $5"
}

trio_start a b
# ---- 1. Sessions up: the primary's table and JSON, host B reachable through a minimal secondary.
wait_until 20 "remote 2 up at the primary" state_is 2 up
wait_until 5 "remote 1 up at secondary B" state_is 1 up b
ctl a status >"$work/status.txt" 2>&1 || { cat "$work/status.txt"; fail "p3ctl status: exit $?"; }
cat "$work/status.txt"
grep -Eq '^ *2 +up ' "$work/status.txt" || fail "status table does not show remote 2 up"
ctl a --json status 2 >"$work/status.json" || fail "p3ctl --json status 2: exit $?"
/usr/bin/python3 - "$work/status.json" <<'PY' || fail "status --json lacks contract fields (above)"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["sessions"][0]
want = ["id", "state", "admin", "peer", "group", "uptime_s", "rekeys", "last_rekey_s", "key_age_s", "lanes",
        "rx_pkts", "tx_pkts", "drops"]
missing = [k for k in want if k not in s] + ["drops." + k for k in ("auth", "replay", "old_key", "policy", "down", "other")
                                             if k not in s.get("drops", {})] + [k for k in ("control",) if k not in r]
print("status 2:", {k: s.get(k) for k in ("id", "state", "admin", "peer", "uptime_s")}, "missing:", missing or "none")
assert not missing and r["role"] == "primary" and s["id"] == 2 and s["state"] == "up" and s["admin"] == "up"
assert s["peer"].split(":")[0] == "192.0.2.2"
PY
ctl a status 3 >/dev/null 2>&1; rc=$?
[ "$rc" -eq 4 ] || fail "status 3 before remote add: exit $rc, want 4 (unknown id)"
in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 1 10.2.0.2 >/dev/null 2>&1   # every hop learns its neighbours
reaches 10.2.0.2 || fail "host A does not reach host B (B routes by the pushed subnets)"
echo "step 1: remote 2 up (table, JSON with admin, drops and control), host B reachable"

# Privileges: once started, every thread of p3d a keeps CAP_CHOWN and CAP_IPC_LOCK only (--no-huge:
# no physical addresses, so no CAP_SYS_ADMIN), an empty bounding set and no_new_privs. Every
# step below (rekey, remote add, SIGHUP, reload, config save, audit) runs after that drop.
want_caps=$(printf '%016x' $(( (1 << 0) | (1 << 14) )))   # CAP_CHOWN 0, CAP_IPC_LOCK 14
grep -q 'P3-I0016: privileges dropped in every thread: kept ipc_lock (.*), chown (.*); bounding set empty' "$work/a.log" ||
  fail "no P3-I0016 line naming ipc_lock and chown"
threads=0
for t in /proc/"$pid_a"/task/*; do
  st=$(cat "$t/status" 2>/dev/null) || continue
  for f in "CapPrm:	$want_caps" "CapEff:	$want_caps" "CapInh:	0000000000000000" "CapBnd:	0000000000000000" \
           "CapAmb:	0000000000000000" "NoNewPrivs:	1"; do
    grep -qx "$f" <<<"$st" || fail "thread $(cat "$t/comm"): want '$f', have: $(grep -E '^(Cap|NoNew)' <<<"$st" | tr '\n\t' '  ')"
  done
  threads=$((threads + 1))
done
[ "$threads" -ge 4 ] || fail "p3d a: only $threads thread(s) seen in /proc/$pid_a/task"
echo "step 1: privileges of all $threads threads of p3d a: CapEff $want_caps, bounding set empty, no_new_privs"

# ---- 2. A forced rekey, counted.
rekeys0=$(sfield 2 rekeys)
ctl a rekey 2 >"$work/rekey.txt" 2>&1 || { cat "$work/rekey.txt"; fail "p3ctl rekey 2: exit $?"; }
wait_until 5 "status counting the rekey of 2" eval '[ "$(sfield 2 rekeys)" -gt "$rekeys0" ]'
[ "$(sfield 2 last_rekey_result)" = ok ] || fail "last rekey result of 2: $(sfield 2 last_rekey_result)"
echo "step 2: rekey 2 counted ($rekeys0 -> $(sfield 2 rekeys))"

# ---- 3. C runs but the primary does not know it; `remote add` brings it up with no restart
# while a ping to B runs.
trio_start c
wait_for a "$pid_a" 'P3-E0403.*identity 192\.0\.2\.3 is no configured remote' 5 "C's first attempt refused"
ctl a status 3 >/dev/null 2>&1; rc=$?
[ "$rc" -eq 4 ] || fail "status 3 with C refused: exit $rc, want 4"
uptime2=$(sfield 2 uptime_s)
ping_bg b 10.2.0.2
sleep 1
printf 'remotes = (\n%s\n);\n' "$(trio_remote 3 192.0.2.3 psk-c 10.3.0.0/26)" >"$work/add-c.conf"
ctl a --json remote add "$work/add-c.conf" >"$work/add.json" 2>&1 || { cat "$work/add.json"; fail "remote add: exit $?"; }
[ "$(jget 'r["added"]' <"$work/add.json" | tr -d ' ')" = "[3]" ] || fail "remote add: $(cat "$work/add.json"), want added [3]"
wait_until 20 "remote 3 up after remote add" state_is 3 up
wait_until 5 "remote 1 up at secondary C" state_is 1 up c
in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 1 10.3.0.2 >/dev/null 2>&1
reaches 10.3.0.2 || fail "host A does not reach host C after remote add"
ping_end b "host A -> host B during remote add"
[ "$(sfield 2 uptime_s)" -ge "$uptime2" ] || fail "remote 2 was set up again by remote add"
ctl a status >"$work/status.txt" 2>&1 || fail "p3ctl status: exit $?"
cat "$work/status.txt"
grep -Eq '^ *2 +up ' "$work/status.txt" && grep -Eq '^ *3 +up ' "$work/status.txt" ||
  fail "status table does not show remotes 2 and 3 up"
[ "$(ctl a --json status --all | jget '[s["id"] for s in r["sessions"] if (s["state"], s["admin"]) == ("up", "up")]' |
     tr -d ' ')" = "[2,3]" ] || fail "status --json --all: not exactly 2 and 3 up (state and admin)"
echo "step 3: remote add brought 3 up with no restart, host C reachable, the ping to B lost nothing"

# ---- 4. `remote set` adds a prefix to 3 in place; a ping to C runs from here to step 6.
ping_bg c 10.3.0.2
uptime3=$(sfield 3 uptime_s)
reaches 10.3.0.66 && fail "10.3.0.66 answered before it was routed to remote 3"
ctl a --json remote set 3 'subnets=["10.3.0.0/26", "10.3.0.64/26"]' >"$work/set.json" 2>&1 ||
  { cat "$work/set.json"; fail "remote set 3 subnets: exit $?"; }
diff_is "$(cat "$work/set.json")" '[]' '[]' '[[3,["subnets"],false]]' '[]'
wait_until 3 "10.3.0.66 (the added prefix) reachable" reaches 10.3.0.66
state_is 3 up && [ "$(sfield 3 uptime_s)" -ge "$uptime3" ] || fail "remote 3 was set up again by a subnets change"
echo "step 4: remote set 3 subnets: diff $(tr -d ' ' <"$work/set.json"), 10.3.0.66 reachable, session kept"

# ---- 5. shutdown 2: down with admin "down", host B's TCP answered with RST, and it stays down
# past the secondary's retries; start 2: up again.
ip netns exec "$ns_hb" /usr/bin/python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.2.0.2", 7000)); s.listen(16)
while True: s.accept()[0].close()' & pid_listen=$!
tcp_probe() {
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
wait_until 3 "host B's listener" eval '[ "$(tcp_probe)" = connected ]'
ctl a --json shutdown 2 >"$work/shut.json" 2>&1 || { cat "$work/shut.json"; fail "shutdown 2: exit $?"; }
[ "$(jget 'r["done"]' <"$work/shut.json" | tr -d ' ')" = "[2]" ] || fail "shutdown 2: $(cat "$work/shut.json")"
wait_until 2 "remote 2 down" state_is 2 down
[ "$(sfield 2 admin)" = down ] || fail "shutdown 2: admin $(sfield 2 admin), want down"
ctl a status 2 | grep -Eq '^ *2 +down ' || fail "status table does not show 2 down"
wait_until 3 "secondary B seeing its session end" eval '! state_is 1 up b'
probe=$(tcp_probe)
[ "$probe" = ECONNREFUSED ] || fail "TCP from host A to host B after shutdown: $probe, want ECONNREFUSED (RST)"
in_ns "$ns_ha" ping -n -c 1 -W 1 10.2.0.2 >"$work/ping-down.txt" 2>&1
grep -q 'Unreachable' "$work/ping-down.txt" || { cat "$work/ping-down.txt"; fail "no ICMP unreachable for host B"; }
sleep 6   # B retries at once on goodbye, then after 5 s: both refused
state_is 2 down && [ "$(sfield 2 admin)" = down ] || fail "remote 2 came back without start"
grep -q 'P3-W0427' "$work/a.log" || fail "no refused attempt of B logged (P3-W0427) while shut down"
ctl a --json start 2 >"$work/start.json" 2>&1 || { cat "$work/start.json"; fail "start 2: exit $?"; }
[ "$(jget 'r["done"]' <"$work/start.json" | tr -d ' ')" = "[2]" ] || fail "start 2: $(cat "$work/start.json")"
wait_until 20 "remote 2 up after start (within B's back-off)" state_is 2 up
[ "$(sfield 2 admin)" = up ] || fail "start 2: admin $(sfield 2 admin), want up"
wait_until 3 "host B reachable after start" reaches 10.2.0.2
[ "$(tcp_probe)" = connected ] || fail "TCP from host A to host B after start"
kill "$pid_listen"; wait "$pid_listen" 2>/dev/null; pid_listen=
echo "step 5: shutdown 2 (RST, unreachable, stayed down past B's retries), start 2 (up again)"

# ---- 6. The file edited: SIGHUP applies it; another edit, `reload` reports the diff; `config
# save` writes the running configuration atomically, keeps the previous file, round-trips.
r3() { trio_remote 3 192.0.2.3 psk-c 10.3.0.0/26 10.3.0.64/26 "$@" | sed 's/ }$/ groups = [ "east" ]; }/'; }
trio_primary_conf "$r2,"$'\n'"$(r3)" "$a_local" "$east" >"$work/a.conf"
kill -HUP "$pid_a"
wait_until 5 "remote 3 in group east after SIGHUP" eval '[ "$(sfield 3 group)" = east ]'
kill -0 "$pid_a" 2>/dev/null || fail "p3d a died on SIGHUP"
[ "$(ctl a --json status --group east | jget '[s["id"] for s in r["sessions"]]' | tr -d ' ')" = "[3]" ] ||
  fail "status --group east does not list exactly 3"
state_is 3 up && [ "$(sfield 3 uptime_s)" -ge "$uptime3" ] || fail "remote 3 was set up again by a groups change"
trio_primary_conf "$r2,"$'\n'"$(r3 10.3.0.128/26)" "$a_local" "$east" >"$work/a.conf"
reaches 10.3.0.130 && fail "10.3.0.130 answered before the reload"
ctl a --json reload >"$work/reload.json" 2>&1 || { cat "$work/reload.json"; fail "reload: exit $?"; }
diff_is "$(cat "$work/reload.json")" '[]' '[]' '[[3,["subnets"],false]]' '[]'
wait_until 3 "10.3.0.130 reachable after reload" reaches 10.3.0.130
cp "$work/a.conf" "$work/a.conf.mine"
ctl a --json config save "$work/saved.conf" >"$work/save1.json" 2>&1 || { cat "$work/save1.json"; fail "config save: exit $?"; }
[ "$(jget '[r["path"], r["previous"]]' <"$work/save1.json")" = "[\"$work/saved.conf\", null]" ] ||
  fail "config save to a new file: $(cat "$work/save1.json")"
[ "$(stat -c %a "$work/saved.conf")" = 600 ] || fail "saved file mode $(stat -c %a "$work/saved.conf"), want 600"
"$p3ctl" config check "$work/saved.conf" >"$work/check-saved.txt" 2>&1 ||
  { cat "$work/check-saved.txt"; fail "the saved file does not pass config check"; }
cp "$work/saved.conf" "$work/saved.first"
ctl a --json config save "$work/saved.conf" >"$work/save2.json" 2>&1 || fail "config save again: exit $?"
[ "$(jget 'r["previous"]' <"$work/save2.json")" = "$work/saved.conf.prev" ] || fail "config save again: $(cat "$work/save2.json")"
cmp -s "$work/saved.first" "$work/saved.conf.prev" || fail "saved.conf.prev is not the file saved before"
ctl a --json config save >"$work/save3.json" 2>&1 || fail "config save (p3d's own file): exit $?"
cmp -s "$work/a.conf.mine" "$work/a.conf.prev" || fail "config save did not keep the edited file as a.conf.prev"
ctl a --json reload >"$work/reload2.json" 2>&1 || fail "reload of the saved file: exit $?"
diff_is "$(cat "$work/reload2.json")" '[]' '[]' '[]' '[]'
ctl a reload >"$work/reload3.txt" 2>&1 && [ -s "$work/reload3.txt" ] || { cat "$work/reload3.txt"; fail "reload (table): exit $?"; }
ping_end c "host A -> host C through steps 4 to 6"
echo "step 6: SIGHUP applied a groups change, reload reported the subnets diff, config save kept .prev and round-trips"

# ---- 7. remote remove 3 ends exactly that session.
ping_bg b 10.2.0.2
sleep 1
uptime2=$(sfield 2 uptime_s)
ctl a --json remote remove 3 >"$work/remove.json" 2>&1 || { cat "$work/remove.json"; fail "remote remove 3: exit $?"; }
diff_is "$(cat "$work/remove.json")" '[]' '[3]' '[]' '[]'
ctl a status 3 >/dev/null 2>&1; rc=$?
[ "$rc" -eq 4 ] || fail "status 3 after remote remove: exit $rc, want 4"
wait_until 3 "secondary C seeing its session end" eval '! state_is 1 up c'
in_ns "$ns_ha" ping -n -c 2 -i 0.2 -W 1 10.3.0.2 >"$work/ping-c-gone.txt" 2>&1
[ "$(ping_replies "$work/ping-c-gone.txt")" -eq 0 ] || fail "host C still answers after remote remove 3"
sleep 1
ping_end b "host A -> host B during remote remove 3"
state_is 2 up && [ "$(sfield 2 uptime_s)" -ge "$uptime2" ] || fail "remote 2 touched by remote remove 3"
echo "step 7: remote remove 3 ended that session only"

# ---- 8. Eight status clients in a loop while a paced ping (100/s) to B runs: no loss.
ctl_loop() {  # n
  local ok=0 bad=0
  while [ ! -e "$work/stop-loops" ]; do
    if ctl a status >/dev/null 2>&1; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad" >"$work/loop-$1"
}
for i in 1 2 3 4 5 6 7 8; do ctl_loop "$i" & printf -v "pid_loop$i" '%s' $!; done
in_ns "$ns_ha" ping -n -q -i 0.01 -c 500 -W 1 10.2.0.2 >"$work/ping-flood.txt" 2>&1
touch "$work/stop-loops"
for i in 1 2 3 4 5 6 7 8; do v=pid_loop$i; wait "${!v}"; printf -v "$v" ''; done
calls=0
for i in 1 2 3 4 5 6 7 8; do
  read -r ok bad <"$work/loop-$i"
  [ "$bad" -eq 0 ] && [ "$ok" -gt 0 ] || fail "status client $i: $ok answered, $bad failed"
  calls=$((calls + ok))
done
replies=$(ping_replies "$work/ping-flood.txt")
[ "$replies" -eq 500 ] || { cat "$work/ping-flood.txt"; fail "paced ping with 8 status clients: $replies of 500 answered"; }
echo "step 8: $calls status calls from 8 clients, 500 of 500 pings at 100/s answered"

# ---- 9. Refusals, each exit 3: a viewer asking for a change, and a caller in neither group
# (uid 65533, no account) that reaches the socket only because its process holds nogroup as
# a supplementary group: p3d takes the groups from SO_PEERCRED's gid and the account
# database, finds none of its groups and refuses even status; both refusals are audited with
# the uid. A caller without any of the groups cannot open the socket at all (EACCES, exit 3,
# nothing for p3d to audit). Every command above is in the audit file.
as_uid() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups "$@"; }
if grep -q P3-W0705 "$work/a.log"; then
  echo "viewer part skipped: no POSIX ACLs on $adm (P3-W0705)"
  viewer=0
else
  viewer=1
  as_uid 65534 "$p3ctl" -s "$adm/a.sock" status >/dev/null 2>&1 || fail "viewer status: exit $?"
  as_uid 65534 "$p3ctl" -s "$adm/a.sock" shutdown 2 >"$work/denied.txt" 2>&1; rc=$?
  [ "$rc" -eq 3 ] || { cat "$work/denied.txt"; fail "viewer shutdown 2: exit $rc, want 3"; }
  state_is 2 up || fail "remote 2 not up after a refused shutdown"
  setpriv --reuid=65533 --regid=65533 --groups=65534 "$p3ctl" -s "$adm/a.sock" status >"$work/outsider.txt" 2>&1; rc=$?
  [ "$rc" -eq 3 ] || { cat "$work/outsider.txt"; fail "status by uid 65533, in neither group: exit $rc, want 3"; }
fi
as_uid 65533 "$p3ctl" -s "$adm/a.sock" status >"$work/stranger.txt" 2>&1; rc=$?
[ "$rc" -eq 3 ] || { cat "$work/stranger.txt"; fail "a caller without the socket's groups: exit $rc, want 3"; }
/usr/bin/python3 - "$work/audit-a.jsonl" "$viewer" <<'PY' || fail "the audit file lacks commands (above)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
done = {l["cmd"] for l in lines if l.get("uid") == 0 and l.get("result") == "ok"}
want = ["status", "rekey", "remote.add", "remote.set", "shutdown", "start", "reload", "config.save", "remote.remove"]
missing = [c for c in want if c not in done]
def refused(uid, cmd):
    return any((l.get("uid"), l.get("cmd"), l.get("result")) == (uid, cmd, "denied") for l in lines)
if sys.argv[2] == "1":
    missing += [what for what, ok in (("the viewer's refused shutdown (uid 65534)", refused(65534, "shutdown")),
                                      ("the refused status of uid 65533", refused(65533, "status"))) if not ok]
missing += ["event:up of %s" % i for i in ("2", "3") if not any(l["cmd"] == "event:up" and l.get("target") == i for l in lines)]
print("audit: %d lines; missing: %s" % (len(lines), missing or "none"))
sys.exit(1 if missing else 0)
PY
echo "step 9: refusals audited with their uids (viewer's change, a caller in neither group), every command audited"

trio_stop a b c
for n in a b c; do [ ! -e "$adm/$n.sock" ] || fail "admin socket $n left after stop"; done
for ns in $all_ns; do ip netns del "$ns" || fail "ip netns del $ns"; done
all_ns=
echo "PASS: live administration of a primary with two minimal secondaries; no packet lost to a session not named"
