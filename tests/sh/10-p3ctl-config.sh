#!/usr/bin/env bash
# p3ctl config check / convert as an administrator uses them:
#   - every example in config/ is accepted (exit 0) and printed, secrets masked;
#   - a broken file gives "file:line: error P3-Ennnn: ..." on stderr and exit 2;
#   - the output of convert loads again to the same effective configuration;
#   - a key file readable by others is refused, one not yet created is only a warning.
set -u
BUILD=${BUILD:-build}
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
p3ctl=$BUILD/control/p3ctl
[ -x "$p3ctl" ] || { echo "FAIL: $p3ctl not built"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Every example (config/ and config/demo/): exit 0, an effective configuration on stdout, no
# error (so each can forward: a LAN address, a way to every remote), only W and I codes on
# stderr; --json says ok with no error finding. Each is checked as installed, owner-only (a
# checkout leaves them 0644; static keys refuse that), beside its own key files if any.
for f in "$ROOT"/config/*.conf "$ROOT"/config/*.txt "$ROOT"/config/demo/*.conf; do
  inst="$work/$(basename "$f")"; cp "$f" "$inst"; chmod 600 "$inst"
  "$p3ctl" config check "$inst" >"$work/out" 2>"$work/err"
  rc=$?
  [ "$rc" -eq 0 ] || { fail "$f: exit $rc"; cat "$work/err"; continue; }
  grep -q '^role = "\(primary\|secondary\)";$' "$work/out" || fail "$f: no role in the output"
  grep -q '^remotes = (' "$work/out" || fail "$f: no remotes in the output"
  if grep -v ': \(warning P3-W0[14][0-9][0-9]\|info P3-I01[0-9][0-9]\): ' "$work/err" | grep -q .; then
    fail "$f: unexpected stderr:"; cat "$work/err"
  fi
  "$p3ctl" config check --json "$inst" >"$work/json" 2>"$work/err"
  rc=$?
  [ "$rc" -eq 0 ] || fail "$f: --json: exit $rc"
  /usr/bin/python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is True, r
assert not [x for x in r["findings"] if x["severity"] == "error"], r' "$work/json" || fail "$f: --json: $(cat "$work/json")"
  [ -s "$work/err" ] && fail "$f: --json wrote to stderr: $(cat "$work/err")"
  # convert (any format) -> libconfig -> check: the same effective configuration.
  "$p3ctl" config convert "$inst" >"$work/conv.conf" 2>/dev/null || fail "$f: convert failed"
  chmod 600 "$work/conv.conf"
  "$p3ctl" config check "$work/conv.conf" >"$work/out2" 2>/dev/null || fail "$f: converted output refused"
  diff <(tail -n +2 "$work/out") <(tail -n +2 "$work/out2") >/dev/null ||
    fail "$f: converted output does not load to the same configuration"
done

# Secrets are masked by check: no key or salt hex from the static-keys examples appears. The
# examples are checked as installed, owner-only (a checkout leaves them 0644, refused below).
for f in "$ROOT"/config/static-*.conf; do
  cp "$f" "$work/sk.conf"; chmod 600 "$work/sk.conf"
  "$p3ctl" config check "$work/sk.conf" >"$work/out" 2>"$work/err" || fail "$f refused"
  for hex in $(grep -oE '(tx|rx)_(key|salt) = "[0-9a-fA-F]+"' "$f" | grep -oE '"[0-9a-fA-F]+"' | tr -d '"'); do
    if grep -qi "$hex" "$work/out" "$work/err"; then fail "$f: secret $hex shown by check"; fi
  done
  grep -q 'tx_key = "<secret: 32 bytes>";' "$work/out" || fail "$f: masked key not shown"
  grep -q 'warning P3-W0109: remote 1 uses static keys' "$work/err" || fail "$f: no P3-W0109 warning"
done

# The legacy examples convert to libconfig (no legacy keyword left).
"$p3ctl" config convert "$ROOT/config/legacy-primary.txt" >"$work/lp.conf" || fail "convert legacy-primary"
grep -q localstart "$work/lp.conf" && fail "convert output still legacy"

# A broken file: file:line: error CODE: what, exit 2, nothing on stdout.
expect_error() {  # NAME FILE-CONTENT LINE CODE [WORDS]
  local name=$1 content=$2 line=$3 code=$4 words=${5:-}
  printf '%s' "$content" >"$work/$name"
  "$p3ctl" config check "$work/$name" >"$work/out" 2>"$work/err"
  local rc=$?
  [ "$rc" -eq 2 ] || fail "$name: exit $rc, want 2"
  [ -s "$work/out" ] && fail "$name: printed a configuration"
  grep -q "^$work/$name:$line: error $code: .*$words" "$work/err" ||
    { fail "$name: want '$work/$name:$line: error $code: ...$words'"; cat "$work/err"; }
}
expect_error range.conf 'role = "primary";
local = { address = "192.0.2.1";
  rekey_wait = 0; };
' 3 P3-E0104 'out of range 1..31536000'
expect_error unknown.conf 'role = "primary";
local = { address = "192.0.2.1"; };
dataplane = { wan = { port = 1; vlan = 7; }; };
' 3 P3-E0103 "unknown keyword 'vlan'"
expect_error syntax.conf 'role = "primary";
local = { address = "192.0.2.1" ;;
' 2 P3-E0102 'syntax error'
expect_error overlap.conf 'role = "primary";
local = { address = "192.0.2.1"; };
remotes = ( { id = 1; address = "192.0.2.2"; subnets = [ "10.0.0.0/8" ]; },
            { id = 2; address = "192.0.2.3"; subnets = [ "10.1.0.0/16" ]; } );
' 4 P3-E0107 'overlaps'
expect_error dup.txt 'localstart
address 192.0.2.1
localend
1/address 192.0.2.2
1/subnet1 10.2.0.0
1/mask1 255.255.255.0
1/address 192.0.2.3
' 7 P3-E0102 'given twice'
expect_error legacy-range.txt '# legacy
localstart
address 192.0.2.1
heartbeat_time 0
localend
' 4 P3-E0104 'out of range 1..3600'

# What p3d would start with but not forward with, or refuse when it builds the dataplane:
# each an error at its line, exit 2 (P3-E0137..0142), and the same as one JSON object.
fwd() {  # LOCAL-EXTRA LAN WAN DATAPLANE-EXTRA SUBNET
  printf 'role = "primary";\nlocal = { address = "192.0.2.1"; %s };\ndataplane = {\n  lan = { %s };\n  wan = { %s };\n  %s\n};\nremotes = (\n  { id = 1; address = "198.51.100.7"; subnets = [ "%s" ]; }\n);\n' "$@"
}
gw='address = "192.0.2.1/24"; gateway = "192.0.2.254";'
expect_error nolan.conf "$(fwd '' '' "$gw" '' 10.2.0.0/24)" 4 P3-E0137 'dataplane.lan.address missing'
expect_error nogw.conf "$(fwd '' 'address = "10.1.0.1/24";' 'address = "192.0.2.1/24";' '' 10.2.0.0/24)" 9 P3-E0138 \
  'remote 1: address 198.51.100.7 is not on the WAN link 192.0.2.1/24 and dataplane.wan.gateway is not set'
expect_error wanaddr.conf "$(fwd '' 'address = "10.1.0.1/24";' 'address = "192.0.2.9/24"; gateway = "192.0.2.254";' '' 10.2.0.0/24)" 2 \
  P3-E0139 'local.address 192.0.2.1 is not the WAN port'"'"'s address 192.0.2.9/24'
expect_error ownlan.conf "$(fwd '' 'address = "10.1.0.1/24";' "$gw" '' 10.0.0.0/8)" 9 P3-E0140 \
  'subnet 10.0.0.0/8 overlaps our own LAN 10.1.0.1/24'
expect_error rxq.conf "$(fwd '' 'address = "10.1.0.1/24";' "$gw" 'mbufs = 1023; rx_queues = 16;' 10.2.0.0/24)" 6 P3-E0142 \
  'dataplane.rx_queues 16 on both ports need at least 2048 packet buffers'
expect_error burst.conf "$(fwd '' 'address = "10.1.0.1/24";' "$gw" 'burst = 128;' 10.2.0.0/24)" 6 P3-E0104 \
  'burst 128 out of range 1..64'
fwd '' 'address = "10.1.0.1/24";' "$gw" '' 10.2.0.0/24 >"$work/fwd.conf"
"$p3ctl" config check "$work/fwd.conf" >/dev/null 2>"$work/err" || { fail "a configuration that forwards is refused"; cat "$work/err"; }
"$p3ctl" config check --json "$work/nogw.conf" >"$work/json" 2>"$work/err"
rc=$?
[ "$rc" -eq 2 ] || fail "--json of a refused file: exit $rc, want 2"
/usr/bin/python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is False and r["file"] == sys.argv[2], r
assert r["findings"][0] == {"code": "P3-E0138", "severity": "error", "file": sys.argv[2], "line": 9,
  "message": "remote 1: address 198.51.100.7 is not on the WAN link 192.0.2.1/24 and dataplane.wan.gateway is not set: it cannot be reached"}, r
# and the remote without a credential (no psk_file, no certificate), as p3d logs it
assert r["findings"][1:] == [{"code": "P3-W0418", "severity": "warning", "file": sys.argv[2], "line": 9,
  "message": "remote 1 has neither its own psk_file nor a local certificate: it cannot be set up"}], r
' "$work/json" "$work/nogw.conf" || fail "--json of nogw.conf: $(cat "$work/json")"
"$p3ctl" --json config check "$work/syntax.conf" >"$work/json" 2>/dev/null
[ $? -eq 2 ] && grep -q '"ok":false.*"code":"P3-E0102","severity":"error"' "$work/json" || fail "--json of a syntax error: $(cat "$work/json")"

# The line format's role is stated: an info line with its reason and line.
cp "$ROOT/config/legacy-secondary.txt" "$work/ls.txt"
"$p3ctl" config check "$work/ls.txt" >/dev/null 2>"$work/err" || fail "legacy-secondary refused"
grep -q "^$work/ls.txt:[0-9]*: info P3-I0141: read as a secondary ('[0-9/]*port' is a secondary's keyword)" "$work/err" ||
  { fail "legacy-secondary: its role is not stated"; cat "$work/err"; }

# Key files (a remote's own psk_file): 0644 refused at its line, 0600 accepted, absent only a
# warning, a symbolic link refused, fewer than 16 bytes refused; one local.psk_file for
# every remote refused with what to write instead.
printf 'a secret of 16+ bytes\n' >"$work/psk"
chmod 644 "$work/psk"
keymode='role = "primary";
local = { address = "192.0.2.1"; }; dataplane = { lan = { address = "10.1.0.1/24"; }; wan = { address = "192.0.2.1/24"; }; };
remotes = ( { id = 1; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ];
  psk_file = "psk"; } );
'
expect_error keymode.conf "$keymode" 4 P3-E0108 'mode 0644'
chmod 600 "$work/psk"
"$p3ctl" config check "$work/keymode.conf" >/dev/null 2>"$work/err" || fail "0600 psk_file refused"
[ -s "$work/err" ] && { fail "0600 psk_file: unexpected stderr"; cat "$work/err"; }
ln -s "$work/psk" "$work/psk-link"
expect_error link.conf "${keymode/\"psk\"/\"psk-link\"}" 4 P3-E0116 'symbolic link'
printf 'short\n' >"$work/psk-short"; chmod 600 "$work/psk-short"
expect_error short.conf "${keymode/\"psk\"/\"psk-short\"}" 4 P3-E0114 'fewer than 16'
expect_error shared.conf "${keymode/\"192.0.2.1\"; \}/\"192.0.2.1\"; psk_file = \"psk\"; \}}" 2 P3-E0113 'give each remote its own'
rm -f "$work/psk"
"$p3ctl" config check "$work/keymode.conf" >/dev/null 2>"$work/err" || fail "absent psk_file refused"
grep -q ":4: warning P3-W0110: remote 1: psk_file" "$work/err" || fail "absent psk_file: no P3-W0110"

# Static keys: never the same key both ways; only in an owner-only file (the keys are in it).
sk() {  # RX_KEY
  printf 'role = "primary";\nlocal = { address = "192.0.2.1"; }; dataplane = { lan = { address = "10.1.0.1/24"; }; wan = { address = "192.0.2.1/24"; }; };\nremotes = ( { id = 1; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ];\n  static_keys = { tx_id = 5; tx_key = "00112233445566778899aabbccddeeff"; tx_salt = "01020304";\n    rx_id = 6; rx_key = "%s"; rx_salt = "0a0b0c0d"; }; } );\n' "$1"
}
expect_error samekey.conf "$(sk 00112233445566778899aabbccddeeff)" 4 P3-E0120 'tx_key equals rx_key'
expect_error skmode.conf "$(sk ffeeddccbbaa99887766554433221100)" 4 P3-E0122 'mode 0644: readable by group or others'
chmod 640 "$work/skmode.conf"
"$p3ctl" config check "$work/skmode.conf" >/dev/null 2>"$work/err"
[ $? -eq 2 ] && grep -q ":4: error P3-E0122: .*mode 0640" "$work/err" || fail "static keys in a 0640 file: want exit 2 and P3-E0122"
chmod 600 "$work/skmode.conf"
"$p3ctl" config check "$work/skmode.conf" >/dev/null 2>"$work/err" || { fail "static keys in a 0600 file refused"; cat "$work/err"; }

# An unreadable path and usage errors: exit 2.
"$p3ctl" config check "$work/none.conf" >/dev/null 2>"$work/err"
[ $? -eq 2 ] && grep -q "none.conf: error P3-E0101" "$work/err" || fail "missing file: want exit 2 and P3-E0101"
"$p3ctl" config >/dev/null 2>&1
[ $? -eq 2 ] || fail "p3ctl config without arguments: want exit 2"

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
