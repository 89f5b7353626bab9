# SPDX-License-Identifier: BSD-2-Clause
# Shared by the interop scripts in this directory (each sources it first): the binary
# under test, a scratch directory, PASS/FAIL lines and the closing "N passed, M failed".
#   QVET    the binary under test (default: build/qvet under the repo root)
#   KEEP=1  keep the scratch directory (its path is printed on stderr)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QVET=${QVET:-$ROOT/build/qvet}
case $QVET in
  /*) ;;
  *) QVET=$PWD/$QVET ;;
esac
KEEP=${KEEP:-0}
PASSED=0
FAILED=0

pass() {
  PASSED=$((PASSED + 1))
  echo "PASS $1"
}

# fail NAME REASON [DETAIL-FILE]: the reason, then up to 20 lines of the detail
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL $1: $2"
  if [ $# -ge 3 ] && [ -s "$3" ]; then
    sed -n '1,20s/^/    /p' "$3"
  fi
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
  exit $?
}

if [ ! -x "$QVET" ]; then
  fail qvet-binary "$QVET is missing or not executable (run make first)"
  finish
fi
for tool in qemu-img qemu-io cmp diff sed; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    fail "tool-$tool" "$tool not found (scripts/install-deps.sh installs it)"
    finish
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qvet-interop.XXXXXX") || exit 1
cleanup() {
  if [ "$KEEP" = 1 ]; then
    echo "work directory kept: $WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
cd "$WORK" || exit 1

# The qemu-iotests filter for qemu-io output, written out here: the numbers of the
# timing line become placeholders, the interactive prompt goes. The second rule maps
# the program name QEMU's error_report puts before a message ("qemu-io: ") to the one
# qvet io uses ("qvet io: "); the message after it must be the same.
qemu_io_filter() {
  sed -e 's#[0-9]* ops; [0-9/:. sec]* ([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec)#X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)#' \
      -e 's#^qemu-io: #qvet io: #' \
      -e 's#qemu-io> ##g'
}

# guest_bytes IMAGE OUT: the guest-visible bytes, as QEMU reads them
guest_bytes() {
  qemu-img convert -f qcow2 -O raw "$1" "$2"
}

# map_without_offsets IMAGE: qemu-img map's JSON with host offsets removed
map_without_offsets() {
  qemu-img map -f qcow2 --output=json "$1" | sed -e 's/, "offset": [0-9]*//'
}
