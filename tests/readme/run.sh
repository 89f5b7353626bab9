#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Every command README.md shows in a ```sh, ```bash, ```shell or ```console block runs,
# in order, in one scratch directory (so one block may use what an earlier one made),
# and must exit 0 unless the README says otherwise:
#   - a trailing comment "# exits N" (or "# exit status N") expects exit N;
#   - in a console block, a command whose shown output starts with "qvet: " (the one-line
#     error qvet exits non-zero with) expects a non-zero exit.
# In sh blocks every line is a command (a trailing backslash joins lines; comments and
# blank lines are skipped); in console blocks only "$ " lines are, the rest is output.
# Made short and kept out of the source tree: `qvet soak` runs --seconds $SOAK_SECONDS
# (default 2; a --seconds in the command is replaced), and `make` runs in the source tree
# with BUILD set to $QVET's directory and SOAK_DIR to the scratch directory's
# reports/soak. A few make targets are not run (each is named with the reason): this
# test's own suite, and those that delete build trees or take many minutes.
# Environment: QVET (the qvet binary), SRC (the source tree), README (default
# $SRC/README.md), SOAK_SECONDS.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
src=${SRC:-$here}
readme=${README:-$src/README.md}
qvet=${QVET:-$src/build/qvet}
README_TEST_SRC=$src
README_TEST_BUILD=$(cd "$(dirname "$qvet")" && pwd)
SOAK_SECONDS=${SOAK_SECONDS:-2}
export README_TEST_SRC README_TEST_BUILD SOAK_SECONDS
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/qvet-readme.XXXXXX")
trap '[ "${failed:-1}" -eq 0 ] && rm -rf "$work"' EXIT

# The commands, one record each: line number, expected exit ("0", "N" or "nonzero"),
# the command; records separated by NUL bytes.
extract() {
  python3 - "$1" <<'PY'
import re, sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
SHELL = {"sh", "bash", "shell"}
out = []
def expectation(cmd, default="0"):
    m = re.search(r"#\s*exit(?:s| status)?\s+(\d+)\s*$", cmd)
    return m.group(1) if m else default
i, block = 0, None
while i < len(lines):
    line = lines[i]
    fence = re.match(r"^\s*```\s*([A-Za-z]*)", line)
    if fence and block is None:
        block = fence.group(1).lower()
        i += 1
        continue
    if fence and block is not None:
        block = None
        i += 1
        continue
    if block in SHELL:
        start, cmd = i + 1, line
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd[:-1] + " " + lines[i].strip()
        if cmd.strip() and not cmd.strip().startswith("#"):
            out.append((start, expectation(cmd), cmd.strip()))
    elif block == "console" and line.startswith("$ "):
        start, cmd = i + 1, line[2:]
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd[:-1] + " " + lines[i].lstrip("> ").strip()
        shown = lines[i + 1] if i + 1 < len(lines) else ""
        default = "nonzero" if shown.startswith("qvet: ") else "0"
        out.append((start, expectation(cmd, default), cmd.strip()))
    i += 1
sys.stdout.write("".join(f"{n}\t{e}\t{c}\0" for n, e, c in out))
PY
}

# What every command runs with: qvet on PATH, shortened soaks, make in the source tree.
prelude=$(cat <<'SH'
export PATH="$README_TEST_BUILD:$PATH"
short_soak_words() {    # drops --seconds N / --seconds=N, puts --seconds $SOAK_SECONDS first
  local out=(--seconds "$SOAK_SECONDS") skip= a
  for a in "$@"; do
    [ -n "$skip" ] && { skip=; continue; }
    case $a in --seconds) skip=1; continue ;; --seconds=*) continue ;; esac
    out+=("$a")
  done
  printf '%s\n' "${out[@]}"
}
qvet() {
  if [ "${1:-}" = soak ]; then
    shift
    local args
    mapfile -t args < <(short_soak_words "$@")
    command qvet soak "${args[@]}"
  else
    command qvet "$@"
  fi
}
make() {
  local args=() a soak= soak_args=
  for a in "$@"; do
    case $a in
      soak) soak=1 ;;
      SOAK_ARGS=*)
        # shellcheck disable=SC2086  # SOAK_ARGS is a list of words, as make hands it on
        soak_args=1; a="SOAK_ARGS=$(short_soak_words ${a#SOAK_ARGS=} | tr '\n' ' ')" ;;
    esac
    args+=("$a")
  done
  [ -n "$soak" ] && [ -z "$soak_args" ] && args+=("SOAK_ARGS=--seconds $SOAK_SECONDS")
  command make -C "$README_TEST_SRC" BUILD="$README_TEST_BUILD" \
    SOAK_DIR="$PWD/reports/soak" "${args[@]}"
}
SH
)

# Targets this test does not run, and why.
not_run() {
  case $1 in
    "make test"*) echo "runs the whole suite, this test included" ;;
    "make clean"*) echo "deletes the build trees the suite is running from" ;;
    "make fuzz"* | "make bench"* | "make coverage"* | "make fuzz-bench"*)
      echo "takes many minutes (it has its own tests)" ;;
    "make seeds"*) echo "rewrites corpus/ in the source tree" ;;
    *) return 1 ;;
  esac
}

failed=0 ran=0
cd "$work" || exit 2
while IFS=$'\t' read -r -d '' line want cmd; do
  if reason=$(not_run "$cmd"); then
    echo "SKIP README.md:$line: $cmd ($reason)"
    continue
  fi
  ran=$((ran + 1))
  log="$work/command-$line.log"
  bash -c "$prelude
$cmd" > "$log" 2>&1
  got=$?
  if { [ "$want" = nonzero ] && [ "$got" -ne 0 ]; } || [ "$want" = "$got" ]; then
    echo "PASS README.md:$line: $cmd (exit $got)"
  else
    failed=$((failed + 1))
    echo "FAIL README.md:$line: $cmd: exit $got, expected $want"
    sed 's/^/    /' "$log" | tail -n 30
  fi
done < <(extract "$readme")
if [ "$ran" -eq 0 ]; then
  echo "FAIL: no command found in $readme's shell blocks (is the extractor broken?)"
  failed=1
fi
echo "$ran commands run, $failed failed"
[ "$failed" -eq 0 ]
