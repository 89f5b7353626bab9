#!/bin/bash -eu
# SPDX-License-Identifier: BSD-2-Clause
# ClusterFuzzLite / OSS-Fuzz build: every harness/fuzz/fuzz_*.c target, compiled (with the
# engine, oracle and harness sources) by $CC with $CFLAGS and linked with
# $LIB_FUZZING_ENGINE, into $OUT; with each target its seed corpus
# ($OUT/<target>_seed_corpus.zip), dictionary ($OUT/<target>.dict) and libFuzzer options
# ($OUT/<target>.options). zlib and zstd are linked statically, so the binaries run on the
# plain runner image.
#
# By hand, from the repository:
#   CC=clang CFLAGS="-fsanitize=address,fuzzer-no-link" LIB_FUZZING_ENGINE=-fsanitize=fuzzer \
#   OUT=/tmp/out SRC=$PWD bash .clusterfuzzlite/build.sh

# The repository: $SRC/qvet in the container, else $SRC, else where this script lives.
repo=
for d in "${SRC:-}/qvet" "${SRC:-}" "$(cd "$(dirname "$0")/.." && pwd)" "$PWD"; do
    if [[ -n $d && -f $d/engine/include/qcow2.h && -d $d/harness/fuzz ]]; then
        repo=$(cd "$d" && pwd)
        break
    fi
done
[[ -n $repo ]] || { echo "build.sh: cannot find the qvet sources (set SRC)" >&2; exit 1; }

work=${WORK:-$(mktemp -d)}
build=$work/qvet-fuzz-build
mkdir -p "$OUT" "$build"

gen=
command -v ninja >/dev/null 2>&1 && gen="-G Ninja"
# CMake takes CC and CFLAGS from the environment on the first configure.
# shellcheck disable=SC2086
CC="$CC" CFLAGS="${CFLAGS:-}" cmake -S "$repo" -B "$build" $gen \
    -DCMAKE_BUILD_TYPE=Release -DQVET_FUZZ=external \
    -DQVET_FUZZ_LINK="$LIB_FUZZING_ENGINE" -DQVET_FUZZ_STATIC_DEPS=ON
cmake --build "$build" --target qvet_fuzzers -j "$(nproc)"

for bin in "$build"/fuzz/fuzz_*; do
    name=$(basename "$bin")
    short=${name#fuzz_}
    cp "$bin" "$OUT/$name"
    if [[ -d $repo/corpus/$short ]] && ls "$repo/corpus/$short"/* >/dev/null 2>&1; then
        rm -f "$OUT/${name}_seed_corpus.zip"
        # The seeds only: corpus/regressions/ is replayed by `make test`, and a crasher
        # that is not fixed yet would stop every fuzzing run at its start.
        (cd "$repo/corpus/$short" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
    fi
    [[ -f $repo/corpus/$short.dict ]] && cp "$repo/corpus/$short.dict" "$OUT/$name.dict"
    max_len=65536
    [[ $short == image ]] && max_len=262144
    printf '[libfuzzer]\nmax_len = %s\n' "$max_len" >"$OUT/$name.options"
    if [[ -f $OUT/$name.dict ]]; then
        printf 'dict = %s.dict\n' "$name" >>"$OUT/$name.options"
    fi
done
ls -la "$OUT"
