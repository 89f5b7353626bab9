#!/usr/bin/env bash
# make bench: speed, measured rather than asserted. Soak ops/s for 4 KiB ops on tmpfs
# (mirrored to the oracle, every read compared, cross-checks excluded) against QEMU's own
# blkverify driven by `qemu-img bench` on the same files system, and the fuzzers' execs/s.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
qvet=${QVET:-$here/build/qvet}
ops=${BENCH_OPS:-300000}
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/qvet-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$here/reports/bench
mkdir -p "$out"
report=$out/bench.txt
: > "$report"
say() { echo "$*" | tee -a "$report"; }

only_rw=read=50,write=50,zero=0,zero-unmap=0,discard=0,write-compressed=0,flush=0
only_rw=$only_rw,snapshot-create=0,snapshot-apply=0,snapshot-delete=0,reopen=0,resize=0
say "qvet bench ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, files on $base)"

line=$("$qvet" soak --io-size 4k --weights "$only_rw" --ops "$ops" --check-every 0 \
       --no-qemu-checks --size 16M --dir "$work/soak" | tail -n 1)
qvet_rate=$(sed -n 's/.*(\([0-9]*\) ops\/s).*/\1/p' <<<"$line")
say "soak, 4 KiB reads+writes mirrored to the oracle: ${qvet_rate:-?} ops/s  (target: >= 50000)"

qemu-img create -q -f raw "$work/bv.raw" 16M
qemu-img create -q -f qcow2 "$work/bv.qcow2" 16M
count=$((ops / 4))
rate() {  # qemu-img bench output -> ops/s
    local secs
    secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
    [ -n "$secs" ] && awk -v c="$count" -v s="$secs" 'BEGIN { printf "%d", c / s }'
}
w=$(qemu-img bench -c "$count" -d 1 -s 4k -w -S 4096 -f blkverify \
      "blkverify:$work/bv.raw:$work/bv.qcow2" 2>&1 | rate)
r=$(qemu-img bench -c "$count" -d 1 -s 4k -S 4096 -f blkverify \
      "blkverify:$work/bv.raw:$work/bv.qcow2" 2>&1 | rate)
say "qemu-img bench on QEMU blkverify (qcow2 vs raw), 4 KiB: writes ${w:-?} ops/s, reads ${r:-?} ops/s"
if [ -n "${qvet_rate:-}" ] && [ -n "${w:-}" ] && [ -n "${r:-}" ]; then
    slower=$(( w < r ? w : r ))
    say "soak vs blkverify (slower of its reads and writes): $(awk -v a="$qvet_rate" -v b="$slower" 'BEGIN { printf "%.1fx", a / b }')"
fi

if [ -x "$here/scripts/fuzz-bench.sh" ]; then
    say "fuzz targets (execs/s, one worker):"
    "$here/scripts/fuzz-bench.sh" 2>&1 | tee -a "$report"
fi
say "written to $report"
