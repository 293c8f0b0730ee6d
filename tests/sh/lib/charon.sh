# Sourced by the strongSwan interop tests (not a test itself). Needs the caller's fail MSG.
# charon (strongSwan with kernel-libipsec) as sec.test at 192.0.2.2 initiating to a p3 primary
# pri.test at 192.0.2.1:5653, child SA 10.2.0.0/24 <-> 10.1.0.0/24, AES-GCM-128 / X25519.
#
# charon_conf DIR AUTH [CHARON_EXTRA [CONN_EXTRA]] writes DIR/strongswan.conf and
#   DIR/swanctl/swanctl.conf. AUTH: "psk SECRET" or "cert" (DIR/swanctl/{x509ca,x509,private}
#   filled by the caller with sec.pem / sec.key). CHARON_EXTRA: further lines of the charon { }
#   section; CONN_EXTRA: of the connection (e.g. local_port = 4500).
# charon_up DIR NS WHAT: starts charon in network namespace NS (own mount namespace, private
#   /run = DIR/run), loads the configuration and initiates; swanctl --list-sas goes to
#   DIR/sas.txt. Sets CHARON_PID first (the caller's clean-up stops it). When charon cannot set
#   up the SA: the caller's charon_diag, if defined, then fail "WHAT: ...".
# charon_check_sas DIR WHAT: the IKE SA and child SA in DIR/sas.txt are the ones configured.
#
# The standard interop tests (tests/sh/7x-interop-*.sh) run charon as a user would, on its own
# ports (IKE_SA_INIT on UDP 500, then IKE and ESP-in-UDP on 4500):
# charon_stock_conf DIR AUTH ESP_PROPOSALS [CONN_EXTRA [CHILD_EXTRA [CHARON_EXTRA]]] writes the
#   configuration docs/interop.md shows: no ports, the default IKE proposals, ESP_PROPOSALS for
#   the child SA (e.g. aes128gcm16), routes installed (the LAN behind charon reaches the tunnel),
#   the identities and subnets of charon_conf; AUTH as there. CONN_EXTRA, CHILD_EXTRA,
#   CHARON_EXTRA: further lines of the connection, the child, charon { } (e.g. rekey_time).
# charon_start DIR NS WHAT: charon_up without the initiation (as a responder, or to initiate
#   later with charon_initiate DIR WHAT).
# charon_sas DIR FILE: swanctl --list-sas into FILE.
CHARON=${CHARON:-/usr/lib/ipsec/charon}
CHARON_PLUGINS="random nonce openssl aes sha1 sha2 hmac gcm kdf pem pkcs1 pkcs8 x509 pubkey curve25519 kernel-libipsec kernel-netlink socket-default vici"

charon_conf() {
  local d=$1 auth=$2 extra=${3:-} conn_extra=${4:-} secret="" certs="" secrets=""
  mkdir -p "$d/run" "$d/swanctl"
  if [ "${auth%% *}" = psk ]; then
    secret=${auth#psk }
    auth="auth = psk"
    secrets="secrets { ike-p3 { id-1 = sec.test
id-2 = pri.test
secret = \"$secret\" } }"
  else
    auth="auth = pubkey"
    certs="certs = sec.pem"
  fi
  cat > "$d/strongswan.conf" <<CONF
charon {
  load = $CHARON_PLUGINS
  install_routes = no
$extra
  filelog { main { path = $d/charon.log
    time_format = %T
    append = no
    flush_line = yes
    default = 1
    ike = 2
    enc = 1
    chd = 4 } }
  plugins { vici { socket = unix://$d/charon.vici } }
}
CONF
  cat > "$d/swanctl/swanctl.conf" <<CONF
connections {
  p3 {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    remote_port = 5653
$conn_extra
    proposals = aes128gcm16-prfsha256-x25519
    local { $auth
      $certs
      id = sec.test }
    remote { $auth
      id = pri.test }
    children {
      net {
        mode = tunnel
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = aes128gcm16
        start_action = none
      }
    }
  }
}
$secrets
CONF
  chmod 600 "$d/swanctl/swanctl.conf"
}

charon_up() {
  charon_start "$@"
  charon_initiate "$1" "$3"
  cat "$1/sas.txt" >&2
}

charon_start() {
  local d=$1 ns=$2 what=$3 uri=unix://$1/charon.vici i
  STRONGSWAN_CONF=$d/strongswan.conf ip netns exec "$ns" unshare --mount --propagation private \
    sh -c 'mount --bind "$1" /run && exec "$2"' sh "$d/run" "$CHARON" > "$d/charon.stdout" 2>&1 &
  CHARON_PID=$!
  for i in $(seq 1 100); do swanctl --stats --uri "$uri" >/dev/null 2>&1 && break; sleep 0.1; done
  SWANCTL_DIR=$d/swanctl swanctl --load-all --noprompt --uri "$uri" > "$d/load.txt" 2>&1 \
    || { cat "$d/load.txt" >&2; fail "$what: swanctl --load-all"; }
}

charon_initiate() {
  local d=$1 what=$2
  if ! swanctl --initiate --child net --ike p3 --timeout 20 --uri "unix://$d/charon.vici" > "$d/initiate.txt" 2>&1; then
    tail -20 "$d/initiate.txt" >&2
    declare -F charon_diag >/dev/null && charon_diag
    fail "$what: charon could not set up the SA with its peer"
  fi
  charon_sas "$d" "$d/sas.txt"
}

charon_sas() { swanctl --list-sas --uri "unix://$1/charon.vici" > "$2" 2>&1; }

charon_stock_conf() {
  local d=$1 auth=$2 esp=$3 conn_extra=${4:-} child_extra=${5:-} extra=${6:-} secrets="" certs=""
  mkdir -p "$d/run" "$d/swanctl"
  if [ "${auth%% *}" = psk ]; then
    secrets="secrets {
  ike-p3 {
    id-1 = sec.test
    id-2 = pri.test
    secret = \"${auth#psk }\"
  }
}"
    auth="auth = psk"
  else
    auth="auth = pubkey"
    certs="certs = sec.pem"
  fi
  cat > "$d/strongswan.conf" <<CONF
charon {
  load = $CHARON_PLUGINS
$extra
  filelog { main { path = $d/charon.log
    time_format = %T
    append = no
    flush_line = yes
    default = 1
    ike = 2
    chd = 4 } }
  plugins { vici { socket = unix://$d/charon.vici } }
}
CONF
  cat > "$d/swanctl/swanctl.conf" <<CONF
connections {
  p3 {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
$conn_extra
    local {
      $auth
      $certs
      id = sec.test
    }
    remote {
      $auth
      id = pri.test
    }
    children {
      net {
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = $esp
$child_extra
      }
    }
  }
}
$secrets
CONF
  chmod 600 "$d/swanctl/swanctl.conf"
}

charon_check_sas() {
  local s=$1/sas.txt what=$2
  grep -Eq 'p3: #[0-9]+, ESTABLISHED, IKEv2' "$s" || fail "$what: no ESTABLISHED IKE SA p3 in swanctl --list-sas"
  grep -q 'AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519' "$s" || fail "$what: IKE SA algorithms"
  grep -q 'INSTALLED, TUNNEL' "$s" || fail "$what: no INSTALLED child SA"
  grep -q 'ESP:AES_GCM_16-128' "$s" || fail "$what: child SA is not AES_GCM_16-128"
  grep -Eq '^ +local +10\.2\.0\.0/24$' "$s" && grep -Eq '^ +remote +10\.1\.0\.0/24$' "$s" \
    || fail "$what: child SA traffic selectors"
}
