#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Malformed-image suite for qvet.
#
# Builds a few valid qcow2 images with qemu-img/qemu-io, derives many variants from
# them that each break one rule of the format, and runs qvet on every variant:
#   qvet info, qvet info --output=json, qvet cat, qvet map --output=json
#   (plus qvet cat -s SNAP for snapshot variants).
# Every run must end with status 0 or 1 (never a crash, hang or sanitizer report);
# a refusal must be one line "qvet: FILE: <structure>...: <rule> (...)"; the image
# must be left byte-for-byte unchanged. The results are then held against QEMU:
# what qemu-img refuses, qvet must refuse too, and what both read must be identical.
#
# Environment:
#   QVET=path     binary under test (default: build-asan/qvet in the repo root)
#   KEEP=1        keep the work directory (its path is printed)
#   GEN_ONLY=1    only build the variants and show what QEMU says about each
#   ONLY=regex    run only the cases whose name matches
#
# Case flags (third argument onwards of new_case):
#   q=info|read|ok|skip  what QEMU 7.2 does with the variant: refuses to open it
#                        (qemu-img info fails), opens it but cannot read it (qemu-img
#                        convert fails), or reads it. Checked, so that each variant is
#                        known to break what it claims to break. skip = QEMU not asked
#                        (it loops forever on a backing chain that loops).
#   qs=read|ok           the same for the snapshot named by snap=
#   snap=NAME            also run "qvet cat -s NAME" and compare with QEMU
#   refuse               every qvet command must fail (exit 1) even if QEMU is lenient
#   refuse-cat           qvet cat must fail
#   refuse-snap          qvet cat -s NAME must fail
#   blame=FILE           the refusal must name FILE (a file of the case directory)
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
QVET=${QVET:-$root/build-asan/qvet}
case $QVET in
    /*) ;;
    *) QVET=$PWD/$QVET ;;
esac
KEEP=${KEEP:-0}
GEN_ONLY=${GEN_ONLY:-0}
ONLY=${ONLY:-}
TIMEOUT=${QVET_TIMEOUT:-30}

passed=0
failed=0

summary_exit() {
    echo "$passed passed, $failed failed"
    if [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
        exit 1
    fi
    exit 0
}

for tool in qemu-img qemu-io sha256sum od dd timeout truncate cmp; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run.sh: $tool is needed but not installed" >&2
        summary_exit
    fi
done
if [ "$GEN_ONLY" != 1 ] && [ ! -x "$QVET" ]; then
    echo "run.sh: no qvet binary at $QVET (build it with 'make asan', or set QVET)" >&2
    summary_exit
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/qvet-malformed.XXXXXX") || exit 1
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "run.sh: work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
bases=$work/base
mkdir -p "$bases" "$work/cases" "$work/out"

# ---------------------------------------------------------------------------------------
# Sanitizers: any finding makes the run exit with a status the checks below treat as a
# failure, and the report text is looked for in stderr as well.

leaks=1
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99:halt_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=98"
if [ "$GEN_ONLY" != 1 ]; then
    probe=$("$QVET" info "$work/no-such-image.qcow2" 2>&1 >/dev/null)
    if printf '%s\n' "$probe" | grep -q 'LeakSanitizer has encountered a fatal error'; then
        leaks=0
        export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99:halt_on_error=1:symbolize=1"
        echo "note: LeakSanitizer cannot run here (ptrace or similar); leak detection disabled"
    fi
    if ! grep -q -a '__asan_init' "$QVET"; then
        echo "note: $QVET does not look ASan-instrumented; only crashes, hangs and exit codes are checked"
    fi
fi

# ---------------------------------------------------------------------------------------
# Byte helpers. All multi-byte fields are big-endian. Values are bash integers (64-bit,
# so an u64 with the top bit set reads back negative; the bit pattern is what matters).

# rd FILE OFFSET LEN -> the unsigned big-endian value (0 past EOF)
rd() {
    local hex
    hex=$(od -An -v -tx1 -j "$2" -N "$3" "$1" 2>/dev/null | tr -d ' \n')
    echo $((16#${hex:-0}))
}

# poke FILE OFFSET LEN VALUE: writes VALUE as a big-endian LEN-byte field, in place
poke() {
    local f=$1 off=$2 n=$3 v=$4 s="" i
    for ((i = n - 1; i >= 0; i--)); do
        s+=$(printf '\\0%03o' $(((v >> (8 * i)) & 255)))
    done
    printf '%b' "$s" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}

# pokestr FILE OFFSET STRING: writes the bytes of STRING in place
pokestr() {
    printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# fill FILE OFFSET LEN BYTE: writes LEN copies of BYTE in place
fill() {
    head -c "$3" /dev/zero | tr '\000' "\\$(printf '%03o' "$4")" |
        dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

fsize() { stat -c %s "$1"; }

# Header fields.
h_version() { rd "$1" 4 4; }
h_cb() { rd "$1" 20 4; }
h_l1off() { rd "$1" 40 8; }
h_rtoff() { rd "$1" 48 8; }
h_snapoff() { rd "$1" 64 8; }
h_incompat() { if (($(h_version "$1") >= 3)); then rd "$1" 72 8; else echo 0; fi; }

# ext_find FILE TYPE -> offset of that header extension's 8-byte header
ext_find() {
    local f=$1 want=$2 off end bfo t l
    if (($(h_version "$f") >= 3)); then off=$(rd "$f" 100 4); else off=72; fi
    end=$((1 << $(h_cb "$f")))
    bfo=$(rd "$f" 8 8)
    if ((bfo != 0 && bfo < end)); then end=$bfo; fi
    while ((off + 8 <= end)); do
        t=$(rd "$f" "$off" 4)
        l=$(rd "$f" $((off + 4)) 4)
        ((t == 0)) && return 1
        if ((t == want)); then
            echo "$off"
            return 0
        fi
        off=$((off + 8 + ((l + 7) & ~7)))
    done
    return 1
}

EXT_BACKING_FMT=$((0xE2792ACA))
EXT_FEATURES=$((0x6803F857))
EXT_BITMAPS=$((0x23852875))
OFFSET_MASK=$((0x00FFFFFFFFFFFE00))
COPIED=$((1 << 63))

# l2pos FILE GUEST_OFFSET -> host offset of the L2 entry mapping that guest offset
# (fails if the cluster has no L2 table)
l2pos() {
    local f=$1 g=$2 cb esz l2bits l1e l2off
    cb=$(h_cb "$f")
    if (($(h_incompat "$f") & 16)); then esz=16 l2bits=$((cb - 4)); else esz=8 l2bits=$((cb - 3)); fi
    l1e=$(rd "$f" $(($(h_l1off "$f") + 8 * (g >> (cb + l2bits)))) 8)
    l2off=$((l1e & OFFSET_MASK))
    ((l2off != 0)) || return 1
    echo $((l2off + esz * ((g >> cb) & ((1 << l2bits) - 1))))
}

# l1pos FILE GUEST_OFFSET -> host offset of the L1 entry for that guest offset
l1pos() {
    local f=$1 g=$2 cb l2bits
    cb=$(h_cb "$f")
    if (($(h_incompat "$f") & 16)); then l2bits=$((cb - 4)); else l2bits=$((cb - 3)); fi
    echo $(($(h_l1off "$f") + 8 * (g >> (cb + l2bits))))
}

# cdesc_host FILE L2WORD -> host byte offset of a compressed cluster's data
cdesc_host() {
    local cb
    cb=$(h_cb "$1")
    echo $(($2 & ((1 << (70 - cb)) - 1)))
}

# map_offset FILE GUEST_OFFSET -> host offset of that guest byte, from qemu-img map
map_offset() {
    local f=$1 g=$2 line start len off
    while IFS= read -r line; do
        [[ $line =~ \"start\":\ ([0-9]+),\ \"length\":\ ([0-9]+) ]] || continue
        start=${BASH_REMATCH[1]} len=${BASH_REMATCH[2]}
        ((g >= start && g < start + len)) || continue
        [[ $line =~ \"offset\":\ ([0-9]+) ]] || return 1
        off=${BASH_REMATCH[1]}
        echo $((off + g - start))
        return 0
    done < <(qemu-img map -f qcow2 --output=json "$f" 2>/dev/null)
    return 1
}

# snap_entry FILE INDEX -> host offset of snapshot table entry INDEX
snap_entry() {
    local f=$1 want=$2 off i ex id nm
    off=$(h_snapoff "$f")
    for ((i = 0; i < want; i++)); do
        ex=$(rd "$f" $((off + 36)) 4)
        id=$(rd "$f" $((off + 12)) 2)
        nm=$(rd "$f" $((off + 14)) 2)
        off=$(((off + 40 + ex + id + nm + 7) & ~7))
    done
    echo "$off"
}

# set_backing_name FILE NAME: replaces the stored backing file name
set_backing_name() {
    local f=$1 bfo old
    bfo=$(rd "$f" 8 8)
    old=$(rd "$f" 16 4)
    fill "$f" "$bfo" "$old" 0
    pokestr "$f" "$bfo" "$2"
    poke "$f" 16 4 "${#2}"
}

# beyond_eof FILE -> a cluster-aligned offset well past the end of the file
beyond_eof() {
    local cs
    cs=$((1 << $(h_cb "$1")))
    echo $((((($(fsize "$1") + cs - 1) / cs) + 64) * cs))
}

# ---------------------------------------------------------------------------------------
# Base images (all valid). 8 MiB guests, with data patterns QEMU writes.

# qio_img FILE CMD... : runs qemu-io commands on FILE
qio_img() {
    local f=$1 c args=()
    shift
    for c in "$@"; do args+=(-c "$c"); done
    qemu-io -f qcow2 "${args[@]}" "$f" >/dev/null
}

make_bases() {
    local b=$bases
    seq 1 40000 | head -c 262144 >"$b/text.bin"
    od -An -tx1 -v "$b/text.bin" | head -c 262144 >"$b/hex.bin"

    qemu-img create -q -f qcow2 "$b/v3.qcow2" 8M &&
        qio_img "$b/v3.qcow2" "write -P 0x11 0 64k" "write -s $b/hex.bin 1M 128k" \
            "write -c -s $b/text.bin 2M 64k" "write -z 3M 64k" "write -P 0x14 7M 64k" &&
        qemu-img create -q -f qcow2 -o compat=0.10 "$b/v2.qcow2" 8M &&
        qio_img "$b/v2.qcow2" "write -P 0x21 0 64k" "write -s $b/hex.bin 4M 64k" &&
        qemu-img create -q -f qcow2 -o cluster_size=4096 "$b/c4k.qcow2" 8M &&
        qio_img "$b/c4k.qcow2" "write -P 0x31 0 4k" "write -s $b/hex.bin 5M 8k" \
            "write -P 0x32 6M 4k" &&
        qemu-img create -q -f qcow2 -o extended_l2=on "$b/el2.qcow2" 8M &&
        qio_img "$b/el2.qcow2" "write -P 0x41 0 2k" "write -P 0x42 4k 4k" \
            "write -s $b/hex.bin 64k 64k" "write -z 64k 4k" "write -c -s $b/text.bin 3M 64k" &&
        qemu-img create -q -f qcow2 -o compression_type=zstd "$b/zstd.qcow2" 8M &&
        qio_img "$b/zstd.qcow2" "write -c -s $b/text.bin 0 64k" "write -c -P 0x52 64k 64k" \
            "write -P 0x53 1M 64k" &&
        qemu-img create -q -f qcow2 "$b/snap.qcow2" 8M &&
        qio_img "$b/snap.qcow2" "write -P 0x61 0 64k" "write -P 0x62 1M 64k" &&
        qemu-img snapshot -c s1 "$b/snap.qcow2" &&
        qio_img "$b/snap.qcow2" "write -P 0x63 0 64k" "write -P 0x64 2M 64k" &&
        qemu-img snapshot -c s2 "$b/snap.qcow2" &&
        qemu-img create -q -f qcow2 "$b/base.qcow2" 8M &&
        qio_img "$b/base.qcow2" "write -P 0x71 0 1M" "write -s $b/hex.bin 2M 64k" &&
        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$b/ovl.qcow2" &&
        qio_img "$b/ovl.qcow2" "write -P 0x72 64k 64k" "write -z 128k 64k" &&
        qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 "$b/ovl2.qcow2" &&
        qio_img "$b/ovl2.qcow2" "write -P 0x73 64k 64k" &&
        qemu-img create -q -f qcow2 "$b/bitmap.qcow2" 8M &&
        qio_img "$b/bitmap.qcow2" "write -P 0x81 0 64k" &&
        qemu-img bitmap -f qcow2 --add "$b/bitmap.qcow2" b0 &&
        qemu-img create -q -f qcow2 -u -b img.qcow2 -F qcow2 "$b/loop1.qcow2" 8M &&
        qemu-img create -q -f qcow2 -u -b loopb.qcow2 -F qcow2 "$b/loopa.qcow2" 8M &&
        qemu-img create -q -f qcow2 -u -b img.qcow2 -F qcow2 "$b/loopb.qcow2" 8M &&
        : >"$b/empty.qcow2"
}

if ! make_bases >"$work/base.log" 2>&1; then
    echo "run.sh: could not create the base images:" >&2
    cat "$work/base.log" >&2
    summary_exit
fi

# ---------------------------------------------------------------------------------------
# Variants. new_case NAME BASE FLAGS... copies BASE to $C/img.qcow2 (C = the case
# directory, I = the image); the lines after it patch $I. gen_fail records a variant
# that could not be built (its base did not have the expected layout).

CASES=()
declare -A FLAGS=() GENERR=()
cur="" C="" I=""

new_case() {
    cur=$1
    C=$work/cases/$1
    I=$C/img.qcow2
    mkdir -p "$C"
    cp "$bases/$2.qcow2" "$I"
    CASES+=("$1")
    FLAGS[$1]=" ${*:3} "
}
gen_fail() { GENERR[$cur]=$1; }
# with FILE.qcow2...: copies more base files into the case directory
with() {
    local f
    for f in "$@"; do cp "$bases/$f" "$C/$f"; done
}

# --- magic, version, cluster size
new_case magic-bad v3 q=info refuse
poke "$I" 0 4 0x514649FA
new_case version-1 v3 q=info refuse
poke "$I" 4 4 1
new_case version-4 v3 q=info refuse
poke "$I" 4 4 4
new_case version-0-v2 v2 q=info refuse
poke "$I" 4 4 0
new_case cluster-bits-8 v3 q=info refuse
poke "$I" 20 4 8
new_case cluster-bits-22 v3 q=info refuse
poke "$I" 20 4 22
new_case cluster-bits-63 v3 q=info refuse
poke "$I" 20 4 63

# --- header_length and the v3 tail
new_case hdrlen-96 v3 q=info refuse
poke "$I" 100 4 96
new_case hdrlen-over-cluster c4k q=info refuse
poke "$I" 100 4 4104
new_case hdrlen-105 v3 q=ok refuse
poke "$I" 100 4 105
new_case hdrlen-108 v3 q=info refuse
poke "$I" 100 4 108
new_case padding-nonzero v3 q=ok refuse
poke "$I" 109 1 0x5a

# --- virtual size and the active L1
new_case size-l1-too-small v3 q=info refuse
poke "$I" 24 8 $((1 << 40))
new_case l1-size-huge v3 q=info refuse
poke "$I" 36 4 $((4194304 + 1))
new_case l1-off-unaligned v3 q=info refuse
poke "$I" 40 8 $(($(h_l1off "$I") + 512))
new_case l1-off-past-eof v3 q=ok refuse
poke "$I" 40 8 "$(beyond_eof "$I")"
new_case l1-off-overflow v3 q=info refuse
poke "$I" 40 8 $((0xFFFFFFFFFFFF0000))

# --- refcount table
new_case reftable-off-unaligned v3 q=info refuse
poke "$I" 48 8 $(($(h_rtoff "$I") + 512))
new_case reftable-off-past-eof v3 q=ok refuse
poke "$I" 48 8 "$(beyond_eof "$I")"
new_case reftable-clusters-0 v3 q=info refuse
poke "$I" 56 4 0
new_case reftable-clusters-huge v3 q=info refuse
poke "$I" 56 4 $((0x10000))
new_case refcount-order-7 v3 q=info refuse
poke "$I" 96 4 7
new_case reftable-entry-unaligned v3 q=ok
poke "$I" "$(h_rtoff "$I")" 8 $(($(rd "$I" "$(h_rtoff "$I")" 8) + 512))

# --- snapshot table
new_case nb-snapshots-huge snap q=info refuse
poke "$I" 60 4 65537
new_case snapshots-off-unaligned v3 q=info refuse
poke "$I" 64 8 $((0x10200))
new_case snapshots-off-past-eof snap q=ok refuse
poke "$I" 64 8 "$(beyond_eof "$I")"
new_case snap-extra-too-big snap q=info refuse
poke "$I" $(($(snap_entry "$I" 0) + 36)) 4 1025
new_case snap-id-past-eof snap q=ok refuse
e=$(snap_entry "$I" 1)
poke "$I" $((e + 12)) 2 65535
(($(fsize "$I") < e + 40 + 65535)) || gen_fail "snapshot table is not near EOF"
new_case snap-name-past-eof snap q=ok refuse
e=$(snap_entry "$I" 1)
poke "$I" $((e + 14)) 2 65535
(($(fsize "$I") < e + 40 + 65535)) || gen_fail "snapshot table is not near EOF"
new_case snap-l1-unaligned snap q=ok snap=s1 qs=read refuse-snap
e=$(snap_entry "$I" 0)
poke "$I" "$e" 8 $(($(rd "$I" "$e" 8) + 512))
new_case snap-l1-size-huge snap q=ok snap=s1 qs=read refuse-snap
poke "$I" $(($(snap_entry "$I" 0) + 8)) 4 $((4194304 + 1))
new_case snap-l1-past-eof snap q=ok snap=s2 qs=ok refuse-snap
poke "$I" "$(snap_entry "$I" 1)" 8 "$(beyond_eof "$I")"

# --- encryption
new_case crypt-aes v3 q=read refuse
poke "$I" 32 4 1
new_case crypt-luks-no-fde v3 q=info refuse
poke "$I" 32 4 2
new_case crypt-3 v3 q=info refuse
poke "$I" 32 4 3

# --- feature bits and compression type
new_case incompat-unknown v3 q=info refuse
poke "$I" 72 8 $(($(rd "$I" 72 8) | (1 << 40)))
new_case incompat-unknown-named v3 q=info refuse
if ft=$(ext_find "$I" "$EXT_FEATURES"); then
    n=$(($(rd "$I" $((ft + 4)) 4) / 48)) found=0
    for ((k = 0; k < n; k++)); do
        p=$((ft + 8 + 48 * k))
        if (($(rd "$I" "$p" 1) == 0 && $(rd "$I" $((p + 1)) 1) == 4)); then
            poke "$I" $((p + 1)) 1 40
            fill "$I" $((p + 2)) 46 0
            pokestr "$I" $((p + 2)) "qvet test feature"
            found=1
        fi
    done
    ((found)) || gen_fail "no feature-table entry for incompatible bit 4"
else
    gen_fail "no feature table"
fi
poke "$I" 72 8 $(($(rd "$I" 72 8) | (1 << 40)))
new_case incompat-all-ones v3 q=info refuse
poke "$I" 72 8 -1
new_case incompat-data-file v3 q=read refuse
poke "$I" 72 8 $(($(rd "$I" 72 8) | 4))
new_case autoclear-raw-no-data-file v3 q=read refuse
poke "$I" 88 8 $(($(rd "$I" 88 8) | 2))
new_case compression-type-2 v3 q=info refuse
poke "$I" 104 1 2
new_case compression-zstd-no-bit v3 q=info refuse
poke "$I" 104 1 1
new_case compression-bit-zlib zstd q=info refuse
poke "$I" 104 1 0
new_case extl2-4k c4k q=info refuse
poke "$I" 72 8 $(($(rd "$I" 72 8) | 16))

# --- header extensions
new_case ext-len-past-area v3 q=info refuse
if ft=$(ext_find "$I" "$EXT_FEATURES"); then poke "$I" $((ft + 4)) 4 $((0x10000)); else gen_fail "no feature table"; fi
new_case ext-v2-len-past-area ovl2 q=info refuse
with base.qcow2
if bf=$(ext_find "$I" "$EXT_BACKING_FMT"); then poke "$I" $((bf + 4)) 4 $((0x1000)); else gen_fail "no backing format extension"; fi
new_case feature-table-odd-len v3 q=ok
if ft=$(ext_find "$I" "$EXT_FEATURES"); then poke "$I" $((ft + 4)) 4 $(($(rd "$I" $((ft + 4)) 4) - 1)); else gen_fail "no feature table"; fi
new_case backing-fmt-len-16 ovl q=info refuse
with base.qcow2
if bf=$(ext_find "$I" "$EXT_BACKING_FMT"); then poke "$I" $((bf + 4)) 4 16; else gen_fail "no backing format extension"; fi
new_case bitmaps-ext-len-16 bitmap q=info refuse
if bm=$(ext_find "$I" "$EXT_BITMAPS"); then poke "$I" $((bm + 4)) 4 16; else gen_fail "no bitmaps extension"; fi
new_case bitmaps-reserved bitmap q=info refuse
if bm=$(ext_find "$I" "$EXT_BITMAPS"); then poke "$I" $((bm + 12)) 4 1; else gen_fail "no bitmaps extension"; fi
new_case bitmaps-zero bitmap q=info refuse
if bm=$(ext_find "$I" "$EXT_BITMAPS"); then poke "$I" $((bm + 8)) 4 0; else gen_fail "no bitmaps extension"; fi
new_case bitmaps-dir-unaligned bitmap q=info refuse
if bm=$(ext_find "$I" "$EXT_BITMAPS"); then poke "$I" $((bm + 24)) 8 $(($(rd "$I" $((bm + 24)) 8) + 8)); else gen_fail "no bitmaps extension"; fi
new_case bitmaps-dir-past-eof bitmap q=info refuse
if bm=$(ext_find "$I" "$EXT_BITMAPS"); then poke "$I" $((bm + 24)) 8 "$(beyond_eof "$I")"; else gen_fail "no bitmaps extension"; fi
new_case bitmap-entry-type-2 bitmap q=info refuse
if bm=$(ext_find "$I" "$EXT_BITMAPS"); then poke "$I" $(($(rd "$I" $((bm + 24)) 8) + 16)) 1 2; else gen_fail "no bitmaps extension"; fi

# --- backing files
new_case backing-off-over-cluster ovl q=info refuse
with base.qcow2
poke "$I" 8 8 $((0x10008))
new_case backing-size-1024 ovl q=info refuse
with base.qcow2
poke "$I" 16 4 1024
new_case backing-missing ovl q=read refuse-cat
set_backing_name "$I" gone.qcow2
new_case backing-nbd ovl q=read refuse-cat
set_backing_name "$I" "nbd:unix:$C/no-such.sock"
new_case backing-json ovl q=ok refuse-cat
with base.qcow2
set_backing_name "$I" "json:{\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": \"$C/base.qcow2\"}}"
new_case backing-bad-l1 ovl q=read refuse-cat blame=base.qcow2
with base.qcow2
poke "$C/base.qcow2" 40 8 $(($(h_l1off "$C/base.qcow2") + 512))
new_case backing-bad-magic ovl q=read refuse-cat blame=base.qcow2
with base.qcow2
poke "$C/base.qcow2" 0 4 0
new_case backing-bad-l2-entry ovl q=read refuse-cat blame=base.qcow2
with base.qcow2
if p=$(l2pos "$C/base.qcow2" $((2 << 20))); then
    poke "$C/base.qcow2" "$p" 8 $(($(rd "$C/base.qcow2" "$p" 8) + 512))
else
    gen_fail "base.qcow2 has no L2 table for 2M"
fi
# QEMU 7.2 recurses forever reading these (qemu-img convert), so it is not asked. Its
# info shows them (it does not open the backing file), and so does qvet info; reading
# needs the chain, which qvet refuses.
new_case backing-loop-self loop1 q=skip refuse-cat
new_case backing-loop-pair loopa q=skip refuse-cat
with loopb.qcow2

# --- L1 entries
new_case l1-entry-l2-unaligned v3 q=read refuse-cat
p=$(l1pos "$I" 0)
poke "$I" "$p" 8 $(($(rd "$I" "$p" 8) + 512))
new_case l1-entry-l2-past-eof v3 q=ok refuse-cat
poke "$I" "$(l1pos "$I" 0)" 8 $(($(beyond_eof "$I") | COPIED))
new_case l1-entry-reserved-bits v3 q=ok
p=$(l1pos "$I" 0)
poke "$I" "$p" 8 $(($(rd "$I" "$p" 8) | 1))

# --- L2 entries
new_case l2-data-unaligned v3 q=read refuse-cat
if p=$(l2pos "$I" 0) && d=$(map_offset "$I" 0); then
    poke "$I" "$p" 8 $(((d + 512) | COPIED))
else
    gen_fail "guest cluster 0 is not mapped"
fi
new_case l2-data-past-eof v3 q=ok
if p=$(l2pos "$I" $((1 << 20))) && map_offset "$I" $((1 << 20)) >/dev/null; then
    poke "$I" "$p" 8 $(($(beyond_eof "$I") | COPIED))
else
    gen_fail "guest 1M is not mapped"
fi
new_case l2-reserved-bits v3 q=ok
if p=$(l2pos "$I" 0); then poke "$I" "$p" 8 $(($(rd "$I" "$p" 8) | 2)); else gen_fail "no L2"; fi
new_case v2-zero-flag v2 q=read refuse-cat
if p=$(l2pos "$I" $((4 << 20))); then poke "$I" "$p" 8 $(($(rd "$I" "$p" 8) | 1)); else gen_fail "no L2"; fi
new_case v2-zero-flag-unallocated v2 q=read refuse-cat
if p=$(l2pos "$I" $((1 << 20))); then poke "$I" "$p" 8 1; else gen_fail "no L2"; fi

# --- compressed clusters
new_case compressed-past-eof v3 q=read refuse-cat
if p=$(l2pos "$I" $((2 << 20))) && w=$(rd "$I" "$p" 8) && (((w >> 62) & 1)); then
    cb=$(h_cb "$I")
    poke "$I" "$p" 8 $(((w & ~((1 << (70 - cb)) - 1)) | $(beyond_eof "$I") + 100))
else
    gen_fail "guest 2M is not compressed"
fi
new_case compressed-copied v3 q=ok
if p=$(l2pos "$I" $((2 << 20))) && w=$(rd "$I" "$p" 8) && (((w >> 62) & 1)); then
    poke "$I" "$p" 8 $((w | COPIED))
else
    gen_fail "guest 2M is not compressed"
fi
new_case zlib-garbage v3 q=read refuse-cat
if p=$(l2pos "$I" $((2 << 20))) && w=$(rd "$I" "$p" 8) && (((w >> 62) & 1)); then
    h=$(cdesc_host "$I" "$w")
    fill "$I" "$h" 2 0xff
    pokestr "$I" $((h + 2)) "garbage, not a deflate stream"
else
    gen_fail "guest 2M is not compressed"
fi
new_case zlib-truncated-stream v3 q=read refuse-cat
if p=$(l2pos "$I" $((2 << 20))) && w=$(rd "$I" "$p" 8) && (((w >> 62) & 1)); then
    # keep the offset but claim no extra sectors: the stream is cut after < 512 bytes
    h=$(cdesc_host "$I" "$w")
    poke "$I" "$p" 8 $(((1 << 62) | h))
else
    gen_fail "guest 2M is not compressed"
fi
new_case zstd-garbage zstd q=read refuse-cat
if p=$(l2pos "$I" 0) && w=$(rd "$I" "$p" 8) && (((w >> 62) & 1)); then
    h=$(cdesc_host "$I" "$w")
    ((h == 0 || $(rd "$I" "$h" 4) == 0x28B52FFD)) || gen_fail "no zstd frame magic at $h"
    pokestr "$I" "$h" "garbage, not a zstd frame"
else
    gen_fail "guest 0 is not compressed"
fi
new_case zstd-bad-block zstd q=read refuse-cat
if p=$(l2pos "$I" $((64 << 10))) && w=$(rd "$I" "$p" 8) && (((w >> 62) & 1)); then
    # keep the frame magic, spoil what follows
    h=$(cdesc_host "$I" "$w")
    fill "$I" $((h + 4)) 12 0xff
else
    gen_fail "guest 64k is not compressed"
fi

# --- extended L2
new_case extl2-alloc-and-zero el2 q=read refuse-cat
if p=$(l2pos "$I" 0); then poke "$I" $((p + 8)) 8 $(($(rd "$I" $((p + 8)) 8) | (1 << 32) | 1)); else gen_fail "no L2"; fi
new_case extl2-unalloc-alloc-bits el2 q=read refuse-cat
if p=$(l2pos "$I" $((1 << 20))); then
    (($(rd "$I" "$p" 8) == 0)) || gen_fail "guest 1M is allocated"
    poke "$I" $((p + 8)) 8 1
else
    gen_fail "no L2"
fi
new_case extl2-compressed-bitmap el2 q=ok
# a compressed cluster must have an all-zero subcluster bitmap
if p=$(l2pos "$I" $((3 << 20))) && (((($(rd "$I" "$p" 8)) >> 62) & 1)); then
    poke "$I" $((p + 8)) 8 1
else
    gen_fail "guest 3M is not compressed"
fi

# --- truncated and tiny files
new_case truncated-mid-l1 c4k q=ok
truncate -s $(($(h_l1off "$I") + 12)) "$I"
new_case truncated-mid-l2 v3 q=ok
if p=$(l2pos "$I" $((1 << 20))); then truncate -s $((p + 4)) "$I"; else gen_fail "no L2"; fi
new_case truncated-header v3 q=info refuse
truncate -s 100 "$I"
new_case empty-file empty q=info refuse
new_case file-50-bytes v3 q=info refuse
truncate -s 50 "$I"
new_case all-ff-header v3 q=info refuse
fill "$I" 0 112 0xff
new_case all-ff-after-version v3 q=info refuse
fill "$I" 8 104 0xff
new_case all-ff-v3-fields-and-extensions c4k q=info refuse
fill "$I" 72 $((4096 - 72)) 0xff

# ---------------------------------------------------------------------------------------
# Running the cases.

has_flag() { [[ ${FLAGS[$1]} == *" $2 "* ]]; }
flag_val() {
    local re=" $2=([^ ]*) "
    [[ ${FLAGS[$1]} =~ $re ]] && echo "${BASH_REMATCH[1]}"
}

hash_case() { (cd "$1" && sha256sum -- *); }

# run_limited OUT ERR CMD...: runs CMD with a time limit and an output-size limit
run_limited() {
    local out=$1 err=$2
    shift 2
    {
        (
            ulimit -f 524288
            exec timeout -k 5 "$TIMEOUT" "$@"
        ) >"$out" 2>"$err"
    } 2>/dev/null
}

# qemu_verdict: sets qinfo (0/1), qinfo_msg, qread (0/1/2 = timeout), qread_msg
qemu_verdict() {
    local name=$1 img=$2 d=$work/out/$1
    qinfo=0 qread=0 qinfo_msg="" qread_msg=""
    if ! { timeout "$TIMEOUT" qemu-img info -f qcow2 "$img" >"$d.qinfo" 2>"$d.qinfo.err"; } 2>/dev/null; then
        qinfo=1
        qinfo_msg=$(head -n 1 "$d.qinfo.err")
    fi
    { timeout "$TIMEOUT" qemu-img convert -f qcow2 -O raw "$img" "$d.qemu.raw" 2>"$d.qconv.err"; } 2>/dev/null
    case $? in
        0) ;;
        124 | 137) qread=2 ;;
        *) qread=1 qread_msg=$(head -n 1 "$d.qconv.err") ;;
    esac
    qsnap=0 qsnap_msg=""
    if [ -n "$3" ]; then
        { timeout "$TIMEOUT" qemu-img convert -f qcow2 -O raw -l "snapshot.name=$3" "$img" \
            "$d.qemu-snap.raw" 2>"$d.qsnap.err"; } 2>/dev/null
        case $? in
            0) ;;
            124 | 137) qsnap=2 ;;
            *) qsnap=1 qsnap_msg=$(head -n 1 "$d.qsnap.err") ;;
        esac
    fi
}

reasons=()
fail_because() { reasons+=("$*"); }

# check_run NAME LABEL CASEDIR: judges one qvet run from $rc, $err
check_run() {
    local label=$2 cdir=$3 lines line file rest blame
    local err_text
    err_text=$(san_summary "$err")
    case $rc in
        0 | 1) ;;
        124 | 137) fail_because "$label: hang (no exit within ${TIMEOUT}s)" ;;
        153) fail_because "$label: output over 512 MiB (killed by SIGXFSZ)" ;;
        99) fail_because "$label: AddressSanitizer/LeakSanitizer report (exit 99): $(san_summary "$err")" ;;
        98) fail_because "$label: UndefinedBehaviorSanitizer report (exit 98): $(san_summary "$err")" ;;
        *)
            if ((rc >= 128)); then
                fail_because "$label: crashed with signal $((rc - 128))${err_text:+: $err_text}"
            else
                fail_because "$label: exit status $rc (only 0 or 1 are allowed)"
            fi
            ;;
    esac
    if grep -q -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$err"; then
        case $rc in
            98 | 99) ;;
            *) fail_because "$label: sanitizer report in stderr: $(san_summary "$err")" ;;
        esac
        return
    fi
    ((rc == 1)) || return 0
    lines=$(wc -l <"$err")
    line=$(head -n 1 "$err")
    if [ "$lines" -ne 1 ] || [ -z "$line" ]; then
        fail_because "$label: exit 1 with $lines lines on stderr (want exactly one): $(head -c 300 "$err" | tr '\n' '|')"
        return
    fi
    if ! [[ $line =~ ^qvet:\ ([^:]+):\ (.+)$ ]]; then
        fail_because "$label: error line is not 'qvet: FILE: ...': $line"
        return
    fi
    file=${BASH_REMATCH[1]} rest=${BASH_REMATCH[2]}
    if [[ $file != "$cdir"/* ]]; then
        fail_because "$label: error names '$file', not a file of the case: $line"
    fi
    if ! [[ $rest =~ .+:\ .+ ]]; then
        fail_because "$label: error does not name a structure and the rule: $line"
    fi
    blame=$(flag_val "$1" blame)
    if [ -n "$blame" ] && [ "$file" != "$cdir/$blame" ]; then
        fail_because "$label: error should name $blame: $line"
    fi
}

san_summary() {
    local s
    s=$(grep -m 1 -E 'SUMMARY:|runtime error:|ERROR: (Address|Leak)Sanitizer' "$1")
    [ -n "$s" ] || s=$(head -n 1 "$1")
    printf '%s' "${s:0:300}"
}

# qvet_run NAME LABEL OUTFILE ARGS...: runs qvet, sets rc and err, judges the run
qvet_run() {
    local name=$1 label=$2 out=$3
    shift 3
    err=$work/out/$name.$label.err
    run_limited "$out" "$err" "$QVET" "$@"
    rc=$?
    check_run "$name" "$label" "$work/cases/$name"
}

run_case() {
    local name=$1 cdir=$work/cases/$1 img d before after snap q qs
    local rc_info rc_json rc_cat rc_map rc_snap=0
    img=$cdir/img.qcow2
    d=$work/out/$name
    reasons=()
    if [ -n "${GENERR[$name]:-}" ]; then
        fail_because "variant could not be built: ${GENERR[$name]}"
        report "$name"
        return
    fi
    snap=$(flag_val "$name" snap)
    q=$(flag_val "$name" q)
    qs=$(flag_val "$name" qs)

    before=$(hash_case "$cdir")
    qvet_run "$name" info "$d.info.out" info "$img"
    rc_info=$rc
    qvet_run "$name" info-json "$d.json.out" info --output=json "$img"
    rc_json=$rc
    if ((rc == 0)) && command -v jq >/dev/null 2>&1 && ! jq -e . "$d.json.out" >/dev/null 2>&1; then
        fail_because "info --output=json: output is not valid JSON"
    fi
    qvet_run "$name" cat "$d.qvet.raw" cat "$img"
    rc_cat=$rc
    qvet_run "$name" map-json "$d.map.out" map --output=json "$img"
    rc_map=$rc
    if ((rc == 0)) && command -v jq >/dev/null 2>&1 && ! jq -e . "$d.map.out" >/dev/null 2>&1; then
        fail_because "map --output=json: output is not valid JSON"
    fi
    if [ -n "$snap" ]; then
        qvet_run "$name" cat-s "$d.qvet-snap.raw" cat -s "$snap" "$img"
        rc_snap=$rc
    fi
    after=$(hash_case "$cdir")
    if [ "$before" != "$after" ]; then
        fail_because "qvet changed a file of the case (sha256 differs)"
    fi

    # The case's own expectations.
    if has_flag "$name" refuse; then
        ((rc_info == 1)) || fail_because "info: must refuse (exit 1), got exit $rc_info"
        ((rc_json == 1)) || fail_because "info-json: must refuse (exit 1), got exit $rc_json"
        ((rc_cat == 1)) || fail_because "cat: must refuse (exit 1), got exit $rc_cat"
        ((rc_map == 1)) || fail_because "map-json: must refuse (exit 1), got exit $rc_map"
    fi
    if has_flag "$name" refuse-cat; then
        ((rc_cat == 1)) || fail_because "cat: must refuse (exit 1), got exit $rc_cat"
    fi
    if has_flag "$name" refuse-snap; then
        ((rc_snap == 1)) || fail_because "cat -s $snap: must refuse (exit 1), got exit $rc_snap"
    fi

    # QEMU's view.
    if [ "$q" != skip ]; then
        qemu_verdict "$name" "$img" "$snap"
        self_check "$q" "$qs"
        if ((qinfo)); then
            ((rc_info == 1)) || fail_because "info: QEMU refuses ($qinfo_msg) but qvet exit $rc_info"
            ((rc_json == 1)) || fail_because "info-json: QEMU refuses ($qinfo_msg) but qvet exit $rc_json"
            ((rc_map == 1)) || fail_because "map-json: QEMU refuses ($qinfo_msg) but qvet exit $rc_map"
        fi
        if ((qread == 1)); then
            ((rc_cat == 1)) || fail_because "cat: QEMU cannot read it ($qread_msg) but qvet exit $rc_cat"
        elif ((qread == 0 && rc_cat == 0)); then
            compare_raw cat "$d.qemu.raw" "$d.qvet.raw"
        fi
        if [ -n "$snap" ]; then
            if ((qsnap == 1)); then
                ((rc_snap == 1)) || fail_because "cat -s $snap: QEMU cannot read it ($qsnap_msg) but qvet exit $rc_snap"
            elif ((qsnap == 0 && rc_snap == 0)); then
                compare_raw "cat -s $snap" "$d.qemu-snap.raw" "$d.qvet-snap.raw"
            fi
        fi
    fi
    report "$name"
}

# self_check Q QS: the variant must do to QEMU what its flags say
self_check() {
    local got
    if ((qinfo)); then got='info'; elif ((qread == 1)); then got='read'; elif ((qread == 2)); then got='hang'; else got='ok'; fi
    if [ -n "$1" ] && [ "$1" != "$got" ]; then
        fail_because "variant self-check: QEMU was expected to give '$1' but gave '$got' (${qinfo_msg:-$qread_msg})"
    fi
    if [ -n "$2" ]; then
        if ((qsnap == 1)); then got='read'; elif ((qsnap == 2)); then got='hang'; else got='ok'; fi
        if [ "$2" != "$got" ]; then
            fail_because "variant self-check: QEMU was expected to give '$2' for the snapshot but gave '$got' ($qsnap_msg)"
        fi
    fi
}

compare_raw() {
    local label=$1 a=$2 b=$3 sa sb first
    sa=$(fsize "$a") sb=$(fsize "$b")
    if [ "$sa" != "$sb" ]; then
        fail_because "$label: qvet wrote $sb bytes, qemu-img convert $sa"
        return
    fi
    if ! first=$(cmp -- "$a" "$b" 2>&1); then
        fail_because "$label: bytes differ from qemu-img convert: ${first##*: }"
    fi
}

report() {
    local IFS=';'
    if [ ${#reasons[@]} -eq 0 ]; then
        echo "PASS $1"
        passed=$((passed + 1))
    else
        echo "FAIL $1: ${reasons[*]}"
        failed=$((failed + 1))
    fi
}

# GEN_ONLY: show what QEMU says about every variant, and check the q= flags.
gen_only() {
    local name q qs snap
    for name in "${CASES[@]}"; do
        [ -z "$ONLY" ] || [[ $name =~ $ONLY ]] || continue
        reasons=()
        if [ -n "${GENERR[$name]:-}" ]; then
            fail_because "variant could not be built: ${GENERR[$name]}"
        fi
        q=$(flag_val "$name" q) qs=$(flag_val "$name" qs) snap=$(flag_val "$name" snap)
        if [ "$q" != skip ]; then
            qemu_verdict "$name" "$work/cases/$name/img.qcow2" "$snap"
            self_check "$q" "$qs"
            echo "# $name: info=$qinfo${qinfo_msg:+ ($qinfo_msg)} read=$qread${qread_msg:+ ($qread_msg)}${snap:+ snap=$qsnap${qsnap_msg:+ ($qsnap_msg)}}"
        fi
        report "$name"
    done
}

echo "run.sh: ${#CASES[@]} variants; qvet = $QVET; leak detection $( ((leaks)) && echo on || echo off)"
if [ "$GEN_ONLY" = 1 ]; then
    gen_only
    summary_exit
fi
for name in "${CASES[@]}"; do
    [ -z "$ONLY" ] || [[ $name =~ $ONLY ]] || continue
    run_case "$name"
done
summary_exit
