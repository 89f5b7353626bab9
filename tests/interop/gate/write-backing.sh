#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-backing.sh - the write gate's family backing:
# qcow2 and raw backing files.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.backing.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# the family's write units, for gate_run
write_units() {
  twins "backing/qcow2-c64k" "$(sz 65536)" - "qcow2:$((2 * M + 512))" gen_general
  twins "backing/qcow2-c4k" "$(sz 4096)" "cluster_size=4k" "qcow2:$((2 * M + 512))" gen_general
  twins "backing/qcow2-c512" "$(sz 512 $((M / 2)))" "cluster_size=512" "qcow2:$((M / 4 + 512))" gen_general
  twins "backing/raw-c64k" "$(sz 65536)" - "raw:$((M + 777))" gen_general
  twins "backing/raw-c1k" "$(sz 1024 $((M / 2)))" "cluster_size=1k" "raw:$((M / 4 + 333))" gen_general
  twins "backing/v2-qcow2" "$(sz 65536)" "compat=0.10" "qcow2:$((3 * M))" gen_general
  twins "backing/xl2-c16k" "$(sz 16384)" "extended_l2=on,cluster_size=16k" "qcow2:$((2 * M + 512))" gen_general
  twins "backing/xl2-c64k" "$(sz 65536)" "extended_l2=on" "raw:$((M + 4097))" gen_general
  twins "backing/xl2-c2M" "$(sz $((2 * M)))" "extended_l2=on,cluster_size=2M" "qcow2:$((20 * M + 512))" gen_general
  twins "backing/xl2-prealloc" "$(sz 65536)" "extended_l2=on,preallocation=metadata" "qcow2:$((2 * M + 512))" gen_general
}

gate_run
finish
