#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-compat.sh - the write gate's family compat:
# version 2 images of several cluster sizes and a version 3 one.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.compat.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# the family's write units, for gate_run
write_units() {
  local cs k
  for cs in 512 4k 64k 2M; do
    k=$(numfmt --from=iec "${cs^^}")
    twins "v2/c$cs" "$(sz "$k")" "compat=0.10,cluster_size=$cs" none gen_general
  done
  twins "v3/default" "$(sz 65536)" "compat=1.1" none gen_general
}

gate_run
finish
