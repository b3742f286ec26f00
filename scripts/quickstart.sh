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
#
# Started as root, Tern binds its ports and then runs as the `tern` system
# user, which this script creates when missing (scripts/install.sh --user).
# When that user cannot reach this directory (a parent directory it may not
# search, such as a home directory of mode 0700), the server runs as the
# owner of the checkout instead (var/quickstart.conf sets run_user).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh

if [ ! -f build/build.ninja ]; then
	meson setup build
fi
ninja -C build tern

mkdir -p var
conf=examples/tern.conf
if [ "$(id -u)" -eq 0 ]; then
	scripts/install.sh --user
	if ! runuser -u tern -- test -x "$root/var" -a -r "$root/$conf" 2>/dev/null; then
		owner=${SUDO_USER:-$(stat -c %U "$root")}
		echo "quickstart: the tern user cannot reach $root; the server will run as $owner"
		conf=var/quickstart.conf
		{
			cat examples/tern.conf
			printf '\n# quickstart.sh: the tern user cannot reach this checkout\nrun_user = %s\n' "$owner"
		} >"$conf"
	fi
fi
echo "quickstart: starting build/tern serve -c $conf (Ctrl-C stops it)"
exec build/tern serve -c "$conf"
