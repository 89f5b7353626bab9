# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# common.sh - sourced by the scripts in tests/interop/: finds the binaries, makes the work
# directory (removed at exit unless KEEP=1) and counts cases.
#
# Before sourcing, a script sets NAME (its own name, for messages) and may define
# on_exit, which runs first at exit. After sourcing: $ROOT, $QVET, $WORK (the current
# directory), pass NAME, fail NAME REASON, one_qvet_line FILE and finish.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QVET=${QVET:-$ROOT/build/qvet}
if [ ! -x "$QVET" ]; then
  echo "$NAME: no qvet binary at $QVET (run make, or set QVET)" >&2
  exit 1
fi
for tool in qemu-img qemu-io; do
  if ! command -v "$tool" >/dev/null; then
    echo "$NAME: $tool is missing (make deps installs qemu-utils)" >&2
    exit 1
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qvet-$NAME.XXXXXX")
interop_exit() {
  if declare -F on_exit >/dev/null; then
    on_exit
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "$NAME: work directory $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap interop_exit EXIT
cd "$WORK" || exit 1

passed=0
failed=0
pass() {
  echo "PASS $1"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL $1: $2"
  failed=$((failed + 1))
}

# one_qvet_line FILE: FILE holds exactly one line, a "qvet: " message
one_qvet_line() {
  [ "$(wc -l <"$1")" -eq 1 ] && grep -q '^qvet: ' "$1"
}

# finish: the closing count; the exit status says whether all passed (and some ran)
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
}
