#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The external targets and readers (docs/targets.md), short: one CASE per CTest test
# (label "targets"). Each exits 0 (held), 1 (failed) or 77 (skipped: a tool or a kind
# this qvet was built without; the reason is printed).
#   exec-python  the Python raw-file adapter as a target; its trace replays
#   exec-c       the libqvet adapter as a target and as a reader
#   broken       an adapter dropping every 500th write is caught at a dropped sector
#   qemu         QEMU through qemu-nbd: a short soak, then its replay
#   nbd          nbdkit's memory plugin as nbd:URI; what it cannot do is left out
#   libqcow      libqcow as a reader: the minimized findings still diverge, v2 passes
#   compress     QEMU's compress filter over qcow2 (every write compressed): a short soak
#                passes, and the minimized corruption it found still shows
# Environment: QVET (the qvet binary), ADAPTER (qvet-exec-adapter), SRC (the source tree).
set -u
case_name=${1:?usage: run.sh CASE}
src=${SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
qvet=${QVET:-$src/build/qvet}
adapter=${ADAPTER:-$(dirname "$qvet")/qvet-exec-adapter}
here=$src/tests/targets
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/qvet-targets.XXXXXX")
nbdkit_pid=
cleanup() {
    [ -n "$nbdkit_pid" ] && kill "$nbdkit_pid" 2>/dev/null
    [ "${status:-1}" -eq 0 ] || [ "${status:-1}" -eq 77 ] && rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL ($case_name): $*"; status=1; exit 1; }
skip() { echo "SKIPPED ($case_name): $*"; status=77; exit 77; }

# The kinds this qvet was built with, from the factory's refusal of an unknown one.
kinds=$("$qvet" soak --target nosuch --dir "$work/kinds" --ops 1 2>&1 | sed -n 's/.*(known: \(.*\)).*/\1/p')
need_kind() {
    case ", $kinds," in *", $1,"*) ;; *) skip "qvet was built without the $1 kind ($2 missing at configure time)";; esac
}
need_tool() { command -v "$1" >/dev/null 2>&1 || skip "$1 not found on PATH ($2)"; }
# A JSON field of a run's summary.json, as text.
field() { sed -n "s/^  \"$2\": \(.*\),\{0,1\}$/\1/p" "$1/summary.json" | sed 's/,$//'; }

# soak DIR ARGS...: runs qvet soak into DIR, output in DIR.log; sets rc.
soak() {
    local dir=$1; shift
    "$qvet" soak --dir "$dir" --heartbeat 0 "$@" >"$dir.log" 2>&1
    rc=$?
}
# `qvet triage` over one failed run: one signature, of the given kind, naming the
# implementation that misbehaved (what a maintainer of that implementation receives).
triaged() {
    "$qvet" triage --no-minimize -o "$work/triage-$(basename "$1")" "$1" >"$work/triage.log" 2>&1
    local sigs=$work/triage-$(basename "$1")/summary.json
    [ -f "$sigs" ] || { cat "$work/triage.log"; fail "triage of $1 wrote no report"; }
    /usr/bin/python3 - "$sigs" "$2" "$3" <<'PY' || { cat "$work/triage.log"; fail "triage of $1: see above"; }
import json, sys
sigs = json.load(open(sys.argv[1]))["signatures"]
ok = len(sigs) == 1 and sigs[0]["signature"].startswith(sys.argv[2]) and \
    sys.argv[3] in sigs[0]["signature"]
print("triage:", [s["signature"] for s in sigs])
sys.exit(0 if ok else 1)
PY
}

expect_pass() {
    [ "$rc" -eq 0 ] || { cat "$1.log"; fail "the soak exited $rc, not 0"; }
    [ "$(field "$1" verdict)" = '"passed"' ] || fail "$1: verdict $(field "$1" verdict)"
}

case $case_name in
exec-python)
    need_tool python3 "the Python adapter"
    spec="exec:python3 $src/adapters/raw_file.py"
    soak "$work/py" --target "$spec" --ops 600 --check-every 200
    expect_pass "$work/py"
    grep -qx "target $spec" "$work/py/trace.txt" || fail "the trace does not record the target"
    # a raw file cannot compress, and an exec adapter cannot be power-cut from outside
    want='["write-compressed", "power-cut", "dirty-reopen", "torn-power-cut"]'
    [ "$(field "$work/py" left_out)" = "$want" ] ||
        fail "left_out is $(field "$work/py" left_out), not $want"
    [ "$(field "$work/py" qemu_img_checks_run)" = false ] ||
        fail "qemu-img checked a raw adapter's file"
    grep -q '"snapshot-apply": [1-9]' "$work/py/summary.json" || fail "no snapshot was applied"
    "$qvet" replay --dir "$work/py-replay" "$work/py/trace.txt" >"$work/replay.log" 2>&1 ||
        { cat "$work/replay.log"; fail "its replay failed"; }
    ;;
exec-c)
    [ -x "$adapter" ] || skip "$adapter not built"
    soak "$work/c" --target "exec:$adapter" --ops 800 --check-every 300 -o cluster_size=4k
    expect_pass "$work/c"
    [ "$(field "$work/c" qemu_img_checks_run)" = true ] || fail "qemu-img did not check the qcow2 adapter"
    soak "$work/r" --reader "exec:$adapter" --ops 500 --check-every 250
    expect_pass "$work/r"
    grep -qx "reader exec:$adapter" "$work/r/trace.txt" || fail "the trace does not record the reader"
    ;;
broken)
    need_tool python3 "the broken adapter"
    : >"$work/dropped"
    soak "$work/b" --target "exec:python3 $here/broken_adapter.py 500 $work/dropped" \
        --ops 4000 --check-every 500 --weights resize=0,snapshot-apply=0
    [ "$rc" -eq 1 ] || { cat "$work/b.log"; fail "a target dropping writes was not caught (exit $rc)"; }
    sector=$(sed -n 's/.*"sector": \([0-9]*\).*/\1/p' "$work/b/summary.json")
    [ -n "$sector" ] || fail "no failing sector in summary.json"
    hit=$(awk -v s="$sector" '{ if (s * 512 + 511 >= $1 && s * 512 < $1 + $2) print }' "$work/dropped")
    [ -n "$hit" ] || { cat "$work/dropped"; fail "sector $sector is in no dropped write"; }
    echo "caught: sector $sector, in the dropped write (offset length) $hit"
    ;;
qemu)
    need_kind qemu libnbd
    need_tool qemu-nbd "qemu-utils"
    soak "$work/q" --target qemu --ops 400 --check-every 200 -o cluster_size=4k --backing qcow2
    expect_pass "$work/q"
    grep -q '"snapshot-create": [1-9]' "$work/q/summary.json" || fail "no snapshot was made"
    "$qvet" replay --dir "$work/q-replay" "$work/q/trace.txt" >"$work/replay.log" 2>&1 ||
        { cat "$work/replay.log"; fail "its replay failed"; }
    # qemu-img snapshot -d takes a name: a second snapshot of one name is refused, and the
    # ids the target reports are those QEMU gave (a soak once cried wolf here).
    "$qvet" replay --keep --dir "$work/dup" "$here/qemu-duplicate-snapshot-name.trace" \
        >"$work/dup.log" 2>&1 || { cat "$work/dup.log"; fail "the duplicate-name trace failed"; }
    grep -q "keeps snapshot names unique" "$work/dup/trace.txt" ||
        fail "the second snapshot named 's' was not refused"
    ;;
nbd)
    need_kind nbd libnbd
    need_tool nbdkit "Debian's nbdkit"
    sock=$work/nbd.sock
    nbdkit -U "$sock" -P "$work/nbdkit.pid" memory 16M || skip "nbdkit could not start"
    for _ in $(seq 50); do [ -s "$work/nbdkit.pid" ] && break; sleep 0.1; done
    nbdkit_pid=$(cat "$work/nbdkit.pid")
    soak "$work/n" --target "nbd:nbd+unix:///?socket=$sock" --ops 500 --check-every 250
    expect_pass "$work/n"
    left=$(field "$work/n" left_out)
    for k in discard snapshot-create resize reopen check; do
        case $left in *"\"$k\""*) ;; *) fail "left_out $left does not name $k";; esac
    done
    ;;
libqcow)
    need_kind libqcow libqcow
    for t in "$here"/libqcow-*.trace; do
        "$qvet" replay --dir "$work/$(basename "$t")" "$t" >"$work/l.log" 2>&1
        rc=$?
        [ "$rc" -eq 1 ] && grep -q "the reader reads differently from the oracle" "$work/l.log" ||
            { cat "$work/l.log"; fail "$t: libqcow no longer reads differently (exit $rc)"; }
    done
    soak "$work/v2" --reader libqcow --ops 600 --check-every 300 -o compat=0.10
    expect_pass "$work/v2"
    triaged "$work/libqcow-zero-unallocated.trace" "reader-divergence |" "libqcow"
    ;;
compress)
    need_kind qemu libnbd
    need_tool qemu-nbd "qemu-utils"
    soak "$work/z" --target qemu:filter=compress --io-size 64k --payload compressible \
        --ops 300 --check-every 150
    expect_pass "$work/z"
    grep -q "refused by the target" "$work/z/trace.txt" ||
        fail "no write over an allocated cluster was refused by the compress filter"
    # The corruption the soak found (docs/targets.md): write, discard, a write that needs
    # a new L2 table; QEMU packs the compressed data into that table's cluster.
    "$qvet" replay --dir "$work/zr" "$here/qemu-compress-reuse.trace" >"$work/zr.log" 2>&1
    rc=$?
    [ "$rc" -eq 1 ] && grep -q "the target failed op 173 (write 1009176576 4096)" "$work/zr.log" ||
        { cat "$work/zr.log"; fail "QEMU's compress-filter bug no longer shows (exit $rc)"; }
    qemu-img info "$work/zr/image.qcow2" | grep -q "corrupt: true" ||
        fail "QEMU did not mark the image corrupt"
    triaged "$work/zr" "target-error | write" "qemu:filter=compress"
    ;;
*)
    fail "no such case"
    ;;
esac
status=0
echo "ok ($case_name)"
