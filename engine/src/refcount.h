/* SPDX-License-Identifier: BSD-2-Clause */
/* Refcount table and refcount blocks, at every width from 1 to 64 bits. */
#ifndef QVET_REFCOUNT_H
#define QVET_REFCOUNT_H

#include <stdint.h>

#include "qcow2.h"

#define REFTABLE_ENTRY_OFFSET_MASK 0xFFFFFFFFFFFFFE00ull
#define REFTABLE_ENTRY_RESERVED_MASK 0x1FFull

/* The refcount block a refcount table entry names (0: none). */
static inline uint64_t reftable_entry_block(uint64_t entry)
{
    return entry & REFTABLE_ENTRY_OFFSET_MASK;
}

static inline uint64_t reftable_entry_reserved_bits(uint64_t entry)
{
    return entry & REFTABLE_ENTRY_RESERVED_MASK;
}

/* Entry `index` of a refcount block with entries 2^order bits wide. */
uint64_t refcount_block_entry(const uint8_t *block, uint32_t order, uint64_t index);

/* log2 of the number of entries in one refcount block. */
static inline uint32_t refcount_block_bits(uint32_t cluster_bits, uint32_t order)
{
    return cluster_bits + 3u - order;
}

/* Stores `value` as entry `index` (value must fit the width). */
void refcount_block_set_entry(uint8_t *block, uint32_t order, uint64_t index, uint64_t value);

/* The largest refcount an entry 2^order bits wide can hold. */
static inline uint64_t refcount_max(uint32_t order)
{
    return order >= 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
}

struct qcow2_image;

/*
 * Stores the refcount of host cluster `cluster_index`, creating the refcount block that
 * covers it (in the first free cluster, as the allocator places it) and growing the
 * refcount table when needed.
 */
int refcount_set(struct qcow2_image *img, uint64_t cluster_index, uint64_t value,
                 struct qcow2_error *err);

/*
 * Adds `delta` to the refcount of every host cluster touched by [host_offset,
 * host_offset + bytes). Refuses overflow and underflow (either means the image is
 * corrupt) before changing anything.
 */
int refcount_add_range(struct qcow2_image *img, uint64_t host_offset, uint64_t bytes,
                       int64_t delta, struct qcow2_error *err);

/* One reference removed: [host_offset, host_offset + bytes) loses one. */
struct refcount_drop {
    uint64_t host_offset, bytes;
};

/*
 * Removes one reference from every cluster of [host_offset, host_offset + bytes), after
 * the removal of the reference is on disk: at once (an image_sync first), or within a
 * batch at its end.
 */
int refcount_release(struct qcow2_image *img, uint64_t host_offset, uint64_t bytes,
                     struct qcow2_error *err);

/*
 * A batch of releases (it may nest): an op that unlinks many clusters (a discard, a zero
 * write, a shrink, a write over compressed or shared clusters) orders them with one
 * image_sync, not one per cluster. The end drops
 * the refcounts, even after a failure (the unlinks stand in the cache): that sync puts
 * the removals on disk, then every drop follows with none.
 */
void refcount_batch_begin(struct qcow2_image *img);
int refcount_batch_end(struct qcow2_image *img, struct qcow2_error *err);

/*
 * Finds `count` contiguous free clusters, sets their refcounts to 1, returns the offset.
 * Placement follows QEMU 7.2's allocator (first fit from a free cluster index that moves
 * past each run; a new refcount block in the first free cluster; the table grown as
 * qcow2_refcount_area grows it), so that `create` lays images out as qemu-img does.
 */
int refcount_alloc(struct qcow2_image *img, uint64_t count, uint64_t *host_offset,
                   struct qcow2_error *err);

/*
 * Takes as many of the `count` clusters from `host_offset` on as are free there, in a
 * row (QEMU's qcow2_alloc_clusters_at: a write that continues the previous one on the
 * host); *got says how many (0 when the first is in use).
 */
int refcount_alloc_at(struct qcow2_image *img, uint64_t host_offset, uint64_t count,
                      uint64_t *got, struct qcow2_error *err);

/*
 * The one placement policy of every cluster allocator (first fit): the first cluster
 * of the first run of `count` clusters with refcount 0 at or after `from`, in refcounts
 * packed like refcount blocks (entries 2^order bits wide) for clusters [0, nb). Clusters
 * from nb on count as free, so a run may reach past nb (the caller then grows its
 * array). *first_free, when not NULL, is set to the first free cluster in [from, nb)
 * if there is one (a hint for the next search).
 */
uint64_t refcount_first_fit(const uint8_t *counts, uint32_t order, uint64_t nb, uint64_t from,
                            uint64_t count, uint64_t *first_free);

/*
 * A new refcount table and the refcount blocks for an area from cluster `start` that
 * describes itself, as QEMU's qcow2_refcount_area lays it out: enough blocks for `start`
 * + `additional` clusters and themselves (with room for half the table again unless
 * `exact`), new blocks first, then the table; the old table is freed. `block_offset`,
 * when not 0, is a block just made for entry `table_index` (the table had no room for
 * it). *end_cluster is the first cluster after the new structures.
 */
int refcount_area(struct qcow2_image *img, uint64_t start, uint64_t additional, bool exact,
                  uint64_t table_index, uint64_t block_offset, uint64_t *end_cluster,
                  struct qcow2_error *err);

/* The stored refcount of host cluster `cluster_index` (0 when no block covers it). */
int refcount_get(struct qcow2_image *img, uint64_t cluster_index, uint64_t *refcount,
                 struct qcow2_error *err);

/*
 * The stored refcount of host cluster `cluster_index` the way QEMU's check reads it:
 * the reserved bits of the table entry are ignored and a block past the end of the file
 * reads as zeros. -EIO (and no message) for a block that is not cluster-aligned.
 */
int refcount_get_for_check(struct qcow2_image *img, uint64_t cluster_index, uint64_t *refcount);

/*
 * Writes one whole refcount block at `offset` (a rebuild's new block; not cached). The
 * overlap guard lets it land on the old refcount table, which the rebuild replaces.
 */
int refcount_write_block(struct qcow2_image *img, uint64_t offset, const uint8_t *block,
                         struct qcow2_error *err);

/*
 * Unhooks the refcount blocks that count nothing but (maybe) themselves, as QEMU does
 * after a shrink: their reftable entries are cleared; a block counted in another block's
 * range gives that reference back.
 */
int refcount_drop_empty_blocks(struct qcow2_image *img, struct qcow2_error *err);

/* The host file's length up to its last cluster with a non-zero refcount (0 if none). */
int refcount_used_length(struct qcow2_image *img, uint64_t *bytes, struct qcow2_error *err);

#endif
