/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The configuration matrix (soak.h): image options the default `make soak` rotates
 * through, each chosen for code that the default image never reaches. Small disks fill
 * up in seconds, so tables grow and clusters get reused; 512-byte and 1 KiB clusters with
 * 64-bit refcounts, after a fill of 2.5 MiB, make the refcount table itself grow within
 * the first seconds (one table cluster covers 2 MiB of file); the 2- and 4-bit refcount
 * entries get the same fill, as their first block's entries past its first sector (a
 * byte holds four or two) count clusters past the first 2 MiB. Lazy refcounts exist for
 * crashes (a dirty image's refcounts are rebuilt at the next open), so their entries cut
 * the power four times as often.
 */
#include <stdio.h>
#include <string.h>

#include "soak.h"

#define K 1024u
#define M (1024u * 1024u)

static const struct soak_matrix_entry entries[] = {
    /* the richest first: most planted bugs show within the first slices */
    { "xl2-backing", "cluster_size=32k,extended_l2=on", BACKING_QCOW2, 16 * M, 0, 0, 0 },
    { "c512-r64-growth", "cluster_size=512,refcount_bits=64", BACKING_NONE, 16 * M, 0,
      5 * M / 2, 0 },
    { "v2-backing", "compat=0.10,cluster_size=4k", BACKING_RAW, 16 * M, 0, 0, 0 },
    { "zstd-lazy", "compression_type=zstd,lazy_refcounts=on,cluster_size=8k", BACKING_NONE,
      16 * M, 0, 0, 4 },
    { "r2", "cluster_size=1k,refcount_bits=2", BACKING_NONE, 16 * M, 0, 5 * M / 2, 0 },
    /* the metadata cache down to a few tables: every lookup an eviction */
    { "cache-tiny", "cluster_size=4k", BACKING_NONE, 16 * M, 8 * K, 0, 0 },
    { "lazy-chain", "lazy_refcounts=on,cluster_size=4k", BACKING_CHAIN, 16 * M, 0, 0, 4 },
    { "default", "", BACKING_NONE, 64 * M, 0, 0, 0 },
    { "c512-r64-backing", "cluster_size=512,refcount_bits=64", BACKING_QCOW2, 16 * M, 0,
      5 * M / 2, 0 },
    { "r4", "cluster_size=2k,refcount_bits=4", BACKING_NONE, 16 * M, 0, 5 * M / 2, 0 },
    { "xl2", "cluster_size=16k,extended_l2=on", BACKING_NONE, 16 * M, 0, 0, 0 },
    { "cache-small-xl2", "cluster_size=16k,extended_l2=on", BACKING_QCOW2, 16 * M, 64 * K, 0, 0 },
    { "v2", "compat=0.10", BACKING_NONE, 16 * M, 0, 0, 0 },
    { "c512", "cluster_size=512", BACKING_NONE, 16 * M, 0, 0, 0 },
    { "r1", "cluster_size=4k,refcount_bits=1", BACKING_NONE, 16 * M, 0, 0, 0 },
    { "r8", "cluster_size=8k,refcount_bits=8", BACKING_NONE, 16 * M, 0, 0, 0 },
    { "r32", "cluster_size=32k,refcount_bits=32", BACKING_NONE, 16 * M, 0, 0, 0 },
    { "zlib-backing", "cluster_size=16k", BACKING_QCOW2, 16 * M, 0, 0, 0 },
    { "raw-backing", "", BACKING_RAW, 16 * M, 0, 0, 0 },
    { "chain", "cluster_size=64k", BACKING_CHAIN, 16 * M, 0, 0, 0 },
    { "c2M", "cluster_size=2M", BACKING_NONE, 24 * M, 0, 0, 0 },
    { "cache-small-v2", "compat=0.10,cluster_size=1k", BACKING_NONE,
      16 * M, 4 * K, 0, 0 },
};

const struct soak_matrix_entry *soak_matrix(size_t *n)
{
    *n = sizeof(entries) / sizeof(entries[0]);
    return entries;
}

const struct soak_matrix_entry *soak_matrix_find(const char *name)
{
    size_t n;
    const struct soak_matrix_entry *e = soak_matrix(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, name))
            return &e[i];
    return NULL;
}

void soak_matrix_apply(struct soak_config *c, const struct soak_matrix_entry *e)
{
    snprintf(c->options, sizeof(c->options), "%s", e->options);
    c->backing = e->backing;
    c->size = e->size;
    c->cache_bytes = e->cache_bytes;
    c->fill = e->fill;
    c->crash_boost = e->crash_boost;
    snprintf(c->config_name, sizeof(c->config_name), "%s", e->name);
}
