# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# qvet-test.sh - the one library of qvet's shell test scripts (the interop gate through
# tests/interop/gate/gate.sh, scripts/interop.sh, tests/interop/*.sh through
# tests/interop/common.sh, tests/malformed/run.sh,
# tests/tools/qcow2-edit.sh, corpus/make-seeds.sh). Sourcing it only defines things:
# nothing runs, nothing is created.
#
#   ROOT                 the repository
#   pass NAME            prints "PASS NAME"
#   fail NAME WHY [FILE...]   prints "FAIL NAME: WHY" and the first lines of each FILE
#   finish               prints "N passed, M failed" and exits: 0 only if all passed and
#                        some ran
#   require TOOL...      exits 1 when a tool is missing, naming it
#   work_dir NAME        WORK=a fresh directory (under TMPDIR), removed at exit unless
#                        KEEP=1; a function on_exit, if the script defines one, runs first
#   be FILE OFFSET LEN   the big-endian unsigned field (0 past the end of the file; 8-byte
#                        values with the top bit set come out negative, as bash holds them)
#   u16/u32/u64 FILE OFFSET   be with LEN 2, 4, 8
#   put FILE OFFSET LEN VALUE VALUE stored big-endian in LEN bytes, in place
#   hex_bytes HEX        writes the bytes HEX spells ("0002" is \x00\x02) to stdout
#   put_hex FILE OFFSET HEX   the same bytes, in place
#   put_text FILE OFFSET TEXT the bytes of TEXT, in place
#   fill FILE OFFSET LEN BYTE LEN copies of BYTE, in place
#   ext_find FILE TYPE   offset of header extension TYPE's 8-byte header (status 1: none)
#   ext_data FILE TYPE   offset of its data
#   qemu_io_filter       the qemu-iotests filter for qemu-io (and qvet io) output
#   qio FILE CMD...      qemu-io -f qcow2 with each CMD as a -c command, output dropped

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
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
      echo "${NAME:-$(basename "$0")}: $tool not found (scripts/install-deps.sh installs it)" >&2
      exit 1
    fi
  done
}

# shellcheck disable=SC2317  # called by the EXIT trap
work_dir_exit() {
  if declare -F on_exit >/dev/null; then
    on_exit
  fi
  if [ "$KEEP" = 1 ]; then
    echo "$WORK_NAME: work directory kept: $WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
}

work_dir() {
  WORK_NAME=$1
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/qvet-$1.XXXXXX") || exit 1
  trap work_dir_exit EXIT
}

be() {
  local hex
  hex=$(od -An -v -tx1 -j "$2" -N "$3" "$1" 2>/dev/null | tr -d ' \n')
  echo $((16#${hex:-0}))
}
u16() { be "$1" "$2" 2; }
u32() { be "$1" "$2" 4; }
u64() { be "$1" "$2" 8; }

put() {
  local file=$1 off=$2 n=$3 v=$4 s="" i
  for ((i = n - 1; i >= 0; i--)); do
    s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255)))
  done
  printf '%b' "$s" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}

hex_bytes() {
  local hex=$1 esc="" i
  for ((i = 0; i < ${#hex}; i += 2)); do esc+="\\x${hex:i:2}"; done
  printf '%b' "$esc"
}

put_hex() {
  hex_bytes "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

put_text() {
  printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

fill() {
  head -c "$3" /dev/zero | tr '\000' "\\$(printf '%03o' "$4")" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# The extension area starts at header_length (72 for version 2) and ends at the backing
# file name or at the end of cluster 0 (docs/format.md §2).
ext_find() {
  local f=$1 want=$2 off end backing t l
  if (($(u32 "$f" 4) >= 3)); then off=$(u32 "$f" 100); else off=72; fi
  end=$((1 << $(u32 "$f" 20)))
  backing=$(u64 "$f" 8)
  if ((backing != 0 && backing < end)); then end=$backing; fi
  while ((off + 8 <= end)); do
    t=$(u32 "$f" "$off")
    l=$(u32 "$f" $((off + 4)))
    ((t == 0)) && return 1
    if ((t == want)); then
      echo "$off"
      return 0
    fi
    off=$((off + 8 + ((l + 7) & ~7)))
  done
  return 1
}

ext_data() {
  local off
  off=$(ext_find "$1" "$2") || return 1
  echo $((off + 8))
}

# The numbers of qemu-io's timing line become placeholders and the interactive prompt
# goes. The second rule maps the program name QEMU's error_report puts before a message
# ("qemu-io: ") to the one qvet io uses ("qvet io: "); the message after it must match.
qemu_io_filter() {
  sed -e 's#[0-9]* ops; [0-9/:. sec]* ([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec)#X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)#' \
      -e 's#^qemu-io: #qvet io: #' \
      -e 's#qemu-io> ##g'
}

qio() {
  local f=$1 c args=()
  shift
  for c in "$@"; do args+=(-c "$c"); done
  qemu-io -f qcow2 "${args[@]}" "$f" >/dev/null
}
