#!/usr/bin/env bash
# run.sh - the full crash-consistency run: SIGKILL Tern at least 60 times
# under a 50-client load and check that nothing acknowledged is lost
# (tests/crash/crash.py says what it does and checks).
#
#   tests/crash/run.sh [--kills 60] [--seed N] [--workdir DIR] [--json FILE]
#
# TERN_BIN names the binary (default build/tern). Takes about 2 s a kill.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export TERN_BIN=${TERN_BIN:-build/tern}
export PYTHONDONTWRITEBYTECODE=1
args=("$@")
have_kills=no
for a in "${args[@]}"; do
	[ "$a" = --kills ] && have_kills=yes
done
[ "$have_kills" = yes ] || args=(--kills 60 "${args[@]}")
exec /usr/bin/python3 tests/crash/crash.py "${args[@]}"
