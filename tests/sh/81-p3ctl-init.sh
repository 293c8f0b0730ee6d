#!/usr/bin/env bash
# p3ctl init, the installation script, as an administrator and as automation use it:
#   - answers on stdin: a secondary's addresses, a generated key; an answer that is not an
#     address is asked again with the reason; the files pass config check; the key is 0600 in
#     a 0700 directory;
#   - flags only (--yes): a primary and a secondary with a given key file, no question asked;
#   - an existing file is never replaced without --force; a bad flag is exit 2.
set -u
BUILD=${BUILD:-build}
p3ctl=$BUILD/control/p3ctl
[ -x "$p3ctl" ] || { echo "FAIL: $p3ctl not built"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
checks() {  # FILE: passes config check with no error
  "$p3ctl" config check "$1" >/dev/null 2>"$work/check.err" || { fail "$1 does not pass config check"; cat "$work/check.err"; }
}

# 1. Interactive secondary: role, WAN (first a bad answer), gateway, LAN, subnets, primary (a bad
#    answer first), key generated, confirmation.
printf '%s\n' secondary 192.0.2.300/24 192.0.2.2/24 192.0.2.254 10.2.0.1/24 none primary.example 192.0.2.1 '' y |
  "$p3ctl" init --out "$work/s1" >"$work/out" 2>"$work/err"
rc=$?
[ "$rc" -eq 0 ] || { fail "interactive secondary: exit $rc"; cat "$work/out" "$work/err"; }
grep -q "'192.0.2.300/24' is not an address with its prefix length (e.g. 192.0.2.2/24 or 2001:db8::2/64); please answer again." "$work/out" ||
  { fail "a bad WAN address is not asked again with its reason"; cat "$work/out"; }
grep -q "'primary.example' is not an IPv4 or IPv6 address (e.g. 192.0.2.1); please answer again." "$work/out" ||
  fail "a bad primary address is not asked again with its reason"
checks "$work/s1/p3d.conf"
grep -q '^role = "secondary";' "$work/s1/p3d.conf" || fail "interactive: role not written"
grep -q 'wan = { port = 1; address = "192.0.2.2/24"; gateway = "192.0.2.254"; };' "$work/s1/p3d.conf" || fail "interactive: WAN not written"
grep -q "remotes = ( { address = \"192.0.2.1\"; psk_file = \"$work/s1/secrets/primary.psk\"; } );" "$work/s1/p3d.conf" ||
  { fail "interactive: the primary and its key not written"; cat "$work/s1/p3d.conf"; }
[ "$(stat -c %a "$work/s1/secrets")" = 700 ] || fail "secrets directory mode $(stat -c %a "$work/s1/secrets"), want 700"
[ "$(stat -c %a "$work/s1/secrets/primary.psk")" = 600 ] || fail "key mode $(stat -c %a "$work/s1/secrets/primary.psk"), want 600"
[ "$(head -c 44 "$work/s1/secrets/primary.psk" | base64 -d 2>/dev/null | wc -c)" -eq 32 ] || fail "the key is not 32 random bytes (base64)"
grep -q 'p3ctl config check .*: ok' "$work/out" || fail "init did not say the file passes config check"

# 2. The same again: nothing replaced without --force (the key stays), exit 2; with --force replaced.
cp "$work/s1/secrets/primary.psk" "$work/key.before"
"$p3ctl" init --yes --role secondary --wan 192.0.2.2/24 --gateway none --lan 10.2.0.1/24 --subnets none \
  --primary 192.0.2.1 --psk-file generate --out "$work/s1" </dev/null >"$work/out" 2>"$work/err"
rc=$?
[ "$rc" -eq 2 ] || fail "existing files: exit $rc, want 2"
grep -q 'p3d.conf: exists (--force replaces it); nothing written' "$work/err" || { fail "existing files: no message"; cat "$work/err"; }
cmp -s "$work/key.before" "$work/s1/secrets/primary.psk" || fail "the existing key was replaced without --force"
"$p3ctl" init --yes --force --role secondary --wan 192.0.2.2/24 --gateway none --lan 10.2.0.1/24 --subnets none \
  --primary 192.0.2.1 --psk-file generate --out "$work/s1" </dev/null >"$work/out" 2>"$work/err" || fail "--force: exit $?"
cmp -s "$work/key.before" "$work/s1/secrets/primary.psk" && fail "--force did not write a new key"
checks "$work/s1/p3d.conf"

# 3. Flags only: a primary (IPv4, a subnet behind a LAN gateway) and a secondary with its own key file.
"$p3ctl" init --yes --role primary --wan 192.0.2.1/24 --gateway 192.0.2.254 --lan 10.1.0.1/24 \
  --subnets 10.1.64.0/20,10.1.128.0/20 --lan-gateway 10.1.0.254 --out "$work/p" </dev/null >"$work/out" 2>"$work/err" ||
  { fail "flags-only primary: exit $?"; cat "$work/err"; }
checks "$work/p/p3d.conf"
grep -q 'subnets = \[ "10.1.64.0/20", "10.1.128.0/20" \];' "$work/p/p3d.conf" || fail "primary: subnets not written"
[ -e "$work/p/secrets" ] && fail "primary: a secrets directory without a secret"
install -m 600 /dev/null "$work/given.psk"; head -c 32 /dev/urandom | base64 >"$work/given.psk"
"$p3ctl" init --yes --role secondary --wan 2001:db8::2/64 --gateway none --lan fd00:2::1/64 --subnets none \
  --primary 2001:db8::1 --psk-file "$work/given.psk" --out "$work/s6" </dev/null >"$work/out" 2>"$work/err" ||
  { fail "flags-only IPv6 secondary: exit $?"; cat "$work/err"; }
checks "$work/s6/p3d.conf"
grep -q "psk_file = \"$work/given.psk\"" "$work/s6/p3d.conf" || fail "the given key file is not named"

# 4. A bad flag: exit 2 with the flag and the reason, nothing written, nothing asked.
"$p3ctl" init --yes --role secondary --wan 192.0.2.2 --gateway none --lan 10.2.0.1/24 --subnets none \
  --primary 192.0.2.1 --psk-file generate --out "$work/bad" </dev/null >"$work/out" 2>"$work/err"
rc=$?
[ "$rc" -eq 2 ] || fail "bad --wan: exit $rc, want 2"
grep -q "p3ctl: init: --wan: '192.0.2.2' is not an address with its prefix length" "$work/err" || { fail "bad --wan: message"; cat "$work/err"; }
[ -e "$work/bad" ] && fail "bad --wan: something was written"
# The end of the input before every answer: exit 2, nothing written.
printf 'secondary\n' | "$p3ctl" init --out "$work/eof" >/dev/null 2>"$work/err"
[ $? -eq 2 ] && grep -q "no answer for 'WAN address" "$work/err" || fail "end of input: want exit 2 and a message"
[ -e "$work/eof" ] && fail "end of input: something was written"

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
