#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# interop.sh [GROUP...] - the qemu-img interop gate: runs the gate's groups in
# tests/interop/gate/ one after the other, each a read group (read-chains, ...)
# or a write family (write-damage, ...); all of them without arguments. Each group
# is also a CTest test of its own (interop.read.chains, interop.write.damage) and
# runs on its own (bash tests/interop/gate/read-chains.sh); tests/interop/gate/gate.sh
# says what the gate checks and which environment variables it takes (QVET, ONLY,
# JOBS, KEEP, TIMEOUT, TIMES), all passed on to the groups.
#
# Prints each group's lines, then the sums: "N passed, M failed". Exit status 1
# if any group failed or nothing passed.

set -u
# shellcheck source=../tests/lib/qvet-test.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lib/qvet-test.sh"
GATE=$ROOT/tests/interop/gate

all_groups() {
  (cd "$GATE" && ls read-*.sh write-*.sh) | sed 's/\.sh$//'
}

if [ "$#" = 0 ]; then
  mapfile -t names < <(all_groups)
  set -- "${names[@]}"
fi
for g in "$@"; do
  if [ ! -f "$GATE/$g.sh" ]; then
    fail "usage" "no gate group '$g' (the groups: $(all_groups | paste -sd ' '))"
    finish
  fi
done
work_dir interop-runner
for g in "$@"; do
  echo "interop: $g" >&2
  bash "$GATE/$g.sh" | tee "$WORK/out"
  rc=${PIPESTATUS[0]}
  passed=$((passed + $(grep -c '^PASS ' "$WORK/out")))
  failed=$((failed + $(grep -c '^FAIL ' "$WORK/out")))
  if [ "$rc" != 0 ] && ! grep -q '^FAIL ' "$WORK/out"; then
    fail "group:$g" "exited $rc without a FAIL line"
  fi
done
finish
