#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The fuzz smoke of `make test`: a short, bounded libFuzzer run of one target from a
# fixed seed over the seeds corpus/make-seeds.sh writes into corpus/<target>/ (the files
# earlier fuzzing merged in, named by their SHA-1, are left out: the seeds alone are
# reproducible, and fewer inputs get more mutations each), in the sanitizer build (CTest
# fuzz-smoke.<target>).
#
#   scripts/fuzz-smoke.sh SMOKE_PROGRAM TARGET
#
# Environment: FUZZ_SMOKE_RUNS (default 400000), FUZZ_SMOKE_SEED (1),
# FUZZ_SMOKE_SECONDS (240, a cap on the wall clock on a busy machine: reaching it is not
# a failure).
#
# It fails only on a finding: a crash, a sanitizer report, a leak, a target invariant, a
# hang or an allocation past the limits. The input is then kept in reports/fuzz-smoke/
# and the failure's first lines printed. New inputs the run discovers go to a scratch
# directory that is removed; the committed corpus is never written.
set -euo pipefail

bin=${1:?usage: fuzz-smoke.sh SMOKE_PROGRAM TARGET}
target=${2:?usage: fuzz-smoke.sh SMOKE_PROGRAM TARGET}
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${FUZZ_SMOKE_RUNS:-400000}
seed=${FUZZ_SMOKE_SEED:-1}
seconds=${FUZZ_SMOKE_SECONDS:-240}
corpus=$root/corpus/$target
[[ -d $corpus ]] || { echo "fuzz-smoke: no corpus $corpus" >&2; exit 2; }
dict=()
[[ -f $root/corpus/$target.dict ]] && dict=(-dict="$root/corpus/$target.dict")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/new" "$work/seeds"
ulimit -c 0
find "$corpus" -maxdepth 1 -type f -regextype posix-extended ! -regex '.*/[0-9a-f]{40}' -exec cp {} "$work/seeds/" \;
seeds=$(find "$work/seeds" -type f | wc -l)
((seeds > 0)) || { echo "fuzz-smoke: no seeds in $corpus (run make seeds)" >&2; exit 2; }

start=$(date +%s.%N)
status=0
"$bin" -seed="$seed" -runs="$runs" -max_total_time="$seconds" -max_len=65536 \
    -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$work/" "${dict[@]}" "$work/new" "$work/seeds" >"$work/log" 2>&1 ||
    status=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
done_runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$work/log")
cov=$(grep -E '^#[0-9]+' "$work/log" | tail -1 | sed -nE 's/.*cov: ([0-9]+) ft: ([0-9]+).*/cov \1, ft \2/p')

artifacts=("$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$work"/slow-unit-*)
found=()
for f in "${artifacts[@]}"; do [[ -f $f ]] && found+=("$f"); done
if ((status == 0)) && ((${#found[@]} == 0)); then
    echo "fuzz-smoke: $target: no finding in ${done_runs:-?} runs over $seeds seeds (seed $seed, ${elapsed} s, ${cov:-cov ?})"
    exit 0
fi

echo "fuzz-smoke: $target: FINDING after ${done_runs:-?} runs, ${elapsed} s (seed $seed; libFuzzer exit $status)"
grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant broken' \
    "$work/log" || true
grep -m1 -E '^SUMMARY' "$work/log" || true
grep -E '^    #[0-9]+ ' "$work/log" | head -8 || true
keep=$root/reports/fuzz-smoke/$target
mkdir -p "$keep"
for f in "${found[@]}"; do
    cp "$f" "$keep/"
    echo "fuzz-smoke: input kept as $keep/$(basename "$f") (replay: $bin $keep/$(basename "$f"))"
done
cp "$work/log" "$keep/fuzz.log"
exit 1
