#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# read-chains.sh - the read gate's image group chains:
# backing files (qcow2, raw, smaller, depth 4, relative names seen
# from other directories).
#
# Builds its images with qemu-img/qemu-io and checks that qvet reads them as QEMU
# does (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.read.chains.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

g_chains() {
  local p
  # qcow2 chain of depth 4 with differing cluster sizes; relative names,
  # one of them pointing up out of a subdirectory
  p=chain/base.qcow2
  mk "$p" $((4 * M)) -o cluster_size=2M
  io "$p" "write -s $T1 0 $((4 * M - 512))"
  p=chain/mid.qcow2
  mk "$p" $((4 * M)) -o cluster_size=4k -b base.qcow2 -F qcow2
  io "$p" "write -s $T2 1000 100k" "write -z 1M 64k" "write -P 0x21 $((3 * M)) 5"
  p=chain/top.qcow2
  mk "$p" $((4 * M)) -o cluster_size=512,compat=0.10 -b mid.qcow2 -F qcow2
  io "$p" "write -P 0x31 50000 1000" "discard 1000 4096" "write -z 2M 4k"
  p=chain/sub/leaf.qcow2
  mk "$p" "" -b ../top.qcow2 -F qcow2
  io "$p" "write -P 0x41 $((M - 10)) 20" "write -z 0 64k" "discard 1M 64k" \
    "write -z -u $((3 * M)) 128k"
  qemu-img snapshot -c leafsnap "$p"
  io "$p" "write -s $R1 2M 64k"
  reg "chain/base" chain/base.qcow2
  reg "chain/mid" chain/mid.qcow2
  reg "chain/top" chain/top.qcow2
  reg "chain/leaf" chain/sub/leaf.qcow2 leafsnap
  # the same chain seen from other working directories
  mkdir -p elsewhere/deeper
  regc "chain/leaf-from-elsewhere" elsewhere ../chain/sub/leaf.qcow2 leafsnap
  regc "chain/leaf-from-subdir" chain/sub leaf.qcow2
  regc "chain/leaf-dotdot-path" elsewhere/deeper ../../chain/./sub/../sub/leaf.qcow2
  regc "chain/leaf-absolute" / "$WORK/chain/sub/leaf.qcow2"

  # raw backing file, smaller than the overlay, not a multiple of 512 bytes
  p=chain/raw/base.raw
  mkdir -p chain/raw
  head -c 100000 "$T1" >"$p"
  p=chain/raw/over.qcow2
  mk "$p" "$M" -b base.raw -F raw
  io "$p" "write -P 0x51 4k 1k" "write -P 0x52 99000 2000" "write -z 64k 64k"
  reg "chain/raw-odd" "$p"
  p=chain/raw/base2.raw
  head -c $((2 * M)) "$T2" >"$p"
  p=chain/raw/over2.qcow2
  mk "$p" $((2 * M)) -o cluster_size=16k -b base2.raw -F raw
  io "$p" "write -s $T1 $((M - 7)) 30000" "discard 0 16k" "write -z $((M + 64 * K)) 32k"
  reg "chain/raw" "$p"

  # a qcow2 backing file smaller than the overlay: reads past its end are zero
  p=chain/small/base.qcow2
  mk "$p" $((M + 512)) -o cluster_size=4k
  io "$p" "write -s $T1 0 $((M + 512))"
  p=chain/small/over.qcow2
  mk "$p" $((3 * M)) -b base.qcow2 -F qcow2
  io "$p" "write -P 0x61 $((M - 100)) 300" "write -P 0x62 $((2 * M)) 1000"
  reg "chain/small-base" "$p"

  # a v3 overlay without writes at all (everything from the backing file)
  p=chain/small/empty.qcow2
  mk "$p" $((2 * M)) -b over.qcow2 -F qcow2
  reg "chain/empty-overlay" "$p"

  # a compressed backing file under an extended-L2 overlay
  p=chain/comp/base.qcow2
  mkdir -p chain/comp
  qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$MIX" "$p"
  p=chain/comp/over.qcow2
  mk "$p" "" -o extended_l2=on,cluster_size=32k -b base.qcow2 -F qcow2
  io "$p" "write -P 0x71 1500 10" "write -z $((M + 4 * K)) 8k"
  reg "chain/comp-base" "$p"
}

gate_run chains
finish
