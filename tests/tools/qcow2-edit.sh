#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# qcow2-edit against images qemu-img made: every field it reads is the value at the
# field's offset, every edit changes exactly the bytes it names (and QEMU sees the
# change), and what it cannot do ends in one line with exit 1 (2 for usage).
#
# Environment: QCOW2_EDIT (default build/tests/qcow2-edit), KEEP=1.
set -u
NAME=qcow2-edit
# shellcheck source=../lib/qvet-test.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/qvet-test.sh"
EDIT=${QCOW2_EDIT:-$ROOT/build/tests/qcow2-edit}
require qemu-img cmp od dd
[ -x "$EDIT" ] || { echo "$NAME: no qcow2-edit at $EDIT (run make)" >&2; exit 1; }
EDIT=$(realpath "$EDIT")        # the cases run in the work directory
work_dir "$NAME"
cd "$WORK" || exit 1

qemu-img create -q -f qcow2 -o cluster_size=4k v3.qcow2 1M
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
qemu-img create -q -f qcow2 ft.qcow2 1M       # 64 KiB clusters: with a feature table

# get FIELD == the big-endian value at its offset
ok=1
for f in "magic 0 4" "version 4 4" "cluster_bits 20 4" "size 24 8" "l1_size 36 4" \
         "l1_table_offset 40 8" "refcount_table_offset 48 8" "refcount_table_clusters 56 4" \
         "incompatible_features 72 8" "refcount_order 96 4" "header_length 100 4" \
         "compression_type 104 1"; do
  read -r field off len <<<"$f"
  got=$("$EDIT" v3.qcow2 get "$field")
  want=$(be v3.qcow2 "$off" "$len")
  [ "$got" = "$want" ] || { ok=0; fail "get:$field" "expected $want (offset $off), got $got"; }
done
((ok)) && pass "get:fields"

# set changes exactly the field's bytes: "offset:new byte in octal" for each
changed_bytes() {
  cmp -l v3.qcow2 e.qcow2 | awk '{printf "%d:%s ", $1 - 1, $3}'
}
edited() {
  local name=$1 want_bytes=$2
  shift 2
  cp v3.qcow2 e.qcow2
  if ! "$EDIT" e.qcow2 "$@" 2>err; then
    fail "$name" "qcow2-edit $* failed" err
  elif [ "$(changed_bytes)" != "$want_bytes" ]; then
    fail "$name" "expected the changed bytes (offset:octal) '$want_bytes', got '$(changed_bytes)'"
  else
    pass "$name"
  fi
}
edited set:cluster_bits "23:26 " set cluster_bits 22
edited set:hex "3:372 " set magic 0x514649fa
edited set:negative-fills-the-width "104:377 " set compression_type -1
edited add:l1_table_offset "46:62 " add l1_table_offset 512
edited set-feature:incompatible "79:40 " set-feature incompatible 0x20
edited padding-byte-109 "109:132 " set padding 0x5a0000

cp v3.qcow2 e.qcow2
if "$EDIT" e.qcow2 set-feature incompatible 0x1 && ! cmp -s v3.qcow2 e.qcow2 &&
   "$EDIT" e.qcow2 clear-feature incompatible 0x1 && cmp -s v3.qcow2 e.qcow2; then
  pass clear-feature
else
  fail clear-feature "set-feature then clear-feature did not give the image back"
fi

# qemu-img sees an edit
cp v3.qcow2 e.qcow2
"$EDIT" e.qcow2 set cluster_bits 22
if qemu-img info e.qcow2 >/dev/null 2>err; then
  fail qemu-sees-edit "qemu-img info opened an image with cluster_bits 22"
else
  pass qemu-sees-edit
fi

# extensions: the feature table qemu-img writes, a new one before the end marker
ft=$("$EDIT" ft.qcow2 ext 0x6803f857)
if [ -n "$ft" ] && [ "$ft" = "$(ext_find ft.qcow2 $((0x6803F857)))" ]; then pass ext:feature-table; else
  fail ext:feature-table "expected offset $(ext_find ft.qcow2 $((0x6803F857))), got $ft"; fi
cp v3.qcow2 e.qcow2
"$EDIT" e.qcow2 add-ext 0x12345678 616263
at=$(ext_find e.qcow2 $((0x12345678)))
if [ -n "$at" ] && [ "$(u32 e.qcow2 $((at + 4)))" = 3 ] && [ "$(be e.qcow2 $((at + 8)) 3)" = $((0x616263)) ] &&
   [ "$(u32 e.qcow2 $((at + 16)))" = 0 ] && qemu-img info e.qcow2 >/dev/null; then
  pass add-ext
else
  fail add-ext "extension 0x12345678 not found as written (at '${at:-none}')"
fi
"$EDIT" e.qcow2 set-ext-len 0x12345678 4096
if [ "$(u32 e.qcow2 $((at + 4)))" = 4096 ]; then pass set-ext-len; else
  fail set-ext-len "length field is $(u32 e.qcow2 $((at + 4)))"; fi
v2fmt=$(qemu-img create -q -f qcow2 -o compat=0.10 -b v3.qcow2 -F qcow2 ov2.qcow2 &&
        "$EDIT" ov2.qcow2 ext 0xE2792ACA)
if [ "$v2fmt" = 72 ]; then pass ext:version-2; else fail ext:version-2 "expected 72, got $v2fmt"; fi

# dump names every field of the version
if "$EDIT" v3.qcow2 dump | grep -q '^header_length *112 ' &&
   ! "$EDIT" v2.qcow2 dump | grep -q '^header_length' &&
   "$EDIT" ft.qcow2 dump | grep -q '^extension 0x6803f857 at '; then
  pass dump
else
  fail dump "fields or extensions missing"
fi

# refusals: one line, status 1 (2 for usage), the image unchanged
refused() {
  local name=$1 want=$2
  shift 2
  cp v2.qcow2 e.qcow2
  "$EDIT" "$@" >out 2>err
  local rc=$?
  if [ "$rc" != "$want" ] || [ "$(wc -l <err)" != 1 ] || ! cmp -s v2.qcow2 e.qcow2; then
    fail "refuse:$name" "expected exit $want, one line and no change; got exit $rc" err
  else
    pass "refuse:$name"
  fi
}
refused unknown-field 2 e.qcow2 set no_such_field 1
refused v2-feature-word 1 e.qcow2 set-feature incompatible 1
refused missing-extension 1 e.qcow2 ext 0x23852875
refused bad-number 2 e.qcow2 set size 12x
refused odd-hex 1 e.qcow2 add-ext 0x1 abc
refused missing-file 1 no-such.qcow2 dump
finish
