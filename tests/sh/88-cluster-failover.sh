#!/usr/bin/env bash
# A failover pair end to end (docs/cluster.md §Failover: what happens, measured): two members
# with director = "none" share the VIP on one WAN link with a secondary, and the LAN address
# (the LAN hosts' gateway) on one LAN; corosync and the real keepalived (dist/keepalived's
# configuration, notify hooks calling p3ctl cluster promote|demote) on a management bridge.
# Member 1 is elected; the secondary sets up with it; member 2 holds the replicated session.
# During a steady ping host S -> host A, member 1 dies (p3d killed, its management link down:
# no last advert): keepalived promotes member 2, which announces the addresses, forwards on the
# replicated keys and takes the control session over from the replicated state: the secondary
# keeps its session (no new setup exchange, no loss at heartbeat_fail) and a rekey it asks for
# completes with member 2. Member 1 returns as backup and receives the state; the administrator
# moves the role back (p3ctl cluster promote on member 1, demote on member 2, then keepalived
# restarted on member 2): member 1 takes the control session over, member 2 lets it go, and
# again the secondary sets up nothing. Gaps are measured and printed.
#
#   hS 10.2.0.2 -- [sLan] p3d s [sWan] --+
#                                       brW (ns w)
#                m1Wan [p3d m1] m1Lan --+-- brL (ns l) -- hA 10.1.0.2
#                m2Wan [p3d m2] m2Lan --+
#   m1 mg1 10.88.0.1 --+-- brM (ns g) --+-- mg2 10.88.0.2 m2   (corosync, keepalived)
. "$(dirname "$0")/lib/netns-pair.sh" p3ctl corosync corosync-keygen keepalived unshare
. "$here/lib/cluster.sh"
py=/usr/bin/python3
p3d_names="s m1 m1b m2"
ns_hs=$tag-hs ns_s=$tag-s ns_w=$tag-w ns_m1=$tag-m1 ns_m2=$tag-m2 ns_l=$tag-l ns_g=$tag-g
all_ns="$ns_hs $ns_s $ns_w $ns_m1 $ns_m2 $ns_l $ns_g"
HF=7   # heartbeat_fail (s): above keepalived's takeover (about 3.6 s), with room for a loaded machine
# keepalived's VRRP child outlives a killed parent: both go by their pid files, then the rest.
trap 'for f in "$work"/k*.pid; do [ -s "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done; cleanup' EXIT

ip netns add "$ns_hs" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
for n in $ns_s $ns_w $ns_m1 $ns_m2 $ns_l $ns_g; do ip netns add "$n" || fail "netns $n"; done
link "$ns_hs" hS "$ns_s" sLan
link "$ns_s" sWan "$ns_w" w0
link "$ns_m1" m1Wan "$ns_w" w1
link "$ns_m2" m2Wan "$ns_w" w2
link "$ns_m1" m1Lan "$ns_l" l1
link "$ns_m2" m2Lan "$ns_l" l2
link "$ns_l" hA "$ns_l" lA
links_up "$ns_hs hS" "$ns_s sLan" "$ns_s sWan" "$ns_w w0" "$ns_w w1" "$ns_w w2" "$ns_m1 m1Wan" "$ns_m1 m1Lan" \
         "$ns_m2 m2Wan" "$ns_m2 m2Lan" "$ns_l l1" "$ns_l l2" "$ns_l hA" "$ns_l lA"
mkbridge "$ns_w" brW w0 w1 w2
mkbridge "$ns_l" brL l1 l2 lA
in_ns "$ns_l" ip addr add 10.1.0.2/24 dev hA
in_ns "$ns_l" ip route add default via 10.1.0.1
in_ns "$ns_hs" ip addr add 10.2.0.2/24 dev hS
in_ns "$ns_hs" ip route add default via 10.2.0.1

# ---- corosync per member, on the management bridge ------------------------------------------------
mgmt_net "$ns_g" 10.88.0 "$ns_m1" "$ns_m2"
corosync_conf p3t88 10.88.0.1 10.88.0.2
corosync_start 1 "$ns_m1"
corosync_start 2 "$ns_m2"

# ---- configurations: both members the same addresses (WAN VIP, LAN gateway), backup at start --
psk psk
cluster_key
timers="heartbeat_time = 1; heartbeat_fail = $HF;"
CL_GROUP=p3t88 CL_DIRECTOR=none CL_LOCAL=$timers
member_conf 1 10.1.0.1 backup
member_conf 2 10.1.0.1 backup
secondary_member_conf "$timers" ""
conf_check m1 m2 s

# ---- keepalived: the example's configuration; its hooks log the call and run p3ctl --------------
cat >"$work/hook" <<SH
#!/bin/sh
echo "\$1 \$2 \$(date +%s.%N)" >> "$work/calls"
exec "$(cd "$(dirname "$p3ctl")" && pwd)/p3ctl" -s "$work/m\$1.sock" cluster "\$2" >> "$work/hook\$1.log" 2>&1
SH
chmod 755 "$work/hook"
: >"$work/calls"
for i in 1 2; do
  sed -e "s|router_id p3-member-1|router_id p3t88-$i|" \
      -e "s|^  enable_script_security|  # enable_script_security (the test's hook lives under /tmp)|" \
      -e "s|priority 150|priority $((i == 1 ? 150 : 100))|" \
      -e "s|interface mgmt0|interface mg$i|" \
      -e "s|unicast_src_ip 10.85.0.1|unicast_src_ip 10.88.0.$i|" \
      -e "s|^    10.85.0.2|    10.88.0.$((3 - i))|" \
      -e "s|\"/usr/bin/p3ctl cluster promote\"|\"$work/hook $i promote\"|" \
      -e "s|\"/usr/bin/p3ctl cluster demote\"|\"$work/hook $i demote\"|g" \
      "$here/../../dist/keepalived/keepalived.conf" >"$work/k$i.conf"
  grep -q "hook $i promote" "$work/k$i.conf" || fail "the example's notify_master line was not found"
done
keepalived_start() {  # member
  local v=ns_m$1
  ip netns exec "${!v}" unshare -m sh -c "mount -t tmpfs p3t88 /run && exec keepalived -n -l -D -P -f $work/k$1.conf \
    -p $work/k$1.pid -r $work/k$1.vrrp.pid" >>"$work/k$1.log" 2>&1 &
  eval "pid_k$1=\$!"
}
calls() { grep -c "^$1 $2 " "$work/calls"; }
call_time() { grep "^$1 $2 " "$work/calls" | sed -n "${3}p" | cut -d' ' -f3; }
wait_call() {  # member action nth seconds what
  local i
  for ((i = 0; i < $4 * 20; i++)); do
    [ "$(calls "$1" "$2")" -ge "$3" ] && return 0
    sleep 0.05
  done
  fail "no $5 within $4 s (hook calls: $(tr '\n' ';' <"$work/calls"))"
}
now() { date +%s.%N; }
# The secondary asks for a rekey (p3ctl rekey): it completes within 5 s, with whoever holds
# the control session now.
rekey_completes() {
  local done0 i
  done0=$(count s 'P3-I0509')
  "$p3ctl" -s "$work/s.sock" rekey 1 >"$work/rekey.out" 2>&1 || { cat "$work/rekey.out"; fail "p3ctl rekey on the secondary $1"; }
  for ((i = 0; i < 50; i++)); do [ "$(count s 'P3-I0509')" -gt "$done0" ] && return; sleep 0.1; done
  fail "a rekey $1 did not complete"
}
until_past() { while awk -v n="$(now)" -v t="$1" -v d="$2" 'BEGIN { exit !(n < t + d) }'; do sleep 0.2; done; }

# ---- start: p3d on both members (backup), then keepalived elects member 1 ----------------------
corosync_ready 1 2
start m1 "$ns_m1" 0 m1Wan m1Lan; pid_m1=$!
start m2 "$ns_m2" "$cpu2" m2Wan m2Lan; pid_m2=$!
wait_for m1 "$pid_m1" 'P3-I0001' 15 "start"
wait_for m2 "$pid_m2" 'P3-I0001' 15 "start"
keepalived_start 1
keepalived_start 2
wait_call 1 promote 1 10 "member 1 elected (notify_master)"
wait_for m1 "$pid_m1" 'P3-I0909' 5 "the VIP announced by member 1"
start s "$ns_s" 0 sWan sLan; pid_s=$!
wait_for m1 "$pid_m1" 'P3-I0401: setup with remote 7' 20 "session up with the secondary"
wait_for m2 "$pid_m2" 'P3-I0930: cluster: remote 7: replicated keys installed' 5 "the session replicated to m2"
[ "$(count m2 'P3-I0401')" -eq 0 ] || fail "m2 ran a setup exchange while backup"
in_ns "$ns_hs" ping -c 3 -i 0.2 -W 1 10.1.0.2 >"$work/ping0" 2>&1
[ "$(ping_replies "$work/ping0")" -ge 2 ] || fail "no ping through member 1 before the failover"

# ---- the steady ping (every 20 ms) through everything that follows -------------------------------
iv=0.02
ip netns exec "$ns_hs" ping -D -i $iv -W 1 10.1.0.2 >"$work/ping" 2>&1 &
pid_ping=$!
sleep 1
setups0=$(count s 'P3-I0401')

# ---- member 1 dies: p3d killed, its management link down ---------------------------------------
t_kill=$(now)
kill -KILL "$pid_m1"; wait "$pid_m1" 2>/dev/null; pid_m1=
in_ns "$ns_g" ip link set g1 down
wait_call 2 promote 1 10 "member 2 promoted by keepalived"
t_promote=$(call_time 2 promote 1)
wait_for m2 "$pid_m2" 'P3-I0909' 2 "the VIP announced by member 2"
wait_for m2 "$pid_m2" 'P3-I0933: cluster: remote 7: taking the control session over' 2 "member 2 taking the control session over"
# Past heartbeat_fail the secondary still holds the session it set up with member 1.
until_past "$t_kill" $((HF + 2))
[ "$(count s 'P3-I0401')" -eq "$setups0" ] || fail "the secondary set up again after the failover"
[ "$(count s 'P3-E05')" -eq 0 ] || fail "the secondary lost its session ($(grep -m1 'P3-E05' "$work/s.log"))"
# The control channel runs on member 2: a rekey the secondary asks for completes.
rekey_completes "after the takeover"

# ---- member 1 returns as backup, receives the state ---------------------------------------------
start m1b "$ns_m1" 0 m1Wan m1Lan m1; pid_m1=$!
wait_for m1b "$pid_m1" 'P3-I0001' 15 "start again"
in_ns "$ns_g" ip link set g1 up
wait_for m1b "$pid_m1" 'P3-I0930: cluster: remote 7: replicated keys installed' 15 "member 2's session replicated to the returned member 1"
sleep 3
[ "$(calls 1 promote)" -eq 1 ] || fail "the returned member 1 took the master role back (nopreempt)"
[ "$(count m1b 'P3-I0909')" -eq 0 ] || fail "the returned member 1 announced the VIP"

# ---- the administrator moves the role back: promote member 1, then restart keepalived on 2 -----
setups1=$(count s 'P3-I0401')
d2=$(calls 2 demote) p1=$(calls 1 promote)
t_back=$(now)
"$p3ctl" -s "$work/m1.sock" cluster promote >"$work/promote.out" 2>&1 || { cat "$work/promote.out"; fail "p3ctl cluster promote on member 1"; }
wait_for m1b "$pid_m1" 'P3-I0933: cluster: remote 7: taking the control session over' 2 "member 1 taking the control session back"
wait_for m2 "$pid_m2" 'P3-I0936: cluster: remote 7: control session let go: member 1' 2 "member 2 letting the control session go"
sleep 1
"$p3ctl" -s "$work/m2.sock" cluster demote >"$work/demote.out" 2>&1 || { cat "$work/demote.out"; fail "p3ctl cluster demote on member 2"; }
kill -TERM "$pid_k2"; wait "$pid_k2" 2>/dev/null
wait_call 1 promote $((p1 + 1)) 8 "keepalived on member 1 master (notify_master)"
keepalived_start 2
until_past "$t_back" $((HF + 2))
[ "$(count s 'P3-I0401')" -eq "$setups1" ] || fail "the secondary set up again after the role moved back"
[ "$(count s 'P3-E05')" -eq 0 ] || fail "the secondary lost its session ($(grep -m1 'P3-E05' "$work/s.log"))"
rekey_completes "after the role moved back"
sleep 0.5
[ "$(calls 2 promote)" -eq 1 ] || fail "member 2 became master again after its keepalived restarted"
kill -INT "$pid_ping"; wait "$pid_ping" 2>/dev/null; pid_ping=
grep -q 'P3-W0931' "$work/m2.log" "$work/m1b.log" && fail "a member dropped a record"

# ---- the figures ---------------------------------------------------------------------------------
"$py" - "$work/ping" "$iv" "$t_kill" "$t_promote" "$t_back" "$HF" >"$work/figures" <<'PY' || { cat "$work/figures"; fail "the figures"; }
import re, sys
path, iv, t_kill, t_prom, t_back, hf = sys.argv[1], *map(float, sys.argv[2:])
replies = []
for line in open(path):
    m = re.match(r"\[(\d+\.\d+)\].*icmp_seq=(\d+)", line)
    if m and "bytes from" in line:
        replies.append((float(m.group(1)), int(m.group(2))))
replies.sort(key=lambda r: r[1])
gaps = []   # (time of the last reply before, of the first after, packets lost)
for (t0, s0), (t1, s1) in zip(replies, replies[1:]):
    if s1 - s0 > 3:
        gaps.append((t0, t1, s1 - s0 - 1))
def phase(a, b):
    return [g for g in gaps if a <= g[1] and g[0] < b]
def ms(g):   # first lost (one interval after the last answered) to first answered
    return (g[1] - g[0] - iv) * 1000
fail = []
over = phase(t_kill, t_back)
print(f"failover: member 2 promoted by keepalived {t_prom - t_kill:.2f} s after member 1 died")
if not over:
    fail.append("no gap at all after the kill: was member 1 carrying the traffic?")
else:
    first = over[0]
    print(f"failover: gap {ms(first):.0f} ms ({first[2]} pings lost), served again {first[1] - t_kill:.2f} s after the kill")
    if first[1] - t_kill > hf:
        fail.append(f"the secondary's LAN was not served again within heartbeat_fail ({hf:.0f} s)")
    # The control session taken over: nothing at heartbeat_fail, no second gap.
    for g in over[1:]:
        fail.append(f"a second gap of {ms(g):.0f} ms ({g[2]} lost) at {g[0] - t_kill:.2f} s after the kill")
    if len(over) == 1:
        print("failover: no second gap (the secondary kept its session: taken over, no new setup)")
back = phase(t_back, 1e12)
if back:
    for g in back:
        print(f"role back: gap {ms(g):.0f} ms ({g[2]} lost) at {g[0] - t_back:.2f} s after p3ctl cluster promote")
else:
    print("role back: no gap (no ping lost)")
print("role back: the secondary kept its session (member 1 took the control session over)")
# The end: traffic runs on (at least half the pings of the last two seconds answered; a
# loaded machine delays a few, a dead path answers none).
last = [r for r in replies if r[0] > replies[-1][0] - 2.0]
if len(last) < 1.0 / iv:
    fail.append(f"traffic did not run on at the end ({len(last)} replies in the last two seconds)")
for f in fail:
    print("ERROR:", f)
sys.exit(1 if fail else 0)
PY
cat "$work/figures"
echo "PASS: 88-cluster-failover"
