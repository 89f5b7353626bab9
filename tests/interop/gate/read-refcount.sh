#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-refcount.sh - the read gate's image group refcount:
# refcount_bits 1 to 64.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.refcount.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_refcount() {
  local rb cs p n
  for cs in 512 65536; do
    for rb in 1 2 4 8 16 32 64; do
      p=rb/r$rb-c$cs.qcow2
      mk "$p" $((3 * M)) -o cluster_size="$cs",refcount_bits="$rb"
      io "$p" "write -s $T1 0 $((M + 512))" "write -P 0x5a $((2 * M + 100)) 3000" \
        "discard $((64 * K)) $((64 * K))"
      if [ "$rb" = 1 ]; then
        # 1-bit refcounts cannot share clusters: no snapshots possible
        reg "rb/r$rb-c$cs" "$p"
        continue
      fi
      qemu-img snapshot -c first "$p"
      io "$p" "write -s $T2 $((100 * K)) $((300 * K))" "write -z $((M)) $((128 * K))"
      n=first
      if [ "$rb" -ge 4 ]; then
        qemu-img snapshot -c second "$p"
        io "$p" "write -P 0x77 $((M / 2)) $((M + 4096))"
        n="first second"
      fi
      # shellcheck disable=SC2086 # n is a word list
      reg "rb/r$rb-c$cs" "$p" $n
    done
  done
}

gate_run refcount
finish
