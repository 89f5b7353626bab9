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
# Each run has its report directory, reports/fuzz/<date>-<time>/ (reports/fuzz/latest
# names the last one), with one directory per target: the fuzzer's own output (libFuzzer:
# fuzz-<job>.log per job and libfuzzer.log; AFL++: afl-<n>.log), the merge log, and every
# crasher. While a target runs, a status line (elapsed/total seconds, execs, execs/s,
# corpus size, crashes) is redrawn in place on a terminal, or printed every 10 s when
# stdout is not one. Per target it fuzzes a scratch copy of corpus/<target>/ with
# corpus/<target>.dict and merges what adds coverage back into corpus/<target>/
# (libFuzzer -merge=1, or afl-cmin over the seeds and the queues).
#
# Every crash, leak, timeout, out-of-memory and broken invariant counts: nothing is
# excused. Slow inputs (libFuzzer's slow-unit-*) are kept and listed, but are no failure:
# on a loaded machine any input can be slow.
#
# Exit status: 0 nothing found; 1 a crash or divergence found (the artifacts are listed
# at the end); 2 the run could not be set up (build, unknown target or engine).
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
run_id=$(date +%Y%m%d-%H%M%S)
run_dir=$reports/$run_id
mkdir -p "$run_dir"
ln -sfn "$run_id" "$reports/latest"

setup_failed() {
    echo "fuzz: setup failed: $*" >&2
    exit 2
}

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
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$run_dir/build.log" 2>&1 &&
        cmake --build "$FUZZ_BUILD" --target qvet_fuzzers -j "$FUZZ_JOBS" \
            >>"$run_dir/build.log" 2>&1
}

build_afl() {
    FUZZ_BUILD=${FUZZ_BUILD:-$root/build-afl}
    command -v afl-clang-fast >/dev/null || setup_failed "afl-clang-fast not found"
    # shellcheck disable=SC2086
    CC=afl-clang-fast AFL_QUIET=1 cmake -S "$root" -B "$FUZZ_BUILD" $gen -DQVET_FUZZ=afl \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$run_dir/build.log" 2>&1 &&
        AFL_QUIET=1 cmake --build "$FUZZ_BUILD" --target qvet_fuzzers -j "$FUZZ_JOBS" \
            >>"$run_dir/build.log" 2>&1
}

count_files() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

# Copies the given files into the target's report directory and appends the copies to
# the array named by $2 (artifacts or slow_inputs); sets `collected` to their number.
collect() {
    local target=$1
    local -n into=$2
    shift 2
    collected=0
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        cp "$f" "$run_dir/$target/"
        into+=("$run_dir/$target/${f##*/}")
        collected=$((collected + 1))
    done
}

summary=()
failed=0
triage_lines=()
artifacts=()
slow_inputs=()

# ---------------------------------------------------------------------------------
# Progress: while the fuzzer (pid) runs, a status line every second on a terminal,
# redrawn in place, else one every 10 s. `stats` prints "execs execs/s corpus crashes".
watch_progress() {
    local target=$1 pid=$2 stats=$3
    shift 3
    local start=$SECONDS next=10 line tty=0
    [[ -t 1 ]] && tty=1
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        local e r c x
        read -r e r c x < <("$stats" "$@")
        line=$(printf 'fuzz: %-9s %4d/%ds  %10s execs  %6s/s  corpus %5s  crashes %s' \
            "$target" $((SECONDS - start)) "$FUZZ_SECONDS" "$e" "$r" "$c" "$x")
        if ((tty)); then
            printf '\r\033[K%s' "$line"
        elif ((SECONDS - start >= next)); then
            echo "$line"
            next=$((next + 10))
        fi
    done
    ((tty)) && printf '\r\033[K%s\n' "$line"
    wait "$pid" 2>/dev/null || true
}

# libFuzzer: the last status line of each job log (or of the fork-mode log), summed.
libfuzzer_stats() {
    local logs=$1 corpus=$2 artifacts_dir=$3 execs=0 rate=0 log line
    for log in "$logs"/fuzz-*.log "$logs"/libfuzzer.log; do
        [[ -f $log ]] || continue
        line=$(grep -aE '^#[0-9]+.*exec/s: [0-9]+' "$log" | tail -1 || true)
        [[ -n $line ]] || continue
        execs=$((execs + $(sed -E 's/^#([0-9]+).*/\1/' <<<"$line")))
        rate=$((rate + $(sed -E 's/.*exec\/s: ([0-9]+).*/\1/' <<<"$line")))
    done
    echo "$execs $rate $(count_files "$corpus") \
$(find "$artifacts_dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o \
        -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null | wc -l)"
}

# AFL++: fuzzer_stats of every instance (written every few seconds), summed.
afl_stats() {
    local out=$1 execs=0 rate=0 corpus=0 crashes=0 d
    for d in "$out"/*/; do
        [[ -f $d/fuzzer_stats ]] || continue
        local e r c x
        e=$(awk -F': *' '$1 ~ /^execs_done/ {print $2}' "$d/fuzzer_stats")
        r=$(awk -F': *' '$1 ~ /^execs_per_sec/ {printf "%d", $2}' "$d/fuzzer_stats")
        c=$(awk -F': *' '$1 ~ /^corpus_count/ {print $2}' "$d/fuzzer_stats")
        x=$(awk -F': *' '$1 ~ /^saved_(crashes|hangs)/ {n += $2} END {print n + 0}' \
            "$d/fuzzer_stats")
        execs=$((execs + ${e:-0}))
        rate=$((rate + ${r:-0}))
        ((${c:-0} > corpus)) && corpus=$c
        crashes=$((crashes + x))
    done
    echo "$execs $rate $corpus $crashes"
}

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
        example[$sig]=${run_dir#"$root"/}/$target/${f##*/}
    done
    for sig in "${!count[@]}"; do
        triage_lines+=("$(printf '%-10s %3d x %s\n%-10s       e.g. %s' "$target" "${count[$sig]}" \
            "$sig" "" "${example[$sig]}")")
    done
}

# ---------------------------------------------------------------------------------
run_libfuzzer() {
    local target=$1 bin=$FUZZ_BUILD/fuzz/fuzz_$1
    local work=$FUZZ_BUILD/work/$target rdir=$run_dir/$target
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts" "$rdir"
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
    echo "fuzz: $target: libFuzzer, $FUZZ_JOBS worker(s), ${FUZZ_SECONDS}s; its output: ${rdir#"$root"/}/"
    # Run from the report directory: libFuzzer writes each job's fuzz-<job>.log there.
    (
        cd "$rdir"
        exec timeout --kill-after=10 $((FUZZ_SECONDS + 60)) "$bin" "${dict[@]}" \
            "${parallel[@]}" -max_total_time="$FUZZ_SECONDS" \
            -max_len="$(max_len "$target")" -timeout=25 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
            "$work/corpus" >"$rdir/libfuzzer.log" 2>&1
    ) &
    watch_progress "$target" $! libfuzzer_stats "$rdir" "$work/corpus" "$work/artifacts"

    # Per job: the last status line has cov, ft and exec/s (fork mode: one log).
    local execs=0 cov=0 ft=0 runs=0 log line
    for log in "$rdir"/fuzz-*.log "$rdir"/libfuzzer.log; do
        [[ -f $log ]] || continue
        line=$(grep -aE '^#[0-9]+.*cov: [0-9]+.*exec/s: [0-9]+' "$log" | tail -1 || true)
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

    collect "$target" artifacts "$work"/artifacts/{crash,leak,timeout,oom}-*
    local crashes=$collected
    collect "$target" slow_inputs "$work"/artifacts/slow-unit-*
    ((crashes == 0)) || triage "$target" "$bin" "$work"/artifacts/{crash,leak,timeout,oom}-*
    if [[ $FUZZ_MERGE == 1 ]]; then
        rm -rf "$work/candidates"
        mkdir -p "$work/candidates"
        find "$work/corpus" -maxdepth 1 -type f -size -$((FUZZ_MERGE_MAX + 1))c \
            -exec cp {} "$work/candidates/" \;
        "$bin" -merge=1 -use_counters=0 -max_len="$(max_len "$target")" -timeout=25 \
            "corpus/$target" "$work/candidates" >"$rdir/merge.log" 2>&1 ||
            echo "fuzz: $target: merge failed (see ${rdir#"$root"/}/merge.log)" >&2
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
    local work=$FUZZ_BUILD/work/$target rdir=$run_dir/$target
    rm -rf "$work"
    mkdir -p "$work/in" "$rdir"
    cp -r "corpus/$target/." "$work/in/" 2>/dev/null || true
    local before
    before=$(count_files "corpus/$target")
    local dict=()
    [[ -f corpus/$target.dict ]] && dict=(-x "$root/corpus/$target.dict")
    export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
    export AFL_NO_AFFINITY=1 AFL_SUPPRESS_LICENSE=1
    export ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=1:allocator_may_return_null=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
    echo "fuzz: $target: AFL++, 1 main + $((FUZZ_JOBS - 1)) secondary, ${FUZZ_SECONDS}s; its output: ${rdir#"$root"/}/"
    (
        for ((i = 0; i < FUZZ_JOBS; i++)); do
            role=(-M main)
            ((i == 0)) || role=(-S "sec$i")
            timeout --kill-after=10 $((FUZZ_SECONDS + 60)) afl-fuzz -i "$work/in" \
                -o "$work/out" "${role[@]}" "${dict[@]}" -m none -t 10000+ \
                -V "$FUZZ_SECONDS" -- "$bin" >"$rdir/afl-$i.log" 2>&1 &
        done
        wait
    ) &
    watch_progress "$target" $! afl_stats "$work/out"

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
    local crashes=0 f
    for f in "$work"/out/*/crashes/id:* "$work"/out/*/hangs/id:*; do
        [[ -f $f ]] || continue
        local inst=${f#"$work"/out/}
        inst=${inst%%/*}
        local kind=crash
        [[ $f == */hangs/* ]] && kind=hang
        local copy
        copy=$rdir/afl-$kind-$inst-$(basename "$f" | cut -c1-9 | tr -d ':')
        cp "$f" "$copy"
        artifacts+=("$copy")
        crashes=$((crashes + 1))
    done
    if command -v gnuplot >/dev/null && [[ -d $work/out/main ]]; then
        afl-plot "$work/out/main" "$rdir/afl-plot" >"$work/plot.log" 2>&1 ||
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
libfuzzer | afl) ;;
*) setup_failed "ENGINE=$ENGINE: expected libfuzzer or afl" ;;
esac
echo "fuzz: building the fuzzers (${ENGINE}); report: ${run_dir#"$root"/}/"
"build_$ENGINE" || setup_failed "the fuzz build failed; see ${run_dir#"$root"/}/build.log:
$(tail -5 "$run_dir/build.log")"

for t in "${targets[@]}"; do
    [[ -x $FUZZ_BUILD/fuzz/fuzz_$t ]] || setup_failed "no target $t (expected harness/fuzz/fuzz_$t.c)"
done
for t in "${targets[@]}"; do
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
echo "fuzzer output, logs and crashers: ${run_dir#"$root"/}/<target>/"
if [[ ${#slow_inputs[@]} -gt 0 ]]; then
    echo
    echo "slow inputs (kept, not failures):"
    printf '  %s\n' "${slow_inputs[@]#"$root"/}"
fi
if [[ ${#triage_lines[@]} -gt 0 ]]; then
    echo
    echo "crashes by failure:"
    printf '%b\n' "${triage_lines[@]}"
fi
if ((failed)); then
    echo
    echo "fuzz: FOUND ${#artifacts[@]} failing input(s); each reproduces with the command shown"
    echo "  (QVET_FUZZ_DEBUG=1 narrates), then belongs minimized in corpus/regressions/<target>/"
    echo "  (see corpus/regressions/README.md):"
    for a in "${artifacts[@]}"; do
        t=${a%/*}
        echo "  ${FUZZ_BUILD#"$root"/}/fuzz/fuzz_${t##*/} ${a#"$root"/}"
    done
    exit 1
fi
echo "fuzz: nothing found"
