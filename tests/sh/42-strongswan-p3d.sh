#!/bin/bash
# 42-strongswan-p3d.sh - a standard IKEv2 initiator sets up a session with a real p3d primary.
#
#   [ns p3t42-N-s]  charon (strongSwan 5.9, kernel-libipsec)      [ns p3t42-N-p]  p3d primary
#   192.0.2.2:4500  sec.test  initiator ---- veth 192.0.2.0/24 ---- 192.0.2.1:5653  pri.test
#   child SA 10.2.0.0/24 <-> 10.1.0.0/24                           remote 1 = sec.test, 10.2.0.0/24
#
# p3d runs on net_af_packet over the veth (its WAN answers ARP for 192.0.2.1; the LAN port is a
# veth with nothing behind it). charon initiates with a pre-shared key from port 4500 to
# p3d's custom local.port for a P3 remote (a P3 session set up by a standard IKEv2 stack; the
# stock configuration on 500/4500 with ESP remotes is tests/sh/70-73), and the test checks:
#   - `swanctl --initiate` completes IKE_SA_INIT and IKE_AUTH;
#   - `swanctl --list-sas` shows the IKE SA ESTABLISHED and the child SA INSTALLED with
#     AES_GCM_16-128 and the configured traffic selectors;
#   - p3d logs the session up (P3-I0401) with remote 1 and the peer identity sec.test, and
#     the child SA's SPIs are the P3 IDs p3d logs (charon in = p3d tx, charon out = p3d rx);
#   - p3d stops with status 0 on SIGTERM; nothing is left behind.
# Exit 0 = pass, 77 = skipped (what is missing is printed), anything else = fail.
set -u
BUILD=${BUILD:-$(dirname "$0")/../../build}
p3d=$BUILD/p3d/p3d
. "$(dirname "$0")/lib/charon.sh"
tag=p3t42-$$
NS_P=$tag-p; NS_S=$tag-s
OUT=$(mktemp -d /tmp/p3t42.XXXXXX)
pid_p=

log() { printf '[42-strongswan-p3d] %s\n' "$*" >&2; }
skip() { log "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || { rm -rf "$OUT"; skip "needs root (network namespaces)"; }
[ -x "$p3d" ] || { rm -rf "$OUT"; log "FAIL: $p3d not built"; exit 1; }
for b in "$CHARON" swanctl ip nsenter ethtool unshare; do
  command -v "$b" >/dev/null 2>&1 || [ -x "$b" ] || { rm -rf "$OUT"; skip "missing $b (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins iproute2 ethtool util-linux)"; }
done
[ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] || { rm -rf "$OUT"; skip "kernel-libipsec plugin missing (libcharon-extra-plugins)"; }
[ -c /dev/net/tun ] || { rm -rf "$OUT"; skip "/dev/net/tun missing"; }

stop_pid() {  # TERM, up to 2 s, then KILL
  kill -TERM "$1" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
cleanup() {
  local p
  for p in ${CHARON_PID:-} $pid_p; do stop_pid "$p"; done
  ip netns del "$NS_P" 2>/dev/null; ip netns del "$NS_S" 2>/dev/null
  rm -rf "/var/run/dpdk/$tag"
  if [ -z "${KEEP_OUT:-}" ]; then rm -rf "$OUT"; else log "artifacts in $OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() {
  log "FAIL: $*"
  log "---- p3d log (last 40 lines)"; tail -n 40 "$OUT/p3d.log" >&2 2>/dev/null
  log "---- charon log (last 30 lines)"; tail -n 30 "$OUT/charon.log" >&2 2>/dev/null
  exit 1
}

ip netns add "$NS_P" 2>/dev/null || skip "cannot create network namespaces"
ip netns add "$NS_S" || fail "ip netns add $NS_S"
ip link add pWan netns "$NS_P" type veth peer name sWan netns "$NS_S" 2>/dev/null || skip "cannot create veth pairs"
ip link add pLan netns "$NS_P" type veth peer name pLanx netns "$NS_P" || fail "veth"
for ns in $NS_P $NS_S; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
# p3d owns its interfaces (no kernel address); offloads off, so every frame on a veth is complete.
for pair in "$NS_P pWan" "$NS_P pLan" "$NS_P pLanx" "$NS_S sWan"; do
  set -- $pair
  ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
  ip -n "$1" link set "$2" up
done
ip -n "$NS_S" addr add 192.0.2.2/24 dev sWan
ip -n "$NS_S" addr add 10.2.0.1/24 dev lo

# --- the p3d primary ----------------------------------------------------------------------
PSK="p3 test key: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
umask 077
printf '%s\n' "$PSK" > "$OUT/psk"
umask 022
chmod 600 "$OUT/psk"
cat > "$OUT/p3.conf" <<EOF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; identity = "pri.test"; };
dataplane = {
  wan = { port = 0; address = "192.0.2.1/24"; };
  lan = { port = 1; address = "10.1.0.1/24"; };
  idle_backoff_us = 50; mbufs = 4095;
};
remotes = ( { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ];
              key_type = "AES128"; identity = "sec.test"; psk_file = "$OUT/psk"; } );
EOF
# Through nsenter, which execs: $! is p3d itself (SIGTERM reaches it, wait gives its status).
# EAL's runtime directory lives in our temp dir (RUNTIME_DIRECTORY), not /var/run/dpdk, where a
# concurrent run's cleanup of /var/run/dpdk/p3* could remove it under p3d.
mkdir -p "$OUT/rt"
RUNTIME_DIRECTORY=$OUT/rt nsenter --net="/run/netns/$NS_P" -- "$p3d" --no-huge -m 512 --no-pci --file-prefix "$tag" --lcores '0@0' \
  --vdev net_af_packet0,iface=pWan --vdev net_af_packet1,iface=pLan \
  -- -c "$OUT/p3.conf" -f > "$OUT/p3d.log" 2>&1 &
pid_p=$!
. "$(dirname "$0")/lib/wait.sh"
wait_for() { wait_log "$OUT/p3d.log" "$pid_p" "$1" "$2" "p3d: $3"; }  # pattern seconds what
wait_for 'P3-I0001' 15 "start"

# --- charon -------------------------------------------------------------------------------
charon_conf "$OUT" "psk $PSK" "  retransmit_tries = 3
  retransmit_timeout = 1.0" "    local_port = 4500"
charon_up "$OUT" "$NS_S" "charon"
charon_check_sas "$OUT" "charon"
grep -Eq '^ +local +.sec\.test. @ 192\.0\.2\.2\[4500\]' "$OUT/sas.txt" || fail "charon's side is not sec.test @ 192.0.2.2[4500]"
grep -Eq '^ +remote +.pri\.test. @ 192\.0\.2\.1\[5653\]' "$OUT/sas.txt" || fail "p3d's side is not pri.test @ 192.0.2.1[5653]"

# p3d names the session: remote 1 and the identity charon authenticated with.
wait_for 'P3-I0401: setup with remote 1 (sec.test' 5 "session-up line (P3-I0401) for sec.test"
grep -m1 'P3-I0401' "$OUT/p3d.log" >&2
# The child SA's SPIs are the P3 IDs p3d chose and was given: charon's inbound SPI is what p3d
# sends with (tx), its outbound SPI what p3d receives on (rx).
rx=$(sed -n 's/.*P3-I0401:.* P3 ID rx 0x\([0-9a-f]*\) tx 0x\([0-9a-f]*\).*/\1/p' "$OUT/p3d.log" | head -1)
tx=$(sed -n 's/.*P3-I0401:.* P3 ID rx 0x\([0-9a-f]*\) tx 0x\([0-9a-f]*\).*/\2/p' "$OUT/p3d.log" | head -1)
spi_in=$(sed -n 's/^ *in  *\([0-9a-f]\{8\}\),.*/\1/p' "$OUT/sas.txt" | head -1)
spi_out=$(sed -n 's/^ *out  *\([0-9a-f]\{8\}\),.*/\1/p' "$OUT/sas.txt" | head -1)
[ -n "$rx" ] && [ -n "$tx" ] && [ -n "$spi_in" ] && [ -n "$spi_out" ] || fail "P3 IDs or SPIs not found"
[ "$((16#$spi_in))" = "$((16#$tx))" ] || fail "charon's inbound SPI $spi_in is not p3d's tx P3 ID $tx"
[ "$((16#$spi_out))" = "$((16#$rx))" ] || fail "charon's outbound SPI $spi_out is not p3d's rx P3 ID $rx"

# --- stop ---------------------------------------------------------------------------------
swanctl --terminate --ike p3 --timeout 3 --uri "unix://$OUT/charon.vici" >/dev/null 2>&1
stop_pid "$CHARON_PID"; CHARON_PID=
kill -TERM "$pid_p"; wait "$pid_p"; rc=$?; pid_p=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
grep -q 'P3-I0002' "$OUT/p3d.log" || fail "p3d did not log its stop"
ip netns del "$NS_P" || fail "ip netns del $NS_P"
ip netns del "$NS_S" || fail "ip netns del $NS_S"
[ -e "$OUT/rt/dpdk/$tag" ] || fail "no EAL runtime directory $OUT/rt/dpdk/$tag (RUNTIME_DIRECTORY ignored?)"
rm -rf "$OUT/rt/dpdk/$tag"
[ "$(ip netns list | grep -c "^$tag-")" -eq 0 ] || fail "namespaces left"
[ ! -e "/var/run/dpdk/$tag" ] && [ ! -e "$OUT/rt/dpdk/$tag" ] || fail "DPDK runtime directory left"
log "PASS: charon set up IKE SA and child SA with p3d by PSK; p3d logged the session with sec.test; clean stop"
exit 0
