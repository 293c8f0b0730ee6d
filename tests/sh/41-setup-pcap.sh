#!/bin/bash
# 41-setup-pcap.sh - our own initiator and responder on the wire, dissected by tshark.
#
#   [ns p3setup41]  lo: 127.0.0.1
#     p3-setup-peer (secondary, sec.test, :5654)  ---- UDP ---->  p3-setup-peer (primary, pri.test, :5653)
#
# Checks: both sides report the session up (AES-256 key type pushed), with crossed P3 IDs and
# the same first data keys; tshark dissects every datagram as IKEv2 (IKE_SA_INIT with our
# proposal of several transforms, IKE_AUTH encrypted) without a malformed packet or expert
# warning. Exit 0 = pass, 77 = skipped (what is missing is printed), anything else = fail.
set -u
BUILD=${BUILD:-$(dirname "$0")/../../build}
PEER=$BUILD/tests/control/p3-setup-peer
NS=p3setup41
OUT=$(mktemp -d /tmp/p3-41-setup-pcap.XXXXXX)
PIDS=()
log() { printf '[41-setup-pcap] %s\n' "$*" >&2; }
skip() { log "SKIP: $*"; exit 77; }
fail() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (network namespace)"
[ -x "$PEER" ] || skip "$PEER not built"
for b in ip tcpdump tshark; do command -v $b >/dev/null 2>&1 || skip "missing $b (apt-get install iproute2 tcpdump tshark)"; done
[ -e "/run/netns/$NS" ] && skip "netns $NS exists (another run?)"

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  ip netns del $NS 2>/dev/null
  if [ -z "${KEEP_OUT:-}" ]; then rm -rf "$OUT"; else log "artifacts in $OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add $NS || fail "netns"
ip -n $NS link set lo up

umask 077
printf 'a pre-shared key for the pcap test\n' > "$OUT/psk"   # the pair's own (remotes[].psk_file on both sides)
umask 022
cat > "$OUT/primary.conf" <<EOF
role = "primary";
local = { ip = 4; address = "127.0.0.1"; port = 5653; nat_port = 4500; identity = "pri.test"; };
dataplane = { lan = { port = 0; address = "10.1.0.1/24"; }; wan = { port = 1; address = "127.0.0.1/8"; }; };
remotes = ( { id = 7; ip = 4; address = "127.0.0.1"; subnets = [ "10.2.0.0/24" ]; key_type = "AES256"; identity = "sec.test";
              psk_file = "$OUT/psk"; } );
EOF
cat > "$OUT/secondary.conf" <<EOF
role = "secondary";
local = { ip = 4; address = "127.0.0.1"; port = 5654; identity = "sec.test"; };
dataplane = { lan = { port = 0; address = "10.2.0.1/24"; }; wan = { port = 1; address = "127.0.0.1/8"; }; };
remotes = ( { id = 1; ip = 4; address = "127.0.0.1"; port = 5653; identity = "pri.test"; psk_file = "$OUT/psk"; } );
EOF

ip netns exec $NS tcpdump -n -i lo -U -w "$OUT/setup.pcap" udp 2>"$OUT/tcpdump.err" &
TCPDUMP=$!; PIDS+=($TCPDUMP)
for _ in $(seq 1 50); do grep -q listening "$OUT/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
ip netns exec $NS "$PEER" -c "$OUT/primary.conf" --timeout 20 --linger 1 --keys-out "$OUT/p.keys" > "$OUT/p.out" 2> "$OUT/p.err" &
PPID_=$!; PIDS+=($PPID_)
sleep 0.3
ip netns exec $NS "$PEER" -c "$OUT/secondary.conf" --timeout 20 --keys-out "$OUT/s.keys" > "$OUT/s.out" 2> "$OUT/s.err" \
  || { cat "$OUT/s.err" "$OUT/p.err" >&2; fail "secondary did not come up"; }
wait $PPID_ || { cat "$OUT/p.err" >&2; fail "primary did not come up"; }
sleep 0.3; kill -INT $TCPDUMP; wait $TCPDUMP 2>/dev/null
cat "$OUT/p.out" "$OUT/s.out" >&2

grep -q '^up remote=7 peer=sec.test .* key=aes256 ' "$OUT/p.out" || fail "primary: no AES-256 session with sec.test"
grep -Eq '^up remote=1 peer=pri.test .* key=aes256 .* push=1( |$)' "$OUT/s.out" || fail "secondary: no AES-256 session with a push"
prx=$(sed -n 's/.* rx=\(0x[0-9a-f]*\) tx=\(0x[0-9a-f]*\) .*/\1 \2/p' "$OUT/p.out")
srx=$(sed -n 's/.* rx=\(0x[0-9a-f]*\) tx=\(0x[0-9a-f]*\) .*/\2 \1/p' "$OUT/s.out")
[ -n "$prx" ] && [ "$prx" = "$srx" ] || fail "P3 IDs do not cross: primary rx/tx '$prx', secondary tx/rx '$srx'"
read -r _ p_rx p_tx < "$OUT/p.keys"; read -r _ s_rx s_tx < "$OUT/s.keys"
[ "$p_rx" = "$s_tx" ] && [ "$p_tx" = "$s_rx" ] || fail "data keys differ between the two sides"
[ ${#p_rx} = 72 ] || fail "AES-256 key plus salt should be 36 bytes, got $(( ${#p_rx} / 2 ))"

D="-d udp.port==5653,isakmp"
tshark -n -r "$OUT/setup.pcap" $D -T fields -e frame.protocols > "$OUT/protocols.txt" 2>"$OUT/tshark.err"
tshark -n -r "$OUT/setup.pcap" $D -V > "$OUT/tshark-v.txt" 2>>"$OUT/tshark.err"
total=$(wc -l < "$OUT/protocols.txt"); ike=$(grep -c isakmp "$OUT/protocols.txt")
bad=$(grep -ciE 'malformed|expert.*(warn|error)' "$OUT/tshark-v.txt")
log "tshark: $total datagrams, $ike IKE, $bad malformed/warnings"
[ "$total" = 4 ] || fail "expected 4 datagrams (IKE_SA_INIT and IKE_AUTH, request and response), saw $total"
[ "$ike" = 4 ] || fail "tshark does not see every datagram as IKE"
[ "$bad" = 0 ] || { grep -iE -B5 'malformed|expert' "$OUT/tshark-v.txt" | head -40 >&2; fail "tshark warnings"; }
grep -q 'Exchange type: IKE_SA_INIT (34)' "$OUT/tshark-v.txt" || fail "no IKE_SA_INIT"
grep -q 'Exchange type: IKE_AUTH (35)' "$OUT/tshark-v.txt" || fail "no IKE_AUTH"
grep -q 'Transform ID (ENCR): AES-GCM with a 16 octet ICV (20)' "$OUT/tshark-v.txt" || fail "no AES-GCM transform dissected"
grep -q 'Key Length: 256' "$OUT/tshark-v.txt" || fail "no Key Length attribute dissected"
grep -Eq 'Transform ID \((D-H|KE)\): .*\(31\)' "$OUT/tshark-v.txt" || fail "no group 31 transform dissected"
grep -q 'NAT_DETECTION_SOURCE_IP (16388)' "$OUT/tshark-v.txt" || fail "no NAT-D notify dissected"
log "PASS"
exit 0
