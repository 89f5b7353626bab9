#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-features.sh - the write gate's family features:
# lazy refcounts, extended L2 entries, zstd compression.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.features.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# the family's write units, for gate_run
write_units() {
  twins "lazy/c64k" "$(sz 65536)" "lazy_refcounts=on" none gen_general
  twins "lazy/c512" "$(sz 512 $((M / 2)))" "lazy_refcounts=on,cluster_size=512" none gen_general
  twins "xl2/c16k" "$(sz 16384 $((20 * M)))" "extended_l2=on,cluster_size=16k" none gen_general
  twins "xl2/c64k" "$(sz 65536 $((260 * M)))" "extended_l2=on" none gen_general
  twins "xl2/c2M" "$(sz $((2 * M)))" "extended_l2=on,cluster_size=2M" none gen_general
  twins "zstd/c64k" "$(sz 65536)" "compression_type=zstd" none gen_general
  twins "zstd/c4k" "$(sz 4096)" "compression_type=zstd,cluster_size=4k" none gen_general
  twins "zstd/xl2-c16k" "$(sz 16384)" "compression_type=zstd,extended_l2=on,cluster_size=16k" none gen_general
}

gate_run
finish
