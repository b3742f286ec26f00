#!/usr/bin/env bash
# install-deps.sh - install the Debian 12 packages Tern builds and tests with.
#
#   scripts/install-deps.sh          build and runtime packages
#   scripts/install-deps.sh --test   the same, plus everything the tests, the
#                                    fuzzers and the benchmark use
#
# Runs as root, without a terminal, and is idempotent: when every package is
# already installed it asks no registry and returns at once. Postfix and
# Dovecot are installed only for their tools (smtp-source, smtp-sink, and a
# Dovecot the tests start with their own configuration); the system services
# are never started or configured here.
set -euo pipefail

build_pkgs=(
	meson ninja-build pkg-config gcc
	libevent-dev libssl-dev libcmocka-dev
	libunbound-dev libopendkim-dev libpsl-dev libidn2-dev publicsuffix libcrypt-dev
	libjansson-dev libseccomp-dev
)
test_pkgs=(
	python3 python3-pytest python3-pytest-timeout python3-aiosmtpd python3-dnslib python3-dkim python3-spf python3-nacl
	python3-prometheus-client
	swaks msmtp openssl dovecot-core dovecot-imapd dovecot-lmtpd postfix git-email
	clang libclang-rt-14-dev
	procps iproute2 time
	man-db groff-base systemd
)

want=("${build_pkgs[@]}")
case "${1:-}" in
--test) want+=("${test_pkgs[@]}") ;;
"") ;;
*)
	echo "usage: $0 [--test]" >&2
	exit 2
	;;
esac

# Which packages are not installed yet?
missing=()
for p in "${want[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#want[@]} packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root (sudo $0 $*) to install them" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Postfix: install the programs only, with no system mail configuration.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections

# Keep package scripts from starting services (postfix, dovecot). An existing
# policy-rc.d is left alone; one we add is removed again on exit.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	added_policy=1
fi
cleanup() {
	if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get update -q
apt-get install "${apt_opts[@]}" "${missing[@]}"

# Nothing we installed may be serving mail on this machine afterwards.
if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :25' | grep -q .; then
	echo "install-deps: warning: something listens on port 25 after install:" >&2
	ss -Hltnp 'sport = :25' >&2 || true
fi
echo "install-deps: done"
