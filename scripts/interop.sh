#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# interop.sh - the read gate and the write gate.
#
# Read gate: builds a matrix of qcow2 images with QEMU's own tools (qemu-img,
# qemu-io) and checks that qvet reads every one of them exactly as QEMU does:
#
#   cat:LABEL         qvet cat IMG                 == qemu-img convert -O raw IMG
#   map:LABEL         qvet map --output=json IMG   == qemu-img map --output=json IMG
#   cat-s:LABEL@SNAP  qvet cat -s SNAP IMG         == qemu-img convert -O raw -l snapshot.name=SNAP IMG
#
# plus cat-s:LABEL@id=N (cat -s N, reference snapshot.id=N), cat@:LABEL@SNAP
# (cat IMG@SNAP) and error:* (one "qvet: FILE: message" line, exit 1).
#
# Image groups (g_* below): clusters (512 B .. 2 MiB), compat (v2/v3), refcount
# (refcount_bits 1..64), extl2 (subclusters), compress (zlib/zstd, write -c and
# convert -c), prealloc, lazy (incl. left dirty), snapshots, chains (backing
# files: qcow2, raw, smaller, depth 4, relative names from other directories),
# odd_sizes, boundaries (L2 edges, past 4 GiB), misc (bitmaps, amend, commit,
# rebase, applied snapshot, many/duplicate snapshot names, symlinks).
#
# Write gate (section "the write gate" below): twin images, one written by
# qvet (io, snapshot, resize), the other by QEMU (qemu-io, qemu-img) with the
# same command script, then qemu-img check on qvet's image and qemu-img
# compare of the twins, snapshot by snapshot:
#
#   create:LABEL           qvet create writes the bytes qemu-img create writes
#   write:LABEL/qi|qv:...  the option matrix, twins from qemu-img (qi) or qvet (qv) create
#   snap:LABEL#STEP:...    snapshots interleaved with writes, checked after every step
#   agree:...              qvet check --output=json agrees with qemu-img check
#   repair:damage/...      qvet check -r all repairs an image damaged on purpose
#
# Every comparison prints "PASS name" or "FAIL name: reason"; the last line is
# "N passed, M failed". Exit status 1 if anything failed or nothing passed.
#
# Environment:
#   QVET   the binary under test (default: build/qvet under the repo root)
#   KEEP=1 keep the work directory (its path is printed on stderr)
#   READ   the read gate's image groups to build and check, space-separated
#          (default: all of GROUPS_ALL below; "none" for no read gate)
#   WRITE  extended regex over write-unit labels (write:*, snap:*, damage:*):
#          the write units to run (default: all; "none" for no write gate)
#   ONLY   optional extended regex: only check images and write units whose
#          label matches (write units: write:LABEL/qi, snap:LABEL, damage:LABEL)
#   JOBS   images checked in parallel (default: the number of CPUs)
#   TIMEOUT seconds one qvet run may take (default 300)
#   TIMES=1 print the 20 slowest images/units on stderr at the end
#
# Snapshot sizes follow qemu-img convert -l: QEMU 7.2 reads a snapshot with the
# image's *current* virtual size, so a snapshot taken before the image grew reads
# as its old contents followed by zeros up to the current size. (Applying the
# snapshot with "qemu-img snapshot -a" would instead shrink the image back to
# the snapshot's recorded disk size; the read gate does not use that, the
# write gate's snap:resize does.)
#
# The script only reads build/; it never builds anything.

# The image groups and the EXIT trap are reached indirectly ("g_$group"):
# shellcheck disable=SC2317
set -u

# shellcheck source=../tests/lib/qvet-test.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lib/qvet-test.sh"
QVET=${QVET:-$ROOT/build/qvet}
ONLY=${ONLY:-}
READ=${READ:-all}
WRITE=${WRITE:-}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
TIMEOUT=${TIMEOUT:-300}
TIMES=${TIMES:-0}

# The binary is looked up before any work: a relative path is taken from the
# caller's directory, a bare name from PATH.
case $QVET in
  /*) ;;
  */*) QVET=$PWD/$QVET ;;
  *) QVET=$(command -v -- "$QVET" || echo "$QVET") ;;
esac
if [ ! -f "$QVET" ] || [ ! -x "$QVET" ]; then
  fail "qvet-binary" "$QVET is missing or not executable (run make first)"
  finish
fi
require qemu-img qemu-io cmp diff od dd timeout numfmt

# Background checks still running when the gate stops are stopped with it.
on_exit() {
  local pids
  pids=$(jobs -p)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # a list of our own background jobs
    kill $pids 2>/dev/null
    wait
  fi
}
work_dir interop
trap 'exit 130' INT
trap 'exit 143' TERM

OUT=$WORK/.out          # scratch for references and outputs
MANIFEST=$WORK/.manifest  # label, cwd, path, snapshots: one image a line
REGFILE=$MANIFEST         # where reg writes (each group has its own)
mkdir -p "$OUT" "$WORK/data"
: >"$MANIFEST"
ulimit -c 0             # qemu-io 'abort' must not leave core files

K=1024
M=$((1024 * 1024))
G=$((1024 * M))

# ---------------------------------------------------------------------------
# building blocks (used inside the group subshells, which run with set -e)

# mk PATH SIZE [qemu-img create options...]
# An empty SIZE means "take the backing file's size".
mk() {
  local path=$1 size=$2
  shift 2
  mkdir -p "$(dirname "$path")"
  if [ -n "$size" ]; then
    qemu-img create -q -f qcow2 "$@" "$path" "$size"
  else
    qemu-img create -q -f qcow2 "$@" "$path"
  fi
}

# io PATH CMD...: one qemu-io run with every CMD as a -c command.
io() {
  local path=$1 c
  local args=()
  shift
  for c in "$@"; do
    args+=(-c "$c")
  done
  if ! qemu-io -f qcow2 "${args[@]}" "$path" >"$OUT/io-$BASHPID.log" 2>&1; then
    grep -v '^wrote\|^[0-9.]* [KMG]*i*B*, \|bytes, ' "$OUT/io-$BASHPID.log" >&2
    echo "qemu-io failed on $path: $*" >&2
    return 1
  fi
}

# reg LABEL PATH [SNAP...]: check PATH from the work directory.
# A SNAP is a snapshot name, "id:N" (cat -s N), or "at:NAME" (cat PATH@NAME).
reg() {
  regc "$1" . "$2" "${@:3}"
}

# regc LABEL CWD PATH [SNAP...]: check PATH as seen from CWD (relative to WORK).
regc() {
  local label=$1 cwd=$2 path=$3
  shift 3
  printf '%s\t%s\t%s\t%s\n' "$label" "$cwd" "$path" "$*" >>"$REGFILE"
}

# copy_bytes FILE OFFSET SRC LEN: copy LEN bytes of SRC into FILE at OFFSET.
copy_bytes() {
  dd if="$3" of="$1" bs=64k seek="$2" count="$4" iflag=count_bytes \
    oflag=seek_bytes conv=notrunc status=none
}

# align X A: X rounded down to a multiple of A
align() {
  echo $(($1 / $2 * $2))
}

# Position-dependent content catches misplaced data that a constant pattern hides.
make_data() {
  seq 1 400000 >"$WORK/data/t1"                          # ~2.7 MB, compressible
  seq -f 'line %g of the second text' 1 120000 >"$WORK/data/t2"
  seq 1 1100000 | gzip -9n >"$WORK/data/r1"              # ~2.3 MB, incompressible
  # a raw source for convert -c: text, a hole, noise, text, a short tail
  local size=$((4 * M + 1536))
  truncate -s "$size" "$MIX"
  copy_bytes "$MIX" 0 "$T1" $((M + 1234))
  copy_bytes "$MIX" $((3 * M / 2)) "$R1" $((512 * K))
  copy_bytes "$MIX" $((3 * M)) "$T2" $((600 * K))
  copy_bytes "$MIX" $((size - 777)) "$T1" 777
}

T1=data/t1
T2=data/t2
R1=data/r1
MIX=data/mix.raw

# ---------------------------------------------------------------------------
# groups: each builds some images and registers them

# The same mix of writes for any cluster size: partial clusters, unaligned
# offsets and lengths, text data, zero writes with and without unmap, discard,
# and a write that ends exactly at the (non cluster-multiple) end of the image.
common_writes() {
  local p=$1 cs=$2 size=$3 a b
  a=$(align $((2 * M)) "$cs")
  b=$(align $((3 * M)) "$cs")
  if [ $((b + 3 * cs)) -gt "$size" ]; then
    b=$(align $((size - 3 * cs)) "$cs")
  fi
  io "$p" \
    "write -P 0x11 0 3k" \
    "write -P 0x22 5000 777" \
    "write -s $T1 $((M + 300)) 200k" \
    "write -s $T2 $((a + 7)) $((cs + 1000))" \
    "write -z $((a + 512)) 1536" \
    "write -P 0x33 $b $((2 * cs))" \
    "write -z -u $b $cs" \
    "write -s $R1 $((b + 2 * cs)) $cs" \
    "discard $((b + 2 * cs)) $cs" \
    "write -P 0x44 $((size - 1000)) 1000"
}

# image size for common_writes: at least 4 MiB and 4 clusters, plus 1.5 KiB
common_size() {
  local c
  c=$(numfmt --from=iec "${1^^}")
  if [ "$c" -lt "$M" ]; then
    c=$M
  fi
  echo $((4 * c + 1536))
}

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

g_refcount() {
  local rb cs p n
  for cs in 512 65536; do
    for rb in 1 2 4 8 16 32 64; do
      p=rb/r$rb-c$cs.qcow2
      mk "$p" $((3 * M)) -o cluster_size="$cs",refcount_bits="$rb"
      io "$p" "write -s $T1 0 $((M + 512))" "write -P 0x5a $((2 * M + 100)) 3000" \
        "discard $((64 * K)) $((64 * K))"
      if [ "$rb" = 1 ]; then
        # 1-bit refcounts cannot share clusters: no snapshots possible
        reg "rb/r$rb-c$cs" "$p"
        continue
      fi
      qemu-img snapshot -c first "$p"
      io "$p" "write -s $T2 $((100 * K)) $((300 * K))" "write -z $((M)) $((128 * K))"
      n=first
      if [ "$rb" -ge 4 ]; then
        qemu-img snapshot -c second "$p"
        io "$p" "write -P 0x77 $((M / 2)) $((M + 4096))"
        n="first second"
      fi
      # shellcheck disable=SC2086 # n is a word list
      reg "rb/r$rb-c$cs" "$p" $n
    done
  done
}

g_extl2() {
  local cs p sub b size
  for cs in 16384 65536 2097152; do
    sub=$((cs / 32))
    p=xl2/c$cs.qcow2
    mk "$p" $((cs < M ? 8 * M + 512 : 6 * cs + 512)) -o extended_l2=on,cluster_size="$cs"
    io "$p" \
      "write -P 0x11 0 512" \
      "write -P 0x22 $((3 * sub + 100)) 300" \
      "write -s $T1 $((5 * sub - 200)) $((sub + 400))" \
      "write -s $T2 $cs $cs" \
      "write -z $((cs + 2 * sub)) $((3 * sub))" \
      "write -z $((cs + 10 * sub + 7)) 1000" \
      "discard $((cs + 8 * sub)) $((2 * sub))" \
      "write -P 0x33 $((2 * cs)) $cs" \
      "write -z -u $((2 * cs)) $cs" \
      "write -c -s $T1 $((3 * cs)) $cs" \
      "write -P 0x44 $((4 * cs + 31 * sub)) $((2 * sub))" \
      "write -z $((5 * cs + sub)) $sub"
    qemu-img snapshot -c before "$p"
    io "$p" "write -P 0x55 $((sub / 2)) $((2 * sub))" "write -z $cs $((4 * sub))" \
      "write -s $T2 $((3 * cs + sub)) 100"
    reg "xl2/c$cs" "$p" before

    # an overlay with subclusters over a plain base: unallocated subclusters
    # read the backing file, zero subclusters hide it
    size=$((cs < M ? 4 * M : 4 * cs))
    b=xl2/base$cs.qcow2
    mk "$b" "$size" -o cluster_size=65536
    io "$b" "write -s $T2 0 $((3 * M))" "write -P 0x60 $((3 * M)) $((size - 3 * M - 4096))"
    p=xl2/over$cs.qcow2
    mk "$p" "$size" -o extended_l2=on,cluster_size="$cs" -b "base$cs.qcow2" -F qcow2
    io "$p" \
      "write -P 0x61 $((sub + 3)) 10" \
      "write -z $((4 * sub)) $((2 * sub))" \
      "write -P 0x62 $((cs + 31 * sub)) $((sub + 512))" \
      "discard $((3 * cs)) $sub" \
      "write -z -u $((2 * cs)) $cs"
    reg "xl2/over$cs" "$p"
  done

  # metadata preallocation is allowed with a backing file only with subclusters
  p=xl2/prealloc-over.qcow2
  mk "$p" $((4 * M)) -o extended_l2=on,preallocation=metadata -b base65536.qcow2 -F qcow2
  io "$p" "write -P 0x71 100k 5000" "write -z 1M 64k"
  reg "xl2/prealloc-over" "$p"

  p=xl2/zstd.qcow2
  mk "$p" $((4 * M)) -o extended_l2=on,compression_type=zstd,cluster_size=16k
  io "$p" "write -c -s $T1 0 64k" "write -P 0x72 16900 100" "write -c -s $R1 1M 32k"
  reg "xl2/zstd" "$p"
}

g_compress() {
  local ct cs p src size csize tail
  src=$MIX
  for ct in zlib zstd; do
    for cs in 512 4096 65536 2097152; do
      # compressed writes only go to unallocated clusters: keep them apart
      p=comp/$ct-c$cs.qcow2
      csize=$(common_size "$cs")
      tail=$(align $((csize - 1)) "$cs")
      mk "$p" "$csize" -o compression_type="$ct",cluster_size="$cs"
      io "$p" \
        "write -c -s $T1 0 $(((M / cs + 1) * cs))" \
        "write -c -s $R1 $((2 * M)) $cs" \
        "write -c -P 0x5a $((tail - cs)) $cs" \
        "write -c -s $T2 $tail $((csize - tail))" \
        "write -P 0x66 $((cs / 2 + 17)) 33"
      reg "comp/$ct-c$cs" "$p"

      p=comp/conv-$ct-c$cs.qcow2
      qemu-img convert -f raw -O qcow2 -c -o compression_type="$ct",cluster_size="$cs" "$src" "$p"
      reg "comp/conv-$ct-c$cs" "$p"
    done
  done
  p=comp/v2-zlib.qcow2
  qemu-img convert -f raw -O qcow2 -c -o compat=0.10 "$src" "$p"
  io "$p" "write -P 0x67 1M 100"
  reg "comp/v2-zlib" "$p"
}

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

# dirty_bit PATH: fail the group unless incompatible-feature bit 0 is set
dirty_bit() {
  local v
  v=$(od -An -tx1 -j 79 -N 1 "$1" | tr -d ' ')
  if [ $((0x$v & 1)) -ne 1 ]; then
    echo "$1: dirty bit not set after abort" >&2
    return 1
  fi
}

g_snapshots() {
  local p
  # several snapshots with data changing in between, one deleted (ids 1,3,4)
  p=snap/multi.qcow2
  mk "$p" $((8 * M))
  io "$p" "write -s $T1 0 1M" "write -P 0x10 5M 100k"
  qemu-img snapshot -c s1 "$p"
  io "$p" "write -s $T2 512k 1M" "write -z 5M 64k"
  qemu-img snapshot -c s2 "$p"
  io "$p" "discard 0 128k" "write -P 0x30 7M 1M" "write -z -u 1M 64k"
  qemu-img snapshot -c s3 "$p"
  io "$p" "write -P 0x40 100 100" "write -c -s $T1 2M 128k"
  qemu-img snapshot -c s4 "$p"
  io "$p" "write -s $R1 3M 300k"
  qemu-img snapshot -d s2 "$p"
  reg "snap/multi" "$p" s1 s3 s4 id:3 at:s4

  # a snapshot taken before the image grew
  p=snap/resize.qcow2
  mk "$p" "$M"
  io "$p" "write -s $T1 0 $((M - 512))"
  qemu-img snapshot -c small "$p"
  qemu-img resize -q "$p" $((3 * M + 1536))
  io "$p" "write -P 0x51 $((M - 1000)) 2000" "write -s $T2 $((3 * M)) 1536"
  qemu-img snapshot -c big "$p"
  io "$p" "write -P 0x52 0 4k"
  reg "snap/resize" "$p" small big

  p=snap/v2.qcow2
  mk "$p" $((2 * M)) -o compat=0.10
  io "$p" "write -s $T1 0 200k"
  qemu-img snapshot -c a "$p"
  io "$p" "write -s $T2 100k 200k" "write -z 0 64k"
  qemu-img snapshot -c b "$p"
  io "$p" "discard 64k 128k"
  reg "snap/v2" "$p" a b

  # 512-byte clusters: snapshot L1 tables span several clusters' worth of L2s
  p=snap/c512.qcow2
  mk "$p" $((2 * M)) -o cluster_size=512
  io "$p" "write -s $T1 30000 100k" "write -P 0x61 $((M + 32767)) 2"
  qemu-img snapshot -c one "$p"
  io "$p" "write -s $T2 31000 50k" "write -z $((M)) 64k"
  qemu-img snapshot -c two "$p"
  io "$p" "write -P 0x62 0 2M"
  reg "snap/c512" "$p" one two

  # VM state is stored past the end of the virtual disk; it is not guest data
  p=snap/vmstate.qcow2
  mk "$p" $((M + 512))
  io "$p" "write -s $T1 0 100k" "write -b -P 0x7e 0 200k"
  qemu-img snapshot -c withvm "$p"
  io "$p" "write -b -P 0x7f 64k 64k" "write -P 0x71 50k 10k"
  reg "snap/vmstate" "$p" withvm

  # compressed clusters shared with a snapshot, then overwritten in part
  p=snap/comp.qcow2
  mk "$p" $((2 * M)) -o compression_type=zstd
  io "$p" "write -c -s $T1 0 512k"
  qemu-img snapshot -c packed "$p"
  io "$p" "write -P 0x72 1000 1000" "write -z 128k 64k"
  reg "snap/comp" "$p" packed
}

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

g_odd_sizes() {
  local p s cs
  for s in 0 1 1000 $((100 * K + 512)) $((3 * M + 1536)) $((5 * M - 512)); do
    for cs in 512 65536 2097152; do
      p=odd/s$s-c$cs.qcow2
      mk "$p" "$s" -o cluster_size="$cs"
      if [ "$s" -gt 0 ]; then
        # rounded up to a multiple of 512; the last byte must be writable
        io "$p" "write -P 0x5e $(((s + 511) / 512 * 512 - 1)) 1" \
          "write -s $T1 0 $(( s < 300 ? s : 300 ))"
      fi
      reg "odd/s$s-c$cs" "$p"
    done
  done
}

g_boundaries() {
  local p
  # 512-byte clusters: an L2 table covers 32 KiB, so this uses many L1 entries
  p=bound/c512.qcow2
  mk "$p" $((4 * M)) -o cluster_size=512
  io "$p" "write -P 0x11 $((32 * K - 700)) 1400" "write -s $T1 $((64 * K - 1)) 2" \
    "write -s $T2 $((96 * K - 33)) $((70 * K))" "write -P 0x12 $((4 * M - 32 * K - 1)) 2" \
    "write -z $((128 * K - 512)) 1024"
  reg "bound/c512" "$p"
  # 1k clusters: an L2 covers 128 KiB
  p=bound/c1k.qcow2
  mk "$p" $((2 * M)) -o cluster_size=1k
  io "$p" "write -s $T1 $((128 * K - 3)) 6" "write -s $T2 $((256 * K - 1000)) 300k"
  reg "bound/c1k" "$p"
  # 4k clusters: an L2 covers 2 MiB
  p=bound/c4k.qcow2
  mk "$p" $((8 * M)) -o cluster_size=4k
  io "$p" "write -s $T1 $((2 * M - 5000)) 10000" "write -P 0x13 $((4 * M - 1)) 2" \
    "write -z $((6 * M - 4096)) 8192"
  reg "bound/c4k" "$p"
  # extended L2 with 64k clusters: an L2 covers 256 MiB
  p=bound/xl2-sparse.qcow2
  mk "$p" $((600 * M)) -o extended_l2=on
  io "$p" "write -s $T1 $((256 * M - 1500)) 3000" "write -z $((512 * M)) 2k"
  reg "bound/xl2-sparse" "$p"
  # 64k clusters (an L2 covers 512 MiB) past 4 GiB: guest offsets that do not
  # fit in 32 bits. This one image costs most of the gate's time (cat streams
  # 4 GiB), so it carries all the large-offset checks.
  p=bound/over4g.qcow2
  mk "$p" $((4 * G + 128 * K))
  io "$p" "write -s $T1 $((512 * M - 3000)) 6000" "write -P 0x14 $((G - 1)) 2" \
    "write -P 0x16 $((2 * G - 1)) 2" "write -s $T2 $((4 * G - 1000)) 2000" \
    "write -z $((3 * G)) 64k" "write -P 0x17 $((4 * G + 128 * K - 512)) 512"
  reg "bound/over4g" "$p"
}

# Images that went through other qemu-img operations, and naming corner cases.
g_misc() {
  local p i names=""
  # a persistent dirty bitmap (autoclear bit 0 + bitmaps extension): not guest data
  p=misc/bitmap.qcow2
  mk "$p" $((2 * M))
  qemu-img bitmap --add "$p" bm0
  io "$p" "write -s $T1 0 300k" "write -z 64k 64k"
  reg "misc/bitmap" "$p"

  # amend: a v3 image with zero clusters downgraded to v2; refcount width changed
  p=misc/amend-v2.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T1 0 512k" "write -z 64k 128k" "write -z -u 1M 64k"
  qemu-img amend -o compat=0.10 "$p"
  reg "misc/amend-v2" "$p"
  p=misc/amend-rb.qcow2
  mk "$p" $((2 * M)) -o cluster_size=4k
  io "$p" "write -s $T2 0 700k"
  qemu-img snapshot -c keep "$p"
  io "$p" "write -P 0x21 100k 50k"
  qemu-img amend -o refcount_bits=64 "$p"
  reg "misc/amend-rb" "$p" keep

  # commit an overlay into its base, then keep writing to the overlay
  p=misc/commit/base.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T1 0 1M"
  p=misc/commit/over.qcow2
  mk "$p" $((2 * M)) -b base.qcow2 -F qcow2
  io "$p" "write -s $T2 300k 400k" "write -z 0 64k"
  qemu-img commit -q "$p"
  io "$p" "write -P 0x22 1500k 10k"
  reg "misc/commit-base" misc/commit/base.qcow2
  reg "misc/commit-over" "$p"

  # a safe rebase onto another base copies the differences into the overlay
  p=misc/rebase/a.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T1 0 2M"
  p=misc/rebase/b.qcow2
  mk "$p" $((2 * M))
  io "$p" "write -s $T2 512k 512k"
  p=misc/rebase/over.qcow2
  mk "$p" $((2 * M)) -b a.qcow2 -F qcow2
  io "$p" "write -P 0x23 0 4k"
  qemu-img rebase -q -b b.qcow2 -F qcow2 "$p"
  reg "misc/rebase" "$p"

  # a snapshot applied: the image shrinks back to the snapshot's size
  p=misc/applied.qcow2
  mk "$p" "$M"
  io "$p" "write -s $T1 0 600k"
  qemu-img snapshot -c small "$p"
  qemu-img resize -q "$p" $((4 * M))
  io "$p" "write -s $T2 $((M - 100)) $((2 * M))"
  qemu-img snapshot -c large "$p"
  qemu-img snapshot -a small "$p"
  io "$p" "write -P 0x24 100k 4k"
  reg "misc/applied" "$p" small large

  # many snapshots: with 512-byte clusters the table spans several clusters;
  # two snapshots share the name "dup" (the first one is meant)
  p=misc/many.qcow2
  mk "$p" $((256 * K)) -o cluster_size=512
  for i in $(seq 1 14); do
    io "$p" "write -P $((0x30 + i)) $((i * 9000)) 700"
    qemu-img snapshot -c "snapshot-number-$i" "$p"
    names="$names snapshot-number-$i"
  done
  qemu-img snapshot -c dup "$p"
  io "$p" "write -P 0x50 0 1k"
  qemu-img snapshot -c dup "$p"
  io "$p" "write -P 0x51 0 2k"
  # shellcheck disable=SC2086 # names is a word list
  reg "misc/many" "$p" $names dup id:16 id:15

  # a file name containing '@' is a file name, not IMAGE@SNAPSHOT
  p=misc/name@x.qcow2
  mk "$p" "$M"
  io "$p" "write -P 0x25 0 4k"
  reg "misc/at-in-name" "$p"

  # reached through a symlink in another directory: QEMU resolves the relative
  # backing name against the link's directory, where a different base lives
  p=misc/real/base.qcow2
  mk "$p" "$M"
  io "$p" "write -P 0x61 0 1M"
  p=misc/link/base.qcow2
  mk "$p" "$M"
  io "$p" "write -P 0x62 0 1M"
  mk misc/real/over.qcow2 "" -b base.qcow2 -F qcow2
  io misc/real/over.qcow2 "write -P 0x63 4k 4k"
  ln -s ../real/over.qcow2 misc/link/over.qcow2
  reg "misc/symlink" misc/link/over.qcow2

  # an absolute backing name
  p=misc/abs/over.qcow2
  mk "$p" "" -b "$WORK/misc/commit/base.qcow2" -F qcow2
  io "$p" "write -P 0x26 1M 100"
  regc "misc/absolute-backing" misc/abs over.qcow2
}

GROUPS_ALL=(clusters compat refcount extl2 compress prealloc lazy snapshots chains odd_sizes boundaries misc)
case $READ in
  all) GROUPS_RUN=("${GROUPS_ALL[@]}") ;;
  none) GROUPS_RUN=() ;;
  *)
    read -ra GROUPS_RUN <<<"$READ"
    for g in "${GROUPS_RUN[@]}"; do
      if ! [[ " ${GROUPS_ALL[*]} " == *" $g "* ]]; then
        fail "usage" "READ names an unknown image group '$g' (groups: ${GROUPS_ALL[*]})"
        finish
      fi
    done
    ;;
esac

# ---------------------------------------------------------------------------
# checks

# qvet ARGS...: run the binary under test, with no input and a time limit
qvet() {
  timeout -k 5 "$TIMEOUT" "$QVET" "$@" </dev/null
}

# exited RC: how a qvet run ended, for a FAIL line
exited() {
  case $1 in
    124 | 137) echo "timed out after ${TIMEOUT}s" ;;
    126 | 127) echo "could not be run (exit $1)" ;;
    129 | 1[3-9][0-9]) echo "was killed by signal $(($1 - 128)) ($(kill -l "$(($1 - 128))" 2>/dev/null))" ;;
    *) echo "exited $1" ;;
  esac
}

# errline: qvet's first line on stderr (without bash's own crash notice), as ": LINE"
errline() {
  local line
  line=$(grep -v -F "${BASH_SOURCE[0]}: line " "$OUT/err" | head -n 1)
  if [ -n "$line" ]; then
    echo ": $line"
  fi
}

# byte_at FILE OFFSET: the byte at OFFSET in hex, or "EOF" past the end
byte_at() {
  local v
  v=$(od -An -tx1 -j "$2" -N 1 "$1" | tr -d ' \n')
  if [ -n "$v" ]; then
    echo "0x$v"
  else
    echo EOF
  fi
}

# first_diff A B: offset of the first byte where files A and B differ (the
# shorter one counts as zero-extended), nothing if they are equal, or a line
# starting with "error:". qemu-img compare walks sparse files by their
# allocation, so a 4 GiB hole costs nothing; cmp then pins the byte inside the
# sector it names.
first_diff() {
  local msg rc sector rel
  msg=$(qemu-img compare -f raw -F raw "$1" "$2" 2>&1)
  rc=$?
  case $rc:$msg in
    0:*) return 0 ;;
    1:*"Content mismatch at offset "*) ;;
    *)
      echo "error: qemu-img compare exited $rc: $(echo "$msg" | head -n 1)"
      return 0
      ;;
  esac
  sector=${msg##*Content mismatch at offset }
  sector=${sector%%!*}
  rel=$(cmp -i "$sector" -- "$1" "$2" 2>&1 | sed -n 's/.* differ: byte \([0-9]*\),.*/\1/p')
  if [ -n "$rel" ]; then
    echo $((sector + rel - 1))
  else
    echo "$sector"     # the difference is zeros against the end of the other file
  fi
}

# check_data NAME CWD REF QVET-ARGS...: qvet's stdout must equal the file REF.
# The output goes through dd conv=sparse so that long runs of zeros cost
# neither disk space nor comparison time.
check_data() {
  local name=$1 cwd=$2 ref=$3
  shift 3
  local got=$OUT/got.raw qrc drc rsize gsize off why
  rm -f "$got" "$OUT/rc"
  (
    cd "$WORK/$cwd" || exit 99
    qvet "$@" 2>"$OUT/err" | dd of="$got" bs=64k conv=sparse status=none
    echo "${PIPESTATUS[0]} ${PIPESTATUS[1]}" >"$OUT/rc"
  )
  if ! read -r qrc drc <"$OUT/rc" 2>/dev/null; then
    fail "$name" "harness: cannot run in $cwd"
    return
  fi
  if [ "$qrc" != 0 ]; then
    fail "$name" "qvet $* $(exited "$qrc")$(errline)"
    return
  fi
  if [ "$drc" != 0 ] || [ ! -f "$got" ]; then
    fail "$name" "harness: could not store qvet's output (dd exited $drc)"
    return
  fi
  rsize=$(stat -c %s "$ref")
  gsize=$(stat -c %s "$got")
  off=$(first_diff "$ref" "$got")
  case $off in
    error:*)
      fail "$name" "harness: $off"
      rm -f "$got"
      return
      ;;
  esac
  if [ -z "$off" ] && [ "$rsize" = "$gsize" ]; then
    pass "$name"
    rm -f "$got"
    return
  fi
  why=
  if [ "$rsize" != "$gsize" ]; then
    why="size differs: qemu-img $rsize bytes, qvet $gsize bytes"
  fi
  if [ -n "$off" ]; then
    why="${why:+$why; }data differs from qemu-img at offset $off ($(printf '0x%x' "$off")): qemu-img $(byte_at "$ref" "$off"), qvet $(byte_at "$got" "$off")"
  fi
  fail "$name" "$why"
  rm -f "$got"
}

check_map() {
  local name=$1 cwd=$2 path=$3 rc
  if ! (cd "$WORK/$cwd" && qemu-img map --output=json "$path") >"$OUT/ref.json" 2>"$OUT/qerr"; then
    fail "$name" "reference failed: qemu-img map: $(head -n 1 "$OUT/qerr")"
    return
  fi
  (cd "$WORK/$cwd" && qvet map --output=json "$path") >"$OUT/got.json" 2>"$OUT/err"
  rc=$?
  if [ "$rc" != 0 ]; then
    fail "$name" "qvet map $path $(exited "$rc")$(errline)"
    return
  fi
  if cmp -s "$OUT/ref.json" "$OUT/got.json"; then
    pass "$name"
    return
  fi
  diff -u --label qemu-img --label qvet "$OUT/ref.json" "$OUT/got.json" | head -n 14 >"$OUT/diff"
  if ! grep -q '^@@' "$OUT/diff"; then
    # a difference diff cannot show as lines (e.g. the final newline)
    (cd "$OUT" && cmp ref.json got.json) >"$OUT/diff" 2>&1
    printf 'last bytes: qemu-img %s, qvet %s\n' \
      "$(tail -c 3 "$OUT/ref.json" | od -An -c | tr -s ' ')" \
      "$(tail -c 3 "$OUT/got.json" | od -An -c | tr -s ' ')" >>"$OUT/diff"
  fi
  fail "$name" "differs from qemu-img map" "$OUT/diff"
}

check_snapshot() {
  local label=$1 cwd=$2 path=$3 snap=$4 name lopt args
  case $snap in
    id:*)
      name="cat-s:$label@id=${snap#id:}"
      lopt="snapshot.id=${snap#id:}"
      args=(cat -s "${snap#id:}" "$path")
      ;;
    at:*)
      name="cat@:$label@${snap#at:}"
      lopt="snapshot.name=${snap#at:}"
      args=(cat "$path@${snap#at:}")
      ;;
    *)
      name="cat-s:$label@$snap"
      lopt="snapshot.name=$snap"
      args=(cat -s "$snap" "$path")
      ;;
  esac
  rm -f "$OUT/ref.raw"
  if ! (cd "$WORK/$cwd" && qemu-img convert -O raw -l "$lopt" "$path" "$OUT/ref.raw") 2>"$OUT/qerr"; then
    fail "$name" "reference failed: qemu-img convert -l $lopt: $(head -n 1 "$OUT/qerr")"
    return
  fi
  check_data "$name" "$cwd" "$OUT/ref.raw" "${args[@]}"
}

check_image() {
  local label=$1 cwd=$2 path=$3 snaps=$4 s
  rm -f "$OUT/ref.raw"
  if (cd "$WORK/$cwd" && qemu-img convert -O raw "$path" "$OUT/ref.raw") 2>"$OUT/qerr"; then
    check_data "cat:$label" "$cwd" "$OUT/ref.raw" cat "$path"
  else
    fail "cat:$label" "reference failed: qemu-img convert: $(head -n 1 "$OUT/qerr")"
  fi
  rm -f "$OUT/ref.raw"
  check_map "map:$label" "$cwd" "$path"
  for s in $snaps; do
    check_snapshot "$label" "$cwd" "$path" "$s"
  done
}

# The error contract: one line "qvet: FILE: message" on stderr, exit 1.
check_error() {
  local name=$1 prefix=$2 rc lines
  shift 2
  (cd "$WORK" && qvet "$@") >"$OUT/got" 2>"$OUT/err"
  rc=$?
  lines=$(wc -l <"$OUT/err")
  if [ "$rc" != 1 ]; then
    fail "$name" "qvet $* $(exited "$rc"), expected exit 1$(errline)"
  elif [ "$lines" != 1 ]; then
    fail "$name" "expected exactly one line on stderr, got $lines" "$OUT/err"
  elif [ "$(head -c ${#prefix} "$OUT/err")" != "$prefix" ]; then
    fail "$name" "stderr does not start with '$prefix': $(head -n 1 "$OUT/err")"
  elif [ -s "$OUT/got" ]; then
    fail "$name" "wrote $(wc -c <"$OUT/got") bytes to stdout on error"
  else
    pass "$name"
  fi
}

# ---------------------------------------------------------------------------
# the write gate
#
# A write unit makes two images that start out identical ("twins"): A, which
# qvet writes, and B, which QEMU writes. It plays one script on both, line by
# line:
#
#   io CMD          qvet io -c CMD on A, qemu-io -c CMD on B (consecutive io
#                   lines go to one run of each, as one command script)
#   resize SIZE     qvet resize --shrink A SIZE, qemu-img resize --shrink B SIZE
#   snap OP NAME    qvet snapshot OP NAME A, qemu-img snapshot OP NAME B
#   qsnap OP NAME   qemu-img snapshot OP NAME on both (cross-direction tests)
#   check           compare the twins now (also done after the last line)
#
# Each check step gives the cases PREFIX:run (every qvet command exited as its
# QEMU counterpart did and printed the same messages), PREFIX:check
# (qemu-img check on A exits 0), PREFIX:compare (qemu-img compare A B says
# identical, same virtual size) and, when there are snapshots, PREFIX:list
# (qemu-img snapshot -l gives the same IDs and names) and PREFIX@ID.NAME (the
# snapshot reads the same from A and B with qemu-img convert -l, and qvet cat
# -s reads A's copy the same way).
#
# create:LABEL (the qv variant) requires qvet create to write the very bytes
# qemu-img create writes for the same options. agree:* requires qvet check
# --output=json to report what qemu-img check --output=json reports on every
# image the write gate made, and on images damaged on purpose (damage:*);
# repair:* runs qvet check -r all on a damaged copy and then wants qemu-img
# check to find nothing.

CHECK_FIELDS="check-errors corruptions leaks image-end-offset total-clusters allocated-clusters compressed-clusters fragmented-clusters"

# hex N: N in hex, for qemu-io patterns
hex() {
  printf '0x%02x' "$1"
}

# cs_of OPTIONS: the cluster size the options ask for, in bytes
cs_of() {
  local v
  v=$(sed -n 's/.*cluster_size=\([^,]*\).*/\1/p' <<<"$1")
  v=${v:-64k}
  numfmt --from=iec "${v^^}"
}

# sz CS [MIN]: a disk size for the general script: room for 32 clusters (and
# at least MIN bytes, default 4 MiB), then 1.5 KiB more, so that the last
# cluster is partial
sz() {
  local s=$((32 * $1)) min=${2:-$((4 * M))}
  if [ "$s" -lt "$min" ]; then
    s=$min
  fi
  echo $((s + 1536))
}

# checkfields FILE: the CHECK_FIELDS of a check --output=json object, as
# "key=value" words (0 when a key is absent, as qemu-img leaves out zero counts)
checkfields() {
  tr -d ' \t\n\r"' <"$1" | tr ',{}' '\n' | awk -F : -v keys="$CHECK_FIELDS" '
    $2 ~ /^-?[0-9]+$/ { v[$1] = $2 }
    END { n = split(keys, k, " "); for (i = 1; i <= n; i++) printf "%s=%s ", k[i], (k[i] in v ? v[k[i]] : 0) }'
}

# --- script generators: each prints a script for the twins on stdout -------

# The general script, for any cluster size: CS SIZE OPTIONS
gen_general() {
  local c=$1 s=$2 opts=$3 span sub t s1 s2 e
  e=8
  case $opts in *extended_l2=on*) e=16 ;; esac
  span=$((c * c / e))
  # unaligned writes inside a cluster and across a cluster boundary
  echo "io write -P 0x11 100 $((c / 2))"
  echo "io write -P 0x12 $((c - 100)) 300"
  echo "io read -P 0x12 $((c - 100)) 300"
  echo "io write -P 0x13 $((2 * c + c / 4)) $((c + c / 4))"
  # zero writes on whole clusters, then writes into them (zero flag cleared)
  echo "io write -z $((4 * c)) $((2 * c))"
  echo "io write -P 0x14 $((4 * c + c / 2)) 100"
  echo "io write -P 0x15 $((5 * c)) $c"
  echo "io read -P 0 $((4 * c)) $((c / 2))"
  echo "io read -P 0x14 $((4 * c + c / 2)) 100"
  # zero with unmap: a whole allocated cluster, then part of one
  echo "io write -P 0x16 $((6 * c)) $((2 * c))"
  echo "io write -z -u $((6 * c)) $c"
  echo "io write -z -u $((7 * c + c / 4)) $((c / 2))"
  echo "io read -P 0x16 $((7 * c)) $((c / 4))"
  # partial zero writes: in an allocated cluster, in an unallocated one
  echo "io write -P 0x17 $((8 * c)) $c"
  echo "io write -z $((8 * c + 100)) 300"
  echo "io write -z $((9 * c + 5)) $((c / 2))"
  echo "io flush"
  # discard: a whole cluster, part of one, a range across two
  echo "io write -P 0x18 $((10 * c)) $((3 * c))"
  echo "io discard $((10 * c)) $c"
  echo "io discard $((11 * c + c / 4)) $((c / 2))"
  echo "io discard $((11 * c + 3 * c / 4)) $((c / 2))"
  # a small unaligned write into an unallocated cluster (COW from a backing file)
  echo "io write -P 0x19 $((13 * c + 10)) 20"
  if [[ $opts != *preallocation=metadata* ]]; then
    # compressed writes on unallocated clusters, then ordinary writes into them
    echo "io write -c -P 0x1a $((14 * c)) $c"
    echo "io write -c -P 0x1b $((15 * c)) $((2 * c))"
    # (QEMU 7.2 packs compressed data into the host cluster it used last in the
    # session even after that cluster was freed and reused for other data: so
    # every compressed write of a session comes before anything is freed)
    echo "io write -c -P 0x35 $((28 * c)) $((2 * c))"
    echo "io flush"
    echo "io write -P 0x1c $((14 * c + 300)) 100"
    echo "io write -z $((15 * c + c / 2)) $((c / 4))"
    echo "io write -z -u $((16 * c)) $c"
    echo "io read -P 0x1a $((14 * c)) 300"
    echo "io read -P 0x1b $((15 * c)) $((c / 2))"
  else
    echo "io write -P 0x1a $((14 * c)) $((3 * c))"
    echo "io write -P 0x35 $((28 * c)) $((2 * c))"
    echo "io write -z -u $((16 * c)) $c"
  fi
  echo "io write -P 0x1e $((17 * c)) $c"
  # a long unaligned write over several clusters, then a discard inside it
  echo "io write -P 0x1f $((18 * c + 123)) $((4 * c + 777))"
  echo "io discard $((18 * c + 100)) $((3 * c))"
  echo "io read -P 0x1f $((21 * c)) $((c / 2))"
  # a write across the boundary of two zeroed clusters
  echo "io write -z $((24 * c)) $((2 * c))"
  echo "io write -P 0x20 $((25 * c - 50)) 100"
  echo "io flush"
  if [ "$e" = 16 ]; then
    # subclusters: unallocated, zero, unmapped and discarded ones
    sub=$((c / 32))
    echo "io write -P 0x31 $((26 * c + 3 * sub + 100)) 300"
    echo "io write -z $((26 * c + 8 * sub)) $((3 * sub))"
    echo "io write -P 0x32 $((26 * c + 9 * sub + 7)) 10"
    echo "io write -z -u $((26 * c + 12 * sub + 5)) $((2 * sub))"
    echo "io discard $((26 * c + 16 * sub)) $((2 * sub))"
    echo "io write -P 0x33 $((27 * c)) $c"
    echo "io write -z $((27 * c + 31 * sub)) $sub"
    echo "io write -z -u $((27 * c)) $sub"
    echo "io write -P 0x34 $((27 * c + sub / 2)) $((sub * 3))"
    echo "io read -P 0x32 $((26 * c + 9 * sub + 7)) 10"
  fi
  # a discarded compressed cluster, then a write across it and the next one
  echo "io discard $((28 * c)) $c"
  echo "io write -P 0x36 $((29 * c - 10)) 20"
  echo "io read -P 0x35 $((29 * c + 10)) 100"
  # across L2 tables, where the disk is large enough
  if [ $((span + 2000)) -lt $((s - 4 * c - 2000)) ] && [ "$span" -gt $((30 * c)) ]; then
    echo "io write -P 0x21 $((span - 700)) 1400"
    echo "io read -P 0x21 $((span - 700)) 1400"
    if [ $((4 * span + 10000)) -lt $((s - 4 * c - 2000)) ]; then
      echo "io write -P 0x22 $((2 * span - 5000)) $((span + 10000))"
      echo "io discard $((2 * span - 2 * c)) $((span + 4 * c))"
    fi
  fi
  # the tail: a write, a discard of the last (partial) cluster, more writes
  t=$(align $((s - 1)) "$c")
  echo "io write -P 0x23 $((s - 2000)) 2000"
  echo "io discard $t $((s - t))"
  echo "io write -P 0x24 $((s - 700)) 300"
  echo "io write -z -u $((s - 200)) 200"
  echo "io read -P 0x24 $((s - 700)) 300"
  # grow, write into the new part, shrink to just past it, write at the end
  s1=$((s + 3 * c + 1536))
  s2=$((s1 - c - 1024))
  echo "resize +$((3 * c + 1536))"
  echo "io write -P 0x25 $((s + 100)) $c"
  echo "io read -P 0 $((s + 100 + c)) 100"
  echo "resize -$((c + 1024))"
  echo "io write -P 0x26 $((s2 - 300)) 300"
  echo "io read -P 0x25 $((s + 100)) $c"
  echo "io read -P 0x13 $((2 * c + c / 4)) 100"
}

# Enough writes at 512-byte clusters that the refcount table must grow (one
# cluster of table covers 8 MiB at 16-bit refcounts, 2 MiB at 64-bit): CS SIZE OPTIONS MiB
gen_grow() {
  local c=$1 s=$2 n=$4
  echo "io write -P 0x41 0 $((n * M))"
  echo "io write -P 0x42 $((n * M + 1000)) 70000"
  echo "io discard $((M)) $((M / 2))"
  echo "io write -z $((2 * M)) 64k"
  echo "io write -c -P 0x43 $((n * M + 128 * K)) $((8 * c))"
  echo "io write -P 0x44 $((M + 100)) 200"
  echo "io read -P 0x41 0 4k"
  echo "resize +1M"
  echo "io write -P 0x45 $s 64k"
}

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

# --- running a script on the twins -----------------------------------------

# w_batch: run the io lines collected so far on both twins
w_batch() {
  local c vrc qrc
  local args=()
  if [ ${#w_io[@]} -eq 0 ]; then
    return
  fi
  for c in "${w_io[@]}"; do
    args+=(-c "$c")
  done
  w_io=()
  w_nbatch=$((w_nbatch + 1))
  qvet io "${args[@]}" A.qcow2 >"$OUT/vio.all" 2>"$OUT/err"
  vrc=$?
  grep -Ev '^[0-9.]+ (bytes|[KMGTPE]iB), [0-9]+ ops; ' "$OUT/vio.all" >"$OUT/vio"
  qemu-io -f qcow2 "${args[@]}" B.qcow2 >"$OUT/qio.all" 2>&1 </dev/null
  qrc=$?
  grep -Ev '^[0-9.]+ (bytes|[KMGTPE]iB), [0-9]+ ops; ' "$OUT/qio.all" >"$OUT/qio"
  if [ "$qrc" != 0 ]; then
    echo "harness: qemu-io exited $qrc on io batch $w_nbatch: $(grep -v '^wrote\|^read\|^discard' "$OUT/qio" | head -n 1)" >>"$OUT/ops"
  fi
  if [ "$vrc" != "$qrc" ]; then
    echo "io batch $w_nbatch: qvet io $(exited "$vrc") (qemu-io exited $qrc)$(errline)" >>"$OUT/ops"
  elif ! cmp -s "$OUT/vio" "$OUT/qio"; then
    echo "io batch $w_nbatch: qvet io printed other messages than qemu-io:" >>"$OUT/ops"
    diff --label qemu-io --label qvet -u "$OUT/qio" "$OUT/vio" | sed -n '3,10p' >>"$OUT/ops"
  fi
}

# w_pair WHAT QVET-ARGS -- QEMU-COMMAND...: one step on A by qvet, on B by QEMU
w_pair() {
  local what=$1 vrc qrc
  local v=()
  shift
  while [ "$1" != -- ]; do
    v+=("$1")
    shift
  done
  shift
  qvet "${v[@]}" >/dev/null 2>"$OUT/err"
  vrc=$?
  "$@" >"$OUT/qout" 2>&1 </dev/null
  qrc=$?
  if [ "$qrc" != 0 ]; then
    echo "harness: $* exited $qrc: $(head -n 1 "$OUT/qout")" >>"$OUT/ops"
  fi
  if [ "$vrc" != "$qrc" ]; then
    echo "$what: qvet ${v[*]} $(exited "$vrc") ($1 exited $qrc)$(errline)" >>"$OUT/ops"
  fi
}

# w_both_qemu WHAT COMMAND...: a QEMU command on A, then on B (the word IMG in
# COMMAND stands for the image)
w_both_qemu() {
  local what=$1 img rc
  shift
  for img in A B; do
    "${@//IMG/$img.qcow2}" >"$OUT/qout" 2>&1 </dev/null
    rc=$?
    if [ "$rc" != 0 ]; then
      if [ "$img" = A ]; then
        echo "$what: on qvet's image: ${*//IMG/A.qcow2} exited $rc: $(head -n 1 "$OUT/qout")" >>"$OUT/ops"
      else
        echo "harness: ${*//IMG/B.qcow2} exited $rc: $(head -n 1 "$OUT/qout")" >>"$OUT/ops"
      fi
    fi
  done
}

# snaps IMG: "ID NAME" of every snapshot, one a line (from qemu-img snapshot -l)
snaps() {
  qemu-img snapshot -l "$1" 2>&1 | awk 'NR > 2 { print $1, $2 }'
}

# w_verify PREFIX: compare the twins (see the top of this section)
w_verify() {
  local p=$1 rc va vb id sname
  if [ -s "$OUT/ops" ]; then
    fail "$p:run" "$(grep -c . "$OUT/ops") step(s) differed from QEMU" "$OUT/ops"
  else
    pass "$p:run"
  fi
  : >"$OUT/ops"
  qemu-img check A.qcow2 >"$OUT/qchk" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then
    pass "$p:check"
  else
    grep -v '^$' "$OUT/qchk" | head -n 8 >"$OUT/qchk.head"
    fail "$p:check" "qemu-img check exited $rc on qvet's image" "$OUT/qchk.head"
  fi
  va=$(u64 A.qcow2 24)
  vb=$(u64 B.qcow2 24)
  qemu-img compare A.qcow2 B.qcow2 >"$OUT/cmp" 2>&1
  rc=$?
  if [ "$rc" = 0 ] && [ "$va" = "$vb" ]; then
    pass "$p:compare"
  elif [ "$rc" = 0 ]; then
    fail "$p:compare" "virtual size: qvet $va, qemu $vb"
  else
    fail "$p:compare" "qemu-img compare exited $rc: $(grep -v '^Warning' "$OUT/cmp" | head -n 1)$([ "$va" = "$vb" ] || echo "; virtual size: qvet $va, qemu $vb")"
  fi
  if [ "$w_snaps" != 1 ]; then
    return
  fi
  snaps A.qcow2 >"$OUT/snaps.a"
  snaps B.qcow2 >"$OUT/snaps.b"
  if cmp -s "$OUT/snaps.a" "$OUT/snaps.b"; then
    pass "$p:list"
  else
    diff -u --label "qemu-img snapshot -l (qemu's image)" --label "(qvet's image)" \
      "$OUT/snaps.b" "$OUT/snaps.a" | tail -n +3 >"$OUT/diff"
    fail "$p:list" "the snapshot lists differ (ID NAME)" "$OUT/diff"
  fi
  # The disks are small: plain cmp of the raw contents is cheap.
  while read -r id sname; do
    rm -f "$OUT/sa.raw" "$OUT/sb.raw"
    if ! qemu-img convert -t unsafe -O raw -l "snapshot.id=$id" B.qcow2 "$OUT/sb.raw" 2>"$OUT/qerr"; then
      fail "$p@$id.$sname" "harness: qemu-img convert -l snapshot.id=$id on qemu's image: $(head -n 1 "$OUT/qerr")"
      continue
    fi
    if ! qemu-img convert -t unsafe -O raw -l "snapshot.id=$id" A.qcow2 "$OUT/sa.raw" 2>"$OUT/qerr"; then
      fail "$p@$id.$sname" "qemu-img convert -l snapshot.id=$id on qvet's image: $(head -n 1 "$OUT/qerr")"
      continue
    fi
    if ! cmp "$OUT/sb.raw" "$OUT/sa.raw" >"$OUT/cmp" 2>&1; then
      fail "$p@$id.$sname" "the snapshot reads differently from qvet's image (qemu-img convert -l): $(sed 's|^.*/sb.raw .*/sa.raw ||; s|^cmp: ||; s|/[^ ]*/s\([ab]\).raw|\1|' "$OUT/cmp" | head -n 1)"
      continue
    fi
    qvet cat -s "$id" A.qcow2 2>"$OUT/err" | cmp - "$OUT/sb.raw" >"$OUT/cmp" 2>&1
    rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then
      fail "$p@$id.$sname" "qvet cat -s $id $(exited "$rc")$(errline)"
    elif [ -s "$OUT/cmp" ]; then
      fail "$p@$id.$sname" "qvet cat -s $id reads other data than qemu-img convert -l: $(sed 's|^cmp: ||; s|/[^ ]*/sb.raw|qemu-img|' "$OUT/cmp" | head -n 1)"
    else
      pass "$p@$id.$sname"
    fi
  done <"$OUT/snaps.b"
  rm -f "$OUT/sa.raw" "$OUT/sb.raw"
}

# w_play PREFIX SCRIPT: play SCRIPT on the twins A.qcow2 and B.qcow2 (cwd)
w_play() {
  local p=$1 script=$2 line verb rest step=0 nchecks
  w_io=()
  w_nbatch=0
  w_snaps=0
  if grep -q '^q\?snap ' "$script"; then
    w_snaps=1
  fi
  : >"$OUT/ops"
  nchecks=$(grep -c '^check$' "$script")
  if [ "$(tail -n 1 "$script")" != check ]; then
    nchecks=$((nchecks + 1))
    echo check >>"$script"
  fi
  while IFS= read -r -u 4 line; do
    verb=${line%% *}
    rest=${line#* }
    if [ "$verb" = io ]; then
      w_io+=("$rest")
      continue
    fi
    w_batch
    case $verb in
      resize) w_pair "resize $rest" resize --shrink A.qcow2 "$rest" -- qemu-img resize -q --shrink B.qcow2 "$rest" ;;
      snap) w_pair "snapshot $rest" snapshot "${rest%% *}" "${rest#* }" A.qcow2 -- \
        qemu-img snapshot "${rest%% *}" "${rest#* }" B.qcow2 ;;
      qsnap) w_both_qemu "qemu-img snapshot $rest" qemu-img snapshot "${rest%% *}" "${rest#* }" IMG ;;
      check)
        step=$((step + 1))
        if [ "$nchecks" -gt 1 ]; then
          w_verify "$p#$step"
        else
          w_verify "$p"
        fi
        ;;
      *) echo "harness: unknown script line: $line" >>"$OUT/ops" ;;
    esac
  done 4<"$script"
}

# w_agree NAME IMG: qvet check and qemu-img check must agree on IMG
w_agree() {
  local name=$1 img=$2 qrc vrc qf vf i why=""
  local qa=() va=()
  qemu-img check --output=json "$img" >"$OUT/q.json" 2>"$OUT/q.err"
  qrc=$?
  qvet check --output=json "$img" >"$OUT/v.json" 2>"$OUT/err"
  vrc=$?
  if [ "$vrc" != "$qrc" ]; then
    why="exit status: qemu-img $qrc, qvet $vrc$(errline)"
  fi
  if [ -s "$OUT/q.json" ]; then
    qf=$(checkfields "$OUT/q.json")
    vf=$(checkfields "$OUT/v.json")
    if [ "$qf" != "$vf" ]; then
      read -ra qa <<<"$qf"
      read -ra va <<<"$vf"
      for i in "${!qa[@]}"; do
        if [ "${qa[$i]}" != "${va[$i]:-}" ]; then
          why="${why:+$why; }${qa[$i]%%=*}: qemu-img ${qa[$i]#*=}, qvet ${va[$i]#*=}"
        fi
      done
    fi
  fi
  if [ -z "$why" ]; then
    pass "$name"
  else
    fail "$name" "$why"
  fi
}

# make_base PATH FORMAT SIZE: a backing file with position-dependent content
make_base() {
  local p=$1 fmt=$2 s=$3 n
  if [ "$fmt" = raw ]; then
    cat "$WORK/$T1" "$WORK/$T2" | head -c "$s" >"$p"
    return
  fi
  qemu-img create -q -f qcow2 "$p" "$s" || return 1
  n=$((s < 2 * M ? s : 2 * M))
  qemu-io -f qcow2 -c "write -s $WORK/$T1 0 $n" -c "write -P 0xb1 $n $((s - n))" \
    -c "write -s $WORK/$T2 $((s - 3000)) 3000" -c "write -z $((64 * K)) 64k" "$p" >/dev/null
}

# u_twins LABEL VARIANT SIZE OPTIONS BACKING GENERATOR [ARGS...]
#   VARIANT  qi: both twins from qemu-img create; qv: both from qvet create
#   OPTIONS  create -o options ("-" for none)
#   BACKING  none, qcow2:SIZE or raw:SIZE (made with QEMU's tools)
u_twins() {
  local label=$1 var=$2 size=$3 opts=$4 back=$5 gen=$6
  shift 6
  local p="write:$label/$var" dir=$WORK/w/$label.$var cs rc
  local co=()
  if ! { mkdir -p "$dir" && cd "$dir"; }; then
    fail "$p:setup" "harness: cannot make $dir"
    return
  fi
  if [ "$opts" != - ]; then
    co+=(-o "$opts")
  fi
  case $back in
    none) ;;
    *)
      if ! make_base "base.${back%%:*}" "${back%%:*}" "${back#*:}" 2>"$OUT/err"; then
        fail "$p:setup" "harness: cannot make the backing file$(errline)"
        return
      fi
      co+=(-b "base.${back%%:*}" -F "${back%%:*}")
      ;;
  esac
  if [ "$var" = qv ]; then
    qvet create "${co[@]}" A.qcow2 "$size" >/dev/null 2>"$OUT/err"
    rc=$?
    if [ "$rc" != 0 ]; then
      fail "create:$label" "qvet create ${co[*]} A.qcow2 $size $(exited "$rc")$(errline)"
      return
    fi
    cp A.qcow2 B.qcow2
    qemu-img create -q -f qcow2 "${co[@]}" ref.qcow2 "$size" >/dev/null
    if cmp -s A.qcow2 ref.qcow2; then
      pass "create:$label"
    else
      fail "create:$label" "qvet create ${co[*]} IMG $size differs from qemu-img create: $(cmp A.qcow2 ref.qcow2 2>&1 | sed 's/^A.qcow2 ref.qcow2 //' | head -n 1) (sizes $(stat -c %s A.qcow2) and $(stat -c %s ref.qcow2))"
    fi
    rm -f ref.qcow2
  else
    if ! qemu-img create -q -f qcow2 "${co[@]}" A.qcow2 "$size" 2>"$OUT/err"; then
      fail "$p:setup" "harness: qemu-img create failed$(errline)"
      return
    fi
    cp A.qcow2 B.qcow2
  fi
  cs=$(cs_of "$opts")
  "$gen" "$cs" "$(u64 A.qcow2 24)" "$opts" "$@" >script
  w_play "$p" script
  w_agree "agree:$label/$var:qvet-img" A.qcow2
  w_agree "agree:$label/$var:qemu-img" B.qcow2
}

# u_snap LABEL SIZE OPTIONS BACKING GENERATOR: twins from qemu-img create,
# checked after every step
u_snap() {
  local label=$1 size=$2 opts=$3 back=$4 gen=$5
  local p="snap:$label" dir=$WORK/w/snap-$label
  local co=()
  if ! { mkdir -p "$dir" && cd "$dir"; }; then
    fail "$p:setup" "harness: cannot make $dir"
    return
  fi
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

# damage FILE KIND: break one thing in a 16-bit-refcount image
damage() {
  local f=$1 kind=$2 cb rt rb l1 l2 i e idx n
  cb=$(u32 "$f" 20)
  rt=$(u64 "$f" 48)
  rb=$(($(u64 "$f" "$rt") & 0x00fffffffffffe00))
  case $kind in
    leak) # the header cluster counted twice
      put "$f" "$rb" 2 2 ;;
    lower) # the first shared cluster counted once
      n=$((1 << (cb - 1)))
      idx=$(od -An -tu2 --endian=big -v -w2 -N $((2 * n)) -j "$rb" "$f" | awk '$1 == 2 { print NR - 1; exit }')
      [ -n "$idx" ] || return 1
      put "$f" $((rb + 2 * idx)) 2 1 ;;
    zero | copied) # a data cluster of the active L2 table with COPIED set
      l1=$(u64 "$f" 40)
      l2=$(($(u64 "$f" "$l1") & 0x00fffffffffffe00))
      [ "$l2" != 0 ] || return 1
      for ((i = 0; i < (1 << (cb - 3)); i++)); do
        e=$(u64 "$f" $((l2 + 8 * i)))
        if [ $((e >> 63 & 1)) = 1 ] && [ $((e >> 62 & 1)) = 0 ] && [ $((e & 0x00fffffffffffe00)) != 0 ]; then
          break
        fi
        e=
      done
      [ -n "$e" ] || return 1
      if [ "$kind" = copied ]; then
        put "$f" $((l2 + 8 * i)) 1 $(((e >> 56) & 0x7f))
      else
        idx=$(((e & 0x00fffffffffffe00) >> cb))
        rb=$(($(u64 "$f" $((rt + 8 * (idx >> (cb - 1))))) & 0x00fffffffffffe00))
        put "$f" $((rb + 2 * (idx & ((1 << (cb - 1)) - 1)))) 2 0
      fi
      ;;
    reftable) # the first refcount block lost
      put "$f" "$rt" 8 0 ;;
  esac
}

# u_damage KIND CLUSTER-SIZE: a written image with a snapshot, damaged in one
# way; qvet check must agree with qemu-img check, and repair it
u_damage() {
  local label=$1 kind=$2 cs=$3 dir=$WORK/w/damage-$1 vrc qrc rc why=""
  mkdir -p "$dir" && cd "$dir" || return
  if ! {
    qemu-img create -q -f qcow2 -o cluster_size="$cs" img.qcow2 4M &&
      qemu-io -f qcow2 -c "write -P 0xa1 0 300k" -c "write -P 0xa2 1M 100k" \
        -c "write -c -P 0xa3 2M 64k" img.qcow2 >/dev/null &&
      qemu-img snapshot -c s1 img.qcow2 &&
      qemu-io -f qcow2 -c "write -P 0xa4 0 8k" -c "write -P 0xa5 3M 4k" img.qcow2 >/dev/null &&
      cp img.qcow2 dmg.qcow2 && damage dmg.qcow2 "$kind"
  }; then
    fail "damage:$label" "harness: cannot build the damaged image"
    return
  fi
  w_agree "agree:damage/$label" dmg.qcow2
  cp dmg.qcow2 fixv.qcow2
  cp dmg.qcow2 fixq.qcow2
  qvet check -r all fixv.qcow2 >"$OUT/vrep" 2>"$OUT/err"
  vrc=$?
  qemu-img check -r all fixq.qcow2 >/dev/null 2>&1
  qrc=$?
  if [ "$vrc" != "$qrc" ]; then
    why="qvet check -r all $(exited "$vrc"), qemu-img check -r all exited $qrc$(errline)"
  fi
  qemu-img check fixv.qcow2 >"$OUT/qchk" 2>&1
  rc=$?
  if [ "$rc" != 0 ]; then
    why="${why:+$why; }after qvet check -r all, qemu-img check exited $rc: $(grep -v '^$' "$OUT/qchk" | head -n 1)"
  fi
  if ! qemu-img compare -q img.qcow2 fixv.qcow2 2>/dev/null; then
    why="${why:+$why; }the repair changed the guest data"
  fi
  if [ -z "$why" ]; then
    pass "repair:damage/$label"
  else
    fail "repair:damage/$label" "$why"
  fi
}

# The write units: one line each in the queue (see main).
# wu LABEL FUNCTION ARGS...; wu1 for the long ones, started first
wu() {
  wu_add w "$@"
}
wu1() {
  wu_add W "$@"
}
wu_add() {
  local kind=$1 label=$2 fn=$3
  shift 3
  if [ -n "$ONLY" ] && ! [[ $label =~ $ONLY ]]; then
    return
  fi
  if [ "$WRITE" = none ] || { [ -n "$WRITE" ] && ! [[ $label =~ $WRITE ]]; }; then
    return
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$count" "$kind" "$label" "$fn" "$*" >>"$QUEUE"
  count=$((count + 1))
}

# twins LABEL SIZE OPTIONS BACKING GENERATOR [ARGS...]: both variants
twins() {
  local label=$1
  shift
  wu "write:$label/qi" u_twins "$label" qi "$@"
  wu "write:$label/qv" u_twins "$label" qv "$@"
}

write_units() {
  local cs rb k
  wu1 "write:grow/c512-8M/qi" u_twins grow/c512-8M qi $((16 * M)) cluster_size=512 none gen_grow 8
  for cs in 512 1k 4k 16k 64k 2M; do
    k=$(numfmt --from=iec "${cs^^}")
    case $cs in
      16k) twins "cs/c$cs" "$(sz "$k" $((36 * M)))" "cluster_size=$cs" none gen_general ;;
      64k) twins "cs/c$cs" "$(sz "$k" $((520 * M)))" "cluster_size=$cs" none gen_general ;;
      *) twins "cs/c$cs" "$(sz "$k")" "cluster_size=$cs" none gen_general ;;
    esac
  done
  for cs in 512 4k 64k 2M; do
    k=$(numfmt --from=iec "${cs^^}")
    twins "v2/c$cs" "$(sz "$k")" "compat=0.10,cluster_size=$cs" none gen_general
  done
  twins "v3/default" "$(sz 65536)" "compat=1.1" none gen_general
  for rb in 1 2 4 8 32 64; do
    twins "rb/r$rb-c512" "$(sz 512 $((M / 2)))" "refcount_bits=$rb,cluster_size=512" none gen_general
    twins "rb/r$rb-c64k" "$(sz 65536)" "refcount_bits=$rb" none gen_general
  done
  wu "write:grow/c512-rb64/qi" u_twins grow/c512-rb64 qi $((4 * M)) cluster_size=512,refcount_bits=64 none gen_grow 2
  twins "lazy/c64k" "$(sz 65536)" "lazy_refcounts=on" none gen_general
  twins "lazy/c512" "$(sz 512 $((M / 2)))" "lazy_refcounts=on,cluster_size=512" none gen_general
  twins "xl2/c16k" "$(sz 16384 $((20 * M)))" "extended_l2=on,cluster_size=16k" none gen_general
  twins "xl2/c64k" "$(sz 65536 $((260 * M)))" "extended_l2=on" none gen_general
  twins "xl2/c2M" "$(sz $((2 * M)))" "extended_l2=on,cluster_size=2M" none gen_general
  twins "zstd/c64k" "$(sz 65536)" "compression_type=zstd" none gen_general
  twins "zstd/c4k" "$(sz 4096)" "compression_type=zstd,cluster_size=4k" none gen_general
  twins "zstd/xl2-c16k" "$(sz 16384)" "compression_type=zstd,extended_l2=on,cluster_size=16k" none gen_general
  twins "prealloc/c64k" "$(sz 65536)" "preallocation=metadata" none gen_general
  twins "prealloc/c512" "$(sz 512)" "preallocation=metadata,cluster_size=512" none gen_general
  twins "prealloc/c2M" "$(sz $((2 * M)))" "preallocation=metadata,cluster_size=2M" none gen_general
  twins "prealloc/v2-c4k" "$(sz 4096)" "preallocation=metadata,compat=0.10,cluster_size=4k" none gen_general
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

  for k in leak lower zero copied reftable; do
    for cs in 65536 512; do
      wu "damage:$k-c$cs" u_damage "$k-c$cs" "$k" "$cs"
    done
  done
}

# ---------------------------------------------------------------------------
# main: build the groups in parallel, then check the images in parallel
# (JOBS at a time); results are printed in manifest order.

# flush_results: print every finished result file that is next in order
flush_results() {
  local f
  while [ "$next" -lt "$count" ] && [ -e "$OUT/r$next/done" ]; do
    f=$OUT/r$next/result
    cat "$f"
    passed=$((passed + $(grep -c '^PASS ' "$f")))
    failed=$((failed + $(grep -c '^FAIL ' "$f")))
    next=$((next + 1))
  done
}

cd "$WORK" || exit 1
start=$(date +%s)
make_data
for g in "${GROUPS_RUN[@]}"; do
  (
    set -e
    REGFILE=$OUT/manifest-$g
    : >"$REGFILE"
    "g_$g"
  ) >"$OUT/setup-$g.log" 2>&1 &
  echo $! >"$OUT/setup-$g.pid"
done
for g in "${GROUPS_RUN[@]}"; do
  wait "$(cat "$OUT/setup-$g.pid")"
  rc=$?
  if [ "$rc" != 0 ]; then
    grep -v '^$' "$OUT/setup-$g.log" | tail -n 5 >"$OUT/setup-tail"
    fail "setup:$g" "building the images failed (exit $rc)" "$OUT/setup-tail"
  fi
  if [ -f "$OUT/manifest-$g" ]; then
    cat "$OUT/manifest-$g" >>"$MANIFEST"
  fi
done
echo "interop: $(wc -l <"$MANIFEST") images built in $(($(date +%s) - start))s; checking $QVET with $JOBS jobs" >&2

# The queue: the read gate's images (r), then the write units (w; W: long
# ones, started first). Results are printed in queue order.
QUEUE=$OUT/queue
: >"$QUEUE"
count=0
while IFS=$'\t' read -r -u 3 label cwd path snaps; do
  if [ -n "$ONLY" ] && ! [[ $label =~ $ONLY ]]; then
    continue
  fi
  printf '%s\tr\t%s\t%s\t%s\t%s\n' "$count" "$label" "$cwd" "$path" "$snaps" >>"$QUEUE"
  count=$((count + 1))
done 3<"$MANIFEST"
write_units
{
  awk -F '\t' '$2 == "W"' "$QUEUE"
  awk -F '\t' '$2 != "W"' "$QUEUE"
} >"$OUT/start"

next=0
running=0
while IFS=$'\t' read -r -u 3 idx kind label a b c; do
  mkdir -p "$OUT/r$idx"
  (
    OUT=$OUT/r$idx
    t0=$(date +%s%N)
    if [ "$kind" = r ]; then
      check_image "$label" "$a" "$b" "$c" >"$OUT/result" 2>&1
    else
      read -ra wargs <<<"$b"
      "$a" "${wargs[@]}" >"$OUT/result" 2>"$OUT/stderr"
    fi
    echo "$((($(date +%s%N) - t0) / 1000000)) $label" >"$OUT/time"
    : >"$OUT/done"
  ) &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
  flush_results
done 3<"$OUT/start"
wait
flush_results
if [ "$TIMES" = 1 ]; then
  cat "$WORK"/.out/r*/time 2>/dev/null | sort -rn | head -n 20 | sed 's/^/interop: ms /' >&2
fi

if [ -z "$ONLY" ] && [[ " ${GROUPS_RUN[*]} " == *" misc "* ]]; then
  check_error "error:missing-file" "qvet: nonexistent.qcow2: " cat nonexistent.qcow2
  check_error "error:missing-snapshot" "qvet: " cat -s no-such-snapshot snap/multi.qcow2
fi

echo "interop: done in $(($(date +%s) - start))s" >&2
finish
