# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# common.sh - sourced first by every script in tests/interop/: tests/lib/qvet-test.sh
# (PASS/FAIL bookkeeping, work directory, byte reads and writes, header extensions, the
# qemu-iotests filter) plus what every interop script sets up the same way.
#
# Before sourcing, a script may set NAME (its name in messages; default: the script's
# file name) and define on_exit (run first at exit). After sourcing:
#   ROOT QVET WORK      the repository, the binary under test (absolute: $QVET or
#                       build/qvet), a fresh directory that is also the current one and
#                       is removed at exit unless KEEP=1
#   everything tests/lib/qvet-test.sh defines (pass, fail, finish, require, u16/u32/u64,
#   put, ext_data, qemu_io_filter, ...), and:
#   one_qvet_line FILE  FILE holds exactly one line, a "qvet: " message
#   guest_bytes IMAGE OUT, map_without_offsets IMAGE   as QEMU reads an image
set -u

NAME=${NAME:-$(basename "$0" .sh)}
# shellcheck source=../lib/qvet-test.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/qvet-test.sh"
QVET=${QVET:-$ROOT/build/qvet}

if [ ! -x "$QVET" ]; then
  echo "$NAME: no qvet binary at $QVET (run make, or set QVET)" >&2
  exit 1
fi
QVET=$(realpath "$QVET")        # the cases run in other directories
require qemu-img qemu-io cmp diff sed od dd

work_dir "$NAME"
cd "$WORK" || exit 1

one_qvet_line() {
  [ "$(wc -l <"$1")" -eq 1 ] && grep -q '^qvet: ' "$1"
}

guest_bytes() {
  qemu-img convert -f qcow2 -O raw "$1" "$2"
}

# qemu-img map's JSON with the host offsets taken out. Inside an allocated cluster
# QEMU's "zero" also says where the host file has a hole (it asks the file system), which
# is how the file was written, not what the image holds: a new cluster that qvet did not
# fill with zeros reads "zero" there. So data ranges lose that flag and then merge.
map_without_offsets() {
  qemu-img map -f qcow2 --output=json "$1" | /usr/bin/python3 -c '
import json, sys
out = []
for r in json.load(sys.stdin):
    r.pop("offset", None)
    if r["data"]:
        r["zero"] = False
    last = out[-1] if out else None
    if last and {k: v for k, v in last.items() if k not in ("start", "length")} == \
            {k: v for k, v in r.items() if k not in ("start", "length")}:
        last["length"] += r["length"]
    else:
        out.append(r)
for r in out:
    print(json.dumps(r))
'
}
