#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# interop.sh - the read gate.
#
# Builds a matrix of qcow2 images with QEMU's own tools (qemu-img, qemu-io) and
# checks that qvet reads every one of them exactly as QEMU does:
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
# Every comparison prints "PASS name" or "FAIL name: reason"; the last line is
# "N passed, M failed". Exit status 1 if anything failed or nothing passed.
#
# Environment:
#   QVET   the binary under test (default: build/qvet under the repo root)
#   KEEP=1 keep the work directory (its path is printed on stderr)
#   ONLY   optional extended regex: only check images whose label matches
#   JOBS   images checked in parallel (default: the number of CPUs)
#   TIMEOUT seconds one qvet run may take (default 300)
#
# Snapshot sizes follow qemu-img convert -l: QEMU 7.2 reads a snapshot with the
# image's *current* virtual size, so a snapshot taken before the image grew reads
# as its old contents followed by zeros up to the current size. (Applying the
# snapshot with "qemu-img snapshot -a" would instead shrink the image back to
# the snapshot's recorded disk size; the gate does not use that.)
#
# The script only reads build/; it never builds anything.

# The image groups and the EXIT trap are reached indirectly ("g_$group"):
# shellcheck disable=SC2317
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QVET=${QVET:-$ROOT/build/qvet}
KEEP=${KEEP:-0}
ONLY=${ONLY:-}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
TIMEOUT=${TIMEOUT:-300}

passed=0
failed=0

pass() {
  echo "PASS $1"
  passed=$((passed + 1))
}

# fail NAME REASON [DETAIL-FILE]: detail lines are printed indented below.
fail() {
  echo "FAIL $1: $2"
  if [ $# -ge 3 ] && [ -s "$3" ]; then
    sed 's/^/    /' "$3"
  fi
  failed=$((failed + 1))
}

finish() {
  echo "$passed passed, $failed failed"
  if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
  fi
  exit 0
}

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
for tool in qemu-img qemu-io cmp diff od dd timeout numfmt; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    fail "tool-$tool" "$tool not found (scripts/install-deps.sh installs it)"
    finish
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qvet-interop.XXXXXX") || {
  fail "workdir" "mktemp -d failed"
  finish
}
cleanup() {
  local pids
  pids=$(jobs -p)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # a list of our own background jobs
    kill $pids 2>/dev/null
    wait
  fi
  if [ "$KEEP" = 1 ]; then
    echo "interop: work directory kept: $WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
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

# put FILE OFFSET SRC LEN: copy LEN bytes of SRC into FILE at OFFSET.
put() {
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
  put "$MIX" 0 "$T1" $((M + 1234))
  put "$MIX" $((3 * M / 2)) "$R1" $((512 * K))
  put "$MIX" $((3 * M)) "$T2" $((600 * K))
  put "$MIX" $((size - 777)) "$T1" 777
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
for g in "${GROUPS_ALL[@]}"; do
  (
    set -e
    REGFILE=$OUT/manifest-$g
    : >"$REGFILE"
    "g_$g"
  ) >"$OUT/setup-$g.log" 2>&1 &
  echo $! >"$OUT/setup-$g.pid"
done
for g in "${GROUPS_ALL[@]}"; do
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

count=0
next=0
running=0
while IFS=$'\t' read -r -u 3 label cwd path snaps; do
  if [ -n "$ONLY" ] && ! [[ $label =~ $ONLY ]]; then
    continue
  fi
  mkdir -p "$OUT/r$count"
  (
    OUT=$OUT/r$count
    check_image "$label" "$cwd" "$path" "$snaps" >"$OUT/result" 2>&1
    : >"$OUT/done"
  ) &
  count=$((count + 1))
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
  flush_results
done 3<"$MANIFEST"
wait
flush_results

if [ -z "$ONLY" ]; then
  check_error "error:missing-file" "qvet: nonexistent.qcow2: " cat nonexistent.qcow2
  check_error "error:missing-snapshot" "qvet: " cat -s no-such-snapshot snap/multi.qcow2
fi

echo "interop: done in $(($(date +%s) - start))s" >&2
finish
