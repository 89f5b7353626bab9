#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# cli.sh - the qvet command's own habits, held to what qemu-img and qemu-io users type:
# --version / -V (the version pkg-config reports for the library), help for every
# subcommand three ways, -f qcow2 accepted and any other format refused in one line.
#
# Last line: "N passed, M failed"; exit status 1 if anything failed.

# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# ---- the version -------------------------------------------------------------------

pc=$(dirname "$QVET")/qvet.pc
want=$(sed -n 's/^Version: //p' "$pc" 2>/dev/null)
for flag in --version -V; do
  out=$("$QVET" "$flag" 2>&1)
  if [ -n "$want" ] && [ "$out" = "qvet version $want" ]; then
    pass "version:$flag"
  else
    echo "got: $out; qvet.pc says: ${want:-(no $pc)}" >detail
    fail "version:$flag" "not 'qvet version' and the library's version" detail
  fi
done
if [ "$("$QVET" io -V 2>&1)" = "qvet version $want" ]; then
  pass "version:io-V"
else
  fail "version:io-V" "qvet io -V (qemu-io's -V) does not print the version"
fi

# ---- help: qvet help CMD, qvet CMD --help, qvet CMD -h ----------------------------------

commands=$("$QVET" help | sed -n 's/^  qvet \([a-z]*\).*/\1/p')
if [ "$(printf '%s\n' "$commands" | wc -l)" -ge 11 ]; then
  pass help:list
else
  fail help:list "qvet help lists fewer than the 11 subcommands: $commands"
fi
for cmd in $commands; do
  "$QVET" help "$cmd" >help.txt 2>&1
  rc=$?
  if [ "$rc" != 0 ] || ! head -n 1 help.txt | grep -q "^usage: qvet $cmd\( \|$\)" ||
    [ "$(wc -l <help.txt)" -lt 3 ]; then
    fail "help:$cmd" "qvet help $cmd (exit $rc) is not a usage line and an explanation" help.txt
    continue
  fi
  same=1
  for flag in --help -h; do
    "$QVET" "$cmd" "$flag" >other.txt 2>&1 || same=0
    cmp -s help.txt other.txt || same=0
  done
  if [ "$same" = 1 ]; then
    pass "help:$cmd"
  else
    fail "help:$cmd" "qvet $cmd --help / -h differ from qvet help $cmd (or fail)"
  fi
done
"$QVET" help no-such-command >out.txt 2>&1
rc=$?
if [ "$rc" = 1 ] && [ "$(wc -l <out.txt)" = 1 ]; then
  pass help:unknown
else
  fail help:unknown "qvet help no-such-command: exit $rc, expected 1 and one line" out.txt
fi

# ---- -f: qcow2 accepted, anything else refused in one line, nothing changed --------------

qemu-img create -q -f qcow2 img.qcow2 1M
qemu-io -f qcow2 -c "write -P 5 0 64k" img.qcow2 >/dev/null
cp --sparse=never img.qcow2 before.qcow2

# format_case NAME ARGS... (FMT stands for the format): accepted with qcow2, not with raw
# (create words its refusal its own way, "only -f qcow2 is supported, not 'raw'")
format_case() {
  local name=$1 rc
  shift
  "$QVET" "${@/#FMT/qcow2}" >out.txt 2>err.txt
  rc=$?
  if [ "$rc" != 0 ]; then
    fail "format:$name:qcow2" "-f qcow2 refused (exit $rc)" err.txt
  else
    pass "format:$name:qcow2"
  fi
  cp --sparse=never before.qcow2 img.qcow2
  for fmt in raw vmdk; do
    "$QVET" "${@/#FMT/$fmt}" >out.txt 2>err.txt
    rc=$?
    if [ "$rc" != 1 ] || [ "$(wc -l <err.txt)" != 1 ] ||
      ! grep -qE -- "-f $fmt is not supported|only -f qcow2 is supported, not '$fmt'" err.txt; then
      fail "format:$name:$fmt" "expected exit 1 and one line refusing -f $fmt (exit $rc)" err.txt
    elif ! cmp -s img.qcow2 before.qcow2; then
      fail "format:$name:$fmt" "the refused command changed the image"
    else
      pass "format:$name:$fmt"
    fi
  done
  cp --sparse=never before.qcow2 img.qcow2
}

format_case io io -f FMT -c "read -P 5 0 64k" img.qcow2
format_case resize resize -f FMT img.qcow2 2M
format_case map map -f FMT img.qcow2
format_case info info -f FMT img.qcow2
format_case cat cat -f FMT img.qcow2
format_case create create -f FMT new.qcow2 1M

# ---- commands qvet does not know: one line, exit 1 -------------------------------------

"$QVET" convert img.qcow2 x.raw >out.txt 2>&1
rc=$?
if [ "$rc" = 1 ] && [ "$(wc -l <out.txt)" = 1 ] && grep -q "unknown command 'convert'" out.txt; then
  pass unknown-command
else
  fail unknown-command "qvet convert: exit $rc, expected 1 and one line" out.txt
fi


# A write that makes QEMU drop persistent bitmaps warns once, naming them; reading does not.
for how in io snapshot; do
  rm -f bm.qcow2
  qemu-img create -q -f qcow2 bm.qcow2 1M && qemu-img bitmap --add bm.qcow2 b0 &&
    qemu-img bitmap --add bm.qcow2 b1
  "$QVET" io -c "read 0 512" bm.qcow2 >/dev/null 2>r.err
  if [ "$how" = io ]; then
    "$QVET" io -c "write 0 512" -c "write 4k 512" bm.qcow2 >/dev/null 2>w.err
  else
    "$QVET" snapshot -c s1 bm.qcow2 >/dev/null 2>w.err
  fi
  if [ ! -s r.err ] && [ "$(wc -l <w.err)" = 1 ] &&
    grep -qx "qvet: bm.qcow2: warning: persistent bitmaps b0, b1 will be invalidated (qvet does not maintain bitmaps)" w.err; then
    pass "bitmaps:warn-once-$how"
  else
    fail "bitmaps:warn-once-$how" "expected no warning on a read and one naming b0, b1 on the first change" r.err w.err
  fi
done

finish
