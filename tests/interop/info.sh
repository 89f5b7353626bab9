#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# info.sh - `qvet info` against `qemu-img info` (QEMU 7.2).
#
# Images made with qemu-img: persistent bitmaps (qemu-img bitmap --add: several,
# other granularities, disabled, one marked in use, a name that needs escaping),
# snapshots, a raw backing file, 3-deep chains (relative names in other
# directories, opened from elsewhere), a missing backing file, and chains that
# loop (an image its own backing file, two images backing each other). For each
# image and each of --output=human, --output=json, with and without
# --backing-chain, both programs run on the same file with the same arguments:
#
#   info:IMAGE:FORMAT[:chain]   the same stdout and the same exit status; where
#                               qemu-img fails (a missing backing file or a loop
#                               under --backing-chain), qvet prints nothing on
#                               stdout and one "qvet: FILE: ..." line on stderr
#
# Every comparison prints "PASS name" or "FAIL name: reason"; the last line is
# "N passed, M failed". Exit status 1 if anything failed.
#
# Environment: QVET (default build/qvet), KEEP=1 keeps the work directory.
set -u

NAME=info
# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require qemu-img od dd

mk() { qemu-img create -q -f qcow2 "$@"; }

# The images, named relative to $WORK (where the comparisons run).
make_images() {
  cd "$WORK" || return 1
  mkdir -p bm chain/sub/deeper other missing loop snap || return 1

  mk -o cluster_size=4k bm/two.qcow2 8M &&
    qemu-img bitmap --add bm/two.qcow2 b0 && qemu-img bitmap --add bm/two.qcow2 b1 || return 1
  mk bm/mixed.qcow2 64M &&
    qemu-img bitmap --add -g 512 bm/mixed.qcow2 fine &&
    qemu-img bitmap --add -g 2M bm/mixed.qcow2 coarse &&
    qemu-img bitmap --add --disable bm/mixed.qcow2 'off "quoted" \ name' || return 1
  # A bitmap QEMU would find in use (left so by a crash): flag bit 0 in the directory.
  mk -o cluster_size=4k bm/in-use.qcow2 8M && qemu-img bitmap --add bm/in-use.qcow2 dirty || return 1
  local ext dir
  ext=$(ext_data bm/in-use.qcow2 $((0x23852875))) || return 1
  dir=$(u64 bm/in-use.qcow2 $((ext + 16)))
  put bm/in-use.qcow2 $((dir + 12)) 4 3
  # Bitmaps and snapshots together; then one with its autoclear bit cleared (stale).
  mk -o cluster_size=64k bm/snap.qcow2 16M && qemu-img snapshot -c s1 bm/snap.qcow2 &&
    qemu-img bitmap --add bm/snap.qcow2 after-snapshot || return 1
  cp bm/two.qcow2 bm/stale.qcow2 && put bm/stale.qcow2 88 8 0

  # 3-deep chains: relative names, each resolved against its own image's directory.
  mk chain/sub/deeper/base.qcow2 4M &&
    mk -b deeper/base.qcow2 -F qcow2 chain/sub/mid.qcow2 &&
    mk -b sub/mid.qcow2 -F qcow2 chain/top.qcow2 || return 1
  mk -o cluster_size=512 other/base.qcow2 1M &&
    mk -o compat=0.10 -b base.qcow2 -F qcow2 other/mid.qcow2 2M &&
    mk -b "$WORK/other/mid.qcow2" -F qcow2 other/top.qcow2 || return 1
  qemu-img create -q -f raw chain/base.raw 3M &&
    mk -b base.raw -F raw chain/over-raw.qcow2 &&
    mk -b over-raw.qcow2 -F qcow2 chain/over-over-raw.qcow2 || return 1
  # Snapshots and a bitmap somewhere in a chain.
  mk snap/base.qcow2 8M && qemu-img snapshot -c first snap/base.qcow2 &&
    mk -b base.qcow2 -F qcow2 snap/mid.qcow2 && qemu-img bitmap --add snap/mid.qcow2 m &&
    mk -b mid.qcow2 -F qcow2 snap/top.qcow2 || return 1

  # Missing backing files, at depth 1 and depth 2.
  mk missing/gone.qcow2 1M && mk -b gone.qcow2 -F qcow2 missing/orphan.qcow2 &&
    mk -b orphan.qcow2 -F qcow2 missing/above-orphan.qcow2 && rm missing/gone.qcow2 || return 1

  # Loops: an image its own backing file; two images backing each other; a loop below.
  mk loop/self.qcow2 1M && qemu-img rebase -u -b self.qcow2 -F qcow2 loop/self.qcow2 &&
    mk loop/a.qcow2 1M && mk -b a.qcow2 -F qcow2 loop/b.qcow2 &&
    qemu-img rebase -u -b b.qcow2 -F qcow2 loop/a.qcow2 &&
    mk -u -b a.qcow2 -F qcow2 loop/above.qcow2 1M
}

IMAGES="
bm/two.qcow2
bm/mixed.qcow2
bm/in-use.qcow2
bm/snap.qcow2
bm/stale.qcow2
chain/top.qcow2
chain/sub/mid.qcow2
other/top.qcow2
chain/over-over-raw.qcow2
snap/top.qcow2
missing/orphan.qcow2
missing/above-orphan.qcow2
loop/self.qcow2
loop/a.qcow2
loop/above.qcow2
"

# compare NAME ARGS...: `info ARGS` from both programs, in $WORK
compare() {
  local name=$1 d=$WORK/.out qrc=0 vrc=0
  shift
  mkdir -p "$d"
  qemu-img info "$@" >"$d/q.out" 2>"$d/q.err" || qrc=$?
  "$QVET" info "$@" >"$d/v.out" 2>"$d/v.err" || vrc=$?
  if [ "$qrc" != "$vrc" ]; then
    fail "$name" "exit status $vrc, qemu-img info gives $qrc" "$d/v.err" "$d/q.err"
  elif ! cmp -s "$d/q.out" "$d/v.out"; then
    diff "$d/q.out" "$d/v.out" >"$d/diff"
    fail "$name" "stdout differs from qemu-img info's (< qemu-img, > qvet)" "$d/diff"
  elif [ "$qrc" != 0 ] && { [ "$(wc -l <"$d/v.err")" != 1 ] || ! grep -q '^qvet: ' "$d/v.err"; }; then
    fail "$name" "expected one 'qvet: FILE: ...' line on stderr" "$d/v.err"
  else
    pass "$name${qrc:+ (exit $qrc)}"
  fi
}

start=$(date +%s)
if ! (make_images) >"$WORK/make.log" 2>&1; then
  fail "images" "cannot build the images with qemu-img" "$WORK/make.log"
else
  cd "$WORK" || exit 1
  while read -r img; do
    [ -n "$img" ] || continue
    for fmt in human json; do
      compare "info:$img:$fmt" --output="$fmt" "$img"
      compare "info:$img:$fmt:chain" --output="$fmt" --backing-chain "$img"
    done
  done <<<"$IMAGES"
  # From another directory, with a relative path: names resolve against the images.
  cd "$WORK/chain/sub" || exit 1
  compare "info:../top.qcow2 from chain/sub:json:chain" --output=json --backing-chain ../top.qcow2
  compare "info:../top.qcow2 from chain/sub:human:chain" --backing-chain ../top.qcow2
fi
echo "info: done in $(($(date +%s) - start))s" >&2
finish
