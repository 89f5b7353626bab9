#!/usr/bin/env bash
# The engine as a library of its own: install it, build a program against the installed
# header with pkg-config (shared and static), and check it reads what qemu-img reads.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
pc_dir=$(dirname "$(find "$work/prefix" -name qvet.pc | head -n1)")
export PKG_CONFIG_PATH=$pc_dir
cc -o "$work/shared" "$here/example.c" $(pkg-config --cflags --libs qvet)
cc -o "$work/static" "$here/example.c" $(pkg-config --cflags qvet) \
   "$(pkg-config --variable=libdir qvet)/libqvet.a" $(pkg-config --static --libs-only-l zlib libzstd)

qemu-img create -q -f qcow2 -o compression_type=zstd "$work/img.qcow2" 1M
qemu-io -c 'write -P 0x5a 4k 8k' -c 'write -c -P 0x11 64k 64k' "$work/img.qcow2" >/dev/null
qemu-img convert -O raw "$work/img.qcow2" "$work/expected.raw"

passed=0 failed=0
for kind in shared static; do
  if LD_LIBRARY_PATH="$(pkg-config --variable=libdir qvet)" "$work/$kind" \
       "$work/img.qcow2" "$work/$kind.raw" && cmp -s "$work/$kind.raw" "$work/expected.raw"; then
    echo "PASS embed-$kind"; passed=$((passed + 1))
  else
    echo "FAIL embed-$kind: output differs from qemu-img convert"; failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
