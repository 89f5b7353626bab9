#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The report of `make bench` (scripts/bench.sh): rows.tsv into latest.json, latest.txt.

Each row: name, kind (io, alloc, soak, fuzz, memory, scale), size (request bytes, or the
cluster count of a scale row, 0 when neither), unit, qvet, qemu, limit (numbers; null
where there is no such measurement), ratio and targets.

ratio says how many times better qvet does than QEMU: qvet/qemu for a rate, qemu/qvet
for a time (seconds); null without a QEMU number or for memory. of_limit is qvet/limit
(the fraction of plain pread/pwrite). A target is met, missed, or cannot be judged
(null) when a number is missing; targets are reported, never asserted.

    bench-report.py ROWS OUT_DIR FILESYSTEM QUICK
"""
import datetime
import json
import os
import sys


def number(text):
    if text in ("", "-"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def ratio(unit, qvet, qemu):
    if qvet is None or qemu is None or unit == "KiB":
        return None
    if unit == "seconds":
        return qemu / qvet if qvet > 0 else None
    return qvet / qemu if qemu > 0 else None


def judge(rule, row):
    """rule: qemu>=X (ratio), limit>=X (of_limit) or abs>=X (the qvet number)."""
    what, want = rule.split(">=")
    have = {"qemu": row["ratio"], "limit": row["of_limit"], "abs": row["qvet"]}[what]
    text = {"qemu": f"at least {want}x QEMU", "limit": f"at least {float(want):.0%} of the limit",
            "abs": f"at least {float(want):,.0f} {row['unit']}"}[what]
    return {"rule": text, "met": None if have is None else have >= float(want)}


def load_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            name, kind, size, unit, qvet, qemu, limit, targets = line.rstrip("\n").split("\t")
            row = {"name": name, "kind": kind, "size": int(size), "unit": unit,
                   "qvet": number(qvet), "qemu": number(qemu), "limit": number(limit)}
            row["ratio"] = ratio(unit, row["qvet"], row["qemu"])
            row["of_limit"] = (row["qvet"] / row["limit"]
                               if row["qvet"] is not None and row["limit"] else None)
            if unit == "ops/s" and row["size"] > 0:
                row["mb_s"] = {k: (row[k] * row["size"] / 1e6 if row[k] is not None else None)
                               for k in ("qvet", "qemu", "limit")}
            row["targets"] = [judge(r, row) for r in targets.split(",") if r != "-"]
            rows.append(row)
    return rows


def cell(x, digits=1):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 1 else f"{x:.4f}"


def table(rows):
    head = ["row", "unit", "qvet", "QEMU", "limit", "x QEMU", "of limit", "qvet MB/s",
            "QEMU MB/s"]
    lines = [head]
    for r in rows:
        mb = r.get("mb_s", {})
        lines.append([r["name"], r["unit"], cell(r["qvet"], 4 if r["unit"] == "seconds" else 1),
                      cell(r["qemu"], 4 if r["unit"] == "seconds" else 1), cell(r["limit"]),
                      cell(r["ratio"], 2), "-" if r["of_limit"] is None else f"{r['of_limit']:.0%}",
                      cell(mb.get("qvet")), cell(mb.get("qemu"))])
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = []
    for n, l in enumerate(lines):
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                             for i, c in enumerate(l)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def main():
    rows_path, out_dir, fs, quick = sys.argv[1:5]
    rows = load_rows(rows_path)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Other work on the machine skews every number: say how busy it was.
    loadavg = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    report = {"date": when, "filesystem": fs, "cores": os.cpu_count(),
              "load_average": [float(x) for x in loadavg], "quick": quick == "1", "rows": rows}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "latest.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    text = [f"qvet bench, {when}, {os.cpu_count()} cores (load {' '.join(loadavg) or '?'} at the end), "
            f"files on {fs}"
            + (" (BENCH_QUICK: tiny sizes, the numbers mean nothing)" if quick == "1" else ""),
            ""]
    text += table(rows)
    text += ["", "targets (reported, not asserted):"]
    for r in rows:
        for t in r["targets"]:
            verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
            text.append(f"  {verdict:12}  {r['name']}: {t['rule']}")
    with open(os.path.join(out_dir, "latest.txt"), "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))
    print(f"\nwritten to {os.path.join(out_dir, 'latest.json')} and latest.txt")


if __name__ == "__main__":
    main()
