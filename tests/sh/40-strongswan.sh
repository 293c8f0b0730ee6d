#!/bin/bash
# 40-strongswan.sh - a standard IKEv2 implementation as the peer of our setup exchange.
#
#   [ns p3sw40s]  charon (strongSwan 5.9, kernel-libipsec)        [ns p3sw40p]  p3-setup-peer
#   192.0.2.2  sec.test  initiator ------ veth 192.0.2.0/24 ------ 192.0.2.1:5653  pri.test  primary
#   child SA 10.2.0.0/24 <-> 10.1.0.0/24                           remote 1 = sec.test, 10.2.0.0/24
#
# For each authentication mode (PSK; certificates: ECDSA P-256 primary, RSA-2048 secondary,
# both from a CA made here with openssl) charon initiates to our primary (the setup exchange
# alone, tests/control/setup_peer.cpp), and the test checks:
#   - p3-setup-peer reports the session up with the right peer, P3 IDs and key type;
#   - `swanctl --list-sas` shows the IKE SA ESTABLISHED and the child SA INSTALLED with
#     AES_GCM_16-128, its SPIs being the P3 IDs both sides chose;
#   - the first data keys we derived (KEYMAT) equal the ESP keys charon derived (its log);
#   - tshark dissects every captured datagram as ISAKMP/IKEv2 with no malformed packet or
#     expert warning.
# Exit 0 = pass, 77 = skipped (what is missing is printed), anything else = fail.
set -u
BUILD=${BUILD:-$(dirname "$0")/../../build}
PEER=$BUILD/tests/control/p3-setup-peer
. "$(dirname "$0")/lib/charon.sh"
NS_P=p3sw40p; NS_S=p3sw40s
OUT=$(mktemp -d /tmp/p3-40-strongswan.XXXXXX)
PIDS=()

log() { printf '[40-strongswan] %s\n' "$*" >&2; }
skip() { log "SKIP: $*"; exit 77; }
fail() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -x "$PEER" ] || skip "$PEER not built"
for b in "$CHARON" swanctl ip tcpdump tshark unshare openssl; do
  command -v "$b" >/dev/null 2>&1 || [ -x "$b" ] || skip "missing $b (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins tcpdump tshark)"
done
[ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] || skip "kernel-libipsec plugin missing (libcharon-extra-plugins)"
[ -c /dev/net/tun ] || skip "/dev/net/tun missing"
for ns in $NS_P $NS_S; do [ -e "/run/netns/$ns" ] && skip "netns $ns exists (another run?)"; done

cleanup() {
  for pid in "${PIDS[@]}" ${CHARON_PID:-}; do
    kill -TERM "$pid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  done
  ip netns del $NS_P 2>/dev/null; ip netns del $NS_S 2>/dev/null
  if [ -z "${KEEP_OUT:-}" ]; then rm -rf "$OUT"; else log "artifacts in $OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add $NS_P || fail "netns"; ip netns add $NS_S || fail "netns"
for ns in $NS_P $NS_S; do
  ip -n $ns link set lo up
  ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n $NS_P link add wan type veth peer name wan netns $NS_S || fail "veth"
ip -n $NS_P addr add 192.0.2.1/24 dev wan; ip -n $NS_S addr add 192.0.2.2/24 dev wan
ip -n $NS_S addr add 10.2.0.1/24 dev lo
ip -n $NS_P link set wan up; ip -n $NS_S link set wan up

# --- credentials --------------------------------------------------------------------------
PSK="test-psk-not-a-secret-just-a-test"
umask 077
printf '%s\n' "$PSK" > "$OUT/psk.secret"
(
  cd "$OUT" || exit 1
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null &&
  openssl req -x509 -new -key ca.key -subj "/CN=p3 interop CA" -days 2 -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null &&
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out pri.key 2>/dev/null &&
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sec.key 2>/dev/null &&
  for n in pri sec; do
    openssl req -new -key $n.key -subj "/CN=$n.test" -out $n.csr 2>/dev/null &&
    printf 'subjectAltName=DNS:%s.test\nbasicConstraints=critical,CA:FALSE\n' $n > $n.ext &&
    openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out $n.pem -extfile $n.ext 2>/dev/null || exit 1
  done
) || fail "openssl could not make the test PKI"
umask 022

# --- one run per authentication mode ------------------------------------------------------
run_mode() { # mode: psk | cert
  local mode=$1 d=$OUT/$1
  mkdir -p "$d/run" "$d/swanctl/x509ca" "$d/swanctl/x509" "$d/swanctl/private"
  # A pre-shared key is the remote's own (remotes[].psk_file); certificates are local.
  local creds="" remote_creds=""
  if [ "$mode" = psk ]; then
    remote_creds="psk_file = \"$OUT/psk.secret\";"
  else
    creds="certificate = \"$OUT/pri.pem\"; private_key = \"$OUT/pri.key\"; ca = \"$OUT/ca.pem\";"
    cp "$OUT/ca.pem" "$d/swanctl/x509ca/"; cp "$OUT/sec.pem" "$d/swanctl/x509/"; cp "$OUT/sec.key" "$d/swanctl/private/"
  fi
  cat > "$d/p3.conf" <<EOF
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; identity = "pri.test"; $creds };
dataplane = { lan = { port = 0; address = "10.1.0.1/24"; }; wan = { port = 1; address = "192.0.2.1/24"; }; };
remotes = ( { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ];
              key_type = "AES128"; identity = "sec.test"; $remote_creds } );
EOF
  if [ "$mode" = psk ]; then charon_conf "$d" "psk $PSK" "  retransmit_tries = 2"
  else charon_conf "$d" cert "  retransmit_tries = 2"; fi
  ip netns exec $NS_P tcpdump -n -i wan -U -w "$d/wan.pcap" udp 2>"$d/tcpdump.err" &
  PIDS+=($!)
  ip netns exec $NS_P "$PEER" -c "$d/p3.conf" --sessions 1 --timeout 40 --linger 3 --keys-out "$d/p3.keys" \
    > "$d/peer.out" 2> "$d/peer.err" &
  local peer_pid=$!; PIDS+=($peer_pid)
  charon_diag() { cat "$d/peer.err" >&2; }
  charon_up "$d" $NS_S "$mode"
  local charon_pid=$CHARON_PID uri=unix://$d/charon.vici; PIDS+=($charon_pid); CHARON_PID=
  wait $peer_pid; local prc=$?
  cat "$d/peer.out" >&2
  [ $prc = 0 ] || { cat "$d/peer.err" >&2; fail "$mode: p3-setup-peer exit $prc"; }
  grep -q 'up remote=1 peer=sec.test .* key=aes128 ' "$d/peer.out" || fail "$mode: no session line from p3-setup-peer"
  charon_check_sas "$d" "$mode"
  # SPIs: charon's inbound SPI is the P3 ID it receives on = what we send with (tx), and back.
  local rx tx spi_in spi_out
  rx=$(sed -n 's/.* rx=0x\([0-9a-f]*\) .*/\1/p' "$d/peer.out"); tx=$(sed -n 's/.* tx=0x\([0-9a-f]*\) .*/\1/p' "$d/peer.out")
  spi_in=$(sed -n 's/^ *in  *\([0-9a-f]\{8\}\),.*/\1/p' "$d/sas.txt" | head -1)
  spi_out=$(sed -n 's/^ *out  *\([0-9a-f]\{8\}\),.*/\1/p' "$d/sas.txt" | head -1)
  [ -n "$rx" ] && [ -n "$tx" ] && [ -n "$spi_in" ] && [ -n "$spi_out" ] || fail "$mode: P3 IDs or SPIs not found"
  [ "$((16#$spi_in))" = "$((16#$tx))" ] || fail "$mode: charon's inbound SPI $spi_in is not our tx P3 ID $tx"
  [ "$((16#$spi_out))" = "$((16#$rx))" ] || fail "$mode: charon's outbound SPI $spi_out is not our rx P3 ID $rx"
  if [ "$mode" = cert ]; then
    grep -q 'authentication of .pri.test. with ECDSA' "$d/charon.log" || fail "cert: charon did not verify our ECDSA signature"
  fi
  # KEYMAT: charon's ESP keys (key||salt) = our first data keys (rx = initiator->responder).
  /usr/bin/python3 - "$d/charon.log" "$d/p3.keys" <<'PY' || fail "$mode: data keys differ from charon's ESP keys"
import re, sys
log = open(sys.argv[1]).read()
def blob(label):
    m = re.search(label + r" key => (\d+) bytes @ \S+\n((?:.*\n){1,4})", log)
    if not m: sys.exit("no '%s' key in charon's log" % label)
    n = int(m.group(1)); hx = ""
    for line in m.group(2).splitlines():
        mm = re.match(r".*?\s(\d+):\s((?:[0-9A-F]{2} ?)+)", line)
        if not mm: break
        hx += mm.group(2).replace(" ", "")
    return hx[: 2 * n].lower()
ki, kr = blob("encryption initiator"), blob("encryption responder")
_, rx, tx = open(sys.argv[2]).read().split()
if (rx, tx) != (ki, kr): sys.exit("keys differ: charon i->r %s r->i %s, p3 rx %s tx %s" % (ki[:8], kr[:8], rx[:8], tx[:8]))
print("data keys equal charon's ESP keys (both directions)", file=sys.stderr)
PY
  swanctl --terminate --ike p3 --timeout 3 --uri "$uri" >/dev/null 2>&1
  sleep 0.5
  kill -INT "${PIDS[-3]}" 2>/dev/null; sleep 0.5
  kill -TERM $charon_pid 2>/dev/null; wait $charon_pid 2>/dev/null
  # tshark: every datagram IKEv2 (a charon that floated to 4500 puts the non-ESP marker first).
  tshark -n -r "$d/wan.pcap" -d udp.port==5653,isakmp -d udp.port==4500,udpencap \
    -T fields -e frame.number -e frame.protocols > "$d/tshark.txt" 2>"$d/tshark.err"
  tshark -n -r "$d/wan.pcap" -d udp.port==5653,isakmp -d udp.port==4500,udpencap -V > "$d/tshark-v.txt" 2>>"$d/tshark.err"
  local total ike bad
  total=$(wc -l < "$d/tshark.txt")
  ike=$(grep -c 'isakmp' "$d/tshark.txt")
  bad=$(grep -ciE 'malformed|expert.*(warn|error)' "$d/tshark-v.txt")
  log "$mode: tshark: $total datagrams, $ike IKE, $bad malformed/warnings"
  [ "$total" -ge 4 ] || fail "$mode: expected at least 4 datagrams in the capture"
  [ "$ike" = "$total" ] || { cat "$d/tshark.txt" >&2; fail "$mode: datagrams tshark does not see as IKE"; }
  [ "$bad" = 0 ] || { grep -iE -B5 'malformed|expert' "$d/tshark-v.txt" | head -40 >&2; fail "$mode: tshark warnings"; }
  grep -q 'Exchange type: IKE_AUTH (35)' "$d/tshark-v.txt" || fail "$mode: no IKE_AUTH dissected"
  log "$mode: PASS"
}

run_mode psk
run_mode cert
log "PASS"
exit 0
