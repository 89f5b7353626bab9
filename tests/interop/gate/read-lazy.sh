#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-lazy.sh - the read gate's image group lazy:
# lazy_refcounts, also images left dirty.
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.lazy.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# dirty_bit PATH: fail the group unless incompatible-feature bit 0 is set
dirty_bit() {
  local v
  v=$(od -An -tx1 -j 79 -N 1 "$1" | tr -d ' ')
  if [ $((0x$v & 1)) -ne 1 ]; then
    echo "$1: dirty bit not set after abort" >&2
    return 1
  fi
}

g_lazy() {
  local p
  p=lazy/clean.qcow2
  mk "$p" $((2 * M)) -o lazy_refcounts=on
  io "$p" "write -s $T1 0 300k" "write -z 64k 64k"
  reg "lazy/clean" "$p"

  # qemu-io dies with the image still marked dirty (incompatible bit 0)
  p=lazy/dirty.qcow2
  mk "$p" $((2 * M)) -o lazy_refcounts=on
  io "$p" "write -s $T1 0 100k"
  qemu-io -f qcow2 -c "write -s $T2 512k 200k" -c "write -P 0x41 10k 1k" -c abort "$p" \
    >/dev/null 2>&1 || true
  dirty_bit "$p"
  reg "lazy/dirty" "$p"

  p=lazy/dirty-flushed.qcow2
  mk "$p" $((2 * M)) -o lazy_refcounts=on,cluster_size=4k
  qemu-io -f qcow2 -c "write -s $T1 0 100k" -c flush -c "write -P 0x42 1M 8k" \
    -c "write -z 8k 4k" -c abort "$p" >/dev/null 2>&1 || true
  dirty_bit "$p"
  reg "lazy/dirty-flushed" "$p"
}

gate_run lazy
finish
