#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-boundaries.sh - the read gate's image group boundaries:
# writes on L2 table edges and past 4 GiB.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.boundaries.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_boundaries() {
  local p
  # 512-byte clusters: an L2 table covers 32 KiB, so this uses many L1 entries
  p=bound/c512.qcow2
  mk "$p" $((4 * M)) -o cluster_size=512
  io "$p" "write -P 0x11 $((32 * K - 700)) 1400" "write -s $T1 $((64 * K - 1)) 2" \
    "write -s $T2 $((96 * K - 33)) $((70 * K))" "write -P 0x12 $((4 * M - 32 * K - 1)) 2" \
    "write -z $((128 * K - 512)) 1024"
  reg "bound/c512" "$p"
  # 1k clusters: an L2 covers 128 KiB
  p=bound/c1k.qcow2
  mk "$p" $((2 * M)) -o cluster_size=1k
  io "$p" "write -s $T1 $((128 * K - 3)) 6" "write -s $T2 $((256 * K - 1000)) 300k"
  reg "bound/c1k" "$p"
  # 4k clusters: an L2 covers 2 MiB
  p=bound/c4k.qcow2
  mk "$p" $((8 * M)) -o cluster_size=4k
  io "$p" "write -s $T1 $((2 * M - 5000)) 10000" "write -P 0x13 $((4 * M - 1)) 2" \
    "write -z $((6 * M - 4096)) 8192"
  reg "bound/c4k" "$p"
  # extended L2 with 64k clusters: an L2 covers 256 MiB
  p=bound/xl2-sparse.qcow2
  mk "$p" $((600 * M)) -o extended_l2=on
  io "$p" "write -s $T1 $((256 * M - 1500)) 3000" "write -z $((512 * M)) 2k"
  reg "bound/xl2-sparse" "$p"
  # 64k clusters (an L2 covers 512 MiB) past 4 GiB: guest offsets that do not
  # fit in 32 bits. This one image costs most of the gate's time (cat streams
  # 4 GiB), so it carries all the large-offset checks.
  p=bound/over4g.qcow2
  mk "$p" $((4 * G + 128 * K))
  io "$p" "write -s $T1 $((512 * M - 3000)) 6000" "write -P 0x14 $((G - 1)) 2" \
    "write -P 0x16 $((2 * G - 1)) 2" "write -s $T2 $((4 * G - 1000)) 2000" \
    "write -z $((3 * G)) 64k" "write -P 0x17 $((4 * G + 128 * K - 512)) 512"
  reg "bound/over4g" "$p"
}

gate_run boundaries
finish
