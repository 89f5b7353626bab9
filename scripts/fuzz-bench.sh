#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Fuzz speed: execs/s of each harness/fuzz target under libFuzzer (ASan+UBSan), one
# worker, BENCH_SECONDS (10) each, starting from the committed seeds (which it does not
# modify). One line per target:
#   fuzz-bench: <target> <execs/s> execs/s (<runs> runs in <wall> s, <rate> per CPU second)
# where execs/s is libFuzzer's own (runs over wall-clock time) and the last figure is the
# runs over the process's user+system time: the rate of one idle core, which a machine
# busy with other work does not bend as it bends the wall clock.
# FUZZ_SANITIZE=OFF measures the same targets built with coverage only, no ASan or
# UBSan: what the targets cost themselves, apart from the sanitizers' share.
#
#   scripts/fuzz-bench.sh [TARGET...]      FUZZ_BUILD=build-fuzz (built if missing;
#                                          build-fuzz-nosan with FUZZ_SANITIZE=OFF)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BENCH_SECONDS=${BENCH_SECONDS:-10}
FUZZ_SANITIZE=${FUZZ_SANITIZE:-ON}
[[ $FUZZ_SANITIZE == ON ]] && default_build=$root/build-fuzz || default_build=$root/build-fuzz-nosan
FUZZ_BUILD=${FUZZ_BUILD:-$default_build}
gen=$(command -v ninja >/dev/null 2>&1 && echo "-G Ninja" || true)

# shellcheck disable=SC2086
CC=clang cmake -S "$root" -B "$FUZZ_BUILD" $gen -DQVET_FUZZ=libfuzzer \
    -DQVET_FUZZ_SANITIZE="$FUZZ_SANITIZE" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$FUZZ_BUILD" --target qvet_fuzzers -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    for f in harness/fuzz/fuzz_*.c; do
        f=${f##*/fuzz_}
        targets+=("${f%.c}")
    done
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    bin=$FUZZ_BUILD/fuzz/fuzz_$t
    mkdir -p "$scratch/$t"
    dict=()
    [[ -f corpus/$t.dict ]] && dict=(-dict="corpus/$t.dict")
    seeds=()
    [[ -d corpus/$t ]] && seeds=("corpus/$t")
    # New units go to the scratch directory; the seeds are only read.
    TIMEFORMAT='%R %U %S'
    { time "$bin" "${dict[@]}" -max_total_time="$BENCH_SECONDS" -print_final_stats=1 \
        -artifact_prefix="$scratch/" "$scratch/$t" "${seeds[@]}" >"$scratch/$t.log" 2>&1 \
        || true; } 2>"$scratch/$t.time"
    log=$(<"$scratch/$t.log")
    read -r wall user sys <"$scratch/$t.time"
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' <<<"$log" | tail -1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' <<<"$log" | tail -1)
    if [[ -z $rate ]]; then
        echo "fuzz-bench: $t: no statistics (crashed?)" >&2
        grep -E 'ERROR|invariant' <<<"$log" | head -3 >&2 || true
        continue
    fi
    cpu_rate=$(awk -v n="$runs" -v u="$user" -v s="$sys" \
        'BEGIN { if (u + s > 0) printf "%.0f", n / (u + s); else print "-" }')
    printf 'fuzz-bench: %-10s %8s execs/s (%s runs in %s s, %s per CPU second)\n' \
        "$t" "$rate" "$runs" "$wall" "$cpu_rate"
done
