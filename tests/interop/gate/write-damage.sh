#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# write-damage.sh - the write gate's family damage:
# images damaged on purpose: qvet check agrees with qemu-img check, and repairs.
#
# Twin images, one written by qvet and one by QEMU with the same script, then
# compared (tests/interop/gate/gate.sh says how). Runs on its own or from
# scripts/interop.sh; CTest test interop.write.damage.
#
# shellcheck source=gate.sh
source "$(dirname "${BASH_SOURCE[0]}")/gate.sh"

# damage FILE KIND: break one thing in a 16-bit-refcount image
damage() {
  local f=$1 kind=$2 cb rt rb l1 l2 i e idx n
  cb=$(u32 "$f" 20)
  rt=$(u64 "$f" 48)
  rb=$(($(u64 "$f" "$rt") & 0x00fffffffffffe00))
  case $kind in
    leak) # the header cluster counted twice
      put "$f" "$rb" 2 2 ;;
    lower) # the first shared cluster counted once
      n=$((1 << (cb - 1)))
      idx=$(od -An -tu2 --endian=big -v -w2 -N $((2 * n)) -j "$rb" "$f" | awk '$1 == 2 { print NR - 1; exit }')
      [ -n "$idx" ] || return 1
      put "$f" $((rb + 2 * idx)) 2 1 ;;
    zero | copied) # a data cluster of the active L2 table with COPIED set
      l1=$(u64 "$f" 40)
      l2=$(($(u64 "$f" "$l1") & 0x00fffffffffffe00))
      [ "$l2" != 0 ] || return 1
      for ((i = 0; i < (1 << (cb - 3)); i++)); do
        e=$(u64 "$f" $((l2 + 8 * i)))
        if [ $((e >> 63 & 1)) = 1 ] && [ $((e >> 62 & 1)) = 0 ] && [ $((e & 0x00fffffffffffe00)) != 0 ]; then
          break
        fi
        e=
      done
      [ -n "$e" ] || return 1
      if [ "$kind" = copied ]; then
        put "$f" $((l2 + 8 * i)) 1 $(((e >> 56) & 0x7f))
      else
        idx=$(((e & 0x00fffffffffffe00) >> cb))
        rb=$(($(u64 "$f" $((rt + 8 * (idx >> (cb - 1))))) & 0x00fffffffffffe00))
        put "$f" $((rb + 2 * (idx & ((1 << (cb - 1)) - 1)))) 2 0
      fi
      ;;
    reftable) # the first refcount block lost
      put "$f" "$rt" 8 0 ;;
  esac
}

# u_damage KIND CLUSTER-SIZE: a written image with a snapshot, damaged in one
# way; qvet check must agree with qemu-img check, and repair it
u_damage() {
  local label=$1 kind=$2 cs=$3 dir=$WORK/w/damage-$1 vrc qrc rc why=""
  mkdir -p "$dir" && cd "$dir" || return
  if ! {
    qemu-img create -q -f qcow2 -o cluster_size="$cs" img.qcow2 4M &&
      qemu-io -f qcow2 -c "write -P 0xa1 0 300k" -c "write -P 0xa2 1M 100k" \
        -c "write -c -P 0xa3 2M 64k" img.qcow2 >/dev/null &&
      qemu-img snapshot -c s1 img.qcow2 &&
      qemu-io -f qcow2 -c "write -P 0xa4 0 8k" -c "write -P 0xa5 3M 4k" img.qcow2 >/dev/null &&
      cp img.qcow2 dmg.qcow2 && damage dmg.qcow2 "$kind"
  }; then
    fail "damage:$label" "harness: cannot build the damaged image"
    return
  fi
  w_agree "agree:damage/$label" dmg.qcow2
  cp dmg.qcow2 fixv.qcow2
  cp dmg.qcow2 fixq.qcow2
  qvet check -r all fixv.qcow2 >"$OUT/vrep" 2>"$OUT/err"
  vrc=$?
  qemu-img check -r all fixq.qcow2 >/dev/null 2>&1
  qrc=$?
  if [ "$vrc" != "$qrc" ]; then
    why="qvet check -r all $(exited "$vrc"), qemu-img check -r all exited $qrc$(errline)"
  fi
  qemu-img check fixv.qcow2 >"$OUT/qchk" 2>&1
  rc=$?
  if [ "$rc" != 0 ]; then
    why="${why:+$why; }after qvet check -r all, qemu-img check exited $rc: $(grep -v '^$' "$OUT/qchk" | head -n 1)"
  fi
  if ! qemu-img compare -q img.qcow2 fixv.qcow2 2>/dev/null; then
    why="${why:+$why; }the repair changed the guest data"
  fi
  if [ -z "$why" ]; then
    pass "repair:damage/$label"
  else
    fail "repair:damage/$label" "$why"
  fi
}

# the family's write units, for gate_run
write_units() {
  local cs k
  for k in leak lower zero copied reftable; do
    for cs in 65536 512; do
      wu "damage:$k-c$cs" u_damage "$k-c$cs" "$k" "$cs"
    done
  done
}

gate_run
finish
