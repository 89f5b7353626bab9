#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Which engine source file calls which, read from the compiled objects' symbol tables.

A file A "calls" file B when A's object has an undefined symbol that B's object defines.
Calls hidden behind function pointers are invisible here, which is why the engine must not
hide calls that way. Prints the call graph (--graph) and every loop of files that call each
other (a strongly connected component of more than one file, or a file calling itself is
not counted). Exit status: 0 no loop, 1 a loop, 2 usage or a missing object.

  scripts/engine-calls.py BUILD_DIR [--graph]
"""
import os
import subprocess
import sys


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
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBR":
            defined.add(parts[2])
    return defined, undefined


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


def main(argv):
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
    for name, (defined, _) in table.items():
        for sym in defined:
            owner[sym] = name
    graph = {name: set() for name in table}
    why = {}
    for name, (_, undefined) in table.items():
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
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
