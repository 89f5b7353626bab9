# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# Sourced by the scripts in tests/interop/ (after they set NAME to their own name):
# the qvet binary, a work directory, PASS/FAIL bookkeeping, and big-endian reads and
# writes of image bytes.
#
#   ROOT QVET WORK    the repository, the binary under test (absolute; $QVET or
#                     build/qvet), a fresh directory removed at exit unless KEEP=1
#   pass NAME         prints "PASS NAME"
#   fail NAME WHY [FILE...]   prints "FAIL NAME: WHY" and the files' first lines
#   require TOOL...   stops (exit 1) when a tool is missing
#   finish            prints "N passed, M failed"; its status is the script's
#   u16/u32/u64 FILE OFFSET, put FILE OFFSET BYTES VALUE, ext_data FILE TYPE

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QVET=${QVET:-$ROOT/build/qvet}
KEEP=${KEEP:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
passed=0
failed=0

cleanup() {
  if [ "$KEEP" = 1 ]; then
    echo "$NAME: work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

pass() {
  echo "PASS $1"
  passed=$((passed + 1))
}

fail() {
  local name=$1 why=$2 f
  shift 2
  echo "FAIL $name: $why"
  for f in "$@"; do
    [ -s "$f" ] && head -n 10 "$f" | sed 's/^/    /'
  done
  failed=$((failed + 1))
}

require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$NAME: $tool not found" >&2; exit 1; }
  done
  [ -x "$QVET" ] || { echo "$NAME: $QVET is not executable (make first)" >&2; exit 1; }
  QVET=$(realpath "$QVET")    # the comparisons run in other directories
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
}

u64() { od -An -tu8 --endian=big -j "$2" -N 8 "$1" | tr -d ' \n'; }
u32() { od -An -tu4 --endian=big -j "$2" -N 4 "$1" | tr -d ' \n'; }
u16() { od -An -tu2 --endian=big -j "$2" -N 2 "$1" | tr -d ' \n'; }

# put FILE OFFSET BYTES VALUE: VALUE stored big-endian in BYTES bytes
put() {
  local file=$1 off=$2 n=$3 v=$4 s="" i
  for ((i = n - 1; i >= 0; i--)); do
    s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255)))
  done
  printf '%b' "$s" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}

# ext_data FILE TYPE: offset of the data of header extension TYPE (status 1: none)
ext_data() {
  local f=$1 off type
  off=$(u32 "$f" 100)
  while type=$(u32 "$f" "$off") && [ "$type" != 0 ]; do
    [ "$type" = "$2" ] && { echo $((off + 8)); return 0; }
    off=$((off + 8 + ($(u32 "$f" $((off + 4))) + 7) / 8 * 8))
  done
  return 1
}
