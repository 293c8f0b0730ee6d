#!/usr/bin/env bash
# p3ctl's admin verbs against a stand-in for p3d's admin socket (tests/sh/lib/fake_admin.py):
#   - each verb's request line (cmd, target, args) as the protocol fixes it;
#   - status's table and --json (the server's result as is), rekey / keyarray / audit output;
#   - exit statuses and messages: 1 no p3d (the socket named), 2 bad input, 3 denied,
#     4 unknown id, 5 failed; a reply that is not the protocol is not taken for an answer;
#   - --help for every command and --version.
set -u
BUILD=${BUILD:-build}
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
p3ctl=$BUILD/control/p3ctl
[ -x "$p3ctl" ] || { echo "FAIL: $p3ctl not built"; exit 1; }
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
work=$(mktemp -d)
sock=$work/p3d.sock
python3 "$ROOT/tests/sh/lib/fake_admin.py" "$sock" "$work/requests" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "FAIL: the fake admin server did not start"; exit 1; }
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# run WANT_RC ARGS...: p3ctl -s SOCK ARGS, stdout in $work/out, stderr in $work/err.
run() {
  local want=$1; shift
  : >"$work/requests"
  "$p3ctl" -s "$sock" "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  [ "$rc" -eq "$want" ] || { fail "p3ctl $*: exit $rc, want $want"; cat "$work/err"; }
}
request_is() { grep -qxF "$1" "$work/requests" || fail "request: want $1, got $(cat "$work/requests")"; }
out_has() { grep -qE -- "$1" "$work/out" || { fail "stdout: want /$1/, got:"; cat "$work/out"; }; }
err_has() { grep -qE -- "$1" "$work/err" || fail "stderr: want /$1/, got: $(cat "$work/err")"; }

# --- status -----------------------------------------------------------------------------------
run 0 status
request_is '{"v":1,"cmd":"status","target":{"all":true}}'
out_has '^role: primary$'
out_has '^ID +STATE +PEER +IDENTITY +UPTIME +REKEYS +LAST REKEY +KEY AGE +LANES +RX PKTS +TX PKTS +DROPS$'
out_has '^1 +up +192\.0\.2\.1:4500 +CN=branch1 +1d02h +12 +5m12s ago ok +5m12s +4/4 +1000 +2000 +6$'
out_has '^7 +connecting +198\.51\.100\.7:500 +- +0s +0 +- +0s +0/0 +0 +0 +0$'
[ "$(wc -l <"$work/out")" -eq 4 ] || fail "status: want 4 lines"
run 0 status --all
request_is '{"v":1,"cmd":"status","target":{"all":true}}'
run 0 status 7
request_is '{"v":1,"cmd":"status","target":{"id":7}}'
out_has '^7 +connecting'
run 0 status --group branches
request_is '{"v":1,"cmd":"status","target":{"group":"branches"}}'
run 0 --json status 1
python3 - "$work/out" <<'PY' || fail "status --json: not the server's result"
import json, sys
text = open(sys.argv[1]).read()
r = json.loads(text)
assert text.startswith('{"role":"primary","sessions":[{"id":1,"state":"up","peer":"192.0.2.1:4500"'), text
assert r["sessions"][0]["drops"] == {"auth": 1, "replay": 2, "other": 3}
assert r["sessions"][0]["arrays"]["control"]["age_s"] is None
PY
run 0 status 1 --json   # the global options may follow the command
grep -q '^{"role":"primary","sessions":\[{"id":1,' "$work/out" || fail "status 1 --json: $(cat "$work/out")"
run 0 status --group empty
out_has '^no sessions$'
run 2 status 1 --group branches
err_has 'give one of ID, --group NAME or --all'
run 2 status x1
err_has "'x1' is not a remote id"
run 4 status 99
err_has '^p3ctl: status: unknown remote id or group: no remote 99$'

# --- rekey, keyarray --------------------------------------------------------------------------
run 0 rekey 1
request_is '{"v":1,"cmd":"rekey","target":{"id":1}}'
out_has '^rekey: done for 1$'
run 0 rekey --group branches
request_is '{"v":1,"cmd":"rekey","target":{"group":"branches"}}'
out_has '^rekey: done for 1 3$'
run 0 --json rekey -g branches
out_has '^\{"done":\[1,3\]\}$'
run 2 rekey --group "$(printf 'a\xffb')"
err_has 'not UTF-8'
run 2 rekey
err_has 'a remote ID or --group NAME is required'
run 2 rekey --all
run 3 rekey 66
err_has '^p3ctl: rekey: not allowed: uid 1001 \(alice\) is a viewer$'
run 4 rekey --group nope
run 5 rekey 13
err_has '^p3ctl: rekey: failed: a rekey is already under way$'
run 5 rekey 14
err_has 'not supported by this p3d'
run 2 rekey 77
err_has 'p3d refused the request'
run 0 keyarray generate 3
request_is '{"v":1,"cmd":"keyarray.generate","target":{"id":3}}'
out_has '^keyarray generate: done for 3$'
run 0 keyarray flush --group branches
request_is '{"v":1,"cmd":"keyarray.flush","target":{"group":"branches"}}'
run 0 keyarray flush 2 --regenerate
request_is '{"v":1,"cmd":"keyarray.flush","target":{"id":2},"args":{"regenerate":true}}'
out_has '^keyarray flush: done for 2$'
run 2 keyarray
run 2 keyarray shred 1

# --- audit ------------------------------------------------------------------------------------
run 0 audit
request_is '{"v":1,"cmd":"audit"}'
out_has '^2026-12-07T00:00:01Z  root\(0\)  status  all  ok$'
out_has '^2026-12-07T00:00:02Z  alice\(1001\)  rekey  id 1  denied$'
run 0 audit --since 1796601602
request_is '{"v":1,"cmd":"audit","args":{"since":1796601602}}'
[ "$(wc -l <"$work/out")" -eq 1 ] || fail "audit --since: want 1 line"
run 0 audit --since 2026-12-07T01:00:02+01:00
request_is '{"v":1,"cmd":"audit","args":{"since":1796601602}}'
run 0 audit --since 2026-12-07T00:00:01.5Z
request_is '{"v":1,"cmd":"audit","args":{"since":1796601601}}'
run 0 audit --since 5
[ "$(wc -l <"$work/out")" -eq 1000 ] || fail "audit of 1000 lines (an answer over 64 KiB): $(wc -l <"$work/out") lines"
run 0 --json audit
out_has '^\{"lines":\[\{"time":"2026-12-07T00:00:01Z"'
run 2 audit --since yesterday
err_has "--since 'yesterday': expected unix seconds or RFC3339"
[ -s "$work/requests" ] && fail "audit with a bad --since reached p3d"

# --- shutdown, start: a target always named ---------------------------------------------------
run 0 shutdown 2
request_is '{"v":1,"cmd":"shutdown","target":{"id":2}}'
out_has '^shutdown: done for 2$'
run 0 start --group east
request_is '{"v":1,"cmd":"start","target":{"group":"east"}}'
run 0 --json shutdown --all
request_is '{"v":1,"cmd":"shutdown","target":{"all":true}}'
out_has '^\{"done":\[1,3\]\}$'
run 2 shutdown
err_has 'give a remote ID, --group NAME or --all'
[ -s "$work/requests" ] && fail "shutdown without a target reached p3d"

# --- remote add|set|remove, reload, config save ------------------------------------------------
printf 'remotes = ( { id = 3; address = "192.0.2.3"; subnets = [ "10.3.0.0/24" ]; } );\n' >"$work/r3.conf"
run 0 remote add "$work/r3.conf"
/usr/bin/python3 - "$work/requests" "$work/r3.conf" <<'PY' || fail "remote add: the request does not carry the file"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
assert r["cmd"] == "remote.add" and "target" not in r, r
assert r["args"]["text"] == open(sys.argv[2]).read(), r
assert r["args"]["name"] == sys.argv[2], r
PY
out_has '^remote add: added 3$'
run 2 remote add "$work/none.conf"
err_has "none.conf: No such file"
run 0 remote set 3 rekey_wait=300 'subnets=["10.3.0.0/24"]' identity=
request_is '{"v":1,"cmd":"remote.set","target":{"id":3},"args":{"settings":[["rekey_wait","300"],["subnets","[\"10.3.0.0/24\"]"],["identity",""]]}}'
out_has '^remote set: changed 3 \(rekey_wait, subnets, identity\): session set up again$'
run 2 remote set 3 rekey_wait
err_has "'rekey_wait': expected KEY=VALUE"
run 2 remote set 3 =5
run 0 remote remove 3
request_is '{"v":1,"cmd":"remote.remove","target":{"id":3}}'
out_has '^remote remove: removed 3$'
run 2 remote remove x
run 0 reload
request_is '{"v":1,"cmd":"reload"}'
out_has '^reload: not applied until p3d restarts: dataplane.wan$'
run 0 config save
request_is '{"v":1,"cmd":"config.save"}'
out_has '^config save: written to /etc/p3/p3d.conf \(previous file kept as /etc/p3/p3d.conf.prev\)$'
(cd "$work" && "$p3ctl" -s "$sock" --json config save new.conf) >"$work/out" 2>&1 || fail "config save new.conf"
out_has "^\\{\"path\":\"$work/new.conf\""

# --- a socket without p3d, a p3d that does not answer the protocol ----------------------------
"$p3ctl" -s "$work/none.sock" status >/dev/null 2>"$work/err"
[ $? -eq 1 ] || fail "no p3d: want exit 1"
err_has "p3d is not reachable at $work/none.sock"
"$p3ctl" --prefix "none-$$" status >/dev/null 2>"$work/err"
[ $? -eq 1 ] || fail "--prefix without p3d: want exit 1"
err_has "/run/p3/none-$$.sock"
run 2 --prefix a/b status
run 1 status 55
err_has 'not a JSON object'
run 1 status 56
err_has 'closed the connection without an answer'

# --- --help of every command, --version ------------------------------------------------------
for c in "" config "config check" "config convert" reasons stats status rekey keyarray \
         "keyarray generate" "keyarray flush" audit shutdown start remote "remote add" "remote set" \
         "remote remove" reload "config save"; do
  # shellcheck disable=SC2086
  "$p3ctl" $c --help >"$work/out" 2>&1 || fail "p3ctl $c --help: not exit 0"
  grep -q "^Usage: p3ctl" "$work/out" || fail "p3ctl $c --help: no usage"
done
"$p3ctl" keyarray flush --help | grep -q -- '--regenerate' || fail "keyarray flush --help: no --regenerate"
"$p3ctl" help | grep -q '^Usage: p3ctl' || fail "p3ctl help"
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$ROOT/meson.build" | head -1)
[ "$("$p3ctl" --version)" = "p3ctl $version" ] || fail "--version: $("$p3ctl" --version), want p3ctl $version"
"$p3ctl" bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown command: want exit 2"
"$p3ctl" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no command: want exit 2"

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
