#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""The CTest test triage-nightly: a two-minute nightly, SHARD=1/2 then 2/2, run with the
shard step's command from .github/workflows/nightly.yml and merged with its merge step's
command, over inputs holding a planted crash (fuzz_planted, tests/triage/planted_fuzz.c),
a planted divergence (soaks of qvet_liar, tests/triage/qvet_liar.c) and a duplicate of
each, one of each per shard. The merged report must show exactly those two signatures,
each minimized and counted twice, and render in Chromium without a console message; a
second merge knows both; a signature whose saved reproducer passes is marked fixed.

Environment (from tests/CMakeLists.txt): SRC, BUILD, QVET, QVET_LIAR, PLANTED_REPLAY,
PLANTED_LIBFUZZER. NIGHTLY_TEST_SECONDS: each shard's budget (default 30).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC, BUILD = os.environ["SRC"], os.environ["BUILD"]
QVET, LIAR = os.environ["QVET"], os.environ["QVET_LIAR"]
SECONDS = os.environ.get("NIGHTLY_TEST_SECONDS", "30")
failures = []


def expect(cond, what):
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    if not cond:
        failures.append(what)


def step(job, name):
    out = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tests/triage/workflows.py"),
                          SRC, "step", job, name], stdout=subprocess.PIPE, check=True)
    return json.loads(out.stdout)


def programs(work):
    """Directories of replay and libFuzzer programs: the tree's targets and the planted
    one side by side, as triage expects them (fuzz_TARGET)."""
    replay, fuzzer = os.path.join(work, "replay"), os.path.join(work, "libfuzzer")
    os.makedirs(replay)
    os.makedirs(fuzzer)
    for p in glob.glob(os.path.join(BUILD, "fuzz", "fuzz_*")):
        os.symlink(p, os.path.join(replay, os.path.basename(p)))
    os.symlink(os.environ["PLANTED_REPLAY"], os.path.join(replay, "fuzz_planted"))
    os.symlink(os.environ["PLANTED_LIBFUZZER"], os.path.join(fuzzer, "fuzz_planted"))
    os.symlink(os.path.join(BUILD, "fuzz", "smoke_header"), os.path.join(fuzzer, "fuzz_header"))
    return replay, fuzzer


def planted_inputs(work):
    """in-1 and in-2: each a planted crash (different bytes, the same bug) and a lying
    soak (different seeds, the same divergence)."""
    only_io = ",".join(f"{k}=0" for k in (
        "zero", "zero-unmap", "discard", "write-compressed", "flush", "snapshot-create",
        "snapshot-apply", "snapshot-delete", "reopen", "resize", "power-cut", "dirty-reopen",
        "torn-power-cut"))
    dirs = []
    # Seeds whose lie surfaces a few ops in (seed 2's at its second op, since the soak
    # reads writes back): a minimization must have something to take out.
    for n, seed, tail in ((1, 1, b"first-planted-crash" * 5), (2, 3, b"the-duplicate" * 11)):
        d = os.path.join(work, f"in-{n}")
        os.makedirs(os.path.join(d, "planted"))
        with open(os.path.join(d, "planted", f"crash-planted{n}"), "wb") as f:
            f.write(b"QFI\xfbX" + tail)
        p = subprocess.run([LIAR, "soak", "--dir", os.path.join(d, "soak"), "--seed", str(seed),
                            "--ops", "500", "--size", "8M", "--weights", only_io],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        expect(p.returncode == 1, f"the lying soak with seed {seed} diverges (exit {p.returncode})")
        dirs.append(d)
    return dirs


def run_step(s, env, subst):
    e = dict(os.environ)
    for k, v in s.get("env", {}).items():
        for pat, rep in subst.items():
            v = v.replace(pat, rep)
        e[k] = v
    e.update(env)
    print(f"$ {' '.join(f'{k}={e[k]}' for k in s.get('env', {}))} {s['run']}", flush=True)
    return subprocess.run(["bash", "-c", s["run"]], cwd=SRC, env=e).returncode


def crash_state_minimizes(work):
    """A failure found at a power cut (the liar's lie read back after the crash) is a
    trace qvet minimize takes, as triage needs: it shrinks to the write and the cut."""
    d = os.path.join(work, "crash-state")
    weights = "read=1,zero=0,zero-unmap=0,discard=0,write-compressed=0,flush=0," \
              "snapshot-create=0,snapshot-apply=0,snapshot-delete=0,reopen=0,resize=0," \
              "power-cut=200"
    p = subprocess.run([LIAR, "soak", "--dir", d, "--seed", "3", "--ops", "300", "--size",
                        "8M", "--weights", weights], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    expect(p.returncode == 1 and "crash-state" in p.stdout,
           f"the lying soak with power cuts fails at a power cut (exit {p.returncode})")
    out = os.path.join(work, "crash-state.min")
    p = subprocess.run([LIAR, "minimize", os.path.join(d, "trace.txt"), "-o", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ops = [line for line in open(out).read().splitlines()[1:] if line[:1].isdigit()] \
        if p.returncode == 0 and os.path.exists(out) else []
    expect(p.returncode == 0 and any("power-cut" in o for o in ops) and len(ops) <= 3,
           f"qvet minimize takes the crash-state trace (exit {p.returncode}, ops {ops})")


def main():
    work = tempfile.mkdtemp(prefix="qvet-nightly-test-")
    replay, fuzzer = programs(work)
    inputs = planted_inputs(work)
    nightly_dir = os.path.join(work, "nightly")
    history = os.path.join(work, "history.json")
    common = {
        "QVET": QVET, "NIGHTLY_DIR": nightly_dir, "NIGHTLY_HISTORY": history,
        "NIGHTLY_SECONDS": SECONDS, "NIGHTLY_SEEDS": "1",
        "NIGHTLY_FUZZERS": os.path.join(BUILD, "fuzz", "smoke_header"),
        "NIGHTLY_COV_BUILD": os.path.join(BUILD, "nightly-cov"),
        "NIGHTLY_TRIAGE_ARGS": f"--replay-dir {replay} --libfuzzer-dir {fuzzer}",
    }

    shard = step("shard", "nightly shard")
    with open(os.path.join(SRC, ".github/workflows/nightly.yml")) as f:
        total = len(re.search(r"shard: \[([^]]*)\]", f.read()).group(1).split(","))
    expect(total == 2, f"the workflow runs 2 shards (has {total})")
    for i in (1, 2):
        rc = run_step(shard, dict(common, NIGHTLY_INPUTS=inputs[i - 1]),
                      {"${{ matrix.shard }}": str(i), "${{ strategy.job-total }}": str(total)})
        expect(rc == 0, f"shard {i}/{total} ran (exit {rc})")
    shards = sorted(glob.glob(os.path.join(nightly_dir, "*-shard-*")))
    expect(len(shards) == 2, f"two shard directories ({shards})")
    units = []
    for d in shards:
        with open(os.path.join(d, "nightly.json")) as f:
            units.append(json.load(f))
    ids = [set(u["config_ids"]) for u in units]
    expect(len(ids) == 2 and all(ids), "both shards soaked")
    with open(os.path.join(shards[0], "stats", "coverage.dat")) as f:
        cov = [float(line.split()[1]) for line in f]
    expect(cov and cov == sorted(cov) and cov[-1] > 10,
           f"soak coverage grows over the shard and reaches the engine ({cov})")

    merge = step("merge", "merge")
    rc = run_step(merge, common, {})
    expect(rc == 1, f"the first merge exits 1: new signatures (exit {rc})")
    report = os.path.realpath(os.path.join(nightly_dir, "latest"))
    with open(os.path.join(report, "summary.json")) as f:
        summary = json.load(f)
    sigs = summary["signatures"]
    expect(len(sigs) == 2, f"exactly two signatures: {[s['signature'] for s in sigs]}")
    crash = [s for s in sigs if s["kind"].startswith("asan:heap-buffer-overflow")]
    div = [s for s in sigs if s["kind"] == "divergence"]
    expect(len(crash) == 1 and crash[0]["signature"] == "asan:heap-buffer-overflow WRITE | "
           "planted_copy_header | planted_parse | LLVMFuzzerTestOneInput",
           "the planted crash: ASan kind and the planted frames")
    expect(len(div) == 1 and div[0]["signature"].startswith("divergence | read | L2 data entry"),
           "the planted divergence: read of an L2 data entry")
    for s in sigs:
        expect(s["count"] == 2, f"{s['id']}: count 2 (has {s['count']})")
        expect(s["status"] == "new", f"{s['id']}: marked new")
        expect(s["minimized"] and s["minimized_size"] < s["input_size"],
               f"{s['id']}: minimized ({s['minimized_by']}: {s['input_size']} -> "
               f"{s['minimized_size']} bytes)")
        p = subprocess.run(s["reproduce"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        expect(p.returncode != 0, f"{s['id']}: the minimized reproducer still fails")
    line = summary.get("verdict_line", "")
    expect(re.fullmatch(r"nightly: \d+ configurations x 1 seeds, [\d.]+[kMG]? ops, .* "
                        r"2 new signatures, 0 known", line) is not None, f"verdict: {line}")
    with open(os.path.join(report, "index.html")) as f:
        index = f.read()
    expect(index.count("<svg") >= 6 and "soak coverage of engine lines" in index,
           "the front page has the plots, soak coverage among them")
    with open(os.path.join(report, div[0]["page"])) as f:
        page = f.read()
    expect("the divergent cluster" in page and "the L2 table mapping it" in page,
           "the divergence page marks the divergent cluster and its L2 table")
    expect("expected (oracle), sector" in page and "history of sector" in page,
           "the divergence page has the sector side by side and its history")
    with open(os.path.join(report, crash[0]["page"])) as f:
        page = f.read()
    expect("<td>magic</td>" in page and "planted_copy_header" in page,
           "the crash page decodes the header and shows the stack")

    pages = [os.path.join(report, "index.html"), os.path.join(report, div[0]["page"])]
    check = os.path.join(SRC, "scripts/report-check.sh")
    rc = subprocess.run(["bash", check] + pages).returncode
    expect(rc == 0, "index.html and a signature page render in Chromium, no console message")
    expect(all(os.path.getsize(os.path.join(report, "screenshots", os.path.basename(p)[:-5] +
                                            ".png")) > 1000 for p in pages),
           "screenshots saved into the report")
    bad = os.path.join(work, "bad.html")
    with open(bad, "w") as f:
        f.write("<!DOCTYPE html><html><body><script>no_such_function();</script></body></html>")
    expect(subprocess.run(["bash", check, bad]).returncode == 1,
           "the console check catches a page with an uncaught error")

    rc = run_step(merge, common, {})
    report2 = os.path.realpath(os.path.join(nightly_dir, "latest"))
    with open(os.path.join(report2, "summary.json")) as f:
        again = json.load(f)
    expect(rc == 0 and report2 != report and os.path.exists(os.path.join(report, "index.html")),
           "a second merge makes a new report, keeps the first, and exits 0")
    expect(sorted(s["status"] for s in again["signatures"]) == ["known", "known"],
           "the second merge knows both signatures")
    expect(again.get("verdict_line", "").endswith("0 new signatures, 2 known"),
           f"second verdict: {again.get('verdict_line')}")

    # The crash's saved reproducer made harmless: the next triage marks it fixed.
    with open(history) as f:
        h = json.load(f)
    benign = os.path.join(work, "benign")
    with open(benign, "wb") as f:
        f.write(b"QFI\xfbY")
    h["signatures"][crash[0]["id"]]["reproduce"][-1] = benign
    with open(history, "w") as f:
        json.dump(h, f)
    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    rc = subprocess.run([QVET, "triage", "-o", os.path.join(work, "t3"), "--history", history,
                         empty]).returncode
    with open(history) as f:
        h = json.load(f)["signatures"]
    expect(rc == 0 and h[crash[0]["id"]].get("fixed") is True and
           h[div[0]["id"]].get("fixed") is False,
           "a signature that no longer reproduces is marked fixed, the other is not")
    rc = run_step(merge, common, {})
    with open(os.path.join(os.path.realpath(os.path.join(nightly_dir, "latest")),
                           "summary.json")) as f:
        back = {s["id"]: s["status"] for s in json.load(f)["signatures"]}
    expect(rc == 1 and back.get(crash[0]["id"]) == "back",
           f"a fixed signature that fails again is marked back, exit 1 ({back}, exit {rc})")
    crash_state_minimizes(work)
    if failures:
        print(f"triage-nightly: {len(failures)} check(s) failed; files kept in {work}")
        return 1
    shutil.rmtree(work)
    print("triage-nightly: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
