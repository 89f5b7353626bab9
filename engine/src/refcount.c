/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Refcounts. Changed entries stay in the write-back refcount block cache, which is
 * written before the L2 tables (they depend on it: cache.h) at every image_sync. The
 * order keeps the image safe at every step: a new refcount block reaches the disk before
 * the table points to it, a new refcount table before the header does, raised refcounts
 * before anything references the clusters, and a refcount drops only once the removal
 * of the reference is on disk (image_sync runs first). A cluster freed since the last
 * image_sync is not handed out again before the next one: until then a crash may still
 * show the old reference to it. A crash can leak clusters, never lose them
 * (docs/crash-safety.md).
 */
#include "refcount.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "cache.h"
#include "header_io.h"
#include "image.h"
#include "sync.h"

uint64_t refcount_block_entry(const uint8_t *block, uint32_t order, uint64_t index)
{
    switch (order) {
    case 0:
        return (block[index / 8] >> (index % 8)) & 0x1;
    case 1:
        return (block[index / 4] >> (2 * (index % 4))) & 0x3;
    case 2:
        return (block[index / 2] >> (4 * (index % 2))) & 0xF;
    case 3:
        return block[index];
    case 4:
        return be16_get(block + 2 * index);
    case 5:
        return be32_get(block + 4 * index);
    default:
        return be64_get(block + 8 * index);
    }
}

void refcount_block_set_entry(uint8_t *block, uint32_t order, uint64_t index, uint64_t value)
{
    if (order < 3) {
        uint32_t bits = 1u << order;
        uint32_t per_byte = 8u / bits;
        uint32_t shift = bits * (uint32_t)(index % per_byte);
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        uint8_t *byte = &block[index / per_byte];
        *byte = (uint8_t)((*byte & ~mask) | ((value << shift) & mask));
        return;
    }
    switch (order) {
    case 3: block[index] = (uint8_t)value; break;
    case 4: be16_put(block + 2 * index, (uint16_t)value); break;
    case 5: be32_put(block + 4 * index, (uint32_t)value); break;
    default: be64_put(block + 8 * index, value); break;
    }
}

uint64_t refcount_first_fit(const uint8_t *counts, uint32_t order, uint64_t nb, uint64_t from,
                            uint64_t count, uint64_t *first_free)
{
    uint64_t k = from, run = 0;
    bool gap_seen = false;
    for (; k < nb && run < count; k++) {
        if (refcount_block_entry(counts, order, k)) {
            run = 0;
            continue;
        }
        if (!gap_seen && first_free) {
            *first_free = k;
            gap_seen = true;
        }
        run++;
    }
    return k - run;
}

/* Where in a block the bytes holding entry `index` are (for writing just them). */
static void entry_bytes(uint32_t order, uint64_t index, uint64_t *offset, size_t *len)
{
    if (order < 3) {
        *offset = index / (8u >> order);
        *len = 1;
    } else {
        *len = (size_t)1 << (order - 3);
        *offset = index * *len;
    }
}

static uint32_t block_bits(const struct qcow2_image *img)
{
    return refcount_block_bits(img->geo.cluster_bits, img->hdr.refcount_order);
}

/* The refcount block of reftable entry `table_index`, validated; 0 when there is none. */
static int block_offset_of(struct qcow2_image *img, uint64_t table_index, uint64_t *offset,
                           struct qcow2_error *err)
{
    *offset = 0;
    if (table_index >= img->reftable_size)
        return 0;
    uint64_t entry = img->reftable[table_index];
    uint64_t entry_at = img->hdr.refcount_table_offset + 8 * table_index;
    if (entry & REFTABLE_ENTRY_RESERVED_MASK)
        return image_error(img, err, -EIO, "refcount table entry", entry_at,
                           "reserved bits set in 0x%016" PRIx64, entry);
    uint64_t block = entry & REFTABLE_ENTRY_OFFSET_MASK;
    if (!block)
        return 0;
    if (block % img->cluster_size)
        return image_error(img, err, -EIO, "refcount table entry", entry_at,
                           "refcount block offset 0x%" PRIx64 " is not cluster-aligned", block);
    /* A check, as QEMU, reads the part of a block past the end of the file as zeros. */
    if (!span_fits(img->file_size, block, img->for_check ? 1 : img->cluster_size))
        return image_error(img, err, -EIO, "refcount table entry", entry_at,
                           "refcount block at 0x%" PRIx64 " runs past the end of the file "
                           "(%" PRIu64 " bytes)",
                           block, img->file_size);
    *offset = block;
    return 0;
}

int refcount_get(struct qcow2_image *img, uint64_t cluster_index, uint64_t *refcount,
                 struct qcow2_error *err)
{
    uint32_t bits = block_bits(img);
    uint64_t block_offset;
    *refcount = 0;
    int ret = block_offset_of(img, cluster_index >> bits, &block_offset, err);
    if (ret || !block_offset)
        return ret;
    const uint8_t *block;
    ret = cache_get(img->refblock_cache, img, block_offset, &block, err);
    if (ret)
        return ret;
    *refcount = refcount_block_entry(block, img->hdr.refcount_order,
                                     cluster_index & ((1ull << bits) - 1));
    return 0;
}

int refcount_get_for_check(struct qcow2_image *img, uint64_t cluster_index, uint64_t *refcount)
{
    uint32_t bits = block_bits(img);
    uint64_t table_index = cluster_index >> bits;
    *refcount = 0;
    if (table_index >= img->reftable_size)
        return 0;
    uint64_t block = reftable_entry_block(img->reftable[table_index]);
    if (block % img->cluster_size)
        return -EIO;
    if (!block || block >= img->file_size)
        return 0;
    const uint8_t *data;
    int ret = cache_get(img->refblock_cache, img, block, &data, NULL);
    if (ret)
        return ret;
    *refcount = refcount_block_entry(data, img->hdr.refcount_order,
                                     cluster_index & ((1ull << bits) - 1));
    return 0;
}

int refcount_write_block(struct qcow2_image *img, uint64_t offset, const uint8_t *block,
                         struct qcow2_error *err)
{
    /* The checker's rebuild may reuse the old table's clusters (nothing references them). */
    return image_write_meta(img, block, img->cluster_size, offset, IMAGE_META_REFTABLE,
                            "refcount block", err);
}

/* Writes reftable entry `index` through to disk and into memory. */
static int write_reftable_entry(struct qcow2_image *img, uint64_t index, uint64_t value,
                                struct qcow2_error *err)
{
    uint8_t raw[8];
    be64_put(raw, value);
    int ret = image_write_meta(img, raw, 8, img->hdr.refcount_table_offset + 8 * index,
                               IMAGE_META_REFTABLE, "refcount table entry", err);
    if (!ret)
        img->reftable[index] = value;
    return ret;
}

static int grow_reftable(struct qcow2_image *img, uint64_t table_index, uint64_t block_offset,
                         struct qcow2_error *err);
static int find_free(struct qcow2_image *img, uint64_t count, uint64_t *start,
                     struct qcow2_error *err);
static int set_entry(struct qcow2_image *img, uint64_t block_offset, uint64_t cluster_index,
                     uint64_t value, struct qcow2_error *err);

/*
 * Creates the refcount block for reftable entry `table_index` where QEMU puts it: in the
 * first free cluster from the allocator's hint. A block inside the range it describes
 * counts itself; one outside is counted in its own range's block, which may have to be
 * created first (then that one is the block made here, and the caller looks again).
 * The block reaches the disk before the table links it, lazy refcounts or not. Sets
 * *created; the caller's free clusters may be taken now, so it searches again.
 */
static int create_block(struct qcow2_image *img, uint64_t table_index, bool *created,
                        struct qcow2_error *err)
{
    if (table_index == 0)
        return image_error(img, err, -EIO, "refcount table entry",
                           img->hdr.refcount_table_offset,
                           "entry 0 is empty, so the header's own cluster has no refcount; "
                           "the image is corrupt (repair it with check -r all)");
    uint32_t bits = block_bits(img), order = img->hdr.refcount_order;
    uint64_t cluster;
    int ret = find_free(img, 1, &cluster, err);
    if (ret)
        return ret;
    *created = true;
    uint64_t home = cluster >> bits, block_offset = cluster << img->geo.cluster_bits;
    if (home != table_index) {
        uint64_t home_block;
        ret = block_offset_of(img, home, &home_block, err);
        if (ret)
            return ret;
        if (!home_block)
            return create_block(img, home, created, err);
        ret = set_entry(img, home_block, cluster, 1, err);
        if (ret)
            return ret;
    }
    uint8_t *block = img->refcount_scratch;
    memset(block, 0, img->cluster_size);
    if (home == table_index)
        refcount_block_set_entry(block, order, cluster & ((1ull << bits) - 1), 1);
    ret = image_write(img, block, img->cluster_size, block_offset, "refcount block", err);
    if (!ret)
        ret = cache_install(img->refblock_cache, img, block_offset, block, false, err);
    /*
     * The block, and its count in another range's block, must be on disk before the
     * table links it, lazy refcounts or not.
     */
    if (!ret && home != table_index)
        ret = cache_writeback(img->refblock_cache, img, err);
    if (!ret)
        ret = image_flush(img, err);
    if (ret)
        return ret;
    if (table_index >= img->reftable_size)
        return grow_reftable(img, table_index, block_offset, err);
    return write_reftable_entry(img, table_index, block_offset, err);
}

/*
 * The block covering `cluster_index`, or 0 after creating one (with *created set: what
 * the caller planned may have moved, as QEMU's -EAGAIN says).
 */
static int block_for(struct qcow2_image *img, uint64_t cluster_index, uint64_t *offset,
                     bool *created, struct qcow2_error *err)
{
    uint64_t table_index = cluster_index >> block_bits(img);
    int ret = block_offset_of(img, table_index, offset, err);
    if (ret || *offset)
        return ret;
    return create_block(img, table_index, created, err);
}

/* Where `cluster` is or would go in the sorted list of clusters freed since the flush. */
static size_t freed_slot(const struct qcow2_image *img, uint64_t cluster)
{
    size_t lo = 0, hi = img->n_freed;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (img->freed[mid] < cluster)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool freed_since_flush(const struct qcow2_image *img, uint64_t cluster)
{
    size_t i = freed_slot(img, cluster);
    return i < img->n_freed && img->freed[i] == cluster;
}

/* Keeps a freed cluster away from the allocator until the next flush completes. */
static int quarantine(struct qcow2_image *img, uint64_t cluster, struct qcow2_error *err)
{
    size_t i = freed_slot(img, cluster);
    if (i < img->n_freed && img->freed[i] == cluster)
        return 0;
    if (img->n_freed == img->freed_cap) {
        size_t cap = img->freed_cap ? img->freed_cap * 2 : 64;
        uint64_t *grown = realloc(img->freed, cap * sizeof(*grown));
        if (!grown)
            return image_error(img, err, -ENOMEM, "refcount block", QCOW2_NO_OFFSET,
                               "out of memory");
        img->freed = grown;
        img->freed_cap = cap;
    }
    memmove(&img->freed[i + 1], &img->freed[i], (img->n_freed - i) * sizeof(*img->freed));
    img->freed[i] = cluster;
    img->n_freed++;
    return 0;
}

/*
 * Stores `value` as the refcount of `cluster_index` in its block at `block_offset`. A
 * refcount that drops waits for the removal of the reference it follows, and a freed
 * cluster stays out of the allocator's reach until the next flush.
 */
static int set_entry(struct qcow2_image *img, uint64_t block_offset, uint64_t cluster_index,
                     uint64_t value, struct qcow2_error *err)
{
    uint8_t *block;
    int ret = cache_get_mut(img->refblock_cache, img, block_offset, &block, err);
    if (ret)
        return ret;
    uint32_t order = img->hdr.refcount_order;
    uint64_t index = cluster_index & ((1ull << block_bits(img)) - 1);
    uint64_t old = refcount_block_entry(block, order, index);
    if (value < old) {
        /*
         * The removal of the reference goes to disk first (once for a batch's drops:
         * nothing removes a reference while they are applied); lazy refcounts recount.
         */
        if (!img->lazy_refcounts && !img->drops_ordered)
            ret = image_sync(img, err);
        if (!ret && img->drops_applying)
            img->drops_ordered = true;
        if (!ret && value == 0)
            ret = quarantine(img, cluster_index, err);
        if (!ret)
            ret = cache_get_mut(img->refblock_cache, img, block_offset, &block, err);
        if (ret)
            return ret;
    }
    refcount_block_set_entry(block, order, index, value);
    uint64_t at;
    size_t len;
    entry_bytes(order, index, &at, &len);
    cache_mark_dirty(img->refblock_cache, block_offset, (uint32_t)at, (uint32_t)len);
    if (value == 0) {
        /* A cached table of a free cluster would be written over its next contents. */
        cache_forget(img->l2_cache, cluster_index << img->geo.cluster_bits);
        if (cluster_index < img->free_cluster_hint)
            img->free_cluster_hint = cluster_index;
    }
    /* A freed cluster may be handed out again: stop packing compressed data into it. */
    if (value == 0 && img->compressed_next >> img->geo.cluster_bits == cluster_index)
        img->compressed_next = 0;
    return 0;
}

int refcount_set(struct qcow2_image *img, uint64_t cluster_index, uint64_t value,
                 struct qcow2_error *err)
{
    for (;;) {
        uint64_t block_offset;
        bool created = false;
        int ret = block_for(img, cluster_index, &block_offset, &created, err);
        if (ret)
            return ret;
        if (block_offset)
            return set_entry(img, block_offset, cluster_index, value, err);
    }
}

int refcount_add_range(struct qcow2_image *img, uint64_t host_offset, uint64_t bytes,
                       int64_t delta, struct qcow2_error *err)
{
    if (bytes == 0)
        return 0;
    uint32_t cb = img->geo.cluster_bits;
    uint64_t first = host_offset >> cb;
    uint64_t last = (host_offset + bytes - 1) >> cb;
    uint64_t max = refcount_max(img->hdr.refcount_order);
    for (uint64_t c = first; c <= last; c++) {
        uint64_t rc;
        int ret = refcount_get(img, c, &rc, err);
        if (ret)
            return ret;
        if ((delta < 0 && rc < (uint64_t)-delta) || (delta > 0 && max - rc < (uint64_t)delta))
            return image_error(img, err, -ERANGE, "refcount block", QCOW2_NO_OFFSET,
                               "refcount of host cluster %" PRIu64 " is %" PRIu64
                               "; adding %" PRId64 " would %s",
                               c, rc, delta,
                               delta < 0 ? "go below zero (the image is corrupt)"
                                         : "pass the maximum the refcount width holds");
    }
    for (uint64_t c = first; c <= last; c++) {
        uint64_t rc;
        int ret = refcount_get(img, c, &rc, err);
        if (!ret)
            ret = refcount_set(img, c, rc + (uint64_t)delta, err);
        if (ret)
            return ret;
    }
    return 0;
}

int refcount_release(struct qcow2_image *img, uint64_t host_offset, uint64_t bytes,
                     struct qcow2_error *err)
{
    if (!img->drops_depth)
        return refcount_add_range(img, host_offset, bytes, -1, err);
    if (img->n_drops == img->drops_cap) {
        size_t cap = img->drops_cap ? 2 * img->drops_cap : 16;
        struct refcount_drop *grown = realloc(img->drops, cap * sizeof(*grown));
        if (!grown)
            return image_error(img, err, -ENOMEM, "refcount block", QCOW2_NO_OFFSET,
                               "out of memory");
        img->drops = grown;
        img->drops_cap = cap;
    }
    img->drops[img->n_drops++] = (struct refcount_drop){ host_offset, bytes };
    return 0;
}

void refcount_batch_begin(struct qcow2_image *img)
{
    img->drops_depth++;
}

int refcount_batch_end(struct qcow2_image *img, struct qcow2_error *err)
{
    if (--img->drops_depth)
        return 0;
    /*
     * Only here may a drop skip its image_sync: while the batch collected, other paths
     * dropped refcounts at once, each after removals of their own.
     */
    img->drops_applying = true;
    int ret = 0;
    for (size_t i = 0; i < img->n_drops && !ret; i++)
        ret = refcount_add_range(img, img->drops[i].host_offset, img->drops[i].bytes, -1, err);
    img->drops_applying = false;
    img->drops_ordered = false;
    img->n_drops = 0;
    return ret;
}

/*
 * The first run of `count` clusters with refcount 0 at or after the hint (QEMU's
 * alloc_clusters_noref). As QEMU's free cluster index, the hint then moves past the run,
 * so a hole too small for it is not searched again; a cluster skipped only because it
 * was freed since the last flush keeps the hint, to be reused once that flush is done.
 */
static int find_free(struct qcow2_image *img, uint64_t count, uint64_t *start,
                     struct qcow2_error *err)
{
    uint64_t run = 0, quarantined = UINT64_MAX;
    uint64_t beyond_table = (uint64_t)img->reftable_size << block_bits(img);
    for (uint64_t c = img->free_cluster_hint;; c++) {
        if (c >= beyond_table) {
            *start = c - run;           /* nothing past the table is in use */
            break;
        }
        uint64_t rc;
        int ret = refcount_get(img, c, &rc, err);
        if (ret)
            return ret;
        bool freed = !rc && freed_since_flush(img, c);
        if (freed && quarantined == UINT64_MAX)
            quarantined = c;
        run = rc || freed ? 0 : run + 1;
        if (run == count) {
            *start = c + 1 - count;
            break;
        }
    }
    img->free_cluster_hint = QVET_MIN(quarantined, *start + count);
    return 0;
}

/*
 * A free cluster that holds the header or a table the image uses means the refcounts
 * lie (a consistent image counts them all). Handing it out would let a write destroy
 * that metadata, so refuse, as QEMU's overlap checks do.
 */
static int check_not_metadata(struct qcow2_image *img, uint64_t first, uint64_t count,
                              struct qcow2_error *err)
{
    const char *what = image_meta_at(img, first, count, IMAGE_META_NONE);
    if (!what)
        return 0;
    return image_error(img, err, -EIO, "refcount block", QCOW2_NO_OFFSET,
                       "host cluster %" PRIu64 " has refcount 0 but holds %s: the refcounts "
                       "are corrupt (repair with check -r all); nothing was written",
                       first, what);
}

/*
 * Makes sure every cluster of [first, first + count) has a refcount block. *created
 * says one was made: the run may overlap it now. *created_inside says it was made for a
 * range after the run's first (QEMU had raised the refcounts before it by then, and took
 * them back, which moved its free cluster index back to the run).
 */
static int blocks_for_run(struct qcow2_image *img, uint64_t first, uint64_t count,
                          bool *created, bool *created_inside, struct qcow2_error *err)
{
    uint64_t bits = block_bits(img);
    *created = *created_inside = false;
    for (uint64_t r = first >> bits; r <= (first + count - 1) >> bits; r++) {
        uint64_t block_offset;
        int ret = block_for(img, QVET_MAX(r << bits, first), &block_offset, created, err);
        if (ret || *created) {
            *created_inside = *created && r != first >> bits;
            return ret;
        }
    }
    return 0;
}

static int take_run(struct qcow2_image *img, uint64_t first, uint64_t count,
                    struct qcow2_error *err)
{
    int ret = check_not_metadata(img, first, count, err);
    for (uint64_t c = first; c < first + count && !ret; c++)
        ret = refcount_set(img, c, 1, err);
    return ret;
}

int refcount_alloc(struct qcow2_image *img, uint64_t count, uint64_t *host_offset,
                   struct qcow2_error *err)
{
    for (;;) {
        uint64_t start;
        bool created, created_inside;
        int ret = find_free(img, count, &start, err);
        if (!ret)
            ret = blocks_for_run(img, start, count, &created, &created_inside, err);
        if (ret)
            return ret;
        if (created) {
            /* Search again from the run, as QEMU does after its -EAGAIN. */
            img->free_cluster_hint = QVET_MIN(img->free_cluster_hint, start);
            continue;
        }
        ret = take_run(img, start, count, err);
        if (!ret)
            *host_offset = start << img->geo.cluster_bits;
        return ret;
    }
}

int refcount_alloc_at(struct qcow2_image *img, uint64_t host_offset, uint64_t count,
                      uint64_t *got, struct qcow2_error *err)
{
    uint64_t first = host_offset >> img->geo.cluster_bits;
    for (;;) {
        uint64_t n = 0;
        while (n < count) {
            uint64_t rc;
            int ret = refcount_get(img, first + n, &rc, err);
            if (ret)
                return ret;
            if (rc || freed_since_flush(img, first + n))
                break;
            n++;
        }
        *got = n;
        if (!n)
            return 0;
        bool created, created_inside;
        int ret = blocks_for_run(img, first, n, &created, &created_inside, err);
        if (ret)
            return ret;
        if (!created)
            return take_run(img, first, n, err);
        if (created_inside)
            img->free_cluster_hint = QVET_MIN(img->free_cluster_hint, first);
    }
}

static uint64_t div_round_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/*
 * How many refcount blocks cover `clusters` clusters together with themselves and the
 * table that lists them (QEMU's fixed point). `generous` adds room for half the table
 * again, as QEMU does when the table grows.
 */
static uint64_t blocks_needed(const struct qcow2_image *img, uint64_t clusters, bool generous)
{
    uint64_t per_block = 1ull << block_bits(img), per_table_cluster = img->cluster_size / 8;
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = div_round_up(clusters + table + blocks, per_block);
        table = div_round_up(blocks, per_table_cluster);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += div_round_up(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    return blocks;
}

int refcount_area(struct qcow2_image *img, uint64_t start, uint64_t additional, bool exact,
                  uint64_t table_index, uint64_t block_offset, uint64_t *end_cluster,
                  struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size, per_block = 1ull << block_bits(img);
    uint32_t cb = img->geo.cluster_bits, order = img->hdr.refcount_order;
    uint64_t total = blocks_needed(img, start + additional, !exact);
    uint64_t per_cluster = cs / 8;
    uint64_t entries = round_up_u64(exact ? total : total + div_round_up(total, 2), per_cluster);
    uint64_t table_clusters = entries / per_cluster;
    if (entries * 8 > QCOW2_MAX_REFTABLE_BYTES)
        return image_error(img, err, -EFBIG, "refcount table", img->hdr.refcount_table_offset,
                           "growing it to %" PRIu64 " entries would pass the %u-byte limit",
                           entries, QCOW2_MAX_REFTABLE_BYTES);
    uint64_t *table = calloc(entries, 8);
    uint8_t *raw = calloc(table_clusters, cs);
    if (!table || !raw) {
        free(table);
        free(raw);
        return image_error(img, err, -ENOMEM, "refcount table", QCOW2_NO_OFFSET,
                           "out of memory");
    }
    /* A smaller table (an exact one) drops only entries past everything in use. */
    memcpy(table, img->reftable, (size_t)QVET_MIN((uint64_t)img->reftable_size, entries) * 8);
    if (block_offset)
        table[table_index] = block_offset;
    uint64_t area_index = start / per_block, added = 0;
    for (uint64_t i = area_index; i < total; i++)
        added += !table[i];
    uint64_t table_at = start + added, end = table_at + table_clusters;
    uint64_t next_block = start;
    int ret = 0;
    for (uint64_t i = area_index; i < total && !ret; i++) {
        uint8_t *block = img->refcount_scratch;
        if (table[i]) {
            ret = cache_get_mut(img->refblock_cache, img, table[i], &block, err);
        } else {
            memset(block, 0, cs);
            table[i] = next_block++ << cb;
        }
        uint64_t first = i * per_block, stop = QVET_MIN(end, first + per_block);
        for (uint64_t c = QVET_MAX(first, start); !ret && c < stop; c++)
            refcount_block_set_entry(block, order, c - first, 1);
        if (!ret)
            ret = image_write(img, block, cs, table[i], "refcount block", err);
        if (!ret && block == img->refcount_scratch)
            ret = cache_install(img->refblock_cache, img, table[i], block, false, err);
    }
    for (uint64_t i = 0; i < entries; i++)
        be64_put(raw + 8 * i, table[i]);
    uint64_t old_offset = img->hdr.refcount_table_offset;
    uint64_t old_clusters = img->hdr.refcount_table_clusters;
    if (!ret)
        ret = header_switch_table(img, HEADER_TABLE_REFCOUNT, raw, table_clusters * cs,
                                  table_at << cb, table_clusters, "refcount table", err);
    free(raw);
    bool switched = ret && header_table_is_at(img, HEADER_TABLE_REFCOUNT, table_at << cb);
    if (ret && !switched) {
        free(table);
        return ret;
    }
    free(img->reftable);
    img->reftable = table;
    img->reftable_size = (uint32_t)entries;
    *end_cluster = end;
    if (switched)
        return ret;
    ret = refcount_add_range(img, old_offset, old_clusters * cs, -1, err);
    /* Nothing on disk names the old table since the switch: QEMU reuses it at once. */
    if (!ret)
        ret = image_sync(img, err);
    return ret;
}

/*
 * The refcount table has no entry `table_index`, which the new block at `block_offset`
 * (0 if none) is for: QEMU puts the new structures at the start of the first range past
 * that entry's and the block, with room for half as many blocks again.
 */
static int grow_reftable(struct qcow2_image *img, uint64_t table_index, uint64_t block_offset,
                         struct qcow2_error *err)
{
    uint64_t per_block = 1ull << block_bits(img), end;
    uint64_t used = QVET_MAX((table_index << block_bits(img)) + 1,
                             block_offset ? (block_offset >> img->geo.cluster_bits) + 1 : 0);
    uint64_t start = div_round_up(used, per_block) * per_block;
    return refcount_area(img, start, 0, false, table_index, block_offset, &end, err);
}

int refcount_drop_empty_blocks(struct qcow2_image *img, struct qcow2_error *err)
{
    uint32_t bits = block_bits(img), order = img->hdr.refcount_order;
    uint64_t per_block = 1ull << bits;
    uint64_t block;
    /* Every entry is validated before the first is changed. */
    for (uint64_t i = 1; i < img->reftable_size; i++) {
        int ret = block_offset_of(img, i, &block, err);
        if (ret)
            return ret;
    }
    /* Entry 0 covers the header, which is always in use. */
    for (uint64_t i = 1; i < img->reftable_size; i++) {
        int ret = block_offset_of(img, i, &block, err);
        if (ret)
            return ret;
        if (!block)
            continue;
        const uint8_t *data;
        ret = cache_get(img->refblock_cache, img, block, &data, err);
        if (ret)
            return ret;
        uint64_t cluster = block >> img->geo.cluster_bits;
        bool counts_itself = cluster >> bits == i;
        uint64_t self = cluster & (per_block - 1);
        bool empty = true;
        for (uint64_t k = 0; k < per_block && empty; k++)
            empty = (counts_itself && k == self) || refcount_block_entry(data, order, k) == 0;
        if (!empty)
            continue;
        ret = write_reftable_entry(img, i, 0, err);
        if (!ret && counts_itself)
            ret = quarantine(img, cluster, err);
        if (ret)
            return ret;
        cache_forget(img->refblock_cache, block);
        if (counts_itself && cluster < img->free_cluster_hint)
            img->free_cluster_hint = cluster;
        if (!counts_itself && (ret = refcount_add_range(img, block, 1, -1, err)))
            return ret;
    }
    return 0;
}

int refcount_used_length(struct qcow2_image *img, uint64_t *bytes, struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size;
    *bytes = 0;
    for (uint64_t c = round_up_u64(img->file_size, cs) / cs; c-- > 0;) {
        uint64_t rc;
        int ret = refcount_get(img, c, &rc, err);
        if (ret)
            return ret;
        if (rc) {
            *bytes = (c + 1) * cs;
            return 0;
        }
    }
    return 0;
}
