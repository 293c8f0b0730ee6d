#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# Standard interop, p3d as initiator: a p3d secondary whose remote (strongSwan) is wire = "esp"
# sets up the session to strongSwan's standard port 500 with a pre-shared key; strongSwan
# answers with its stock configuration (no ports, default IKE proposals, ESP aes128gcm16). Here
# p3d drives the rekeys: it rekeys the child SA every 5 s (rekey_wait = 5), strongSwan never.
#
#   host A ns           p3d ns                          charon ns                 host B ns
#   10.1.0.2 ---veth--- [LAN] p3d [WAN] ---veth--- 192.0.2.2 charon 10.2.0.1 ---veth--- 10.2.0.2
#     hA               aLan 10.1.0.1  aWan 192.0.2.1   bWan   (kernel-libipsec)  bLan      hB
#                      pri.test, secondary:            sec.test, responder on 500
#                      initiator from 500, then 4500 ^ and 4500
#                                          tcpdump on bWan (both directions)
#
# strongSwan with kernel-libipsec always claims a NAT (it can only do ESP in UDP), so p3d must
# move to port 4500 after IKE_SA_INIT, as RFC 7296 section 2.23 asks of an initiator.
# Checks, as a user would see them:
#   - p3d logs the session up (P3-I0401) with remote 1, sec.test, within 15 s of its start;
#   - swanctl --list-sas on strongSwan: the IKE SA ESTABLISHED between sec.test @
#     192.0.2.2[4500] and pri.test @ 192.0.2.1[4500] with algorithms p3 offers, the child SA
#     INSTALLED (TUNNEL-in-UDP, AES_GCM_16-128, 10.2.0.0/24 === 10.1.0.0/24);
#   - pings both ways; iperf3 TCP both ways at once (3 s, 20 Mbit/s each): no error, >= 90 %;
#   - iperf3 UDP both ways at once for 12 s while p3d rekeys the child SA every 5 s: not one
#     datagram lost, at least 2 child SAs set up by CREATE_CHILD_SA requests strongSwan received;
#   - an observer with the keys (lib/esp_check.py): p3d's SAs carry charon's keys, every ESP
#     packet both ways decrypts and verifies, tshark shows esp.icv_good for all of p3d's;
#   - p3d stops with status 0 on SIGTERM.
# A p3d that refuses a secondary with an ESP remote skips the test (77) and says so.
# Exit 0 = pass, 77 = skipped (what is missing is printed), anything else = fail.
. "$(dirname "$0")/lib/interop.sh"
interop_topology
interop_capture

# charon first: p3d initiates as soon as it is up.
interop_charon "psk $PSK" aes128gcm16
interop_p3d_conf secondary psk AES128 "rekey_wait = 5;"
interop_p3d_start skip-if-refused
wait_for a "$pid_a" 'P3-I0401: setup with remote 1 (sec.test' 15 "session-up line (P3-I0401) for sec.test"
grep -m1 'P3-I0401' "$work/a.log"
interop_sas "$work/sas.txt"
cat "$work/sas.txt"
interop_check_sas "$work/sas.txt" AES_GCM_16-128

interop_pings
interop_iperf 3 20M tcp

children0=$(interop_child_sas)
requests0=$(grep -c 'parsed CREATE_CHILD_SA request' "$cdir/charon.log")
interop_iperf 12 2M udp -u -l 1000
child_rekeys=$(($(interop_child_sas) - children0))
requests=$(($(grep -c 'parsed CREATE_CHILD_SA request' "$cdir/charon.log") - requests0))
echo "during the UDP streams p3d rekeyed the child SA $child_rekeys times ($requests CREATE_CHILD_SA requests at strongSwan)"
[ "$child_rekeys" -ge 2 ] && [ "$requests" -ge 2 ] ||
  fail "p3d completed $child_rekeys child SA rekeys ($requests requests) during the streams (want >= 2)"
interop_sas_settled "$work/sas-after.txt"
interop_check_sas "$work/sas-after.txt" AES_GCM_16-128

interop_capture_stop
interop_esp_check 1000 3

kill -TERM "$pid_a"; wait "$pid_a"; rc=$?; pid_a=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
echo "PASS: p3d initiated to strongSwan (stock configuration, PSK) and moved to 4500; pings and iperf3 both ways; $child_rekeys child SA rekeys by p3d with no datagram lost; every ESP packet of p3d verified by an observer and by tshark"
exit 0
