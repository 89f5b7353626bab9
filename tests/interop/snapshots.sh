#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# snapshots.sh - qvet selects snapshots exactly as qemu-img 7.2 does.
#
# One image, made by qemu-img and qemu-io, whose ids and names collide:
#
#   id 1 named "2", id 2 named "1", ids 3 and 4 both named "dup", id 5 named "10"
#
# (guest byte 0 of each snapshot is its id; of the active state, 0x09). Then, for each
# key, qvet and qemu-img run on twin copies and must agree:
#
#   apply:KEY    qvet snapshot -a KEY  vs qemu-img snapshot -a KEY: exit status, and the
#                active state afterwards (qemu-img compare of the twins)
#   delete:KEY   qvet snapshot -d KEY  vs qemu-img snapshot -d KEY: exit status, and the
#                snapshot table afterwards (qemu-img snapshot -l of the twins)
#   cat:SEL      qvet cat -s SEL       vs qemu-img convert -O raw -l SEL: exit status and
#                bytes (SEL: a key, or snapshot.id=...,snapshot.name=...)
#   cat@:KEY     qvet cat IMAGE@KEY    vs the same
#   list:...     qvet snapshot -l      vs qemu-img snapshot -l, byte for byte, in two time
#                zones, on images without snapshots and with snapshots qvet made
#   message:...  a refusal is one "qvet: " line
#
# Prints "PASS name" or "FAIL name: reason" per case and ends with "N passed, M failed";
# exits 1 if anything failed or nothing passed.
#
# Environment: QVET (default build/qvet under the repo root), KEEP=1 keeps the work
# directory.
set -u

NAME=snapshots
# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# --- the image ------------------------------------------------------------------

qemu-img create -q -f qcow2 base.qcow2 1M
id=0
for name in 2 1 dup dup 10; do
  id=$((id + 1))
  qemu-io -c "write -q -P $id 0 64k" base.qcow2 >/dev/null
  qemu-img snapshot -c "$name" base.qcow2
done
qemu-io -c "write -q -P 9 0 64k" base.qcow2 >/dev/null
if [ "$(qemu-img snapshot -l base.qcow2 | awk 'NR > 2 { printf "%s=%s ", $1, $2 }')" != \
  "1=2 2=1 3=dup 4=dup 5=10 " ]; then
  echo "snapshots.sh: qemu-img did not build the expected table" >&2
  exit 1
fi

# table IMG: "ID=NAME ..." of the snapshot table
table() {
  qemu-img snapshot -l "$1" | awk 'NR > 2 { printf "%s=%s ", $1, $2 }'
}

# --- snapshot -a and -d -------------------------------------------------------------

# twin_case NAME OPTION KEY: qemu-img snapshot OPTION KEY on one copy of the image, qvet on
# another; the same exit status, a sound image after success, one line and no change
# after a refusal, and the same result (OPTION -a: the active state, -d: the table)
twin_case() {
  local name=$1 option=$2 key=$3 qrc vrc
  cp base.qcow2 q.qcow2
  cp base.qcow2 v.qcow2
  qemu-img snapshot "$option" "$key" q.qcow2 >q.out 2>&1
  qrc=$?
  "$QVET" snapshot "$option" "$key" v.qcow2 >v.out 2>v.err
  vrc=$?
  if [ "$qrc" != "$vrc" ]; then
    fail "$name" "qvet exited $vrc, qemu-img $qrc ($(head -n 1 v.err))"
  elif [ "$qrc" = 0 ] && ! qemu-img check -q v.qcow2; then
    fail "$name" "qemu-img check fails on qvet's image"
  elif [ "$qrc" != 0 ] && ! one_qvet_line v.err; then
    fail "$name" "the refusal is not one qvet line: $(head -c 300 v.err)"
  elif [ "$qrc" != 0 ] && ! cmp -s base.qcow2 v.qcow2; then
    fail "$name" "a refused $option changed the image"
  elif [ "$option" = -a ] && ! qemu-img compare -q -f qcow2 -F qcow2 q.qcow2 v.qcow2; then
    fail "$name" "the active state differs from qemu-img's after applying"
  elif [ "$(table q.qcow2)" != "$(table v.qcow2)" ]; then
    fail "$name" "tables differ: qemu-img leaves '$(table q.qcow2)', qvet '$(table v.qcow2)'"
  else
    pass "$name"
  fi
}

for key in 1 2 3 4 5 10 dup nope 01; do
  twin_case "apply:$key" -a "$key"
done
for key in 1 2 3 4 5 10 dup nope; do
  twin_case "delete:$key" -d "$key"
done

# --- cat -s / IMAGE@SNAP against convert -l -----------------------------------------

# reference SEL: qemu-img's bytes for SEL into q.raw, its exit status in $qrc
reference() {
  rm -f q.raw
  qemu-img convert -O raw -l "$1" base.qcow2 q.raw >q.out 2>&1
  qrc=$?
}

# compare_cat NAME: qvet's v.raw / $vrc / v.err against reference's
compare_cat() {
  if [ "$qrc" != "$vrc" ]; then
    fail "$1" "qvet exited $vrc, qemu-img $qrc ($(head -n 1 v.err))"
  elif [ "$qrc" = 0 ] && ! cmp -s q.raw v.raw; then
    fail "$1" "qvet read other bytes than qemu-img convert -l"
  elif [ "$qrc" != 0 ] && ! one_qvet_line v.err; then
    fail "$1" "the refusal is not one qvet line: $(head -c 300 v.err)"
  else
    pass "$1"
  fi
}

# the commas belong to the selectors
# shellcheck disable=SC2054
selectors=(1 2 3 4 5 10 dup nope 01 ''
  snapshot.id=1 snapshot.id=2 snapshot.name=1 snapshot.name=2 snapshot.name=dup
  snapshot.name=10 snapshot.id=10
  snapshot.id=1,snapshot.name=2 snapshot.id=1,snapshot.name=1
  snapshot.id=3,snapshot.name=dup snapshot.id=4,snapshot.name=dup
  snapshot.name=dup,snapshot.id=4 snapshot.id=1,snapshot.id=2 'snapshot.id=2,'
  'snapshot.id=2,,' 'snapshot.name=a,,b' snapshot.id snapshot.foo=1 snapshot.
  'snapshot.id=4,snapshot.name=dup,snapshot.foo=x' foo=bar)
for sel in "${selectors[@]}"; do
  reference "$sel"
  "$QVET" cat -s "$sel" base.qcow2 >v.raw 2>v.err
  vrc=$?
  compare_cat "cat:'$sel'"
done

for key in 1 2 dup 10 nope snapshot.id=4,snapshot.name=dup; do
  reference "$key"
  "$QVET" cat "base.qcow2@$key" >v.raw 2>v.err
  vrc=$?
  compare_cat "cat@:$key"
done

# --- snapshot -l --------------------------------------------------------------------

# list_case NAME IMG: the two listings of IMG are the same bytes, in two time zones
list_case() {
  local tz ok=1
  for tz in UTC Asia/Kolkata; do
    TZ=$tz qemu-img snapshot -l "$2" >q.list 2>&1
    TZ=$tz "$QVET" snapshot -l "$2" >v.list 2>v.err
    if ! cmp -s q.list v.list; then
      fail "$1" "TZ=$tz: $(diff q.list v.list | head -n 4 | tr '\n' '|')"
      ok=0
      break
    fi
  done
  [ "$ok" = 1 ] && pass "$1"
}

list_case list:colliding base.qcow2
qemu-img create -q -f qcow2 empty.qcow2 1M
list_case list:no-snapshots empty.qcow2
cp empty.qcow2 made.qcow2
for name in first "with space" 123456789012345678901234567890; do
  "$QVET" snapshot -c "$name" made.qcow2
done
list_case list:made-by-qvet made.qcow2

"$QVET" snapshot -l missing.qcow2 >v.out 2>v.err
if [ $? = 1 ] && one_qvet_line v.err && [ ! -s v.out ]; then
  pass message:list-missing-file
else
  fail message:list-missing-file "expected exit 1 and one qvet line"
fi

finish
