#!/usr/bin/env bash
# p3-test: alone (it loads the machine or counts every packet under load: nothing runs beside it)
# The rekey an observer cannot see: two p3d with a pre-shared key rekey every second while UDP
# streams run both ways at 3000 datagrams/s each for 15 s. Every datagram must arrive exactly
# once, at least 10 rekeys must complete on both sides, and a capture of the WAN, read as an
# observer would (tests/sh/lib/observer.py), must show exactly one P3 ID per sender lane for
# the whole run and sequences that only go up. With the test-only key log (p3d
# --insecure-key-log) the observer then decrypts every packet: each opens under exactly one
# logged key, the key changes it sees are jittered, and every control packet has one length.
#
#   host A ns              primary ns                        secondary ns              host B ns
#   10.1.0.2 ---veth--- [LAN] p3d A [WAN] ------veth------ [WAN] p3d B [LAN] ---veth--- 10.2.0.2
#   p3-traffic           10.1.0.1   192.0.2.1  ^        ^   192.0.2.2   10.2.0.1         p3-traffic
#    send :9000 ->                             |        |                               recv :9000
#    recv :9001                       tcpdump -Q in   tcpdump -Q in                 <- send :9001
#                                     on aWan: B->A   on bWan: A->B
#
# Each capture is taken where the packets arrive (p3d sends through AF_PACKET without the
# qdisc, so the sending end's tap does not see them). RATE and SECS override the stream.
# Needs root, network namespaces with veth, tcpdump (exit 77 otherwise) and perf/p3-traffic.
. "$(dirname "$0")/lib/netns-pair.sh" tcpdump
traffic=$BUILD/perf/p3-traffic
[ -x "$traffic" ] || { echo "FAIL: $traffic not built (ninja -C $BUILD perf/p3-traffic)"; exit 1; }
rate=${RATE:-3000}
secs=${SECS:-15}
log_lines=40
pair_topology

# rekey_wait = 1 (pushed to the secondary): a rekey about every second, jittered; 1 s is below
# the spec's 600 s, so no P3-W0125. Both p3d write their keys to $work/NAME.keys.
pair_conf "rekey_wait = 1; heartbeat_time = 1; heartbeat_fail = 5;"
p3d_extra="--insecure-key-log $work/NAME.keys"

# The captures cover the whole run, from before the session is set up. (Background commands
# run `ip netns exec` directly, not through in_ns: $! is then the program itself, which the
# EXIT trap and the kills below reach.)
for side in a b; do
  ns=ns_$side
  ip netns exec "${!ns}" tcpdump -i "${side}Wan" -Q in -B 16384 -s 0 -U -n -w "$work/$side-in.pcap" 'ip proto 50' \
    2>"$work/tcpdump-$side.txt" &
  printf -v "pid_cap$side" '%s' $!
done
for side in a b; do
  pid=pid_cap$side
  wait_log "$work/tcpdump-$side.txt" "${!pid}" 'listening on' 10 "tcpdump on ${side}Wan"
done

pair_start
for n in a b; do
  grep -q "P3-W0009: INSECURE: --insecure-key-log $work/$n.keys" "$work/$n.log" ||
    fail "p3d $n did not announce its key log (P3-W0009)"
done
wait_for a "$pid_a" 'P3-I0401: setup with remote 7 (secondary.p3.test' 20 "session up with the secondary"
pair_wait_up 5
pair_neighbours
for n in a b; do
  [ "$(stat -c %a "$work/$n.keys")" = 600 ] || fail "key log $n is mode $(stat -c %a "$work/$n.keys"), want 600"
done

# The streams: a receiver on each host, then a sender on each, at once.
done_before_a=$(grep -c 'P3-I0509' "$work/a.log")
done_before_b=$(grep -c 'P3-I0509' "$work/b.log")
ip netns exec "$ns_hb" "$traffic" recv --port 9000 --duration $((secs + 30)) --idle 3 --json "$work/recv-b.json" \
  >/dev/null 2>"$work/recv-b.txt" & pid_rb=$!
ip netns exec "$ns_ha" "$traffic" recv --port 9001 --duration $((secs + 30)) --idle 3 --json "$work/recv-a.json" \
  >/dev/null 2>"$work/recv-a.txt" & pid_ra=$!
wait_log "$work/recv-b.txt" "$pid_rb" 'receiving on port' 5 "the receiver on host B"
wait_log "$work/recv-a.txt" "$pid_ra" 'receiving on port' 5 "the receiver on host A"
ip netns exec "$ns_ha" "$traffic" send --to 10.2.0.2 --port 9000 --rate "$rate" --duration "$secs" --stream 1 \
  --json "$work/send-a.json" >/dev/null & pid_sa=$!
ip netns exec "$ns_hb" "$traffic" send --to 10.1.0.2 --port 9001 --rate "$rate" --duration "$secs" --stream 2 \
  --json "$work/send-b.json" >/dev/null & pid_sb=$!
for v in pid_sa pid_sb pid_rb pid_ra; do wait "${!v}"; printf -v "$v" ''; done
rekeys_a=$(($(grep -c 'P3-I0509' "$work/a.log") - done_before_a))
rekeys_b=$(($(grep -c 'P3-I0509' "$work/b.log") - done_before_b))

pair_stop
for side in a b; do
  pid=pid_cap$side
  kill -INT "${!pid}"; wait "${!pid}"; printf -v "$pid" ''
done

# What the hosts saw: every datagram once, none lost, none twice.
/usr/bin/python3 - "$work" "$rate" "$secs" <<'PY' || fail "the streams lost or duplicated datagrams"
import json, sys
work, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ok = True
for sender, receiver, stream in (("a", "b", "1"), ("b", "a", "2")):
    s = json.load(open("%s/send-%s.json" % (work, sender)))
    r = json.load(open("%s/recv-%s.json" % (work, receiver)))["streams"].get(stream, {})
    print("host %s -> host %s: sent %d at %.0f/s over %.1f s; received %d, unique %d, duplicated %d, lost %d, reordered %d"
          % (sender.upper(), receiver.upper(), s["sent"], s["achieved_pps"], s["duration_s"], r.get("received", 0),
             r.get("unique", 0), r.get("duplicated", 0), r.get("lost", 0), r.get("reordered", 0)))
    ok &= s["sent"] == int(rate * secs + 0.5) and s["achieved_pps"] >= 0.97 * rate
    ok &= r.get("unique") == s["sent"] and r.get("received") == s["sent"] and r.get("duplicated") == 0
sys.exit(0 if ok else 1)
PY

echo "rekeys completed during the streams: primary $rekeys_a, secondary $rekeys_b"
[ "$rekeys_a" -ge 10 ] || fail "primary completed $rekeys_a rekeys during the streams (want >= 10)"
[ "$rekeys_b" -ge 10 ] || fail "secondary completed $rekeys_b rekeys during the streams (want >= 10)"
grep -q 'P3-E0\(601\|602\)\|P3-W0510' "$work/a.log" "$work/b.log" && fail "a session was lost or a rekey attempt failed"
grep -q 'P3-W0125' "$work/a.log" "$work/b.log" && fail "rekey_wait = 1 drew the over-600-s warning P3-W0125"
for side in a b; do
  grep -q '^0 packets dropped by kernel' "$work/tcpdump-$side.txt" ||
    fail "the capture on ${side}Wan is incomplete: $(grep dropped "$work/tcpdump-$side.txt" | tr '\n' ' ')"
done

# The observer: first as anyone on the link, then with the key log.
/usr/bin/python3 "$here/lib/observer.py" --capture "a->b=$work/b-in.pcap" --capture "b->a=$work/a-in.pcap" \
  --keylog "a->b=$work/a.keys,$work/b.keys" --keylog "b->a=$work/b.keys,$work/a.keys" --lanes 1 --control-len 766 \
  --min-switches 10 --min-jitter-ms 50 --json "$work/observer.json" || fail "the observer saw the rekeys (above)"

for ns in $all_ns; do ip netns del "$ns" || fail "ip netns del $ns"; done
all_ns=
echo "PASS: $((2 * ${rate%.*} * secs)) datagrams through $rekeys_a rekeys, each arrived once; one P3 ID per lane, sequences only up, every packet under one logged key, control packets all one length"
exit 0
