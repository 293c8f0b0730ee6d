#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# Standard interop, pre-shared key: strongSwan with a stock configuration (no ports set, default
# IKE proposals, ESP aes128gcm16) initiates to a p3d primary whose remote is wire = "esp", and
# the two carry traffic through child SAs strongSwan rekeys every 5 s.
#
#   host A ns           p3d ns                          charon ns                 host B ns
#   10.1.0.2 ---veth--- [LAN] p3d [WAN] ---veth--- 192.0.2.2 charon 10.2.0.1 ---veth--- 10.2.0.2
#     hA               aLan 10.1.0.1  aWan 192.0.2.1   bWan   (kernel-libipsec)  bLan      hB
#                      pri.test, responder on 500      sec.test, initiator from 500
#                      then 4500                   ^   then 4500
#                                          tcpdump on bWan (both directions)
#
# Checks, as a user would see them:
#   - charon's IKE_SA_INIT to 192.0.2.1:500 is answered, charon floats to 4500 (RFC 7296
#     section 2.23) and IKE_AUTH completes there: swanctl --list-sas shows the IKE SA ESTABLISHED
#     between sec.test @ 192.0.2.2[4500] and pri.test @ 192.0.2.1[4500] with algorithms p3
#     offers, the child SA INSTALLED (TUNNEL-in-UDP, AES_GCM_16-128, 10.2.0.0/24 === 10.1.0.0/24);
#   - p3d logs the session up (P3-I0401) with remote 1, sec.test;
#   - pings both ways: host A to charon's gateway 10.2.0.1 and to host B, host B to host A;
#   - iperf3 TCP host A -> host B and host B -> host A at once, 4 s at 20 Mbit/s each: no error,
#     at least 90 % of the bytes;
#   - iperf3 UDP both ways at once, 15 s at 2 Mbit/s, while charon rekeys the child SA every 5 s
#     (rekey_time = 5s) and the IKE SA every 10 s: not one datagram lost, at least 2 child SA
#     rekeys and 1 IKE SA rekey during it, and none failed;
#   - an observer with the keys (lib/esp_check.py): every SA in p3d's key log carries the keys
#     charon derived for it, every ESP packet on the wire both ways decrypts and verifies
#     (cryptography's AES-GCM), p3d never repeats an IV or sequence under one SPI and sent under
#     at least 3 SAs, and tshark shows esp.icv_good for every ESP packet p3d sent;
#   - p3d stops with status 0 on SIGTERM.
# Exit 0 = pass, 77 = skipped (what is missing is printed), anything else = fail.
. "$(dirname "$0")/lib/interop.sh"
interop_topology
interop_capture

interop_p3d_conf primary psk AES128
interop_p3d_start
# Rekeys often: the child SA every 5 s, the IKE SA every 10 s. The hard limits are set well
# above them (charon's default life_time is rekey_time + 10 %, which a rekey delayed by another
# exchange overruns: the SA then expires and its packets are lost, whoever the peer is).
interop_charon "psk $PSK" aes128gcm16 "    rekey_time = 10s
    over_time = 20s
    rand_time = 2s" "        rekey_time = 5s
        life_time = 20s
        rand_time = 1s"
charon_initiate "$cdir" "charon"
interop_sas "$work/sas.txt"
cat "$work/sas.txt"
interop_check_sas "$work/sas.txt" AES_GCM_16-128
wait_for a "$pid_a" 'P3-I0401: setup with remote 1 (sec.test' 5 "session-up line (P3-I0401) for sec.test"
grep -m1 'P3-I0401' "$work/a.log"

interop_pings
interop_iperf 4 20M tcp

# The rekeys charon drives: counted from its log around the UDP streams.
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
interop_check_sas "$work/sas-after.txt" AES_GCM_16-128

interop_capture_stop
interop_esp_check 1000 3

kill -TERM "$pid_a"; wait "$pid_a"; rc=$?; pid_a=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
echo "PASS: strongSwan (stock configuration, PSK) floated to 4500 and set up with p3d; pings and iperf3 both ways; $child_rekeys child SA and $ike_rekeys IKE SA rekeys with no datagram lost; every ESP packet of p3d verified by an observer and by tshark"
exit 0
