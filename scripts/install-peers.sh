#!/usr/bin/env bash
# Debian packages of the real peers the tests and benchmarks run against.
# Daemons must not start on install (they would take ports the tests want):
# policy-rc.d says "no" to every service start while we install.
set -euo pipefail
PACKAGES=(openssl ca-certificates curl stunnel4 wrk procps iproute2 python3-venv
          nsd unbound bind9-dnsutils dnsperf nginx-light tinyproxy openssh-server
          openssh-client swaks libnet-ssleay-perl libio-socket-ssl-perl postfix
          isc-dhcp-client udhcpc dnsmasq-base kea-dhcp4-server kea-admin socat rinetd
          traceroute iperf3 nftables iputils-ping prometheus chromium redis-server
          haproxy postgresql bind9-utils netcat-openbsd)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "peers: all installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
cleanup() { $SUDO rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod 755 /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
# postfix is here for smtp-source and smtp-sink (and as the peer of the SMTP bench): no
# configuration of its own, never started
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
