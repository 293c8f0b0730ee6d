#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# A flood on the primary's setup port leaves its session up and its memory flat. A primary and
# a secondary p3d bring a session up; then a third host floods the primary's setup port from
# spoofed sources in 198.18.0.0/15, several thousand datagrams a second: IKE_SA_INIT requests
# that look real, requests with bad key exchange data, and datagrams behind the non-ESP marker
# from some 100000 distinct sources. Meanwhile and after, pings cross the tunnel and heartbeats
# keep the session up; the primary's RSS stays within a few MB, and its log lines about the
# flood are rate-limited. Prints the flood rate reached and the primary's CPU and RSS.
#
#   host A ns            primary ns                 switch ns                secondary ns         host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ---veth--- sA -[br0]- sB ---veth--- [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#                        10.1.0.1   192.0.2.1               |                  192.0.2.2  10.2.0.1
#                                                           sF ---veth--- fX (flood sender, AF_PACKET)
#
# Needs root, network namespaces with veth and bridges, and /usr/bin/python3 (exit 77 otherwise).
. "$(dirname "$0")/lib/netns-pair.sh" /usr/bin/python3
ns_ha=$tag-ha ns_a=$tag-a ns_sw=$tag-sw ns_b=$tag-b ns_hb=$tag-hb
all_ns="$ns_ha $ns_a $ns_sw $ns_b $ns_hb"

# Topology: as scripts/lib/topology.sh's p3_topology, with a bridge between the WANs and a third port.
ip netns add "$ns_ha" 2>/dev/null || { echo "SKIP: cannot create network namespaces"; exit 77; }
for ns in $ns_a $ns_sw $ns_b $ns_hb; do ip netns add "$ns" || fail "ip netns add $ns"; done
ip link add hA netns "$ns_ha" type veth peer name aLan netns "$ns_a" 2>/dev/null || { echo "SKIP: cannot create veth pairs"; exit 77; }
ip link add aWan netns "$ns_a" type veth peer name sA netns "$ns_sw" || fail "veth aWan"
ip link add bWan netns "$ns_b" type veth peer name sB netns "$ns_sw" || fail "veth bWan"
ip link add fX netns "$ns_sw" type veth peer name sF netns "$ns_sw" || fail "veth fX"
ip link add bLan netns "$ns_b" type veth peer name hB netns "$ns_hb" || fail "veth bLan"
in_ns "$ns_sw" ip link add br0 type bridge 2>/dev/null || { echo "SKIP: cannot create a bridge"; exit 77; }
for ns in $all_ns; do
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  in_ns "$ns" ip link set lo up
done
for pair in "$ns_ha hA" "$ns_a aLan" "$ns_a aWan" "$ns_sw sA" "$ns_sw sB" "$ns_sw sF" "$ns_sw fX" "$ns_b bWan" "$ns_b bLan" "$ns_hb hB"; do
  set -- $pair
  in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1
  in_ns "$1" ip link set "$2" up || fail "link up $2"
done
for p in sA sB sF; do in_ns "$ns_sw" ip link set "$p" master br0 || fail "bridge port $p"; done
in_ns "$ns_sw" ip link set br0 up
in_ns "$ns_ha" ip addr add 10.1.0.2/24 dev hA && in_ns "$ns_ha" ip route add default via 10.1.0.1 &&
  in_ns "$ns_hb" ip addr add 10.2.0.2/24 dev hB && in_ns "$ns_hb" ip route add default via 10.2.0.1 || fail "host addresses"

pair_conf "heartbeat_time = 1; heartbeat_fail = 5;"
pair_start
pair_wait_up 25
pair_neighbours

rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid_a/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid_a/stat"; }
mac=$(in_ns "$ns_a" cat /sys/class/net/aWan/address)
flood() {  # rate seconds count [mix]
  in_ns "$ns_sw" /usr/bin/python3 "$here/lib/setup_flood.py" fX "$mac" 192.0.2.1 5653 "$@"
}
# The primary's CPU at rest (workers poll with back-off), for comparison.
c0=$(cpu_ticks); sleep 2; idle_cpu=$(( ($(cpu_ticks) - c0) * 100 / $(getconf CLK_TCK) / 2 ))
# Requests with bad key exchange data only: each would be refused (and logged) by itself;
# the failure rate turns cookies on, and what is logged is cut to a few lines a second.
lines0=$(wc -l <"$work/a.log")
flood 4000 2 8000 badke >/dev/null || fail "flood sender"
sleep 1.2  # the summary of the last second
bad_lines=$(tail -n +"$((lines0 + 1))" "$work/a.log" | grep -c 'P3-.04[0-9][0-9]')
echo "8000 requests with bad KE data: $bad_lines setup log lines"
[ "$bad_lines" -le 60 ] || fail "$bad_lines log lines for 8000 bad requests: not rate-limited"
# A short mixed flood: the mbuf pool and the half-open table reach their working size.
flood 4000 2 8000 >/dev/null || fail "flood sender"
sleep 1
rss0=$(rss); cpu0=$(cpu_ticks); lines0=$(wc -l <"$work/a.log")
t0=$(date +%s.%N)
in_ns "$ns_ha" ping -c 50 -i 0.2 -W 2 10.2.0.2 >"$work/ping.txt" 2>&1 & pid_ping=$!
out=$(flood "${FLOOD_RATE:-8000}" 11 110000) || fail "flood sender"
t1=$(date +%s.%N)
wait "$pid_ping"; pid_ping=
sleep 1
rss1=$(rss); cpu1=$(cpu_ticks)
sent=$(echo "$out" | grep -oE 'sent [0-9]+' | grep -oE '[0-9]+')
secs=$(echo "$out" | grep -oE 'in [0-9.]+' | grep -oE '[0-9.]+')
rate=$(awk -v n="$sent" -v s="$secs" 'BEGIN { printf "%d", n / s }')
cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "%d", 100 * (b - a) / hz / (t1 - t0) }')
flood_lines=$(tail -n +"$((lines0 + 1))" "$work/a.log" | grep -c 'P3-.04[0-9][0-9]')
suppressed=$(tail -n +"$((lines0 + 1))" "$work/a.log" | grep -c 'similar line(s) suppressed')
received=$(ping_replies "$work/ping.txt")
echo "flood: $sent datagrams in $secs s ($rate/s) from ~$sent sources; primary CPU ${cpu}% (all lcores and threads; ${idle_cpu}% at rest)"
echo "primary RSS: $rss0 kB before, $rss1 kB after ($(( (rss1 - rss0) )) kB); setup log lines during the flood: $flood_lines ($suppressed summaries)"
echo "pings through the tunnel during the flood: $received/50"

[ "$rate" -ge 3000 ] || fail "the flood reached only $rate datagrams/s (want >= 3000 for the test to mean something)"
[ $((rss1 - rss0)) -le 1024 ] || fail "primary RSS grew by $((rss1 - rss0)) kB under the flood (want <= 1 MB)"
# At most 10 lines a second per reason, plus one summary each: a handful of reasons over ~15 s.
[ "$flood_lines" -le 200 ] || fail "$flood_lines setup log lines during the flood: not rate-limited"
[ "$received" -ge 45 ] || { cat "$work/ping.txt"; fail "$received of 50 pings answered during the flood"; }
grep -q 'P3-E0\(601\|602\)' "$work/a.log" "$work/b.log" && fail "the session was lost during the flood"
kill -0 "$pid_a" 2>/dev/null || fail "p3d a died"

# After the flood: the session is the same one and traffic flows.
in_ns "$ns_ha" ping -c 10 -i 0.2 -W 2 10.2.0.2 >"$work/ping2.txt" 2>&1
received2=$(ping_replies "$work/ping2.txt")
[ "$received2" -eq 10 ] || { cat "$work/ping2.txt"; fail "after the flood $received2 of 10 pings answered"; }
[ "$(grep -c 'P3-I0401' "$work/a.log")" -eq 1 ] || fail "the primary set a session up more than once"

pair_stop
echo "PASS: session up through a $rate/s setup flood; $received/50 pings during, 10/10 after; RSS +$((rss1 - rss0)) kB; $flood_lines log lines"
exit 0
