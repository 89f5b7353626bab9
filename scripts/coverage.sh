#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Line and branch coverage of engine/ (make coverage).
#
# Builds a gcc --coverage tree (build-cov/), then runs: the Check unit suites, every fuzz
# target's replay program over corpus/<target>/ and corpus/regressions/<target>/, and
# (when the command exists) a short differential soak, `qvet soak --ops 2000`. lcov
# collects engine/ only; genhtml writes reports/coverage/index.html; the last line is
# the one-line summary.
#
# Environment: COV_BUILD (default build-cov), SOAK_OPS (default 2000, 0 = no soak).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
COV_BUILD=${COV_BUILD:-$root/build-cov}
SOAK_OPS=${SOAK_OPS:-2000}
out=$root/reports/coverage
jobs=$(nproc 2>/dev/null || echo 2)
gen=$(command -v ninja >/dev/null 2>&1 && echo "-G Ninja" || true)
rc=(--rc lcov_branch_coverage=1)

# shellcheck disable=SC2086
CC=gcc cmake -S "$root" -B "$COV_BUILD" $gen -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS="--coverage -O0" -DCMAKE_EXE_LINKER_FLAGS=--coverage \
    -DCMAKE_SHARED_LINKER_FLAGS=--coverage >/dev/null
cmake --build "$COV_BUILD" -j "$jobs"
lcov -q "${rc[@]}" --zerocounters --directory "$COV_BUILD"

echo "coverage: Check suites"
(cd "$COV_BUILD" && ctest -R '^unit\.' -j "$jobs" --output-on-failure) || echo "coverage: some unit suites failed (coverage still collected)" >&2

echo "coverage: corpus replay"
for bin in "$COV_BUILD"/fuzz/fuzz_*; do
    t=${bin##*/fuzz_}
    for d in "corpus/$t" "corpus/regressions/$t"; do
        [[ -d $d ]] || continue
        # A crasher that still crashes must not stop the measurement.
        "$bin" "$d" >/dev/null 2>&1 || echo "coverage: $t: replay of $d failed" >&2
    done
done

if [[ $SOAK_OPS != 0 ]] && "$COV_BUILD/qvet" help 2>&1 | grep -q 'qvet soak'; then
    echo "coverage: qvet soak --ops $SOAK_OPS"
    soak_tmp=$(mktemp -d)
    "$COV_BUILD/qvet" soak --ops "$SOAK_OPS" --dir "$soak_tmp/soak" >/dev/null 2>&1 ||
        echo "coverage: the soak reported a failure (see qvet soak)" >&2
    rm -rf "$soak_tmp"
fi

rm -rf "$out"
mkdir -p "$out"
lcov -q "${rc[@]}" --capture --directory "$COV_BUILD" --output-file "$out/all.info" \
    2>/dev/null
lcov -q "${rc[@]}" --extract "$out/all.info" "$root/engine/*" --output-file "$out/engine.info"
genhtml -q "${rc[@]}" --branch-coverage --legend --title "qvet engine" \
    --output-directory "$out" "$out/engine.info" >/dev/null
summary=$(lcov "${rc[@]}" --summary "$out/engine.info" 2>&1)
lines=$(sed -nE 's/^ *lines\.*: ([0-9.]+%) \(([0-9]+) of ([0-9]+) lines\).*/\1 (\2\/\3)/p' <<<"$summary")
branches=$(sed -nE 's/^ *branches\.*: ([0-9.]+%) \(([0-9]+) of ([0-9]+) branches\).*/\1 (\2\/\3)/p' <<<"$summary")
functions=$(sed -nE 's/^ *functions\.*: ([0-9.]+%).*/\1/p' <<<"$summary")
echo "coverage: engine/ lines $lines, branches $branches, functions $functions -> reports/coverage/index.html"
