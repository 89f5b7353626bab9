/* SPDX-License-Identifier: BSD-2-Clause */
/* Guest-to-host mapping: L1 and L2 entries, subclusters, compressed descriptors. */
#ifndef QVET_CLUSTER_H
#define QVET_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2.h"

#define L1_ENTRY_OFFSET_MASK 0x00FFFFFFFFFFFE00ull
#define L1_ENTRY_RESERVED_MASK 0x7F000000000001FFull
#define L2_ENTRY_OFFSET_MASK 0x00FFFFFFFFFFFE00ull
#define L2_ENTRY_RESERVED_MASK 0x3F000000000001FEull
#define L2_ENTRY_ZERO (1ull << 0)
#define L2_ENTRY_COMPRESSED (1ull << 62)
#define ENTRY_COPIED (1ull << 63)
#define SUBCLUSTERS_PER_CLUSTER 32u

/* What one cluster layout needs to know to decode entries. */
struct geometry {
    uint32_t version;
    uint32_t cluster_bits;
    bool extended_l2;
};

static inline uint32_t geometry_l2_entry_bytes(const struct geometry *g)
{
    return g->extended_l2 ? 16u : 8u;
}

/* log2 of the number of entries in one L2 table. */
static inline uint32_t geometry_l2_bits(const struct geometry *g)
{
    return g->cluster_bits - (g->extended_l2 ? 4u : 3u);
}

/* QEMU's subcluster classification; a standard L2 entry is one subcluster. */
enum subcluster_type {
    SUBCLUSTER_UNALLOCATED_PLAIN,   /* backing file, else zeros */
    SUBCLUSTER_UNALLOCATED_ALLOC,   /* extended L2: host cluster exists, bits say backing */
    SUBCLUSTER_ZERO_PLAIN,
    SUBCLUSTER_ZERO_ALLOC,
    SUBCLUSTER_NORMAL,
    SUBCLUSTER_COMPRESSED,
    SUBCLUSTER_INVALID,             /* extended-L2 bitmap that breaks the rules */
};

/* One L2 entry as stored: word is the 64-bit entry, bitmap the extended-L2 word (or 0). */
struct l2_entry {
    uint64_t word;
    uint64_t bitmap;
};

/* Decodes entry `index` of an L2 table; the only place L2 entries are read. */
struct l2_entry l2_entry_at(const struct geometry *g, const uint8_t *table, uint32_t index);

/* Encodes entry `index` of an L2 table; the only place L2 entries are written. */
void l2_entry_put(const struct geometry *g, uint8_t *table, uint32_t index, struct l2_entry e);

#define SUBCLUSTER_ALLOC_MASK 0x00000000FFFFFFFFull
#define SUBCLUSTER_ZERO_MASK 0xFFFFFFFF00000000ull

static inline bool l2_entry_is_compressed(struct l2_entry e)
{
    return (e.word & L2_ENTRY_COMPRESSED) != 0;
}

static inline uint64_t l2_entry_host_offset(struct l2_entry e)
{
    return e.word & L2_ENTRY_OFFSET_MASK;
}

static inline bool l2_entry_is_copied(struct l2_entry e)
{
    return (e.word & ENTRY_COPIED) != 0;
}

/* The entry with its COPIED flag set or cleared. */
static inline struct l2_entry l2_entry_with_copied(struct l2_entry e, bool copied)
{
    e.word = copied ? e.word | ENTRY_COPIED : e.word & ~ENTRY_COPIED;
    return e;
}

/* Reserved bits of a (not compressed) entry's word. */
static inline uint64_t l2_entry_reserved_bits(struct l2_entry e)
{
    return e.word & L2_ENTRY_RESERVED_MASK;
}

/* Extended L2: subclusters marked both allocated and zero (a corrupt bitmap). */
static inline uint64_t l2_entry_bitmap_conflicts(struct l2_entry e)
{
    return (e.bitmap >> 32) & e.bitmap;
}

/* Extended L2: the subclusters marked allocated. */
static inline uint64_t l2_entry_allocated_subclusters(struct l2_entry e)
{
    return e.bitmap & SUBCLUSTER_ALLOC_MASK;
}

/* An extended-L2 bitmap with every subcluster allocated. */
static inline uint64_t l2_bitmap_all_allocated(void)
{
    return SUBCLUSTER_ALLOC_MASK;
}

/* The entry of a data cluster at `host` that this image alone owns (COPIED). */
static inline struct l2_entry l2_entry_data(uint64_t host, uint64_t bitmap)
{
    return (struct l2_entry){ .word = host | ENTRY_COPIED, .bitmap = bitmap };
}

/*
 * The entry that reads as zeros over the whole cluster: the zero flag (keeping the
 * cluster at `keep_host`, owned, when not 0), all-zero subclusters with extended L2, or,
 * where version 2 has no flag, an unallocated entry.
 */
struct l2_entry l2_entry_zero(const struct geometry *g, uint64_t keep_host);

/* The entry of a cluster compressed into `len` bytes at host offset `at`. */
struct l2_entry l2_entry_compressed(const struct geometry *g, uint64_t at, uint64_t len);

/* Whether an allocated entry's cluster holds data (not only zeros). */
bool l2_entry_has_data(const struct geometry *g, struct l2_entry e);

/*
 * The entry that reads as zeros where `e` did and holds no host cluster: what QEMU's
 * check writes over a preallocated zero cluster that is not aligned.
 */
struct l2_entry l2_entry_zeroed(const struct geometry *g, struct l2_entry e);

/* QEMU's whole-cluster classification of an L2 entry (the one its check counts by). */
enum cluster_type {
    CLUSTER_UNALLOCATED,
    CLUSTER_NORMAL,
    CLUSTER_COMPRESSED,
    CLUSTER_ZERO_PLAIN,
    CLUSTER_ZERO_ALLOC,
};

enum cluster_type l2_entry_cluster_type(const struct geometry *g, struct l2_entry e);

enum subcluster_type l2_entry_subcluster_type(const struct geometry *g, struct l2_entry e,
                                              uint32_t subcluster);

/* The bytes a compressed cluster occupies: where they start and an upper bound on them. */
struct compressed_desc {
    uint64_t host_offset;
    uint64_t max_bytes;             /* (extra sectors + 1) * 512 - (host_offset % 512) */
    uint64_t high_offset_bits;      /* offset bits at 56 and above, which must be zero */
};

struct compressed_desc compressed_desc_decode(const struct geometry *g, uint64_t word);

/* The offset field of a compressed descriptor as stored, high bits included. */
static inline uint64_t compressed_desc_stored_offset(struct compressed_desc d)
{
    return d.host_offset | (d.high_offset_bits << 56);
}

/* Decodes L1 entry `index` of a big-endian table. */
static inline uint64_t l1_entry_l2_offset(uint64_t entry)
{
    return entry & L1_ENTRY_OFFSET_MASK;
}

static inline uint64_t l1_entry_reserved_bits(uint64_t entry)
{
    return entry & L1_ENTRY_RESERVED_MASK;
}

static inline bool l1_entry_is_copied(uint64_t entry)
{
    return (entry & ENTRY_COPIED) != 0;
}

static inline uint64_t l1_entry_with_copied(uint64_t entry, bool copied)
{
    return copied ? entry | ENTRY_COPIED : entry & ~ENTRY_COPIED;
}

/* A contiguous guest run with one subcluster type (what QEMU's get_host_offset gives). */
struct host_range {
    enum subcluster_type type;
    uint64_t host_offset;           /* NORMAL / *_ALLOC: host byte offset of the run start */
    uint64_t compressed_word;       /* COMPRESSED: the L2 word */
    uint64_t bytes;
};

struct qcow2_image;

/*
 * The L2 table behind entry `l1_index` of the selected L1 table (validated: aligned,
 * inside the file), or *table = NULL when none is allocated.
 */
int cluster_l2_table(struct qcow2_image *img, uint64_t l1_index, const uint8_t **table,
                     struct qcow2_error *err);

/* An L2 table held for writing: where it lives and its cached bytes. */
struct l2_ref {
    uint64_t offset;
    uint8_t *table;
};

/*
 * The L2 table for `l1_index`, ready to be changed: a new one when there is none, a
 * private copy when it is shared with a snapshot (its entries' clusters keep their
 * refcounts: every path to them still exists).
 */
int cluster_l2_for_write(struct qcow2_image *img, uint64_t l1_index, struct l2_ref *l2,
                         struct qcow2_error *err);

/*
 * Changes entry `index` of a table held for writing; the cache writes it back after
 * what it refers to (image_sync). Every change to a live L2 table goes through here.
 */
void cluster_put_l2_entry(struct qcow2_image *img, const struct l2_ref *l2, uint32_t index,
                          struct l2_entry e);

/*
 * Maps guest bytes [guest_off, guest_off + max_bytes) of the selected L1 table to the
 * longest run, starting at guest_off, that shares a type and (when allocated) is
 * contiguous on the host. Compressed clusters come one at a time.
 */
int cluster_get_host_range(struct qcow2_image *img, uint64_t guest_off, uint64_t max_bytes,
                           struct host_range *r, struct qcow2_error *err);

#endif
