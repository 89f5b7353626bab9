#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# make bench: speed, measured and reported, never asserted. One run puts the engine
# (build/qvet-bench, harness/bench/bench.c) beside QEMU 7.2's qcow2 driver (`qemu-img
# bench`, cache mode writeback, queue depth 1) and plain pread/pwrite on a raw file of
# the same size (the limit), on the same file system (/dev/shm when writable), with the
# same request pattern (offset 0, then STEP further each time, wrapping at the end).
# Also the soak's mirrored ops/s, the fuzzers' execs/s, memory by cache size and the
# scaling of open, read and check. Writes reports/bench/latest.json and latest.txt (the
# table and the targets) and prints the table.
#
#   scripts/bench.sh         BENCH_QUICK=1: tiny sizes and counts (the CTest test's mode:
#                            the numbers mean nothing, the tool's output is checked)
#   QVET=build/qvet  QVET_BENCH=build/qvet-bench  BENCH_OUT=reports/bench
#   BENCH_FUZZ=libfuzzer|replay|none (full run: libfuzzer, through scripts/fuzz-bench.sh;
#   quick run: replay, the corpus through the replay programs of the build)
#   BENCH_SCALE_MAX: the largest cluster count of the scaling rows (full: 1048576; a
#   multiple of 1024, so that the disk is whole 512 KiB requests)
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
qvet=${QVET:-$here/build/qvet}
bench=${QVET_BENCH:-$(dirname "$qvet")/qvet-bench}
quick=${BENCH_QUICK:-0}
out=${BENCH_OUT:-$here/reports/bench}
python=/usr/bin/python3
[ -x "$python" ] || python=python3
for tool in qemu-img qemu-io "$qvet" "$bench"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is missing" >&2; exit 2; }
done
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/qvet-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
rows=$work/rows.tsv
: > "$rows"

if [ "$quick" = 1 ]; then
    disk=16M n4k=400 n64k=100 fast=1 alloc_disk=16M soak_ops=(--ops 300) mem_reads=1000
    mem_caches="64k 1M" mem_writes=16 scale_counts="1024" fuzz_mode=${BENCH_FUZZ:-replay}
else
    # fast: how many times more requests the qvet and limit runs of the rows without
    # allocation make than QEMU's (at a microsecond a request, n4k of them would be over
    # in a tenth of a second, too short to time well)
    disk=256M n4k=100000 n64k=20000 fast=10 alloc_disk=1G soak_ops=(--seconds 20) mem_reads=100000
    mem_caches="64k 256k 1M 4M 32M" mem_writes=2048 fuzz_mode=${BENCH_FUZZ:-libfuzzer}
    scale_counts="1024 10240 102400 ${BENCH_SCALE_MAX:-1048576}"
fi
say() { echo "bench: $*" >&2; }
# row NAME KIND SIZE UNIT QVET QEMU LIMIT TARGETS ("-" for none)
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$rows"; }

# ops/s of `qvet-bench io ...`
qvet_rate() {
    "$bench" io "$@" | sed -nE 's/^ops=([0-9]+) seconds=([0-9.]+)$/\1 \2/p' |
        awk '$2 > 0 { printf "%.1f", $1 / $2 }'
}
# ops/s of `qemu-img bench -c COUNT ...` (its own timing, which excludes the open)
qemu_rate() {
    local count=$1
    shift
    qemu-img bench -q -c "$count" -d 1 -t writeback "$@" 2>&1 |
        sed -nE 's/^Run completed in ([0-9.]+) seconds.*/\1/p' |
        awk -v c="$count" '$1 > 0 { printf "%.1f", c / $1 }'
}
to_bytes() { numfmt --from=iec "${1^^}"; }

# ---- I/O of allocated clusters ---------------------------------------------------------
say "I/O rows on $base (disk $disk)"
qemu-img create -q -f qcow2 "$work/full.qcow2" "$disk"
qemu-io -c "write -P 0x11 0 $disk" "$work/full.qcow2" >/dev/null
qemu-img convert -O raw "$work/full.qcow2" "$work/full.raw"
for op in read write; do
    for sz in 4k 64k; do
        n=$n4k
        [ "$sz" = 64k ] && n=$n64k
        w=()
        [ "$op" = write ] && w=(-w --pattern=0x5a)
        targets="qemu>=5"
        [ "$sz" = 64k ] && targets="qemu>=1"
        [ "$op" = read ] && targets="$targets,limit>=0.8"
        row "$sz ${op}s of allocated clusters" io "$(to_bytes $sz)" ops/s \
            "$(qvet_rate "$work/full.qcow2" qcow2 $op $sz $sz $((n * fast)))" \
            "$(qemu_rate $n "${w[@]}" -s $sz -S $sz -f qcow2 "$work/full.qcow2")" \
            "$(qvet_rate "$work/full.raw" raw $op $sz $sz $((n * fast)))" "$targets"
    done
done

# ---- allocating writes on a fresh image ---------------------------------------------------
say "allocating writes (fresh $alloc_disk images)"
alloc_bytes=$(to_bytes $alloc_disk)
for sz in 4k 64k; do
    n=$((alloc_bytes / 65536))
    fresh() { rm -f "$work/$1"; qemu-img create -q -f "$2" "$work/$1" "$alloc_disk"; }
    fresh a.qcow2 qcow2
    q=$(qvet_rate "$work/a.qcow2" qcow2 write $sz 64k $n)
    fresh a.qcow2 qcow2
    e=$(qemu_rate $n -w --pattern=0x5a -s $sz -S 64k -f qcow2 "$work/a.qcow2")
    fresh a.raw raw
    l=$(qvet_rate "$work/a.raw" raw write $sz 64k $n)
    label="allocating $sz writes at 64 KiB stride"
    [ "$sz" = 64k ] && label="allocating 64k writes"
    targets="qemu>=2"
    [ "$sz" = 4k ] && targets="qemu>=5,qemu>=2"
    row "$label (fresh image)" alloc "$(to_bytes $sz)" ops/s "$q" "$e" "$l" "$targets"
done
rm -f "$work/a.qcow2" "$work/a.raw"

# ---- compressed clusters ------------------------------------------------------------------
say "compressed clusters"
base64 -w 0 /dev/urandom 2>/dev/null | head -c "$(to_bytes $disk)" > "$work/text.raw"
qemu-img convert -c -O qcow2 -f raw "$work/text.raw" "$work/comp.qcow2"
row "64k reads of compressed clusters (base64 text)" io 65536 ops/s \
    "$(qvet_rate "$work/comp.qcow2" qcow2 read 64k 64k $n64k)" \
    "$(qemu_rate $n64k -s 64k -S 64k -f qcow2 "$work/comp.qcow2")" \
    "$(qvet_rate "$work/text.raw" raw read 64k 64k $n64k)" "qemu>=1"
rm -f "$work/comp.qcow2" "$work/text.raw"

# ---- a 3-deep backing chain: each third of the disk lives in another layer ------------
say "backing chain"
third=$(( $(to_bytes $disk) / 3 / 65536 * 65536 ))
qemu-img create -q -f qcow2 "$work/base.qcow2" "$disk"
qemu-io -c "write -P 1 0 $third" "$work/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$work/mid.qcow2"
qemu-io -c "write -P 2 $third $third" "$work/mid.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 "$work/top.qcow2"
qemu-io -c "write -P 3 $((2 * third)) $third" "$work/top.qcow2" >/dev/null
qemu-img convert -O raw "$work/top.qcow2" "$work/chain.raw"
row "4k reads through a 3-deep backing chain" io 4096 ops/s \
    "$(qvet_rate "$work/top.qcow2" qcow2 read 4k 4k $((n4k * fast)))" \
    "$(qemu_rate $n4k -s 4k -S 4k -f qcow2 "$work/top.qcow2")" \
    "$(qvet_rate "$work/chain.raw" raw read 4k 4k $((n4k * fast)))" "qemu>=5"
rm -f "$work"/base.qcow2 "$work"/mid.qcow2 "$work"/top.qcow2 "$work"/chain.raw "$work"/full.*

# ---- the soak: mirrored ops/s ---------------------------------------------------------------
say "soak"
soak_rate() {
    rm -rf "$work/soak"
    "$qvet" soak "$@" --check-every 0 --no-qemu-checks --heartbeat 0 --dir "$work/soak" |
        tail -n 1 | sed -nE 's/.*\(([0-9]+) ops\/s\).*/\1/p'
}
# Every other kind weighs 0, the crashes too: a power cut's whole-disk compare would
# otherwise be most of this row's time (blkverify, its QEMU twin, has none).
only_rw=read=50,write=50,zero=0,zero-unmap=0,discard=0,write-compressed=0,flush=0
only_rw=$only_rw,snapshot-create=0,snapshot-apply=0,snapshot-delete=0,reopen=0,resize=0
only_rw=$only_rw,power-cut=0,dirty-reopen=0,torn-power-cut=0
q=$(soak_rate --io-size 4k --weights "$only_rw" --size 16M "${soak_ops[@]}")
# QEMU's own mirror: blkverify compares every read of the qcow2 image with a raw twin.
qemu-img create -q -f raw "$work/bv.raw" 16M
qemu-img create -q -f qcow2 "$work/bv.qcow2" 16M
bv="blkverify:$work/bv.raw:$work/bv.qcow2"
bw=$(qemu_rate $n4k -w --pattern=0x5a -s 4k -S 4k -f blkverify "$bv")
br=$(qemu_rate $n4k -s 4k -S 4k -f blkverify "$bv")
e=$(awk -v w="$bw" -v r="$br" 'BEGIN { if (w > 0 && r > 0) printf "%.1f", 2 / (1 / w + 1 / r) }')
row "soak, 4k reads and writes mirrored (QEMU: blkverify)" soak 4096 ops/s "$q" "$e" - "qemu>=5"
# The default mix per CPU second (user+system of the whole soak process, its setup and
# final check included): the rate of one idle core, steady on a shared machine.
soak_cpu_rate() {
    local ops
    rm -rf "$work/soak"
    TIMEFORMAT='%U %S'
    { time "$qvet" soak "$@" --check-every 0 --no-qemu-checks --heartbeat 0 \
        --dir "$work/soak" >"$work/soak.out"; } 2>"$work/soak.time"
    ops=$(tail -n 1 "$work/soak.out" | sed -nE 's/.*passed: ([0-9]+) ops in.*/\1/p')
    read -r user sys <"$work/soak.time"
    awk -v n="$ops" -v u="$user" -v s="$sys" 'BEGIN { if (n > 0 && u + s > 0) printf "%.1f", n / (u + s) }'
    rm -f "$work/soak.out" "$work/soak.time"
}
row "soak, default mix mirrored (64 MiB image)" soak 0 ops/CPU-s \
    "$(soak_cpu_rate "${soak_ops[@]}")" - - "abs>=20000"
rm -rf "$work/soak" "$work"/bv.*

# ---- fuzzers --------------------------------------------------------------------------------
say "fuzz targets ($fuzz_mode)"
fuzz_target() {     # name -> target list
    case $1 in
        ops) echo "abs>=2000" ;;
        header) echo "abs>=100000" ;;
        *) echo - ;;
    esac
}
if [ "$fuzz_mode" = libfuzzer ]; then
    # Execs per CPU second (fuzz-bench.sh's last figure): per core, as the targets are
    # stated, and steady on a machine that other work shares.
    fuzz_rows() {   # label -> rows, from fuzz-bench.sh's lines on stdin
        local line t cpu
        while read -r line; do
            t=$(awk '{ print $2 }' <<<"$line")
            cpu=$(sed -nE 's/.*, ([0-9]+) per CPU second\)$/\1/p' <<<"$line")
            row "fuzz $t (libFuzzer, $1, one core)" fuzz 0 execs/CPU-s "$cpu" - - \
                "$([ "$1" = ASan+UBSan ] && fuzz_target "$t" || echo -)"
        done
    }
    bash "$here/scripts/fuzz-bench.sh" 2>/dev/null | grep '^fuzz-bench: ' | fuzz_rows ASan+UBSan
    # The same without the sanitizers: the targets' own cost (docs/performance.md).
    FUZZ_SANITIZE=OFF bash "$here/scripts/fuzz-bench.sh" 2>/dev/null | grep '^fuzz-bench: ' |
        fuzz_rows "coverage only"
elif [ "$fuzz_mode" = replay ]; then
    for prog in "$(dirname "$qvet")"/fuzz/fuzz_*; do
        t=${prog##*/fuzz_}
        [ -d "$here/corpus/$t" ] || continue
        inputs=$(find "$here/corpus/$t" -maxdepth 1 -type f | wc -l)
        t0=$(date +%s.%N)
        "$prog" "$here/corpus/$t" >/dev/null 2>&1
        t1=$(date +%s.%N)
        row "fuzz $t (corpus replay, no libFuzzer)" fuzz 0 execs/s \
            "$(awk -v n="$inputs" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')" \
            - - "$(fuzz_target "$t")"
    done
fi

# ---- memory: a 1 TiB sparse image with an L2 table every 512 MiB --------------------------
say "memory by cache size"
qemu-img create -q -f qcow2 "$work/big.qcow2" 1T
stride=$(( (1 << 40) / mem_writes ))
cmds=()
for ((i = 0; i < mem_writes; i++)); do cmds+=(-c "write -q -P 7 $((i * stride)) 4k"); done
qemu-io "${cmds[@]}" "$work/big.qcow2" >/dev/null
for c in $mem_caches; do
    kib=$("$bench" memory "$work/big.qcow2" "$c" "$mem_reads" |
          sed -nE 's/.*peak_rss_kib=([0-9]+).*/\1/p')
    row "peak RSS, 1 TiB image ($mem_writes L2 tables), $mem_reads random 4k reads, cache $c" \
        memory "$(to_bytes "$c")" KiB "$kib" - - -
done
rm -f "$work/big.qcow2"

# ---- scaling: 512-byte clusters, all allocated ----------------------------------------------
say "scaling ($scale_counts clusters)"
for n in $scale_counts; do
    img=$work/scale.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=512 "$img" $((n * 512))
    qemu-io -c "write -P 9 0 $((n * 512))" "$img" >/dev/null
    line=$("$bench" scale "$img")
    get() { sed -nE "s/.*$1=([0-9.]+).*/\\1/p" <<<"$line"; }
    t0=$(date +%s.%N)
    qemu-img check -q "$img" >/dev/null 2>&1
    t1=$(date +%s.%N)
    qcheck=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
    qread=$(qemu-img bench -q -c $((n / 1024)) -d 1 -t writeback -s 512k -S 512k -f qcow2 "$img" 2>&1 |
            sed -nE 's/^Run completed in ([0-9.]+) seconds.*/\1/p')
    row "open, $n allocated clusters (512 B)" scale "$n" seconds "$(get open)" - - -
    row "full read, $n allocated clusters (512 B)" scale "$n" seconds "$(get read)" \
        "${qread:--}" - -
    row "check, $n allocated clusters (512 B; QEMU: the whole qemu-img check process)" \
        scale "$n" seconds "$(get check)" "$qcheck" - -
    rm -f "$img"
done

cp "$rows" "$out/rows.tsv"        # the raw rows, should the report need a rerun
"$python" "$here/scripts/bench-report.py" "$out/rows.tsv" "$out" "$base" "$quick"
