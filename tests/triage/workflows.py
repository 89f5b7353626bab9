#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Checks the CI files with a YAML parser (Debian's python3-yaml, hence /usr/bin/python3):
every workflow in .github/workflows/ parses and has its required keys; the nightly's
shard and merge steps run the commands tests/triage/run.py runs; the ClusterFuzzLite
workflows build and run the fuzzers in their modes; .clusterfuzzlite/ is complete.

  workflows.py ROOT           check everything (exit 1 with one line per problem)
  workflows.py ROOT step JOB NAME   print that step of nightly.yml as JSON
"""
import json
import os
import sys

import yaml

SHARD_RUN = "bash scripts/nightly.sh"
MERGE_RUN = 'bash scripts/nightly.sh merge "$NIGHTLY_DIR"'
SHARD_ENV = "${{ matrix.shard }}/${{ strategy.job-total }}"


def load(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    # YAML 1.1 reads the key `on` as true.
    if isinstance(doc, dict) and True in doc:
        doc["on"] = doc.pop(True)
    return doc


def step(doc, job, name):
    for s in doc["jobs"][job]["steps"]:
        if s.get("name") == name:
            return s
    raise KeyError(f"job {job} has no step named '{name}'")


def check_workflow(name, doc, problems):
    def need(cond, what):
        if not cond:
            problems.append(f"{name}: {what}")
    need(isinstance(doc, dict), "not a mapping")
    if not isinstance(doc, dict):
        return
    for key in ("name", "on", "jobs"):
        need(key in doc, f"no '{key}'")
    for jname, job in (doc.get("jobs") or {}).items():
        need("runs-on" in job, f"job {jname}: no runs-on")
        need(isinstance(job.get("steps"), list) and job["steps"], f"job {jname}: no steps")
        for i, s in enumerate(job.get("steps") or []):
            need(("uses" in s) != ("run" in s), f"job {jname} step {i}: exactly one of uses/run")
            if "uses" in s:
                need("@" in s["uses"], f"job {jname} step {i}: '{s['uses']}' has no version")
        for dep in ([job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs") or []):
            need(dep in doc["jobs"], f"job {jname}: needs unknown job {dep}")


def check_nightly(doc, problems):
    def need(cond, what):
        if not cond:
            problems.append(f"nightly.yml: {what}")
    need("schedule" in doc["on"] and "workflow_dispatch" in doc["on"],
         "must run on a schedule and by hand")
    shards = doc["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    need(shards == list(range(1, len(shards) + 1)), f"matrix.shard {shards} is not 1..N")
    s = step(doc, "shard", "nightly shard")
    need(s.get("run") == SHARD_RUN, f"the shard step runs '{s.get('run')}', not '{SHARD_RUN}'")
    need(s.get("env", {}).get("SHARD") == SHARD_ENV, f"the shard step's SHARD is not {SHARD_ENV}")
    need("NIGHTLY_SECONDS" in s.get("env", {}), "the shard step sets no NIGHTLY_SECONDS")
    up = [x for x in doc["jobs"]["shard"]["steps"] if "upload-artifact" in x.get("uses", "")]
    need(up and up[0]["with"]["path"].rstrip("/") == s["env"]["NIGHTLY_DIR"].rstrip("/"),
         "the shard's artifact is not its NIGHTLY_DIR")
    need(doc["jobs"]["merge"].get("needs") == "shard", "merge must need the shards")
    m = step(doc, "merge", "merge")
    need(m.get("run") == MERGE_RUN, f"the merge step runs '{m.get('run')}', not '{MERGE_RUN}'")
    down = [x for x in doc["jobs"]["merge"]["steps"] if "download-artifact" in x.get("uses", "")]
    need(down and down[0]["with"]["path"].rstrip("/") == m["env"]["NIGHTLY_DIR"].rstrip("/"),
         "the merge job does not download the shards into its NIGHTLY_DIR")
    uses = [x.get("uses", "") for x in doc["jobs"]["publish"]["steps"]]
    need(any(u.startswith("actions/deploy-pages@") for u in uses), "publish does not deploy")


def check_cflite(name, doc, mode, problems):
    def need(cond, what):
        if not cond:
            problems.append(f"{name}: {what}")
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    uses = [s.get("uses", "") for s in steps]
    need(any(u.startswith("google/clusterfuzzlite/actions/build_fuzzers@") for u in uses),
         "no build_fuzzers step")
    runs = [s for s in steps if s.get("uses", "").startswith(
        "google/clusterfuzzlite/actions/run_fuzzers@")]
    need(runs and runs[0]["with"].get("mode") == mode, f"run_fuzzers is not in mode {mode}")
    trigger = "pull_request" if mode == "code-change" else "schedule"
    need(trigger in doc["on"], f"does not run on {trigger}")


def main():
    root = sys.argv[1]
    wdir = os.path.join(root, ".github", "workflows")
    if len(sys.argv) == 5 and sys.argv[2] == "step":
        print(json.dumps(step(load(os.path.join(wdir, "nightly.yml")), sys.argv[3],
                              sys.argv[4])))
        return 0
    problems = []
    docs = {}
    for name in sorted(os.listdir(wdir)):
        if name.endswith((".yml", ".yaml")):
            try:
                docs[name] = load(os.path.join(wdir, name))
            except yaml.YAMLError as e:
                problems.append(f"{name}: not YAML: {e}")
                continue
            check_workflow(name, docs[name], problems)
    for want in ("nightly.yml", "cflite_pr.yml", "cflite_batch.yml"):
        if want not in docs:
            problems.append(f"{want}: missing")
    try:
        if "nightly.yml" in docs:
            check_nightly(docs["nightly.yml"], problems)
        for name, mode in (("cflite_pr.yml", "code-change"), ("cflite_batch.yml", "batch")):
            if name in docs:
                check_cflite(name, docs[name], mode, problems)
    except (KeyError, TypeError, IndexError) as e:
        problems.append(f"a required key is missing: {e}")
    cfl = os.path.join(root, ".clusterfuzzlite")
    with open(os.path.join(cfl, "project.yaml")) as f:
        if (yaml.safe_load(f) or {}).get("language") != "c":
            problems.append(".clusterfuzzlite/project.yaml: language is not c")
    with open(os.path.join(cfl, "Dockerfile")) as f:
        if "oss-fuzz-base/base-builder" not in f.read():
            problems.append(".clusterfuzzlite/Dockerfile: not from the OSS-Fuzz base-builder")
    if not os.access(os.path.join(cfl, "build.sh"), os.X_OK):
        problems.append(".clusterfuzzlite/build.sh: not executable")
    for p in problems:
        print(f"workflows: {p}")
    if not problems:
        print(f"workflows: {len(docs)} workflow files and .clusterfuzzlite/ checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
