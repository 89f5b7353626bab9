#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Which engine source file calls which, read from the compiled objects' symbol tables,
and whether every on-disk structure is still decoded, encoded and written by its owner.

A file A "calls" file B when A's object has an undefined symbol that B's object defines.
Calls hidden behind function pointers are invisible here, which is why the engine must not
hide calls that way. Prints the call graph (--graph) and every loop of files that call each
other (a strongly connected component of more than one file, or a file calling itself is
not counted), and every call that goes up a layer of docs/architecture.md (LAYERS) or from
one operation to another (only write -> read and the checker's files among themselves).

The owners check (docs/architecture.md, "Who owns each structure"): the codec and writer
symbols of each structure may be referenced only by the files listed for them (read from
the objects), a file that defines an allocator-named function must place clusters
through refcount.c (refcount_alloc or refcount_first_fit), and the raw layouts (entry
flags and masks, the compressed descriptor's bit split, header and refcount block
writes, field decoding with be16/be32 or a fixed offset) appear only in their owners'
sources.

Exit status: 0 no loop and no owner broken, 1 otherwise, 2 usage or a missing object.

  scripts/engine-calls.py BUILD_DIR [--graph]
  scripts/engine-calls.py --self-test     plants one breach of each owner rule in a
                                           scratch tree and fails unless each is found
"""
import os
import re
import subprocess
import sys
import tempfile

# structure: (owner files, codec/writer symbols, files allowed to reference them)
OWNED_SYMBOLS = {
    "snapshot table": (
        {"snapshot.c"},
        {"snapshot_table_parse", "snapshot_entry_decode_fixed", "snapshot_entry_take",
         "snapshot_table_encode", "snapshot_complete_extra"},
        {"qcow2.c", "snapshot_ops.c", "check_snapshots.c"}),
    "bitmap directory": (
        {"bitmap.c"},
        {"bitmap_entry_decode", "bitmap_directory_load"},
        {"qcow2.c", "check_refs.c"}),
    "L2 entries and compressed descriptors": (
        {"cluster.c"},
        {"l2_entry_at", "l2_entry_put", "compressed_desc_decode", "l2_entry_cluster_type",
         "l2_entry_subcluster_type", "l2_entry_zeroed", "l2_entry_has_data",
         "cluster_l2_for_write"},
        {"read.c", "write.c", "map.c", "snapshot_ops.c", "check_refs.c", "check_repair.c",
         "create.c"}),
    "refcount entries and the allocator": (
        {"refcount.c"},
        {"refcount_set", "refcount_add_range", "refcount_alloc", "refcount_alloc_at",
         "refcount_area", "refcount_write_block", "refcount_first_fit",
         "refcount_get_for_check"},
        {"l1.c", "cluster.c", "write.c", "snapshot_ops.c", "check_snapshots.c",
         "check_repair.c", "create.c"}),
    "header fields and table switches": (
        {"header_io.c"},
        {"header_switch_table", "header_write_snapshot_count", "header_write_size",
         "header_write_autoclear", "header_clear_incompat"},
        {"l1.c", "refcount.c", "snapshot_ops.c", "check.c", "check_snapshots.c",
         "check_repair.c", "qcow2.c"}),
}

ALLOCATOR_NAME = re.compile(r"alloc_cluster|_alloc$|_alloc_|find_free|first_fit")
PLACEMENT = {"refcount_alloc", "refcount_alloc_at", "refcount_first_fit"}

CODEC_FILES = {"header.c", "header_io.c", "snapshot.c", "bitmap.c", "cluster.c", "refcount.c",
               "l1.c"}
# rule name: (pattern over the source with comments removed, files that may contain it)
OWNED_TEXT = {
    "L1/L2 entry flags and masks": (
        r"\b(?:L1_ENTRY_\w+|L2_ENTRY_\w+|ENTRY_COPIED|SUBCLUSTER_(?:ALLOC|ZERO)_MASK)\b",
        {"cluster.c", "cluster.h"}),
    "the compressed descriptor's bit split": (r"\b70u? - ", {"cluster.c"}),
    "refcount table entry masks": (r"\bREFTABLE_ENTRY_\w+", {"refcount.c", "refcount.h"}),
    "refcount block writes": (r"_write\([^;]*\"refcount block\"", {"refcount.c"}),
    "header writes": (r"image_write(?:_meta)?\([^;]*\"header\"", {"header_io.c"}),
    "field decoding (be16/be32, or be64 at a fixed offset)": (
        r"\bbe(?:16|32)_(?:get|put)\(|\bbe64_(?:get|put)\([^,)]*\+ *\d+ *[,)]",
        CODEC_FILES | {"bytes.h"}),
}

# The layers of docs/architecture.md: a file may call files of its own layer or below,
# except that the operations (5) call no other operation but write -> read, and the
# checker's files call one another. bitmap.c reads the directory through io.c and is
# released by header_io.c, so it sits with the image I/O.
LAYERS = {
    1: {"error.c", "backend_fd.c", "backend_mem.c"},
    2: {"header.c", "snapshot.c", "compress.c", "backing.c"},
    3: {"io.c", "cache.c", "sync.c", "header_io.c", "bitmap.c"},
    4: {"refcount.c", "cluster.c", "l1.c"},
    5: {"read.c", "write.c", "snapshot_ops.c", "map.c", "check_io.c", "check_snapshots.c",
        "check_refs.c", "check_repair.c", "check.c"},
    6: {"qcow2.c", "create.c"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def layer_problems(graph):
    """(caller, callee, why) for every call up a layer or between two operations."""
    found = []
    for name in sorted(graph):
        if name not in LAYER_OF:
            found.append((name, "-", "a file in no layer (add it to LAYERS)"))
            continue
        for callee in sorted(graph[name]):
            mine, theirs = LAYER_OF[name], LAYER_OF.get(callee, 0)
            if theirs > mine:
                found.append((name, callee, f"layer {mine} calls up into layer {theirs}"))
            elif mine == theirs == 5 and not (
                    (name, callee) == ("write.c", "read.c")
                    or (name.startswith("check") and callee.startswith("check"))):
                found.append((name, callee, "one operation calls another"))
    return found


def objects(build):
    found = {}
    for root, _, files in os.walk(build):
        if "qvet_objects.dir" not in root:
            continue
        for f in files:
            if f.endswith(".c.o"):
                found[f[:-2]] = os.path.join(root, f)
    return found


def symbols(path):
    out = subprocess.run(["nm", path], check=True, capture_output=True, text=True).stdout
    defined, undefined, functions = set(), set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBR":
            defined.add(parts[2])
        if len(parts) == 3 and parts[1] in "Tt":
            functions.add(parts[2].split(".")[0])
    return defined, undefined, functions


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def owner_problems(table, source_dir):
    """(file, rule, detail) for every place a structure is handled outside its owner."""
    found = []
    for name, (_, undefined, functions) in sorted(table.items()):
        for structure, (owners, syms, callers) in OWNED_SYMBOLS.items():
            if name in owners:
                continue
            used = sorted(undefined & syms)
            if used and name not in callers:
                found.append((name, "calls", f"{structure} through {', '.join(used)}"))
        if name != "refcount.c":
            allocators = sorted(f for f in functions if ALLOCATOR_NAME.search(f))
            if allocators and not undefined & PLACEMENT:
                found.append((name, "allocator",
                              f"{', '.join(allocators)} place clusters without refcount.c"))
    for entry in sorted(os.listdir(source_dir)):
        if not entry.endswith((".c", ".h")):
            continue
        with open(os.path.join(source_dir, entry), encoding="utf-8") as f:
            text = strip_comments(f.read())
        for rule, (pattern, owners) in OWNED_TEXT.items():
            if entry in owners:
                continue
            m = re.search(pattern, text)
            if m:
                line = text.count("\n", 0, m.start()) + 1
                found.append((entry, rule, f"line {line}: {m.group(0)!r}"))
    return found


def loops(graph):
    """Tarjan's strongly connected components with more than one node."""
    index, low, on_stack, stack, result, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def self_test():
    """Each owner rule must fire on a planted breach, and stay quiet on the owner itself."""
    planted = {
        "L1/L2 entry flags and masks": "uint64_t f(uint64_t w) { return w & ENTRY_COPIED; }",
        "the compressed descriptor's bit split": "unsigned s(unsigned cb) { return 70u - cb; }",
        "refcount table entry masks": "uint64_t b(uint64_t e) { return e & REFTABLE_ENTRY_X; }",
        "refcount block writes": 'int w(void) { return image_write(b, n, "refcount block"); }',
        "header writes": 'int h(void) { return image_write(i, b, 8, 24, "header", e); }',
        "field decoding (be16/be32, or be64 at a fixed offset)":
            "uint64_t d(const uint8_t *e) { return be64_get(e + 24); }",
    }
    failures = 0
    with tempfile.TemporaryDirectory() as src:
        for i, (rule, text) in enumerate(planted.items()):
            with open(os.path.join(src, f"intruder{i}.c"), "w", encoding="utf-8") as f:
                f.write(f"/* {rule} */\n{text}\n")
        with open(os.path.join(src, "cluster.c"), "w", encoding="utf-8") as f:
            f.write("uint64_t own(uint64_t w) { return w & ENTRY_COPIED; }\n")
        with open(os.path.join(src, "table_walk.c"), "w", encoding="utf-8") as f:
            f.write("uint64_t t(const uint8_t *r, int i) { return be64_get(r + 8 * i); }\n")
        table = {
            "intruder_calls.c": (set(), {"snapshot_entry_decode_fixed"}, set()),
            "intruder_alloc.c": (set(), set(), {"intruder_alloc_clusters"}),
            "check_repair.c": (set(), {"refcount_first_fit"}, {"check_alloc"}),
            "check_snapshots.c": (set(), {"snapshot_entry_decode_fixed"}, set()),
        }
        found = owner_problems(table, src)
    layered = layer_problems({"io.c": {"write.c"}, "write.c": {"read.c", "map.c"},
                              "read.c": {"io.c"}, "map.c": set()})
    if [(a, b) for a, b, _ in layered] != [("io.c", "write.c"), ("write.c", "map.c")]:
        failures += 1
        print(f"engine-calls self-test: planted layer breaches not found as expected: {layered}")
    hits = {(name, rule) for name, rule, _ in found}
    want = {(f"intruder{i}.c", rule) for i, rule in enumerate(planted)}
    want |= {("intruder_calls.c", "calls"), ("intruder_alloc.c", "allocator")}
    for miss in sorted(want - hits):
        failures += 1
        print(f"engine-calls self-test: breach not found: {miss[0]}: {miss[1]}")
    for extra in sorted(hits - want):
        failures += 1
        print(f"engine-calls self-test: false alarm: {extra[0]}: {extra[1]}")
    if not failures:
        print(f"engine-calls self-test: all {len(want)} planted breaches found, no false alarm")
    return 1 if failures else 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    objs = objects(argv[1])
    if not objs:
        print(f"engine-calls: {argv[1]}: no engine objects (qvet_objects.dir/*.c.o); build first",
              file=sys.stderr)
        return 2
    table = {name: symbols(path) for name, path in objs.items()}
    owner = {}
    for name, (defined, _, _) in table.items():
        for sym in defined:
            owner[sym] = name
    graph = {name: set() for name in table}
    why = {}
    for name, (_, undefined, _) in table.items():
        for sym in undefined:
            callee = owner.get(sym)
            if callee and callee != name:
                graph[name].add(callee)
                why.setdefault((name, callee), sym)
    if "--graph" in argv:
        for name in sorted(graph):
            print(f"{name} -> {' '.join(sorted(graph[name])) or '(nothing)'}")
    found = loops(graph)
    for component in found:
        edges = [f"{a}->{b} ({why[(a, b)]})" for a in component for b in sorted(graph[a])
                 if b in component]
        print(f"engine-calls: loop of {len(component)} files: {' '.join(component)}; "
              f"calls: {', '.join(edges)}")
    if not found:
        print(f"engine-calls: {len(graph)} engine files, no loop")
    layered = layer_problems(graph)
    for caller, callee, why in layered:
        print(f"engine-calls: layer broken: {caller} -> {callee}: {why}")
    if not layered:
        print("engine-calls: every call goes down the layers")

    source_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "src")
    broken = 0
    for name, rule, detail in owner_problems(table, source_dir):
        broken += 1
        print(f"engine-calls: owner broken: {name}: {rule}: {detail}")
    if not broken:
        print("engine-calls: every structure is handled by its owner")
    return 1 if found or broken or layered else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
