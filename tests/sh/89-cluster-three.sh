#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# Three Realservers behind the nftables director, iperf3 through the cluster (docs/cluster.md
# §The director, "Three members end to end"; the rig is lib/cluster.sh). Members m1, m2, m3
# (director = "lvs", load_balance = 0, the same VIP), each with its own corosync on a
# management bridge; the director sends the setup port (UDP 5653) to m1 and spreads the
# secondary's protocol-50 packets round robin over the three (numgen inc mod 3). The secondary s sets up a PSK session with the VIP: m1 runs the exchange
# and holds the control session, m2 and m3 install it from m1's record. Host A's default route
# is ECMP over the three members (hashed per flow), host S's is the secondary.
#   a. iperf3 UDP host S -> host A with rekeys during it: every member decrypts the session's
#      packets, at least two rekeys complete, nothing is lost, no p3d drops a packet as forged,
#      replayed, under an old key or of an unknown P3 ID; then iperf3 TCP (printed).
#   b. m3 (not the holder) killed, p3d and corosync, under iperf3 UDP; 1 s later the director
#      (and host A's route) leave it out, as a health check would: the loss stays below 2 s of
#      the rate; traffic goes on through m1, m2.
#   c. m1 (the holder) killed the same way, the director then sends everything to m2 (the
#      setup port too): the secondary keeps its session (no second setup exchange, no loss, its uptime runs on)
#      through and beyond heartbeat_fail, traffic goes on through m2, and a rekey the secondary
#      asks for afterwards completes: m2 has taken the control session over from the record.
# Measured figures (losses, gaps) are printed on the `figures:` line. A step's measured misses
# are listed together at the end; what makes the next step meaningless fails at once.
#
#   hS 10.2.0.2 -- [sLan] p3d s [sWan] -- dS |br0 (ns d)| d1 -- [m1Wan] p3d m1 [m1Lan] 10.1.0.1 --+
#                                                         d2 -- [m2Wan] p3d m2 [m2Lan] 10.1.0.3 --+-- brL -- hA 10.1.0.2
#                                                         d3 -- [m3Wan] p3d m3 [m3Lan] 10.1.0.5 --+
#   m1 mg1 10.89.0.1, m2 mg2 10.89.0.2, m3 mg3 10.89.0.3 -- brM (ns g)   (corosync, knet)
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl nft corosync corosync-keygen unshare iperf3
. "$here/lib/cluster.sh"
py=/usr/bin/python3
p3d_names="s m1 m2 m3"
log_lines=20
ns_hs=$tag-hs ns_s=$tag-s ns_d=$tag-d ns_m1=$tag-m1 ns_m2=$tag-m2 ns_m3=$tag-m3 ns_l=$tag-l ns_g=$tag-g
all_ns="$ns_hs $ns_s $ns_d $ns_m1 $ns_m2 $ns_m3 $ns_l $ns_g"
VMAC=02:00:00:00:0d:01 SMAC=02:00:00:00:0a:02
M1MAC=02:00:00:00:01:01 M2MAC=02:00:00:00:02:01 M3MAC=02:00:00:00:03:01
HB=1 HF=6         # heartbeat_time, heartbeat_fail (s): HF above corosync's leave detection (~3.6 s)
RATE=10 LEN=1200  # iperf3 UDP: Mbit/s, datagram bytes (modest: the machine may be shared)
pps=$((RATE * 1000000 / 8 / LEN))

# ---- namespaces and links -----------------------------------------------------------------
ip netns add "$ns_hs" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
for n in $ns_s $ns_d $ns_m1 $ns_m2 $ns_m3 $ns_l $ns_g; do ip netns add "$n" || fail "netns $n"; done
link "$ns_hs" hS "$ns_s" sLan
link "$ns_s" sWan "$ns_d" dS
ups=("$ns_hs hS" "$ns_s sLan" "$ns_s sWan" "$ns_d dS" "$ns_l hA" "$ns_l lA")
for i in 1 2 3; do
  v=ns_m$i mac=M${i}MAC
  link "${!v}" "m${i}Wan" "$ns_d" "d$i"
  link "${!v}" "m${i}Lan" "$ns_l" "l$i"
  in_ns "${!v}" ip link set "m${i}Wan" address "${!mac}"
  ups+=("$ns_d d$i" "$ns_l l$i" "${!v} m${i}Wan" "${!v} m${i}Lan")
done
link "$ns_l" hA "$ns_l" lA
in_ns "$ns_s" ip link set sWan address $SMAC
links_up "${ups[@]}"
director_bridge "$ns_d" dS "$M1MAC=d1" "$M2MAC=d2" "$M3MAC=d3"
setup_to() { echo "ether daddr $VMAC udp dport 5653 ether daddr set $1"; }   # the setup port's member
director "$ns_d" dS "$(setup_to $M1MAC)" \
  "ether daddr $VMAC ether daddr set numgen inc mod 3 map { 0 : $M1MAC, 1 : $M2MAC, 2 : $M3MAC }"
mkbridge "$ns_l" brL l1 l2 l3 lA
in_ns "$ns_l" ip addr add 10.1.0.2/24 dev hA
in_ns "$ns_l" sysctl -qw net.ipv4.fib_multipath_hash_policy=1   # per flow (ports too)
hA_route() {  # the members host A's default route spreads over (by LAN address)
  local a hops=()
  for a; do hops+=(nexthop via "$a"); done
  in_ns "$ns_l" ip route replace default "${hops[@]}" || fail "host A's route"
}
hA_route 10.1.0.1 10.1.0.3 10.1.0.5
in_ns "$ns_hs" ip addr add 10.2.0.2/24 dev hS
in_ns "$ns_hs" ip route add default via 10.2.0.1

# ---- corosync in each member's namespace ------------------------------------------------------
mgmt_net "$ns_g" 10.89.0 "$ns_m1" "$ns_m2" "$ns_m3"
corosync_conf p3t89 10.89.0.1 10.89.0.2 10.89.0.3
for i in 1 2 3; do v=ns_m$i; corosync_start $i "${!v}"; done
corosync_ready 1 2 3

# ---- configurations ---------------------------------------------------------------------------
psk psk
cluster_key
timers="heartbeat_time = $HB; heartbeat_fail = $HF;"
CL_GROUP=p3t89 CL_MAX=3 CL_LOCAL="load_balance = 0; $timers" CL_WAN="gateway_mac = \"$SMAC\";"
member_conf 1 10.1.0.1 primary
member_conf 2 10.1.0.3 backup
member_conf 3 10.1.0.5 backup
secondary_member_conf "$timers" "gateway_mac = \"$VMAC\";"
conf_check m1 m2 m3 s

# ---- start: the members, the group, then the secondary ----------------------------------------
start m1 "$ns_m1" 0 m1Wan m1Lan; pid_m1=$!
start m2 "$ns_m2" "$cpu2" m2Wan m2Lan; pid_m2=$!
start m3 "$ns_m3" 0 m3Wan m3Lan; pid_m3=$!
wait_group 1 2 3; wait_group 2 1 3; wait_group 3 1 2
t_group=$SECONDS
start s "$ns_s" "$cpu2" sWan sLan; pid_s=$!
wait_for m1 "$pid_m1" 'P3-I0401: setup with remote 7' 20 "session up with the secondary"
wait_for s "$pid_s" 'P3-I0501' 5 "control channel up"
wait_for m2 "$pid_m2" 'P3-I0930: cluster: remote 7: replicated keys installed' 5 "the session replicated to m2"
wait_for m3 "$pid_m3" 'P3-I0930: cluster: remote 7: replicated keys installed' 5 "the session replicated to m3"
for m in m2 m3; do [ "$(count $m 'P3-I0401')" -eq 0 ] || fail "$m ran a setup exchange itself"; done
echo "up [${SECONDS} s]: group of three (at ${t_group} s), the session set up by m1, replicated to m2 and m3"
in_ns "$ns_hs" ping -c 6 -i 0.1 -W 1 10.1.0.2 >"$work/ping0" 2>&1   # neighbours learnt
[ "$(ping_replies "$work/ping0")" -ge 3 ] || fail "no ping through the cluster: $(ping_replies "$work/ping0")/6"

# ---- helpers ----------------------------------------------------------------------------------
# iperf3 server on host A (one test, JSON, 0.1 s intervals), client on host S (SECONDS: its -t; it is
# stopped 5 s after that: a path that died would leave it waiting for the results), JSON with
# the server's report in it (--get-server-output).
# iperf_wait NAME: R = the server's figures (UDP: datagrams lost window, the window from the
# first to the end of the last 0.1 s interval that lost anything; TCP: bits/s received);
# returns 1 with the reason in $work/NAME.why when there is no report.
iperf_start() {  # name seconds client-args...
  local n=$1 t=$2 i
  shift 2
  in_ns "$ns_l" iperf3 -s -1 -B 10.1.0.2 -J -i 0.1 >"$work/$n.srv.json" 2>&1 &
  pid_iperf_s=$!
  for ((i = 0; i < 30; i++)); do
    in_ns "$ns_l" ss -Hltn 'sport = :5201' | grep -q . && break
    sleep 0.1
  done
  in_ns "$ns_hs" timeout $((t + 5)) iperf3 -c 10.1.0.2 -J --get-server-output --connect-timeout 3000 -t "$t" "$@" \
    >"$work/$n.json" 2>"$work/$n.err" &
  pid_iperf_c=$!
}
iperf_wait() {
  local rc
  wait "$pid_iperf_c"; rc=$?; pid_iperf_c=
  kill -KILL "$pid_iperf_s" 2>/dev/null; wait "$pid_iperf_s" 2>/dev/null; pid_iperf_s=
  R=()
  "$py" - "$work/$1.json" "$rc" >"$work/$1.fig" 2>"$work/$1.why" <<'PY' || return 1
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit("iperf3 client exit %s, no JSON" % sys.argv[2])
if "error" in j:
    sys.exit("iperf3 client exit %s: %s" % (sys.argv[2], j["error"]))
srv = j.get("server_output_json")
if not srv:
    sys.exit("iperf3: no server report")
end = srv["end"]
s = end.get("sum") or end.get("sum_received")
if "packets" not in s:
    print(int(j["end"]["sum_received"]["bits_per_second"]))
    sys.exit(0)
lossy = [i["sum"] for i in srv["intervals"] if i["sum"].get("lost_packets", 0) > 0]
window = lossy[-1]["end"] - lossy[0]["start"] if lossy else 0.0
print(s["packets"], s["lost_packets"], "%.1f" % window)
PY
  read -r -a R <"$work/$1.fig"
}
why() { tail -n 1 "$work/$1.why"; }
sess() { p3_json "$1" "sessions.id=$2.$3" status; }   # p3d remote-id key
bad_drops() {  # p3d: the packets it refused as forged, replayed, under an old key, unknown P3 ID
  "$py" "$here/../tools/p3_telemetry.py" "$tag-$1" /p3/drops p3_auth p3_replay p3_old_key p3_unknown_id |
    awk '{ t += $1 } END { print t + 0 }'
}
rx() { sess "$1" 7 rx_pkts; }
nonzero_drops() {  # every p3d's non-zero drop counters, for a failure's message
  local n
  for n in s m1 m2 m3; do
    echo "$n: $(/usr/bin/python3 "$here/../tools/p3_telemetry.py" "$tag-$n" /p3/drops 2>/dev/null | tr -d '\n ' |
      grep -oE '"[a-z_0-9]+":[1-9][0-9]*' | tr '\n' ' ')"
  done
}
now() { echo "${EPOCHREALTIME/./}"; }   # microseconds
since() { local d=$(( $(now) - $1 )); printf '%d.%d\n' $((d / 1000000)) $((d / 100000 % 10)); }   # seconds, 0.1
kill_member() {  # n: SIGKILL to p3d mN and its corosync, disowned (no "Killed" notice); reap_member waits
  local v=pid_m$1 c=pid_corosync$1
  kill -KILL "${!v}" "${!c}"
  disown "${!v}" "${!c}" 2>/dev/null
}
reap_member() {
  local v=pid_m$1 c=pid_corosync$1 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "${!v}" 2>/dev/null || kill -0 "${!c}" 2>/dev/null || break
    sleep 0.05
  done
  printf -v "$v" ''; printf -v "$c" ''
}

# What a step measured against what it should be (losses, drops, the session's state) is
# collected in errs and reported together at the end, so one run shows every step; what makes
# the next step meaningless fails at once.
errs=()

# ---- a. UDP through all three members, rekeys during it; TCP throughput -----------------------
for n in s m1 m2 m3; do printf -v "bad0_$n" '%s' "$(bad_drops $n)"; done
rx1=$(rx m1) rx2=$(rx m2) rx3=$(rx m3)
rk_s0=$(sess s 1 rekeys) rk_m0=$(sess m1 7 rekeys)
iperf_start udp-a 5 -u -b ${RATE}M -l $LEN
sleep 0.5
# Rekeys from m1 about 1.2 s apart (each once the one before completed): a request while one
# is under way is refused (exit 5), and spaced they stand for rekeys as they come, each with
# its records, rather than one burst.
rekeys_asked=0
for ((i = 0; i < 60 && rekeys_asked < 3; i++)); do
  kill -0 "$pid_iperf_c" 2>/dev/null || break
  done0=$(count m1 'P3-I0509')
  if "$p3ctl" -s "$work/m1.sock" rekey 7 >/dev/null 2>&1; then
    rekeys_asked=$((rekeys_asked + 1))
    for ((j = 0; j < 20; j++)); do [ "$(count m1 'P3-I0509')" -gt "$done0" ] && break; sleep 0.05; done
    sleep 1.2
  else
    sleep 0.1
  fi
done
iperf_wait udp-a || fail "$(why udp-a)"; pk_a=${R[0]} lost_a=${R[1]} win_a=${R[2]}
rk_s=$(( $(sess s 1 rekeys) - rk_s0 )) rk_m=$(( $(sess m1 7 rekeys) - rk_m0 ))
d1=$(( $(rx m1) - rx1 )) d2=$(( $(rx m2) - rx2 )) d3=$(( $(rx m3) - rx3 ))
bad=""
for n in s m1 m2 m3; do v=bad0_$n; b=$(( $(bad_drops $n) - ${!v} )); [ "$b" -eq 0 ] || bad+=" $n:$b"; done
echo "a [${SECONDS} s]: iperf3 UDP ${RATE} Mbit/s ${LEN} B, 5 s: $pk_a datagrams, $lost_a lost; decrypted by m1 $d1, m2 $d2, m3 $d3;" \
     "rekeys asked $rekeys_asked, completed: m1 $rk_m, secondary $rk_s"
[ "$rk_m" -ge 2 ] && [ "$rk_s" -ge 2 ] || fail "fewer than two rekeys completed during the transfer (m1 $rk_m, secondary $rk_s)"
for v in d1 d2 d3; do
  [ "${!v}" -ge $((pk_a / 6)) ] || fail "member ${v#d} decrypted ${!v} of the session's $pk_a datagrams (round robin over three)"
done
[ "$lost_a" -eq 0 ] || errs+=("a: iperf3 lost $lost_a of $pk_a datagrams with every member up and rekeys (refused:${bad:- none}; drops: $(nonzero_drops | tr '\n' ' '))")
[ -z "$bad" ] || errs+=("a: packets refused (auth, replay, old key, unknown P3 ID) with every member up:$bad")
iperf_start tcp-a 3
iperf_wait tcp-a || fail "$(why tcp-a)"; tcp_a=${R[0]}
echo "a [${SECONDS} s]: iperf3 TCP host S -> host A, 3 s: $((tcp_a / 1000000)) Mbit/s"

# ---- b. m3 (not the holder) killed under UDP; the director leaves it out after 1 s -------------
iperf_start udp-b 4 -u -b ${RATE}M -l $LEN
sleep 1
t_kill=$(now)
kill_member 3
sleep 1
dir_b=$(since "$t_kill")
director "$ns_d" dS "$(setup_to $M1MAC)" "ether daddr $VMAC ether daddr set numgen inc mod 2 map { 0 : $M1MAC, 1 : $M2MAC }"
hA_route 10.1.0.1 10.1.0.3
reap_member 3
iperf_wait udp-b || fail "$(why udp-b)"; pk_b=${R[0]} lost_b=${R[1]} win_b=${R[2]}
echo "b [${SECONDS} s]: m3 killed under iperf3 UDP, out of the director ${dir_b} s later: $lost_b of $pk_b datagrams lost over ${win_b} s"
[ "$pk_b" -gt $((pps * 2)) ] || fail "iperf3 UDP during b: only $pk_b datagrams"
[ "$lost_b" -lt $((pps * 2)) ] || errs+=("b: lost $lost_b datagrams when m3 was killed: more than 2 s at $pps/s")
last=$(( $(rx m2) ))
in_ns "$ns_hs" ping -c 10 -i 0.1 -W 1 10.1.0.2 >"$work/ping-b" 2>&1
[ "$(ping_replies "$work/ping-b")" -ge 9 ] || fail "through m1, m2 after m3 left: $(ping_replies "$work/ping-b")/10"
[ "$(rx m2)" -gt "$last" ] || fail "m2 decrypted nothing after m3 left"

# ---- c. m1 (the holder) killed; everything to m2; the session must stay up -------------------
setups0=$(count s 'P3-I0401') ch0=$(count s 'P3-I0501')
up0=$(sess s 1 uptime_s) loss0=$(p3_json s control.channel.losses status)
rk_s0=$(sess s 1 rekeys)
iperf_start udp-c $((HF + 2)) -u -b ${RATE}M -l $LEN
sleep 1
t_kill=$(now)
# When m2 says it took the control session over (not asserted: what counts is what the
# secondary sees), for the figures.
(for ((i = 0; i < 150; i++)); do
   grep -q 'taken over' "$work/m2.log" && { since "$t_kill" >"$work/took"; break; }
   sleep 0.1
 done) &
pid_poll=$!
kill_member 1
sleep 1
dir_c=$(since "$t_kill")
director "$ns_d" dS "ether daddr $VMAC ether daddr set $M2MAC"
hA_route 10.1.0.3
reap_member 1
if iperf_wait udp-c; then
  pk_c=${R[0]} lost_c=${R[1]} win_c=${R[2]}
else
  pk_c=0 lost_c=? win_c=?
  errs+=("c: no iperf3 report across the holder's loss ($(why udp-c))")
fi
el=$(since "$t_kill")
setups=$(( $(count s 'P3-I0401') - setups0 )) chup=$(( $(count s 'P3-I0501') - ch0 ))
up=$(sess s 1 uptime_s) loss=$(( $(p3_json s control.channel.losses status) - loss0 ))
state=$(sess s 1 state)
kill "$pid_poll" 2>/dev/null; wait "$pid_poll" 2>/dev/null; pid_poll=
took=$(cat "$work/took" 2>/dev/null)
echo "c [${SECONDS} s]: m1 (holding the control session) killed under iperf3 UDP, director to m2 ${dir_c} s later: $lost_c of $pk_c" \
     "datagrams lost over ${win_c} s; ${el} s after the kill the secondary's session is $state, uptime ${up} s" \
     "(${up0} s before), setups since $setups, channel ups $chup, losses $loss; m2 says it took the control session over: ${took:-not seen}${took:+ s after the kill}"
[ "$setups" -eq 0 ] || errs+=("c: the secondary set the session up again ($setups setup exchanges) after the holder died")
[ "$chup" -eq 0 ] && [ "$loss" -eq 0 ] || errs+=("c: the secondary lost its control channel (losses $loss, channel up again $chup)")
"$py" -c 'import sys; a, b, e = map(float, sys.argv[1:]); sys.exit(0 if b >= a + e - 1.5 else 1)' "$up0" "$up" "$el" ||
  errs+=("c: the secondary's session uptime did not run on ($up0 s, then $up s, $el s later)")
[ "$pk_c" -gt 0 ] && [ "$lost_c" -lt $((pps * 2)) ] || errs+=("c: lost $lost_c datagrams when m1 was killed: more than 2 s at $pps/s")
# A rekey the secondary asks for: only a holder of the control session can run it.
"$p3ctl" -s "$work/s.sock" rekey 1 >"$work/rekey-c" 2>&1 || errs+=("c: p3ctl rekey on the secondary: $(cat "$work/rekey-c")")
for ((i = 0; i < 50; i++)); do
  [ "$(sess s 1 rekeys)" -gt "$rk_s0" ] && break
  sleep 0.1
done
rk_c=$(( $(sess s 1 rekeys) - rk_s0 ))
[ "$rk_c" -ge 1 ] || errs+=("c: no rekey completed within 5 s of p3ctl rekey on the secondary after the takeover")
in_ns "$ns_hs" ping -c 10 -i 0.1 -W 1 10.1.0.2 >"$work/ping-c" 2>&1
[ "$(ping_replies "$work/ping-c")" -ge 9 ] || errs+=("c: through m2 at the end: $(ping_replies "$work/ping-c")/10 pings answered")
ms() { [[ $1 == [0-9]* ]] && echo "$(($1 * 1000 / pps)) ms" || echo "? ms"; }   # datagrams as time at the rate
echo "figures: a lost $lost_a/$pk_a, TCP $((tcp_a / 1000000)) Mbit/s; b (m3 killed) lost $lost_b/$pk_b" \
     "($(ms "$lost_b") at $pps/s) over ${win_b} s; c (m1 killed) lost $lost_c/$pk_c ($(ms "$lost_c")) over ${win_c} s," \
     "$setups new setup exchanges, takeover logged ${took:-not seen}${took:+ s after the kill}; test ${SECONDS} s"
((${#errs[@]} == 0)) || fail "$(printf '%s; ' "${errs[@]}")"
echo "PASS: 89-cluster-three"
