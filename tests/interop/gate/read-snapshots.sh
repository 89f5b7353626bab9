#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-snapshots.sh - the read gate's image group snapshots:
# internal snapshots, read by name, by id and as IMG@NAME.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.snapshots.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_snapshots() {
  local p
  # several snapshots with data changing in between, one deleted (ids 1,3,4)
  p=snap/multi.qcow2
  mk "$p" $((8 * M))
  io "$p" "write -s $T1 0 1M" "write -P 0x10 5M 100k"
  qemu-img snapshot -c s1 "$p"
  io "$p" "write -s $T2 512k 1M" "write -z 5M 64k"
  qemu-img snapshot -c s2 "$p"
  io "$p" "discard 0 128k" "write -P 0x30 7M 1M" "write -z -u 1M 64k"
  qemu-img snapshot -c s3 "$p"
  io "$p" "write -P 0x40 100 100" "write -c -s $T1 2M 128k"
  qemu-img snapshot -c s4 "$p"
  io "$p" "write -s $R1 3M 300k"
  qemu-img snapshot -d s2 "$p"
  reg "snap/multi" "$p" s1 s3 s4 id:3 at:s4

  # a snapshot taken before the image grew
  p=snap/resize.qcow2
  mk "$p" "$M"
  io "$p" "write -s $T1 0 $((M - 512))"
  qemu-img snapshot -c small "$p"
  qemu-img resize -q "$p" $((3 * M + 1536))
  io "$p" "write -P 0x51 $((M - 1000)) 2000" "write -s $T2 $((3 * M)) 1536"
  qemu-img snapshot -c big "$p"
  io "$p" "write -P 0x52 0 4k"
  reg "snap/resize" "$p" small big

  p=snap/v2.qcow2
  mk "$p" $((2 * M)) -o compat=0.10
  io "$p" "write -s $T1 0 200k"
  qemu-img snapshot -c a "$p"
  io "$p" "write -s $T2 100k 200k" "write -z 0 64k"
  qemu-img snapshot -c b "$p"
  io "$p" "discard 64k 128k"
  reg "snap/v2" "$p" a b

  # 512-byte clusters: snapshot L1 tables span several clusters' worth of L2s
  p=snap/c512.qcow2
  mk "$p" $((2 * M)) -o cluster_size=512
  io "$p" "write -s $T1 30000 100k" "write -P 0x61 $((M + 32767)) 2"
  qemu-img snapshot -c one "$p"
  io "$p" "write -s $T2 31000 50k" "write -z $((M)) 64k"
  qemu-img snapshot -c two "$p"
  io "$p" "write -P 0x62 0 2M"
  reg "snap/c512" "$p" one two

  # VM state is stored past the end of the virtual disk; it is not guest data
  p=snap/vmstate.qcow2
  mk "$p" $((M + 512))
  io "$p" "write -s $T1 0 100k" "write -b -P 0x7e 0 200k"
  qemu-img snapshot -c withvm "$p"
  io "$p" "write -b -P 0x7f 64k 64k" "write -P 0x71 50k 10k"
  reg "snap/vmstate" "$p" withvm

  # compressed clusters shared with a snapshot, then overwritten in part
  p=snap/comp.qcow2
  mk "$p" $((2 * M)) -o compression_type=zstd
  io "$p" "write -c -s $T1 0 512k"
  qemu-img snapshot -c packed "$p"
  io "$p" "write -P 0x72 1000 1000" "write -z 128k 64k"
  reg "snap/comp" "$p" packed
}

gate_run snapshots
finish
