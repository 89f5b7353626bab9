#!/usr/bin/env bash
# A short differential soak over a matrix of image options (part of make test): every
# read compared with the oracle, engine check + qemu-img check + qemu-img compare at
# intervals. A failure prints the driver's report and keeps its directory; a run that
# could not run (exit 2: setup or environment, e.g. a full disk) says so apart from a
# bug found (exit 1).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
qvet=${QVET:-$here/build/qvet}
ops=${SOAK_OPS:-1500}
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/qvet-soak-matrix.XXXXXX")
configs=(
  ""
  "-o compat=0.10"
  "-o cluster_size=512"
  "-o cluster_size=4k,refcount_bits=2"
  "-o cluster_size=16k,extended_l2=on"
  "-o compression_type=zstd,lazy_refcounts=on"
  "-o refcount_bits=64,cluster_size=1k"
  "-o cluster_size=2M --size 24M"
  "--backing qcow2"
  "--backing raw -o compat=0.10"
  "--backing chain -o extended_l2=on"
)
passed=0 failed=0 i=0
for cfg in "${configs[@]}"; do
  i=$((i + 1))
  dir=$work/run$i
  # shellcheck disable=SC2086  # cfg holds several words on purpose
  "$qvet" soak --seed "$i" --ops "$ops" --check-every 500 --size 8M --dir "$dir" $cfg \
    > "$dir.log" 2>&1
  status=$?
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1)); echo "PASS soak ${cfg:-(defaults)}: $(tail -n 1 "$dir.log")"
  else
    failed=$((failed + 1))
    [ "$status" -eq 2 ] && what="ERROR (setup or environment, not a bug)" || what="FAIL"
    echo "$what soak ${cfg:-(defaults)}, exit $status (kept in $dir):"
    sed 's/^/    /' "$dir.log" | head -n 80
  fi
done
[ "$failed" -eq 0 ] && rm -rf "$work"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
