#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# `make bench` as a tool (CTest bench-quick): scripts/bench.sh in its tiny mode
# (BENCH_QUICK=1) must write reports/bench/latest.json in the documented schema, with a
# number in every row, and the table with the targets. Speed is not judged here: the
# numbers of a tiny run mean nothing, and targets are reported by `make bench`, never
# asserted.
set -euo pipefail
: "${QVET:?QVET must name the qvet binary}" "${SRC:?SRC must name the source tree}"
out=$(mktemp -d "${TMPDIR:-/tmp}/qvet-bench-test.XXXXXX")
trap 'rm -rf "$out"' EXIT
BENCH_QUICK=1 BENCH_OUT="$out" bash "$SRC/scripts/bench.sh" > "$out/stdout" 2> "$out/stderr" || {
    echo "bench-quick: scripts/bench.sh failed:" >&2
    tail -20 "$out/stderr" >&2
    exit 1
}
python=/usr/bin/python3
[ -x "$python" ] || python=python3
"$python" - "$out/latest.json" "$out/latest.txt" <<'PY'
import json, math, sys
report = json.load(open(sys.argv[1]))
problems = []
rows = report.get("rows")
if not isinstance(rows, list) or not rows:
    sys.exit("bench-quick: latest.json has no rows")
def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
kinds = set()
for r in rows:
    name = r.get("name", "?")
    for key in ("name", "kind", "size", "unit", "qvet", "qemu", "limit", "ratio"):
        if key not in r:
            problems.append(f"{name}: no '{key}'")
    kinds.add(r.get("kind"))
    if not num(r.get("qvet")) or r["qvet"] <= 0:
        problems.append(f"{name}: qvet is {r.get('qvet')!r}, expected a positive number")
    for key in ("qemu", "limit", "ratio"):
        if r.get(key) is not None and not num(r[key]):
            problems.append(f"{name}: {key} is {r[key]!r}, expected a number or null")
    if r.get("kind") in ("io", "alloc"):
        for key in ("qemu", "limit", "ratio"):
            if not num(r.get(key)):
                problems.append(f"{name}: an I/O row without a {key} number")
    if num(r.get("qemu")) and num(r.get("qvet")) and r.get("unit") in ("ops/s", "execs/s"):
        want = r["qvet"] / r["qemu"]
        if not num(r.get("ratio")) or abs(r["ratio"] - want) > 1e-6 * want:
            problems.append(f"{name}: ratio {r.get('ratio')!r}, expected qvet/qemu = {want}")
for kind in ("io", "alloc", "soak", "fuzz", "memory", "scale"):
    if kind not in kinds:
        problems.append(f"no row of kind {kind}")
text = open(sys.argv[2]).read()
if "targets (reported, not asserted)" not in text or "4k reads of allocated clusters" not in text:
    problems.append("latest.txt lacks the table or the targets")
for p in problems:
    print("bench-quick:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "bench-quick: $(grep -c . "$out/latest.txt") lines of report, schema ok"
