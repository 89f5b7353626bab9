#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-prealloc.sh - the write gate's family prealloc:
# preallocation=metadata.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.prealloc.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# the family's write units, for gate_run
write_units() {
  twins "prealloc/c64k" "$(sz 65536)" "preallocation=metadata" none gen_general
  twins "prealloc/c512" "$(sz 512)" "preallocation=metadata,cluster_size=512" none gen_general
  twins "prealloc/c2M" "$(sz $((2 * M)))" "preallocation=metadata,cluster_size=2M" none gen_general
  twins "prealloc/v2-c4k" "$(sz 4096)" "preallocation=metadata,compat=0.10,cluster_size=4k" none gen_general
}

gate_run
finish
