#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# resize.sh - qvet resize against qemu-img resize 7.2.
#
# Twins from one qemu-io script: qemu-img resize changes one, qvet resize the other,
# with the same arguments. Then: the same exit status, the same guest bytes
# (qemu-img convert of each, compared), the same map (offsets aside), the same file
# length, and qvet's twin clean under qemu-img check. Shrinking is followed by
# growing back, so the bytes the shrink dropped (or, in the partial last cluster,
# kept) show; with snapshots, each is applied afterwards and compared too.
#
# Last line: "N passed, M failed"; exit status 1 if anything failed.

# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# compare_twins NAME [exact-length]: the checks above on Q.qcow2 (QEMU's) and V.qcow2
# (qvet's). The file lengths are held equal only where asked: after the first shrink
# both files are laid out alike; later steps allocate in other orders (and QEMU's
# discard during a shrink can leave an empty L2 table behind).
compare_twins() {
  local name=$1 exact=${2:-}
  guest_bytes Q.qcow2 q.raw && guest_bytes V.qcow2 v.raw
  if ! cmp q.raw v.raw >detail 2>&1; then
    fail "$name" "guest bytes differ" detail
  elif ! diff <(map_without_offsets Q.qcow2) <(map_without_offsets V.qcow2) >detail; then
    fail "$name" "qemu-img map differs" detail
  elif [ -n "$exact" ] && [ "$(stat -c %s Q.qcow2)" != "$(stat -c %s V.qcow2)" ]; then
    fail "$name" "file length $(stat -c %s V.qcow2), qemu-img's $(stat -c %s Q.qcow2)"
  elif ! qemu-img check -q V.qcow2 >detail 2>&1; then
    fail "$name" "qemu-img check finds qvet's twin unclean" detail
  else
    pass "$name"
  fi
}

# twins OPTS SIZE [BACKING] -- QEMU-IO-COMMAND...: both images, written alike
twins() {
  local opts=$1 size=$2 backing=()
  shift 2
  if [ "$1" != -- ]; then
    backing=(-b "$1" -F qcow2)
    shift
  fi
  shift
  local args=() c
  for c in "$@"; do
    args+=(-c "$c")
  done
  rm -f Q.qcow2 V.qcow2
  qemu-img create -q -f qcow2 -o "$opts" "${backing[@]}" Q.qcow2 "$size" &&
    { [ ${#args[@]} = 0 ] || qemu-io -f qcow2 "${args[@]}" Q.qcow2 >/dev/null; } &&
    cp --sparse=never Q.qcow2 V.qcow2
}

# step NAME [exact-length] ARGS...: qemu-img resize ARGS on Q, qvet resize ARGS on V (IMG
# is the image)
step() {
  local name=$1 exact="" qrc vrc
  shift
  if [ "$1" = exact-length ]; then
    exact=$1
    shift
  fi
  qemu-img resize -q "${@/#IMG/Q.qcow2}" >q.out 2>&1
  qrc=$?
  "$QVET" resize -q "${@/#IMG/V.qcow2}" >v.out 2>&1
  vrc=$?
  if [ "$qrc" != "$vrc" ]; then
    { echo "qemu-img exited $qrc, qvet $vrc"; cat q.out v.out; } >detail
    fail "$name" "exit status differs" detail
    return 1
  fi
  compare_twins "$name" "$exact"
}

# shrink_and_grow LABEL OPTS SIZE [BACKING] -- SCRIPT... : shrink over data, then grow
shrink_and_grow() {
  local label=$1
  shift
  local opts=$1
  if ! twins "$@"; then
    fail "$label" "building the twins failed"
    return
  fi
  step "$label:shrink" exact-length --shrink IMG 1537k &&
    step "$label:grow" IMG 6M &&
    step "$label:relative-shrink" --shrink IMG -2560k &&
    step "$label:relative-grow" IMG +3M &&
    step "$label:shrink-to-cluster" --shrink IMG 1M
  case $opts in
    *compat=0.10* | *refcount_bits=1*) ;;        # no snapshots (v2) / no room for them
    *)
      qemu-img snapshot -c before Q.qcow2 && "$QVET" snapshot -c before V.qcow2 &&
        qemu-io -f qcow2 -c "write -P 0x77 512k 1M" Q.qcow2 >/dev/null &&
        "$QVET" io -c "write -P 0x77 512k 1M" V.qcow2 >/dev/null &&
        step "$label:shrink-with-snapshot" --shrink IMG 700k &&
        step "$label:grow-with-snapshot" IMG 5M &&
        qemu-img snapshot -a before Q.qcow2 && "$QVET" snapshot -a before V.qcow2 &&
        compare_twins "$label:snapshot-applied"
      ;;
  esac
}

for opts in cluster_size=64k cluster_size=4k cluster_size=512,refcount_bits=1 \
  extended_l2=on,cluster_size=64k compat=0.10,cluster_size=4k lazy_refcounts=on \
  refcount_bits=64,cluster_size=8k; do
  shrink_and_grow "data[$opts]" "$opts" 6M -- "write -P 1 0 6M" "write -z 2M 64k" \
    "discard 3M 128k"
done
shrink_and_grow "compressed" cluster_size=4k 6M -- "write -c -P 3 0 2M" \
  "write -P 4 2M 3M" "write -c -P 5 5M 4k"
shrink_and_grow "sparse" cluster_size=64k 6M -- "write -P 6 100k 10k" "write -P 7 4M 1M"

# Overlays: a grown area must read as zeros, not as the backing file's bytes.
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -f qcow2 -c "write -P 0x55 0 8M" base.qcow2 >/dev/null
shrink_and_grow "overlay" cluster_size=64k 6M "$WORK/base.qcow2" -- "write -P 1 1M 3M"
shrink_and_grow "overlay-4k" cluster_size=4k 6M "$WORK/base.qcow2" -- "write -z 0 6M"

# A copy-on-write of the partial last cluster after a shrink into its middle keeps what
# the old cluster held past the end of the disk, as QEMU's does: the grow after it shows
# those bytes again. The cluster is compressed, or shared with a snapshot.
# cow_after_mid_cluster_shrink LABEL compressed|snapshot
cow_after_mid_cluster_shrink() {
  local label=$1 write="write -c -P 0x71 0 16k" ok=0
  [ "$2" = snapshot ] && write="write -P 0x71 0 16k"
  twins cluster_size=16k 33792 -- "$write" && ok=1
  if [ $ok = 1 ] && [ "$2" = snapshot ]; then
    qemu-img snapshot -c s Q.qcow2 && cp --sparse=never Q.qcow2 V.qcow2 || ok=0
  fi
  if [ $ok = 0 ]; then
    fail "$label" "building the twins failed"
    return
  fi
  step "$label:shrink-mid-cluster" --shrink IMG 1024 &&
    qemu-io -f qcow2 -c "write -P 0x33 20 1004" Q.qcow2 >/dev/null &&
    "$QVET" io -c "write -P 0x33 20 1004" V.qcow2 >/dev/null &&
    compare_twins "$label:copy-on-write" &&
    step "$label:grow-after-copy-on-write" IMG 66560
}
cow_after_mid_cluster_shrink cow-tail-compressed compressed
cow_after_mid_cluster_shrink cow-tail-snapshot-shared snapshot

# ---- refusals: the same exit status as qemu-img, one line, the image unchanged -----------

# refused NAME EXPECTED-TEXT ARGS...: ARGS as in step; EXPECTED-TEXT in qvet's one line
# (QEMU_TOO=0: a refusal of qvet's own, not compared with qemu-img)
refused() {
  local name=$1 text=$2 qrc=1 vrc
  shift 2
  twins cluster_size=64k 4M -- "write -P 1 0 4M"
  cp V.qcow2 before.qcow2
  if [ "${QEMU_TOO:-1}" = 1 ]; then
    qemu-img resize "${@/#IMG/Q.qcow2}" >/dev/null 2>&1
    qrc=$?
  fi
  "$QVET" resize "${@/#IMG/V.qcow2}" >v.out 2>v.err
  vrc=$?
  if [ "$qrc" != 1 ] || [ "$vrc" != 1 ]; then
    fail "refused:$name" "expected both to exit 1: qemu-img $qrc, qvet $vrc" v.err
  elif [ "$(wc -l <v.err)" != 1 ] || ! grep -qF -- "$text" v.err; then
    echo "expected one line with: $text" >detail
    cat v.err >>detail
    fail "refused:$name" "not the expected one-line message" detail
  elif ! cmp -s V.qcow2 before.qcow2; then
    fail "refused:$name" "the refused resize changed the image"
  else
    pass "refused:$name"
  fi
}

refused shrink-without-flag "Use the --shrink option to perform a shrink operation" IMG 1M
refused relative-shrink-without-flag "Use the --shrink option to perform a shrink operation" \
  IMG -1M
refused not-positive "New image size must be positive" --shrink IMG -4M
refused zero "New image size must be positive" --shrink IMG 0
refused wraps "New image size must be positive" IMG 18446744073709551615
refused not-sector "The new size must be a multiple of 512" IMG 5000001
refused not-a-size "Parameter 'size' expects a non-negative number below 2^64" IMG 1x
refused too-large "out of range for parameter 'size'" IMG 20E
refused bad-preallocation "Invalid preallocation mode 'xx'" --preallocation=xx IMG 8M
# qemu-img would resize the file itself as a raw image; qvet handles qcow2 only.
QEMU_TOO=0 refused format-raw "-f raw is not supported" -f raw IMG 8M
refused arguments "expected IMAGE [+|-]SIZE" IMG

# v2 images with snapshots cannot be resized, in QEMU as in qvet.
twins compat=0.10 4M -- "write -P 1 0 1M"
qemu-img snapshot -c s Q.qcow2 && cp --sparse=never Q.qcow2 V.qcow2
qemu-img resize Q.qcow2 8M >/dev/null 2>&1
qrc=$?
"$QVET" resize V.qcow2 8M >/dev/null 2>v.err
vrc=$?
if [ "$qrc" = 1 ] && [ "$vrc" = 1 ] && [ "$(wc -l <v.err)" = 1 ]; then
  pass refused:v2-with-snapshots
else
  fail refused:v2-with-snapshots "qemu-img exited $qrc, qvet $vrc" v.err
fi

# Accepted as qemu-img accepts them: -f qcow2, --preallocation=off, hex, "Image resized."
twins cluster_size=64k 4M --
if [ "$("$QVET" resize -f qcow2 --preallocation=off V.qcow2 0x800000)" = "Image resized." ] &&
  [ "$(qemu-img info --output=json V.qcow2 | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')" = 8388608 ]; then
  pass accepted:options
else
  fail accepted:options "qvet resize -f qcow2 --preallocation=off IMG 0x800000 did not resize"
fi

finish
