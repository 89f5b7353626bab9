#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-snapshots.sh - the write gate's family snapshots:
# snapshots interleaved with writes, made by qvet, by QEMU and by both.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.snapshots.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# Snapshots interleaved with writes: CS SIZE OPTIONS
gen_snap_basic() {
  local c=$1 s=$2 m
  m=$(((s - 1536) / 4))    # a quarter of the disk, for offsets
  echo "io write -P 0x51 0 200k"
  echo "io write -P 0x52 $m 64k"
  echo "io write -c -P 0x53 $((2 * m)) $(((128 * K + c - 1) / c * c))"
  echo "snap -c s1"
  echo "check"
  echo "io write -P 0x54 100k 10k"
  echo "io write -z $m 64k"
  echo "io discard 128k 64k"
  echo "io write -P 0x55 $((2 * m + 1000)) 100"
  echo "snap -c s2"
  echo "check"
  echo "io write -z -u 0 64k"
  echo "io write -P 0x56 $((3 * m)) 64k"
  echo "snap -c s3"
  echo "check"
  echo "snap -a s1"
  echo "check"
  echo "io write -P 0x57 50k 1k"
  echo "io read -P 0x51 0 1k"
  echo "check"
  echo "snap -d s2"
  echo "check"
  echo "snap -a s3"
  echo "io write -P 0x58 $m 4k"
  echo "check"
  echo "snap -d s1"
  echo "snap -d s3"
  echo "check"
  echo "io write -P 0x59 0 64k"
  echo "snap -c s4"
  echo "io write -P 0x5a 1000 100"
}

# A snapshot of the small disk, one of the grown disk, applied in turn
gen_snap_resize() {
  local s=$2
  echo "io write -P 0x61 0 512k"
  echo "snap -c small"
  echo "check"
  echo "resize +2M"
  echo "io write -P 0x62 $((s + 1000)) 64k"
  echo "io write -P 0x63 100k 4k"
  echo "snap -c big"
  echo "check"
  echo "snap -a small"
  echo "check"
  echo "io write -P 0x64 0 4k"
  echo "check"
  echo "snap -a big"
  echo "check"
  echo "snap -d small"
  echo "check"
}

# Duplicate names and a name that is also an ID: apply looks up IDs first,
# delete takes the first match, new IDs continue after the largest
gen_snap_names() {
  echo "io write -P 0x71 0 64k"
  echo "snap -c dup"
  echo "io write -P 0x72 0 32k"
  echo "snap -c dup"
  echo "io write -P 0x73 0 16k"
  echo "snap -c 1"
  echo "check"
  echo "snap -a 1"
  echo "check"
  echo "io write -P 0x74 8k 1k"
  echo "snap -d dup"
  echo "check"
  echo "snap -a 1"
  echo "check"
  echo "snap -a dup"
  echo "snap -c after"
  echo "check"
}

# Many snapshots at 512-byte clusters: the table spans several clusters
gen_snap_many() {
  local i
  for i in $(seq 1 20); do
    echo "io write -P $((0x20 + i)) $((i * 9000)) 700"
    echo "snap -c number-$i"
  done
  for i in $(seq 2 2 18); do
    echo "snap -d number-$i"
  done
  echo "check"
  echo "snap -a number-5"
  echo "io write -P 0x7e 40000 3000"
  echo "snap -c number-21"
  echo "check"
}

# Snapshots made by qemu-img, then read, applied and deleted by qvet
gen_cross_qemu() {
  echo "io write -P 0x81 0 300k"
  echo "qsnap -c a"
  echo "io write -P 0x82 100k 100k"
  echo "io write -z 200k 64k"
  echo "qsnap -c b"
  echo "io write -P 0x83 0 4k"
  echo "check"
  echo "snap -a a"
  echo "check"
  echo "io write -P 0x84 1M 64k"
  echo "snap -d b"
  echo "check"
  echo "snap -c c"
  echo "check"
  echo "snap -d a"
  echo "check"
}

# Snapshots made by qvet (on A; by qemu-img on B), then applied and deleted by
# qemu-img on both
gen_cross_qvet() {
  echo "io write -P 0x91 0 300k"
  echo "snap -c a"
  echo "io write -P 0x92 64k 128k"
  echo "io write -z 256k 64k"
  echo "snap -c b"
  echo "io write -P 0x93 500k 10k"
  echo "check"
  echo "qsnap -a a"
  echo "check"
  echo "io write -P 0x94 0 4k"
  echo "check"
  echo "qsnap -d b"
  echo "check"
  echo "qsnap -a a"
  echo "qsnap -d a"
  echo "check"
}

# u_snap LABEL SIZE OPTIONS BACKING GENERATOR: twins from qemu-img create,
# checked after every step
u_snap() {
  local label=$1 size=$2 opts=$3 back=$4 gen=$5
  local p="snap:$label" dir=$WORK/w/snap-$label
  local co=()
  unit_enter "$p" "$dir" || return
  if [ "$opts" != - ]; then
    co+=(-o "$opts")
  fi
  if [ "$back" != none ]; then
    make_base "base.${back%%:*}" "${back%%:*}" "${back#*:}" || return
    co+=(-b "base.${back%%:*}" -F "${back%%:*}")
  fi
  if ! qemu-img create -q -f qcow2 "${co[@]}" A.qcow2 "$size" 2>"$OUT/err"; then
    fail "$p:setup" "harness: qemu-img create failed$(errline)"
    return
  fi
  cp A.qcow2 B.qcow2
  "$gen" "$(cs_of "$opts")" "$(u64 A.qcow2 24)" "$opts" >script
  w_play "$p" script
  w_agree "agree:snap/$label:qvet-img" A.qcow2
  w_agree "agree:snap/$label:qemu-img" B.qcow2
}

# the family's write units, for gate_run
write_units() {
  wu "snap:basic-c64k" u_snap basic-c64k $((4 * M + 1536)) - none gen_snap_basic
  wu "snap:basic-c512" u_snap basic-c512 $((4 * M + 1536)) cluster_size=512 none gen_snap_basic
  wu "snap:basic-v2-c4k" u_snap basic-v2-c4k $((4 * M + 1536)) compat=0.10,cluster_size=4k none gen_snap_basic
  wu "snap:basic-xl2-c16k" u_snap basic-xl2-c16k $((4 * M + 1536)) extended_l2=on,cluster_size=16k none gen_snap_basic
  wu "snap:basic-lazy-zstd" u_snap basic-lazy-zstd $((4 * M + 1536)) lazy_refcounts=on,compression_type=zstd none gen_snap_basic
  wu "snap:basic-rb64-c2M" u_snap basic-rb64-c2M $((4 * M + 1536)) refcount_bits=64,cluster_size=2M none gen_snap_basic
  wu "snap:basic-overlay" u_snap basic-overlay $((4 * M + 1536)) cluster_size=32k "qcow2:$((2 * M + 512))" gen_snap_basic
  wu "snap:resize" u_snap resize $((3 * M + 1536)) - none gen_snap_resize
  wu "snap:names" u_snap names "$M" cluster_size=4k none gen_snap_names
  wu "snap:many-c512" u_snap many-c512 $((256 * K)) cluster_size=512 none gen_snap_many
  wu "snap:cross-qemu-made" u_snap cross-qemu-made $((4 * M + 1536)) - none gen_cross_qemu
  wu "snap:cross-qemu-made-v2-c512" u_snap cross-qemu-made-v2-c512 $((4 * M + 1536)) compat=0.10,cluster_size=512 none gen_cross_qemu
  wu "snap:cross-qvet-made" u_snap cross-qvet-made $((4 * M + 1536)) - none gen_cross_qvet
  wu "snap:cross-qvet-made-xl2" u_snap cross-qvet-made-xl2 $((4 * M + 1536)) extended_l2=on,cluster_size=32k none gen_cross_qvet
}

gate_run
finish
