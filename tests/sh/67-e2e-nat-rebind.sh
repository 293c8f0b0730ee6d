#!/usr/bin/env bash
# A NAT that does not keep the secondary's port, and rebinds it mid-session: the router maps
# the secondary's nat_port (4500) to a random port of 24500-24599, so the primary, which
# assumes a port-preserving NAT, first sends to 4500 where nothing is mapped; it learns the
# real port from the secondary's first authenticated P3 packet (P3-I0340) and sends there.
# Mid-session the router forgets the mapping and maps 4500 into 25500-25599 instead: the
# primary follows again (a second P3-I0340), while a ping and a slow TCP connection run
# through it. Ping and TCP pass both ways before and after; the session is set up once and
# nothing is refused under its keys; p3ctl status counts the two moves.
#
#   host A ns      primary ns                   router ns (NAT)                    secondary ns              host B ns
#   10.1.0.2 -veth- [aLan] p3d a [aWan] -veth- [rA]  forwards  [rB] -veth- [bWan] p3d b [bLan] -veth- 10.2.0.2
#                  192.0.2.1/24        nft: oifname rA udp sport 4500 snat to 192.0.2.254:24500-24599
#                                       (then 25500-25599), everything else masquerade
#
# Needs root, network namespaces with veth, nftables NAT (nft) and conntrack (exit 77
# otherwise).
nat_rules='oifname "rA" udp sport 4500 snat to 192.0.2.254:24500-24599 random'
. "$(dirname "$0")/lib/netns-nat.sh" p3ctl
t0=$(date +%s)
log_lines=40
nat_topology 30

admin() { echo "admin = { socket = \"$work/$1.sock\"; viewer_group = \"nogroup\"; audit = \"$work/audit-$1.jsonl\"; };"; }
nat_b_local=$(admin b)
nat_conf "heartbeat_time = 1; heartbeat_fail = 5; $(admin a)"
ctl() { local n=$1; shift; "$p3ctl" -s "$work/$n.sock" "$@"; }
moved_to() { grep -oE 'P3-I0340: .* the peer moved from [0-9.:]+ to 192\.0\.2\.254:[0-9]+' "$work/a.log" | sed 's/.*://'; }

ping_lossless() {
  in_ns "$1" ping -n -i 0.1 -c "$3" -W 2 "$2" >"$work/ping.txt" 2>&1
  [ "$(ping_replies "$work/ping.txt")" = "$3" ] || fail "$4: $(grep -E 'transmitted' "$work/ping.txt")"
}
# xfer WHAT FROM_NS TO_NS TO_ADDR MB [SECONDS]: MB megabytes over one TCP connection (spread
# over SECONDS when given); the receiver must have read exactly what was sent.
xfer_start() {
  ip netns exec "$3" /usr/bin/python3 "$work/xfer.py" recv 5202 >"$work/xfer-recv.txt" 2>&1 & pid_xrecv=$!
  wait_log "$work/xfer-recv.txt" "$pid_xrecv" listening 5 "TCP receiver ($1)"
  in_ns "$2" /usr/bin/python3 "$work/xfer.py" send "$4" 5202 $(($5 << 20)) ${6:-} >"$work/xfer-send.txt" 2>&1 &
  pid_xsend=$!
}
xfer_end() {
  local rc
  wait "$pid_xsend"; rc=$?; pid_xsend=
  wait "$pid_xrecv"; pid_xrecv=
  echo "$1: $(cat "$work/xfer-send.txt")"
  [ "$rc" -eq 0 ] || fail "TCP transfer $1: $(cat "$work/xfer-recv.txt")"
}
xfer() { xfer_start "$@"; xfer_end "$1"; }
cp "$(dirname "$0")/lib/xfer.py" "$work/xfer.py"

pair_start
wait_for a "$pid_a" 'P3-I0416: setup with remote 7 (secondary.p3.test): NAT detected (peer is behind it)' 20 "NAT detected"
pair_wait_up 20
# The primary's first packets go to 4500, where nothing is mapped, until the secondary's first
# packet shows it the mapping: a host B ping is answered within a few seconds, then no loss.
in_ns "$ns_hb" ping -n -c 1 -w 5 10.1.0.2 >"$work/ping.txt" 2>&1 ||
  fail "host B -> host A: no answer within 5 s of the session coming up"
ping_lossless "$ns_ha" 10.2.0.2 10 "host A -> host B"
ping_lossless "$ns_hb" 10.1.0.2 10 "host B -> host A"
xfer "TCP A->B" "$ns_ha" "$ns_hb" 10.2.0.2 4
xfer "TCP B->A" "$ns_hb" "$ns_ha" 10.1.0.2 4
wait_for a "$pid_a" 'P3-I0340: .*the peer moved from 192.0.2.254:4500 to 192.0.2.254:245[0-9][0-9] ' 1 \
  "the primary learning the secondary's mapped port"
port1=$(moved_to | tail -1)
echo "1. session up through a NAT that maps 4500 to $port1 (the primary learnt it: P3-I0340); ping both ways 10/10; TCP both ways whole"

# The rebinding, while a ping from host A and a slow TCP connection from host B run.
in_ns "$ns_ha" ping -n -i 0.1 -c 60 -W 2 10.2.0.2 >"$work/ping-rebind.txt" 2>&1 & pid_ping=$!
xfer_start "TCP B->A through the rebinding" "$ns_hb" "$ns_ha" 10.1.0.2 2 5
sleep 1.5
# The new rules in one transaction (an empty chain for a moment would let a packet through
# without NAT), then the old mapping forgotten.
in_ns "$ns_r" nft -f - <<'NFT' || fail "the router's new NAT rules"
flush chain ip nat postrouting
add rule ip nat postrouting oifname "rA" udp sport 4500 snat to 192.0.2.254:25500-25599 random
add rule ip nat postrouting oifname "rA" masquerade
NFT
in_ns "$ns_r" conntrack -D -p udp --orig-port-src 4500 >/dev/null 2>&1 || fail "no conntrack mapping of port 4500 to delete"
wait_for a "$pid_a" 'P3-I0340: .*the peer moved from 192.0.2.254:245[0-9][0-9] to 192.0.2.254:255[0-9][0-9] ' 5 \
  "the primary following the rebinding"
port2=$(moved_to | tail -1)
xfer_end "TCP B->A through the rebinding"
wait "$pid_ping"; pid_ping=
got=$(ping_replies "$work/ping-rebind.txt")
# The last 2 s of the ping (after the move) are all answered; the few lost before are the
# primary's packets to the forgotten mapping until the secondary's next packet.
tail_ok=$(grep -oE 'icmp_seq=[0-9]+' "$work/ping-rebind.txt" | sed 's/icmp_seq=//' | awk '$1 > 40' | wc -l)
[ "$tail_ok" -eq 20 ] || fail "ping during the rebinding: only $tail_ok of the last 20 answered ($got/60 in all)"
echo "2. the NAT rebinds 4500 from $port1 to $port2: the primary followed; ping $got/60 (the last 20 all answered); a TCP connection through it whole"

ping_lossless "$ns_ha" 10.2.0.2 10 "host A -> host B after the rebinding"
ping_lossless "$ns_hb" 10.1.0.2 10 "host B -> host A after the rebinding"
xfer "TCP A->B after the rebinding" "$ns_ha" "$ns_hb" 10.2.0.2 4
echo "3. after the rebinding: ping both ways 10/10; TCP whole"

# Nothing refused under the session's keys on either side; one session; two moves counted.
for n in a b; do
  id=7; [ "$n" = b ] && id=1
  ctl "$n" --json status "$id" >"$work/status-$n.json" || fail "p3ctl status at $n"
  /usr/bin/python3 - "$work/status-$n.json" "$n" <<'PY' || fail "p3d $n: the session's state or counts (above)"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["sessions"][0]
d = s["drops"]
print("p3d %s: state %s, peer moves %d, rx %d tx %d packets, session drops %s; appliance drops %s" % (sys.argv[2],
      s["state"], s["peer_moves"], s["rx_pkts"], s["tx_pkts"], d, r.get("control", {}).get("drops")))
want_moves = 2 if sys.argv[2] == "a" else 0
sys.exit(0 if s["state"] == "up" and s["peer_moves"] == want_moves and not any(d[k] for k in ("auth", "replay", "old_key")) else 1)
PY
done
[ "$(grep -c 'P3-I0340' "$work/a.log")" = 2 ] || fail "the primary logged $(grep -c 'P3-I0340' "$work/a.log") moves, want 2"
grep -q 'P3-I0340' "$work/b.log" && fail "the secondary's peer (not behind a NAT) moved"
grep -q 'P3-E0\(601\|602\)' "$work/a.log" "$work/b.log" && fail "the session was lost"
[ "$(grep -c 'P3-I0501' "$work/a.log")" = 1 ] || fail "the session was set up more than once"

pair_stop
for ns in $all_ns; do ip netns del "$ns" || fail "ip netns del $ns"; done
all_ns=
echo "PASS: the primary followed the secondary's NAT mapping to $port1, then through a rebinding to $port2, traffic on ($(($(date +%s) - t0)) s)"
exit 0
