#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-clusters.sh - the write gate's family clusters:
# every cluster size from 512 B to 2 MiB.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.clusters.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# the family's write units, for gate_run
write_units() {
  local cs k
  for cs in 512 1k 4k 16k 64k 2M; do
    k=$(numfmt --from=iec "${cs^^}")
    case $cs in
      16k) twins "cs/c$cs" "$(sz "$k" $((36 * M)))" "cluster_size=$cs" none gen_general ;;
      64k) twins "cs/c$cs" "$(sz "$k" $((520 * M)))" "cluster_size=$cs" none gen_general ;;
      *) twins "cs/c$cs" "$(sz "$k")" "cluster_size=$cs" none gen_general ;;
    esac
  done
}

gate_run
finish
