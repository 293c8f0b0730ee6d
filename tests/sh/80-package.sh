#!/usr/bin/env bash
# The Debian package as an administrator meets it. scripts/package.sh builds it from the tree
# (reusing $BUILD); its file list has p3d in /usr/sbin, p3ctl, the man pages, the bash
# completion, the examples in /etc/p3/examples (conffiles; those with keys owner-only), the
# systemd units; Depends names DPDK's, ipsec-mb's, OpenSSL's, libconfig++'s and libcap-ng's libraries.
# Unpacked into a clean root: p3d says its version, p3ctl config check passes every shipped
# example, systemd-analyze verify passes the units, man renders the pages without a warning,
# the completion completes p3ctl's commands. Then the unpacked p3d runs as p3d.service runs
# it (NOTIFY_SOCKET, WATCHDOG_USEC, RUNTIME_DIRECTORY=/run/p3): READY=1 with a STATUS line,
# WATCHDOG=1 while it runs, STOPPING=1 on SIGTERM, and p3ctl stats from a shell finds its
# telemetry under /run/p3 without being told.
P3D_LOG_LINES=40
. "$(dirname "$0")/lib/p3d-test.sh"
for tool in dpkg-deb dpkg-gencontrol dpkg-parsechangelog; do
  command -v "$tool" >/dev/null || { echo "skip: no $tool (apt-get install dpkg-dev)"; exit 77; }
done
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }

# ---- build ----------------------------------------------------------------------------------
deb=$("$ROOT/scripts/package.sh" -B "$BUILD" -o "$work" 2>"$work/package.err" | tail -n 1) ||
  { cat "$work/package.err"; fail "scripts/package.sh: exit status $?"; }
[ -f "$deb" ] || fail "scripts/package.sh printed no .deb ($deb)"
echo "ok: built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

# ---- what it holds ---------------------------------------------------------------------------
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' >"$work/list"
has() {   # has MODE PATH: the package holds PATH, owned by root, with MODE
  grep -qxF -- "$1 root/root ./$2" "$work/list" || fail "package: no $1 root/root ./$2 in: $(grep -F "$2" "$work/list")"
}
has -rwxr-xr-x usr/sbin/p3d
has -rwxr-xr-x usr/bin/p3ctl
has -rw-r--r-- usr/share/man/man8/p3d.8.gz
has -rw-r--r-- usr/share/man/man8/p3ctl.8.gz
has -rw-r--r-- usr/share/man/man5/p3d.conf.5.gz
has -rw-r--r-- usr/share/bash-completion/completions/p3ctl
has -rw-r--r-- etc/default/p3d
for f in primary.conf secondary.conf legacy-primary.txt legacy-secondary.txt; do has -rw-r--r-- "etc/p3/examples/$f"; done
for f in static-a.conf static-b.conf; do has -rw------- "etc/p3/examples/$f"; done
unit=$(grep -oE '\./(usr/)?lib/systemd/system/p3d\.service$' "$work/list") || fail "package: no p3d.service"
grep -qE '/systemd/system/p3d-hugepages\.service$' "$work/list" || fail "package: no p3d-hugepages.service"
if grep -E '/usr/local|\.psk$|\.key$' "$work/list"; then fail "package: files under /usr/local or key files"; fi
dpkg-deb -f "$deb" Depends >"$work/depends"
for lib in librte-eal23 librte-ethdev23 libipsec-mb1 libssl3 'libconfig\+\+9v5' libcap-ng0 adduser; do
  grep -qE "(^|, )$lib( |,|$)" "$work/depends" || fail "Depends lacks $lib: $(cat "$work/depends")"
done
dpkg-deb -I "$deb" conffiles >"$work/conffiles" || fail "package: no conffiles"
for f in /etc/default/p3d /etc/p3/examples/primary.conf /etc/p3/examples/static-a.conf; do
  grep -qxF "$f" "$work/conffiles" || fail "conffiles lack $f"
done
dpkg-deb -I "$deb" postinst | grep -q 'addgroup --system --quiet p3$' || fail "postinst does not make the p3 group"
echo "ok: file list, modes, Depends ($(tr -d '\n' <"$work/depends" | cut -c1-80)...), conffiles, postinst"

# ---- unpacked into a clean root ----------------------------------------------------------------
r=$work/root
dpkg-deb -x "$deb" "$r"
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$ROOT/meson.build" | head -1)
"$r/usr/sbin/p3d" --version >"$work/version" 2>&1 || fail "unpacked p3d --version: exit $?"
grep -Eqx "p3d $version \(DPDK 22\.11.*\)" "$work/version" || fail "unpacked p3d --version: $(cat "$work/version")"
echo "ok: $(cat "$work/version")"
n=0
for f in "$r"/etc/p3/examples/*; do
  "$r/usr/bin/p3ctl" config check "$f" >"$work/check" 2>"$work/check.err" ||
    { cat "$work/check.err"; fail "p3ctl config check $f: exit $?"; }
  grep -q "^# p3 configuration (effective, from $f)" "$work/check" || fail "config check $f: no effective configuration"
  n=$((n + 1))
done
[ "$n" -eq 6 ] || fail "$n examples in /etc/p3/examples, expected 6"
echo "ok: p3ctl config check passes the $n shipped examples"

if command -v systemd-analyze >/dev/null; then
  # As installed, but the programs at their unpacked paths (verify checks that each exists)
  # and the man pages of Documentation= read from the unpacked root.
  mkdir -p "$work/units"
  for u in p3d.service p3d-hugepages.service; do
    sed "s|/usr/sbin/p3d|$r/usr/sbin/p3d|; s|/usr/bin/p3ctl|$r/usr/bin/p3ctl|" "$r/${unit%/p3d.service}/$u" >"$work/units/$u"
  done
  for u in p3d.service p3d-hugepages.service; do
    MANPATH="$r/usr/share/man" systemd-analyze verify "$work/units/$u" >"$work/verify" 2>&1 ||
      { cat "$work/verify"; fail "systemd-analyze verify $u: exit $?"; }
    if [ -s "$work/verify" ]; then cat "$work/verify"; fail "systemd-analyze verify $u: warnings"; fi
  done
  echo "ok: systemd-analyze verify passes p3d.service and p3d-hugepages.service"
else
  echo "note: no systemd-analyze: units not verified"
fi

if command -v man >/dev/null; then
  for page in man8/p3d.8 man8/p3ctl.8 man5/p3d.conf.5; do
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$r/usr/share/man/$page.gz" >"$work/man" 2>"$work/man.err" ||
      fail "man $page: exit $?"
    if [ -s "$work/man.err" ]; then cat "$work/man.err"; fail "man $page: warnings"; fi
    grep -q '^NAME' "$work/man" && grep -q '^SEE ALSO' "$work/man" || fail "man $page: no NAME or SEE ALSO"
  done
  echo "ok: man renders p3d(8), p3ctl(8), p3d.conf(5) without warnings"
fi

# The completion, as bash runs it on TAB (the unpacked p3ctl first on PATH).
complete_words() {   # complete_words WORD...: the completions of the last word
  PATH="$r/usr/bin:$PATH" bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _p3ctl; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$r/usr/share/bash-completion/completions/p3ctl" "$@" | sort | tr '\n' ' '
}
got=$(complete_words p3ctl co); [ "$got" = "config " ] || fail "completion of 'p3ctl co': '$got'"
got=$(complete_words p3ctl config c); [ "$got" = "check convert " ] || fail "completion of 'p3ctl config c': '$got'"
got=$(complete_words p3ctl --json keyarray ''); [ "$got" = "flush generate " ] || fail "completion of 'p3ctl --json keyarray': '$got'"
got=$(complete_words p3ctl --so); [ "$got" = "--socket " ] || fail "completion of 'p3ctl --so': '$got'"
got=$(complete_words p3ctl config check "$r/etc/p3/examples/sec"); [ "$got" = "$r/etc/p3/examples/secondary.conf " ] ||
  fail "completion of a file after 'config check': '$got'"
echo "ok: bash completion: commands, subcommands, options, files"

# ---- the unpacked p3d as systemd runs it --------------------------------------------------------
cat >"$work/p3d.conf" <<'CONF'
role = "primary";
local = { ip = 4; address = "192.0.2.1"; };
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; };
  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; };
  idle_backoff_us = 200;
};
remotes = ( { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; } );
CONF
# systemd's side: a datagram socket that records every message, one per line (\n as |).
python3 - "$work/notify" >"$work/notes" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
try:
    while True:
        msg = s.recv(4096).decode()
        print(msg.replace("\n", "|"), flush=True)
        if msg.startswith("STOPPING=1"):
            break
except socket.timeout:
    pass
PY
listener=$!
for _ in $(seq 50); do [ -S "$work/notify" ] && break; sleep 0.1; done
[ -S "$work/notify" ] || fail "no notification socket"
prefix=p3t80-$$
mkdir -p /run/p3
rt_cleanup() { rm -rf "/run/p3/dpdk/$prefix"; kill "$listener" 2>/dev/null; cleanup; }
trap rt_cleanup EXIT
# With the unit's CapabilityBoundingSet= and NoNewPrivileges= (setpriv sets both as systemd does):
# what the unit grants is enough for p3d to start and to drop its privileges once started.
bset=$(sed -n 's/^CapabilityBoundingSet=//p' "$r/$unit" | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
[ -n "$bset" ] || fail "p3d.service has no CapabilityBoundingSet="
NOTIFY_SOCKET=$work/notify WATCHDOG_USEC=400000 RUNTIME_DIRECTORY=/run/p3 \
  setpriv --bounding-set "-all,$bset" --no-new-privs "$r/usr/sbin/p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 \
  --vdev net_ring0 --vdev net_null0 -- -c "$work/p3d.conf" -f >"$work/log" 2>&1 &
pid=$!
wait_started "unpacked p3d"
wait_log "$work/notes" "$pid" '^READY=1' 5 "READY=1 on NOTIFY_SOCKET"
grep -qx 'READY=1|STATUS=primary, 1 worker lcore(s), 1 remote(s)' "$work/notes" ||
  fail "READY message: $(grep READY "$work/notes")"
grep -q 'P3-I0013: told systemd p3d is ready (watchdog 400 ms' "$work/log" || fail "no P3-I0013 line"
grep -q 'P3-I0016: privileges dropped in every thread: kept ipc_lock (.*), chown (.*); bounding set empty' "$work/log" ||
  fail "no P3-I0016 line under the unit's bounding set: $(grep -E 'P3-.001[6-9]' "$work/log")"
grep -qx 'CapBnd:	0000000000000000' "/proc/$pid/status" || fail "bounding set not empty: $(grep CapBnd "/proc/$pid/status")"
# From a shell (no RUNTIME_DIRECTORY), as an administrator types it.
env -u RUNTIME_DIRECTORY "$r/usr/bin/p3ctl" stats --prefix "$prefix" >"$work/stats" 2>&1 ||
  fail "p3ctl stats under RuntimeDirectory=p3: $(cat "$work/stats")"
grep -q '=' "$work/stats" || fail "p3ctl stats printed nothing: $(cat "$work/stats")"
sleep 1.2   # three watchdog intervals
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc on SIGTERM"
wait "$listener"
w=$(grep -c '^WATCHDOG=1$' "$work/notes")
[ "$w" -ge 3 ] || fail "$w WATCHDOG=1 in 1.2 s at WATCHDOG_USEC=400000: $(cat "$work/notes")"
tail -n 1 "$work/notes" | grep -qx 'STOPPING=1|STATUS=stopping' || fail "last message: $(tail -n 1 "$work/notes")"
echo "ok: under the unit's bounding set: privileges dropped, READY=1 with STATUS, $w WATCHDOG=1, STOPPING=1; p3ctl stats found /run/p3/dpdk/$prefix"
echo "PASS"
