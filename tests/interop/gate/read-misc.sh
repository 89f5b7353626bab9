#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-misc.sh - the read gate's image group misc:
# bitmaps, amend, commit, rebase, an applied snapshot, many and duplicate
# snapshot names, symlinks; and the error contract (a missing file, a missing
# snapshot).
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.misc.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# Images that went through other qemu-img operations, and naming corner cases.
g_misc() {
  local p i names=""
  # a persistent dirty bitmap (autoclear bit 0 + bitmaps extension): not guest data
  p=misc/bitmap.qcow2
  mk "$p" $((2 * M))
  qemu-img bitmap --add "$p" bm0
  io "$p" "write -s $T1 0 300k" "write -z 64k 64k"
  reg "misc/bitmap" "$p"

  # amend: a v3 image with zero clusters downgraded to v2; refcount width changed
  p=misc/amend-v2.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T1 0 512k" "write -z 64k 128k" "write -z -u 1M 64k"
  qemu-img amend -o compat=0.10 "$p"
  reg "misc/amend-v2" "$p"
  p=misc/amend-rb.qcow2
  mk "$p" $((2 * M)) -o cluster_size=4k
  io "$p" "write -s $T2 0 700k"
  qemu-img snapshot -c keep "$p"
  io "$p" "write -P 0x21 100k 50k"
  qemu-img amend -o refcount_bits=64 "$p"
  reg "misc/amend-rb" "$p" keep

  # commit an overlay into its base, then keep writing to the overlay
  p=misc/commit/base.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T1 0 1M"
  p=misc/commit/over.qcow2
  mk "$p" $((2 * M)) -b base.qcow2 -F qcow2
  io "$p" "write -s $T2 300k 400k" "write -z 0 64k"
  qemu-img commit -q "$p"
  io "$p" "write -P 0x22 1500k 10k"
  reg "misc/commit-base" misc/commit/base.qcow2
  reg "misc/commit-over" "$p"

  # a safe rebase onto another base copies the differences into the overlay
  p=misc/rebase/a.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T1 0 2M"
  p=misc/rebase/b.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T2 512k 512k"
  p=misc/rebase/over.qcow2
  mk "$p" $((2 * M)) -b a.qcow2 -F qcow2
  io "$p" "write -P 0x23 0 4k"
  qemu-img rebase -q -b b.qcow2 -F qcow2 "$p"
  reg "misc/rebase" "$p"

  # a snapshot applied: the image shrinks back to the snapshot's size
  p=misc/applied.qcow2
  mk "$p" "$M"
  io "$p" "write -s $T1 0 600k"
  qemu-img snapshot -c small "$p"
  qemu-img resize -q "$p" $((4 * M))
  io "$p" "write -s $T2 $((M - 100)) $((2 * M))"
  qemu-img snapshot -c large "$p"
  qemu-img snapshot -a small "$p"
  io "$p" "write -P 0x24 100k 4k"
  reg "misc/applied" "$p" small large

  # many snapshots: with 512-byte clusters the table spans several clusters;
  # two snapshots share the name "dup" (the first one is meant)
  p=misc/many.qcow2
  mk "$p" $((256 * K)) -o cluster_size=512
  for i in $(seq 1 14); do
    io "$p" "write -P $((0x30 + i)) $((i * 9000)) 700"
    qemu-img snapshot -c "snapshot-number-$i" "$p"
    names="$names snapshot-number-$i"
  done
  qemu-img snapshot -c dup "$p"
  io "$p" "write -P 0x50 0 1k"
  qemu-img snapshot -c dup "$p"
  io "$p" "write -P 0x51 0 2k"
  # shellcheck disable=SC2086 # names is a word list
  reg "misc/many" "$p" $names dup id:16 id:15

  # a file name containing '@' is a file name, not IMAGE@SNAPSHOT
  p=misc/name@x.qcow2
  mk "$p" "$M"
  io "$p" "write -P 0x25 0 4k"
  reg "misc/at-in-name" "$p"

  # reached through a symlink in another directory: QEMU resolves the relative
  # backing name against the link's directory, where a different base lives
  p=misc/real/base.qcow2
  mk "$p" "$M"
  io "$p" "write -P 0x61 0 1M"
  p=misc/link/base.qcow2
  mk "$p" "$M"
  io "$p" "write -P 0x62 0 1M"
  mk misc/real/over.qcow2 "" -b base.qcow2 -F qcow2
  io misc/real/over.qcow2 "write -P 0x63 4k 4k"
  ln -s ../real/over.qcow2 misc/link/over.qcow2
  reg "misc/symlink" misc/link/over.qcow2

  # an absolute backing name
  p=misc/abs/over.qcow2
  mk "$p" "" -b "$WORK/misc/commit/base.qcow2" -F qcow2
  io "$p" "write -P 0x26 1M 100"
  regc "misc/absolute-backing" misc/abs over.qcow2
}

gate_run misc
if [ -z "$ONLY" ]; then
  check_error "error:missing-file" "qvet: nonexistent.qcow2: " cat nonexistent.qcow2
  check_error "error:missing-snapshot" "qvet: " cat -s no-such-snapshot snap/multi.qcow2
fi
finish
