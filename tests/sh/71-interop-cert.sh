#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# Standard interop, certificates: strongSwan (no ports set, IKE proposal narrowed by the user to
# aes256gcm16-prfsha384-ecp384, ESP aes256gcm16) initiates to a p3d primary whose remote is
# wire = "esp" with key_type AES256, both authenticated by certificates from one CA made here
# with openssl (p3d ECDSA P-256, strongSwan RSA-2048), and the two carry traffic through child
# SAs strongSwan rekeys every 5 s.
#
#   host A ns           p3d ns                          charon ns                 host B ns
#   10.1.0.2 ---veth--- [LAN] p3d [WAN] ---veth--- 192.0.2.2 charon 10.2.0.1 ---veth--- 10.2.0.2
#     hA               aLan 10.1.0.1  aWan 192.0.2.1   bWan   (kernel-libipsec)  bLan      hB
#                      pri.test (ECDSA certificate)    sec.test (RSA certificate)
#                      responder on 500, then 4500 ^   initiator from 500, then 4500
#                                          tcpdump on bWan (both directions)
#
# Checks, as a user would see them:
#   - swanctl --list-sas: the IKE SA ESTABLISHED between sec.test @ 192.0.2.2[4500] and
#     pri.test @ 192.0.2.1[4500] with AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384, the child SA
#     INSTALLED (TUNNEL-in-UDP, AES_GCM_16-256, 10.2.0.0/24 === 10.1.0.0/24); charon verified
#     p3d's ECDSA signature; p3d logs the session up (P3-I0401) with remote 1, sec.test;
#   - pings both ways; iperf3 TCP both ways at once (3 s, 20 Mbit/s each): no error, >= 90 %;
#   - iperf3 UDP both ways at once for 12 s while charon rekeys the child SA every 5 s: not one
#     datagram lost, at least 2 rekeys;
#   - an observer with the keys (lib/esp_check.py): p3d's SAs carry charon's keys, every ESP
#     packet both ways decrypts and verifies, p3d sent under at least 3 SAs, and tshark shows
#     esp.icv_good for every ESP packet p3d sent;
#   - p3d stops with status 0 on SIGTERM.
# Exit 0 = pass, 77 = skipped (what is missing is printed), anything else = fail.
. "$(dirname "$0")/lib/interop.sh"
interop_topology
interop_pki
interop_capture

interop_p3d_conf primary cert AES256
interop_p3d_start
interop_charon cert aes256gcm16 "    proposals = aes256gcm16-prfsha384-ecp384" "        rekey_time = 5s
        life_time = 20s
        rand_time = 1s"
charon_initiate "$cdir" "charon"
interop_sas "$work/sas.txt"
cat "$work/sas.txt"
interop_check_sas "$work/sas.txt" AES_GCM_16-256
grep -Eq '^ +AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384$' "$work/sas.txt" || fail "IKE SA is not AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384"
grep -q "authentication of 'pri.test' with ECDSA" "$cdir/charon.log" || fail "charon did not verify p3d's ECDSA signature"
wait_for a "$pid_a" 'P3-I0401: setup with remote 1 (sec.test' 5 "session-up line (P3-I0401) for sec.test"
grep -m1 'P3-I0401' "$work/a.log"

interop_pings
interop_iperf 3 20M tcp

children0=$(interop_child_sas)
interop_iperf 12 2M udp -u -l 1000
child_rekeys=$(($(interop_child_sas) - children0))
echo "during the UDP streams charon rekeyed the child SA $child_rekeys times"
[ "$child_rekeys" -ge 2 ] || fail "charon completed $child_rekeys child SA rekeys during the streams (want >= 2)"
interop_sas_settled "$work/sas-after.txt"
interop_check_sas "$work/sas-after.txt" AES_GCM_16-256

interop_capture_stop
interop_esp_check 1000 3

kill -TERM "$pid_a"; wait "$pid_a"; rc=$?; pid_a=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
echo "PASS: strongSwan (certificates, AES-256) floated to 4500 and set up with p3d; pings and iperf3 both ways; $child_rekeys child SA rekeys with no datagram lost; every ESP packet of p3d verified by an observer and by tshark"
exit 0
