#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""qvet triage: collect failures, reproduce them under the sanitizers, classify them,
group them by signature, minimize one input per signature and write the report.

Run through `qvet triage` (harness/cli/cmd_triage.c checks the options and directories
and sets QVET to its own path). docs/triage.md describes the inputs, the signature rules,
the history file and the report; this file only implements them.
"""
import argparse
import datetime
import hashlib
import html
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT_MARK = ".qvet-triage"
REPRODUCE_SECONDS = 60
MINIMIZE_SECONDS = 30
FUZZ_PREFIXES = ("crash-", "leak-", "timeout-", "oom-")
# A summary.json verdict that is not a failure: nothing to triage.
QUIET_VERDICTS = {"ok", "passed", "interrupted", "setup-error"}
# Old soak verdicts (docs/soak.md) and the kind each means, for summaries without "kind".
SOAK_VERDICT_KIND = {
    "diverged": "divergence",
    "snapshot-diverged": "divergence",
    "check-failed": "check-failure",
    "target-error": "target-error",
    "crashed": "crash",
    "killed": "crash",
}
# Frames that are the sanitizer's, libFuzzer's or libc's, never the project's.
FOREIGN_FRAME = re.compile(
    r"^(__asan|__ubsan|__sanitizer|__interceptor|__lsan|fuzzer::|__libc|_start|main$"
    r"|malloc$|calloc$|realloc$|free$|mem(cpy|move|set|cmp)$|str\w+$|abort$|raise$"
    r"|__assert)")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "symbolize=1:detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
                    ":handle_abort=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:symbolize=1",
    "LSAN_OPTIONS": "symbolize=1",
}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(msg):
    print(f"triage: {msg}", flush=True)


# ---- collecting ----------------------------------------------------------------------

def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_failure_summary(summary):
    return isinstance(summary, dict) and summary.get("verdict") not in QUIET_VERDICTS \
        and "verdict" in summary


def collect(dirs):
    """Every failure under the directories, in a stable order: dicts with 'type' and
    'path' (fuzz artifacts: 'engine'; summaries: 'summary')."""
    found = []
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            if REPORT_MARK in filenames:
                dirnames[:] = []
                continue
            summary = read_json(os.path.join(dirpath, "summary.json")) \
                if "summary.json" in filenames else None
            if summary is not None:
                # A run's directory: its replays and minimizations below are its own.
                dirnames[:] = []
                if is_failure_summary(summary):
                    found.append({"type": "summary", "path": dirpath, "summary": summary})
                continue
            in_afl = os.path.basename(dirpath) in ("crashes", "hangs")
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if in_afl and name.startswith("id:"):
                    found.append({"type": "fuzz", "engine": "afl", "path": path,
                                  "hang": os.path.basename(dirpath) == "hangs"})
                elif name.startswith(("afl-crash-", "afl-hang-")):
                    found.append({"type": "fuzz", "engine": "afl", "path": path,
                                  "hang": name.startswith("afl-hang-")})
                elif name.startswith(FUZZ_PREFIXES) and not name.endswith((".log", ".txt")):
                    found.append({"type": "fuzz", "engine": "libfuzzer", "path": path,
                                  "hang": name.startswith("timeout-")})
    return found


def fuzz_target_of(path, replay_dir):
    """The target an artifact belongs to: the nearest directory named after a replay
    program (reports/fuzz/DATE/TARGET/crash-...), or the file's own name."""
    parts = os.path.abspath(path).split(os.sep)
    for part in reversed(parts[:-1]):
        name = part[5:] if part.startswith("fuzz_") else part
        if os.path.exists(os.path.join(replay_dir, "fuzz_" + name)):
            return name
    return None


# ---- reproducing and classifying ----------------------------------------------------

FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ in (\S+)(?: (\S+))?")
FRAME_NOSYM = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ +\(([^)+]+)\+0x[0-9a-f]+\)")
UBSAN = re.compile(r"runtime error: ([a-z][a-z ]*[a-z])")


def stack_after(lines, start):
    """The first stack (#0, #1, ...) at or after line `start`: [(function, file)]."""
    frames, seen = [], False
    for line in lines[start:]:
        m = FRAME.match(line)
        if m:
            seen = True
            frames.append((m.group(2), (m.group(3) or "").rsplit(":", 2)[0]))
            continue
        m = FRAME_NOSYM.match(line)
        if m:
            seen = True
            frames.append(("?", os.path.basename(m.group(2))))
            continue
        if seen and line.strip() == "":
            break
    return frames


def project_frames(frames):
    """The project's frames, innermost first, as function names (no address, no line)."""
    out = []
    for func, path in frames:
        if FOREIGN_FRAME.match(func):
            continue
        if path and not os.path.abspath(path).startswith(ROOT + os.sep):
            continue
        if path.endswith("replay_main.c") or path.endswith("afl_main.c"):
            continue
        out.append(func)
    return out


def classify_output(text, returncode, timed_out):
    """(kind, frames, stack lines) of one run's output; kind None: it did not fail."""
    lines = text.splitlines()
    if timed_out:
        return "timeout", [], []
    for i, line in enumerate(lines):
        m = re.search(r"ERROR: AddressSanitizer: ([\w-]+)", line)
        if m:
            kind = "asan:" + m.group(1)
            for nxt in lines[i + 1:i + 4]:
                access = re.match(r"(READ|WRITE) of size", nxt)
                if access:
                    kind += " " + access.group(1)
                    break
            return kind, stack_after(lines, i + 1), lines[i:i + 40]
        if "ERROR: LeakSanitizer: detected memory leaks" in line:
            return "leak", stack_after(lines, i + 1), lines[i:i + 40]
        if "runtime error:" in line:
            m = UBSAN.search(line)
            # The words before the first number, address, type or colon: the check.
            check = re.sub(r" (of|for|with|at)( type)?$", "", m.group(1)) if m \
                else "undefined behaviour"
            return "ubsan:" + check, stack_after(lines, i + 1), lines[i:i + 40]
        if re.search(r"Assertion `.*' failed", line):
            return "assertion", stack_after(lines, i + 1), lines[i:i + 40]
        if "ERROR: libFuzzer: out-of-memory" in line:
            return "oom", stack_after(lines, i + 1), lines[i:i + 40]
        if "ERROR: libFuzzer: timeout" in line:
            return "timeout", stack_after(lines, i + 1), lines[i:i + 40]
    if returncode < 0 or returncode >= 128:
        return "signal", [], lines[-40:]
    return None, [], []


def run(argv, cwd=None, seconds=REPRODUCE_SECONDS, env_extra=None):
    env = dict(os.environ)
    env.update(SANITIZER_ENV)
    symbolizer = shutil.which("llvm-symbolizer")
    if symbolizer:
        env.setdefault("ASAN_SYMBOLIZER_PATH", symbolizer)
    if env_extra:
        env.update(env_extra)
    try:
        p = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=seconds)
        return p.returncode, p.stdout.decode("utf-8", "replace"), False
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        return -9, out, True
    except OSError as e:
        return 127, f"{argv[0]}: {e}", False


def reproduce_fuzz(item, opts):
    target = item.get("target") or fuzz_target_of(item["path"], opts.replay_dir)
    item["target"] = target
    item["input_size"] = os.path.getsize(item["path"])
    if not target:
        item.update(status="no-target", kind="unknown", frames=[], stack=[],
                    reproduce=[], reason="no replay program for this input's target")
        return
    prog = os.path.join(opts.replay_dir, "fuzz_" + target)
    item["reproduce"] = [prog, os.path.abspath(item["path"])]
    seconds = 25 if item.get("hang") else REPRODUCE_SECONDS
    rc, out, timed_out = run(item["reproduce"], seconds=seconds)
    kind, frames, stack = classify_output(out, rc, timed_out)
    item["output"] = out[-20000:]
    if kind is None:
        item.update(status="not-reproduced", kind=item_prefix_kind(item), frames=[],
                    stack=[], reason="the input runs cleanly now")
        return
    item.update(status="reproduced", kind=kind, frames=project_frames(frames)[:3],
                stack=stack, reason=stack[0].strip() if stack else kind)


def item_prefix_kind(item):
    name = os.path.basename(item["path"])
    for p in FUZZ_PREFIXES:
        if name.startswith(p):
            return p[:-1]
    return "hang" if item.get("hang") else "crash"


def summary_reproduce(summary, run_dir):
    """The argv that reruns a summary's failure: its "reproduce", else the soak's
    "replay" command line."""
    argv = summary.get("reproduce")
    if isinstance(argv, list) and argv:
        return [str(a) for a in argv]
    replay = summary.get("replay")
    if isinstance(replay, str) and replay:
        return shlex.split(replay)
    trace = os.path.join(run_dir, "trace.txt")
    return ["qvet", "replay", trace] if os.path.exists(trace) else []


def in_scratch(argv, work):
    """argv, with a `qvet replay` made to work in WORK/replay: the directory holding the
    trace (a failure's, or an earlier report's) gains nothing."""
    if len(argv) >= 3 and argv[1] == "replay" and "--dir" not in argv:
        return argv[:2] + ["--dir", os.path.join(work, "replay")] + argv[2:]
    return argv


def sanitizer_argv(argv, opts):
    """argv with a plain `qvet` replaced by the sanitizer build's."""
    if argv and os.path.basename(argv[0]) == "qvet":
        asan = os.path.join(opts.asan_build, "qvet")
        return [asan if os.path.exists(asan) else opts.qvet] + argv[1:]
    return argv


def reproduce_summary(item, opts, work):
    s, d = item["summary"], item["path"]
    kind = s.get("kind") or SOAK_VERDICT_KIND.get(s.get("verdict"), s.get("verdict", "failure"))
    item["tool"] = s.get("tool") or s.get("command") or "soak"
    item["target"] = s.get("target") or "qvet"
    item["reader"] = s.get("reader") or ""
    failure = s.get("failure") if isinstance(s.get("failure"), dict) else {}
    item["reason"] = s.get("reason") or failure.get("message") or s.get("verdict")
    item["op_kind"] = failure.get("op_kind") or s.get("op_kind") or "?"
    item["sector"] = failure.get("sector") if failure.get("sector") is not None \
        else s.get("sector")
    item["config"] = config_of(s)
    trace = os.path.join(d, "trace.txt")
    item["input_size"] = os.path.getsize(trace) if os.path.exists(trace) else 0
    argv = sanitizer_argv(summary_reproduce(s, d), opts)
    if len(argv) >= 3 and argv[1] == "replay" and os.path.exists(trace):
        argv[-1] = os.path.abspath(trace)  # its path was relative to where the soak ran
    item["reproduce"] = argv
    if not argv:
        item.update(status="no-reproducer", kind=kind, frames=[], stack=[])
        return
    rc, out, timed_out = run(in_scratch(argv, work), cwd=d)
    item["output"] = out[-20000:]
    san_kind, frames, stack = classify_output(out, rc, timed_out)
    if san_kind and san_kind != "signal":
        item.update(status="reproduced", kind=san_kind, frames=project_frames(frames)[:3],
                    stack=stack)
        return
    if rc == 0:
        item.update(status="not-reproduced", kind=kind, frames=[], stack=[])
        return
    item.update(status="reproduced", kind=kind, frames=[], stack=[])
    item["report"] = soak_report(out)
    image = os.path.join(work, "replay", "image.qcow2")
    if not os.path.exists(image):
        image = os.path.join(d, "image.qcow2")
    if os.path.exists(image):
        item["image"] = image
        item["structure"] = structure_at(image, item.get("sector"), opts)


def soak_report(out):
    """The divergence report of a replay's output: headline, the expected and actual
    hexdumps of the first divergent sector, and the provenance and history lines."""
    lines = out.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("qvet soak:")), None)
    if start is None:
        return None
    rep = {"headline": lines[start], "expected": [], "actual": [], "notes": []}
    where = None
    for line in lines[start + 1:]:
        if line.startswith("  expected ("):
            where = "expected"
            rep["expected_title"] = line.strip()
            continue
        if line.startswith("  actual ("):
            where = "actual"
            rep["actual_title"] = line.strip()
            continue
        if line.startswith("    ") and where in ("expected", "actual"):
            rep[where].append(line[4:])
            continue
        if line.startswith("  replay:") or line.startswith("soak:") or \
                line.startswith("replay:"):
            break
        where = None
        if not line.strip().startswith("image, oracle and trace kept"):  # our temp dir
            rep["notes"].append(line.rstrip())
    return rep


def config_of(summary):
    cfg = summary.get("config")
    if isinstance(cfg, dict):
        return cfg
    opts = cfg if isinstance(cfg, str) else summary.get("options", "") or ""
    out = {}
    for part in opts.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    out["backing"] = summary.get("backing", out.get("backing", "none"))
    return out


def size_value(text):
    m = re.fullmatch(r"(\d+)([kKmM]?)", str(text))
    if not m:
        return 65536
    return int(m.group(1)) * {"": 1, "k": 1024, "K": 1024, "m": 1 << 20, "M": 1 << 20}[m.group(2)]


def config_class(cfg):
    """The image configuration class of a divergence signature: a few coarse facts,
    so that two seeds of one configuration share it and unlike layouts do not."""
    cs = size_value(cfg.get("cluster_size", "64k"))
    size_class = "clusters<=4k" if cs <= 4096 else "clusters>=1M" if cs >= (1 << 20) \
        else "clusters-8k..512k"
    version = "v2" if str(cfg.get("compat", "1.1")) == "0.10" else "v3"
    rb = int(cfg.get("refcount_bits", 16) or 16)
    width = "refcount<16" if rb < 16 else "refcount>16" if rb > 16 else "refcount16"
    parts = [version, size_class, width]
    if str(cfg.get("extended_l2", "off")) == "on":
        parts.append("extended-l2")
    if cfg.get("compression_type", "zlib") == "zstd":
        parts.append("zstd")
    if str(cfg.get("lazy_refcounts", "off")) == "on":
        parts.append("lazy")
    parts.append("backing-" + str(cfg.get("backing", "none")))
    return " ".join(parts)


# ---- the image: header, tables, map --------------------------------------------------

HEADER_FIELDS = [  # name, offset, size (docs/format.md)
    ("magic", 0, 4), ("version", 4, 4), ("backing_file_offset", 8, 8),
    ("backing_file_size", 16, 4), ("cluster_bits", 20, 4), ("size", 24, 8),
    ("crypt_method", 32, 4), ("l1_size", 36, 4), ("l1_table_offset", 40, 8),
    ("refcount_table_offset", 48, 8), ("refcount_table_clusters", 56, 4),
    ("nb_snapshots", 60, 4), ("snapshots_offset", 64, 8),
    ("incompatible_features", 72, 8), ("compatible_features", 80, 8),
    ("autoclear_features", 88, 8), ("refcount_order", 96, 4), ("header_length", 100, 4),
    ("compression_type", 104, 1),
]
OFFSET_MASK = 0x00fffffffffffe00


def decode_header(data):
    """[(name, offset, size, value)] of the qcow2 header fields present in data, or []
    when data does not start with the magic."""
    if data[:4] != b"QFI\xfb":
        return []
    version = struct.unpack(">I", data[4:8])[0] if len(data) >= 8 else 0
    fields = []
    for name, off, size in HEADER_FIELDS:
        if off >= 72 and version < 3:
            break
        if off + size > len(data):
            break
        raw = data[off:off + size]
        value = int.from_bytes(raw, "big")
        fields.append((name, off, size, "QFI\\xfb" if name == "magic" else value))
    return fields


def image_layout(path):
    """Cluster size, the L2 tables the L1 table names, the refcount table and blocks."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
        hdr = dict((n, v) for n, _, _, v in decode_header(data))
        if not hdr or not (9 <= hdr["cluster_bits"] <= 21):
            return None
        cs = 1 << hdr["cluster_bits"]
        file_size = os.fstat(f.fileno()).st_size
        f.seek(hdr["l1_table_offset"])
        l1_raw = f.read(8 * min(hdr["l1_size"], 1 << 16))
        l1 = [struct.unpack(">Q", l1_raw[i:i + 8])[0] & OFFSET_MASK
              for i in range(0, len(l1_raw) - 7, 8)]
        f.seek(hdr["refcount_table_offset"])
        rt_raw = f.read(cs * min(hdr["refcount_table_clusters"], 64))
        rblocks = [struct.unpack(">Q", rt_raw[i:i + 8])[0] & ~(cs - 1)
                   for i in range(0, len(rt_raw) - 7, 8)]
    extended = bool(hdr.get("incompatible_features", 0) & 16)
    return {"cluster_size": cs, "file_size": file_size, "l1": l1,
            "l1_offset": hdr["l1_table_offset"], "l1_size": hdr["l1_size"],
            "refcount_table": hdr["refcount_table_offset"],
            "refcount_table_clusters": hdr["refcount_table_clusters"],
            "refcount_blocks": [b for b in rblocks if b],
            "l2_entries": cs // (16 if extended else 8), "extended_l2": extended}


def qvet_map(image, opts):
    rc, out, _ = run([opts.qvet, "map", "-U", "--output=json", image], seconds=30)
    if rc != 0:
        return []
    try:
        return json.loads(out)
    except ValueError:
        return []


def structure_at(image, sector, opts):
    """The metadata structure that maps the divergent sector: which kind of L2 entry (or
    the backing file) the guest offset goes through."""
    if sector is None:
        return "whole image (check)"
    off = int(sector) * 512
    layout = image_layout(image)
    for ext in qvet_map(image, opts):
        if ext["start"] <= off < ext["start"] + ext["length"]:
            if ext.get("depth", 0) > 0:
                return "backing file (no L2 entry in the top image)"
            if ext.get("compressed"):
                return "compressed cluster descriptor"
            if ext.get("data"):
                sub = " with subcluster bitmap" if layout and layout["extended_l2"] else ""
                return "L2 data entry" + sub
            if ext.get("zero"):
                return "L2 zero entry"
            return "unallocated (no L2 entry)"
    return "outside the map"


# ---- signatures ------------------------------------------------------------------------

def signature_of(item):
    if item["status"] not in ("reproduced",):
        base = os.path.basename(item["path"])
        what = item.get("target") or item.get("tool") or "?"
        return f"{item['status']} | {item['kind']} | {what} | {base}"
    if item["frames"]:
        return " | ".join([item["kind"]] + item["frames"])
    if item["type"] == "summary":
        # Grouped by implementation too: the same divergence in QEMU and in qvet is two
        # bugs. The engine's own runs keep the signatures they always had.
        target = item.get("target") or "qvet"
        by = [] if target == "qvet" else [target]
        if item["kind"] == "reader-divergence":
            by = [item.get("reader") or "?"] + by
        if item["kind"] == "divergence":
            return " | ".join(["divergence", item.get("op_kind", "?"),
                               item.get("structure", "?"), config_class(item["config"])] + by)
        return " | ".join([item["kind"], item.get("op_kind", "?"),
                           config_class(item["config"])] + by)
    return " | ".join([item["kind"], item.get("target") or "?"])


def sig_id(signature):
    return hashlib.sha1(signature.encode()).hexdigest()[:12]


# ---- minimizing ---------------------------------------------------------------------

def libfuzzer_program(target, opts):
    prog = os.path.join(opts.libfuzzer_dir, "fuzz_" + target)
    if os.path.exists(prog):
        return prog
    if os.path.abspath(opts.libfuzzer_dir) != os.path.abspath(
            os.path.join(opts.fuzz_build, "fuzz")):
        return None
    if not getattr(opts, "fuzz_build_tried", False):
        opts.fuzz_build_tried = True
        say(f"building the libFuzzer programs in {opts.fuzz_build} (for -minimize_crash)")
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        env = dict(os.environ, CC="clang")
        ok = subprocess.run(["cmake", "-S", ROOT, "-B", opts.fuzz_build] + gen +
                            ["-DQVET_FUZZ=libfuzzer", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
        if ok:
            subprocess.run(["cmake", "--build", opts.fuzz_build, "--target", "qvet_fuzzers"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return prog if os.path.exists(prog) else None


def minimize_fuzz(item, out_path, opts):
    """Shrinks the input with libFuzzer's -minimize_crash (afl-tmin for AFL++ inputs when
    an AFL++ build of the target exists); keeps the result only when it still fails with
    the same signature under the replay program."""
    target = item["target"]
    afl_prog = os.path.join(ROOT, "build-afl", "fuzz", "fuzz_" + target)
    if item["engine"] == "afl" and os.path.exists(afl_prog) and shutil.which("afl-tmin"):
        argv = ["afl-tmin", "-i", item["path"], "-o", out_path, "-m", "none", "-t", "10000",
                "--", afl_prog]
        tool = "afl-tmin"
    else:
        prog = libfuzzer_program(target, opts)
        if not prog:
            return None, "no libFuzzer program for -minimize_crash"
        argv = [prog, "-minimize_crash=1", f"-max_total_time={MINIMIZE_SECONDS}",
                "-runs=100000", f"-exact_artifact_path={out_path}", item["path"]]
        tool = "libFuzzer -minimize_crash"
    run(argv, seconds=MINIMIZE_SECONDS + 30,
        env_extra={"ASAN_OPTIONS": "symbolize=0:detect_leaks=1:allocator_may_return_null=1"})
    if not os.path.exists(out_path) or os.path.getsize(out_path) >= item["input_size"]:
        if os.path.exists(out_path):
            os.unlink(out_path)
        shutil.copyfile(item["path"], out_path)
        return out_path, f"{tool}: nothing smaller fails the same way"
    check = dict(item, path=out_path)
    reproduce_fuzz(check, opts)
    if signature_of(check) != item["signature"]:
        shutil.copyfile(item["path"], out_path)
        return out_path, f"{tool}: its result failed differently; the original kept"
    return out_path, tool


def minimize_summary(item, out_path, opts):
    argv = item.get("reproduce") or []
    trace = os.path.join(item["path"], "trace.txt")
    if len(argv) >= 3 and argv[1] == "replay" and os.path.exists(trace):
        work_out = out_path
        rc, out, _ = run([argv[0], "minimize", trace, "-o", work_out],
                         seconds=REPRODUCE_SECONDS * 4)
        m = re.search(r"^minimize: work directory (\S+)", out, re.M)
        if m and rc == 0 and os.path.exists(work_out):
            shutil.rmtree(m.group(1), ignore_errors=True)
            shutil.rmtree(work_out + ".minimize", ignore_errors=True)
            return work_out, "qvet minimize"
        shutil.copyfile(trace, out_path)
        return out_path, f"qvet minimize failed (exit {rc}); the whole trace kept"
    minimize = item["summary"].get("minimize")
    if isinstance(minimize, list) and minimize:
        rc, _, _ = run([str(a) for a in minimize] + [out_path], cwd=item["path"],
                       seconds=REPRODUCE_SECONDS * 4)
        if rc == 0 and os.path.exists(out_path):
            return out_path, "the tool's own minimize command"
    return None, "no minimizer for this tool"


# ---- history ---------------------------------------------------------------------------

def load_history(path):
    h = read_json(path) if path else None
    if not isinstance(h, dict) or not isinstance(h.get("signatures"), dict):
        h = {"signatures": {}}
    return h


def update_history(history, groups, stamp, opts):
    """Marks each group new / known / back (a fixed one failing again) and counts it;
    rechecks every other known signature's saved reproducer to learn whether it is
    fixed."""
    sigs = history["signatures"]
    for g in groups:
        h = sigs.get(g["id"])
        if g["status"] != "reproduced":
            g["history"] = "not-reproduced"
            continue
        if h is None:
            g["history"] = "new"
            h = sigs[g["id"]] = {"signature": g["signature"], "kind": g["kind"],
                                 "first_seen": stamp, "count": 0}
        else:
            g["history"] = "back" if h.get("fixed") else "known"
        h["last_seen"] = stamp
        h["count"] = h.get("count", 0) + g["count"]
        h["fixed"] = False
        h["reproduce"] = g["reproduce_min"]
        g["first_seen"] = h["first_seen"]
        g["last_seen"] = stamp
        g["total_count"] = h["count"]
    seen = {g["id"] for g in groups}
    for sid, h in sigs.items():
        if sid in seen or h.get("fixed"):
            continue
        argv = h.get("reproduce") or []
        if argv and all(not a.startswith("/") or os.path.exists(a) for a in argv[1:]) \
                and os.path.exists(argv[0]):
            with tempfile.TemporaryDirectory(prefix="qvet-triage-") as work:
                rc, out, timed_out = run(in_scratch(argv, work))
            kind, _, _ = classify_output(out, rc, timed_out)
            if kind is None and rc == 0:
                h["fixed"] = True
                h["fixed_seen"] = stamp


# ---- the report ------------------------------------------------------------------------

CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px}
th{background:#eee;cursor:pointer}pre{background:#f6f6f6;padding:6px;font-size:12px;
overflow-x:auto}.new,.back{color:#b00;font-weight:bold}.known{color:#555}.fixed{color:#080}
.hx td{border:none;font-family:monospace;padding:0 4px}.f0{background:#dde8ff}
.f1{background:#ffe7c7}.side{display:flex;gap:2em}.mark{color:#b00}
"""
SORT_JS = """
document.querySelectorAll('th').forEach(function(th, col) {
  th.addEventListener('click', function() {
    var tbody = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    var asc = th.dataset.asc !== '1';
    th.dataset.asc = asc ? '1' : '0';
    rows.sort(function(a, b) {
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r) { tbody.appendChild(r); });
  });
});
"""


def esc(x):
    return html.escape(str(x))


def page(title, body, script=""):
    js = f"<script>{script}</script>" if script else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}"
            f"</title><style>{CSS}</style></head><body>{body}{js}</body></html>\n")


def hexdump_html(data, fields, limit=4096):
    """The input as a hexdump, the bytes of each decoded header field shaded, then the
    fields as a table."""
    owner = {}
    for i, (_, off, size, _) in enumerate(fields):
        for b in range(off, off + size):
            owner[b] = i % 2
    rows = []
    for off in range(0, min(len(data), limit), 16):
        chunk = data[off:off + 16]
        cells = []
        for j, b in enumerate(chunk):
            cls = owner.get(off + j)
            cells.append(f"<span class=\"f{cls}\">{b:02x}</span>" if cls is not None
                         else f"{b:02x}")
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        rows.append(f"<tr><td>{off:08x}</td><td>{' '.join(cells)}</td>"
                    f"<td>{esc(text)}</td></tr>")
    more = f"<p>(the first {limit} of {len(data)} bytes)</p>" if len(data) > limit else ""
    out = f"<table class=\"hx\">{''.join(rows)}</table>{more}"
    if fields:
        out += "<h3>qcow2 header fields</h3><table><tr><th>field</th><th>offset</th>" \
               "<th>size</th><th>value</th></tr>"
        for name, off, size, value in fields:
            shown = value if isinstance(value, str) else f"{value} (0x{value:x})"
            out += f"<tr><td>{name}</td><td>{off}</td><td>{size}</td><td>{esc(shown)}</td></tr>"
        out += "</table>"
    else:
        out += "<p>Not a qcow2 header: the input does not start with the magic QFI\\xfb.</p>"
    return out


def cluster_svg(image, sector, opts):
    """The image file's clusters as a grid: header, L1, refcount table and blocks, L2
    tables and data clusters, with the divergent data cluster and its L2 table marked."""
    layout = image_layout(image)
    if not layout:
        return "<p>(the image's header could not be read)</p>"
    cs = layout["cluster_size"]
    n = max(1, (layout["file_size"] + cs - 1) // cs)
    role = {0: "header"}
    for i in range(max(1, (layout["l1_size"] * 8 + cs - 1) // cs)):
        role[layout["l1_offset"] // cs + i] = "L1"
    for i in range(layout["refcount_table_clusters"]):
        role[layout["refcount_table"] // cs + i] = "refcount table"
    for b in layout["refcount_blocks"]:
        role[b // cs] = "refcount block"
    for l2 in layout["l1"]:
        if l2:
            role[l2 // cs] = "L2"
    for ext in qvet_map(image, opts):
        if ext.get("data") and "offset" in ext and ext.get("depth", 0) == 0:
            first = ext["offset"] // cs
            for c in range(first, first + (ext["length"] + cs - 1) // cs):
                role.setdefault(c, "data")
    marked_data = marked_l2 = None
    if sector is not None:
        off = int(sector) * 512
        l1_index = off // (cs * layout["l2_entries"])
        if l1_index < len(layout["l1"]) and layout["l1"][l1_index]:
            marked_l2 = layout["l1"][l1_index] // cs
        for ext in qvet_map(image, opts):
            if ext["start"] <= off < ext["start"] + ext["length"] and "offset" in ext:
                marked_data = (ext["offset"] + off - ext["start"]) // cs
    colors = {"header": "#555", "L1": "#1f5fbf", "refcount table": "#7b3fa0",
              "refcount block": "#b58ad0", "L2": "#2e9e4f", "data": "#9ccfe8"}
    per = 1
    while n // per > 4096:
        per *= 2
    cells = (n + per - 1) // per
    cols = 64 if cells > 256 else 16
    size = 10 if cells > 256 else 28
    rows = (cells + cols - 1) // cols
    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{cols * size + 2}\" "
             f"height=\"{rows * size + 60}\" role=\"img\">"]
    for cell in range(cells):
        cl = [c for c in range(cell * per, min(n, (cell + 1) * per))]
        r = next((role[c] for c in cl if c in role), None)
        fill = colors.get(r, "#eee")
        stroke = ""
        title = f"cluster {cell * per}" + (f"..{cl[-1]}" if per > 1 else "") + \
            f" (host offset 0x{cell * per * cs:x}): {r or 'free/unreferenced'}"
        if marked_data in cl:
            fill, stroke, title = "#d00", " stroke=\"#000\" stroke-width=\"2\"", \
                title + " - the divergent cluster"
        elif marked_l2 in cl:
            fill, stroke, title = "#f90", " stroke=\"#000\" stroke-width=\"2\"", \
                title + " - the L2 table mapping it"
        x, y = 1 + (cell % cols) * size, 1 + (cell // cols) * size
        parts.append(f"<rect x=\"{x}\" y=\"{y}\" width=\"{size - 1}\" height=\"{size - 1}\" "
                     f"fill=\"{fill}\"{stroke}><title>{esc(title)}</title></rect>")
    y = rows * size + 15
    legend = list(colors.items()) + [("divergent cluster", "#d00"), ("its L2 table", "#f90")]
    for i, (name, color) in enumerate(legend):
        x = 1 + (i % 4) * 160
        yy = y + (i // 4) * 16
        parts.append(f"<rect x=\"{x}\" y=\"{yy - 9}\" width=\"10\" height=\"10\" "
                     f"fill=\"{color}\"/><text x=\"{x + 14}\" y=\"{yy}\" "
                     f"font-size=\"11\">{esc(name)}</text>")
    parts.append("</svg>")
    note = f"<p>{n} clusters of {cs} bytes" + (f", {per} per square" if per > 1 else "") + \
        (f"; L2 table at cluster {marked_l2}" if marked_l2 is not None else "") + \
        (f"; divergent data at cluster {marked_data}" if marked_data is not None else "") + \
        "</p>"
    l2_html = ""
    if marked_l2 is not None:
        with open(image, "rb") as f:
            f.seek(marked_l2 * cs)
            raw = f.read(cs)
        width = 16 if layout["extended_l2"] else 8
        entries = []
        for i in range(0, len(raw) - width + 1, width):
            e = int.from_bytes(raw[i:i + 8], "big")
            if e:
                entries.append(f"entry {i // width}: 0x{e:016x}" +
                               (f" bitmap 0x{int.from_bytes(raw[i + 8:i + 16], 'big'):016x}"
                                if width == 16 else ""))
        l2_html = "<h3>its L2 table (non-zero entries)</h3><pre>" + \
            esc("\n".join(entries[:200]) or "(all zero)") + "</pre>"
    return "".join(parts) + note + l2_html


def signature_page(g, opts):
    item = g["best"]
    body = [f"<p><a href=\"index.html\">all signatures</a></p><h1>{esc(g['kind'])}</h1>",
            f"<p>signature <code>{esc(g['signature'])}</code> ({g['id']})</p>",
            f"<p>status: <span class=\"{g['history']}\">{esc(g['history'])}</span>; "
            f"{g['count']} input(s) in this report; first seen {esc(g.get('first_seen', '-'))},"
            f" last seen {esc(g.get('last_seen', '-'))}</p>",
            "<h2>Reproduce</h2><pre>" + esc(shlex.join(g["reproduce_min"])) + "</pre>",
            f"<p>minimized by: {esc(g['minimized_by'])}</p>"]
    if g.get("minimized") and os.path.exists(g["minimized"]):
        with open(g["minimized"], "rb") as f:
            data = f.read()
        body.append(f"<h2>Minimized input ({len(data)} bytes, was {item['input_size']})</h2>")
        if item["type"] == "summary":
            body.append("<pre>" + esc(data.decode("utf-8", "replace")) + "</pre>")
        else:
            body.append(hexdump_html(data, decode_header(data)))
    if item.get("stack"):
        body.append("<h2>Stack</h2><pre>" + esc("\n".join(item["stack"])) + "</pre>")
    rep = item.get("report")
    if rep:
        body.append(f"<h2>First divergent sector</h2><p>{esc(rep['headline'])}</p>")
        body.append("<div class=\"side\"><div><h3>" + esc(rep.get("expected_title", "")) +
                    "</h3><pre>" + esc("\n".join(rep["expected"])) + "</pre></div><div><h3>" +
                    esc(rep.get("actual_title", "")) + "</h3><pre>" +
                    esc("\n".join(rep["actual"])) + "</pre></div></div>")
        body.append("<h3>Provenance and history</h3><pre>" + esc("\n".join(rep["notes"])) +
                    "</pre>")
    if item.get("image"):
        body.append("<h2>Cluster map of the image</h2>")
        body.append(cluster_svg(item["image"], item.get("sector"), opts))
        with open(item["image"], "rb") as f:
            head = f.read(512)
        body.append("<h3>Image header</h3>" + hexdump_html(head, decode_header(head), 112))
    body.append("<h2>Inputs with this signature</h2><ul>" + "".join(
        f"<li>{esc(i['path'])} ({esc(i['status'])})</li>" for i in g["items"]) + "</ul>")
    return page(g["signature"], "".join(body))


def index_page(groups, meta):
    rows = []
    for g in groups:
        rows.append(
            f"<tr><td><code>{esc(g['signature'])}</code></td><td>{esc(g['kind'])}</td>"
            f"<td>{esc(g['best'].get('target') or '-')}</td>"
            f"<td>{g['count']}</td><td>{esc(g.get('first_seen', '-'))}</td>"
            f"<td>{esc(g.get('last_seen', '-'))}</td><td data-v=\"{g['min_size']}\">"
            f"{g['min_size']} (of {g['best'].get('input_size', 0)})</td><td class=\"{g['history']}\">{esc(g['history'])}</td>"
            f"<td><a href=\"sig-{g['id']}.html\">details</a></td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("signature", "kind", "target", "count", "first seen",
                                             "last seen", "input size", "status", "link"))
    plots = "".join(f"<h3>{esc(title)}</h3>{svg}" for title, svg in meta.get("plots", []))
    verdict = f"<p><b>{esc(meta['verdict'])}</b></p>" if meta.get("verdict") else ""
    fixed = "".join(f"<li>{esc(h['signature'])} (fixed, last seen {esc(h.get('last_seen'))})"
                    f"</li>" for h in meta.get("fixed", []))
    body = (f"<h1>qvet triage</h1>{verdict}<p>{esc(meta['stamp'])}: {meta['inputs']} "
            f"input(s), {len(groups)} signature(s), {meta['new']} new</p>"
            f"<table id=\"sigs\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
            f"</tbody></table>" +
            (f"<h2>Fixed (no longer reproduce)</h2><ul>{fixed}</ul>" if fixed else "") +
            (f"<h2>Runs</h2>{plots}" if plots else ""))
    return page("qvet triage", body, SORT_JS)


# ---- main ------------------------------------------------------------------------------

def triage_items(items, opts):
    for n, item in enumerate(items):
        with tempfile.TemporaryDirectory(prefix="qvet-triage-") as work:
            if item["type"] == "fuzz":
                reproduce_fuzz(item, opts)
            else:
                item["work"] = work
                reproduce_summary(item, opts, work)
                if item.get("image"):  # keep the replay's image for the report's map
                    kept = os.path.join(opts.out, "images", f"image-{n}.qcow2")
                    os.makedirs(os.path.dirname(kept), exist_ok=True)
                    shutil.copyfile(item["image"], kept)
                    item["image"] = kept
        item["signature"] = signature_of(item)
        say(f"{item['path']}: {item['status']}: {item['signature']}")


def group(items):
    groups = {}
    for item in items:
        g = groups.setdefault(item["signature"], {
            "signature": item["signature"], "id": sig_id(item["signature"]),
            "kind": item["kind"], "status": item["status"], "items": []})
        g["items"].append(item)
    out = sorted(groups.values(), key=lambda g: g["signature"])
    for g in out:
        g["count"] = len(g["items"])
        g["best"] = min(g["items"], key=lambda i: (i.get("input_size", 0), i["path"]))
    return out


def minimize_groups(groups, opts):
    for g in groups:
        best = g["best"]
        g["reproduce_min"] = best.get("reproduce") or []
        g["minimized"], g["minimized_by"] = None, "not minimized"
        g["min_size"] = best.get("input_size", 0)
        if g["status"] != "reproduced" or opts.no_minimize:
            continue
        if best.get("minimized"):  # merged from a shard's triage
            g["minimized"], g["minimized_by"] = best["minimized"], best["minimized_by"]
        else:
            ext = ".trace" if best["type"] == "summary" else ""
            out = os.path.join(opts.out, "minimized", g["id"] + ext)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            fn = minimize_fuzz if best["type"] == "fuzz" else minimize_summary
            g["minimized"], g["minimized_by"] = fn(best, out, opts)
        if g["minimized"]:
            g["min_size"] = os.path.getsize(g["minimized"])
            if best["type"] == "fuzz":
                g["reproduce_min"] = [best["reproduce"][0], os.path.abspath(g["minimized"])]
            elif best.get("reproduce"):
                g["reproduce_min"] = [best["reproduce"][0], "replay",
                                      os.path.abspath(g["minimized"])]
        say(f"{g['id']}: {g['minimized_by']} -> {g['min_size']} bytes")


def save_regressions(groups, corpus):
    """Each new (or returned) fuzz signature's minimized input (or, not minimized, its
    smallest input) joins
    CORPUS/regressions/TARGET/, which `make test` replays."""
    for g in groups:
        best = g["best"]
        if g["history"] in ("new", "back") and best["type"] == "fuzz":
            dest = os.path.join(corpus, "regressions", best["target"])
            os.makedirs(dest, exist_ok=True)
            name = os.path.join(dest, f"triage-{g['id']}")
            shutil.copyfile(g["minimized"] or best["path"], name)
            say(f"saved {name}")


def merged_items(dirs, opts):
    """Each shard's triaged items (its triage/results.json), with the shards' runs; a
    shard without results is triaged here."""
    items, runs, fresh = [], [], []
    for d in dirs:
        results = read_json(os.path.join(d, "triage", "results.json"))
        nightly = read_json(os.path.join(d, "nightly.json"))
        if isinstance(nightly, dict):
            nightly["dir"] = d
            runs.append(nightly)
        if isinstance(results, dict):
            base = os.path.join(d, "triage")
            for item in results["items"]:
                if item.get("minimized") and not os.path.isabs(item["minimized"]):
                    item["minimized"] = os.path.join(base, item["minimized"])
                if item.get("image") and not os.path.isabs(item["image"]):
                    item["image"] = os.path.join(base, item["image"])
                items.append(item)
        else:
            fresh.append(d)
    if fresh:
        more = collect(fresh)
        triage_items(more, opts)
        items += more
    return items, runs


def short_count(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def nightly_verdict(runs, new, known):
    """`nightly: 12 configurations x 40 seeds, 3.1M ops, 0 new signatures, 1 known`."""
    configs = set()
    for r in runs:
        configs.update(r.get("config_ids") or [])
    seeds = max((r.get("seeds", 0) for r in runs), default=0)
    ops = sum(r.get("ops", 0) for r in runs)
    execs = sum(r.get("fuzz_execs", 0) for r in runs)
    return (f"nightly: {len(configs)} configurations x {seeds} seeds, {short_count(ops)} ops, "
            f"{short_count(execs)} fuzz execs over {len(runs)} shard(s), "
            f"{new} new signatures, {known} known")


PLOTS = [  # file pattern, column of y, title, y label
    ("soak.dat", 2, "soak ops per second over time", "ops/s"),
    ("soak.dat", 3, "soak operations done over time", "ops"),
    ("coverage.dat", 2, "soak coverage of engine lines over time", "% of lines"),
    ("fuzz-*.dat", 2, "fuzz execs per second over time", "execs/s"),
    ("fuzz-*.dat", 3, "fuzz corpus size over time", "inputs"),
    ("fuzz-*.dat", 4, "fuzz coverage (libFuzzer cov) over time", "edges"),
]


def make_plots(runs, out):
    """SVG plots (gnuplot) of the shards' stats: one line per shard and target."""
    if not shutil.which("gnuplot"):
        return []
    import glob
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    plots = []
    for n, (pattern, col, title, ylabel) in enumerate(PLOTS):
        series = []
        for r in runs:
            for path in sorted(glob.glob(os.path.join(r["dir"], "stats", pattern))):
                if os.path.getsize(path):
                    name = os.path.basename(path)[:-4].replace("fuzz-", "")
                    series.append((path, f"shard {r.get('shard')} {name}"))
        if not series:
            continue
        svg = os.path.join(out, "plots", f"plot-{n}.svg")
        lines = ", ".join(f"'{p}' using 1:{col} with linespoints title '{t}'"
                          for p, t in series)
        script = (f"set terminal svg size 720,320 noenhanced font 'sans,10'\n"
                  f"set output '{svg}'\nset title '{title}'\nset xlabel 'seconds'\n"
                  f"set ylabel '{ylabel}'\nset key outside right\nplot {lines}\n")
        if subprocess.run(["gnuplot"], input=script.encode(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0 and os.path.exists(svg):
            with open(svg) as f:
                text = f.read()
            plots.append((title, text[text.find("<svg"):]))
    return plots


def write_results(out, items, groups):
    """results.json: every item as triaged, each carrying its group's minimized input,
    for a later --merge."""
    by_sig = {g["signature"]: g for g in groups}
    keep = []
    for item in items:
        g = by_sig[item["signature"]]
        rec = {k: v for k, v in item.items() if k not in ("output", "summary", "work")}
        rec["summary_data"] = item.get("summary")
        if item is g["best"] and g.get("minimized"):
            rec["minimized"] = os.path.relpath(g["minimized"], out)
            rec["minimized_by"] = g["minimized_by"]
        if rec.get("image"):
            rec["image"] = os.path.relpath(rec["image"], out)
        keep.append(rec)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"items": keep}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(prog="qvet triage")
    ap.add_argument("--out")
    ap.add_argument("--history", default=os.path.join("reports", "triage", "history.json"))
    ap.add_argument("--save", action="store_true")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "corpus"))
    ap.add_argument("--merge", action="store_true")
    ap.add_argument("--asan-build", default=os.path.join(ROOT, "build-asan"))
    ap.add_argument("--fuzz-build", default=os.path.join(ROOT, "build-fuzz"))
    ap.add_argument("--replay-dir")
    ap.add_argument("--libfuzzer-dir")
    ap.add_argument("--no-minimize", action="store_true")
    ap.add_argument("dirs", nargs="+")
    opts = ap.parse_args()
    opts.qvet = os.environ.get("QVET") or shutil.which("qvet") or "qvet"
    opts.replay_dir = opts.replay_dir or os.path.join(opts.asan_build, "fuzz")
    opts.libfuzzer_dir = opts.libfuzzer_dir or os.path.join(opts.fuzz_build, "fuzz")
    stamp = now()
    if not opts.out:
        opts.out = os.path.join("reports", "triage",
                                datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S"))
    if os.path.isdir(opts.out) and os.listdir(opts.out):
        print(f"qvet triage: {opts.out}: exists and is not empty (earlier reports are "
              f"never replaced)", file=sys.stderr)
        return 2
    os.makedirs(opts.out, exist_ok=True)
    open(os.path.join(opts.out, REPORT_MARK), "w").close()

    if opts.merge:
        items, runs = merged_items(opts.dirs, opts)
    else:
        items, runs = collect(opts.dirs), []
        say(f"{len(items)} failure(s) found under {' '.join(opts.dirs)}")
        triage_items(items, opts)
    groups = group(items)
    minimize_groups(groups, opts)
    history = load_history(opts.history)
    update_history(history, groups, stamp, opts)
    if opts.history:
        os.makedirs(os.path.dirname(os.path.abspath(opts.history)), exist_ok=True)
        tmp = opts.history + ".tmp"
        with open(tmp, "w") as f:
            json.dump(history, f, indent=1, sort_keys=True)
        os.replace(tmp, opts.history)
    if opts.save:
        save_regressions(groups, opts.corpus)

    new = [g for g in groups if g["history"] in ("new", "back")]
    known = [g for g in groups if g["history"] == "known"]
    fixed = [h for h in history["signatures"].values() if h.get("fixed")]
    plots = make_plots(runs, opts.out) if runs else []
    verdict = nightly_verdict(runs, len(new), len(known)) if runs else None
    meta = {"stamp": stamp, "inputs": len(items), "new": len(new), "plots": plots,
            "verdict": verdict, "fixed": fixed}
    for g in groups:
        with open(os.path.join(opts.out, f"sig-{g['id']}.html"), "w") as f:
            f.write(signature_page(g, opts))
    with open(os.path.join(opts.out, "index.html"), "w") as f:
        f.write(index_page(groups, meta))
    summary = {
        "tool": "triage", "created": stamp, "inputs": len(items),
        "verdict": "failed" if new else "ok",
        "new": len(new), "known": len(known), "fixed": len(fixed),
        "runs": [{k: r.get(k) for k in ("shard", "configurations", "config_ids", "seeds",
                                        "units", "ops", "fuzz_targets", "fuzz_execs")}
                 for r in runs],
        "signatures": [{"id": g["id"], "signature": g["signature"], "kind": g["kind"],
                        "count": g["count"], "status": g["history"],
                        "reproduced": g["status"] == "reproduced",
                        "first_seen": g.get("first_seen"), "last_seen": g.get("last_seen"),
                        "input_size": g["best"].get("input_size", 0),
                        "minimized_size": g["min_size"], "minimized_by": g["minimized_by"],
                        "minimized": g["minimized"], "reproduce": g["reproduce_min"],
                        "page": f"sig-{g['id']}.html",
                        "inputs": [i["path"] for i in g["items"]]} for g in groups],
    }
    with open(os.path.join(opts.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    write_results(opts.out, items, groups)
    print(f"triage: {len(items)} input(s), {len(groups)} signature(s): {len(new)} new, "
          f"{len(known)} known; report {os.path.join(opts.out, 'index.html')}")
    if verdict:
        summary["verdict_line"] = verdict
        with open(os.path.join(opts.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(verdict)
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
