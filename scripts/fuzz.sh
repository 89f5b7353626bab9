#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Coverage-guided fuzzing of the harness/fuzz targets (make fuzz).
#
#   scripts/fuzz.sh [TARGET...]          every target when none is named
#
# Environment:
#   ENGINE=libfuzzer|afl   (default libfuzzer)
#   FUZZ_SECONDS=60        per target
#   FUZZ_JOBS=<nproc>      libFuzzer -jobs/-workers; AFL++: one -M plus FUZZ_JOBS-1 -S
#   FUZZ_BUILD             build tree (default build-fuzz or build-afl)
#   FUZZ_MERGE=1           merge new coverage back into corpus/<target>/ (0: do not)
#   FUZZ_MERGE_MAX=4096    only inputs up to this many bytes are merged back, and only
#                          for new edges (libFuzzer -use_counters=0), so that the
#                          committed corpus stays small; the rest stays in the scratch
#                          corpus (<build>/work/<target>/)
#   FUZZ_KEEP_GOING=0      libFuzzer: 1 runs -fork=FUZZ_JOBS -ignore_crashes=1 instead of
#                          -jobs, so that a known crasher does not end the campaign
#
# Per target it fuzzes a scratch copy of corpus/<target>/ with corpus/<target>.dict,
# merges what adds coverage back into corpus/<target>/ (libFuzzer -merge=1, or afl-cmin
# over the seeds and the queues), copies crashers to reports/fuzz/<target>/, and prints
# execs/s, coverage, new corpus files and crashes. Exit status 1 when anything crashed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ENGINE=${ENGINE:-libfuzzer}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
FUZZ_MERGE=${FUZZ_MERGE:-1}
FUZZ_KEEP_GOING=${FUZZ_KEEP_GOING:-0}
FUZZ_MERGE_MAX=${FUZZ_MERGE_MAX:-4096}
reports=$root/reports/fuzz
mkdir -p "$reports"

all_targets() {
    local f
    for f in harness/fuzz/fuzz_*.c; do
        f=${f##*/fuzz_}
        echo "${f%.c}"
    done
}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || mapfile -t targets < <(all_targets)

# Largest input each target is offered (its seeds are far smaller).
max_len() {
    case $1 in
    image) echo 262144 ;;
    *) echo 65536 ;;
    esac
}

gen=$(command -v ninja >/dev/null 2>&1 && echo "-G Ninja" || true)

build_libfuzzer() {
    FUZZ_BUILD=${FUZZ_BUILD:-$root/build-fuzz}
    # shellcheck disable=SC2086
    CC=clang cmake -S "$root" -B "$FUZZ_BUILD" $gen -DQVET_FUZZ=libfuzzer \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$FUZZ_BUILD" --target qvet_fuzzers -j "$FUZZ_JOBS"
}

build_afl() {
    FUZZ_BUILD=${FUZZ_BUILD:-$root/build-afl}
    command -v afl-clang-fast >/dev/null || { echo "fuzz: afl-clang-fast not found" >&2; exit 2; }
    # shellcheck disable=SC2086
    CC=afl-clang-fast AFL_QUIET=1 cmake -S "$root" -B "$FUZZ_BUILD" $gen -DQVET_FUZZ=afl \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    AFL_QUIET=1 cmake --build "$FUZZ_BUILD" --target qvet_fuzzers -j "$FUZZ_JOBS"
}

count_files() { find "$1" -maxdepth 1 -type f | wc -l; }

# Copies crashers found by a run into reports/fuzz/<target>/; prints how many.
collect_crashes() {
    local target=$1
    shift
    local n=0 f
    mkdir -p "$reports/$target"
    for f in "$@"; do
        [[ -f $f ]] || continue
        cp "$f" "$reports/$target/"
        n=$((n + 1))
    done
    echo "$n"
}

summary=()
failed=0
triage_lines=()

# One line per distinct failure among the crashers of a target: how many inputs show
# it, its first line (invariant, sanitizer report or signal) and one example file.
triage() {
    local target=$1 bin=$2
    shift 2
    declare -A count=() example=()
    local f sig
    for f in "$@"; do
        [[ -f $f ]] || continue
        sig=$("$bin" -runs=1 "$f" 2>&1 |
            grep -m1 -E 'invariant broken|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' |
            sed -E 's/==[0-9]+==//; s/0x[0-9a-f]+/0x../g; s/[0-9]{3,}/N/g' || true)
        sig=${sig:-"(does not reproduce alone)"}
        count[$sig]=$((${count[$sig]:-0} + 1))
        example[$sig]=$f
    done
    for sig in "${!count[@]}"; do
        triage_lines+=("$(printf '%-10s %3d x %s\n%-10s       e.g. %s' "$target" "${count[$sig]}" \
            "$sig" "" "${example[$sig]}")")
    done
}

# ---------------------------------------------------------------------------------
run_libfuzzer() {
    local target=$1 bin=$FUZZ_BUILD/fuzz/fuzz_$1
    local work=$FUZZ_BUILD/work/$target
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp -r "corpus/$target/." "$work/corpus/" 2>/dev/null || true
    local before
    before=$(count_files "corpus/$target")
    local dict=()
    [[ -f corpus/$target.dict ]] && dict=(-dict="$root/corpus/$target.dict")

    local parallel=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
    # -jobs: each job stops at its first crash, the others carry on to the time limit;
    # -fork with -ignore_crashes: the campaign goes on past every crash.
    [[ $FUZZ_KEEP_GOING == 1 ]] &&
        parallel=(-fork="$FUZZ_JOBS" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    echo "fuzz: $target: libFuzzer, $FUZZ_JOBS worker(s), ${FUZZ_SECONDS}s"
    (
        cd "$work"
        timeout --kill-after=10 $((FUZZ_SECONDS + 60)) "$bin" "${dict[@]}" "${parallel[@]}" \
            -max_total_time="$FUZZ_SECONDS" \
            -max_len="$(max_len "$target")" -timeout=25 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
            corpus >"$work/fuzz.log" 2>&1 || true
    )
    # Per job: the last status line has cov, ft and exec/s (fork mode: one log).
    local execs=0 cov=0 ft=0 runs=0 log line
    if [[ $FUZZ_KEEP_GOING == 1 ]]; then
        line=$(grep -E '^#[0-9]+: cov: [0-9]+' "$work/fuzz.log" | tail -1 || true)
        if [[ -n $line ]]; then
            execs=$(sed -E 's/.*exec\/s:? ([0-9]+).*/\1/' <<<"$line")
            cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$line")
            ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$line")
            runs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$line")
        fi
    fi
    for log in "$work"/fuzz-*.log; do
        [[ -f $log ]] || continue
        line=$(grep -E '^#[0-9]+.*cov: [0-9]+.*exec/s: [0-9]+' "$log" | tail -1 || true)
        [[ -n $line ]] || continue
        local e c f r
        e=$(sed -E 's/.*exec\/s: ([0-9]+).*/\1/' <<<"$line")
        c=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$line")
        r=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$line")
        execs=$((execs + e))
        runs=$((runs + r))
        ((c > cov)) && cov=$c
        ((f > ft)) && ft=$f
    done
    mkdir -p "$reports/$target"
    cp "$work"/fuzz*.log "$reports/$target/" 2>/dev/null || true

    local crashes
    crashes=$(collect_crashes "$target" "$work"/artifacts/{crash,leak,timeout,oom,slow-unit}-*)
    ((crashes == 0)) || triage "$target" "$bin" "$work"/artifacts/{crash,leak,timeout,oom}-*
    if [[ $FUZZ_MERGE == 1 ]]; then
        rm -rf "$work/candidates"
        mkdir -p "$work/candidates"
        find "$work/corpus" -maxdepth 1 -type f -size -$((FUZZ_MERGE_MAX + 1))c \
            -exec cp {} "$work/candidates/" \;
        "$bin" -merge=1 -use_counters=0 -max_len="$(max_len "$target")" -timeout=25 \
            "corpus/$target" "$work/candidates" >"$work/merge.log" 2>&1 ||
            echo "fuzz: $target: merge failed (see $work/merge.log)" >&2
    fi
    local after
    after=$(count_files "corpus/$target")
    # Coverage of the whole corpus now, in one pass.
    local inited
    inited=$("$bin" -runs=0 -max_len="$(max_len "$target")" "corpus/$target" 2>&1 |
        grep -E 'INITED' | tail -1 || true)
    local icov ift
    icov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$inited")
    ift=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$inited")
    summary+=("$(printf '%-10s %9s %9s %7s %7s %9s %7s %7s' "$target" "$execs" "$runs" \
        "$cov" "$ft" "${icov:-?}/${ift:-?}" "+$((after - before))" "$crashes")")
    ((crashes == 0)) || failed=1
}

# ---------------------------------------------------------------------------------
run_afl() {
    local target=$1 bin=$FUZZ_BUILD/fuzz/fuzz_$1
    local work=$FUZZ_BUILD/work/$target
    rm -rf "$work"
    mkdir -p "$work/in"
    cp -r "corpus/$target/." "$work/in/" 2>/dev/null || true
    local before
    before=$(count_files "corpus/$target")
    local dict=()
    [[ -f corpus/$target.dict ]] && dict=(-x "$root/corpus/$target.dict")
    export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
    export AFL_NO_AFFINITY=1 AFL_SUPPRESS_LICENSE=1
    export ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=1:allocator_may_return_null=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
    echo "fuzz: $target: AFL++, 1 main + $((FUZZ_JOBS - 1)) secondary, ${FUZZ_SECONDS}s"
    local pids=() i
    for ((i = 0; i < FUZZ_JOBS; i++)); do
        local role=(-M main)
        ((i == 0)) || role=(-S "sec$i")
        timeout --kill-after=10 $((FUZZ_SECONDS + 60)) afl-fuzz -i "$work/in" -o "$work/out" \
            "${role[@]}" "${dict[@]}" -m none -t 10000+ -V "$FUZZ_SECONDS" \
            -- "$bin" >"$work/afl-$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || true; done

    local execs=0 edges=0 cvg="?" runs=0 d
    for d in "$work"/out/*/; do
        [[ -f $d/fuzzer_stats ]] || continue
        local e x r
        e=$(awk -F': *' '$1 ~ /^execs_per_sec/ {printf "%d", $2}' "$d/fuzzer_stats")
        x=$(awk -F': *' '$1 ~ /^edges_found/ {print $2}' "$d/fuzzer_stats")
        r=$(awk -F': *' '$1 ~ /^execs_done/ {print $2}' "$d/fuzzer_stats")
        execs=$((execs + ${e:-0}))
        runs=$((runs + ${r:-0}))
        ((${x:-0} > edges)) && edges=$x
        [[ $d == */main/ ]] && cvg=$(awk -F': *' '$1 ~ /^bitmap_cvg/ {print $2}' "$d/fuzzer_stats")
    done
    mkdir -p "$reports/$target"
    cp "$work"/afl-*.log "$reports/$target/" 2>/dev/null || true
    local crashes=0 f
    mkdir -p "$reports/$target"
    for f in "$work"/out/*/crashes/id:* "$work"/out/*/hangs/id:*; do
        [[ -f $f ]] || continue
        local inst=${f#"$work"/out/}
        inst=${inst%%/*}
        local kind=crash
        [[ $f == */hangs/* ]] && kind=hang
        cp "$f" "$reports/$target/afl-$kind-$inst-$(basename "$f" | cut -c1-9 | tr -d ':')"
        crashes=$((crashes + 1))
    done
    if command -v gnuplot >/dev/null && [[ -d $work/out/main ]]; then
        afl-plot "$work/out/main" "$reports/$target/afl-plot" >"$work/plot.log" 2>&1 ||
            echo "fuzz: $target: afl-plot: $(grep -m1 -i error "$work/plot.log" || echo failed)" >&2
    fi
    if [[ $FUZZ_MERGE == 1 ]]; then
        # The seeds and every queue, minimized; whatever is not a seed already joins.
        mkdir -p "$work/all"
        cp "$work"/in/* "$work/all/" 2>/dev/null || true
        for f in "$work"/out/*/queue/id:*; do
            [[ -f $f ]] && cp "$f" "$work/all/q-$(sha1sum "$f" | cut -c1-16)"
        done
        if afl-cmin -i "$work/all" -o "$work/min" -m none -t 10000 -- "$bin" \
            >"$work/cmin.log" 2>&1; then
            # Of what afl-cmin kept, add (smallest first) only the inputs that reach an
            # edge the committed corpus does not, hit counts aside: as libFuzzer's
            # -use_counters=0 merge does, so the committed corpus stays small.
            AFL_QUIET=1 afl-showmap -q -m none -t 10000 -e -C -i "corpus/$target" \
                -o "$work/have.map" -- "$bin" >/dev/null 2>&1 || true
            AFL_QUIET=1 afl-showmap -q -m none -t 10000 -e -i "$work/min" \
                -o "$work/maps" -- "$bin" >/dev/null 2>&1 || true
            cut -d: -f1 "$work/have.map" 2>/dev/null | sort -u >"$work/have.edges"
            local name
            while read -r name; do
                f=$work/min/$name
                (($(stat -c %s "$f") <= FUZZ_MERGE_MAX)) || continue
                [[ -f $work/maps/$name ]] || continue
                cut -d: -f1 "$work/maps/$name" | sort -u >"$work/edges"
                if [[ -n $(comm -23 "$work/edges" "$work/have.edges" | head -1) ]]; then
                    cp "$f" "corpus/$target/afl-$(sha1sum "$f" | cut -c1-16)"
                    sort -u -o "$work/have.edges" "$work/have.edges" "$work/edges"
                fi
            done < <(ls -Sr "$work/min")
        else
            echo "fuzz: $target: afl-cmin failed (see $work/cmin.log)" >&2
        fi
    fi
    local after
    after=$(count_files "corpus/$target")
    summary+=("$(printf '%-10s %9s %9s %7s %7s %9s %7s %7s' "$target" "$execs" "$runs" \
        "$edges" "-" "$cvg" "+$((after - before))" "$crashes")")
    ((crashes == 0)) || failed=1
}

# ---------------------------------------------------------------------------------
case $ENGINE in
libfuzzer) build_libfuzzer ;;
afl) build_afl ;;
*)
    echo "fuzz: ENGINE=$ENGINE: expected libfuzzer or afl" >&2
    exit 2
    ;;
esac

for t in "${targets[@]}"; do
    [[ -x $FUZZ_BUILD/fuzz/fuzz_$t ]] || { echo "fuzz: no target $t" >&2; exit 2; }
    "run_$ENGINE" "$t"
done

echo
if [[ $ENGINE == libfuzzer ]]; then
    printf '%-10s %9s %9s %7s %7s %9s %7s %7s\n' target execs/s runs cov ft "corpus" new crashes
else
    printf '%-10s %9s %9s %7s %7s %9s %7s %7s\n' target execs/s runs edges - "bitmap" new crashes
fi
printf '%s\n' "${summary[@]}"
if [[ $ENGINE == libfuzzer ]]; then
    echo "(execs/s summed over workers; cov/ft: best worker; corpus: cov/ft of the merged corpus)"
else
    echo "(execs/s summed over instances; edges: best instance; bitmap: main's coverage)"
fi
if [[ ${#triage_lines[@]} -gt 0 ]]; then
    echo
    echo "crashes by failure:"
    printf '%b\n' "${triage_lines[@]}"
fi
if ((failed)); then
    echo "fuzz: crashers copied to reports/fuzz/<target>/: minimize, then corpus/regressions/<target>/"
    exit 1
fi
