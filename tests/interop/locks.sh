#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# locks.sh - qvet and QEMU 7.2 keep out of each other's way through QEMU's file locks.
#
#   bytes:MODE      qvet (tests/hold_image) holding an image locks the very bytes
#                   qemu-io holds for the same use (/proc/locks): read-write, read-only,
#                   read-only with -U, and a chain's qcow2 and raw backing files
#   qemu-rw:...     qemu-io holds the image read-write (as a VM would): every qvet
#                   command that writes is refused with one line naming the lock and
#                   leaves the image alone; plain reads are refused too, and -U reads
#   qemu-ro:...     qemu-io -r holds it: qvet may read, not write
#   qemu-ro-U:...   qemu-io -r -U holds it: qvet may write
#   qemu-chain:...  qemu-io holds an overlay read-write: qvet may read its backing file,
#                   not write it nor create an image over it
#   qvet-rw:...     qvet holds it read-write: qemu-img info, check, snapshot -l,
#                   create and qemu-io are refused; qemu-img info -U reads
#   qvet-ro:...     qvet holds it read-only: QEMU may read, not write
#   qvet-chain:...  qvet holds an overlay read-write: its qcow2 backing file may be read
#                   by QEMU but not written
#   released:...    once the holder is gone, nothing is locked out
#
# Holders are started in the background with their standard input on a fifo; the script
# waits (a bounded number of polls) until the lock bytes show in /proc/locks, and ends
# them by closing the fifo. Prints "PASS name" / "FAIL name: reason", then
# "N passed, M failed"; exits 1 if anything failed or nothing passed.
#
# Environment: QVET (default build/qvet), HOLD (default build/tests/hold_image),
# KEEP=1 keeps the work directory.
set -u

NAME=locks
holder_pid=
on_exit() {
  exec 7>&- 2>/dev/null
  if [ -n "$holder_pid" ]; then
    kill "$holder_pid" 2>/dev/null
    wait "$holder_pid" 2>/dev/null
  fi
}
# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HOLD=${HOLD:-$ROOT/build/tests/hold_image}
if [ ! -x "$HOLD" ]; then
  echo "locks.sh: no hold_image at $HOLD (run make, or set HOLD)" >&2
  exit 1
fi
if [ ! -r /proc/locks ]; then
  echo "locks.sh: /proc/locks is not readable; the lock bytes cannot be seen" >&2
  exit 1
fi

# held_bytes FILE: the byte ranges locked on FILE, "100-101 103 201 ...", sorted
held_bytes() {
  local ino
  ino=$(stat -c %i "$1")
  awk -v ino="$ino" '$2 != "->" && $6 ~ (":" ino "$") {
      print ($7 == $8 ? $7 : $7 "-" $8) }' /proc/locks | sort -n | tr '\n' ' '
}

# hold FILE COMMAND...: starts COMMAND (which opens FILE) with stdin on a fifo, and
# waits until FILE shows a lock on byte 100, which every holder takes
hold() {
  local file=$1 tries
  shift
  rm -f holder.fifo
  mkfifo holder.fifo
  "$@" <holder.fifo >holder.out 2>&1 &
  holder_pid=$!
  exec 7>holder.fifo
  for ((tries = 0; tries < 400; tries++)); do
    case " $(held_bytes "$file")" in
      *" 100"*) return 0 ;;
    esac
    if ! kill -0 "$holder_pid" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  echo "locks.sh: the holder ($*) did not lock $file: $(head -c 300 holder.out)" >&2
  exit 1
}

release() {
  exec 7>&-
  wait "$holder_pid"
  holder_pid=
}

# refused NAME FILE LOCK CMD...: CMD exits non-zero, prints one "qvet: " line that
# names "file lock" and QEMU's LOCK, and FILE is unchanged
refused() {
  local name=$1 file=$2 lock=$3 before rc
  shift 3
  before=$(md5sum <"$file")
  "$@" >v.out 2>v.err
  rc=$?
  if [ "$rc" = 0 ]; then
    fail "$name" "it was allowed"
  elif [ "$(wc -l <v.err)" != 1 ] || ! grep -qE '^qvet( io: can.t open device [^:]*)?: .*file lock at offset' v.err; then
    fail "$name" "expected one qvet line about the file lock: $(head -c 300 v.err)"
  elif ! grep -q "QEMU's \"$lock\"" v.err; then
    fail "$name" "the message does not name QEMU's \"$lock\" lock: $(head -c 300 v.err)"
  elif [ "$before" != "$(md5sum <"$file")" ]; then
    fail "$name" "the image was changed"
  else
    pass "$name"
  fi
}

# allowed NAME CMD...: CMD exits 0
allowed() {
  local name=$1
  shift
  if "$@" >v.out 2>v.err; then
    pass "$name"
  else
    fail "$name" "refused: $(head -n 2 v.err | tr '\n' '|')"
  fi
}

# qemu_refused NAME FILE CMD...: a QEMU tool exits non-zero naming a lock; FILE unchanged
qemu_refused() {
  local name=$1 file=$2 before
  shift 2
  before=$(md5sum <"$file")
  if "$@" >q.out 2>&1 </dev/null; then
    fail "$name" "QEMU was allowed"
  elif ! grep -q 'lock' q.out; then
    fail "$name" "QEMU failed, but not for a lock: $(head -n 1 q.out)"
  elif [ "$before" != "$(md5sum <"$file")" ]; then
    fail "$name" "the image was changed"
  else
    pass "$name"
  fi
}

qemu-img create -q -f qcow2 img.qcow2 4M
qemu-io -c 'write -q -P 0x11 0 1M' img.qcow2 >/dev/null
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-img create -q -f raw base.raw 4M
qemu-img create -q -f qcow2 -b base.raw -F raw rtop.qcow2

# --- the same bytes as QEMU -------------------------------------------------------------

# same_bytes NAME QEMU-IO-ARGS -- HOLD-ARGS -- IMAGE FILE...: the bytes locked on each FILE
# are the same while qemu-io ARGS IMAGE holds it as while hold_image ARGS IMAGE does
same_bytes() {
  local name=$1 q=() h=() f want=() got=() i
  shift
  while [ "$1" != -- ]; do q+=("$1"); shift; done
  shift
  while [ "$1" != -- ]; do h+=("$1"); shift; done
  shift
  local image=$1
  hold "$image" qemu-io "${q[@]}" "$image"
  for f in "$@"; do want+=("$(held_bytes "$f")"); done
  release
  hold "$image" "$HOLD" "${h[@]}" "$image"
  for f in "$@"; do got+=("$(held_bytes "$f")"); done
  release
  for ((i = 0; i < ${#want[@]}; i++)); do
    if [ "${want[$i]}" != "${got[$i]}" ]; then
      fail "$name" "on ${*:i+1:1}: qemu-io locks '${want[$i]}', qvet '${got[$i]}'"
      return
    fi
  done
  pass "$name"
}

same_bytes bytes:read-write -- -w -- img.qcow2 img.qcow2
same_bytes bytes:read-only -r -- -- img.qcow2 img.qcow2
same_bytes bytes:read-only-U -r -U -- -U -- img.qcow2 img.qcow2
same_bytes bytes:chain-qcow2 -- -w -- top.qcow2 top.qcow2 base.qcow2
same_bytes bytes:chain-raw -- -w -- rtop.qcow2 rtop.qcow2 base.raw
same_bytes bytes:chain-read-only-U -r -U -- -U -- top.qcow2 top.qcow2 base.qcow2

# --- QEMU holds the image ----------------------------------------------------------------

hold img.qcow2 qemu-io img.qcow2
refused qemu-rw:io-write img.qcow2 write "$QVET" io -c 'write -P 0x22 0 4k' img.qcow2
refused qemu-rw:snapshot-create img.qcow2 write "$QVET" snapshot -c s img.qcow2
refused qemu-rw:resize img.qcow2 write "$QVET" resize img.qcow2 8M
refused qemu-rw:create-over img.qcow2 write "$QVET" create -q img.qcow2 1M
refused qemu-rw:cat img.qcow2 write "$QVET" cat img.qcow2
refused qemu-rw:snapshot-list img.qcow2 write "$QVET" snapshot -l img.qcow2
refused qemu-rw:io-read img.qcow2 write "$QVET" io -r -c 'read 0 4k' img.qcow2
if grep -q -- '-U' v.err; then
  pass qemu-rw:message-suggests-U
else
  fail qemu-rw:message-suggests-U "a refused reader is not told of -U: $(cat v.err)"
fi
allowed qemu-rw:snapshot-list-U "$QVET" snapshot -U -l img.qcow2
for c in info map check; do
  refused "qemu-rw:$c" img.qcow2 write "$QVET" "$c" img.qcow2
  allowed "qemu-rw:$c-U" "$QVET" "$c" -U img.qcow2
done
allowed qemu-rw:io-read-U "$QVET" io -r -U -c 'read 0 4k' img.qcow2
if "$QVET" cat -U img.qcow2 >v.raw 2>v.err && qemu-img convert -U -O raw img.qcow2 q.raw &&
  cmp -s v.raw q.raw; then
  pass qemu-rw:cat-U
else
  fail qemu-rw:cat-U "cat -U failed or read other bytes: $(head -n 1 v.err)"
fi
release

hold img.qcow2 qemu-io -r img.qcow2
refused qemu-ro:io-write img.qcow2 write "$QVET" io -c 'write -P 0x22 0 4k' img.qcow2
refused qemu-ro:create-over img.qcow2 write "$QVET" create -q img.qcow2 1M
allowed qemu-ro:cat "$QVET" cat img.qcow2
allowed qemu-ro:snapshot-list "$QVET" snapshot -l img.qcow2
release

# a VM's backing file is as safe as its image
hold top.qcow2 qemu-io top.qcow2
refused qemu-chain:create-over-backing base.qcow2 write "$QVET" create -q base.qcow2 1M
refused qemu-chain:write-backing base.qcow2 write "$QVET" io -c 'write 0 4k' base.qcow2
allowed qemu-chain:read-backing "$QVET" cat base.qcow2
release

hold img.qcow2 qemu-io -r -U img.qcow2
allowed qemu-ro-U:io-write "$QVET" io -c 'write -P 0x11 0 4k' img.qcow2
release

# --- qvet holds the image ------------------------------------------------------------------

hold img.qcow2 "$HOLD" -w img.qcow2
qemu_refused qvet-rw:qemu-img-info img.qcow2 qemu-img info img.qcow2
qemu_refused qvet-rw:qemu-img-check img.qcow2 qemu-img check img.qcow2
qemu_refused qvet-rw:qemu-img-snapshot-list img.qcow2 qemu-img snapshot -l img.qcow2
qemu_refused qvet-rw:qemu-img-create img.qcow2 qemu-img create -q -f qcow2 img.qcow2 1M
qemu_refused qvet-rw:qemu-io-read img.qcow2 qemu-io -r -c 'read 0 4k' img.qcow2
qemu_refused qvet-rw:qemu-io-write img.qcow2 qemu-io -c 'write 0 4k' img.qcow2
refused qvet-rw:qvet-write img.qcow2 write "$QVET" io -c 'write 0 4k' img.qcow2
allowed qvet-rw:qemu-img-info-U qemu-img info -U img.qcow2
release

hold img.qcow2 "$HOLD" img.qcow2
allowed qvet-ro:qemu-img-info qemu-img info img.qcow2
allowed qvet-ro:qemu-io-read qemu-io -r -c 'read -q 0 4k' img.qcow2
qemu_refused qvet-ro:qemu-io-write img.qcow2 qemu-io -c 'write 0 4k' img.qcow2
release

hold top.qcow2 "$HOLD" -w top.qcow2
allowed qvet-chain:read-backing qemu-img info base.qcow2
qemu_refused qvet-chain:write-backing base.qcow2 qemu-io -c 'write 0 4k' base.qcow2
qemu_refused qvet-chain:write-overlay top.qcow2 qemu-io -c 'write 0 4k' top.qcow2
release

# --- nothing is left behind -------------------------------------------------------------------

allowed released:qemu-io-write qemu-io -c 'write -q -P 0x33 0 4k' img.qcow2
allowed released:qvet-write "$QVET" io -c 'write -P 0x44 0 4k' img.qcow2
allowed released:qemu-img-check qemu-img check -q img.qcow2
for f in img.qcow2 top.qcow2 base.qcow2 base.raw; do
  if [ -n "$(held_bytes "$f")" ]; then
    fail "released:$f" "still locked: $(held_bytes "$f")"
  else
    pass "released:$f"
  fi
done

finish
