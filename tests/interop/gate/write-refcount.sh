#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-refcount.sh - the write gate's family refcount:
# refcount_bits 1 to 64, and refcount tables that must grow.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.refcount.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# Enough writes at 512-byte clusters that the refcount table must grow (one
# cluster of table covers 8 MiB at 16-bit refcounts, 2 MiB at 64-bit): CS SIZE OPTIONS MiB
gen_grow() {
  local c=$1 s=$2 n=$4
  echo "io write -P 0x41 0 $((n * M))"
  echo "io write -P 0x42 $((n * M + 1000)) 70000"
  echo "io discard $((M)) $((M / 2))"
  echo "io write -z $((2 * M)) 64k"
  echo "io write -c -P 0x43 $((n * M + 128 * K)) $((8 * c))"
  echo "io write -P 0x44 $((M + 100)) 200"
  echo "io read -P 0x41 0 4k"
  echo "resize +1M"
  echo "io write -P 0x45 $s 64k"
}

# the family's write units, for gate_run
write_units() {
  local rb
  wu1 "write:grow/c512-8M/qi" u_twins grow/c512-8M qi $((16 * M)) cluster_size=512 none gen_grow 8
  for rb in 1 2 4 8 32 64; do
    twins "rb/r$rb-c512" "$(sz 512 $((M / 2)))" "refcount_bits=$rb,cluster_size=512" none gen_general
    twins "rb/r$rb-c64k" "$(sz 65536)" "refcount_bits=$rb" none gen_general
  done
  wu "write:grow/c512-rb64/qi" u_twins grow/c512-rb64 qi $((4 * M)) cluster_size=512,refcount_bits=64 none gen_grow 2
}

gate_run
finish
