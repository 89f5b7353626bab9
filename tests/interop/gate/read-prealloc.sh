#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-prealloc.sh - the read gate's image group prealloc:
# preallocation=metadata and falloc/full.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.prealloc.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_prealloc() {
  local pa p
  for pa in off metadata falloc full; do
    p=pre/$pa.qcow2
    mk "$p" $((3 * M + 512)) -o preallocation="$pa"
    io "$p" "write -s $T1 100k 200k" "write -z 1M 64k" "write -z -u $((2 * M)) 64k" \
      "write -z $((2 * M + 128 * K + 512)) 2k" "discard $((2 * M + 256 * K)) 128k"
    reg "pre/$pa" "$p"
  done
  p=pre/metadata-c512.qcow2
  mk "$p" $((M + 1536)) -o preallocation=metadata,cluster_size=512
  io "$p" "write -s $T2 32000 2000" "write -z 64k 4k"
  reg "pre/metadata-c512" "$p"
  p=pre/full-v2.qcow2
  mk "$p" $((2 * M)) -o preallocation=full,compat=0.10
  io "$p" "write -s $T2 1000 70000"
  reg "pre/full-v2" "$p"
  p=pre/falloc-xl2.qcow2
  mk "$p" $((2 * M)) -o preallocation=falloc,extended_l2=on
  io "$p" "write -z 4k 8k" "write -P 0x31 1M 5000"
  reg "pre/falloc-xl2" "$p"
}

gate_run prealloc
finish
