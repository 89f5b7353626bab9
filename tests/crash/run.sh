#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The crash-safety tests of make test (label crash), one CTest test per CASE:
#   run.sh regress NAME      one scripted crashtest, passing when no state fails: an
#                            ordering bug, as the script the crashtest failed on before
#                            its fix, or a step a bounded generated workload never
#                            reaches (reftable growth)
#   run.sh crash CONFIG      a bounded crashtest of one configuration
#   run.sh fault CONFIG      a bounded faultinject of one configuration
#   run.sh fault reach       scripted faultinjects that together must reach every named
#                            fault point (see below)
#   run.sh faultregress NAME one failure the faultinject found before its fix
#   run.sh mutant PATCH      builds qvet with a planted ordering bug (tests/mutants/
#                            order-*.patch, scripts/build-mutant.sh) and expects the
#                            crashtest to find it (exit 1); with MUTANT_DIR, takes the
#                            qvet that `run.sh mutants build` left there
#   run.sh mutants build     builds every order-*.patch mutant into MUTANT_DIR/NAME/qvet
#                            from one copy of the tree: one full build, then each patch
#                            put in, only what it touches rebuilt, and taken out again
# QVET is the qvet under test; each case works in a fresh directory under TMPDIR.
set -uo pipefail
. "$(dirname "$0")/../lib/qvet-test.sh"
require qemu-img
QVET=${QVET:?QVET names the qvet under test}
mode=$1
name=$2
work_dir "crash-$mode-$name"

# The reproducers, each found by the crashtest before its fix (docs/crash-safety.md).
regress_args() {
  case $1 in
    discard-refcount-drop)      # 1: a refcount drop reached the disk before the unlink
      echo "--script=write 0 65536; flush; discard 0 65536" ;;
    zero-flag-barrier)          # 2: an in-place L2 entry change without a barrier
      echo "--script=write 0 65536; zero 0 65536; flush; write 0 65536" ;;
    refblock-link)              # 3: a new refcount block linked before it was on disk
      echo "-o cluster_size=512,refcount_bits=64 --size 8M --samples 30 \
--script=write 0 28672; flush; write 28672 512" ;;
    lazy-cow-barrier)           # 4: lazy refcounts skipped the fence before a COW entry
      echo "-o lazy_refcounts=on --script=write-compressed 0 65536; flush; write 0 4096" ;;
    freed-cluster-reuse)        # QEMU too: a cluster freed since the flush handed out again
      echo "-o lazy_refcounts=on --script=write 0 65536; flush; discard 0 65536; \
write 65536 65536" ;;
    reused-cluster-fill)        # a reused cluster's old bytes need the zeros written over
      echo "--script=write 0 65536; flush; discard 0 65536; flush; write 65536 4096; flush" ;;
    snapshot-copied)            # QEMU too: COPIED flags inconsistent mid snapshot create
      echo "--script=write 0 65536; write 131072 4096; flush; snapshot-create s1; flush" ;;
    grow-over-backing)          # a grow stored the size before the zeros that hide the backing
      echo "--config backing --script=write 0 65536; flush; resize 1048576; flush; \
resize 4194304; flush" ;;
    shrink-cut-lazy)            # lazy refcounts: the file cut before the unlinks were on disk
      echo "-o lazy_refcounts=on --script=write 0 65536; write 1048576 65536; flush; \
resize 65536; flush" ;;
    reftable-growth)            # no bug: power loss while the refcount table grows. 512 B
      # clusters with 64-bit refcounts: the first table covers 2 MiB of file; the fill
      # leaves it a few clusters short and the writes after it outgrow it (the table
      # moves to two clusters). Every state is judged.
      echo "-o cluster_size=512,refcount_bits=64 --size 4M --max-states 0 --samples 2 \
--tears 1 --script=write 0 1048576; write 1048576 978944; flush; write 2027520 4096; flush; \
write 2031616 16384; flush" ;;
    compressed-overwrite-batch) # no bug: one write releases 16 compressed clusters (and
      # 8 packed into shared host clusters) in one batch, ordered by one image_sync
      echo "--config compressed --max-states 0 --script=write-compressed 0 1048576; flush; \
write 0 1048576; flush; write-compressed 1048576 524288; flush; write 1000000 300000; flush" ;;
    snapshot-cow-batch)         # no bug: one write copies 16 clusters a snapshot shares,
      # their old refcounts dropped in one batch (the L2 table's copy in it too)
      echo "--config snapshots --max-states 0 --script=write 0 1048576; flush; \
snapshot-create s1; write 0 1048576; flush; write 4096 500000; flush; snapshot-create s2; \
write 0 65536; write 65536 1048576; flush" ;;
    *) return 1 ;;
  esac
}

run_crashtest() {
  local out=$WORK/out.txt
  "$@" >"$out" 2>&1
  local status=$?
  tail -n 3 "$out"
  return $status
}

case $mode in
  regress)
    args=$(regress_args "$name") || { echo "no regression case $name"; exit 2; }
    # The --script value holds spaces: split the options, keep the script whole.
    opts=${args%%--script=*}
    script=${args#*--script=}
    # shellcheck disable=SC2086
    if run_crashtest "$QVET" crashtest --dir "$WORK/run" $opts --script "$script"; then
      pass "regress $name"
    else
      fail "regress $name" "the crashtest found a failing state" "$WORK/run/summary.json"
    fi
    ;;
  crash)
    if run_crashtest "$QVET" crashtest --dir "$WORK/run" --config "$name" --ops 16 \
         --samples 3 --tears 1 --max-states 45; then
      pass "crashtest $name"
    else
      fail "crashtest $name" "exit $?" "$WORK/run/summary.json"
    fi
    ;;
  fault)
    if [ "$name" = reach ]; then
      # Every step of a write, a snapshot create, apply and delete, a reopen (the tables
      # and the header read again), reads of data and of L2 tables, an L1 growth.
      script="write 0 65536; write 131072 4096; flush; snapshot-create s1; write 0 4096"
      script="$script; read 0 8192; reopen; read 131072 4096; write 4096 512"
      script="$script; snapshot-apply 1; resize 16777216; write 16773120 4096"
      script="$script; snapshot-delete 1; discard 65536 65536; zero 0 65536"
      script="$script; write-compressed 196608 65536; flush"
      run_crashtest "$QVET" faultinject --dir "$WORK/run" -o cluster_size=4k --no-qemu \
        --faults read-error,write-error,enospc,short-write,flush-error --script "$script"
      status=$?
      missed=$(sed -n 's/^fault points not reached: //p' "$WORK/out.txt")
      # Reftable growth: the first refcount table of 512-byte clusters with 64-bit
      # refcounts covers 2 MiB of file. Two writes fill it to 6 clusters short, untouched
      # (--armed-from-op), and the faults strike the write that outgrows it.
      script="write 0 1048576; write 1048576 978944; write 2027520 4096; flush"
      run_crashtest "$QVET" faultinject --dir "$WORK/grow" --no-qemu --size 4M \
        -o cluster_size=512,refcount_bits=64 --armed-from-op 3 --script "$script"
      grow_status=$?
      grow_missed=$(sed -n 's/^fault points not reached: //p' "$WORK/out.txt")
      # A point either run reached is reached.
      both=$(comm -12 <(tr ',' '\n' <<<"$missed" | sed 's/^ //' | sort) \
                      <(tr ',' '\n' <<<"$grow_missed" | sed 's/^ //' | sort) | paste -sd,)
      if [ "$status" -ne 0 ] || [ "$grow_status" -ne 0 ]; then
        fail "faultinject reach" "exit $status, reftable growth run exit $grow_status" \
          "$WORK/run/summary.json"
      elif [ -n "$both" ]; then
        fail "faultinject reach" "fault points not reached: $both" "$WORK/out.txt"
      elif ! grep -q '^fault points:.* reftable growth [1-9]' "$WORK/out.txt"; then
        fail "faultinject reach" "the reftable growth run missed reftable growth" "$WORK/out.txt"
      else
        pass "faultinject reaches every named fault point"
      fi
    elif run_crashtest "$QVET" faultinject --dir "$WORK/run" --config "$name" --ops 8 \
         --no-qemu; then
      pass "faultinject $name"
    else
      fail "faultinject $name" "exit $?" "$WORK/run/summary.json"
    fi
    ;;
  faultregress)
    opts=()
    case $name in
      # A snapshot create failing midway left COPIED flags that disagree with the
      # refcounts, and the close cleared the dirty bit that would have had them repaired.
      snapshot-create-failure)
        script="write 0 65536; write 131072 4096; flush; snapshot-create s1; write 0 4096" ;;
      # An L1 growth whose flush after the header switch failed gave the new table's
      # cluster back (cluster refcount=0 reference=1), and a snapshot table switched so
      # had the old table put back in memory and its clusters freed.
      switch-flush-failure)
        opts=(-o cluster_size=4k)
        script="resize 16777216; write 16773120 4096; snapshot-create s1; flush"
        script="$script; snapshot-delete 1; snapshot-create s2; write 0 4096" ;;
      # A snapshot apply whose L1 switch failed left the disk at the snapshot's size over
      # the old tables: neither the disk before nor the one after.
      snapshot-apply-size)
        script="write 0 65536; snapshot-create s1; resize 8388608; write 0 4096"
        script="$script; snapshot-apply 1" ;;
      *) echo "no faultregress case $name"; exit 2 ;;
    esac
    if run_crashtest "$QVET" faultinject --dir "$WORK/run" --no-qemu "${opts[@]}" \
         --faults write-error,flush-error --script "$script"; then
      pass "faultregress $name"
    else
      fail "faultregress $name" "exit $?" "$WORK/run/summary.json"
    fi
    ;;
  mutants)
    dir=${MUTANT_DIR:?MUTANT_DIR names where the mutants go}
    rm -rf "$dir"
    mkdir -p "$dir"
    tree=$dir/tree
    previous=
    for patch in "$ROOT"/tests/mutants/order-*.patch; do
      m=$(basename "$patch" .patch)
      if [ -z "$previous" ]; then
        JOBS=${JOBS:-2} bash "$ROOT/scripts/build-mutant.sh" "$patch" "$tree" ||
          { fail "mutants build" "$m does not build" "$tree/build.log"; continue; }
      else
        patch -s -R -p1 -d "$tree/src" < "$previous" &&
          patch -s -p1 -d "$tree/src" < "$patch" &&
          cmake --build "$tree/build" --target qvet -j "${JOBS:-2}" >"$tree/build.log" 2>&1 ||
          { fail "mutants build" "$m does not build" "$tree/build.log"; break; }
      fi
      mkdir -p "$dir/$m"
      cp "$tree/build/qvet" "$dir/$m/qvet"
      pass "mutants build: $m"
      previous=$patch
    done
    ;;
  mutant)
    patch=$ROOT/tests/mutants/$name.patch
    case $name in
      order-l2-before-refcount) script="write 0 65536; flush" ;;
      order-refcount-drop-early) script="write 0 65536; flush; discard 0 65536" ;;
      order-no-flush-before-header-switch) script="write 0 65536; flush; snapshot-create s1; flush" ;;
      *) echo "no mutant case $name"; exit 2 ;;
    esac
    mutant_qvet=$WORK/mutant/build/qvet
    if [ -x "${MUTANT_DIR:-/nonexistent}/$name/qvet" ]; then
      mutant_qvet=$MUTANT_DIR/$name/qvet
    fi
    if [ ! -x "$mutant_qvet" ] &&
       ! JOBS=${JOBS:-2} bash "$ROOT/scripts/build-mutant.sh" "$patch" "$WORK/mutant"; then
      fail "mutant $name" "the mutant does not build" "$WORK/mutant/build.log"
    else
      run_crashtest "$mutant_qvet" crashtest --dir "$WORK/run" --script "$script"
      status=$?
      if [ "$status" -eq 1 ]; then
        pass "mutant $name caught"
      else
        fail "mutant $name" "the crashtest did not find the planted bug (exit $status)" \
          "$WORK/run/summary.json"
      fi
      # The unpatched qvet passes the same workload: the finding is the bug's.
      if run_crashtest "$QVET" crashtest --dir "$WORK/clean" --script "$script" >/dev/null; then
        pass "mutant $name: the unpatched qvet passes the same workload"
      else
        fail "mutant $name" "the unpatched qvet fails the same workload" "$WORK/clean/summary.json"
      fi
    fi
    ;;
  *) echo "usage: run.sh regress|crash|fault|faultregress|mutant NAME | mutants build"; exit 2 ;;
esac
finish
