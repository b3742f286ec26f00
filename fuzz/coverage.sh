#!/bin/bash
# Line and branch coverage of the code under test reached by fuzz corpora:
# builds build-cov (clang source-based coverage, no sanitizers) if needed,
# replays each target's corpus once (-runs=0) and prints, per target, the
# coverage of the files it exists for (as fuzz/README.md's table names them).
#
#   fuzz/coverage.sh CORPUS_ROOT [NAME...]
#
# CORPUS_ROOT/NAME/corpus is what fuzz/run-cpu.sh leaves; fuzz/corpus/NAME
# (the seeds) is replayed with it. Output, tab-separated: target, file (TOTAL
# for the target's files together), lines covered/total and percent, branches
# covered/total and percent.
set -euo pipefail
root=$1
shift
build=${COV_BUILD:-build-cov}
if [ ! -d "$build" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Dtests=false -Db_lundef=false \
        -Dc_args="-fsanitize=fuzzer-no-link -fprofile-instr-generate -fcoverage-mapping" \
        -Dc_link_args="-fprofile-instr-generate" >/dev/null
fi

declare -A files=(
    [command]="src/smtp/command.c"
    [address]="src/smtp/address.c"
    [params]="src/smtp/params.c"
    [data]="src/smtp/data.c"
    [header]="src/smtp/header.c"
    [record]="src/spool/record.c"
    [config]="src/config/config.c src/config/aliases.c"
    [sasl]="src/auth/sasl.c"
    [userdb]="src/auth/userdb.c src/auth/senderlogin.c"
    [dns]="src/dns/mx.c"
    [reply]="src/smtp/reply.c src/smtp/ehlo.c"
    [dsn]="src/deliver/dsn.c src/smtp/eightbit.c"
    [transport]="src/config/transport.c"
    [logline]="src/core/logline.c"
    [compose]="src/smtp/compose.c"
    [dkim]="src/mailauth/dkimtag.c"
    [dmarc]="src/dns/dmarc.c"
    [authres]="src/smtp/authres.c"
    [spf]="src/dns/spf.c"
    [control]="src/control/proto.c"
    [sendmail]="src/cli/sendmail_args.c"
    [metrics_http]="src/metrics/http.c"
    [session]="src/server/session.c src/server/policy.c src/smtp/command.c src/smtp/params.c src/smtp/data.c src/smtp/address.c"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${!files[@]}")
ninja -C "$build" "${names[@]/#/fuzz/fuzz_}" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in "${names[@]}"; do
    corpora=("fuzz/corpus/$name")
    [ -d "$root/$name/corpus" ] && corpora+=("$root/$name/corpus")
    LLVM_PROFILE_FILE="$tmp/$name-%p.profraw" "$build/fuzz/fuzz_$name" -runs=0 \
        "${corpora[@]}" >/dev/null 2>&1 || true
    llvm-profdata merge -sparse "$tmp"/"$name"-*.profraw -o "$tmp/$name.profdata"
    llvm-cov report "$build/fuzz/fuzz_$name" -instr-profile="$tmp/$name.profdata" 2>/dev/null |
        awk -v n="$name" -v want=" ${files[$name]} " '
        NF >= 13 && index(want, " " $1 " ") {
            printf "%s\t%s\t%d/%d\t%s\t%d/%d\t%s\n", n, $1, $8-$9, $8, $10, $11-$12, $11, $13
            l += $8; ml += $9; b += $11; mb += $12; k++ }
        END { if (k > 1) printf "%s\tTOTAL\t%d/%d\t%.2f%%\t%d/%d\t%.2f%%\n", n, l-ml, l,
                  l ? 100*(l-ml)/l : 0, b-mb, b, b ? 100*(b-mb)/b : 0 }'
done
