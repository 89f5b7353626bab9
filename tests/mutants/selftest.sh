#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The mutation runner reports what it sees: a mutant that changes nothing (a comment)
# must come out as surviving, with the reason from its patch header, and make the
# runner exit 1; it must never be counted as killed.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/qvet-mutants-selftest.XXXXXX")
bash "$here/tests/mutants/run.sh" --seconds 4 --out "$out" "$here/tests/mutants/selftest/noop.patch"
status=$?
fail() { echo "mutants-runner: $*"; cat "$out/results.txt"; exit 1; }
[ "$status" -eq 1 ] || fail "the runner exited $status for a surviving mutant, not 1"
grep -q '^noop  *SURVIVED  equivalent: it adds a comment and nothing else$' "$out/results.txt" ||
  fail "the no-op mutant is not reported as surviving with its reason"
grep -q "^mutants: 0/1 killed" "$out/results.txt" || fail "the summary does not say 0/1 killed"
grep -q "^mutants: score 0/0 killed" "$out/results.txt" ||
  fail "the score counts the equivalent no-op mutant"
grep -q 'killed in' "$out/results.txt" && fail "the no-op mutant was reported as killed"
rm -rf "$out"
# Every mutant still applies: a merge that moves code leaves a patch stale, and a stale
# mutant tests nothing (make mutants would count it as an error, long after the move).
for p in "$here"/tests/mutants/*.patch; do
  patch -s -p1 -d "$here" --dry-run <"$p" >/dev/null 2>&1 ||
    { echo "mutants-runner: $p does not apply to this tree (regenerate it)"; exit 1; }
done
echo "mutants-runner: the no-op mutant is reported as surviving; every mutant applies"
