#!/usr/bin/env bash
# The operator's console against two real p3d: p3ctl reaches each over its admin socket, shows
# the session (table and JSON), forces a rekey that status then counts, and a viewer is refused
# a change, which the audit trail records with the viewer's uid.
#
#   host A ns            primary ns                    secondary ns              host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ---veth--- [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#                        10.1.0.1   192.0.2.1          192.0.2.2   10.2.0.1
#                          |  admin socket $adm/a.sock      |  admin socket $adm/b.sock
#                        p3ctl (root; and uid 65534 in group nogroup, the viewer group)
#
# Needs root and network namespaces with veth (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-pair.sh"
p3ctl=${BUILD:-$ROOT/build}/control/p3ctl
log_lines=40
pair_topology

# The sockets in a directory others may enter: the viewer (uid 65534) connects through the
# POSIX ACL p3d gives the viewer group on its socket.
adm=$(mktemp -d /tmp/p3adm.XXXXXX); chmod 755 "$adm"
trap 'cleanup; rm -rf "$adm"' EXIT   # netns-pair's cleanup too: namespaces and p3d go even on failure
admin() { echo "admin = { socket = \"$adm/$1.sock\"; viewer_group = \"nogroup\"; audit = \"$work/audit-$1.jsonl\"; };"; }
pair_conf "rekey_wait = 3600; heartbeat_time = 1; heartbeat_fail = 5; $(admin a)"
sed -i "s|local = { ip = 4; address = \"192.0.2.2\";|local = { ip = 4; address = \"192.0.2.2\"; $(admin b)|" "$work/b.conf"
pair_start
pair_wait_up 20

# status on the primary: a table naming remote 7 up, and JSON with the contract's fields.
"$p3ctl" -s "$adm/a.sock" status >"$work/status.txt" 2>&1 || { cat "$work/status.txt"; fail "p3ctl status: exit $?"; }
cat "$work/status.txt"
grep -Eq '^ *7 +up ' "$work/status.txt" || fail "status table does not show remote 7 up"
json() { "$p3ctl" -s "$adm/a.sock" --json status 7; }
field() { json | /usr/bin/python3 -c "import json,sys; s=json.load(sys.stdin)['sessions'][0]; print(s['$1'])"; }
[ "$(field state)" = up ] || fail "status --json: state $(field state), want up"
[ "$(field peer | cut -d: -f1)" = 192.0.2.2 ] || fail "status --json: peer $(field peer)"
rekeys0=$(field rekeys)

# A forced rekey: status counts it.
"$p3ctl" -s "$adm/a.sock" rekey 7 >"$work/rekey.txt" 2>&1 || { cat "$work/rekey.txt"; fail "p3ctl rekey 7: exit $?"; }
for _ in $(seq 50); do [ "$(field rekeys)" -gt "$rekeys0" ] && break; sleep 0.1; done
[ "$(field rekeys)" -gt "$rekeys0" ] || fail "status still counts $(field rekeys) rekeys after p3ctl rekey 7 (was $rekeys0)"
[ "$(field last_rekey_result)" = ok ] || fail "last rekey result $(field last_rekey_result)"
# The secondary asks for one: the primary runs it.
"$p3ctl" -s "$adm/b.sock" rekey 1 >/dev/null 2>&1 || fail "p3ctl rekey 1 on the secondary: exit $?"
for _ in $(seq 50); do [ "$(field rekeys)" -gt "$((rekeys0 + 1))" ] && break; sleep 0.1; done
[ "$(field rekeys)" -gt "$((rekeys0 + 1))" ] || fail "the secondary's rekey-ask was not run"

# Unknown id: exit 4 with a message.
"$p3ctl" -s "$adm/a.sock" rekey 99 >"$work/unknown.txt" 2>&1; rc=$?
[ "$rc" -eq 4 ] || { cat "$work/unknown.txt"; fail "rekey 99: exit $rc, want 4"; }

# A viewer may read but not change: refused (exit 3), and the audit trail says who.
as_viewer() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
if grep -q P3-W0705 "$work/a.log"; then
  echo "viewer part skipped: no POSIX ACLs on $adm (P3-W0705)"
else
  as_viewer "$p3ctl" -s "$adm/a.sock" status >/dev/null 2>&1 || fail "viewer status: exit $?"
  as_viewer "$p3ctl" -s "$adm/a.sock" rekey 7 >"$work/denied.txt" 2>&1; rc=$?
  [ "$rc" -eq 3 ] || { cat "$work/denied.txt"; fail "viewer rekey: exit $rc, want 3"; }
  /usr/bin/python3 - "$work/audit-a.jsonl" <<'PY' || fail "the refusal is not in the audit trail"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert any(l.get("uid") == 65534 and l.get("cmd") == "rekey" and l.get("result") == "denied" for l in lines), lines[-5:]
assert any(l.get("uid") == 0 and l.get("cmd") == "rekey" and l.get("result") == "ok" for l in lines)
assert any(l.get("cmd") == "event:up" for l in lines)
PY
fi
"$p3ctl" -s "$adm/a.sock" audit >"$work/audit.txt" 2>&1 || fail "p3ctl audit: exit $?"
grep -q rekey "$work/audit.txt" || { cat "$work/audit.txt"; fail "p3ctl audit does not list the rekey"; }

pair_stop
[ ! -e "$adm/a.sock" ] && [ ! -e "$adm/b.sock" ] || fail "admin sockets left after stop"
for ns in $all_ns; do ip netns del "$ns"; done
rm -rf "/var/run/dpdk/$tag-a" "/var/run/dpdk/$tag-b"
echo "PASS: status table and JSON, a forced rekey counted, the secondary's ask run, unknown id exit 4, a viewer refused and audited"
