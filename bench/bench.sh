#!/usr/bin/env bash
# bench.sh - build Tern for release and measure it against Postfix.
#
#   sudo bench/bench.sh [--quick] [--only tern|postfix]
#                       [--only-submission|--no-submission|--only-relay|--only-mailauth]
#                       [--no-relay] [--no-mailauth] [--persistent] [--keep] [--json FILE]
#
# Installs what it needs (scripts/install-deps.sh --test: Postfix brings
# smtp-source, Dovecot the SASL server of Postfix's submission service),
# builds build-release/tern and build-release/tls-source (bench/tls-source.c,
# the STARTTLS + AUTH load client), then runs bench/bench.py, which starts Tern
# and a private Postfix instance on loopback, drives both with smtp-source (mx,
# and relay to smtp-sink) and tls-source (submission), measures Tern alone with
# DKIM signing and SPF+DKIM+DMARC verification (the mailauth phase) and prints
# the tables. A Tern that fails to build or start is reported and Postfix is
# still measured. See bench/README.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

only=""
for a in "$@"; do
	if [ "$a" = postfix ] && [ "$only" = pending ]; then only=postfix; fi
	if [ "$a" = --only ]; then only=pending; fi
done

scripts/install-deps.sh --test

tern_bin=""
if [ "$only" != postfix ]; then
	echo "bench: building build-release/ (meson --buildtype=release)"
	if { [ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false; } &&
		ninja -C build-release tern; then
		tern_bin=build-release/tern
	else
		echo "bench: the Tern release build FAILED; Tern will not be measured" >&2
	fi
fi

tls_source=""
mkdir -p build-release
if ${CC:-cc} -std=c17 -O2 -Wall -Wextra -pthread -o build-release/tls-source bench/tls-source.c \
	-lssl -lcrypto; then
	tls_source=build-release/tls-source
else
	echo "bench: building bench/tls-source.c FAILED; bench.py will try again" >&2
fi

exec /usr/bin/python3 bench/bench.py --repo "$root" ${tern_bin:+--tern "$tern_bin"} \
	${tls_source:+--tls-source "$tls_source"} "$@"
