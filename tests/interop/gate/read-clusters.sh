#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-clusters.sh - the read gate's image group clusters:
# every cluster size from 512 B to 2 MiB, the same writes in each.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.clusters.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_clusters() {
  local cs p size
  for cs in 512 1k 2k 4k 8k 16k 32k 64k 128k 256k 512k 1M 2M; do
    p=cs/c$cs.qcow2
    size=$(common_size "$cs")
    mk "$p" "$size" -o cluster_size="$cs"
    common_writes "$p" "$(numfmt --from=iec "${cs^^}")" "$size"
    reg "cs/c$cs" "$p"
  done
}

gate_run clusters
finish
