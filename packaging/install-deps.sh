#!/usr/bin/env bash
# Installs every package relayd needs to build, test and benchmark, on Debian 12.
# Idempotent: packages already present are left alone; apt-get runs only when
# something is missing. Postfix is installed for smtp-source/smtp-sink and the
# benchmark only: it is neither configured nor started. prometheus is there for
# promtool (metrics and alert-rule checks); its service is not started either.
# dpkg-dev (dpkg-shlibdeps), groff-base and lintian build and check the .deb and
# man pages. cron, php-cli and s-nail are the real programs that mail through
# relayd's sendmail in the tests (none of them is started as a service);
# python3-dkim is the independent DKIM verifier; opendkim (never started as a
# service) is the milter the DKIM signing benchmark runs Postfix with; faketime
# holds a daemon's clock back so the queue-filter tests can make old mail.
# unbound (a validating resolver), knot (an authoritative server) and ldnsutils
# (ldns-signzone) are the DANE test's DNSSEC; none is started as a service.
# python3-jsonschema checks the TLS-RPT report against the RFC 8460 schema.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git
  g++ clang libclang-rt-14-dev
  libboost1.81-dev libboost-json1.81-dev
  libssl-dev zlib1g-dev libc-ares-dev liblmdb-dev lmdb-utils libspdlog-dev libfmt-dev
  libtomlplusplus-dev libgtest-dev libgmock-dev libcrypt-dev
  python3 swaks libnet-ssleay-perl libio-socket-ssl-perl dnsmasq-base postfix procps iproute2 openssl
  prometheus
  dpkg-dev groff-base lintian
  cron php-cli s-nail python3-dkim opendkim
  faketime
  unbound knot ldnsutils
  python3-jsonschema
)

# --fuzz: also clang-16 with libFuzzer (clang 14 cannot compile libstdc++ 12's <expected>).
[ "${1:-}" = "--fuzz" ] && pkgs+=(clang-16 libclang-rt-16-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "install-deps: all ${#pkgs[@]} packages present"; exit 0; }

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix: no configuration, and no service start during the install.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
policy=/usr/sbin/policy-rc.d
had_policy=0; [ -e "$policy" ] && had_policy=1
if [ $had_policy -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
fi
trap '[ $had_policy -eq 0 ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
