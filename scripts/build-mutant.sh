#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds the engine with one planted bug, never touching the tree it was called from:
#   scripts/build-mutant.sh PATCH DIR
# copies the project's files (as git knows them, with their working-tree contents) into
# DIR/src, applies PATCH there (a unified diff against the project root, `patch -p1`),
# and builds `qvet` and `libqvet` into DIR/build. The mutant's qvet is DIR/build/qvet.
# Exit 0 built, 1 the patch does not apply (a mutant that went stale), 2 anything else.
# Used by tests/mutants (make mutants) and by the crashtest's planted-ordering-bug tests.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: scripts/build-mutant.sh PATCH DIR" >&2
  exit 2
fi
patch_file=$(readlink -f "$1")
dir=$2
root=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -f "$patch_file" ]; then
  echo "build-mutant: $1: no such patch" >&2
  exit 2
fi
if [ -e "$dir/src" ]; then
  echo "build-mutant: $dir/src exists; give a new directory" >&2
  exit 2
fi
mkdir -p "$dir/src"

# Only the files the project tracks (plus uncommitted edits to them): no build trees,
# no reports, so a mutant build costs a copy of the sources and nothing more.
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$root" && xargs -0 cp --parents -t "$dir/src" 2>/dev/null || true)

if ! patch -s -p1 -d "$dir/src" --dry-run < "$patch_file" >/dev/null 2>&1; then
  echo "build-mutant: $1 does not apply to this tree" >&2
  exit 1
fi
patch -s -p1 -d "$dir/src" < "$patch_file"

gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
cmake -S "$dir/src" -B "$dir/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir/cmake.log" 2>&1 || { echo "build-mutant: cmake failed, see $dir/cmake.log" >&2; exit 2; }
cmake --build "$dir/build" --target qvet -j "${JOBS:-2}" >"$dir/build.log" 2>&1 ||
  { echo "build-mutant: build failed, see $dir/build.log" >&2; exit 2; }
