#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# gate.sh - what the interop gate's groups share: the read groups
# (read-GROUP.sh) and the write families (write-FAMILY.sh) next to it source it,
# define their images or write units, and call gate_run. Sourcing it only
# defines things.
#
# Read gate: a read group builds qcow2 images with QEMU's own tools (qemu-img,
# qemu-io) and checks that qvet reads every one of them exactly as QEMU does:
#
#   cat:LABEL         qvet cat IMG                 == qemu-img convert -O raw IMG
#   map:LABEL         qvet map --output=json IMG   == qemu-img map --output=json IMG
#   cat-s:LABEL@SNAP  qvet cat -s SNAP IMG         == qemu-img convert -O raw -l snapshot.name=SNAP IMG
#
# plus cat-s:LABEL@id=N (cat -s N, reference snapshot.id=N), cat@:LABEL@SNAP
# (cat IMG@SNAP) and error:* (one "qvet: FILE: message" line, exit 1).
#
# Write gate (section "the write gate" below): a write family makes twin images,
# one written by qvet (io, snapshot, resize), the other by QEMU (qemu-io,
# qemu-img) with the same command script, then runs qemu-img check on qvet's
# image and qemu-img compare of the twins, snapshot by snapshot:
#
#   create:LABEL           qvet create writes the bytes qemu-img create writes
#   write:LABEL/qi|qv:...  the option matrix, twins from qemu-img (qi) or qvet (qv) create
#   snap:LABEL#STEP:...    snapshots interleaved with writes, checked after every step
#   agree:...              qvet check --output=json agrees with qemu-img check
#   repair:damage/...      qvet check -r all repairs an image damaged on purpose
#
# Every comparison prints "PASS name" or "FAIL name: reason"; the last line is
# "N passed, M failed". Exit status 1 if anything failed or nothing passed.
#
# Environment:
#   QVET   the binary under test (default: build/qvet under the repo root)
#   KEEP=1 keep the work directory (its path is printed on stderr)
#   ONLY   optional extended regex: only check images and write units whose
#          label matches (write units: write:LABEL/qi, snap:LABEL, damage:LABEL)
#   JOBS   images checked in parallel (default: the number of CPUs)
#   TIMEOUT seconds one qvet run may take (default 300)
#   TIMES=1 print the 20 slowest images/units on stderr at the end
#
# Snapshot sizes follow qemu-img convert -l: QEMU 7.2 reads a snapshot with the
# image's *current* virtual size, so a snapshot taken before the image grew reads
# as its old contents followed by zeros up to the current size. (Applying the
# snapshot with "qemu-img snapshot -a" would instead shrink the image back to
# the snapshot's recorded disk size; the read gate does not use that, the
# write gate's snap:resize does.)
#
# The gate only reads build/; it never builds anything.

# The groups' functions and the EXIT trap are reached indirectly:
# shellcheck disable=SC2317
set -u

# shellcheck source=../../lib/qvet-test.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/qvet-test.sh"
QVET=${QVET:-$ROOT/build/qvet}
ONLY=${ONLY:-}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
TIMEOUT=${TIMEOUT:-300}
TIMES=${TIMES:-0}
K=1024
M=$((1024 * 1024))
G=$((1024 * M))

# Background checks still running when the gate stops are stopped with it.
on_exit() {
  local pids
  pids=$(jobs -p)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # a list of our own background jobs
    kill $pids 2>/dev/null
    wait
  fi
}

# gate_start NAME: look up the binary, make the work directory
gate_start() {
  # A relative path is taken from the caller's directory, a bare name from PATH.
  case $QVET in
    /*) ;;
    */*) QVET=$PWD/$QVET ;;
    *) QVET=$(command -v -- "$QVET" || echo "$QVET") ;;
  esac
  if [ ! -f "$QVET" ] || [ ! -x "$QVET" ]; then
    fail "qvet-binary" "$QVET is missing or not executable (run make first)"
    finish
  fi
  require qemu-img qemu-io cmp diff od dd timeout numfmt
  work_dir "interop-$1"
  trap 'exit 130' INT
  trap 'exit 143' TERM
  OUT=$WORK/.out            # scratch for references and outputs
  MANIFEST=$WORK/.manifest  # label, cwd, path, snapshots: one image a line
  REGFILE=$MANIFEST         # where reg writes
  mkdir -p "$OUT" "$WORK/data"
  : >"$MANIFEST"
  ulimit -c 0               # qemu-io 'abort' must not leave core files
}

# ---------------------------------------------------------------------------
# building blocks (used inside the group's subshell, which runs with set -e)

# mk PATH SIZE [qemu-img create options...]
# An empty SIZE means "take the backing file's size".
mk() {
  local path=$1 size=$2
  shift 2
  mkdir -p "$(dirname "$path")"
  if [ -n "$size" ]; then
    qemu-img create -q -f qcow2 "$@" "$path" "$size"
  else
    qemu-img create -q -f qcow2 "$@" "$path"
  fi
}

# io PATH CMD...: one qemu-io run with every CMD as a -c command.
io() {
  local path=$1 c
  local args=()
  shift
  for c in "$@"; do
    args+=(-c "$c")
  done
  if ! qemu-io -f qcow2 "${args[@]}" "$path" >"$OUT/io-$BASHPID.log" 2>&1; then
    grep -v '^wrote\|^[0-9.]* [KMG]*i*B*, \|bytes, ' "$OUT/io-$BASHPID.log" >&2
    echo "qemu-io failed on $path: $*" >&2
    return 1
  fi
}

# reg LABEL PATH [SNAP...]: check PATH from the work directory.
# A SNAP is a snapshot name, "id:N" (cat -s N), or "at:NAME" (cat PATH@NAME).
reg() {
  regc "$1" . "$2" "${@:3}"
}

# regc LABEL CWD PATH [SNAP...]: check PATH as seen from CWD (relative to WORK).
regc() {
  local label=$1 cwd=$2 path=$3
  shift 3
  printf '%s\t%s\t%s\t%s\n' "$label" "$cwd" "$path" "$*" >>"$REGFILE"
}

# copy_bytes FILE OFFSET SRC LEN: copy LEN bytes of SRC into FILE at OFFSET.
copy_bytes() {
  dd if="$3" of="$1" bs=64k seek="$2" count="$4" iflag=count_bytes \
    oflag=seek_bytes conv=notrunc status=none
}

# align X A: X rounded down to a multiple of A
align() {
  echo $(($1 / $2 * $2))
}

# Position-dependent content catches misplaced data that a constant pattern hides.
make_data() {
  seq 1 400000 >"$WORK/data/t1"                          # ~2.7 MB, compressible
  seq -f 'line %g of the second text' 1 120000 >"$WORK/data/t2"
  seq 1 1100000 | gzip -9n >"$WORK/data/r1"              # ~2.3 MB, incompressible
  # a raw source for convert -c: text, a hole, noise, text, a short tail
  local size=$((4 * M + 1536))
  truncate -s "$size" "$MIX"
  copy_bytes "$MIX" 0 "$T1" $((M + 1234))
  copy_bytes "$MIX" $((3 * M / 2)) "$R1" $((512 * K))
  copy_bytes "$MIX" $((3 * M)) "$T2" $((600 * K))
  copy_bytes "$MIX" $((size - 777)) "$T1" 777
}

T1=data/t1
T2=data/t2
R1=data/r1
MIX=data/mix.raw

# ---------------------------------------------------------------------------
# writes and sizes that several read groups share

# The same mix of writes for any cluster size: partial clusters, unaligned
# offsets and lengths, text data, zero writes with and without unmap, discard,
# and a write that ends exactly at the (non cluster-multiple) end of the image.
common_writes() {
  local p=$1 cs=$2 size=$3 a b
  a=$(align $((2 * M)) "$cs")
  b=$(align $((3 * M)) "$cs")
  if [ $((b + 3 * cs)) -gt "$size" ]; then
    b=$(align $((size - 3 * cs)) "$cs")
  fi
  io "$p" \
    "write -P 0x11 0 3k" \
    "write -P 0x22 5000 777" \
    "write -s $T1 $((M + 300)) 200k" \
    "write -s $T2 $((a + 7)) $((cs + 1000))" \
    "write -z $((a + 512)) 1536" \
    "write -P 0x33 $b $((2 * cs))" \
    "write -z -u $b $cs" \
    "write -s $R1 $((b + 2 * cs)) $cs" \
    "discard $((b + 2 * cs)) $cs" \
    "write -P 0x44 $((size - 1000)) 1000"
}

# image size for common_writes: at least 4 MiB and 4 clusters, plus 1.5 KiB
common_size() {
  local c
  c=$(numfmt --from=iec "${1^^}")
  if [ "$c" -lt "$M" ]; then
    c=$M
  fi
  echo $((4 * c + 1536))
}

# ---------------------------------------------------------------------------
# checks

# qvet ARGS...: run the binary under test, with no input and a time limit
qvet() {
  timeout -k 5 "$TIMEOUT" "$QVET" "$@" </dev/null
}

# exited RC: how a qvet run ended, for a FAIL line
exited() {
  case $1 in
    124 | 137) echo "timed out after ${TIMEOUT}s" ;;
    126 | 127) echo "could not be run (exit $1)" ;;
    129 | 1[3-9][0-9]) echo "was killed by signal $(($1 - 128)) ($(kill -l "$(($1 - 128))" 2>/dev/null))" ;;
    *) echo "exited $1" ;;
  esac
}

# errline: qvet's first line on stderr (without bash's own crash notice), as ": LINE"
errline() {
  local line
  line=$(grep -v -F "${BASH_SOURCE[0]}: line " "$OUT/err" | head -n 1)
  if [ -n "$line" ]; then
    echo ": $line"
  fi
}

# byte_at FILE OFFSET: the byte at OFFSET in hex, or "EOF" past the end
byte_at() {
  local v
  v=$(od -An -tx1 -j "$2" -N 1 "$1" | tr -d ' \n')
  if [ -n "$v" ]; then
    echo "0x$v"
  else
    echo EOF
  fi
}

# first_diff A B: offset of the first byte where files A and B differ (the
# shorter one counts as zero-extended), nothing if they are equal, or a line
# starting with "error:". qemu-img compare walks sparse files by their
# allocation, so a 4 GiB hole costs nothing; cmp then pins the byte inside the
# sector it names.
first_diff() {
  local msg rc sector rel
  msg=$(qemu-img compare -f raw -F raw "$1" "$2" 2>&1)
  rc=$?
  case $rc:$msg in
    0:*) return 0 ;;
    1:*"Content mismatch at offset "*) ;;
    *)
      echo "error: qemu-img compare exited $rc: $(echo "$msg" | head -n 1)"
      return 0
      ;;
  esac
  sector=${msg##*Content mismatch at offset }
  sector=${sector%%!*}
  rel=$(cmp -i "$sector" -- "$1" "$2" 2>&1 | sed -n 's/.* differ: byte \([0-9]*\),.*/\1/p')
  if [ -n "$rel" ]; then
    echo $((sector + rel - 1))
  else
    echo "$sector"     # the difference is zeros against the end of the other file
  fi
}

# check_data NAME CWD REF QVET-ARGS...: qvet's stdout must equal the file REF.
# The output goes through dd conv=sparse so that long runs of zeros cost
# neither disk space nor comparison time.
check_data() {
  local name=$1 cwd=$2 ref=$3
  shift 3
  local got=$OUT/got.raw qrc drc rsize gsize off why
  rm -f "$got" "$OUT/rc"
  (
    cd "$WORK/$cwd" || exit 99
    qvet "$@" 2>"$OUT/err" | dd of="$got" bs=64k conv=sparse status=none
    echo "${PIPESTATUS[0]} ${PIPESTATUS[1]}" >"$OUT/rc"
  )
  if ! read -r qrc drc <"$OUT/rc" 2>/dev/null; then
    fail "$name" "harness: cannot run in $cwd"
    return
  fi
  if [ "$qrc" != 0 ]; then
    fail "$name" "qvet $* $(exited "$qrc")$(errline)"
    return
  fi
  if [ "$drc" != 0 ] || [ ! -f "$got" ]; then
    fail "$name" "harness: could not store qvet's output (dd exited $drc)"
    return
  fi
  rsize=$(stat -c %s "$ref")
  gsize=$(stat -c %s "$got")
  off=$(first_diff "$ref" "$got")
  case $off in
    error:*)
      fail "$name" "harness: $off"
      rm -f "$got"
      return
      ;;
  esac
  if [ -z "$off" ] && [ "$rsize" = "$gsize" ]; then
    pass "$name"
    rm -f "$got"
    return
  fi
  why=
  if [ "$rsize" != "$gsize" ]; then
    why="size differs: qemu-img $rsize bytes, qvet $gsize bytes"
  fi
  if [ -n "$off" ]; then
    why="${why:+$why; }data differs from qemu-img at offset $off ($(printf '0x%x' "$off")): qemu-img $(byte_at "$ref" "$off"), qvet $(byte_at "$got" "$off")"
  fi
  fail "$name" "$why"
  rm -f "$got"
}

check_map() {
  local name=$1 cwd=$2 path=$3 rc
  if ! (cd "$WORK/$cwd" && qemu-img map --output=json "$path") >"$OUT/ref.json" 2>"$OUT/qerr"; then
    fail "$name" "reference failed: qemu-img map: $(head -n 1 "$OUT/qerr")"
    return
  fi
  (cd "$WORK/$cwd" && qvet map --output=json "$path") >"$OUT/got.json" 2>"$OUT/err"
  rc=$?
  if [ "$rc" != 0 ]; then
    fail "$name" "qvet map $path $(exited "$rc")$(errline)"
    return
  fi
  if cmp -s "$OUT/ref.json" "$OUT/got.json"; then
    pass "$name"
    return
  fi
  diff -u --label qemu-img --label qvet "$OUT/ref.json" "$OUT/got.json" | head -n 14 >"$OUT/diff"
  if ! grep -q '^@@' "$OUT/diff"; then
    # a difference diff cannot show as lines (e.g. the final newline)
    (cd "$OUT" && cmp ref.json got.json) >"$OUT/diff" 2>&1
    printf 'last bytes: qemu-img %s, qvet %s\n' \
      "$(tail -c 3 "$OUT/ref.json" | od -An -c | tr -s ' ')" \
      "$(tail -c 3 "$OUT/got.json" | od -An -c | tr -s ' ')" >>"$OUT/diff"
  fi
  fail "$name" "differs from qemu-img map" "$OUT/diff"
}

check_snapshot() {
  local label=$1 cwd=$2 path=$3 snap=$4 name lopt args
  case $snap in
    id:*)
      name="cat-s:$label@id=${snap#id:}"
      lopt="snapshot.id=${snap#id:}"
      args=(cat -s "${snap#id:}" "$path")
      ;;
    at:*)
      name="cat@:$label@${snap#at:}"
      lopt="snapshot.name=${snap#at:}"
      args=(cat "$path@${snap#at:}")
      ;;
    *)
      name="cat-s:$label@$snap"
      lopt="snapshot.name=$snap"
      args=(cat -s "$snap" "$path")
      ;;
  esac
  rm -f "$OUT/ref.raw"
  if ! (cd "$WORK/$cwd" && qemu-img convert -O raw -l "$lopt" "$path" "$OUT/ref.raw") 2>"$OUT/qerr"; then
    fail "$name" "reference failed: qemu-img convert -l $lopt: $(head -n 1 "$OUT/qerr")"
    return
  fi
  check_data "$name" "$cwd" "$OUT/ref.raw" "${args[@]}"
}

check_image() {
  local label=$1 cwd=$2 path=$3 snaps=$4 s
  rm -f "$OUT/ref.raw"
  if (cd "$WORK/$cwd" && qemu-img convert -O raw "$path" "$OUT/ref.raw") 2>"$OUT/qerr"; then
    check_data "cat:$label" "$cwd" "$OUT/ref.raw" cat "$path"
  else
    fail "cat:$label" "reference failed: qemu-img convert: $(head -n 1 "$OUT/qerr")"
  fi
  rm -f "$OUT/ref.raw"
  check_map "map:$label" "$cwd" "$path"
  for s in $snaps; do
    check_snapshot "$label" "$cwd" "$path" "$s"
  done
}

# The error contract: one line "qvet: FILE: message" on stderr, exit 1.
check_error() {
  local name=$1 prefix=$2 rc lines
  shift 2
  (cd "$WORK" && qvet "$@") >"$OUT/got" 2>"$OUT/err"
  rc=$?
  lines=$(wc -l <"$OUT/err")
  if [ "$rc" != 1 ]; then
    fail "$name" "qvet $* $(exited "$rc"), expected exit 1$(errline)"
  elif [ "$lines" != 1 ]; then
    fail "$name" "expected exactly one line on stderr, got $lines" "$OUT/err"
  elif [ "$(head -c ${#prefix} "$OUT/err")" != "$prefix" ]; then
    fail "$name" "stderr does not start with '$prefix': $(head -n 1 "$OUT/err")"
  elif [ -s "$OUT/got" ]; then
    fail "$name" "wrote $(wc -c <"$OUT/got") bytes to stdout on error"
  else
    pass "$name"
  fi
}

# ---------------------------------------------------------------------------
# the write gate
#
# A write unit makes two images that start out identical ("twins"): A, which
# qvet writes, and B, which QEMU writes. It plays one script on both, line by
# line:
#
#   io CMD          qvet io -c CMD on A, qemu-io -c CMD on B (consecutive io
#                   lines go to one run of each, as one command script)
#   resize SIZE     qvet resize --shrink A SIZE, qemu-img resize --shrink B SIZE
#   snap OP NAME    qvet snapshot OP NAME A, qemu-img snapshot OP NAME B
#   qsnap OP NAME   qemu-img snapshot OP NAME on both (cross-direction tests)
#   check           compare the twins now (also done after the last line)
#
# Each check step gives the cases PREFIX:run (every qvet command exited as its
# QEMU counterpart did and printed the same messages), PREFIX:check
# (qemu-img check on A exits 0), PREFIX:compare (qemu-img compare A B says
# identical, same virtual size) and, when there are snapshots, PREFIX:list
# (qemu-img snapshot -l gives the same IDs and names) and PREFIX@ID.NAME (the
# snapshot reads the same from A and B with qemu-img convert -l, and qvet cat
# -s reads A's copy the same way).
#
# create:LABEL (the qv variant) requires qvet create to write the very bytes
# qemu-img create writes for the same options. agree:* requires qvet check
# --output=json to report what qemu-img check --output=json reports on every
# image the write gate made, and on images damaged on purpose (damage:*);
# repair:* runs qvet check -r all on a damaged copy and then wants qemu-img
# check to find nothing.

CHECK_FIELDS="check-errors corruptions leaks image-end-offset total-clusters allocated-clusters compressed-clusters fragmented-clusters"

# cs_of OPTIONS: the cluster size the options ask for, in bytes
cs_of() {
  local v
  v=$(sed -n 's/.*cluster_size=\([^,]*\).*/\1/p' <<<"$1")
  v=${v:-64k}
  numfmt --from=iec "${v^^}"
}

# sz CS [MIN]: a disk size for the general script: room for 32 clusters (and
# at least MIN bytes, default 4 MiB), then 1.5 KiB more, so that the last
# cluster is partial
sz() {
  local s=$((32 * $1)) min=${2:-$((4 * M))}
  if [ "$s" -lt "$min" ]; then
    s=$min
  fi
  echo $((s + 1536))
}

# checkfields FILE: the CHECK_FIELDS of a check --output=json object, as
# "key=value" words (0 when a key is absent, as qemu-img leaves out zero counts)
checkfields() {
  tr -d ' \t\n\r"' <"$1" | tr ',{}' '\n' | awk -F : -v keys="$CHECK_FIELDS" '
    $2 ~ /^-?[0-9]+$/ { v[$1] = $2 }
    END { n = split(keys, k, " "); for (i = 1; i <= n; i++) printf "%s=%s ", k[i], (k[i] in v ? v[k[i]] : 0) }'
}

# --- script generators: each prints a script for the twins on stdout -------

# The general script, for any cluster size: CS SIZE OPTIONS
gen_general() {
  local c=$1 s=$2 opts=$3 span sub t s1 s2 e
  e=8
  case $opts in *extended_l2=on*) e=16 ;; esac
  span=$((c * c / e))
  # unaligned writes inside a cluster and across a cluster boundary
  echo "io write -P 0x11 100 $((c / 2))"
  echo "io write -P 0x12 $((c - 100)) 300"
  echo "io read -P 0x12 $((c - 100)) 300"
  echo "io write -P 0x13 $((2 * c + c / 4)) $((c + c / 4))"
  # zero writes on whole clusters, then writes into them (zero flag cleared)
  echo "io write -z $((4 * c)) $((2 * c))"
  echo "io write -P 0x14 $((4 * c + c / 2)) 100"
  echo "io write -P 0x15 $((5 * c)) $c"
  echo "io read -P 0 $((4 * c)) $((c / 2))"
  echo "io read -P 0x14 $((4 * c + c / 2)) 100"
  # zero with unmap: a whole allocated cluster, then part of one
  echo "io write -P 0x16 $((6 * c)) $((2 * c))"
  echo "io write -z -u $((6 * c)) $c"
  echo "io write -z -u $((7 * c + c / 4)) $((c / 2))"
  echo "io read -P 0x16 $((7 * c)) $((c / 4))"
  # partial zero writes: in an allocated cluster, in an unallocated one
  echo "io write -P 0x17 $((8 * c)) $c"
  echo "io write -z $((8 * c + 100)) 300"
  echo "io write -z $((9 * c + 5)) $((c / 2))"
  echo "io flush"
  # discard: a whole cluster, part of one, a range across two
  echo "io write -P 0x18 $((10 * c)) $((3 * c))"
  echo "io discard $((10 * c)) $c"
  echo "io discard $((11 * c + c / 4)) $((c / 2))"
  echo "io discard $((11 * c + 3 * c / 4)) $((c / 2))"
  # a small unaligned write into an unallocated cluster (COW from a backing file)
  echo "io write -P 0x19 $((13 * c + 10)) 20"
  if [[ $opts != *preallocation=metadata* ]]; then
    # compressed writes on unallocated clusters, then ordinary writes into them
    echo "io write -c -P 0x1a $((14 * c)) $c"
    echo "io write -c -P 0x1b $((15 * c)) $((2 * c))"
    # (QEMU 7.2 packs compressed data into the host cluster it used last in the
    # session even after that cluster was freed and reused for other data: so
    # every compressed write of a session comes before anything is freed)
    echo "io write -c -P 0x35 $((28 * c)) $((2 * c))"
    echo "io flush"
    echo "io write -P 0x1c $((14 * c + 300)) 100"
    echo "io write -z $((15 * c + c / 2)) $((c / 4))"
    echo "io write -z -u $((16 * c)) $c"
    echo "io read -P 0x1a $((14 * c)) 300"
    echo "io read -P 0x1b $((15 * c)) $((c / 2))"
  else
    echo "io write -P 0x1a $((14 * c)) $((3 * c))"
    echo "io write -P 0x35 $((28 * c)) $((2 * c))"
    echo "io write -z -u $((16 * c)) $c"
  fi
  echo "io write -P 0x1e $((17 * c)) $c"
  # a long unaligned write over several clusters, then a discard inside it
  echo "io write -P 0x1f $((18 * c + 123)) $((4 * c + 777))"
  echo "io discard $((18 * c + 100)) $((3 * c))"
  echo "io read -P 0x1f $((21 * c)) $((c / 2))"
  # a write across the boundary of two zeroed clusters
  echo "io write -z $((24 * c)) $((2 * c))"
  echo "io write -P 0x20 $((25 * c - 50)) 100"
  echo "io flush"
  if [ "$e" = 16 ]; then
    # subclusters: unallocated, zero, unmapped and discarded ones
    sub=$((c / 32))
    echo "io write -P 0x31 $((26 * c + 3 * sub + 100)) 300"
    echo "io write -z $((26 * c + 8 * sub)) $((3 * sub))"
    echo "io write -P 0x32 $((26 * c + 9 * sub + 7)) 10"
    echo "io write -z -u $((26 * c + 12 * sub + 5)) $((2 * sub))"
    echo "io discard $((26 * c + 16 * sub)) $((2 * sub))"
    echo "io write -P 0x33 $((27 * c)) $c"
    echo "io write -z $((27 * c + 31 * sub)) $sub"
    echo "io write -z -u $((27 * c)) $sub"
    echo "io write -P 0x34 $((27 * c + sub / 2)) $((sub * 3))"
    echo "io read -P 0x32 $((26 * c + 9 * sub + 7)) 10"
  fi
  # a discarded compressed cluster, then a write across it and the next one
  echo "io discard $((28 * c)) $c"
  echo "io write -P 0x36 $((29 * c - 10)) 20"
  echo "io read -P 0x35 $((29 * c + 10)) 100"
  # across L2 tables, where the disk is large enough
  if [ $((span + 2000)) -lt $((s - 4 * c - 2000)) ] && [ "$span" -gt $((30 * c)) ]; then
    echo "io write -P 0x21 $((span - 700)) 1400"
    echo "io read -P 0x21 $((span - 700)) 1400"
    if [ $((4 * span + 10000)) -lt $((s - 4 * c - 2000)) ]; then
      echo "io write -P 0x22 $((2 * span - 5000)) $((span + 10000))"
      echo "io discard $((2 * span - 2 * c)) $((span + 4 * c))"
    fi
  fi
  # the tail: a write, a discard of the last (partial) cluster, more writes
  t=$(align $((s - 1)) "$c")
  echo "io write -P 0x23 $((s - 2000)) 2000"
  echo "io discard $t $((s - t))"
  echo "io write -P 0x24 $((s - 700)) 300"
  echo "io write -z -u $((s - 200)) 200"
  echo "io read -P 0x24 $((s - 700)) 300"
  # grow, write into the new part, shrink to just past it, write at the end
  s1=$((s + 3 * c + 1536))
  s2=$((s1 - c - 1024))
  echo "resize +$((3 * c + 1536))"
  echo "io write -P 0x25 $((s + 100)) $c"
  echo "io read -P 0 $((s + 100 + c)) 100"
  echo "resize -$((c + 1024))"
  echo "io write -P 0x26 $((s2 - 300)) 300"
  echo "io read -P 0x25 $((s + 100)) $c"
  echo "io read -P 0x13 $((2 * c + c / 4)) 100"
}

# --- running a script on the twins -----------------------------------------

# w_batch: run the io lines collected so far on both twins
w_batch() {
  local c vrc qrc
  local args=()
  if [ ${#w_io[@]} -eq 0 ]; then
    return
  fi
  for c in "${w_io[@]}"; do
    args+=(-c "$c")
  done
  w_io=()
  w_nbatch=$((w_nbatch + 1))
  qvet io "${args[@]}" A.qcow2 >"$OUT/vio.all" 2>"$OUT/err"
  vrc=$?
  grep -Ev '^[0-9.]+ (bytes|[KMGTPE]iB), [0-9]+ ops; ' "$OUT/vio.all" >"$OUT/vio"
  qemu-io -f qcow2 "${args[@]}" B.qcow2 >"$OUT/qio.all" 2>&1 </dev/null
  qrc=$?
  grep -Ev '^[0-9.]+ (bytes|[KMGTPE]iB), [0-9]+ ops; ' "$OUT/qio.all" >"$OUT/qio"
  if [ "$qrc" != 0 ]; then
    echo "harness: qemu-io exited $qrc on io batch $w_nbatch: $(grep -v '^wrote\|^read\|^discard' "$OUT/qio" | head -n 1)" >>"$OUT/ops"
  fi
  if [ "$vrc" != "$qrc" ]; then
    echo "io batch $w_nbatch: qvet io $(exited "$vrc") (qemu-io exited $qrc)$(errline)" >>"$OUT/ops"
  elif ! cmp -s "$OUT/vio" "$OUT/qio"; then
    echo "io batch $w_nbatch: qvet io printed other messages than qemu-io:" >>"$OUT/ops"
    diff --label qemu-io --label qvet -u "$OUT/qio" "$OUT/vio" | sed -n '3,10p' >>"$OUT/ops"
  fi
}

# w_pair WHAT QVET-ARGS -- QEMU-COMMAND...: one step on A by qvet, on B by QEMU
w_pair() {
  local what=$1 vrc qrc
  local v=()
  shift
  while [ "$1" != -- ]; do
    v+=("$1")
    shift
  done
  shift
  qvet "${v[@]}" >/dev/null 2>"$OUT/err"
  vrc=$?
  "$@" >"$OUT/qout" 2>&1 </dev/null
  qrc=$?
  if [ "$qrc" != 0 ]; then
    echo "harness: $* exited $qrc: $(head -n 1 "$OUT/qout")" >>"$OUT/ops"
  fi
  if [ "$vrc" != "$qrc" ]; then
    echo "$what: qvet ${v[*]} $(exited "$vrc") ($1 exited $qrc)$(errline)" >>"$OUT/ops"
  fi
}

# w_both_qemu WHAT COMMAND...: a QEMU command on A, then on B (the word IMG in
# COMMAND stands for the image)
w_both_qemu() {
  local what=$1 img rc
  shift
  for img in A B; do
    "${@//IMG/$img.qcow2}" >"$OUT/qout" 2>&1 </dev/null
    rc=$?
    if [ "$rc" != 0 ]; then
      if [ "$img" = A ]; then
        echo "$what: on qvet's image: ${*//IMG/A.qcow2} exited $rc: $(head -n 1 "$OUT/qout")" >>"$OUT/ops"
      else
        echo "harness: ${*//IMG/B.qcow2} exited $rc: $(head -n 1 "$OUT/qout")" >>"$OUT/ops"
      fi
    fi
  done
}

# snaps IMG: "ID NAME" of every snapshot, one a line (from qemu-img snapshot -l)
snaps() {
  qemu-img snapshot -l "$1" 2>&1 | awk 'NR > 2 { print $1, $2 }'
}

# w_verify PREFIX: compare the twins (see the top of this section)
w_verify() {
  local p=$1 rc va vb id sname
  if [ -s "$OUT/ops" ]; then
    fail "$p:run" "$(grep -c . "$OUT/ops") step(s) differed from QEMU" "$OUT/ops"
  else
    pass "$p:run"
  fi
  : >"$OUT/ops"
  qemu-img check A.qcow2 >"$OUT/qchk" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then
    pass "$p:check"
  else
    grep -v '^$' "$OUT/qchk" | head -n 8 >"$OUT/qchk.head"
    fail "$p:check" "qemu-img check exited $rc on qvet's image" "$OUT/qchk.head"
  fi
  va=$(u64 A.qcow2 24)
  vb=$(u64 B.qcow2 24)
  qemu-img compare A.qcow2 B.qcow2 >"$OUT/cmp" 2>&1
  rc=$?
  if [ "$rc" = 0 ] && [ "$va" = "$vb" ]; then
    pass "$p:compare"
  elif [ "$rc" = 0 ]; then
    fail "$p:compare" "virtual size: qvet $va, qemu $vb"
  else
    fail "$p:compare" "qemu-img compare exited $rc: $(grep -v '^Warning' "$OUT/cmp" | head -n 1)$([ "$va" = "$vb" ] || echo "; virtual size: qvet $va, qemu $vb")"
  fi
  if [ "$w_snaps" != 1 ]; then
    return
  fi
  snaps A.qcow2 >"$OUT/snaps.a"
  snaps B.qcow2 >"$OUT/snaps.b"
  if cmp -s "$OUT/snaps.a" "$OUT/snaps.b"; then
    pass "$p:list"
  else
    diff -u --label "qemu-img snapshot -l (qemu's image)" --label "(qvet's image)" \
      "$OUT/snaps.b" "$OUT/snaps.a" | tail -n +3 >"$OUT/diff"
    fail "$p:list" "the snapshot lists differ (ID NAME)" "$OUT/diff"
  fi
  # The disks are small: plain cmp of the raw contents is cheap.
  while read -r id sname; do
    rm -f "$OUT/sa.raw" "$OUT/sb.raw"
    if ! qemu-img convert -t unsafe -O raw -l "snapshot.id=$id" B.qcow2 "$OUT/sb.raw" 2>"$OUT/qerr"; then
      fail "$p@$id.$sname" "harness: qemu-img convert -l snapshot.id=$id on qemu's image: $(head -n 1 "$OUT/qerr")"
      continue
    fi
    if ! qemu-img convert -t unsafe -O raw -l "snapshot.id=$id" A.qcow2 "$OUT/sa.raw" 2>"$OUT/qerr"; then
      fail "$p@$id.$sname" "qemu-img convert -l snapshot.id=$id on qvet's image: $(head -n 1 "$OUT/qerr")"
      continue
    fi
    if ! cmp "$OUT/sb.raw" "$OUT/sa.raw" >"$OUT/cmp" 2>&1; then
      fail "$p@$id.$sname" "the snapshot reads differently from qvet's image (qemu-img convert -l): $(sed 's|^.*/sb.raw .*/sa.raw ||; s|^cmp: ||; s|/[^ ]*/s\([ab]\).raw|\1|' "$OUT/cmp" | head -n 1)"
      continue
    fi
    qvet cat -s "$id" A.qcow2 2>"$OUT/err" | cmp - "$OUT/sb.raw" >"$OUT/cmp" 2>&1
    rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then
      fail "$p@$id.$sname" "qvet cat -s $id $(exited "$rc")$(errline)"
    elif [ -s "$OUT/cmp" ]; then
      fail "$p@$id.$sname" "qvet cat -s $id reads other data than qemu-img convert -l: $(sed 's|^cmp: ||; s|/[^ ]*/sb.raw|qemu-img|' "$OUT/cmp" | head -n 1)"
    else
      pass "$p@$id.$sname"
    fi
  done <"$OUT/snaps.b"
  rm -f "$OUT/sa.raw" "$OUT/sb.raw"
}

# w_play PREFIX SCRIPT: play SCRIPT on the twins A.qcow2 and B.qcow2 (cwd)
w_play() {
  local p=$1 script=$2 line verb rest step=0 nchecks
  w_io=()
  w_nbatch=0
  w_snaps=0
  if grep -q '^q\?snap ' "$script"; then
    w_snaps=1
  fi
  : >"$OUT/ops"
  nchecks=$(grep -c '^check$' "$script")
  if [ "$(tail -n 1 "$script")" != check ]; then
    nchecks=$((nchecks + 1))
    echo check >>"$script"
  fi
  while IFS= read -r -u 4 line; do
    verb=${line%% *}
    rest=${line#* }
    if [ "$verb" = io ]; then
      w_io+=("$rest")
      continue
    fi
    w_batch
    case $verb in
      resize) w_pair "resize $rest" resize --shrink A.qcow2 "$rest" -- qemu-img resize -q --shrink B.qcow2 "$rest" ;;
      snap) w_pair "snapshot $rest" snapshot "${rest%% *}" "${rest#* }" A.qcow2 -- \
        qemu-img snapshot "${rest%% *}" "${rest#* }" B.qcow2 ;;
      qsnap) w_both_qemu "qemu-img snapshot $rest" qemu-img snapshot "${rest%% *}" "${rest#* }" IMG ;;
      check)
        step=$((step + 1))
        if [ "$nchecks" -gt 1 ]; then
          w_verify "$p#$step"
        else
          w_verify "$p"
        fi
        ;;
      *) echo "harness: unknown script line: $line" >>"$OUT/ops" ;;
    esac
  done 4<"$script"
}

# w_agree NAME IMG: qvet check and qemu-img check must agree on IMG
w_agree() {
  local name=$1 img=$2 qrc vrc qf vf i why=""
  local qa=() va=()
  qemu-img check --output=json "$img" >"$OUT/q.json" 2>"$OUT/q.err"
  qrc=$?
  qvet check --output=json "$img" >"$OUT/v.json" 2>"$OUT/err"
  vrc=$?
  if [ "$vrc" != "$qrc" ]; then
    why="exit status: qemu-img $qrc, qvet $vrc$(errline)"
  fi
  if [ -s "$OUT/q.json" ]; then
    qf=$(checkfields "$OUT/q.json")
    vf=$(checkfields "$OUT/v.json")
    if [ "$qf" != "$vf" ]; then
      read -ra qa <<<"$qf"
      read -ra va <<<"$vf"
      for i in "${!qa[@]}"; do
        if [ "${qa[$i]}" != "${va[$i]:-}" ]; then
          why="${why:+$why; }${qa[$i]%%=*}: qemu-img ${qa[$i]#*=}, qvet ${va[$i]#*=}"
        fi
      done
    fi
  fi
  if [ -z "$why" ]; then
    pass "$name"
  else
    fail "$name" "$why"
  fi
}

# make_base PATH FORMAT SIZE: a backing file with position-dependent content
make_base() {
  local p=$1 fmt=$2 s=$3 n
  if [ "$fmt" = raw ]; then
    cat "$WORK/$T1" "$WORK/$T2" | head -c "$s" >"$p"
    return
  fi
  qemu-img create -q -f qcow2 "$p" "$s" || return 1
  n=$((s < 2 * M ? s : 2 * M))
  qemu-io -f qcow2 -c "write -s $WORK/$T1 0 $n" -c "write -P 0xb1 $n $((s - n))" \
    -c "write -s $WORK/$T2 $((s - 3000)) 3000" -c "write -z $((64 * K)) 64k" "$p" >/dev/null
}

# unit_enter PREFIX DIR: make a write unit's directory DIR and go there; a FAIL
# line PREFIX:setup and status 1 if that cannot be done
unit_enter() {
  if ! { mkdir -p "$2" && cd "$2"; }; then
    fail "$1:setup" "harness: cannot make $2"
    return 1
  fi
}

# u_twins LABEL VARIANT SIZE OPTIONS BACKING GENERATOR [ARGS...]
#   VARIANT  qi: both twins from qemu-img create; qv: both from qvet create
#   OPTIONS  create -o options ("-" for none)
#   BACKING  none, qcow2:SIZE or raw:SIZE (made with QEMU's tools)
u_twins() {
  local label=$1 var=$2 size=$3 opts=$4 back=$5 gen=$6
  shift 6
  local p="write:$label/$var" dir=$WORK/w/$label.$var cs rc
  local co=()
  unit_enter "$p" "$dir" || return
  if [ "$opts" != - ]; then
    co+=(-o "$opts")
  fi
  case $back in
    none) ;;
    *)
      if ! make_base "base.${back%%:*}" "${back%%:*}" "${back#*:}" 2>"$OUT/err"; then
        fail "$p:setup" "harness: cannot make the backing file$(errline)"
        return
      fi
      co+=(-b "base.${back%%:*}" -F "${back%%:*}")
      ;;
  esac
  if [ "$var" = qv ]; then
    qvet create "${co[@]}" A.qcow2 "$size" >/dev/null 2>"$OUT/err"
    rc=$?
    if [ "$rc" != 0 ]; then
      fail "create:$label" "qvet create ${co[*]} A.qcow2 $size $(exited "$rc")$(errline)"
      return
    fi
    cp A.qcow2 B.qcow2
    qemu-img create -q -f qcow2 "${co[@]}" ref.qcow2 "$size" >/dev/null
    if cmp -s A.qcow2 ref.qcow2; then
      pass "create:$label"
    else
      fail "create:$label" "qvet create ${co[*]} IMG $size differs from qemu-img create: $(cmp A.qcow2 ref.qcow2 2>&1 | sed 's/^A.qcow2 ref.qcow2 //' | head -n 1) (sizes $(stat -c %s A.qcow2) and $(stat -c %s ref.qcow2))"
    fi
    rm -f ref.qcow2
  else
    if ! qemu-img create -q -f qcow2 "${co[@]}" A.qcow2 "$size" 2>"$OUT/err"; then
      fail "$p:setup" "harness: qemu-img create failed$(errline)"
      return
    fi
    cp A.qcow2 B.qcow2
  fi
  cs=$(cs_of "$opts")
  "$gen" "$cs" "$(u64 A.qcow2 24)" "$opts" "$@" >script
  w_play "$p" script
  w_agree "agree:$label/$var:qvet-img" A.qcow2
  w_agree "agree:$label/$var:qemu-img" B.qcow2
}

# The write units: one line each in the queue (see gate_run).
# wu LABEL FUNCTION ARGS...; wu1 for the long ones, started first
wu() {
  wu_add w "$@"
}
wu1() {
  wu_add W "$@"
}
wu_add() {
  local kind=$1 label=$2 fn=$3
  shift 3
  if [ -n "$ONLY" ] && ! [[ $label =~ $ONLY ]]; then
    return
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$count" "$kind" "$label" "$fn" "$*" >>"$QUEUE"
  count=$((count + 1))
}

# twins LABEL SIZE OPTIONS BACKING GENERATOR [ARGS...]: both variants
twins() {
  local label=$1
  shift
  wu "write:$label/qi" u_twins "$label" qi "$@"
  wu "write:$label/qv" u_twins "$label" qv "$@"
}

# ---------------------------------------------------------------------------
# running the checks

# flush_results: print every finished result file that is next in order
flush_results() {
  local f
  while [ "$next" -lt "$count" ] && [ -e "$OUT/r$next/done" ]; do
    f=$OUT/r$next/result
    cat "$f"
    passed=$((passed + $(grep -c '^PASS ' "$f")))
    failed=$((failed + $(grep -c '^FAIL ' "$f")))
    next=$((next + 1))
  done
}

# gate_run [GROUP]: build read group GROUP's images (function g_GROUP) and check
# them, or without GROUP run the write family's units (function write_units);
# JOBS checks at a time, results printed in queue order. The caller calls finish.
gate_run() {
  local group=${1:-} start rc
  gate_start "${group:-write}"
  cd "$WORK" || exit 1
  start=$(date +%s)
  make_data
  if [ -n "$group" ]; then
    (
      set -e
      "g_$group"
    ) >"$OUT/setup.log" 2>&1
    rc=$?
    if [ "$rc" != 0 ]; then
      grep -v '^$' "$OUT/setup.log" | tail -n 5 >"$OUT/setup-tail"
      fail "setup:$group" "building the images failed (exit $rc)" "$OUT/setup-tail"
    fi
  fi
  echo "interop: $(wc -l <"$MANIFEST") images built in $(($(date +%s) - start))s; checking $QVET with $JOBS jobs" >&2

  # The queue: the read gate's images (r), then the write units (w; W: long
  # ones, started first). Results are printed in queue order.
  QUEUE=$OUT/queue
  : >"$QUEUE"
  count=0
  while IFS=$'\t' read -r -u 3 label cwd path snaps; do
    if [ -n "$ONLY" ] && ! [[ $label =~ $ONLY ]]; then
      continue
    fi
    printf '%s\tr\t%s\t%s\t%s\t%s\n' "$count" "$label" "$cwd" "$path" "$snaps" >>"$QUEUE"
    count=$((count + 1))
  done 3<"$MANIFEST"
  if [ -z "$group" ]; then
    write_units
  fi
  {
    awk -F '\t' '$2 == "W"' "$QUEUE"
    awk -F '\t' '$2 != "W"' "$QUEUE"
  } >"$OUT/start"

  next=0
  running=0
  while IFS=$'\t' read -r -u 3 idx kind label a b c; do
    mkdir -p "$OUT/r$idx"
    (
      OUT=$OUT/r$idx
      t0=$(date +%s%N)
      if [ "$kind" = r ]; then
        check_image "$label" "$a" "$b" "$c" >"$OUT/result" 2>&1
      else
        read -ra wargs <<<"$b"
        "$a" "${wargs[@]}" >"$OUT/result" 2>"$OUT/stderr"
      fi
      echo "$((($(date +%s%N) - t0) / 1000000)) $label" >"$OUT/time"
      : >"$OUT/done"
    ) &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
      wait -n
      running=$((running - 1))
    fi
    flush_results
  done 3<"$OUT/start"
  wait
  flush_results
  if [ "$TIMES" = 1 ]; then
    cat "$WORK"/.out/r*/time 2>/dev/null | sort -rn | head -n 20 | sed 's/^/interop: ms /' >&2
  fi

  echo "interop: done in $(($(date +%s) - start))s" >&2
}
