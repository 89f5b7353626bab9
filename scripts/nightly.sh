#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The nightly: differential soaks over a matrix of image configurations, many seeds
# each, a libFuzzer pass over every target, a bounded crashtest and faultinject when the
# qvet binary has them, then triage; it ends with one verdict line. docs/triage.md
# describes it; `make nightly` runs it.
#
#   scripts/nightly.sh                 one shard (SHARD, default 1/1) into a new directory
#   scripts/nightly.sh merge DIR...    one report from the shard directories under DIRs
#   scripts/nightly.sh matrix          the configurations, one "OPTIONS|BACKING" a line
#
# Environment:
#   NIGHTLY_SECONDS   the budget of one shard in seconds (1800); a quarter goes to fuzzing
#   NIGHTLY_SEEDS     seeds per configuration (16)
#   SHARD             i/N: this machine's share; the configuration x seed units and the
#                     fuzz targets are dealt round-robin, so N shards together do exactly
#                     the work of one, disjointly
#   NIGHTLY_DIR       where run directories go (reports/nightly); each run gets a new one
#                     and nothing earlier is touched
#   NIGHTLY_HISTORY   the signature history the final report updates
#                     (reports/triage/history.json)
#   QVET              the qvet that runs triage and crashtest/faultinject (build/qvet)
#   NIGHTLY_COVERAGE  1 (default): the soaks run a gcc --coverage qvet built in
#                     NIGHTLY_COV_BUILD (build-nightly-cov), for the coverage plot;
#                     0: they run QVET
#   NIGHTLY_FUZZERS   libFuzzer programs to fuzz (default: every build-fuzz/fuzz/fuzz_*,
#                     built on demand as scripts/fuzz.sh builds them)
#   NIGHTLY_INPUTS    more directories of failures to triage with this shard's
#   NIGHTLY_TRIAGE_ARGS  more `qvet triage` options (--replay-dir ...)
# Exit status: 0 no new signature; 1 a new signature; 2 setup failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
QVET=${QVET:-$root/build/qvet}
NIGHTLY_DIR=${NIGHTLY_DIR:-reports/nightly}
NIGHTLY_HISTORY=${NIGHTLY_HISTORY:-reports/triage/history.json}
read -ra triage_args <<<"${NIGHTLY_TRIAGE_ARGS:-}"

setup_failed() {
    echo "nightly: $*" >&2
    exit 2
}
[[ -x $QVET ]] || setup_failed "$QVET not found (make build)"

if [[ ${1:-} == merge ]]; then
    shift
    (($# > 0)) || setup_failed "merge: give the directories holding the shards"
    mapfile -t shards < <(find "$@" -name nightly.json -printf '%h\n' | sort)
    ((${#shards[@]} > 0)) || setup_failed "merge: no shard (nightly.json) under $*"
    out=$NIGHTLY_DIR/merged-$(date -u +%Y%m%d-%H%M%S)
    "$QVET" triage --merge -o "$out" --history "$NIGHTLY_HISTORY" "${triage_args[@]}" \
        "${shards[@]}"
    status=$?
    [[ -L $NIGHTLY_DIR/latest || ! -e $NIGHTLY_DIR/latest ]] && ln -sfn "${out##*/}" "$NIGHTLY_DIR/latest"
    # Screenshots of the front page and the first signature page, when Chromium is here.
    if ((status <= 1)) && [[ -x ${CHROMIUM:-/usr/bin/chromium} ]]; then
        pages=("$out/index.html")
        first=$(find "$out" -maxdepth 1 -name 'sig-*.html' | sort | head -1)
        [[ -n $first ]] && pages+=("$first")
        bash "$root/scripts/report-check.sh" "${pages[@]}" ||
            echo "nightly: the report did not render cleanly (above)"
    fi
    exit $status
fi

budget=${NIGHTLY_SECONDS:-1800}
seeds=${NIGHTLY_SEEDS:-16}
shard=${SHARD:-1/1}
[[ $shard =~ ^([0-9]+)/([0-9]+)$ ]] || setup_failed "SHARD must be i/N, not '$shard'"
index=${BASH_REMATCH[1]}
count=${BASH_REMATCH[2]}
((count >= 1 && index >= 1 && index <= count)) || setup_failed "SHARD $shard: need 1 <= i <= N"
[[ $budget =~ ^[0-9]+$ ]] && ((budget >= 4)) || setup_failed "NIGHTLY_SECONDS: at least 4"
[[ $seeds =~ ^[0-9]+$ ]] && ((seeds >= 1)) || setup_failed "NIGHTLY_SEEDS: at least 1"

# The configurations: every cluster size class, v2 and v3, every refcount width,
# extended L2, both compression types, lazy refcounts, and the backing chains
# (`--backing chain` is raw under qcow2 under the image: three deep).
matrix=(
    "|none" "cluster_size=512|none" "cluster_size=4k|none" "cluster_size=16k|none"
    "cluster_size=2M|none" "compat=0.10|none" "compat=0.10,cluster_size=4k|qcow2"
    "refcount_bits=1|none" "refcount_bits=2|none" "refcount_bits=4|none"
    "refcount_bits=8|none" "refcount_bits=32|none" "refcount_bits=64|none"
    "extended_l2=on|none" "extended_l2=on,cluster_size=16k|qcow2"
    "compression_type=zstd|none" "lazy_refcounts=on|none" "|raw" "|qcow2" "|chain"
    "cluster_size=32k,extended_l2=on,compression_type=zstd|chain"
)

if [[ ${1:-} == matrix ]]; then
    printf '%s\n' "${matrix[@]}"
    exit 0
fi

mkdir -p "$NIGHTLY_DIR" || setup_failed "cannot make $NIGHTLY_DIR"
stamp=$(date -u +%Y%m%d-%H%M%S)
dir=$NIGHTLY_DIR/$stamp-shard-$index-of-$count
n=1
while ! mkdir "$dir" 2>/dev/null; do
    n=$((n + 1))
    dir=$NIGHTLY_DIR/$stamp-shard-$index-of-$count-$n
done
mkdir -p "$dir/soak" "$dir/fuzz" "$dir/stats" "$dir/inputs"
echo "nightly: shard $shard, ${budget}s, in $dir"

# Soak coverage over time: the soaks run a gcc --coverage build of qvet (set up before the
# budget's clock starts), and after each unit gcov sums the engine's lines run so far.
soak_qvet=$QVET
cov_build=${NIGHTLY_COV_BUILD:-$root/build-nightly-cov}
cov_objects=$cov_build/CMakeFiles/qvet_objects.dir/engine/src
if [[ ${NIGHTLY_COVERAGE:-1} == 1 ]]; then
    gen=$(command -v ninja >/dev/null 2>&1 && echo "-G Ninja" || true)
    # shellcheck disable=SC2086
    if { CC=gcc cmake -S "$root" -B "$cov_build" $gen -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_FLAGS="--coverage -O0" -DCMAKE_EXE_LINKER_FLAGS=--coverage &&
        cmake --build "$cov_build" --target qvet; } >"$dir/coverage-build.log" 2>&1; then
        soak_qvet=$cov_build/qvet
        find "$cov_build" -name '*.gcda' -delete
    else
        echo "nightly: the coverage build failed (see $dir/coverage-build.log); no coverage plot"
    fi
fi
engine_coverage() {
    (cd "$dir" && gcov -n -o "$cov_objects" "$cov_objects"/*.gcda 2>/dev/null) |
        awk "/^File '.*engine\/src\/[^']*\.c'\$/ {f = 1; next}
             f && /^Lines executed:/ {s = \$2; sub(\"executed:\", \"\", s); sub(\"%\", \"\", s);
                                      run += s * \$4 / 100; all += \$4; f = 0}
             END {printf \"%.2f\", all ? 100 * run / all : 0}"
}
start=$SECONDS
fuzz_budget=$((budget / 4))
# A fifth of the night for crashtest and faultinject, when this qvet has them.
crash_tools=()
for tool in crashtest faultinject; do
    "$QVET" "$tool" --help >/dev/null 2>&1 && crash_tools+=("$tool")
done
crash_budget=0
((${#crash_tools[@]})) && crash_budget=$((budget / 5))
soak_deadline=$((start + budget - fuzz_budget - crash_budget))

# ---- the soaks: unit u = (configuration u / seeds, seed u % seeds + 1) -------------
units=()
for ((u = 0; u < ${#matrix[@]} * seeds; u++)); do
    ((u % count == index - 1)) && units+=("$u")
done
ops_total=0 ran=0 skipped=0 not_run=0 soak_seconds=0 left_units=${#units[@]}
declare -A configs_run=()
for u in "${units[@]}"; do
    # The time left shared by the units left, less what a unit costs besides its soak
    # seconds (image set-up, qemu-img check and compare) as measured so far.
    overhead=0
    done_units=$((ran + not_run))
    ((done_units > 0)) && overhead=$(((SECONDS - start - soak_seconds + done_units - 1) / done_units))
    per_unit=$(((soak_deadline - SECONDS) / left_units - overhead))
    left_units=$((left_units - 1))
    ((per_unit >= 1)) || per_unit=1
    if ((SECONDS + per_unit + overhead > soak_deadline)); then
        skipped=$((skipped + 1))
        continue
    fi
    c=$((u / seeds))
    seed=$((u % seeds + 1))
    entry=${matrix[$c]}
    options=${entry%%|*}
    backing=${entry##*|}
    opt=()
    [[ -n $options ]] && opt=(-o "$options")
    rdir=$dir/soak/config-$c-seed-$seed
    # The night has the time: every power cut compares the whole disk (docs/soak.md).
    "$soak_qvet" soak --dir "$rdir" --seed "$seed" --seconds "$per_unit" "${opt[@]}" \
        --backing "$backing" --crash-compare whole --heartbeat 0 \
        >"$dir/soak/config-$c-seed-$seed.log" 2>&1
    st=$?
    soak_seconds=$((soak_seconds + per_unit))
    if ((st == 0 || st == 1)); then
        ran=$((ran + 1))
        configs_run[$c]=1
    else
        not_run=$((not_run + 1))
    fi
    ops=$(sed -n 's/^  "ops": \([0-9]*\),$/\1/p' "$rdir/summary.json" 2>/dev/null)
    rate=$(sed -n 's/^  "ops_per_second": \([0-9.]*\),$/\1/p' "$rdir/summary.json" 2>/dev/null)
    ops_total=$((ops_total + ${ops:-0}))
    echo "$((SECONDS - start)) ${rate:-0} $ops_total" >>"$dir/stats/soak.dat"
    [[ $soak_qvet != "$QVET" ]] && echo "$((SECONDS - start)) $(engine_coverage)" >>"$dir/stats/coverage.dat"
    if ((st == 0)); then
        # A passing unit keeps its summary; its trace is only a replay of nothing.
        rm -f "$rdir/trace.txt"
    elif ((st == 1)); then
        echo "nightly: soak config $c ($entry) seed $seed FOUND a problem: $rdir"
    else
        echo "nightly: soak config $c ($entry) seed $seed did not run (exit $st): $(tail -1 "$dir/soak/config-$c-seed-$seed.log")"
    fi
done
echo "nightly: soaks: $ran of ${#units[@]} units run, $ops_total ops, $skipped left for lack of time, $not_run could not run"

# ---- a libFuzzer pass over every target (this shard's share) -------------------------
fuzzers=()
if [[ -n ${NIGHTLY_FUZZERS:-} ]]; then
    read -ra fuzzers <<<"$NIGHTLY_FUZZERS"
else
    build=$root/build-fuzz
    if ! compgen -G "$build/fuzz/fuzz_*" >/dev/null; then
        gen=$(command -v ninja >/dev/null 2>&1 && echo "-G Ninja" || true)
        # shellcheck disable=SC2086
        { CC=clang cmake -S "$root" -B "$build" $gen -DQVET_FUZZ=libfuzzer \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
            cmake --build "$build" --target qvet_fuzzers; } >"$dir/fuzz/build.log" 2>&1 ||
            echo "nightly: the libFuzzer build failed (see $dir/fuzz/build.log); no fuzz pass"
    fi
    for f in "$build"/fuzz/fuzz_*; do [[ -x $f ]] && fuzzers+=("$f"); done
fi
mine=()
for i in "${!fuzzers[@]}"; do ((i % count == index - 1)) && mine+=("${fuzzers[$i]}"); done
execs_total=0 targets_left=${#mine[@]}
for f in "${mine[@]}"; do
    name=$(basename "$f")
    target=${name#fuzz_}
    target=${target#smoke_}
    left=$((start + budget - crash_budget - SECONDS))
    secs=$((left / targets_left))
    targets_left=$((targets_left - 1))
    ((secs >= 2)) || secs=2
    fdir=$dir/fuzz/$target
    mkdir -p "$fdir/corpus"
    [[ -d corpus/$target ]] && cp corpus/"$target"/* "$fdir/corpus/" 2>/dev/null
    dict=()
    [[ -f corpus/$target.dict ]] && dict=(-dict="$root/corpus/$target.dict")
    # Every line of the fuzzer's log with the seconds since the pass began.
    t0=$SECONDS
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
        "$f" -max_total_time="$secs" -seed="$index" -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$fdir/" "$fdir/corpus" 2>&1 |
        while IFS= read -r line; do echo "$((SECONDS - t0)) $line"; done >"$fdir/fuzz.log"
    sed -nE 's/^([0-9]+) #([0-9]+)[[:space:]].*cov: ([0-9]+).*corp: ([0-9]+)\/.*exec\/s: ([0-9]+).*/\1 \5 \4 \3 \2/p' \
        "$fdir/fuzz.log" >"$dir/stats/fuzz-$target.dat"
    execs=$(sed -n 's/.*stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$fdir/fuzz.log")
    execs_total=$((execs_total + ${execs:-0}))
    rm -rf "$fdir/corpus"
    echo "nightly: fuzz $target: ${secs}s, ${execs:-0} execs, $(find "$fdir" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l) failing input(s)"
done

# ---- crashtest and faultinject, when this qvet has them ------------------------------
# Each configuration of theirs goes to one shard (dealt round-robin, as the soak units
# are) with its index as the seed, so that a night's work is the same on every machine;
# one that would start after the budget's end is counted as not run. Their directories
# (summary.json) are triaged with the rest.
for tool in crashtest faultinject; do
    if [[ " ${crash_tools[*]} " != *" $tool "* ]]; then
        echo "nightly: $tool: skipped, this qvet has no '$tool' subcommand"
        continue
    fi
    mapfile -t tool_configs < <("$QVET" "$tool" --list-configs | awk '{print $1}')
    # Their --dir must not exist yet, but its parent must.
    mkdir -p "$dir/$tool" || setup_failed "cannot create $dir/$tool"
    tool_ran=0 tool_failed=0 tool_not_run=0
    for i in "${!tool_configs[@]}"; do
        ((i % count == index - 1)) || continue
        name=${tool_configs[$i]}
        if ((SECONDS - start >= budget)); then
            tool_not_run=$((tool_not_run + 1))
            continue
        fi
        "$QVET" "$tool" --config "$name" --seed $((i + 1)) \
            --dir "$dir/$tool/$name" >"$dir/$tool-$name.log" 2>&1
        st=$?
        ((st == 0)) || tool_failed=$((tool_failed + 1))
        # A night that silently skips what it claims to run is a broken night.
        ((st <= 1)) || setup_failed "$tool --config $name: setup failed (exit $st):" \
            "$(tail -1 "$dir/$tool-$name.log")"
        tool_ran=$((tool_ran + 1))
    done
    echo "nightly: $tool: $tool_ran configuration(s) run, $tool_failed failed, $tool_not_run not run for time"
done

# ---- the shard's inputs and record ----------------------------------------------------
for extra in ${NIGHTLY_INPUTS:-}; do
    cp -r "$extra" "$dir/inputs/" || setup_failed "NIGHTLY_INPUTS: cannot copy $extra"
done
configs=${#configs_run[@]}
cat >"$dir/nightly.json" <<EOF
{"shard": "$shard", "configurations": $configs, "config_ids": [$(IFS=,; echo "${!configs_run[*]}")],
 "seeds": $seeds, "units": $ran,
 "units_skipped": $skipped, "units_not_run": $not_run, "ops": $ops_total, "fuzz_targets": ${#mine[@]},
 "fuzz_execs": $execs_total, "seconds": $((SECONDS - start))}
EOF

# The shard's own triage (its own history: the merged report decides what is new).
"$QVET" triage -o "$dir/triage" --history "$dir/triage-history.json" "${triage_args[@]}" \
    "$dir" >"$dir/triage.log" 2>&1
st=$?
((st <= 1)) || { tail -5 "$dir/triage.log"; setup_failed "triage of $dir failed (exit $st)"; }
tail -1 "$dir/triage.log"
if ((count == 1)); then
    exec bash "$0" merge "$dir"
fi
echo "nightly: shard $shard done: $dir (merge the shards: scripts/nightly.sh merge DIR...)"
