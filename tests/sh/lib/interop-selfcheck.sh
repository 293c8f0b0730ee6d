#!/usr/bin/env bash
# The interop harness checked against itself (run by hand, not by scripts/test.sh): a second
# charon stands where p3d stands in tests/sh/7x-interop-*.sh, so every check of those tests
# (pings, iperf3 both ways, no datagram lost across rekeys, the observer with the keys, tshark)
# runs between two stock strongSwans. When it passes and a 7x test fails at the same step, the
# difference is p3d's.
#
#   host A ns           "p3d" ns                        charon ns                 host B ns
#   10.1.0.2 ---veth--- 10.1.0.1 charon A 192.0.2.1 -- 192.0.2.2 charon 10.2.0.1 ---veth--- 10.2.0.2
#                       pri.test, responder             sec.test, initiator (as in 70/71)
#
# Usage: BUILD=build bash tests/sh/lib/interop-selfcheck.sh [psk|cert]
#   psk:  as 70-interop-psk.sh, with the IKE proposal aes128gcm16-prfsha256-x25519 (charon A
#         would pick AES-CBC from the default proposals, which is no proposal p3 offers)
#   cert: as 71-interop-cert.sh (AES-256, PRF-SHA384, ECP-384, certificates)
# The "key log" of charon A is written from charon's own log, the way p3d writes it.
mode=${1:-psk}
. "$(dirname "$0")/interop.sh"
here=$(cd "$(dirname "$0")/.." && pwd)
interop_topology
in_ns "$ns_a" ip addr add 192.0.2.1/24 dev aWan && in_ns "$ns_a" ip addr add 10.1.0.1/24 dev aLan &&
  in_ns "$ns_a" sysctl -qw net.ipv4.ip_forward=1 || fail "charon A's side of the topology"
interop_capture

ca=$work/charonA
if [ "$mode" = cert ]; then
  interop_pki
  mkdir -p "$ca/swanctl/x509ca" "$ca/swanctl/x509" "$ca/swanctl/private"
  cp "$work/ca.pem" "$ca/swanctl/x509ca/"; cp "$work/pri.pem" "$ca/swanctl/x509/"; cp "$work/pri.key" "$ca/swanctl/private/"
  auth=cert esp=aes256gcm16 alg=AES_GCM_16-256 proposals=aes256gcm16-prfsha384-ecp384
else
  auth="psk $PSK" esp=aes128gcm16 alg=AES_GCM_16-128 proposals=aes128gcm16-prfsha256-x25519
fi
# charon A: charon's configuration with the two sides swapped.
charon_stock_conf "$ca" "$auth" "$esp" "    proposals = $proposals" "" "  retransmit_tries = 2"
sed -i 's/192\.0\.2\.2/X1/g; s/192\.0\.2\.1/192.0.2.2/g; s/X1/192.0.2.1/g; s/sec\.test/X2/g; s/pri\.test/sec.test/g;
  s/X2/pri.test/g; s/10\.2\.0\.0/X3/g; s/10\.1\.0\.0/10.2.0.0/g; s/X3/10.1.0.0/g; s/sec\.pem/pri.pem/' "$ca/swanctl/swanctl.conf"
charon_start "$ca" "$ns_a" "charon A"
pid_charona=$CHARON_PID
CHARON_PID=

interop_charon "$auth" "$esp" "    proposals = $proposals
    rekey_time = 10s
    over_time = 20s
    rand_time = 2s" "        rekey_time = 5s
        life_time = 20s
        rand_time = 1s"
charon_initiate "$cdir" "charon"
interop_sas "$work/sas.txt"
cat "$work/sas.txt"
interop_check_sas "$work/sas.txt" "$alg"
interop_pings
interop_iperf 8 20M tcp
children0=$(interop_child_sas)
ike0=$(grep -c '\[IKE\] IKE_SA p3\[[0-9]*\] rekeyed between' "$cdir/charon.log")
interop_iperf 15 2M udp -u -l 1000
child_rekeys=$(($(interop_child_sas) - children0))
ike_rekeys=$(($(grep -c '\[IKE\] IKE_SA p3\[[0-9]*\] rekeyed between' "$cdir/charon.log") - ike0))
echo "during the UDP streams charon rekeyed the child SA $child_rekeys times and the IKE SA $ike_rekeys times"
[ "$child_rekeys" -ge 2 ] || fail "charon completed $child_rekeys child SA rekeys during the streams (want >= 2)"
[ "$ike_rekeys" -ge 1 ] || fail "charon completed $ike_rekeys IKE SA rekeys during the streams (want >= 1)"
grep -E '\[IKE\] .*(failed|NO_PROPOSAL_CHOSEN|TS_UNACCEPTABLE|INVALID_SYNTAX|giving up)' "$cdir/charon.log" | head -5 | grep . &&
  fail "charon logged a failed exchange (above)"
interop_sas_settled "$work/sas-after.txt"
interop_check_sas "$work/sas-after.txt" "$alg"
interop_capture_stop

# charon (B) initiates every child SA here: its initiator key is what it sends with.
/usr/bin/python3 - "$cdir/charon.log" "$here/lib" >"$work/a.keys" <<'PY' || fail "key log from charon's log"
import sys
sys.path.insert(0, sys.argv[2])
from esp_check import read_charon_log
line = "0 session=1 remote=1 dir=%s p3_id=0x%08x lanes=1 key=%s salt=%s wire=esp esn=0 src=%s dst=%s"
for spi_in, spi_out, (ki, kr) in read_charon_log(sys.argv[1]):
    print(line % ("tx", spi_in, kr[:-4].hex(), kr[-4:].hex(), "192.0.2.1", "192.0.2.2"))
    print(line % ("rx", spi_out, ki[:-4].hex(), ki[-4:].hex(), "192.0.2.2", "192.0.2.1"))
PY
interop_esp_check 1000 3 --any-spi   # charon A chose its SPIs, not p3d
echo "PASS: the interop harness's checks hold between two strongSwans ($mode)"
exit 0
