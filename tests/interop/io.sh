#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# io.sh - qvet io against qemu-io 7.2, golden-output style.
#
# Each case makes twin images with qemu-img create, runs the same commands with
# qemu-io on one and qvet io on the other (as -c commands, and again from standard
# input), and requires, after the qemu-iotests filter (common.sh), byte for byte:
# the same standard output, the same standard error, the same exit status; then the
# same guest bytes (qemu-img compare), the same map (qemu-img map, offsets aside) and
# qvet's twin clean under qemu-img check. @IMG@ in a command is the twin's own path.
#
# Last line: "N passed, M failed"; exit status 1 if anything failed.

# shellcheck source=tests/interop/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

K=1024
M=$((1024 * K))

# Data files for write -s: bytes of every kind, for the -v dump.
printf 'hello world\n\001\177\200 ~%%09AZaz' >mixed.bin
: >empty.bin
dd if=/dev/urandom of=random.bin bs=4k count=4 status=none

# run_tool TOOL IMAGE MODE COMMAND...: MODE c (each command a -c) or stdin
run_tool() {
  local tool=$1 image=$2 mode=$3 c
  shift 3
  local args=()
  if [ "$mode" = c ]; then
    for c in "$@"; do
      args+=(-c "${c//@IMG@/$image}")
    done
    if [ "$tool" = qemu-io ]; then
      qemu-io -f qcow2 "${args[@]}" "$image" </dev/null
    else
      "$QVET" io "${args[@]}" "$image" </dev/null
    fi
  else
    for c in "$@"; do
      printf '%s\n' "${c//@IMG@/$image}"
    done >"cmds.$tool"
    if [ "$tool" = qemu-io ]; then
      qemu-io -f qcow2 "$image" <"cmds.$tool"
    else
      "$QVET" io "$image" <"cmds.$tool"
    fi
  fi
}

# twins OPTS SIZE [BACKING]: Q.qcow2 (for qemu-io) and V.qcow2 (for qvet), alike
twins() {
  local backing=()
  if [ -n "${3:-}" ]; then
    backing=(-b "$3" -F qcow2)
  fi
  rm -f Q.qcow2 V.qcow2
  qemu-img create -q -f qcow2 -o "$1" "${backing[@]}" Q.qcow2 ${2:+"$2"} &&
    cp --sparse=never Q.qcow2 V.qcow2
}

# golden NAME MODE OPTS SIZE BACKING COMMAND...
golden() {
  local name="$1:$2" mode=$2 opts=$3 size=$4 backing=$5 qrc vrc
  shift 5
  if ! twins "$opts" "$size" "$backing"; then
    fail "$name" "qemu-img create -o $opts failed"
    return
  fi
  run_tool qemu-io Q.qcow2 "$mode" "$@" >q.out 2>q.err
  qrc=$?
  run_tool qvet V.qcow2 "$mode" "$@" >v.out 2>v.err
  vrc=$?
  for f in q.out q.err v.out v.err; do
    sed -e 's/[QV]\.qcow2/IMG/g' "$f" | qemu_io_filter >"$f.f"
  done
  if [ "$qrc" != "$vrc" ]; then
    echo "qemu-io exited $qrc, qvet io $vrc" >detail
    cat v.err >>detail
    fail "$name" "exit status differs" detail
  elif ! diff -u --label qemu-io --label qvet q.out.f v.out.f >detail; then
    fail "$name" "standard output differs" detail
  elif ! diff -u --label qemu-io --label qvet q.err.f v.err.f >detail; then
    fail "$name" "standard error differs" detail
  elif ! qemu-img compare -q Q.qcow2 V.qcow2 2>detail; then
    fail "$name" "guest bytes differ (qemu-img compare)" detail
  elif ! diff <(map_without_offsets Q.qcow2) <(map_without_offsets V.qcow2) >detail; then
    fail "$name" "qemu-img map differs" detail
  elif ! qemu-img check -q V.qcow2 >detail 2>&1; then
    fail "$name" "qemu-img check finds qvet's twin unclean" detail
  else
    pass "$name"
  fi
}

# both NAME OPTS SIZE BACKING COMMAND...: as -c commands and from standard input
both() {
  local name=$1
  shift
  golden "$name" c "$@"
  golden "$name" stdin "$@"
}

# ---- the cases -------------------------------------------------------------------

both basic cluster_size=64k 1M "" \
  "write -P 0xab 0 4k" "read -P 0xab 0 4k" "read -P 0xcd 0 4k" "write 4k 4k" \
  "read -P 0xcd 4k 4k" "read -q -P 0xab 0 4k" "write -q -P 7 100 1000" "read -P 7 100 1000" \
  "read 0 0" "read 1M 0" "write 1M 0" "flush" "length"

# Every command after a failing one still runs; one failure makes the exit status 1.
both keeps-going cluster_size=64k 1M "" \
  "read -P 1 0 512" "write -P 1 0 512" "read 2M 1" "read -P 1 0 512" "frob" \
  "read 0" "read -P 1 0 512"

both quit-stops cluster_size=64k 1M "" "write -P 2 0 1k" "quit" "write -P 3 0 1k" "frob"

both numbers cluster_size=64k 64M "" \
  "write -P 1 0x200 0x200" "read -P 1 512 512" "write -P 2 1.5k 0.5k" "read -P 2 1536 512" \
  "write -P 3 010 1b" "read -P 3 10 1" "write -P 4 1M 1K" "read -P 4 0x100000 1024" \
  "write -P 5 +4096 5." "read -P 5 4096 5" "write -P 6 5.k 0.1k" "read -P 6 5120 102" \
  "read 0 1x" "read 1e3 1" "read -1 1" "read 1.5 1" "read 0x 1" "read 0x1.5k 1" \
  "read 9223372036854775808 1" "read 0 18446744073709551616" "read 9223372036854775807 1" \
  "alloc 0x10B" "alloc 0.00048828125k" "alloc 1.99999999999999999k" "read 0 0x1k"

both limits cluster_size=64k 64M "" \
  "read 0 2G" "write 0 3G" "write -z 0 2G" "discard 0 3G" "read 64M 1" "read 65M 0" \
  "write 64M 0" "write 65M 0" "discard 65M 0" "write -z 63M 2M" "read 63M 2M" \
  "discard 64M 1" "alloc 0 2G" "alloc 1T" "alloc 64M" "alloc 0 1T"

both patterns cluster_size=4k 1M "" \
  "write -P 1 0 512" "read -P 0 -s 512 0 1k" "read -P 0 -s 512 -l 256 0 1k" \
  "read -P 1 -l 512 0 1k" "read -P 1 -s 256 -l 512 0 1k" "read -s 1 0 1k" \
  "read -P 1 -s 1k 0 1k" "read -P 1 -s 1k1 0 1k" "read -P 1 -s 512 -l 1k 0 1k" \
  "read -P 1 -s 2k 0 1k" "read -l 1 0 1" "read -P 0x 0 1" "read -P -1 0 1" \
  "read -P 300 0 1" "read -P 1 -P 2 0 512" "read -P 1 -P 1 0 512" "read -P 0x01 0 512"

both dump cluster_size=64k 1M "" \
  "write -s mixed.bin 0 64" "read -v 0 64" "read -v 5 20" "read -v 65520 33" \
  "read -v -P 0 64k 16" "read -q -v 0 16" "write -s random.bin 100k 16k" \
  "read -v 100k 48" "write -s empty.bin 0 10" "write -s no-such-file 0 1"

both options cluster_size=64k 1M "" \
  "read -x 0 1" "read -P" "read -P 1" "read 0 -q 1" "read -p 0 1" "write -p 0 1" \
  "read -- 0 1" "write -u 0 1" "write -z -P 1 0 1" "write -P 1 -s mixed.bin 0 1" \
  "write -z -s mixed.bin 0 1" "write -P 1 -s mixed.bin -u 0 1" "write -f -c 0 512" \
  "write -f 0 1k" "write -z -f 0 512" "write -P 300 -u 0 1" "write -u 0x 1" "write 0x 1x" \
  "discard -x 0 1" "truncate -x 1" "truncate -m" "alloc" "alloc 1 2 3" "map 1" "length 1" \
  "flush 1" "info 1" "close 1" "help read write" "truncate" "read 0 1x 2" "read 0 1 2" \
  "r 0 1" "w 0 1" "d 0 1" "f" "l" "a 0" "help frob" "" "   " "read  0   1"

both zeros-and-discard cluster_size=64k 4M "" \
  "write -P 0x41 0 64k" "write -z 64k 64k" "write -z -u 128k 64k" "write 300k 1k" \
  "write -P 9 1M 256k" "write -z 1M 1000" "write -z -u 1088k 64k" "discard 1152k 64k" \
  "discard 1000 10" "discard 1200k 100k" "alloc 0 1M" "alloc 64k" "alloc 100k 100k" \
  "alloc 1" "alloc 513 512" "alloc 2M" "alloc 0 4M" "map" "read -P 0 64k 128k" \
  "read -P 0 1152k 64k" "write -z 4M 0" "write -z 3M 2M"

both small-clusters cluster_size=4k 1M "" \
  "write -P 1 0 10k" "write -z 4k 4k" "discard 8k 4k" "write -z -u 12k 8k" "map" \
  "alloc 0 1M" "read -P 1 0 4k" "read -P 0 4k 8k"

both extended-l2 extended_l2=on,cluster_size=64k 4M "" \
  "write -P 1 0 4k" "write -P 2 6k 1k" "write -z 2k 2k" "write -z -u 64k 64k" \
  "discard 128k 64k" "write -P 3 200k 2k" "alloc 0 256k" "alloc 4k 8k" "map" \
  "read -P 1 0 2k" "read -P 0 2k 2k" "read -P 2 6k 1k"

both v2 compat=0.10,cluster_size=64k 2M "" \
  "write -P 1 0 64k" "write -z 64k 64k" "write -z 0 32k" "discard 0 64k" "map" \
  "alloc 0 2M" "info" "read -P 0 0 128k"

both compressed cluster_size=64k 1000k "" \
  "write -c 0 512" "write -c 64k 512" "write -c -P 7 128k 128k" "write -c 512 64k" \
  "write -c -P 8 960k 40k" "write -c 896k 64k" "write -z 256k 64k" "write -c 256k 64k" \
  "write -c -P 9 320k 64k" "write -c 0 100" "write -c 1 512" "write -c -z 0 64k" \
  "write -c 128k 64k" "map" "alloc 0 1000k" "read -P 7 128k 128k" "read -P 8 960k 40k"

both info-and-length cluster_size=64k 3G "" "info" "length" "alloc 3G" "map"
both info-v2 compat=0.10 3G "" "info" "length"
both info-extl2 extended_l2=on,cluster_size=128k 3G "" "info"
both info-small lazy_refcounts=on,compression_type=zstd,refcount_bits=1,cluster_size=512 \
  3G "" "info" "length" "write -P 1 1000 3000" "map" "alloc 0 8k"
both info-empty cluster_size=64k 0 "" "info" "length" "map" "alloc 0" "read 0 0" "read 0 1"

both truncate cluster_size=64k 1M "" \
  "write -P 7 0 1M" "truncate 512k" "length" "truncate 2M" "read -P 0 512k 1536k" \
  "read -P 7 0 512k" "truncate 1000" "truncate -m off 3M" "truncate -m bogus 10M" \
  "truncate 1x" "length" "truncate 1 2" "map"

both truncate-partial cluster_size=64k 4M "" \
  "write -P 1 0 4M" "truncate 1537k" "truncate 4M" "read -P 1 0 1537k" "read -v 1537k 16" \
  "read -P 0 1600k 2496k" "map"

# A backing file the twins share (it is only read).
qemu-img create -q -f qcow2 base.qcow2 2M
qemu-io -f qcow2 -c "write -P 0x55 0 2M" base.qcow2 >/dev/null
both backing cluster_size=64k 4M "$WORK/base.qcow2" \
  "read -P 0x55 0 64k" "write -P 1 64k 64k" "write -z 128k 64k" "discard 192k 64k" \
  "alloc 0 1M" "map" "read -P 0 128k 128k" "read -P 0x55 256k 4k" "read -P 0 2M 2M" \
  "alloc 2M 2M" "truncate 1M" "truncate 4M" "read -P 0 1M 1M"
both backing-v2 compat=0.10,cluster_size=4k 2M "$WORK/base.qcow2" \
  "discard 0 64k" "read -P 0x55 0 64k" "write -z 0 4k" "read -P 0 0 4k" "map"

both read-only-commands cluster_size=64k 1M "" "close" "open -r @IMG@" "read 0 1" \
  "write 0 1" "discard 0 1" "write -z 0 1" "truncate 2M" "map" "length" "close" \
  "open @IMG@" "write -P 3 0 1" "read -P 3 0 1"

both open-close cluster_size=64k 1M "" \
  "open @IMG@" "close" "read 0 1" "length" "map" "close" "open no-such.qcow2" "open" \
  "open -x @IMG@" "open @IMG@ other" "open @IMG@" "read 0 1"

# Standard input only: empty lines, a final line without its newline, the prompt.
rm -f Q.qcow2 V.qcow2
qemu-img create -q -f qcow2 Q.qcow2 1M && cp --sparse=never Q.qcow2 V.qcow2
printf 'write -P 5 0 512\n\nread -P 5 0 512\n   \nlength\nread 0 1' >in.txt
qemu-io -f qcow2 Q.qcow2 <in.txt >q.out 2>&1
qrc=$?
"$QVET" io V.qcow2 <in.txt >v.out 2>&1
vrc=$?
if [ "$qrc" = "$vrc" ] && cmp -s <(qemu_io_filter <q.out) <(qemu_io_filter <v.out) &&
  cmp -s <(sed -e 's/ops; .*/ops/' q.out) <(sed -e 's/ops; .*/ops/' v.out); then
  pass stdin:prompts
else
  diff <(sed -e 's/ops; .*/ops/' q.out) <(sed -e 's/ops; .*/ops/' v.out) >detail
  fail stdin:prompts "qvet io printed other prompts or lines (exit $vrc, qemu-io $qrc)" detail
fi

# ---- what qvet io refuses, and what it adds ---------------------------------------

# refused NAME EXPECTED-LINE ARGS...: exit 1, the line on standard error, image unchanged
# (the commands after the refused one still run: the cases end with "read 0 1")
refused() {
  local name=$1 line=$2
  shift 2
  rm -f V.qcow2
  qemu-img create -q -f qcow2 V.qcow2 1M && cp V.qcow2 before.qcow2
  "$QVET" io "$@" >v.out 2>v.err </dev/null
  local rc=$?
  if [ "$rc" != 1 ]; then
    fail "refused:$name" "expected exit 1, got $rc" v.err
  elif ! grep -qxF -- "$line" v.err; then
    echo "expected: $line" >detail
    cat v.err >>detail
    fail "refused:$name" "the refusal is not the expected line" detail
  elif ! cmp -s V.qcow2 before.qcow2; then
    fail "refused:$name" "the image changed"
  elif [ "${*: -2:1}" = "read 0 1" ] && ! grep -qx "read 1/1 bytes at offset 0" v.out; then
    fail "refused:$name" "the command after the refused one did not run" v.out
  else
    pass "refused:$name"
  fi
}

for c in aio_read aio_write aio_flush readv writev reopen sleep abort sigraise break \
  remove_break resume wait_break; do
  refused "$c" "qvet io: command \"$c\" is not supported" -c "$c 0 512" -c "read 0 1" V.qcow2
done
refused help-unsupported 'qvet io: command "aio_read" is not supported' -c "help aio_read" V.qcow2
refused read-b "qvet io: read -b (the VM state area) is not supported" -c "read -b 0 512" V.qcow2
refused write-b "qvet io: write -b (the VM state area) is not supported" -c "write -b 0 512" V.qcow2
refused write-n "qvet io: write -n (zero writes without slow fallback) is not supported" \
  -c "write -z -n 0 64k" V.qcow2
refused truncate-metadata \
  "qvet io: truncate -m metadata, falloc or full (only off) is not supported" \
  -c "truncate -m metadata 2M" V.qcow2
refused open-s "qvet io: open -s is not supported" -c close -c "open -s V.qcow2" V.qcow2
refused format-raw "qvet: io: -f raw is not supported: qvet reads and writes qcow2 images only (-f qcow2)" \
  -f raw -c "write 0 1" V.qcow2
refused quiet-option "qvet: io: -q is not a qemu-io option; quiet is per command ('read -q', 'write -q') (see 'qvet help')" \
  -q -c "write 0 1" V.qcow2
refused snapshot-option "qvet: io: option -s (--snapshot) is not supported (see 'qvet help')" \
  -s -c "write 0 1" V.qcow2
refused image-opts "qvet: io: option --image-opts is not supported (see 'qvet help')" \
  --image-opts -c "write 0 1" V.qcow2

# -f qcow2 is accepted and changes nothing; options may follow the image. -U shares a
# read-only image, and is refused for a writable one, as qemu-io does.
rm -f V.qcow2
qemu-img create -q -f qcow2 V.qcow2 1M
if out=$("$QVET" io -f qcow2 V.qcow2 -c "write -P 9 0 1k" -c "read -P 9 0 1k" 2>&1) &&
  [ "$(printf '%s\n' "$out" | grep -c '^wrote 1024/1024 bytes at offset 0$\|^read 1024/1024 bytes at offset 0$')" = 2 ]; then
  pass options:format-qcow2
else
  printf '%s\n' "$out" >detail
  fail options:format-qcow2 "qvet io -f qcow2 did not run its commands" detail
fi
if out=$("$QVET" io -r -U V.qcow2 -c "read -P 9 0 1k" 2>&1) &&
  [ "$(printf '%s\n' "$out" | grep -c '^read 1024/1024 bytes at offset 0$')" = 1 ]; then
  pass options:share-read-only
else
  printf '%s\n' "$out" >detail
  fail options:share-read-only "qvet io -r -U did not read" detail
fi
qemu-io -U -c "read 0 1" V.qcow2 >/dev/null 2>&1
qrc=$?
"$QVET" io -U -c "read 0 1" V.qcow2 >/dev/null 2>v.err
vrc=$?
if [ "$qrc" = "$vrc" ] && [ "$vrc" = 1 ] && [ "$(wc -l <v.err)" = 1 ]; then
  pass options:share-writable-refused
else
  fail options:share-writable-refused "qemu-io -U on a writable open exited $qrc, qvet io $vrc" v.err
fi

# help lists the commands in qemu-io's form; help COMMAND explains every option.
"$QVET" io -c help >v.out 2>&1
if grep -qx "read \[-abCqv\] \[-P pattern \[-s off\] \[-l len\]\] off len -- reads a number of bytes at a specified offset" v.out &&
  grep -qx "'help COMMAND' explains one command and its options." v.out; then
  pass help:list
else
  fail help:list "qvet io -c help does not list the commands as qemu-io does" v.out
fi

finish
