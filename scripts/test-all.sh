#!/usr/bin/env bash
# test-all.sh - install the test dependencies and run every test Tern has.
#
#   sudo scripts/test-all.sh
#
# Stages, each timed and counted:
#   deps              scripts/install-deps.sh --test
#   build             build/       (gcc, debugoptimized)
#   unit              meson test -C build
#   build-asan        build-asan/  (ASan + UBSan)
#   unit-asan         meson test -C build-asan
#   integration       pytest tests/integration against build/tern
#   integration-asan  the same against build-asan/tern; any sanitizer report fails it
#   build-fuzz        build-fuzz/  (clang, libFuzzer, ASan + UBSan)
#   fuzz-NAME         each fuzzer for FUZZ_SECONDS (default 20) on a scratch
#                     corpus seeded from fuzz/corpus/NAME
# The SMTP probe (../shared/probe) runs inside the integration suite.
#
# A failed stage does not stop the others (stages that need a failed build
# fail too). The last line is "N passed, N failed" over the stages, and the
# exit status is non-zero if any failed.
#
# Environment: FUZZ_SECONDS (per fuzzer, default 20), TEST_BUDGET_MINUTES
# (the whole run, default 85: a stage that would start later fails instead),
# PYTEST_ARGS (extra arguments for pytest, e.g. "-k smuggling").
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
export PATH="$PATH:/usr/sbin:/sbin"
export PYTHONDONTWRITEBYTECODE=1

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
budget=$((${TEST_BUDGET_MINUTES:-85} * 60))
jobs=$(nproc 2>/dev/null || echo 2)
scratch=$(mktemp -d /tmp/tern-test-all.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

names=() statuses=() secs=() notes=()
passed=0 failed=0 skipped=0

record() { # name status seconds note
	names+=("$1") statuses+=("$2") secs+=("$3") notes+=("${4:-}")
	case $2 in
	PASS) passed=$((passed + 1)) ;;
	SKIP) skipped=$((skipped + 1)) ;;
	*) failed=$((failed + 1)) ;;
	esac
	echo "==== [$1] $2 in ${3}s${4:+ ($4)}"
}

# run_stage NAME LIMIT_SECONDS COMMAND...: run COMMAND in a subshell with
# stdin closed and $limit set to the time it may take (the stage's own limit,
# or what is left of the budget). Exit 0 passes, exit 3 skips (with the reason
# written to $scratch/note), anything else fails. Sets $stage_rc.
run_stage() {
	local name=$1 want=$2
	shift 2
	local left=$((budget - SECONDS - 30))
	echo
	echo "==== [$name] $*"
	if [ "$left" -lt 60 ]; then
		stage_rc=124
		record "$name" FAIL 0 "not started: the ${budget}s budget is spent"
		return
	fi
	limit=$((want < left ? want : left))
	local t0=$SECONDS note=""
	rm -f "$scratch/note"
	("$@") </dev/null
	stage_rc=$?
	[ -f "$scratch/note" ] && note=$(cat "$scratch/note")
	[ "$stage_rc" = 124 ] && note="timed out after ${limit}s"
	case $stage_rc in
	0) record "$name" PASS $((SECONDS - t0)) ;;
	3) record "$name" SKIP $((SECONDS - t0)) "$note" ;;
	*) record "$name" FAIL $((SECONDS - t0)) "${note:-exit $stage_rc}" ;;
	esac
}

# --- stages ---------------------------------------------------------------

deps() {
	timeout "$limit" scripts/install-deps.sh --test
}

# configure DIR OPTIONS...: meson setup, or reconfigure an existing DIR.
configure() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@"
	else
		rm -rf "$dir"
		meson setup "$dir" "$@"
	fi
}

# build DIR OPTIONS...: configure DIR and build all it can (-k 0), so that
# one broken file does not hide the state of the others.
build() {
	local dir=$1
	configure "$@" && timeout "$limit" ninja -C "$dir" -k 0
}

# up_to_date DIR TARGET: TARGET was built and nothing it depends on changed.
up_to_date() {
	[ -x "$1/$2" ] && ninja -C "$1" -n "$2" 2>/dev/null | grep -q 'no work to do'
}

build_fuzz() {
	# The fuzz build must use clang: start over if DIR was set up with another compiler.
	if [ -f build-fuzz/build.ninja ] &&
		! meson introspect --compilers build-fuzz 2>/dev/null | grep -Eq '"id": ?"clang"'; then
		rm -rf build-fuzz
	fi
	export CC=clang
	configure build-fuzz -Dfuzz=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link &&
		timeout "$limit" ninja -C build-fuzz -k 0 "${fuzzers[@]/#/fuzz/fuzz_}"
}

unit() { # DIR [TIMEOUT-MULTIPLIER]
	local dir=$1 mult=${2:-1} rc=0
	# --no-rebuild: the build stage built what it could; a test whose program
	# did not build fails here on its own.
	timeout "$limit" meson test -C "$dir" --no-rebuild --print-errorlogs \
		--timeout-multiplier "$mult" || rc=$?
	if [ "$rc" != 0 ]; then
		echo "---- $dir/meson-logs/testlog.txt"
		cat "$dir/meson-logs/testlog.txt" 2>/dev/null
	fi
	return $rc
}

suite_has_tests() {
	find tests/integration \( -name 'test_*.py' -o -name '*_test.py' \) -print 2>/dev/null | grep -q .
}

integration() { # TERN-BINARY [asan]
	local bin=$root/$1 asan=${2:-}
	if [ ! -x "$bin" ]; then
		echo "$bin does not exist"
		return 1
	fi
	local args=(-m pytest tests/integration -p no:cacheprovider -v -ra --durations=15)
	if /usr/bin/python3 -c 'import pytest_timeout' 2>/dev/null; then
		args+=(--timeout=900)
	fi
	# shellcheck disable=SC2206 # word splitting of PYTEST_ARGS is wanted
	args+=(${PYTEST_ARGS:-})
	local reports=$scratch/sanitizer-reports rc=0
	if [ -n "$asan" ]; then
		# Sanitizer reports from the server go to files: a report fails the
		# stage even when the test that caused it passed.
		rm -rf "$reports" && mkdir -p "$reports"
		ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:log_path=$reports/asan" \
			UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan" \
			TERN_BIN=$bin timeout --kill-after=30 "$limit" /usr/bin/python3 "${args[@]}" || rc=$?
	else
		TERN_BIN=$bin timeout --kill-after=30 "$limit" /usr/bin/python3 "${args[@]}" || rc=$?
	fi
	if [ "$rc" = 5 ]; then
		if suite_has_tests; then
			echo "pytest collected no tests, but tests/integration has test files"
			return 5
		fi
		echo "tests/integration has no tests yet" >"$scratch/note"
		return 3
	fi
	if [ -n "$asan" ] && [ -n "$(ls -A "$reports" 2>/dev/null)" ]; then
		echo "---- sanitizer reports from tern:"
		for f in "$reports"/*; do
			echo "---- $f"
			cat "$f"
		done
		[ "$rc" = 0 ] && rc=1
	fi
	return $rc
}

# fuzz NAME...: run each fuzzer for FUZZ_SECONDS, $jobs at a time. Each
# writes new inputs to fuzz/corpus-run/NAME (git-ignored) and reads its seeds
# from fuzz/corpus/NAME, which it never modifies.
fuzz_one() {
	local name=$1 bin=build-fuzz/fuzz/fuzz_$1
	local run=fuzz/corpus-run/$name out=$scratch/fuzz-$1.log
	local t0=$SECONDS rc=0
	rm -rf "$run" && mkdir -p "$run/crashes"
	local seeds=()
	[ -d "fuzz/corpus/$name" ] && seeds=("fuzz/corpus/$name")
	if [ ! -x "$bin" ]; then
		echo "$bin does not exist" >"$out"
		rc=1
	else
		ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			timeout --kill-after=10 $((FUZZ_SECONDS + 120)) "$bin" -max_total_time="$FUZZ_SECONDS" \
			-detect_leaks=1 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix="$run/crashes/" "$run" "${seeds[@]}" >"$out" 2>&1 || rc=$?
	fi
	echo "$rc $((SECONDS - t0))" >"$scratch/fuzz-$name.rc"
}

fuzz_all() {
	local names=("$@") i=0
	while [ $i -lt ${#names[@]} ]; do
		local batch=("${names[@]:i:jobs}")
		for n in "${batch[@]}"; do fuzz_one "$n" </dev/null & done
		wait
		i=$((i + jobs))
	done
}

# --- run ------------------------------------------------------------------

echo "test-all: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $jobs CPUs, repository $root"

run_stage deps 1800 deps

# A later stage runs when what it needs exists, even if its build stage
# failed for another part of the tree (a unit test, say, or the server).
for variant in build build-asan; do
	opts=(-Dtests=true -Dfuzz=false)
	mult=1
	if [ "$variant" = build-asan ]; then
		# shellcheck disable=SC2054 # the comma is part of the option value
		opts+=(-Db_sanitize=address,undefined -Db_lundef=false)
		mult=3
	fi
	run_stage "$variant" 1800 build "$variant" "${opts[@]}"
	unit_name=unit${variant#build}
	if [ -f "$variant/build.ninja" ]; then
		run_stage "$unit_name" 1200 unit "$variant" "$mult"
	else
		record "$unit_name" FAIL 0 "$variant is not configured"
	fi
done

for variant in build build-asan; do
	name=integration${variant#build}
	if up_to_date "$variant" tern; then
		asan=""
		[ "$variant" = build-asan ] && asan=asan
		run_stage "$name" 2400 integration "$variant/tern" $asan
	else
		record "$name" FAIL 0 "$variant/tern did not build"
	fi
done

fuzzers=()
for f in fuzz/fuzz_*.c; do
	[ -e "$f" ] || continue
	f=${f#fuzz/fuzz_}
	fuzzers+=("${f%.c}")
done
if [ ${#fuzzers[@]} -eq 0 ]; then
	record fuzz FAIL 0 "no fuzz/fuzz_*.c targets found"
else
	run_stage build-fuzz 1800 build_fuzz
	ready=()
	for n in "${fuzzers[@]}"; do
		up_to_date build-fuzz "fuzz/fuzz_$n" && ready+=("$n")
	done
	echo
	echo "==== fuzzing ${ready[*]:-nothing}: ${FUZZ_SECONDS}s each, $jobs at a time"
	need=$((FUZZ_SECONDS * (${#ready[@]} + jobs - 1) / jobs + 60))
	if [ ${#ready[@]} -gt 0 ] && [ $((budget - SECONDS - 30)) -gt "$need" ]; then
		fuzz_all "${ready[@]}"
	fi
	for n in "${fuzzers[@]}"; do
		if ! up_to_date build-fuzz "fuzz/fuzz_$n"; then
			record "fuzz-$n" FAIL 0 "build-fuzz/fuzz/fuzz_$n did not build"
			continue
		fi
		if [ ! -f "$scratch/fuzz-$n.rc" ]; then
			record "fuzz-$n" FAIL 0 "not started: the ${budget}s budget is spent"
			continue
		fi
		read -r rc t <"$scratch/fuzz-$n.rc"
		echo
		echo "---- fuzz-$n (build-fuzz/fuzz/fuzz_$n), last lines:"
		tail -n 25 "$scratch/fuzz-$n.log"
		if [ "$rc" = 0 ]; then
			record "fuzz-$n" PASS "$t"
		else
			echo "---- fuzz-$n: full log"
			cat "$scratch/fuzz-$n.log"
			ls -l "fuzz/corpus-run/$n/crashes/" 2>/dev/null
			record "fuzz-$n" FAIL "$t" "exit $rc; crash inputs in fuzz/corpus-run/$n/crashes/"
		fi
	done
fi

echo
echo "==== summary ($((SECONDS / 60))m$((SECONDS % 60))s)"
for i in "${!names[@]}"; do
	printf '  %-18s %-4s %6ss  %s\n' "${names[$i]}" "${statuses[$i]}" "${secs[$i]}" "${notes[$i]}"
done
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
