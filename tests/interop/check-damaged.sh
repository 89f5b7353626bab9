#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# check-damaged.sh - `qvet check` against `qemu-img check` on damaged images.
#
# A few images are made with qemu-img/qemu-io (4 KiB and 512 B clusters, data,
# a compressed cluster, a discarded range, an internal snapshot), then each case
# below damages a copy: truncations (inside the L1 table, an L2 table, the
# refcount table, a refcount block, the data, the snapshot table), refcounts
# too high, too low or zero, refcount table entries past the end of the file,
# L1/L2 entries past the end, unaligned or with reserved bits, wrong COPIED
# flags, snapshot table damage, the corrupt and dirty bits, and header damage
# that QEMU refuses to open. For every case and each of no repair, -r leaks and
# -r all, both programs run on their own copy (same file name, so the output
# can be compared as it is) and:
#
#   ro:CASE, leaks:CASE, all:CASE   exit status and stdout (--output=json, and
#                                   the human report) are the same; where
#                                   qemu-img cannot open the image, qvet prints
#                                   one "qvet: img.qcow2: ..." line and exits 1
#   unchanged:CASE                  a check without -r leaves the file as it was
#   after:CASE                      after -r all: where qemu-img check finds
#                                   QEMU's repaired image clean, it finds qvet's
#                                   clean too; and `qemu-img convert -O raw`
#                                   reads the same guest bytes from both
#
# Cases where QEMU's own repair gives up (its overlap check trips over the
# damage) are marked "qemu-repair-fails": there qvet must repair, and qemu-img
# check must then agree with qvet check on qvet's image. "qemu-rewrites-bitmaps":
# QEMU writes the persistent bitmaps anew when it closes the repaired image (a
# bitmap table entry past the end of the file goes away with it); qvet does not
# maintain bitmaps, so there the two checkers must just agree on qvet's image.
#
# Every comparison prints "PASS name" or "FAIL name: reason"; the last line is
# "N passed, M failed". Exit status 1 if anything failed.
#
# Environment: QVET (default build/qvet), KEEP=1 keeps the work directory,
# ONLY=REGEX runs only the cases whose name matches.
set -u

NAME=check-damaged
# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ONLY=${ONLY:-}
require qemu-img qemu-io od dd cmp

# ---- reading and patching images ---------------------------------------------

COPIED=$((1 << 63))
OFFSET_MASK=$((0x00FFFFFFFFFFFE00))

cs_of() { echo $((1 << $(u32 "$1" 20))); }
l1_of() { u64 "$1" 40; }
reftable_of() { u64 "$1" 48; }
size_of() { stat -c %s "$1"; }

# l2_of FILE I: host offset of the L2 table behind active L1 entry I
l2_of() { echo $(($(u64 "$1" $(($(l1_of "$1") + 8 * $2))) & OFFSET_MASK)); }

# l2e_at FILE I J: byte offset of entry J of that L2 table
l2e_at() { echo $(($(l2_of "$1" "$2") + 8 * $3)); }

# rc_at FILE CLUSTER: byte offset of the cluster's 16-bit refcount
rc_at() {
  local f=$1 k=$2 cb
  cb=$(u32 "$f" 20)
  local block
  block=$(($(u64 "$f" $(($(reftable_of "$f") + 8 * (k >> (cb - 1))))) & OFFSET_MASK))
  echo $((block + 2 * (k & ((1 << (cb - 1)) - 1))))
}

# snap_at FILE: byte offset of the first snapshot table entry
snap_at() { u64 "$1" 64; }

# ---- base images ---------------------------------------------------------------

mkdir -p "$WORK/base"
base() { echo "$WORK/base/$1.qcow2"; }

# 4 KiB clusters: data, a compressed cluster, a discarded range (free clusters in
# the file), a snapshot, then writes that unshare part of the tree.
make_bases() {
  local b
  b=$(base b4k)
  qemu-img create -q -f qcow2 -o cluster_size=4k "$b" 8M &&
    qemu-io -c 'write -P 1 0 192k' -c 'write -c -P 2 1M 64k' -c 'write -P 3 2M 64k' \
      -c 'discard 64k 64k' "$b" >/dev/null &&
    qemu-img snapshot -c first "$b" &&
    qemu-io -c 'write -P 4 0 16k' -c 'write -P 5 3M 8k' "$b" >/dev/null || return 1
  b=$(base b512)
  qemu-img create -q -f qcow2 -o cluster_size=512 "$b" 1M &&
    qemu-io -c 'write -P 1 0 20k' -c 'write -c -P 2 100k 512' "$b" >/dev/null &&
    qemu-img snapshot -c s "$b" &&
    qemu-io -c 'write -P 3 0 2k' "$b" >/dev/null || return 1
  b=$(base v2)
  qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k "$b" 8M &&
    qemu-io -c 'write -P 1 0 100k' -c 'write -P 2 5M 4k' "$b" >/dev/null || return 1
  # Lazy refcounts, left dirty by an abort: refcounts stale, the dirty bit set.
  b=$(base dirty)
  qemu-img create -q -f qcow2 -o cluster_size=4k,lazy_refcounts=on "$b" 8M &&
    qemu-io -c 'write -P 7 0 64k' "$b" >/dev/null || return 1
  qemu-io -c 'write -P 1 64k 128k' -c 'write -P 2 1M 64k' -c abort "$b" >/dev/null 2>&1
  [ $(($(u64 "$b" 72) & 1)) = 1 ] || return 1
  # Two persistent bitmaps (QEMU keeps them up to date through the second write).
  b=$(base bitmaps)
  qemu-img create -q -f qcow2 -o cluster_size=4k "$b" 8M &&
    qemu-io -c 'write -P 1 0 64k' "$b" >/dev/null &&
    qemu-img bitmap --add "$b" b0 && qemu-img bitmap --add "$b" b1 &&
    qemu-io -c 'write -P 2 1M 64k' "$b" >/dev/null || return 1
  b=$(base extl2)
  qemu-img create -q -f qcow2 -o cluster_size=32k,extended_l2=on "$b" 8M &&
    qemu-io -c 'write -P 1 0 100k' -c 'write -P 2 1M 4k' -c 'write -z 2M 64k' "$b" >/dev/null ||
    return 1
  # An overlay whose backing file is gone.
  qemu-img create -q -f qcow2 "$WORK/base/gone.qcow2" 8M &&
    qemu-img create -q -f qcow2 -b gone.qcow2 -F qcow2 "$(base orphan)" &&
    rm -f "$WORK/base/gone.qcow2"
}

# ---- the damage -------------------------------------------------------------------

# Each d_NAME FILE damages FILE (a copy of its base, named by the case list).

d_clean() { :; }
d_trunc_l1() { truncate -s $(($(l1_of "$1") + 8)) "$1"; }
d_trunc_l2() { truncate -s $(($(l2_of "$1" 0) + $(cs_of "$1") / 2)) "$1"; }
d_trunc_reftable() { truncate -s $(($(reftable_of "$1") + 4)) "$1"; }
d_trunc_refblock() { truncate -s $(($(u64 "$1" "$(reftable_of "$1")") + 100)) "$1"; }
d_trunc_data() { truncate -s $(($(size_of "$1") / 2)) "$1"; }
d_trunc_snapshots() { truncate -s $(($(snap_at "$1") + 20)) "$1"; }
d_trunc_to_header() { truncate -s "$(cs_of "$1")" "$1"; }
d_trunc_tail() { truncate -s $(($(size_of "$1") - 100)) "$1"; }

# A cluster appended to the file with refcount 1: leaked.
d_leak() {
  local f=$1 cs k
  cs=$(cs_of "$f")
  k=$((($(size_of "$f") + cs - 1) / cs))
  truncate -s $(((k + 1) * cs)) "$f"
  put "$f" "$(rc_at "$f" "$k")" 2 1
}
d_refcount_high() { put "$1" "$(rc_at "$1" $(($(l1_of "$1") / $(cs_of "$1"))))" 2 2; }
# The L2 table the snapshot shares (active L1 entry 1 of b4k) has refcount 2.
d_refcount_low() { put "$1" "$(rc_at "$1" $(($(l2_of "$1" 1) / $(cs_of "$1"))))" 2 1; }
d_refcount_zero() {
  local data
  data=$(($(u64 "$1" "$(l2e_at "$1" 0 2)") & OFFSET_MASK))
  put "$1" "$(rc_at "$1" $((data / $(cs_of "$1"))))" 2 0
}
d_reftable_entry_past_eof() { put "$1" $(($(reftable_of "$1") + 8)) 8 $((0x7F0000)); }
d_reftable_entry0_past_eof() { put "$1" "$(reftable_of "$1")" 8 $((1 << 40)); }
d_reftable_entry_unaligned() {
  put "$1" "$(reftable_of "$1")" 8 $(($(u64 "$1" "$(reftable_of "$1")") + 512))
}
d_reftable_entry_reserved() {
  put "$1" "$(reftable_of "$1")" 8 $(($(u64 "$1" "$(reftable_of "$1")") | 1))
}
d_reftable_past_eof() { put "$1" 48 8 $((1 << 24)); }
d_reftable_clusters_zero() { put "$1" 56 4 0; }
d_l1_past_eof() { put "$1" 40 8 $((1 << 24)); }
d_l1_entry_past_eof() { put "$1" "$(l1_of "$1")" 8 $((COPIED | (1 << 40))); }
d_l1_entry_unaligned() {
  put "$1" "$(l1_of "$1")" 8 $(($(u64 "$1" "$(l1_of "$1")") + 512))
}
d_l1_entry_reserved() {
  put "$1" "$(l1_of "$1")" 8 $(($(u64 "$1" "$(l1_of "$1")") | (1 << 57)))
}
d_l2_entry_past_eof() { put "$1" "$(l2e_at "$1" 0 40)" 8 $((COPIED | (1 << 32))); }
d_l2_entry_unaligned() {
  local at
  at=$(l2e_at "$1" 0 0)
  put "$1" "$at" 8 $(($(u64 "$1" "$at") + 512))
}
d_l2_entry_reserved() {
  local at
  at=$(l2e_at "$1" 0 2)
  put "$1" "$at" 8 $(($(u64 "$1" "$at") | 2))
}
d_copied_cleared() {
  local at
  at=$(l2e_at "$1" 0 0)
  put "$1" "$at" 8 $(($(u64 "$1" "$at") & ~COPIED))
}
# b4k's compressed cluster (guest 1M: L2 entry 256 of table 0) moved past the end.
d_compressed_past_eof() {
  local at
  at=$(l2e_at "$1" 0 256)
  put "$1" "$at" 8 $((($(u64 "$1" "$at") & ~((1 << 48) - 1)) | (1 << 40)))
}
d_snap_count_more() { put "$1" 60 4 $(($(u32 "$1" 60) + 2)); }
d_snap_count_huge() { put "$1" 60 4 70000; }
d_snap_offset_unaligned() { put "$1" 64 8 $(($(snap_at "$1") + 512)); }
d_snap_offset_past_eof() { put "$1" 64 8 $((1 << 24)); }
d_snap_extra_too_big() { put "$1" $(($(snap_at "$1") + 36)) 4 2000; }
d_snap_l1_unaligned() { put "$1" "$(snap_at "$1")" 8 $(($(u64 "$1" "$(snap_at "$1")") + 512)); }
d_snap_l1_past_eof() { put "$1" "$(snap_at "$1")" 8 $((1 << 30)); }
d_snap_l1_too_large() { put "$1" $(($(snap_at "$1") + 8)) 4 $((1 << 23)); }
BITMAPS_EXT=$((0x23852875))
bitmap_dir_of() { u64 "$1" $(($(ext_data "$1" $BITMAPS_EXT) + 16)); }
# bitmap_table_of FILE: the bitmap table of the first directory entry
bitmap_table_of() { u64 "$1" "$(bitmap_dir_of "$1")"; }

d_bitmap_dir_past_eof() { put "$1" $(($(ext_data "$1" $BITMAPS_EXT) + 16)) 8 $((1 << 30)); }
d_bitmap_entry_reserved() { put "$1" "$(bitmap_table_of "$1")" 8 $((0x1000 | 2)); }
d_bitmap_entry_past_eof() { put "$1" "$(bitmap_table_of "$1")" 8 $((1 << 40)); }
d_corrupt_bit() { put "$1" 72 8 $(($(u64 "$1" 72) | 2)); }
d_reftable_offset_unaligned() { put "$1" 48 8 $(($(reftable_of "$1") + 512)); }
d_l1_offset_unaligned() { put "$1" 40 8 $(($(l1_of "$1") + 512)); }
d_l1_size_too_small() { put "$1" 36 4 1; }

# CASE BASE [FLAGS]: the damage d_CASE (dashes for underscores) applied to BASE.
CASES="
clean b4k
clean v2
trunc-l1 b4k
trunc-l2 b4k
trunc-l2 b512
trunc-reftable b4k
trunc-refblock b4k
trunc-data b4k
trunc-data b512
trunc-snapshots b4k
trunc-to-header b4k qemu-repair-fails
trunc-tail v2
leak b4k
leak v2
refcount-high b4k
refcount-low b4k
refcount-zero b4k
refcount-zero v2
reftable-entry-past-eof b4k
reftable-entry0-past-eof b4k
reftable-entry-unaligned b4k qemu-repair-fails
reftable-entry-reserved b4k qemu-repair-fails
reftable-past-eof b4k
reftable-clusters-zero b4k
l1-past-eof b4k
l1-entry-past-eof b4k
l1-entry-unaligned b4k
l1-entry-reserved b4k
l2-entry-past-eof b4k
l2-entry-unaligned b4k
l2-entry-reserved b4k
copied-cleared b4k
compressed-past-eof b4k
snap-count-more b4k
snap-count-more b512
snap-count-huge b4k qemu-repair-fails
snap-offset-unaligned b4k
snap-offset-past-eof b4k
snap-extra-too-big b4k
snap-l1-unaligned b4k
snap-l1-past-eof b4k
snap-l1-too-large b4k qemu-repair-fails
bitmap-dir-past-eof bitmaps
bitmap-entry-reserved bitmaps
bitmap-entry-past-eof bitmaps qemu-rewrites-bitmaps
trunc-l2 extl2
l2-entry-past-eof extl2
leak extl2
corrupt-bit b4k
clean dirty
reftable-offset-unaligned b4k
l1-offset-unaligned b4k
l1-size-too-small b4k
clean orphan
"

# ---- running both checkers -----------------------------------------------------------

# run TOOL DIR ARGS...: `TOOL check ARGS img.qcow2` inside DIR; out, err, rc there
run() {
  local tool=$1 dir=$2
  shift 2
  local rc=0
  if [ "$tool" = qemu ]; then
    (cd "$dir" && qemu-img check "$@" img.qcow2 >out 2>err) || rc=$?
  else
    (cd "$dir" && "$QVET" check "$@" img.qcow2 >out 2>err) || rc=$?
  fi
  echo "$rc" >"$dir/rc"
}

# fresh DIR FILE: DIR holds a copy of FILE as img.qcow2, nothing else
fresh() {
  rm -rf "$1" && mkdir -p "$1" && cp "$2" "$1/img.qcow2"
}

# compare NAME QDIR VDIR: same exit status and stdout; a refusal is one qvet line
compare() {
  local name=$1 q=$2 v=$3 qrc vrc
  qrc=$(cat "$q/rc")
  vrc=$(cat "$v/rc")
  if [ "$qrc" != "$vrc" ]; then
    fail "$name" "exit status $vrc, qemu-img check gives $qrc" "$v/err" "$q/err"
    return 1
  fi
  if ! cmp -s "$q/out" "$v/out"; then
    diff "$q/out" "$v/out" >"$v/diff"
    fail "$name" "stdout differs from qemu-img check's (< qemu-img, > qvet)" "$v/diff"
    return 1
  fi
  if grep -q '^qemu-img: Could not open' "$q/err"; then
    # qemu-img refuses to open it: so does qvet, with one line naming the file.
    if [ "$(wc -l <"$v/err")" != 1 ] || ! grep -q '^qvet: img.qcow2: ' "$v/err"; then
      fail "$name" "expected one 'qvet: img.qcow2: ...' line on stderr" "$v/err" "$q/err"
      return 1
    fi
  elif [ "$qrc" = 1 ] && [ ! -s "$q/out" ]; then
    # The check stopped part-way ("Check failed"): the findings, then one qvet line.
    if ! tail -n 1 "$v/err" | grep -q '^qvet: img.qcow2: '; then
      fail "$name" "expected the last stderr line to be 'qvet: img.qcow2: ...'" "$v/err"
      return 1
    fi
  fi
  pass "$name"
}

# convert_raw DIR: img.raw from img.qcow2 as QEMU reads it; non-zero if it cannot
convert_raw() {
  (cd "$1" && qemu-img convert -f qcow2 -O raw img.qcow2 img.raw >convert.err 2>&1)
}

# one_case CASE BASE FLAGS
one_case() {
  local case=$1 base_name=$2 flags=${3:-} label="$1/$2" d src
  d=$WORK/c/$case-$base_name
  mkdir -p "$d"
  src=$d/damaged.qcow2
  cp "$(base "$base_name")" "$src"
  if ! "d_${case//-/_}" "$src"; then
    fail "damage:$label" "harness: cannot damage the image"
    return
  fi

  # No repair: both output formats; the file must not change.
  local fmt mode
  for fmt in json human; do
    local args=()
    [ "$fmt" = json ] && args=(--output=json)
    fresh "$d/q" "$src" && fresh "$d/v" "$src"
    run qemu "$d/q" "${args[@]}"
    run qvet "$d/v" "${args[@]}"
    compare "ro:$label:$fmt" "$d/q" "$d/v"
    if [ "$fmt" = json ]; then
      if cmp -s "$src" "$d/v/img.qcow2"; then
        pass "unchanged:$label"
      else
        fail "unchanged:$label" "qvet check without -r changed the file"
      fi
    fi
  done

  for mode in leaks all; do
    for fmt in json human; do
      local args=(-r "$mode")
      [ "$fmt" = json ] && args+=(--output=json)
      fresh "$d/q" "$src" && fresh "$d/v" "$src"
      run qemu "$d/q" "${args[@]}"
      run qvet "$d/v" "${args[@]}"
      if [ "$mode" = all ] && [[ $flags == *qemu-repair-fails* ]]; then
        repair_qemu_fails "$mode:$label:$fmt" "$d/q" "$d/v"
      else
        compare "$mode:$label:$fmt" "$d/q" "$d/v"
      fi
    done
    [ "$mode" = all ] && after_repair "after:$label" "$d/q" "$d/v" "$flags"
  done
}

# QEMU's repair gives up on this damage; qvet's must not, and must leave an image
# that qemu-img check judges as qvet check does.
repair_qemu_fails() {
  local name=$1 q=$2 v=$3
  if [ "$(cat "$q/rc")" != 1 ]; then
    fail "$name" "expected qemu-img check -r all to fail here (exit 1), it gave $(cat "$q/rc")" \
      "$q/err"
    return
  fi
  if [ "$(cat "$v/rc")" = 1 ]; then
    fail "$name" "qvet check -r all failed where it should repair" "$v/err"
    return
  fi
  agree_on "$name" "$v"
}

# agree_on NAME DIR: both checkers judge DIR/img.qcow2 alike
agree_on() {
  fresh "$2/again-q" "$2/img.qcow2" && fresh "$2/again-v" "$2/img.qcow2"
  run qemu "$2/again-q" --output=json
  run qvet "$2/again-v" --output=json
  compare "$1" "$2/again-q" "$2/again-v"
}

# after -r all (the last run was human output: its images are the repaired ones)
after_repair() {
  local name=$1 q=$2 v=$3 flags=$4 qpost vpost
  qpost=0
  vpost=0
  qemu-img check "$q/img.qcow2" >"$q/post" 2>&1 || qpost=$?
  qemu-img check "$v/img.qcow2" >"$v/post" 2>&1 || vpost=$?
  if [ "$qpost" = 0 ] && [ "$vpost" != 0 ]; then
    if [[ $flags == *qemu-rewrites-bitmaps* ]]; then
      agree_on "$name (QEMU rewrote the bitmaps on close; qvet keeps them)" "$v"
      return
    fi
    fail "$name" "qemu-img check finds QEMU's repaired image clean but qvet's not (exit $vpost)" \
      "$v/post"
    return
  fi
  local qconv=0 vconv=0
  convert_raw "$q" || qconv=1
  convert_raw "$v" || vconv=1
  if [ "$qconv" = 1 ] && [ "$vconv" = 1 ]; then
    pass "$name (qemu-img check: qemu $qpost, qvet $vpost; neither image converts)"
    return
  fi
  if [ "$qconv" != "$vconv" ]; then
    if [ "$qconv" = 1 ] && [[ $flags == *qemu-repair-fails* ]]; then
      pass "$name (qemu-img check: qvet $vpost; only qvet's repaired image converts)"
      return
    fi
    fail "$name" "qemu-img convert works on one repaired image only (qemu $qconv, qvet $vconv)" \
      "$q/convert.err" "$v/convert.err"
    return
  fi
  if cmp -s "$q/img.raw" "$v/img.raw"; then
    pass "$name (qemu-img check: qemu $qpost, qvet $vpost; same guest bytes)"
  else
    fail "$name" "the repaired images read differently ($(cmp "$q/img.raw" "$v/img.raw" | head -1))"
  fi
}

start=$(date +%s)
if ! make_bases >"$WORK/base.log" 2>&1; then
  fail "bases" "cannot build the base images with qemu-img/qemu-io" "$WORK/base.log"
else
  while read -r case base_name flags; do
    [ -n "$case" ] || continue
    if [ -n "$ONLY" ] && ! [[ $case/$base_name =~ $ONLY ]]; then
      continue
    fi
    one_case "$case" "$base_name" "$flags"
  done <<<"$CASES"
fi
echo "check-damaged: done in $(($(date +%s) - start))s" >&2
finish
