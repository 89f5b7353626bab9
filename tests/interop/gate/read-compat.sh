#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-compat.sh - the read gate's image group compat:
# version 2 (compat=0.10) and version 3 images.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.compat.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_compat() {
  local cs p size
  for cs in 512 4k 64k 2M; do
    p=v2/c$cs.qcow2
    size=$(common_size "$cs")
    mk "$p" "$size" -o compat=0.10,cluster_size="$cs"
    common_writes "$p" "$(numfmt --from=iec "${cs^^}")" "$size"
    reg "v2/c$cs" "$p"
  done
  # explicit compat=1.1 with the default cluster size
  p=v3/default.qcow2
  size=$(common_size 64k)
  mk "$p" "$size" -o compat=1.1
  common_writes "$p" $((64 * K)) "$size"
  reg "v3/default" "$p"
}

gate_run compat
finish
