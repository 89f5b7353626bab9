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
# The cases are the table tests/malformed/cases.txt: each names a base image, the edit
# that breaks it (header fields by name, through tests/tools/qcow2-edit) and what QEMU
# 7.2 does with the result, which is checked on every run.
#
# Environment:
#   QVET=path       binary under test (default: build-asan/qvet in the repo root)
#   QCOW2_EDIT=path the header editor (default: tests/qcow2-edit beside QVET's directory)
#   KEEP=1          keep the work directory (its path is printed)
#   GEN_ONLY=1      only build the variants and show what QEMU says about each
#   ONLY=regex      run only the cases whose name matches
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/qvet-test.sh
source "$here/../lib/qvet-test.sh"
root=$ROOT
QVET=${QVET:-$root/build-asan/qvet}
case $QVET in
    /*) ;;
    *) QVET=$PWD/$QVET ;;
esac
EDIT=${QCOW2_EDIT:-$(dirname "$QVET")/tests/qcow2-edit}
GEN_ONLY=${GEN_ONLY:-0}
ONLY=${ONLY:-}
TIMEOUT=${QVET_TIMEOUT:-30}

require qemu-img qemu-io sha256sum od dd timeout truncate cmp
if [ "$GEN_ONLY" != 1 ] && [ ! -x "$QVET" ]; then
    echo "run.sh: no qvet binary at $QVET (build it with 'make asan', or set QVET)" >&2
    finish
fi
if [ ! -x "$EDIT" ]; then
    echo "run.sh: no qcow2-edit at $EDIT (it is built with qvet; or set QCOW2_EDIT)" >&2
    finish
fi

work_dir malformed
work=$WORK
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
# Reading and patching images: be, put, put_text, fill, ext_find, ext_data come from
# tests/lib/qvet-test.sh, header fields from qcow2-edit. Values are bash integers
# (64-bit, so an u64 with the top bit set reads back negative; the bit pattern is what
# matters).

# edit ARGS...: qcow2-edit on the case's image
edit() { "$EDIT" "$I" "$@"; }

fsize() { stat -c %s "$1"; }

h_cb() { "$EDIT" "$1" get cluster_bits; }
h_l1off() { "$EDIT" "$1" get l1_table_offset; }
h_snapoff() { "$EDIT" "$1" get snapshots_offset; }
h_incompat() {
    if (($("$EDIT" "$1" get version) >= 3)); then "$EDIT" "$1" get incompatible_features; else echo 0; fi
}

# bump FILE OFFSET DELTA: adds DELTA to the 8-byte field at OFFSET
bump() { put "$1" "$2" 8 $(($(u64 "$1" "$2") + $3)); }
# set_bits FILE OFFSET MASK: sets MASK's bits in the 8-byte field at OFFSET
set_bits() { put "$1" "$2" 8 $(($(u64 "$1" "$2") | $3)); }

# ext_length FILE TYPE -> the data length of that header extension
ext_length() {
    local at
    at=$(ext_find "$1" "$2") || return 1
    u32 "$1" $((at + 4))
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
    l1e=$(u64 "$f" $(($(h_l1off "$f") + 8 * (g >> (cb + l2bits)))))
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
        ex=$(u32 "$f" $((off + 36)))
        id=$(u16 "$f" $((off + 12)))
        nm=$(u16 "$f" $((off + 14)))
        off=$(((off + 40 + ex + id + nm + 7) & ~7))
    done
    echo "$off"
}

# set_backing_name FILE NAME: replaces the stored backing file name
set_backing_name() {
    local f=$1 bfo old
    bfo=$("$EDIT" "$f" get backing_file_offset)
    old=$("$EDIT" "$f" get backing_file_size)
    fill "$f" "$bfo" "$old" 0
    put_text "$f" "$bfo" "$2"
    "$EDIT" "$f" set backing_file_size "${#2}"
}

# beyond_eof FILE -> a cluster-aligned offset well past the end of the file
beyond_eof() {
    local cs
    cs=$((1 << $(h_cb "$1")))
    echo $((((($(fsize "$1") + cs - 1) / cs) + 64) * cs))
}

# ---------------------------------------------------------------------------------------
# Base images (all valid). 8 MiB guests, with data patterns QEMU writes.

make_bases() {
    local b=$bases
    seq 1 40000 | head -c 262144 >"$b/text.bin"
    od -An -tx1 -v "$b/text.bin" | head -c 262144 >"$b/hex.bin"

    qemu-img create -q -f qcow2 "$b/v3.qcow2" 8M &&
        qio "$b/v3.qcow2" "write -P 0x11 0 64k" "write -s $b/hex.bin 1M 128k" \
            "write -c -s $b/text.bin 2M 64k" "write -z 3M 64k" "write -P 0x14 7M 64k" &&
        qemu-img create -q -f qcow2 -o compat=0.10 "$b/v2.qcow2" 8M &&
        qio "$b/v2.qcow2" "write -P 0x21 0 64k" "write -s $b/hex.bin 4M 64k" &&
        qemu-img create -q -f qcow2 -o cluster_size=4096 "$b/c4k.qcow2" 8M &&
        qio "$b/c4k.qcow2" "write -P 0x31 0 4k" "write -s $b/hex.bin 5M 8k" \
            "write -P 0x32 6M 4k" &&
        qemu-img create -q -f qcow2 -o extended_l2=on "$b/el2.qcow2" 8M &&
        qio "$b/el2.qcow2" "write -P 0x41 0 2k" "write -P 0x42 4k 4k" \
            "write -s $b/hex.bin 64k 64k" "write -z 64k 4k" "write -c -s $b/text.bin 3M 64k" &&
        qemu-img create -q -f qcow2 -o compression_type=zstd "$b/zstd.qcow2" 8M &&
        qio "$b/zstd.qcow2" "write -c -s $b/text.bin 0 64k" "write -c -P 0x52 64k 64k" \
            "write -P 0x53 1M 64k" &&
        qemu-img create -q -f qcow2 "$b/snap.qcow2" 8M &&
        qio "$b/snap.qcow2" "write -P 0x61 0 64k" "write -P 0x62 1M 64k" &&
        qemu-img snapshot -c s1 "$b/snap.qcow2" &&
        qio "$b/snap.qcow2" "write -P 0x63 0 64k" "write -P 0x64 2M 64k" &&
        qemu-img snapshot -c s2 "$b/snap.qcow2" &&
        qemu-img create -q -f qcow2 "$b/base.qcow2" 8M &&
        qio "$b/base.qcow2" "write -P 0x71 0 1M" "write -s $b/hex.bin 2M 64k" &&
        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$b/ovl.qcow2" &&
        qio "$b/ovl.qcow2" "write -P 0x72 64k 64k" "write -z 128k 64k" &&
        qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 "$b/ovl2.qcow2" &&
        qio "$b/ovl2.qcow2" "write -P 0x73 64k 64k" &&
        qemu-img create -q -f qcow2 "$b/bitmap.qcow2" 8M &&
        qio "$b/bitmap.qcow2" "write -P 0x81 0 64k" &&
        qemu-img bitmap -f qcow2 --add "$b/bitmap.qcow2" b0 &&
        qemu-img create -q -f qcow2 -u -b img.qcow2 -F qcow2 "$b/loop1.qcow2" 8M &&
        qemu-img create -q -f qcow2 -u -b loopb.qcow2 -F qcow2 "$b/loopa.qcow2" 8M &&
        qemu-img create -q -f qcow2 -u -b img.qcow2 -F qcow2 "$b/loopb.qcow2" 8M &&
        : >"$b/empty.qcow2"
}

if ! make_bases >"$work/base.log" 2>&1; then
    echo "run.sh: could not create the base images:" >&2
    cat "$work/base.log" >&2
    finish
fi

# ---------------------------------------------------------------------------------------
# Edits that take more than one line of cases.txt.

# snap_length_past_eof FIELD: snapshot 1's id (12) or name (14) length set to 65535,
# which must then run past the end of the file
snap_length_past_eof() {
    local e
    e=$(snap_entry "$I" 1)
    put "$I" $((e + $1)) 2 65535
    (($(fsize "$I") < e + 40 + 65535)) || gen_fail "snapshot table is not near EOF"
}

# name_incompatible_bit_40: the feature table's entry for incompatible bit 4 renamed to
# an unknown bit 40, so that QEMU names the bit in its refusal
name_incompatible_bit_40() {
    local ft n k p found=0
    if ! ft=$(ext_find "$I" "$EXT_FEATURES"); then
        gen_fail "no feature table"
        return
    fi
    n=$(($(u32 "$I" $((ft + 4))) / 48))
    for ((k = 0; k < n; k++)); do
        p=$((ft + 8 + 48 * k))
        if (($(be "$I" "$p" 1) == 0 && $(be "$I" $((p + 1)) 1) == 4)); then
            put "$I" $((p + 1)) 1 40
            fill "$I" $((p + 2)) 46 0
            put_text "$I" $((p + 2)) "qvet test feature"
            found=1
        fi
    done
    ((found)) || gen_fail "no feature-table entry for incompatible bit 4"
}

# compressed_entry FILE GUEST -> the L2 entry of a compressed guest cluster (fails if
# the cluster is not compressed, which fails the case's edit)
compressed_entry() {
    local p
    p=$(l2pos "$1" "$2") && (((($(u64 "$1" "$p")) >> 62) & 1)) && echo "$p"
}

# compressed_host FILE GUEST -> host byte offset of that compressed cluster's data
compressed_host() {
    local p
    p=$(compressed_entry "$1" "$2") || return 1
    cdesc_host "$1" "$(u64 "$1" "$p")"
}

# ---------------------------------------------------------------------------------------
# The cases (cases.txt): each copies its base to $C/img.qcow2 (C = the case directory,
# I = the image) and runs its edit. gen_fail records a variant that could not be built
# (its base did not have the expected layout).

CASES=()
declare -A FLAGS=() GENERR=()
cur="" C="" I=""

gen_fail() { GENERR[$cur]=$1; }
# with FILE.qcow2...: copies more base files into the case directory
with() {
    local f
    for f in "$@"; do cp "$bases/$f" "$C/$f"; done
}

build_case() {
    local name=$1 base=$2 qemu=$3 flags=$4 change=$5
    cur=$name
    C=$work/cases/$name
    I=$C/img.qcow2
    mkdir -p "$C"
    cp "$bases/$base.qcow2" "$I"
    CASES+=("$name")
    [ "$flags" = - ] && flags=""
    FLAGS[$name]=" q=$qemu ${flags//,/ } "
    if [ "$change" != - ] && ! eval "$change" 2>"$C/edit.err"; then
        [ -n "${GENERR[$name]:-}" ] || gen_fail "the edit failed: $change: $(head -n 1 "$C/edit.err")"
    fi
    rm -f "$C/edit.err"
}

while read -r name base qemu flags change; do
    case $name in "" | "#"*) continue ;; esac
    build_case "$name" "$base" "$qemu" "$flags" "$change"
done <"$here/cases.txt"

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
    if has_flag "$name" refuse-map; then
        ((rc_map == 1)) || fail_because "map-json: must refuse (exit 1), got exit $rc_map"
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
        pass "$1"
    else
        fail "$1" "${reasons[*]}"
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
    finish
fi
for name in "${CASES[@]}"; do
    [ -z "$ONLY" ] || [[ $name =~ $ONLY ]] || continue
    run_case "$name"
done
finish
