# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# common.sh - sourced first by every script in tests/interop/.
#
# Before sourcing, a script may set NAME (its name in messages; default: the script's
# file name) and define on_exit (run first at exit). After sourcing:
#   ROOT QVET WORK      the repository, the binary under test (absolute: $QVET or
#                       build/qvet), a fresh directory that is also the current one and
#                       is removed at exit unless KEEP=1
#   pass NAME           prints "PASS NAME"
#   fail NAME WHY [FILE...]   prints "FAIL NAME: WHY" and the first lines of each FILE
#   require TOOL...     stops (exit 1) when a tool is missing
#   finish              prints "N passed, M failed" and exits: 0 only if all passed and
#                       some ran
#   one_qvet_line FILE  FILE holds exactly one line, a "qvet: " message
#   qemu_io_filter      the qemu-iotests filter for qemu-io/qvet io output
#   guest_bytes IMAGE OUT, map_without_offsets IMAGE   as QEMU reads an image
#   u16/u32/u64 FILE OFFSET, put FILE OFFSET BYTES VALUE, ext_data FILE TYPE
set -u

NAME=${NAME:-$(basename "$0" .sh)}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QVET=${QVET:-$ROOT/build/qvet}
KEEP=${KEEP:-0}
passed=0
failed=0

pass() {
  echo "PASS $1"
  passed=$((passed + 1))
}

fail() {
  local name=$1 why=$2 f
  shift 2
  echo "FAIL $name: $why"
  for f in "$@"; do
    if [ -s "$f" ]; then
      head -n 20 "$f" | sed 's/^/    /'
    fi
  done
  failed=$((failed + 1))
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

require() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "$NAME: $tool not found (scripts/install-deps.sh installs it)" >&2
      exit 1
    fi
  done
}

if [ ! -x "$QVET" ]; then
  echo "$NAME: no qvet binary at $QVET (run make, or set QVET)" >&2
  exit 1
fi
QVET=$(realpath "$QVET")        # the cases run in other directories
require qemu-img qemu-io cmp diff sed od dd

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qvet-$NAME.XXXXXX") || exit 1
interop_exit() {
  if declare -F on_exit >/dev/null; then
    on_exit
  fi
  if [ "$KEEP" = 1 ]; then
    echo "$NAME: work directory kept: $WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
}
trap interop_exit EXIT
cd "$WORK" || exit 1

one_qvet_line() {
  [ "$(wc -l <"$1")" -eq 1 ] && grep -q '^qvet: ' "$1"
}

# The qemu-iotests filter for qemu-io output, written out here: the numbers of the
# timing line become placeholders, the interactive prompt goes. The second rule maps
# the program name QEMU's error_report puts before a message ("qemu-io: ") to the one
# qvet io uses ("qvet io: "); the message after it must be the same.
qemu_io_filter() {
  sed -e 's#[0-9]* ops; [0-9/:. sec]* ([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec)#X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)#' \
      -e 's#^qemu-io: #qvet io: #' \
      -e 's#qemu-io> ##g'
}

guest_bytes() {
  qemu-img convert -f qcow2 -O raw "$1" "$2"
}

# qemu-img map's JSON with the host offsets taken out
map_without_offsets() {
  qemu-img map -f qcow2 --output=json "$1" | sed -e 's/, "offset": [0-9]*//'
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
    if [ "$type" = "$2" ]; then
      echo $((off + 8))
      return 0
    fi
    off=$((off + 8 + ($(u32 "$f" $((off + 4))) + 7) / 8 * 8))
  done
  return 1
}
