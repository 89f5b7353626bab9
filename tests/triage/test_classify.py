#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""The CTest test triage-classify: scripts/triage.py's collector, classifier and
signatures. Sanitizer reports in the shapes ASan, UBSan, LSan and glibc print (two
reports of one bug that differ in addresses, line numbers, thread ids and the checkout's
path must sign the same); the collector on a tree holding libFuzzer artifacts, an AFL++
output directory and failure directories of the shared summary.json convention (a
crashtest-like tool whose reproducer fails and one whose reproducer passes); and the
whole triage over them with the planted replay program.

Environment: SRC, PLANTED_REPLAY, QVET (from tests/CMakeLists.txt).
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["SRC"], "scripts"))
import triage  # noqa: E402

failures = []


def expect(cond, what):
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    if not cond:
        failures.append(what)


def asan_report(addr, line, root):
    return f"""==4242==ERROR: AddressSanitizer: heap-use-after-free on address {addr} at pc 0x55d1 bp 0x7ffd sp 0x7ffd
READ of size 8 at {addr} thread T0
    #0 0x55d1a2 in cache_lookup {root}/engine/src/cache.c:{line}:9
    #1 0x55d1b3 in l2_load {root}/engine/src/l2.c:{line + 7}:12
    #2 0x55d1c4 in image_pread {root}/engine/src/read.c:88:5
    #3 0x55d1d5 in qcow2_pread {root}/engine/src/qcow2.c:301:12
    #4 0x7f00 in __libc_start_main (/lib/x86_64-linux-gnu/libc.so.6+0x2d0)

0x6020 is located 0 bytes inside of 16-byte region
"""


def main():
    root = triage.ROOT
    a = asan_report("0x602000000010", 120, root)
    b = asan_report("0x6190000a0f80", 131, root).replace("==4242==", "==77==")
    ka, fa, _ = triage.classify_output(a, 1, False)
    kb, fb, _ = triage.classify_output(b, 1, False)
    expect(ka == "asan:heap-use-after-free READ", f"ASan kind and access: {ka}")
    expect(triage.project_frames(fa)[:3] == ["cache_lookup", "l2_load", "image_pread"],
           f"the top three project frames: {triage.project_frames(fa)}")
    expect((ka, triage.project_frames(fa)[:3]) == (kb, triage.project_frames(fb)[:3]),
           "addresses, line numbers and pids do not change the signature")
    moved = asan_report("0x602000000010", 120, "/elsewhere/qvet")
    _, fm, _ = triage.classify_output(moved, 1, False)
    expect(triage.project_frames(fm) == [], "frames outside the checkout are not the project's")

    # Runs of other implementations are grouped apart; the engine's own keep their form.
    div = {"status": "reproduced", "frames": [], "type": "summary", "kind": "divergence",
           "op_kind": "read", "structure": "L2 data entry", "config": {}}
    ours = triage.signature_of(dict(div, target="qvet"))
    qemu = triage.signature_of(dict(div, target="qemu"))
    expect(ours != qemu and qemu.endswith(" | qemu") and "qvet" not in ours,
           f"a divergence signs by target: {ours!r} / {qemu!r}")

    ub = (f"{root}/engine/src/refcount.c:77:20: runtime error: shift exponent 64 is too large "
          f"for 64-bit type 'uint64_t'\n    #0 0x1 in refcount_get {root}/engine/src/refcount.c:77:20\n"
          f"    #1 0x2 in check_refcounts {root}/engine/src/check.c:40:3\n")
    k, f, _ = triage.classify_output(ub, 1, False)
    expect(k == "ubsan:shift exponent" and triage.project_frames(f)[0] == "refcount_get",
           f"UBSan check: {k}")
    lsan = ("==9==ERROR: LeakSanitizer: detected memory leaks\n\nDirect leak of 24 byte(s) in 1 "
            f"object(s) allocated from:\n    #0 0x1 in malloc (/usr/lib/libasan.so+0x1)\n"
            f"    #1 0x2 in snapshot_load {root}/engine/src/snapshot.c:10:3\n")
    k, f, _ = triage.classify_output(lsan, 1, False)
    expect(k == "leak" and triage.project_frames(f) == ["snapshot_load"], f"leak: {k}")
    k, _, _ = triage.classify_output("fuzz_x: engine/src/io.c:9: io_read: Assertion `n > 0' "
                                     "failed.\n", -6, False)
    expect(k == "assertion", f"assertion: {k}")
    expect(triage.classify_output("", -9, True)[0] == "timeout", "a run past its time: timeout")
    expect(triage.classify_output("all fine\n", 0, False)[0] is None, "a clean run: no kind")

    cfg_a = triage.config_class({"cluster_size": "4k", "extended_l2": "on", "backing": "chain"})
    cfg_b = triage.config_class({"cluster_size": "2M", "compat": "0.10", "backing": "none"})
    expect(cfg_a == "v3 clusters<=4k refcount16 extended-l2 backing-chain", f"class: {cfg_a}")
    expect(cfg_b == "v2 clusters>=1M refcount16 backing-none", f"class: {cfg_b}")

    # The collector and the whole triage over a tree of every input shape.
    work = tempfile.mkdtemp(prefix="qvet-classify-test-")
    tree = os.path.join(work, "tree")
    afl = os.path.join(tree, "planted", "afl", "default")
    for sub in ("crashes", "hangs", "queue"):
        os.makedirs(os.path.join(afl, sub))
    with open(os.path.join(afl, "crashes", "id:000000,sig:06,src:000000"), "wb") as f:
        f.write(b"QFI\xfbXafl-found-it")
    with open(os.path.join(afl, "crashes", "README.txt"), "w") as f:
        f.write("afl's note\n")
    with open(os.path.join(afl, "queue", "id:000001"), "wb") as f:
        f.write(b"QFI\xfbXqueue-is-not-a-failure")
    with open(os.path.join(tree, "planted", "leak-0123"), "wb") as f:
        f.write(b"harmless now")
    for name, argv, verdict in (("corrupt", ["/bin/false"], "failed"),
                                ("fixed", ["/bin/true"], "failed"),
                                ("passing", ["/bin/false"], "ok")):
        d = os.path.join(tree, "crashtest", name)
        os.makedirs(d)
        with open(os.path.join(d, "summary.json"), "w") as f:
            json.dump({"tool": "crashtest", "verdict": verdict, "kind": "crash-state-corruption",
                       "reason": "the image after the crash is corrupt", "target": "qvet",
                       "config": {"cluster_size": "64k"}, "seed": 3, "reproduce": argv}, f)
        os.makedirs(os.path.join(d, "replay-of-it"))
        with open(os.path.join(d, "replay-of-it", "summary.json"), "w") as f:
            json.dump({"verdict": "failed"}, f)
    found = triage.collect([tree])
    names = sorted(os.path.relpath(i["path"], tree) for i in found)
    expect(names == ["crashtest/corrupt", "crashtest/fixed",
                     "planted/afl/default/crashes/id:000000,sig:06,src:000000",
                     "planted/leak-0123"],
           f"collected exactly the failures: {names}")

    replay = os.path.join(work, "replay")
    os.makedirs(replay)
    os.symlink(os.environ["PLANTED_REPLAY"], os.path.join(replay, "fuzz_planted"))
    out = os.path.join(work, "report")
    corpus = os.path.join(work, "corpus")
    os.makedirs(corpus)
    rc = subprocess.run([os.environ["QVET"], "triage", "-o", out, "--history",
                         os.path.join(work, "h.json"), "--replay-dir", replay, "--no-minimize",
                         "--save", "--corpus", corpus, tree]).returncode
    saved = os.listdir(os.path.join(corpus, "regressions", "planted")) \
        if os.path.isdir(os.path.join(corpus, "regressions", "planted")) else []
    expect(len(saved) == 1, f"--save adds the one new fuzz signature's input: {saved}")
    with open(os.path.join(out, "summary.json")) as f:
        sigs = {s["signature"]: s for s in json.load(f)["signatures"]}
    print("\n".join(sigs))
    expect(rc == 1, f"new signatures: exit 1 ({rc})")
    expect("asan:heap-buffer-overflow WRITE | planted_copy_header | planted_parse | "
           "LLVMFuzzerTestOneInput" in sigs, "the AFL++ crash reproduces with its target's "
           "replay program")
    expect("crash-state-corruption | ? | v3 clusters-8k..512k refcount16 backing-none" in sigs,
           "a convention summary whose reproducer fails signs by kind and class")
    expect(any(s.startswith("not-reproduced | crash-state-corruption") for s in sigs),
           "a convention summary whose reproducer passes is not reproduced")
    expect(any(s.startswith("not-reproduced | leak | planted") for s in sigs),
           "a libFuzzer leak- input that runs cleanly is not reproduced")
    rc = subprocess.run([os.environ["QVET"], "triage", "-o", out, tree],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    expect(rc == 2, "an existing report directory is refused (exit 2)")
    rc = subprocess.run([os.environ["QVET"], "triage", os.path.join(work, "nope")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    expect(rc.returncode == 2 and rc.stderr.count(b"\n") == 1 and b"not a directory" in rc.stderr,
           "a missing DIR: one line, exit 2")
    if failures:
        print(f"triage-classify: {len(failures)} check(s) failed; files kept in {work}")
        return 1
    subprocess.run(["rm", "-rf", work])
    print("triage-classify: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
