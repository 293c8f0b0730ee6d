#!/usr/bin/env bash
# p3d refuses to start, with one line naming the reason code and exit status 2, when the
# configuration is broken (file:line), a configured port does not exist, an EAL option is
# wrong, or the command line is incomplete; and nothing stays running.
set -u
BUILD=${BUILD:-build}
p3d=$BUILD/p3d/p3d
[ -x "$p3d" ] || { echo "FAIL: $p3d not built"; exit 1; }
work=$(mktemp -d)
prefix=p3t21-$$
trap 'rm -rf "$work" /var/run/dpdk/$prefix' EXIT
eal=(--no-huge -m 256 --no-pci --no-shconf --file-prefix "$prefix" -l 0 --vdev net_ring0 --vdev net_null0)

good() {
  cat <<'CONF'
role = "primary";
local = { ip = 4; address = "192.0.2.1"; };
dataplane = {
  lan = { port = 0; address = "10.1.0.1/24"; };
  wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; };
};
remotes = ( { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; } );
CONF
}

# expect NAME STATUS PATTERN -- ARGS...: runs p3d (10 s at most), checks status and output.
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  timeout 20 "$p3d" "$@" >"$work/out" 2>&1
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: $name: exit status $rc, expected $want"; cat "$work/out"; exit 1
  fi
  if ! grep -qE "$pattern" "$work/out"; then
    echo "FAIL: $name: output lacks /$pattern/"; cat "$work/out"; exit 1
  fi
  echo "ok: $name -> $rc: $(grep -E "$pattern" "$work/out" | head -n 1)"
  rm -rf "/var/run/dpdk/$prefix"
}

# 1. Syntax error on line 4.
good | sed '4s/.*/  lan = { port = 0; address = ; };/' >"$work/syntax.conf"
expect "syntax error" 2 "p3d: error P3-E01[0-9][0-9]: $work/syntax.conf:4: " -- "${eal[@]}" -- -c "$work/syntax.conf"

# 2. A bad value on line 7.
good | sed '7s/id = 1;/id = 1; key_type = "AES512";/' >"$work/value.conf"
expect "bad value" 2 "P3-E01[0-9][0-9]: $work/value.conf:7: " -- "${eal[@]}" -- -c "$work/value.conf"

# 3. No such file.
expect "missing file" 2 "P3-E0101: .*$work/nonexistent.conf" -- "${eal[@]}" -- -c "$work/nonexistent.conf"

# 4. The WAN port does not exist (only ports 0 and 1 are there).
good | sed 's/wan = { port = 1;/wan = { port = 5;/' >"$work/port.conf"
expect "missing port" 2 "P3-E0202: dataplane.wan.port 5: no such DPDK port" -- "${eal[@]}" -- -c "$work/port.conf"

# 5. LAN and WAN the same port, once by id and once by device name.
good | sed 's/wan = { port = 1;/wan = { port = "net_ring0";/' >"$work/same.conf"
expect "same port" 2 "P3-E0206: dataplane.lan and dataplane.wan are both DPDK port 0" -- "${eal[@]}" -- -c "$work/same.conf"
good | sed 's/wan = { port = 1;/wan = { port = "net_ring9";/' >"$work/name.conf"
expect "missing port by name" 2 'P3-E0202: dataplane.wan.port "net_ring9": no such DPDK device' -- "${eal[@]}" -- -c "$work/name.conf"

# 6. A bad EAL option.
good >"$work/good.conf"
expect "bad EAL option" 2 "P3-E0201: rte_eal_init" -- --no-huge --no-such-eal-option -- -c "$work/good.conf"

# 7. No configuration given; an unknown application option.
expect "no -c" 2 "P3-E0003: no configuration" -- "${eal[@]}" --
expect "unknown option" 2 "P3-E0003: unknown or incomplete option" -- "${eal[@]}" -- -c "$work/good.conf" -x

# 8. Static keys: the same key both ways, and keys in a file others can read (the mode of the
# opened file), refused before anything starts.
sk() {  # RX_KEY MODE FILE
  good | sed "7s|subnets = \[ \"10.2.0.0/24\" \];|subnets = [ \"10.2.0.0/24\" ];\n  static_keys = { tx_id = 5; tx_key = \"00112233445566778899aabbccddeeff\"; tx_salt = \"01020304\"; rx_id = 6; rx_key = \"$1\"; rx_salt = \"0a0b0c0d\"; };|" >"$3"
  chmod "$2" "$3"
}
sk 00112233445566778899aabbccddeeff 600 "$work/samekey.conf"
expect "static key both ways" 2 "P3-E0120: $work/samekey.conf:8: remote 1: static_keys.tx_key equals rx_key" -- "${eal[@]}" -- -c "$work/samekey.conf"
sk ffeeddccbbaa99887766554433221100 644 "$work/skmode.conf"
expect "static keys readable by others" 2 "P3-E0122: $work/skmode.conf:8: remote 1 has static keys but the file has mode 0644" -- "${eal[@]}" -- -c "$work/skmode.conf"

# 9. --help is not an error.
expect "help" 0 "usage: p3d \[EAL options\] -- -c FILE" -- --help
expect "help after --" 0 "usage: p3d" -- "${eal[@]}" -- --help

# Nothing left behind: no p3d of ours still running.
if pgrep -f -- "--file-prefix $prefix" >/dev/null; then echo "FAIL: a p3d is still running"; exit 1; fi
exit 0
