#!/usr/bin/env bash
# Standard interop, teardown both ways: strongSwan deleting its IKE SA (swanctl --terminate)
# takes p3d's session down at once, and p3d stopping deletes the IKE SA at strongSwan, each by
# an INFORMATIONAL exchange with a Delete payload (RFC 7296 section 1.4.1).
#
#   host A ns           p3d ns                          charon ns                 host B ns
#   10.1.0.2 ---veth--- [LAN] p3d [WAN] ---veth--- 192.0.2.2 charon 10.2.0.1 ---veth--- 10.2.0.2
#     hA               aLan 10.1.0.1  aWan 192.0.2.1   bWan   (kernel-libipsec)  bLan      hB
#                      pri.test, responder on 500      sec.test, stock configuration, PSK
#                      admin socket (p3ctl status) ^ tcpdump on bWan
#
# Checks, as a user would see them:
#   - strongSwan sets up with p3d (PSK); p3ctl status shows remote 1 up; host A pings host B;
#   - swanctl --terminate --ike p3: strongSwan's DELETE is answered (charon logs the IKE SA
#     deleted, not "giving up"); within 5 s p3d logs a line with a reason code naming remote 1
#     (or sec.test) and p3ctl status no longer shows it up; host A's pings to host B go
#     unanswered;
#   - strongSwan initiates again: a second P3-I0401, pings answered again;
#   - p3d stops on SIGTERM with status 0, and before it exits sends a DELETE that strongSwan
#     logs ("received DELETE for IKE_SA p3[...]"): swanctl --list-sas shows no IKE SA within
#     5 s.
# Exit 0 = pass, 77 = skipped (what is missing is printed), anything else = fail.
. "$(dirname "$0")/lib/interop.sh"
interop_topology
interop_capture

interop_p3d_conf primary psk AES128
interop_p3d_start
interop_charon "psk $PSK" aes128gcm16
charon_initiate "$cdir" "charon"
interop_check_sas "$cdir/sas.txt" AES_GCM_16-128
wait_for a "$pid_a" 'P3-I0401: setup with remote 1 (sec.test' 5 "session-up line (P3-I0401) for sec.test"

status() { "$p3ctl" -s "$adm" status >"$work/status.txt" 2>&1 || { cat "$work/status.txt"; fail "p3ctl status: exit $?"; }; }
status
grep -Eq '^ *1 +up ' "$work/status.txt" || { cat "$work/status.txt"; fail "p3ctl status does not show remote 1 up"; }
in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 2 10.2.0.2 >"$work/ping.txt" 2>&1
[ "$(ping_replies "$work/ping.txt")" = 3 ] || { cat "$work/ping.txt"; fail "host A -> host B before the delete"; }

# strongSwan deletes its IKE SA (and with it the child SA).
lines=$(wc -l <"$work/a.log")
swanctl --terminate --ike p3 --timeout 10 --uri "unix://$cdir/charon.vici" >"$work/terminate.txt" 2>&1 ||
  { cat "$work/terminate.txt"; fail "swanctl --terminate --ike p3"; }
grep -q 'IKE_SA p3\[[0-9]*\] state change: DELETING => DESTROYING' "$cdir/charon.log" ||
  fail "charon did not finish deleting its IKE SA"
grep -q 'giving up after' "$cdir/charon.log" && fail "p3d did not answer strongSwan's DELETE (charon gave up)"
down=
for _ in $(seq 50); do
  down=$(tail -n +"$((lines + 1))" "$work/a.log" | grep -E 'P3-[IWE][0-9]{4}: .*(remote 1\b|sec\.test)' | grep -v 'P3-I0401' | head -1)
  [ -n "$down" ] && break
  sleep 0.1
done
[ -n "$down" ] || fail "p3d logged no reason code for remote 1 within 5 s of strongSwan's DELETE"
echo "p3d: $down"
status
cat "$work/status.txt"
grep -Eq '^ *1 +up ' "$work/status.txt" && fail "p3ctl status still shows remote 1 up after strongSwan deleted its SAs"
in_ns "$ns_ha" ping -n -c 2 -i 0.2 -W 1 10.2.0.2 >"$work/ping-down.txt" 2>&1
[ "$(ping_replies "$work/ping-down.txt")" = 0 ] || fail "host B still answers host A after the SAs were deleted"

# strongSwan sets up again: p3d takes the new session.
charon_initiate "$cdir" "charon (again)"
for _ in $(seq 50); do [ "$(grep -c 'P3-I0401: setup with remote 1 (sec.test' "$work/a.log")" -ge 2 ] && break; sleep 0.1; done
[ "$(grep -c 'P3-I0401: setup with remote 1 (sec.test' "$work/a.log")" -ge 2 ] || fail "p3d did not log the second session up"
in_ns "$ns_ha" ping -n -c 3 -i 0.2 -W 2 10.2.0.2 >"$work/ping.txt" 2>&1
[ "$(ping_replies "$work/ping.txt")" = 3 ] || { cat "$work/ping.txt"; fail "host A -> host B after setting up again"; }

# p3d stops: its DELETE reaches strongSwan before it exits.
kill -TERM "$pid_a"; wait "$pid_a"; rc=$?; pid_a=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"
for _ in $(seq 50); do grep -q 'received DELETE for IKE_SA p3\[' "$cdir/charon.log" && break; sleep 0.1; done
grep -q 'received DELETE for IKE_SA p3\[' "$cdir/charon.log" || fail "strongSwan received no DELETE from the stopping p3d"
grep 'received DELETE for IKE_SA' "$cdir/charon.log" | sed 's/^/charon: /'
for _ in $(seq 50); do interop_sas "$work/sas-end.txt"; grep -q '^p3: ' "$work/sas-end.txt" || break; sleep 0.1; done
grep -q '^p3: ' "$work/sas-end.txt" && { cat "$work/sas-end.txt"; fail "strongSwan still lists the IKE SA after p3d's DELETE"; }
interop_capture_stop
echo "PASS: strongSwan's DELETE took p3d's session down ($(echo "$down" | grep -oE 'P3-[IWE][0-9]{4}')), strongSwan set up again, and p3d's stop deleted the IKE SA at strongSwan"
exit 0
