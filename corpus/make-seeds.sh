#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds the seed corpora of the fuzz targets (see harness/fuzz/):
#
#   corpus/image/      whole images made by qemu-img/qemu-io 7.2 over the format's
#                      variations (v2/v3, cluster sizes, refcount widths, extended L2,
#                      zlib/zstd compression, snapshots, backing names, dirty/lazy,
#                      bitmaps, preallocation, corrupt bit, resize), some with a 32-byte
#                      trailer that drives fuzz_image's write step
#   corpus/header/     the metadata-only images (no guest data), the header target's seeds
#   corpus/snapshot/   fuzz_snapshot inputs: each base layout's own table (written by the
#                      target itself), plus tables qemu-img wrote, over those layouts
#
# Usage: corpus/make-seeds.sh [REPLAY_BUILD_DIR]   (default build/, made by `make`)
# Existing seeds are replaced; files other fuzzing runs merged in are kept unless
# CLEAN=1. Small virtual sizes and 512 B-16 KiB clusters keep the whole corpus small.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-$root/build}
snapshot_target=$build/fuzz/fuzz_snapshot

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ulimit -c 0

out_image=$here/image
out_header=$here/header
out_snapshot=$here/snapshot
if [[ ${CLEAN:-0} == 1 ]]; then
    rm -rf "$out_image" "$out_header" "$out_snapshot"
fi
mkdir -p "$out_image" "$out_header" "$out_snapshot"

# create NAME OPTIONS SIZE [extra qemu-img create arguments]
create() {
    local name=$1 opts=$2 size=$3
    shift 3
    qemu-img create -q -f qcow2 -o "$opts" "$@" "$work/$name.qcow2" "$size"
}

# io NAME CMD...   (qemu-io commands on the image; output discarded)
io() {
    local name=$1
    shift
    local args=()
    for c in "$@"; do args+=(-c "$c"); done
    qemu-io -f qcow2 "${args[@]}" "$work/$name.qcow2" >/dev/null
}

# io_abort NAME CMD...   (the same, then abort: leaves the dirty bit of lazy refcounts)
io_abort() {
    local name=$1
    shift
    local args=()
    for c in "$@"; do args+=(-c "$c"); done
    qemu-io -f qcow2 "${args[@]}" -c abort "$work/$name.qcow2" >/dev/null 2>&1 || true
}

# poke NAME OFFSET HEXBYTES   (overwrites bytes in place: "0002" -> \x00\x02)
poke() {
    local name=$1 off=$2 hex=$3 esc="" i
    for ((i = 0; i < ${#hex}; i += 2)); do esc+="\\x${hex:i:2}"; done
    printf "$esc" | dd of="$work/$name.qcow2" bs=1 seek="$off" conv=notrunc status=none
}

# be FILE OFFSET BYTES   (a big-endian unsigned field)
be() { od -An -tu1 -j"$2" -N"$3" "$1" | awk '{for (i = 1; i <= NF; i++) v = v * 256 + $i} END {print v + 0}'; }

# fix_dates NAME   (snapshot dates set to fixed values, so that seeds are reproducible)
fix_dates() {
    local f=$work/$1.qcow2 nb off i
    nb=$(be "$f" 60 4)
    off=$(be "$f" 64 8)
    for ((i = 0; i < nb; i++)); do
        poke "$1" $((off + 16)) "$(printf '%08x' $((0x60000000 + i)))00000000"
        local id_len name_len extra
        id_len=$(be "$f" $((off + 12)) 2)
        name_len=$(be "$f" $((off + 14)) 2)
        extra=$(be "$f" $((off + 36)) 4)
        off=$(((off + 40 + extra + id_len + name_len + 7) / 8 * 8))
    done
}

# ---- metadata-only images: the header target's seeds (and the image target's) ----
meta=()
meta_image() { meta+=("$1"); }

create v2-512 compat=0.10,cluster_size=512 64K;                         meta_image v2-512
create v2-4k compat=0.10,cluster_size=4k 256K;                          meta_image v2-4k
create v3-512 cluster_size=512 64K;                                     meta_image v3-512
create v3-1k-rc1 cluster_size=1k,refcount_bits=1 64K;                   meta_image v3-1k-rc1
create v3-2k-rc2 cluster_size=2k,refcount_bits=2 64K;                   meta_image v3-2k-rc2
create v3-512-rc4 cluster_size=512,refcount_bits=4 128K;                meta_image v3-512-rc4
create v3-1k-rc8 cluster_size=1k,refcount_bits=8 128K;                  meta_image v3-1k-rc8
create v3-512-rc32 cluster_size=512,refcount_bits=32 64K;               meta_image v3-512-rc32
create v3-512-rc64 cluster_size=512,refcount_bits=64 64K;               meta_image v3-512-rc64
create v3-8k cluster_size=8k 256K;                                      meta_image v3-8k
create extl2-16k cluster_size=16k,extended_l2=on 64K;                   meta_image extl2-16k
create zstd-1k cluster_size=1k,compression_type=zstd 64K;               meta_image zstd-1k
create lazy-2k cluster_size=2k,lazy_refcounts=on 64K;                   meta_image lazy-2k
create big-4k cluster_size=4k 4G;                                       meta_image big-4k
create odd-size-512 cluster_size=512 100001;                            meta_image odd-size-512
create prealloc-1k cluster_size=1k,preallocation=metadata 8K;           meta_image prealloc-1k
create base-512 cluster_size=512 64K
create backing-qcow2 cluster_size=512,backing_file=base-512.qcow2,backing_fmt=qcow2 64K
meta_image backing-qcow2
qemu-img create -q -f raw "$work/base.raw" 64K
create backing-raw cluster_size=1k,backing_file=base.raw,backing_fmt=raw 64K
meta_image backing-raw
create backing-v2 compat=0.10,cluster_size=512 64K -b base-512.qcow2 -F qcow2 -u
meta_image backing-v2
create bitmaps-1k cluster_size=1k 64K
qemu-img bitmap --add "$work/bitmaps-1k.qcow2" b0
meta_image bitmaps-1k
create snap-meta-512 cluster_size=512 32K
qemu-img snapshot -c s1 "$work/snap-meta-512.qcow2"
qemu-img snapshot -c s2 "$work/snap-meta-512.qcow2"
fix_dates snap-meta-512
meta_image snap-meta-512
create corrupt-512 cluster_size=512 64K
poke corrupt-512 79 02                                                  # incompatible bit 1
meta_image corrupt-512
create dirty-2k cluster_size=2k,lazy_refcounts=on 64K
poke dirty-2k 79 01                                                     # incompatible bit 0
meta_image dirty-2k

# ---- edges: structures that end exactly at the end of the file or of cluster 0 ----
# A bounds test written as `end - pos` before `pos <= end` is known fails only on
# inputs like these (one mutation, e.g. of a count, away from the bug).

# ext_end NAME   (offset of the end-of-extensions marker in cluster 0)
ext_end() {
    local f=$work/$1.qcow2 off len
    off=$(be "$f" 100 4)
    while [[ $(be "$f" "$off" 4) != 0 ]]; do
        len=$(be "$f" $((off + 4)) 4)
        off=$((off + 8 + (len + 7) / 8 * 8))
    done
    echo "$off"
}

# qemu-img writes the snapshot table last and unpadded: the file ends inside the padding
# of the last entry.
create edge-snap-eof-512 cluster_size=512 32K
for n in 1 two three-with-a-longer-name; do qemu-img snapshot -c "$n" "$work/edge-snap-eof-512.qcow2"; done
fix_dates edge-snap-eof-512
meta_image edge-snap-eof-512
create edge-snap-eof-v2-512 compat=0.10,cluster_size=512 32K
for n in a bb; do qemu-img snapshot -c "$n" "$work/edge-snap-eof-v2-512.qcow2"; done
fix_dates edge-snap-eof-v2-512
meta_image edge-snap-eof-v2-512
# Long names: a table of 527 bytes, so that counts from 4 up to 13 still pass the check
# that the file could hold them.
long=$(printf 'x%.0s' $(seq 1 100))
create edge-snap-long-eof-512 cluster_size=512 32K
for n in 1-$long 2-$long 3-${long%x}; do
    qemu-img snapshot -c "snapshot-$n" "$work/edge-snap-long-eof-512.qcow2"
done
fix_dates edge-snap-long-eof-512
meta_image edge-snap-long-eof-512
# One entry of 539 bytes (a 474-byte name): any count from 2 to 13 passes that check.
create edge-snap-one-eof-512 cluster_size=512 32K
qemu-img snapshot -c "one-$long$long$long$long${long:0:70}" "$work/edge-snap-one-eof-512.qcow2"
fix_dates edge-snap-one-eof-512
meta_image edge-snap-one-eof-512
# The same tables in files a third as long (a mutation then hits the header's snapshot
# count three times as often): the header, the refcount table (the active L1 table
# shares it; open does not read L2 tables), the snapshot table, still at the end.
small() {
    local f=$work/$1.qcow2 out=$work/$1-small.qcow2
    {
        head -c 512 "$f"
        tail -c +$(($(be "$f" 48 8) + 1)) "$f" | head -c 512
        tail -c +$(($(be "$f" 64 8) + 1)) "$f"
    } >"$out"
    poke "$1-small" 40 0000000000000200
    poke "$1-small" 48 0000000000000200
    poke "$1-small" 64 0000000000000400
    meta_image "$1-small"
}
for name in edge-snap-eof-512 edge-snap-eof-v2-512 edge-snap-long-eof-512 edge-snap-one-eof-512; do
    small "$name"
done
# Growing the disk moves the L1 table to the last cluster of the file.
create edge-l1-eof-512 cluster_size=512 32K
qemu-img resize -q "$work/edge-l1-eof-512.qcow2" 4M
meta_image edge-l1-eof-512
# Two bitmaps: the directory is the last thing in the file.
create edge-bitmaps-eof-512 cluster_size=512 32K
qemu-img bitmap --add "$work/edge-bitmaps-eof-512.qcow2" b0
qemu-img bitmap --add -g 4096 "$work/edge-bitmaps-eof-512.qcow2" second
meta_image edge-bitmaps-eof-512
# The refcount table copied to a new last cluster, the header pointed at the copy.
create edge-reftable-eof-512 cluster_size=512 32K
f=$work/edge-reftable-eof-512.qcow2
size=$((($(stat -c %s "$f") + 511) / 512 * 512))
dd if="$f" of="$f" bs=512 skip=1 seek=$((size / 512)) count=1 conv=notrunc status=none
poke edge-reftable-eof-512 48 "$(printf '%016x' "$size")"
meta_image edge-reftable-eof-512
# An unknown extension whose data runs exactly to the end of cluster 0 (no end marker).
create edge-ext-fill-512 cluster_size=512 32K
off=$(ext_end edge-ext-fill-512)
poke edge-ext-fill-512 "$off" "7a7a7a7a$(printf '%08x' $((512 - off - 8)))"
meta_image edge-ext-fill-512
# A backing file name that ends exactly at the end of cluster 0.
create edge-backing-end-512 cluster_size=512,backing_file=base-512.qcow2,backing_fmt=qcow2 32K
name=$(printf base-512.qcow2 | od -An -tx1 | tr -d ' \n')
poke edge-backing-end-512 8 "$(printf '%016x' $((512 - 14)))"
poke edge-backing-end-512 $((512 - 14)) "$name"
meta_image edge-backing-end-512

# ---- images with guest data: the image target's seeds ----
data=()
data_image() { data+=("$1"); }

create d-v2-512 compat=0.10,cluster_size=512 64K
io d-v2-512 "write -P 0xaa 0 3k" "write -P 0x55 10k 1k" "write -z 12k 1k" "discard 1k 512"
data_image d-v2-512
create d-v3-512 cluster_size=512 64K
io d-v3-512 "write -P 0x11 0 4k" "write -z 1k 1k" "write -z -u 2k 512" "discard 3k 512" \
    "write -P 0x22 40k 700"
data_image d-v3-512
create d-rc1-1k cluster_size=1k,refcount_bits=1 32K
io d-rc1-1k "write -P 0x33 0 5k" "discard 2k 1k"
data_image d-rc1-1k
create d-rc64-2k cluster_size=2k,refcount_bits=64 32K
io d-rc64-2k "write -P 0x44 2k 4k" "write -z 2k 2k"
data_image d-rc64-2k
create d-extl2-16k cluster_size=16k,extended_l2=on 64K
io d-extl2-16k "write -P 0x66 0 512" "write -P 0x67 2k 1k" "write -z 4k 4k" \
    "write -z 16k 16k" "write -z -u 32k 2k"
data_image d-extl2-16k
create d-zlib-4k cluster_size=4k 32K
io d-zlib-4k "write -c -P 0x77 0 4k" "write -c -P 0x78 8k 4k"
data_image d-zlib-4k
create d-zstd-2k cluster_size=2k,compression_type=zstd 32K
io d-zstd-2k "write -c -P 0x88 0 2k" "write -c -P 0x89 4k 2k" "write -P 0x8a 8k 1k"
data_image d-zstd-2k
# A whole image compressed by convert: many compressed clusters packed together.
seq 1 5000 >"$work/text.raw"
truncate -s 32K "$work/text.raw"
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=1k "$work/text.raw" "$work/d-convert-c-1k.qcow2"
data_image d-convert-c-1k
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=2k,compression_type=zstd \
    "$work/text.raw" "$work/d-convert-zstd-2k.qcow2"
data_image d-convert-zstd-2k
create d-snap-512 cluster_size=512 16K
io d-snap-512 "write -P 0x01 0 2k"
qemu-img snapshot -c one "$work/d-snap-512.qcow2"
io d-snap-512 "write -P 0x02 1k 2k" "discard 0 512"
qemu-img snapshot -c two "$work/d-snap-512.qcow2"
io d-snap-512 "write -z 0 4k"
fix_dates d-snap-512
data_image d-snap-512
create d-snap-v2-1k compat=0.10,cluster_size=1k 16K
io d-snap-v2-1k "write -P 0x03 0 3k"
qemu-img snapshot -c a "$work/d-snap-v2-1k.qcow2"
io d-snap-v2-1k "write -P 0x04 2k 2k"
fix_dates d-snap-v2-1k
data_image d-snap-v2-1k
create d-snap-resized-512 cluster_size=512 8K
io d-snap-resized-512 "write -P 0x05 0 1k"
qemu-img snapshot -c small "$work/d-snap-resized-512.qcow2"
qemu-img resize -q "$work/d-snap-resized-512.qcow2" 24K
io d-snap-resized-512 "write -P 0x06 20k 1k"
fix_dates d-snap-resized-512
data_image d-snap-resized-512
create d-backing-512 cluster_size=512,backing_file=base-512.qcow2,backing_fmt=qcow2 64K
io d-backing-512 "write -P 0x07 512 1k" "write -z 4k 1k" "discard 8k 1k"
data_image d-backing-512
create d-backing-v2-512 compat=0.10,cluster_size=512,backing_file=base.raw,backing_fmt=raw 64K
io d-backing-v2-512 "write -P 0x08 0 700" "discard 0 512"
data_image d-backing-v2-512
create d-dirty-1k cluster_size=1k,lazy_refcounts=on 32K
io_abort d-dirty-1k "write -P 0x09 0 3k" "write -P 0x0a 8k 1k"
data_image d-dirty-1k
create d-bitmaps-2k cluster_size=2k 32K
qemu-img bitmap --add "$work/d-bitmaps-2k.qcow2" dirty0
io d-bitmaps-2k "write -P 0x0b 0 4k"
data_image d-bitmaps-2k
create d-prealloc-512 cluster_size=512,preallocation=metadata 8K
io d-prealloc-512 "write -P 0x0c 1k 1k"
data_image d-prealloc-512
create d-leak-512 cluster_size=512 16K
io d-leak-512 "write -P 0x0d 0 2k"
truncate -s 6K "$work/d-leak-512.qcow2"                                 # clusters 9-11 ...
poke d-leak-512 $((512 * 2 + 2 * 10)) 0001                              # ... and 10 leaked
data_image d-leak-512

# ---- trailers that drive fuzz_image's write step (see harness/fuzz/fuzz_image.c) ----
# 32 bytes: flags (ops-1 | 0x08 fault), fault-after-k, repair, unused, then 7 ops of
# {kind%6: write zero zero+unmap discard compressed resize, offset hi, lo, length bits}.
trailers=(
    "06 00 01 00  00 00 01 81  04 00 02 80  01 00 00 83  03 00 01 82  02 00 03 81  05 01 00 01  00 00 05 20"
    "06 00 00 00  00 00 07 10  00 01 10 45  03 00 02 7f  01 00 03 05  04 00 04 c0  05 00 00 00  00 02 00 82"
    "0e 05 01 00  00 00 01 84  00 00 09 81  04 00 00 80  01 00 02 82  03 00 00 87  05 01 00 03  00 00 03 60"
    "0b 02 00 00  00 00 00 85  02 00 00 87  00 00 04 81  04 00 03 80  00 00 00 00  00 00 00 00  00 00 00 00"
)

trailer_bytes() {
    local hex=${1// /} esc="" i
    for ((i = 0; i < ${#hex}; i += 2)); do esc+="\\x${hex:i:2}"; done
    printf "$esc"
}

n=0
for name in "${meta[@]}"; do
    cp "$work/$name.qcow2" "$out_header/$name.qcow2"
    # The image target gets the small ones (and the huge virtual disk) too.
    if [[ $(stat -c %s "$work/$name.qcow2") -le 8192 || $name == big-4k ]]; then
        cp "$work/$name.qcow2" "$out_image/$name.qcow2"
    fi
done
for name in "${data[@]}"; do
    # The small ones carry a trailer (the write step's operations) instead, which keeps
    # the corpus small; the large ones are kept as they are.
    if [[ $(stat -c %s "$work/$name.qcow2") -gt 16384 ]]; then
        cp "$work/$name.qcow2" "$out_image/$name.qcow2"
        continue
    fi
    rm -f "$out_image/$name.qcow2"
    k=$((n % ${#trailers[@]}))
    n=$((n + 1))
    { cat "$work/$name.qcow2"; trailer_bytes "${trailers[k]}"; } >"$out_image/$name+ops$k.qcow2"
done

# ---- the snapshot target ----
if [[ -x $snapshot_target ]]; then
    : >"$work/empty"
    QVET_FUZZ_SNAPSHOT_SEEDS=$out_snapshot "$snapshot_target" "$work/empty" 2>/dev/null
else
    echo "make-seeds: $snapshot_target missing (run make first): only qemu-img tables" >&2
fi
# Tables written by qemu-img (other id/name/extra-data shapes), over each base layout:
# byte 0 = layout, byte 1 = nb_snapshots, then the table.
layout=0
for name in snap-meta-512 d-snap-512 d-snap-v2-1k d-snap-resized-512; do
    f=$work/$name.qcow2
    nb=$(be "$f" 60 4)
    off=$(be "$f" 64 8)
    size=$(stat -c %s "$f")
    len=$((size - off < 512 ? size - off : 512))
    {
        printf "\\x$(printf %02x $((layout | 0x40)))\\x$(printf %02x "$nb")"
        tail -c +"$((off + 1))" "$f" | head -c "$len"
    } >"$out_snapshot/qemu-$name"
    layout=$(((layout + 1) % 4))
done

du -sh "$here" | sed 's/^/make-seeds: corpus size /'
for t in header image snapshot; do
    echo "make-seeds: $t: $(find "$here/$t" -type f | wc -l) files"
done
