#!/usr/bin/env bash
# What a monitoring system reads from p3d: 150 sessions (more than one 16 KiB telemetry reply
# holds) all shown by `p3ctl stats sessions` and `p3ctl metrics`; the OpenMetrics text read
# back by an independent parser (python3-prometheus-client); `p3ctl metrics --listen` serving
# it over HTTP to good and malformed requests without dying; the LAN link taken down and up
# in p3d's namespace, logged (P3-W0214, P3-I0213) and counted (link_changes); under journald
# (JOURNAL_STREAM) the lines as datagrams with P3_REASON and P3_REMOTE.
#
#   namespace $ns:  p3d  LAN net_tap0 (interface p3l$$, 10.1.0.1/24)   WAN net_null0
#   150 remotes 1..150 (no keys: sessions down), admin socket $work/adm.sock
#   p3ctl (host): telemetry /var/run/dpdk/$prefix, admin socket, HTTP 127.0.0.1:$port in $ns
P3D_LOG_LINES=20
. "$(dirname "$0")/lib/p3d-test.sh"
py=/usr/bin/python3
p3ctl=$BUILD/control/p3ctl
[ -x "$p3ctl" ] || fail "$p3ctl not built"
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root (network namespace, net_tap)"; exit 77; }
"$py" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null ||
  { echo "skip: /usr/bin/python3 lacks python3-prometheus-client"; exit 77; }
[ -e /dev/net/tun ] || { echo "skip: no /dev/net/tun for net_tap"; exit 77; }

ns=p3m$$
tap=p3l$$
ip netns add "$ns" || { echo "skip: cannot create a network namespace"; exit 77; }
srv=
cleanup_82() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  cleanup
}
trap cleanup_82 EXIT
ip -n "$ns" link set lo up

N=150
{
  echo 'role = "primary";'
  echo "local = { ip = 4; address = \"192.0.2.1\"; port = 5653; admin = { socket = \"$work/adm.sock\"; audit = \"$work/audit.jsonl\"; }; };"
  echo 'dataplane = { lan = { port = 0; address = "10.1.0.1/24"; };'
  echo '  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; };'
  echo '  idle_backoff_us = 200; };'
  echo 'remotes = ('
  for ((i = 1; i <= N; i++)); do
    sep=','; [ "$i" -eq "$N" ] && sep=''
    echo "  { id = $i; ip = 4; address = \"198.51.$((100 + i / 200)).$((i % 200 + 1))\"; subnets = [ \"10.2.$i.0/24\" ]; }$sep"
  done
  echo ');'
} >"$work/p3d.conf"

prefix=p3t82-$$
ip netns exec "$ns" "$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 \
  --vdev "net_tap0,iface=$tap" --vdev net_null0 -- -c "$work/p3d.conf" -f >"$work/log" 2>&1 &
pid=$!
wait_started
"$py" "$ROOT/tests/tools/p3_telemetry.py" "$prefix" --wait-socket 10 || fail "no telemetry socket"

# ---- 1. every session in stats and metrics (the reply of one page would stop near 74).
"$p3ctl" stats --prefix "$prefix" sessions >"$work/stats.txt" || fail "p3ctl stats sessions: exit $?"
got=$(sed -n 's/^\([0-9]*\)\.state=.*/\1/p' "$work/stats.txt" | sort -n | uniq | tr '\n' ' ')
[ "$got" = "$(seq -s ' ' 1 $N) " ] || fail "p3ctl stats sessions shows $(wc -w <<<"$got") of $N sessions: $got"
grep -q '^next=' "$work/stats.txt" && fail "p3ctl stats sessions prints the paging member"
"$p3ctl" stats --prefix "$prefix" --json sessions |
  "$py" -c 'import json, sys; r = json.load(sys.stdin)["/p3/sessions"]; assert len(r) == int(sys.argv[1]), len(r)' "$N" ||
  fail "p3ctl stats --json sessions: not one object of $N sessions"
"$py" "$ROOT/tests/tools/p3_telemetry.py" "$prefix" /p3/sessions |
  "$py" -c 'import json, sys; r = json.load(sys.stdin); assert len(r) == int(sys.argv[1]), len(r)' "$N" ||
  fail "tests/tools/p3_telemetry.py /p3/sessions: not $N sessions"
echo "stats: $N of $N sessions (p3ctl, p3ctl --json, p3_telemetry.py)"

"$p3ctl" -s "$work/adm.sock" metrics --prefix "$prefix" >"$work/metrics.txt" || fail "p3ctl metrics: exit $?"
# check_metrics FILE: parsed by prometheus_client's OpenMetrics parser (it refuses a text
# without "# EOF", interleaved families, bad escapes); every session and port present.
check_metrics() {
  "$py" - "$1" "$N" <<'PY'
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text, n = open(sys.argv[1]).read(), int(sys.argv[2])
fams = {f.name: f for f in text_string_to_metric_families(text)}
def samples(fam, name=None):
    return [s for s in fams[fam].samples if name is None or s.name == name]
up = {s.labels["remote"]: s.value for s in samples("p3_session_up")}
assert sorted(map(int, up)) == list(range(1, n + 1)), "sessions in p3_session_up: %d" % len(up)
assert all(v == 0 for v in up.values()), "a session without keys is up"
assert fams["p3_up"].samples[0].value == 1 and fams["p3_admin_up"].samples[0].value == 1
assert fams["p3_session_rx_packets"].type == "counter"
assert len(samples("p3_session_rekeys", "p3_session_rekeys_total")) == n
assert len(samples("p3_session_key_age_seconds")) == n
assert {s.labels["port"] for s in samples("p3_port_link_up")} == {"lan", "wan"}
assert any(s.labels["reason"] == "not_our_mac" and s.value > 0 for s in samples("p3_drops")), "net_null's frames"
assert fams["p3_sessions"].samples[0].value == n
busy = samples("p3_worker_busy_polls")
assert busy and busy[0].labels["worker"] == "0", "worker counters"
print("metrics: %d families, %d sessions, parsed by prometheus_client" % (len(fams), len(up)))
PY
}
check_metrics "$work/metrics.txt" || fail "p3ctl metrics: the OpenMetrics text is wrong (above)"
# The Grafana dashboard: JSON with a Prometheus datasource variable, and only names p3ctl
# prints (the setup exchange's, absent without a setup engine, as documented).
"$py" - "$ROOT/docs/grafana/p3-dashboard.json" "$work/metrics.txt" "$ROOT/docs/metrics.md" <<'PY' ||
import json, re, sys
d = json.load(open(sys.argv[1]))
text, doc = open(sys.argv[2]).read(), open(sys.argv[3]).read()
assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in d["templating"]["list"])
names = {n for p in d["panels"] for t in p["targets"] for n in re.findall(r"\bp3_[a-z0-9_]+", t["expr"])}
have = set(re.findall(r"^(p3_[a-z0-9_]+)", text, re.M))
missing = [n for n in names if n not in have and not (n.startswith("p3_setup_") and "`p3_setup_" in doc)]
assert not missing, "dashboard names p3ctl does not print: %s" % missing
print("dashboard: %d panels, %d metric names, all printed" % (len(d["panels"]), len(names)))
PY
  fail "docs/grafana/p3-dashboard.json (above)"

# ---- 2. over HTTP: Prometheus' request, then what a stranger on the network might send.
port=$((20000 + $$ % 20000))
ip netns exec "$ns" "$p3ctl" -s "$work/adm.sock" metrics --prefix "$prefix" --listen "127.0.0.1:$port" \
  2>"$work/http.log" &
srv=$!
ip netns exec "$ns" "$py" - "$port" "$work/http.txt" <<'PY' || fail "p3ctl metrics --listen (above)"
import socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
def ask(raw, wait=5):
    for _ in range(50):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=wait)
            break
        except ConnectionRefusedError:
            time.sleep(0.1)
    s.sendall(raw)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b
def status(r):
    return r.split(b"\r\n", 1)[0].decode()
r = ask(b"GET /metrics HTTP/1.1\r\nHost: p3\r\nAccept: application/openmetrics-text\r\n\r\n")
head, body = r.split(b"\r\n\r\n", 1)
assert status(r) == "HTTP/1.1 200 OK", status(r)
assert b"\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n" in head, head
assert body.endswith(b"# EOF\n")
open(out, "wb").write(body)
assert status(ask(b"GET / HTTP/1.1\r\n\r\n")) == "HTTP/1.1 404 Not Found"
assert status(ask(b"DELETE /metrics HTTP/1.1\r\n\r\n")) == "HTTP/1.1 405 Method Not Allowed"
bad = [b"\x00\xff" * 40 + b"\r\n\r\n", b"GET /metrics\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
       b"GET /m\x00 HTTP/1.1\r\n\r\n"]
for b in bad:
    assert status(ask(b)) == "HTTP/1.1 400 Bad Request", (b, status(ask(b)))
assert status(ask(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)) == "HTTP/1.1 431 Request Header Fields Too Large"
# 30 clients at once that send half a request and go away; then Prometheus again.
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
for s in idle:
    s.sendall(b"GET /met")
for s in idle:
    s.close()
assert status(ask(b"GET /metrics HTTP/1.0\r\n\r\n")) == "HTTP/1.1 200 OK"
print("http: 200 with the OpenMetrics type, 404, 405, 400 x%d, 431, 30 half requests: still serving" % len(bad))
PY
kill -0 "$srv" 2>/dev/null || fail "p3ctl metrics --listen died: $(cat "$work/http.log")"
check_metrics "$work/http.txt" || fail "GET /metrics: the OpenMetrics text is wrong (above)"
kill "$srv"; wait "$srv" 2>/dev/null; srv=

# ---- 3. the LAN link down and up: logged and counted.
wait_log "$work/log" "$pid" "P3-I0213: lan port 0 (net_tap0): link up (at start)" 5 "the LAN link at start (P3-I0213)"
ip -n "$ns" link set dev "$tap" down || fail "ip link set $tap down"
wait_log "$work/log" "$pid" "P3-W0214: lan port 0 (net_tap0): link down$" 5 "the LAN link down (P3-W0214)"
"$p3ctl" stats --prefix "$prefix" ports | grep -qx 'lan.link_up=0' || fail "stats ports: LAN link not down"
ip -n "$ns" link set dev "$tap" up || fail "ip link set $tap up"
wait_log "$work/log" "$pid" "P3-I0213: lan port 0 (net_tap0): link up, " 5 "the LAN link up again (P3-I0213)"
out=$("$p3ctl" stats --prefix "$prefix" ports)
grep -qx 'lan.link_changes=2' <<<"$out" || fail "stats ports: want lan.link_changes=2: $(grep link <<<"$out")"
grep -qx 'wan.link_changes=0' <<<"$out" || fail "stats ports: the WAN link changed: $(grep link <<<"$out")"
"$p3ctl" metrics --prefix "$prefix" | grep -qx 'p3_port_link_changes_total{port="lan",device="net_tap0"} 2' ||
  fail "metrics: p3_port_link_changes_total of the LAN is not 2"
echo "link: down and up logged (P3-W0214, P3-I0213), lan.link_changes=2"

kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
[ "$rc" -eq 0 ] || fail "p3d exit status $rc after SIGTERM"

# ---- 4. under journald: stderr is the journal's stream (JOURNAL_STREAM = its device:inode),
# so lines go as datagrams to the journal socket (here one this test binds) with P3_REASON
# and P3_REMOTE, and not to stderr.
sed -n '1,/^remotes = (/p' "$work/p3d.conf" >"$work/j.conf"
echo '  { id = 7; ip = 4; address = "198.51.100.7"; subnets = [ "10.2.7.0/24" ]; } );' >>"$work/j.conf"
: >"$work/jlog"
"$py" - "$work/journal.sock" "$work/journal.txt" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(0.2)
out, end = open(sys.argv[2], "w"), time.time() + 10
while time.time() < end:
    try:
        d = s.recv(65536).decode()
    except socket.timeout:
        continue
    out.write(d + "--\n"); out.flush()
    if "P3_REASON=P3-I0001\n" in d:
        break
PY
jrecv=$!
for _ in $(seq 50); do [ -S "$work/journal.sock" ] && break; sleep 0.1; done
rm -rf "/var/run/dpdk/$prefix"
prefix=p3t82j-$$
exec 3>>"$work/jlog"
JOURNAL_STREAM=$(stat -c '%d:%i' "$work/jlog") P3_JOURNAL_SOCKET=$work/journal.sock \
  "$p3d" --no-huge -m 512 --no-pci --file-prefix "$prefix" -l 0 --vdev net_null0 --vdev net_null1 \
  -- -c "$work/j.conf" -f >/dev/null 2>&3 &
pid=$!
exec 3>&-
wait "$jrecv" || fail "journal receiver"
kill -TERM "$pid"; wait "$pid"; pid=
grep -q '^P3_REASON=P3-I0001$' "$work/journal.txt" || fail "no datagram with P3_REASON=P3-I0001: $(cat "$work/journal.txt")"
grep -q '^MESSAGE=notice P3-I0001: p3d started' "$work/journal.txt" || fail "the start line's MESSAGE"
grep -B6 '^P3_REMOTE=7$' "$work/journal.txt" | grep -q '^P3_REASON=P3-W0418$' ||
  fail "remote 7's warning (P3-W0418) without P3_REMOTE=7: $(cat "$work/journal.txt")"
grep -q 'P3-I0001' "$work/jlog" && fail "lines went to stderr as well as to the journal"
echo "journal: P3_REASON on every line, P3_REMOTE=7 on remote 7's, nothing on stderr"
echo "PASS: 82-metrics"
