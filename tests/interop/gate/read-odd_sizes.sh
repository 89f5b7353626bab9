#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-odd_sizes.sh - the read gate's image group odd_sizes:
# virtual sizes that are not a cluster multiple.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.odd_sizes.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_odd_sizes() {
  local p s cs
  for s in 0 1 1000 $((100 * K + 512)) $((3 * M + 1536)) $((5 * M - 512)); do
    for cs in 512 65536 2097152; do
      p=odd/s$s-c$cs.qcow2
      mk "$p" "$s" -o cluster_size="$cs"
      if [ "$s" -gt 0 ]; then
        # rounded up to a multiple of 512; the last byte must be writable
        io "$p" "write -P 0x5e $(((s + 511) / 512 * 512 - 1)) 1" \
          "write -s $T1 0 $(( s < 300 ? s : 300 ))"
      fi
      reg "odd/s$s-c$cs" "$p"
    done
  done
}

gate_run odd_sizes
finish
