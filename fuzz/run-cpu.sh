#!/bin/bash
# Run fuzz targets one after another, each until it has used CPU_SECONDS of
# CPU time (not wall time, so a busy machine does not shorten a run), then
# replay the corpus it grew to report the coverage reached.
#
#   fuzz/run-cpu.sh CPU_SECONDS OUTDIR NAME...
#
# For each NAME: OUTDIR/NAME/corpus (kept between runs), OUTDIR/NAME/crashes,
# OUTDIR/NAME/fuzz.log; one line per target is appended to OUTDIR/summary.tsv:
# name, CPU seconds, executions, result (ok or crash), corpus files,
# libFuzzer's cov (edges) and ft (features) on replay of the whole corpus.
set -u
build=${FUZZ_BUILD:-build-fuzz}
cpu_limit=$1
out=$2
shift 2
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
tick=$(getconf CLK_TCK)

cpu_of() { # utime + stime of PID in seconds
    awk -v t="$tick" '{ print int(($14 + $15) / t) }' "/proc/$1/stat" 2>/dev/null || echo -1
}

for name in "$@"; do
    bin=$build/fuzz/fuzz_$name
    dir=$out/$name
    mkdir -p "$dir/corpus" "$dir/crashes"
    "$bin" "$dir/corpus" "fuzz/corpus/$name" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$dir/crashes/" -print_final_stats=1 \
        >"$dir/fuzz.log" 2>&1 &
    pid=$!
    used=0
    while kill -0 "$pid" 2>/dev/null; do
        used=$(cpu_of "$pid")
        if [ "$used" -ge "$cpu_limit" ]; then
            kill -INT "$pid"
            break
        fi
        sleep 2
    done
    wait "$pid"
    rc=$?
    result=ok
    if ls "$dir/crashes" | grep -q .; then result=crash; fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 72 ] && [ "$rc" -ne 130 ]; then result="crash(rc=$rc)"; fi
    execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$dir/fuzz.log" | tail -1 | grep -o '[0-9]*$')
    replay=$("$bin" -runs=0 "$dir/corpus" 2>&1 | grep -m1 'INITED')
    cov=$(echo "$replay" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
    ft=$(echo "$replay" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
    files=$(ls "$dir/corpus" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$used" "${execs:-?}" "$result" \
        "$files" "${cov:-?}" "${ft:-?}" >>"$out/summary.tsv"
done
