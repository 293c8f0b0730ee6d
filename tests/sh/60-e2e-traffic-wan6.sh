#!/usr/bin/env bash
# 60-e2e-traffic.sh over an IPv6 WAN (2001:db8::/64): IPv4 inner traffic with size hiding on,
# IPv6 inner traffic with it off. The topology and the checks are drawn and described there.
e2e_runs="6:4:true 6:6:false"
. "$(dirname "$0")/60-e2e-traffic.sh"
