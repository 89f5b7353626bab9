#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-extl2.sh - the read gate's image group extl2:
# extended L2 entries (subclusters).
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.extl2.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_extl2() {
  local cs p sub b size
  for cs in 16384 65536 2097152; do
    sub=$((cs / 32))
    p=xl2/c$cs.qcow2
    mk "$p" $((cs < M ? 8 * M + 512 : 6 * cs + 512)) -o extended_l2=on,cluster_size="$cs"
    io "$p" \
      "write -P 0x11 0 512" \
      "write -P 0x22 $((3 * sub + 100)) 300" \
      "write -s $T1 $((5 * sub - 200)) $((sub + 400))" \
      "write -s $T2 $cs $cs" \
      "write -z $((cs + 2 * sub)) $((3 * sub))" \
      "write -z $((cs + 10 * sub + 7)) 1000" \
      "discard $((cs + 8 * sub)) $((2 * sub))" \
      "write -P 0x33 $((2 * cs)) $cs" \
      "write -z -u $((2 * cs)) $cs" \
      "write -c -s $T1 $((3 * cs)) $cs" \
      "write -P 0x44 $((4 * cs + 31 * sub)) $((2 * sub))" \
      "write -z $((5 * cs + sub)) $sub"
    qemu-img snapshot -c before "$p"
    io "$p" "write -P 0x55 $((sub / 2)) $((2 * sub))" "write -z $cs $((4 * sub))" \
      "write -s $T2 $((3 * cs + sub)) 100"
    reg "xl2/c$cs" "$p" before

    # an overlay with subclusters over a plain base: unallocated subclusters
    # read the backing file, zero subclusters hide it
    size=$((cs < M ? 4 * M : 4 * cs))
    b=xl2/base$cs.qcow2
    mk "$b" "$size" -o cluster_size=65536
    io "$b" "write -s $T2 0 $((3 * M))" "write -P 0x60 $((3 * M)) $((size - 3 * M - 4096))"
    p=xl2/over$cs.qcow2
    mk "$p" "$size" -o extended_l2=on,cluster_size="$cs" -b "base$cs.qcow2" -F qcow2
    io "$p" \
      "write -P 0x61 $((sub + 3)) 10" \
      "write -z $((4 * sub)) $((2 * sub))" \
      "write -P 0x62 $((cs + 31 * sub)) $((sub + 512))" \
      "discard $((3 * cs)) $sub" \
      "write -z -u $((2 * cs)) $cs"
    reg "xl2/over$cs" "$p"
  done

  # metadata preallocation is allowed with a backing file only with subclusters
  p=xl2/prealloc-over.qcow2
  mk "$p" $((4 * M)) -o extended_l2=on,preallocation=metadata -b base65536.qcow2 -F qcow2
  io "$p" "write -P 0x71 100k 5000" "write -z 1M 64k"
  reg "xl2/prealloc-over" "$p"

  p=xl2/zstd.qcow2
  mk "$p" $((4 * M)) -o extended_l2=on,compression_type=zstd,cluster_size=16k
  io "$p" "write -c -s $T1 0 64k" "write -P 0x72 16900 100" "write -c -s $R1 1M 32k"
  reg "xl2/zstd" "$p"
}

gate_run extl2
finish
