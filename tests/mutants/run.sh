#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The mutation suite: how many planted bugs the soak finds, and how fast.
#   tests/mutants/run.sh [--subset] [--seconds N] [--keep] [--out DIR] [PATCH...]
# Each PATCH (default: every tests/mutants/*.patch, the subset: those listed in
# tests/mutants/subset.txt) is built in a private tree (scripts/build-mutant.sh), and
# its qvet runs `qvet soak --config all` (the whole configuration matrix, N seconds of
# wall time in all, 60 by default) until the soak finds a bug (exit 1: the mutant is
# killed) or the time is up (it survived). The time to kill is the wall time of that
# soak, its cross-checks included. The
# report gives killed/total, the median and worst time to kill, and every survivor with
# its reason: the argument in its patch header ("equivalent: ..."), or that no soak
# noticed it (with the header's "unreached: ...", what the soak would need); then the
# score, killed out of the mutants not argued equivalent.
# SOAK_ARGS adds qvet soak options to every run (e.g. --weights ...).
# Exit 0 every mutant killed, 1 one survived, 2 one could not be built or run.
set -uo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
seconds=60 subset= keep= out=
patches=()
while [ $# -gt 0 ]; do
  case $1 in
    --subset) subset=1 ;;
    --seconds) seconds=$2; shift ;;
    --keep) keep=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "mutants: unknown option $1" >&2; exit 2 ;;
    *) patches+=("$(readlink -f "$1")") ;;
  esac
  shift
done
if [ ${#patches[@]} -eq 0 ]; then
  if [ -n "$subset" ]; then
    while read -r name _; do
      case $name in ''|'#'*) continue ;; esac
      patches+=("$here/tests/mutants/$name.patch")
    done < "$here/tests/mutants/subset.txt"
  else
    patches=("$here"/tests/mutants/*.patch)
  fi
fi
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/qvet-mutants.XXXXXX")
own_out=
[ -n "$out" ] || { out=$(mktemp -d "${TMPDIR:-/tmp}/qvet-mutants-results.XXXXXX"); own_out=1; }
mkdir -p "$out"
results=$out/results.txt
: > "$results"

header_field() {    # the value of "KEY: ..." in a patch's header (before the diff)
  sed -n "/^--- /q; s/^$2: //p" "$1" | head -n 1
}

now() { date +%s.%N; }

killed=0 survived=0 equivalent=0 errors=0 total=0
times=()
# One private tree for all of them, built once by scripts/build-mutant.sh with no change;
# then each mutant is patched in, rebuilt (only the files it touches recompile), soaked
# and patched out again. The shipped build is never touched.
tree=$work/tree
: > "$work/unchanged.patch"
if ! JOBS=${JOBS:-2} nice bash "$here/scripts/build-mutant.sh" "$work/unchanged.patch" "$tree" \
     > "$work/base.build.log" 2>&1; then
  echo "mutants: the unchanged tree does not build: $(tail -n 1 "$work/base.build.log")" >&2
  exit 2
fi
for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  total=$((total + 1))
  dir=$work/$name
  mkdir -p "$dir"
  if ! patch -s -p1 -d "$tree/src" --dry-run < "$patch" > "$dir.build.log" 2>&1; then
    errors=$((errors + 1))
    printf '%-34s ERROR  the patch does not apply to this tree (stale)\n' "$name" | tee -a "$results"
    continue
  fi
  patch -s -p1 -d "$tree/src" < "$patch"
  if ! nice cmake --build "$tree/build" --target qvet -j "${JOBS:-2}" >> "$dir.build.log" 2>&1; then
    patch -s -R -p1 -d "$tree/src" < "$patch"
    errors=$((errors + 1))
    printf '%-34s ERROR  could not be built (%s)\n' "$name" "$dir.build.log" | tee -a "$results"
    continue
  fi
  cp "$tree/build/qvet" "$dir/qvet"
  patch -s -R -p1 -d "$tree/src" < "$patch"
  start=$(now)
  # The wall-clock cap is the budget. The ops get a third of it (--seconds counts ops
  # only): setting up each configuration and its cross-checks take the rest, so that
  # every configuration gets its turn before the cap.
  # shellcheck disable=SC2086  # SOAK_ARGS holds several words on purpose
  timeout -s INT -k 10 "$seconds" nice "$dir/qvet" soak --config all \
    --seconds "$(echo "$seconds / 3" | bc -l)" --check-every 1000 --seed 1 \
    --dir "$dir/run" ${SOAK_ARGS:-} > "$dir.soak.log" 2>&1
  status=$?
  [ "$status" -eq 124 ] && status=0         # the time ran out: nothing found
  elapsed=$(echo "$(now) - $start" | bc)
  case $status in
    1)
      killed=$((killed + 1))
      times+=("$elapsed")
      config=$(sed -n 's/^soak: FAILED in configuration \([^ ]*\) .*/\1/p' "$dir.soak.log")
      how=$(grep -m 1 '^qvet soak: ' "$dir.soak.log" | sed 's|/[^ ]*/run/[0-9][0-9]-[^/: ]*/\{0,1\}||g' | cut -c12-110)
      printf '%-34s killed in %5.1f s (%s): %s\n' "$name" "$elapsed" "$config" "$how" |
        tee -a "$results"
      ;;
    0)
      survived=$((survived + 1))
      why=$(header_field "$patch" equivalent)
      if [ -n "$why" ]; then
        equivalent=$((equivalent + 1))
        why="equivalent: $why"
      else
        why="no soak noticed it in $seconds s"
        reach=$(header_field "$patch" unreached)
        [ -n "$reach" ] && why="$why; $reach"
      fi
      printf '%-34s SURVIVED  %s\n' "$name" "$why" | tee -a "$results"
      ;;
    *)
      errors=$((errors + 1))
      printf '%-34s ERROR  the soak exited %d: %s\n' "$name" "$status" \
        "$(grep -m 1 'qvet soak' "$dir.soak.log")" | tee -a "$results"
      ;;
  esac
  [ -n "$keep" ] || rm -rf "$dir"
done

median=- worst=-
if [ ${#times[@]} -gt 0 ]; then
  sorted=$(printf '%s\n' "${times[@]}" | sort -g)
  n=${#times[@]}
  if [ $((n % 2)) -eq 1 ]; then
    median=$(echo "$sorted" | sed -n "$((n / 2 + 1))p")
  else
    median=$(echo "$sorted" | sed -n "$((n / 2)),$((n / 2 + 1))p" | paste -sd+ | sed 's/.*/(&)\/2/' | bc -l)
  fi
  worst=$(echo "$sorted" | tail -n 1)
  median=$(printf '%.1f s' "$median")
  worst=$(printf '%.1f s' "$worst")
fi
echo "mutants: $killed/$total killed (each within ${seconds} s), median time to kill $median, worst $worst; $survived survived ($equivalent of them equivalent), $errors errors" | tee -a "$results"
# The score leaves out the mutants argued equivalent (their reason is in the list above).
countable=$((total - equivalent))
score=-
[ "$countable" -gt 0 ] && score=$(echo "scale=1; 100 * $killed / $countable" | bc)%
echo "mutants: score $killed/$countable killed = $score of the mutants that can change behaviour" |
  tee -a "$results"
[ -n "$keep" ] && echo "mutants: mutant trees kept in $work" || rm -rf "$work"
if [ -n "$own_out" ] && [ "$errors" -eq 0 ] && [ "$survived" -eq 0 ]; then
  rm -rf "$out"
else
  echo "mutants: results in $results"
fi
if [ "$errors" -gt 0 ]; then exit 2; fi
if [ "$survived" -gt 0 ]; then exit 1; fi
exit 0
