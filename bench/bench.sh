#!/usr/bin/env bash
# bench.sh - build Tern for release and measure it against Postfix.
#
#   sudo bench/bench.sh [--quick] [--only tern|postfix] [--persistent] [--keep] [--json FILE]
#
# Installs what it needs (scripts/install-deps.sh --test: Postfix brings
# smtp-source), builds build-release/tern, then runs bench/bench.py, which
# starts Tern and a private Postfix instance on loopback, drives both with
# smtp-source and prints the table. A Tern that fails to build or start is
# reported and Postfix is still measured. See bench/README.md.
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

exec /usr/bin/python3 bench/bench.py --repo "$root" ${tern_bin:+--tern "$tern_bin"} "$@"
