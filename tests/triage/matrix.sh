#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# CTest nightly-matrix: every configuration of the nightly's matrix is one qvet creates
# (a refused one would only show as "could not run" lines in a nightly's log), and the
# matrix holds every class docs/triage.md promises.
set -u
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
mapfile -t matrix < <(bash "$SRC/scripts/nightly.sh" matrix)
for entry in "${matrix[@]}"; do
    options=${entry%%|*}
    if ! "$QVET" create -q ${options:+-o "$options"} "$work/t.qcow2" 16M >"$work/log" 2>&1; then
        echo "nightly-matrix: '$entry': $(cat "$work/log")"
        status=1
    fi
    rm -f "$work/t.qcow2"
done
all=$(printf '%s\n' "${matrix[@]}")
for want in cluster_size=512 cluster_size=4k cluster_size=2M compat=0.10 refcount_bits=1 \
    refcount_bits=2 refcount_bits=4 refcount_bits=8 refcount_bits=32 refcount_bits=64 \
    extended_l2=on compression_type=zstd lazy_refcounts=on '|raw' '|qcow2' '|chain'; do
    grep -qF -- "$want" <<<"$all" || { echo "nightly-matrix: no configuration with $want"; status=1; }
done
((status == 0)) && echo "nightly-matrix: ${#matrix[@]} configurations, each created"
exit $status
