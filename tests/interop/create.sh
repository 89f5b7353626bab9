#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# create.sh - qvet create next to qemu-img create -f qcow2 (7.2):
#
#   self:...      an image named as its own backing file is refused: exit 1, one qvet
#                 line, the file untouched. self:same-name is qemu-img's own rule (it
#                 refuses too); self:dot, self:absolute, self:symlink and
#                 self:other-directory spell the same file differently, which qemu-img
#                 7.2 does not catch (it overwrites the image) and qvet refuses
#   backing:...   a backing file that cannot be opened fails unless -u; with -u the
#                 size must be given; what qemu-img makes, qvet makes byte for byte
#   line:...      the "Formatting 'IMG', fmt=qcow2 ..." line is qemu-img's, byte for
#                 byte, for the same options (and -q prints nothing)
#   help:...      -o help and -o ? list the option keys qemu-img lists
#   size:twice    -o size=... and a SIZE argument together are refused by both
#
# Prints "PASS name" or "FAIL name: reason" per case and ends with "N passed, M failed";
# exits 1 if anything failed or nothing passed.
#
# Environment: QVET (default build/qvet under the repo root), KEEP=1 keeps the work
# directory.
set -u

NAME=create
# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# refused NAME FILE CMD...: CMD exits 1 with one qvet line on stderr and FILE unchanged
refused() {
  local name=$1 file=$2 before after rc
  shift 2
  before=$(md5sum <"$file")
  "$@" >v.out 2>v.err
  rc=$?
  after=$(md5sum <"$file")
  if [ "$rc" != 1 ]; then
    fail "$name" "exited $rc, expected 1 ($(head -n 1 v.err))"
  elif ! one_qvet_line v.err; then
    fail "$name" "not one qvet line: $(head -c 300 v.err)"
  elif [ "$before" != "$after" ]; then
    fail "$name" "the image was changed"
  else
    pass "$name"
  fi
}

# --- self-backed images ---------------------------------------------------------------

qemu-img create -q -f qcow2 e.qcow2 1M
qemu-io -c 'write -q -P 0x5a 0 64k' e.qcow2 >/dev/null
cp e.qcow2 q.qcow2
qemu-img create -f qcow2 -b q.qcow2 -F qcow2 q.qcow2 >/dev/null 2>&1
qrc=$?
if [ "$qrc" = 1 ] && qemu-img compare -q e.qcow2 q.qcow2; then
  refused self:same-name e.qcow2 "$QVET" create -b e.qcow2 -F qcow2 e.qcow2
else
  fail self:same-name "qemu-img's own refusal changed (exit $qrc): the reference is gone"
fi
refused self:same-name-with-size e.qcow2 "$QVET" create -b e.qcow2 -F qcow2 e.qcow2 1M
refused self:same-name-unsafe e.qcow2 "$QVET" create -u -b e.qcow2 -F qcow2 e.qcow2 1M
refused self:dot e.qcow2 "$QVET" create -b ./e.qcow2 -F qcow2 e.qcow2
refused self:absolute e.qcow2 "$QVET" create -b "$WORK/e.qcow2" -F qcow2 e.qcow2
ln -s e.qcow2 link.qcow2
refused self:symlink e.qcow2 "$QVET" create -b link.qcow2 -F qcow2 e.qcow2
mkdir sub
cp e.qcow2 sub/e.qcow2
# the backing name is relative to the new image's directory: sub/e.qcow2 itself
refused self:other-directory sub/e.qcow2 "$QVET" create -b e.qcow2 -F qcow2 sub/e.qcow2
refused self:option-spelling e.qcow2 "$QVET" create -o backing_file=./e.qcow2,backing_fmt=qcow2 e.qcow2
# qvet also refuses a new file that would name itself as its backing file
"$QVET" create -u -b ./new.qcow2 -F qcow2 new.qcow2 1M >v.out 2>v.err
if [ $? = 1 ] && [ ! -e new.qcow2 ]; then
  pass self:new-file
else
  fail self:new-file "expected exit 1 and no file"
fi
if qemu-img check -q e.qcow2 2>/dev/null && qemu-img compare -q -F qcow2 e.qcow2 q.qcow2 2>/dev/null; then
  pass self:image-intact
else
  fail self:image-intact "e.qcow2 no longer holds its data"
fi

# --- backing files that must be opened ------------------------------------------------

# both NAME ARGS...: qemu-img create -f qcow2 ARGS q.qcow2 and qvet create ARGS v.qcow2
# (the word IMG in ARGS stands for each one's image) agree in exit status, in stdout
# but for the image name, and in the bytes of the image
both() {
  local name=$1 qrc vrc
  shift
  rm -f q.qcow2 v.qcow2
  qemu-img create -f qcow2 "${@//IMG/q.qcow2}" >q.out 2>q.err
  qrc=$?
  "$QVET" create "${@//IMG/v.qcow2}" >v.out 2>v.err
  vrc=$?
  sed -i "s/'q.qcow2'/'IMG'/" q.out
  sed -i "s/'v.qcow2'/'IMG'/" v.out
  if [ "$qrc" != "$vrc" ]; then
    fail "$name" "qvet exited $vrc, qemu-img $qrc ($(head -n 1 v.err))"
  elif [ "$qrc" = 0 ] && ! cmp -s q.out v.out; then
    fail "$name" "stdout differs: qemu-img '$(head -c 300 q.out)', qvet '$(head -c 300 v.out)'"
  elif [ "$qrc" = 0 ] && ! cmp -s q.qcow2 v.qcow2; then
    fail "$name" "qvet wrote other bytes than qemu-img"
  elif [ "$qrc" != 0 ] && { [ -e v.qcow2 ] || ! one_qvet_line v.err; }; then
    fail "$name" "a refusal must leave no file and print one line: $(head -c 300 v.err)"
  else
    pass "$name"
  fi
}

qemu-img create -q -f qcow2 b.qcow2 3M
qemu-img create -q -f raw b.raw 2M
qemu-img create -q -f qcow2 -u -b gone.qcow2 -F qcow2 orphan.qcow2 1M
both backing:missing -b missing.qcow2 -F qcow2 IMG 1M
both backing:missing-no-size -b missing.qcow2 -F qcow2 IMG
both backing:missing-unsafe -u -b missing.qcow2 -F qcow2 IMG 1M
both backing:missing-unsafe-no-size -u -b missing.qcow2 -F qcow2 IMG
both backing:broken-chain -b orphan.qcow2 -F qcow2 IMG 1M
both backing:size-from-qcow2 -b b.qcow2 -F qcow2 IMG
both backing:size-from-raw -b b.raw -F raw IMG
head -c 1000 b.raw >odd.raw     # not a multiple of 512: QEMU rounds the size up
both backing:size-from-odd-raw -b odd.raw -F raw IMG
both backing:size-given -b b.qcow2 -F qcow2 IMG 5M
both backing:unsafe-existing -u -b b.qcow2 -F qcow2 IMG 5M
both backing:no-format -b b.qcow2 IMG 1M
both backing:option-form -o backing_file=b.qcow2,backing_fmt=qcow2 IMG

# --- the Formatting line --------------------------------------------------------------

for o in cluster_size=4k compat=0.10 compat=v2 compat=v3 compat=1.1,preallocation=metadata \
  lazy_refcounts=yes,refcount_bits=8 lazy_refcounts extended_l2=on,compression_type=zstd \
  preallocation=off refcount_bits=64,cluster_size=2M cluster_size=65536,cluster_size=512 \
  compat=1.1,compat=0.10 extended_l2=true,cluster_size=16k size=3M \
  'backing_file=b.qcow2,backing_fmt=qcow2,size=1M' lazy_refcounts=off,extended_l2=off; do
  if [ "$o" = size=3M ] || [ "${o%size=1M}" != "$o" ]; then
    both "line:$o" -o "$o" IMG
  else
    both "line:$o" -o "$o" IMG 1M
  fi
done
both line:size-1000 IMG 1000
both line:two-o -o cluster_size=4k -o lazy_refcounts=on IMG 2M
both line:commas-in-name -u -b 'a,b.qcow2' -F qcow2 IMG 1M
both line:quiet -q -o cluster_size=4k IMG 1M

# --- -o help ---------------------------------------------------------------------------

# keys FILE: the first line and the "key=<type>" column of an option list (the
# descriptions are each program's own words)
keys() {
  head -n 1 "$1"
  sed -n 's/^  \([^ ]*=<[^>]*>\) .*/\1/p' "$1"
}

# help_case NAME ARGS...: the same heading and option keys with their value types, the
# same exit status; no image made
help_case() {
  local name=$1 qrc vrc
  shift
  rm -f h.qcow2
  qemu-img create -f qcow2 "$@" >q.out 2>&1
  qrc=$?
  "$QVET" create "$@" >v.out 2>v.err
  vrc=$?
  keys q.out >q.keys
  keys v.out >v.keys
  if [ "$qrc" != "$vrc" ] || ! cmp -s q.keys v.keys || [ "$(wc -l <q.keys)" -lt 2 ]; then
    fail "$name" "qemu-img exited $qrc, qvet $vrc: $(diff q.keys v.keys | head -n 4 | tr '\n' '|')"
  elif [ -e h.qcow2 ]; then
    fail "$name" "asking for help created the image"
  else
    pass "$name"
  fi
}

help_case help:bare -o help
help_case help:question -o '?'
help_case help:with-file -o help h.qcow2 1M
help_case help:after-options -o cluster_size=4k,help
help_case help:second-o -o cluster_size=4k -o help h.qcow2
help_case help:before-bad -o help,nosuch=1

# --- size given twice ------------------------------------------------------------------

both size:twice -o size=2M IMG 1M

finish
