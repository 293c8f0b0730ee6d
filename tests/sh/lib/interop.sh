# Sourced by the standard interop tests (tests/sh/7x-interop-*.sh; not a test itself): p3d in
# standard ESP mode (remote wire = "esp") against strongSwan's charon run as a user would, on its
# own ports: IKE_SA_INIT on UDP 500, then IKE (behind the non-ESP marker) and ESP-in-UDP on 4500.
#
#   host A ns           p3d ns                          charon ns                 host B ns
#   10.1.0.2 ---veth--- [LAN] p3d [WAN] ---veth--- 192.0.2.2 charon 10.2.0.1 ---veth--- 10.2.0.2
#     hA               aLan 10.1.0.1  aWan 192.0.2.1   bWan   (kernel-libipsec)  bLan      hB
#                      pri.test, UDP 500 and 4500      sec.test, ipsec0 (TUN)
#                                                  ^ tcpdump on bWan (both directions)
#
# Needs root, network namespaces with veth, charon with kernel-libipsec, swanctl, tcpdump,
# tshark, iperf3, openssl and /usr/bin/python3 with cryptography (77 otherwise); a built p3d
# and p3ctl (1 otherwise).
#
# Sets everything netns-pair.sh sets (work, tag, fail, wait_for, pid_* clean-up), and:
# ns_ha ns_a ns_b ns_hb, cdir ($work/charon: charon's configuration, log, vici socket), adm
# (p3d's admin socket), and PSK (a fresh pre-shared key, also in $work/psk).
# interop_topology: the picture above; charon's side has kernel addresses and forwards.
# interop_pki: a CA (ECDSA P-256) and certificates for pri.test (ECDSA P-256) and sec.test
#   (RSA-2048) in $work, charon's copies under $cdir/swanctl.
# interop_p3d_conf ROLE AUTH KEY_TYPE [REMOTE_EXTRA]: $work/a.conf: role primary (responder on
#   local.port 500) or secondary (initiator to 192.0.2.2:500), remote 1 = sec.test at 192.0.2.2
#   with wire = "esp", subnets 10.2.0.0/24, key_type KEY_TYPE and REMOTE_EXTRA (further settings
#   of the remote); AUTH psk (its psk_file) or cert.
# interop_p3d_start [SKIP_IF_REFUSED]: starts p3d a with --insecure-key-log $work/a.keys, waits
#   for P3-I0001. A configuration p3d refuses fails the test, or skips it (77) when
#   SKIP_IF_REFUSED is set.
# interop_capture: tcpdump on bWan into $work/wan.pcap (pid_cap); interop_capture_stop.
# interop_charon AUTH ESP [CONN_EXTRA [CHILD_EXTRA]]: charon_stock_conf into $cdir and starts
#   charon in ns_b (pid_charon); retransmissions shortened so a failure shows within seconds.
# interop_sas FILE / interop_check_sas FILE ESP_ALG: swanctl --list-sas (interop_sas_settled: once
#   no IKE SA rekey is in flight, within 4 s); the IKE SA ESTABLISHED
#   with AES_GCM_16 between sec.test @ 192.0.2.2[4500] and pri.test @ 192.0.2.1[4500] (charon
#   floated to 4500), the child SA INSTALLED in tunnel mode, ESP in UDP, ESP_ALG (e.g.
#   AES_GCM_16-128), selectors 10.2.0.0/24 === 10.1.0.0/24.
# interop_pings: ping both ways, host A <-> charon's gateway and host B (3 each, all answered).
# interop_iperf SECS RATE WHAT OPTS...: iperf3 -J from host A to host B and from host B to host A
#   at once (servers on both hosts), each SECS seconds at RATE; $work/iperf-ab-WHAT.json and
#   iperf-ba-WHAT.json; fails on an iperf3 error or under 90 % of SECS x RATE received (TCP), or
#   on any datagram lost (UDP, OPTS -u).
# interop_child_sas: child SAs charon established so far (its log; rekeys = this - 1).
# interop_esp_check MIN_P3D MIN_SAS [OPTION...]: lib/esp_check.py on the capture with p3d's key
#   log and charon's keys (further options passed on); output in $work/esp-check.txt.
. "$(dirname "${BASH_SOURCE[0]}")/netns-pair.sh" p3ctl swanctl tcpdump tshark iperf3 openssl unshare
. "$(dirname "${BASH_SOURCE[0]}")/charon.sh"
[ -x "$CHARON" ] || { echo "SKIP: $CHARON missing (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins)"; exit 77; }
[ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] || { echo "SKIP: kernel-libipsec plugin missing (libcharon-extra-plugins)"; exit 77; }
[ -c /dev/net/tun ] || { echo "SKIP: /dev/net/tun missing"; exit 77; }
/usr/bin/python3 -c 'import cryptography' 2>/dev/null || { echo "SKIP: /usr/bin/python3 without cryptography (python3-cryptography)"; exit 77; }

p3d_names="a"
log_lines=40
cdir=$work/charon
adm=$work/a.sock
mkdir -p "$cdir"
psk psk
PSK=$(cat "$work/psk")

fail() {
  echo "FAIL: $*"
  echo "---- p3d log (last $log_lines lines)"; tail -n "$log_lines" "$work/a.log" 2>/dev/null
  echo "---- charon log (last 30 lines)"; grep -v '\[CHD\] ' "$cdir/charon.log" 2>/dev/null | tail -n 30
  if [ -n "${pid_a:-}" ] && [ -S "$adm" ]; then
    echo "---- p3ctl --json status (setup counters, drops)"; "$p3ctl" -s "$adm" --json status 2>&1 | head -c 1500; echo
  fi
  [ -s "$work/wan.pcap" ] && interop_float_diag
  exit 1
}

interop_topology() {
  pair_topology
  in_ns "$ns_b" ip addr add 192.0.2.2/24 dev bWan &&
    in_ns "$ns_b" ip addr add 10.2.0.1/24 dev bLan &&
    in_ns "$ns_b" sysctl -qw net.ipv4.ip_forward=1 || fail "charon's side of the topology"
}

interop_pki() {
  mkdir -p "$cdir/swanctl/x509ca" "$cdir/swanctl/x509" "$cdir/swanctl/private"
  (
    cd "$work" || exit 1
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null &&
      openssl req -x509 -new -key ca.key -subj "/CN=p3 interop CA" -days 2 -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null &&
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out pri.key 2>/dev/null &&
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sec.key 2>/dev/null || exit 1
    for n in pri sec; do
      openssl req -new -key $n.key -subj "/CN=$n.test" -out $n.csr 2>/dev/null &&
        printf 'subjectAltName=DNS:%s.test\nbasicConstraints=critical,CA:FALSE\n' $n >$n.ext &&
        openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out $n.pem \
          -extfile $n.ext 2>/dev/null || exit 1
    done
    chmod 644 ca.pem pri.pem sec.pem
  ) || fail "openssl could not make the test PKI"
  cp "$work/ca.pem" "$cdir/swanctl/x509ca/"
  cp "$work/sec.pem" "$cdir/swanctl/x509/"
  cp "$work/sec.key" "$cdir/swanctl/private/"
}

interop_p3d_conf() {  # role auth key-type [remote-extra]
  local role=$1 auth=$2 key_type=$3 extra=${4:-} creds="" remote_creds="" remote_port=""
  if [ "$auth" = psk ]; then
    remote_creds="psk_file = \"$work/psk\";"
  else
    creds="certificate = \"$work/pri.pem\"; private_key = \"$work/pri.key\"; ca = \"$work/ca.pem\";"
  fi
  [ "$role" = secondary ] && remote_port="port = 500;"
  cat >"$work/a.conf" <<EOF
role = "$role";
local = { ip = 4; address = "192.0.2.1"; port = 500; identity = "pri.test"; $creds
  admin = { socket = "$adm"; audit = "$work/audit.jsonl"; }; };
$(dataplane 192.0.2.1 10.1.0.1)
remotes = ( { id = 1; ip = 4; address = "192.0.2.2"; $remote_port identity = "sec.test"; wire = "esp";
              key_type = "$key_type"; subnets = [ "10.2.0.0/24" ]; $remote_creds $extra } );
EOF
}

interop_p3d_start() {  # [skip-if-refused]
  local i
  p3d_extra="--insecure-key-log $work/NAME.keys"
  start a "$ns_a" 0 aWan aLan
  pid_a=$!
  for ((i = 0; i < 150; i++)); do
    grep -q 'P3-I0001' "$work/a.log" && break
    if ! kill -0 "$pid_a" 2>/dev/null; then
      wait "$pid_a"
      pid_a=
      grep -E 'P3-[EW]0[0-9]+' "$work/a.log" | head -5
      [ -n "${1:-}" ] && { echo "SKIP: p3d refuses this configuration (standard ESP mode as $(sed -n 's/^role = "\(.*\)";/\1/p' "$work/a.conf"), lines above)"; exit 77; }
      fail "p3d refused the configuration: remote 1 with wire = \"esp\" (standard ESP mode)"
    fi
    sleep 0.1
  done
  grep -q 'P3-I0001' "$work/a.log" || fail "p3d did not start within 15 s"
  grep -q "P3-W0009: INSECURE: --insecure-key-log $work/a.keys" "$work/a.log" || fail "p3d did not announce its key log"
}

interop_capture() {
  ip netns exec "$ns_b" tcpdump -i bWan -B 16384 -s 0 -U -n -w "$work/wan.pcap" 'udp or ip proto 50' \
    2>"$work/tcpdump.txt" &
  pid_cap=$!
  wait_log "$work/tcpdump.txt" "$pid_cap" 'listening on' 10 "tcpdump on bWan"
}
interop_capture_stop() {
  kill -INT "$pid_cap"; wait "$pid_cap"; pid_cap=
  grep -q '^0 packets dropped by kernel' "$work/tcpdump.txt" ||
    fail "the capture on bWan is incomplete: $(grep dropped "$work/tcpdump.txt" | tr '\n' ' ')"
}

# What the capture says about the exchange: IKE on 500 and on 4500 each way. Shown on failure:
# a charon that floated to 4500 and got no answer there is the classic interop failure.
interop_float_diag() {
  local f=$work/ike-flows.txt
  tshark -n -r "$work/wan.pcap" -d udp.port==4500,udpencap -Y isakmp -T fields \
    -e ip.src -e udp.srcport -e ip.dst -e udp.dstport -e isakmp.exchangetype 2>/dev/null >"$f"
  echo "---- IKE messages in the capture (source -> destination: count)"
  awk -F'\t' '{n[$1 ":" $2 " -> " $3 ":" $4]++} END {for (k in n) print "  " k ": " n[k]}' "$f" | sort
  if awk -F'\t' '$1 == "192.0.2.2" && $4 == 500' "$f" | grep -q . &&
    ! awk -F'\t' '$1 == "192.0.2.1" && $2 == 500' "$f" | grep -q .; then
    echo "  => p3d never answered IKE_SA_INIT on UDP 500 (a request it cannot parse counts as setup.malformed)"
  fi
  if awk -F'\t' '$1 == "192.0.2.2" && $4 == 4500' "$f" | grep -q . &&
    ! awk -F'\t' '$1 == "192.0.2.1" && $2 == 4500' "$f" | grep -q .; then
    echo "  => charon floated to UDP 4500 (RFC 7296 section 2.23) and p3d never answered there"
  fi
}

interop_charon() {  # auth esp [conn-extra [child-extra]]
  charon_stock_conf "$cdir" "$1" "$2" "${3:-}" "${4:-}" "  retransmit_tries = 2
  retransmit_timeout = 1.0"
  charon_start "$cdir" "$ns_b" "charon"
  pid_charon=$CHARON_PID
  CHARON_PID=
}

interop_sas() { charon_sas "$cdir" "$1"; }
# After rekeys: the listing once no rekey is in flight (an IKE SA being rekeyed is REKEYING).
interop_sas_settled() {
  local i
  for i in $(seq 20); do
    interop_sas "$1"
    grep -Eq '^p3: #[0-9]+, ESTABLISHED, IKEv2' "$1" && grep -q 'INSTALLED, TUNNEL' "$1" &&
      ! grep -Eq '^p3: #[0-9]+, (REKEYING|REKEYED|DELETING|CONNECTING)' "$1" && return 0
    sleep 0.2
  done
}
interop_check_sas() {  # file esp-alg
  local s=$1
  grep -Eq '^p3: #[0-9]+, ESTABLISHED, IKEv2' "$s" || fail "no ESTABLISHED IKE SA p3 in swanctl --list-sas"
  grep -Eq '^ +local +.sec\.test. @ 192\.0\.2\.2\[4500\]' "$s" || fail "charon's side is not sec.test @ 192.0.2.2[4500]"
  grep -Eq '^ +remote +.pri\.test. @ 192\.0\.2\.1\[4500\]' "$s" || fail "p3d's side is not pri.test @ 192.0.2.1[4500]"
  grep -Eq '^ +AES_GCM_16-(128|256)/PRF_HMAC_SHA2_(256|384)/(CURVE_25519|ECP_256|ECP_384)$' "$s" ||
    fail "IKE SA algorithms are none p3 offers"
  grep -Eq '^ +net: #[0-9]+, reqid [0-9]+, INSTALLED, TUNNEL-in-UDP, ESP:'"$2"'$' "$s" ||
    fail "no INSTALLED child SA net, tunnel mode in UDP, with $2"
  grep -Eq '^ +local +10\.2\.0\.0/24$' "$s" && grep -Eq '^ +remote +10\.1\.0\.0/24$' "$s" ||
    fail "child SA traffic selectors"
}

interop_pings() {
  local from to
  for pair in "$ns_ha 10.2.0.1" "$ns_ha 10.2.0.2" "$ns_hb 10.1.0.2"; do
    set -- $pair
    from=$1 to=$2
    in_ns "$from" ping -n -c 3 -i 0.2 -W 2 "$to" >"$work/ping.txt" 2>&1 || true
    [ "$(ping_replies "$work/ping.txt")" = 3 ] || { cat "$work/ping.txt"; fail "ping ${from##*-} -> $to through the tunnel"; }
    echo "ping ${from##*-} -> $to: 3 of 3 answered"
  done
}

interop_iperf() {  # secs rate what opts...
  local secs=$1 rate=$2 what=$3 port=5201
  shift 3
  [ "$what" = udp ] && port=5202
  ip netns exec "$ns_hb" iperf3 -s -1 -p $port >/dev/null 2>&1 & pid_srvb=$!
  ip netns exec "$ns_ha" iperf3 -s -1 -p $port >/dev/null 2>&1 & pid_srva=$!
  sleep 0.5
  ip netns exec "$ns_ha" iperf3 -c 10.2.0.2 -p $port -t "$secs" -b "$rate" -J "$@" >"$work/iperf-ab-$what.json" 2>&1 &
  pid_ipab=$!
  ip netns exec "$ns_hb" iperf3 -c 10.1.0.2 -p $port -t "$secs" -b "$rate" -J "$@" >"$work/iperf-ba-$what.json" 2>&1 &
  pid_ipba=$!
  wait "$pid_ipab"; pid_ipab=
  wait "$pid_ipba"; pid_ipba=
  for v in pid_srva pid_srvb; do kill "${!v}" 2>/dev/null; wait "${!v}" 2>/dev/null; printf -v "$v" ''; done
  /usr/bin/python3 - "$work" "$what" "$secs" "$rate" <<'PY' || fail "iperf3 $what transfer through the tunnel (above)"
import json, sys
work, what, secs, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
mult = {"K": 1e3, "M": 1e6, "G": 1e9}
bps = float(rate[:-1]) * mult[rate[-1]] if rate[-1] in mult else float(rate)
want = 0.9 * secs * bps / 8
ok = True
for d, name in (("ab", "host A -> host B"), ("ba", "host B -> host A")):
    try:
        r = json.load(open("%s/iperf-%s-%s.json" % (work, d, what)))
    except ValueError:
        print("%s: iperf3 wrote no JSON: %s" % (name, open("%s/iperf-%s-%s.json" % (work, d, what)).read()[:300]))
        ok = False
        continue
    if "error" in r:
        print("%s: iperf3 error: %s" % (name, r["error"]))
        ok = False
        continue
    end = r["end"]
    if what == "udp":
        s = end["sum"]
        print("%s: UDP %d datagrams, %d lost, %.1f Mbit/s" % (name, s["packets"], s["lost_packets"], s["bits_per_second"] / 1e6))
        got = s["bytes"]
        ok &= s["lost_packets"] == 0 and s["packets"] > 0
    else:
        got = end["sum_received"]["bytes"]
        print("%s: TCP %d bytes received, %.1f Mbit/s, %d retransmits" % (
            name, got, end["sum_received"]["bits_per_second"] / 1e6, end["sum_sent"].get("retransmits", 0)))
    if got < want:
        print("%s: %d bytes, want at least %d" % (name, got, want))
        ok = False
sys.exit(0 if ok else 1)
PY
}

interop_child_sas() { grep -Ec '\[IKE\] (inbound )?CHILD_SA net\{[0-9]+\} established with SPIs' "$cdir/charon.log"; }

interop_esp_check() {  # min-p3d-packets min-sas [esp_check.py options]
  /usr/bin/python3 "$here/lib/esp_check.py" --pcap "$work/wan.pcap" --keylog "$work/a.keys" --p3d 192.0.2.1 \
    --charon-log "$cdir/charon.log" --min-p3d "$1" --min-sas "$2" --json "$work/esp-check.json" "${@:3}" \
    >"$work/esp-check.txt" 2>&1
  local rc=$?
  cat "$work/esp-check.txt"
  [ "$rc" = 0 ] || fail "an observer with the keys could not verify p3d's ESP (above)"
}
