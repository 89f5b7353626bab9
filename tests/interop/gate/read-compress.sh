#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-compress.sh - the read gate's image group compress:
# zlib and zstd clusters, from qemu-io write -c and convert -c.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.compress.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_compress() {
  local ct cs p src size csize tail
  src=$MIX
  for ct in zlib zstd; do
    for cs in 512 4096 65536 2097152; do
      # compressed writes only go to unallocated clusters: keep them apart
      p=comp/$ct-c$cs.qcow2
      csize=$(common_size "$cs")
      tail=$(align $((csize - 1)) "$cs")
      mk "$p" "$csize" -o compression_type="$ct",cluster_size="$cs"
      io "$p" \
        "write -c -s $T1 0 $(((M / cs + 1) * cs))" \
        "write -c -s $R1 $((2 * M)) $cs" \
        "write -c -P 0x5a $((tail - cs)) $cs" \
        "write -c -s $T2 $tail $((csize - tail))" \
        "write -P 0x66 $((cs / 2 + 17)) 33"
      reg "comp/$ct-c$cs" "$p"

      p=comp/conv-$ct-c$cs.qcow2
      qemu-img convert -f raw -O qcow2 -c -o compression_type="$ct",cluster_size="$cs" "$src" "$p"
      reg "comp/conv-$ct-c$cs" "$p"
    done
  done
  p=comp/v2-zlib.qcow2
  qemu-img convert -f raw -O qcow2 -c -o compat=0.10 "$src" "$p"
  io "$p" "write -P 0x67 1M 100"
  reg "comp/v2-zlib" "$p"
}

gate_run compress
finish
