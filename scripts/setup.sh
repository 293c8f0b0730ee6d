#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine, idempotent: installs the Debian packages that are
# missing, then configures and builds p3 in build/. Run by scripts/demo.sh and scripts/test.sh.
#
#   scripts/setup.sh            packages + build
#   P3_BUILD=dir scripts/setup.sh   build elsewhere
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${P3_BUILD:-$root/build}

# Build: compilers, ccache (a clean clone recompiles only what changed), meson, DPDK 22.11,
# ipsec-mb 1.3, OpenSSL 3, libconfig++, Catch2 v2, libcap-ng (p3d's privilege drop once started).
# Fuzzing: clang 14 with its sanitizer/libFuzzer runtime.
# Tests and tools: scapy + cryptography (independent decoder), tshark/tcpdump (captures),
# iproute2 (network namespaces), gnuplot (benchmark charts), procps (pgrep/pkill),
# strongSwan (a standard IKEv2 peer for the interoperability test); dpkg-dev and man-db (the
# package test builds the .deb and renders its man pages); python3-prometheus-client (its
# OpenMetrics parser checks p3ctl metrics); corosync (CPG: cluster membership and
# replication) and keepalived (VRRP failover), run per namespace by the cluster tests.
packages=(
  g++ ccache meson ninja-build pkg-config
  dpdk dpdk-dev libdpdk-dev libipsec-mb-dev libssl-dev libconfig++-dev catch2 libpcap-dev
  clang libclang-rt-14-dev
  python3 python3-scapy python3-cryptography tshark tcpdump iperf3 nftables conntrack iproute2 iputils-ping ethtool gnuplot-nox procps
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
  libstrongswan-extra-plugins
  libcli11-dev libcap-ng-dev
  nlohmann-json3-dev
  dpkg-dev man-db
  python3-prometheus-client
  corosync libcpg-dev keepalived
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# The static-key examples hold keys: p3d and `p3ctl config check` refuse them unless they are
# owner-only (P3-E0122), and git keeps no mode but the executable bit.
chmod 600 "$root"/config/static-*.conf 2>/dev/null || true

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root"
fi
ninja -C "$build"
echo "setup: built in $build"
