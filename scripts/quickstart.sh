#!/usr/bin/env bash
# quickstart.sh - install what Tern needs, build it, and run it in the foreground.
#
#   sudo scripts/quickstart.sh
#
# Uses the embedded default configuration, examples/tern.conf: mx on
# 127.0.0.1:2525, submission on 127.0.0.1:5870, submissions on 127.0.0.1:4650,
# the local domain example.test (mailboxes postmaster and demo), spool and
# Maildirs under ./var/. Logs go to stderr; stop it with Ctrl-C.
# Safe to run again: installed packages and an existing build are reused.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh

if [ ! -f build/build.ninja ]; then
	meson setup build
fi
ninja -C build tern

mkdir -p var
echo "quickstart: starting build/tern serve -c examples/tern.conf (Ctrl-C stops it)"
exec build/tern serve -c examples/tern.conf
