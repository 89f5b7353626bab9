/* SPDX-License-Identifier: BSD-2-Clause */
#include "cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "bytes.h"
#include "cache.h"
#include "image.h"
#include "l1.h"
#include "refcount.h"

struct l2_entry l2_entry_at(const struct geometry *g, const uint8_t *table, uint32_t index)
{
    struct l2_entry e;
    if (g->extended_l2) {
        e.word = be64_get(table + 16u * index);
        e.bitmap = be64_get(table + 16u * index + 8u);
    } else {
        e.word = be64_get(table + 8u * index);
        e.bitmap = 0;
    }
    return e;
}

void l2_entry_put(const struct geometry *g, uint8_t *table, uint32_t index, struct l2_entry e)
{
    if (g->extended_l2) {
        be64_put(table + 16u * index, e.word);
        be64_put(table + 16u * index + 8u, e.bitmap);
    } else {
        be64_put(table + 8u * index, e.word);
    }
}

bool l2_entry_has_data(const struct geometry *g, struct l2_entry e)
{
    return g->extended_l2 ? l2_entry_allocated_subclusters(e) != 0 : !(e.word & L2_ENTRY_ZERO);
}

struct l2_entry l2_entry_zeroed(const struct geometry *g, struct l2_entry e)
{
    if (g->extended_l2)
        return (struct l2_entry){ .word = 0,
                                  .bitmap = (e.bitmap | (e.bitmap << 32)) & SUBCLUSTER_ZERO_MASK };
    return (struct l2_entry){ .word = L2_ENTRY_ZERO, .bitmap = 0 };
}

enum cluster_type l2_entry_cluster_type(const struct geometry *g, struct l2_entry e)
{
    if (l2_entry_is_compressed(e))
        return CLUSTER_COMPRESSED;
    bool host = l2_entry_host_offset(e) != 0;
    if ((e.word & L2_ENTRY_ZERO) && !g->extended_l2)
        return host ? CLUSTER_ZERO_ALLOC : CLUSTER_ZERO_PLAIN;
    return host ? CLUSTER_NORMAL : CLUSTER_UNALLOCATED;
}

enum subcluster_type l2_entry_subcluster_type(const struct geometry *g, struct l2_entry e,
                                              uint32_t subcluster)
{
    if (l2_entry_is_compressed(e))
        return SUBCLUSTER_COMPRESSED;
    uint64_t host = l2_entry_host_offset(e);
    if (!g->extended_l2) {
        if (e.word & L2_ENTRY_ZERO)
            return host ? SUBCLUSTER_ZERO_ALLOC : SUBCLUSTER_ZERO_PLAIN;
        return host ? SUBCLUSTER_NORMAL : SUBCLUSTER_UNALLOCATED_PLAIN;
    }
    uint64_t alloc_bit = 1ull << subcluster;
    uint64_t zero_bit = 1ull << (32 + subcluster);
    if (host) {
        if ((e.bitmap >> 32) & e.bitmap)
            return SUBCLUSTER_INVALID;
        if (e.bitmap & zero_bit)
            return SUBCLUSTER_ZERO_ALLOC;
        if (e.bitmap & alloc_bit)
            return SUBCLUSTER_NORMAL;
        return SUBCLUSTER_UNALLOCATED_ALLOC;
    }
    if (e.bitmap & SUBCLUSTER_ALLOC_MASK)
        return SUBCLUSTER_INVALID;
    return (e.bitmap & zero_bit) ? SUBCLUSTER_ZERO_PLAIN : SUBCLUSTER_UNALLOCATED_PLAIN;
}

struct compressed_desc compressed_desc_decode(const struct geometry *g, uint64_t word)
{
    uint32_t offset_bits = 70u - g->cluster_bits;
    uint32_t count_bits = g->cluster_bits - 8u;
    uint64_t offset = word & ((1ull << offset_bits) - 1);
    uint64_t extra_sectors = (word >> offset_bits) & ((1ull << count_bits) - 1);
    struct compressed_desc d = {
        .host_offset = offset & ((1ull << 56) - 1),
        .max_bytes = (extra_sectors + 1) * 512u - (offset & 511u),
        .high_offset_bits = offset >> 56,
    };
    return d;
}

struct l2_entry l2_entry_zero(const struct geometry *g, uint64_t keep_host)
{
    if (g->extended_l2)
        return (struct l2_entry){ .bitmap = SUBCLUSTER_ZERO_MASK };
    if (g->version < 3)
        return (struct l2_entry){ 0 };
    uint64_t kept = keep_host ? keep_host | ENTRY_COPIED : 0;
    return (struct l2_entry){ .word = kept | L2_ENTRY_ZERO };
}

struct l2_entry l2_entry_compressed(const struct geometry *g, uint64_t at, uint64_t len)
{
    uint32_t offset_bits = 70u - g->cluster_bits;
    uint64_t extra_sectors = ((at + len - 1) >> 9) - (at >> 9);
    return (struct l2_entry){
        .word = L2_ENTRY_COMPRESSED | (extra_sectors << offset_bits) | at,
    };
}

static bool type_has_host_cluster(enum subcluster_type t)
{
    return t == SUBCLUSTER_NORMAL || t == SUBCLUSTER_ZERO_ALLOC ||
           t == SUBCLUSTER_UNALLOCATED_ALLOC;
}

int cluster_l2_table(struct qcow2_image *img, uint64_t l1_index, const uint8_t **table,
                         struct qcow2_error *err)
{
    *table = NULL;
    if (l1_index >= img->l1_size)
        return 0;
    uint64_t entry = img->l1[l1_index];
    uint64_t entry_offset = img->l1_offset + 8u * l1_index;
    if (entry & L1_ENTRY_RESERVED_MASK)
        return image_error(img, err, -EIO, "L1 table entry", entry_offset,
                           "reserved bits set in 0x%016" PRIx64, entry);
    uint64_t l2_offset = l1_entry_l2_offset(entry);
    if (!l2_offset)
        return 0;
    if (l2_offset % img->cluster_size)
        return image_error(img, err, -EIO, "L1 table entry", entry_offset,
                           "L2 table offset 0x%" PRIx64 " is not cluster-aligned", l2_offset);
    if (!span_fits(img->file_size, l2_offset, img->cluster_size))
        return image_error(img, err, -EIO, "L1 table entry", entry_offset,
                           "L2 table at 0x%" PRIx64 " runs past the end of the file (%" PRIu64
                           " bytes)",
                           l2_offset, img->file_size);
    return cache_get(img->l2_cache, img, l2_offset, table, err);
}

int cluster_l2_for_write(struct qcow2_image *img, uint64_t l1_index, struct l2_ref *l2,
                         struct qcow2_error *err)
{
    const uint8_t *old_table;
    int ret = cluster_l2_table(img, l1_index, &old_table, err);
    if (ret)
        return ret;
    uint64_t entry = img->l1[l1_index];
    uint64_t old = l1_entry_l2_offset(entry);
    if (old && l1_entry_is_copied(entry)) {
        l2->offset = old;
        return cache_get_mut(img->l2_cache, img, old, &l2->table, err);
    }
    uint64_t fresh;
    ret = refcount_alloc(img, 1, &fresh, err);
    if (ret)
        return ret;
    if (old) {
        ret = cache_get(img->l2_cache, img, old, &old_table, err);
        if (ret)
            return ret;
        memcpy(img->scratch, old_table, img->cluster_size);
    } else {
        memset(img->scratch, 0, img->cluster_size);
    }
    /* A new table is written back before the L1 entry names it (image_write_l1_entry). */
    ret = cache_install(img->l2_cache, img, fresh, img->scratch, true, err);
    if (!ret)
        ret = image_write_l1_entry(img, l1_index, l1_entry_with_copied(fresh, true), err);
    if (ret) {
        cache_forget(img->l2_cache, fresh);
        /* Best effort: if this fails too the cluster leaks, which a check reclaims. */
        refcount_add_range(img, fresh, 1, -1, NULL);
        return ret;
    }
    /*
     * The old table leaves the cache once its refcount reaches 0 (refcount_set); within
     * an op's batch of releases the drop waits for the op's one image_sync.
     */
    if (old && (ret = refcount_release(img, old, 1, err)))
        return ret;
    l2->offset = fresh;
    return cache_get_mut(img->l2_cache, img, fresh, &l2->table, err);
}

void cluster_put_l2_entry(struct qcow2_image *img, const struct l2_ref *l2, uint32_t index,
                          struct l2_entry e)
{
    const struct geometry *g = &img->geo;
    uint32_t size = geometry_l2_entry_bytes(g);
    l2_entry_put(g, l2->table, index, e);
    cache_mark_dirty(img->l2_cache, l2->offset, size * index, size);
}

/* Refuses an entry that QEMU would refuse to read, or that breaks the format's rules. */
static int entry_error(struct qcow2_image *img, struct qcow2_error *err, struct l2_entry e,
                       enum subcluster_type t, uint64_t entry_offset)
{
    const struct geometry *g = &img->geo;
    uint64_t host = l2_entry_host_offset(e);
    if (t == SUBCLUSTER_INVALID)
        return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                           "subcluster bitmap 0x%016" PRIx64 " is invalid (a subcluster both "
                           "allocated and zero, or allocated without a host cluster)",
                           e.bitmap);
    if (t == SUBCLUSTER_COMPRESSED) {
        struct compressed_desc d = compressed_desc_decode(g, e.word);
        if (d.high_offset_bits)
            return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                               "compressed data offset 0x%" PRIx64 " exceeds 56 bits",
                               (uint64_t)(e.word & ((1ull << (70u - g->cluster_bits)) - 1)));
        if (e.bitmap)
            return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                               "compressed cluster has a nonzero subcluster bitmap 0x%016" PRIx64,
                               e.bitmap);
        if (d.host_offset >= img->file_size)
            return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                               "compressed data at 0x%" PRIx64
                               " lies past the end of the file (%" PRIu64 " bytes)",
                               d.host_offset, img->file_size);
        return 0;
    }
    if (e.word & L2_ENTRY_RESERVED_MASK)
        return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                           "reserved bits set in 0x%016" PRIx64, e.word);
    if ((e.word & L2_ENTRY_ZERO) && g->extended_l2)
        return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                           "bit 0 is set in 0x%016" PRIx64 " but must be zero with extended L2 "
                           "entries",
                           e.word);
    if ((t == SUBCLUSTER_ZERO_PLAIN || t == SUBCLUSTER_ZERO_ALLOC) && g->version < 3)
        return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                           "zero flag set in 0x%016" PRIx64 " of a version 2 image, which has "
                           "no zero clusters",
                           e.word);
    if (type_has_host_cluster(t) && host % img->cluster_size)
        return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                           "data cluster offset 0x%" PRIx64 " is not cluster-aligned", host);
    if (t == SUBCLUSTER_NORMAL && host >= round_up_u64(img->file_size, img->cluster_size))
        return image_error(img, err, -EIO, "L2 table entry", entry_offset,
                           "data cluster at 0x%" PRIx64 " lies past the end of the file (%" PRIu64
                           " bytes)",
                           host, img->file_size);
    return 0;
}

/*
 * The run of subclusters from `first` that share one type; returns how many. Standard
 * entries are one subcluster covering the whole cluster.
 */
static uint32_t same_type_run(const struct geometry *g, struct l2_entry e, uint32_t first,
                              enum subcluster_type *type)
{
    *type = l2_entry_subcluster_type(g, e, first);
    if (!g->extended_l2 || *type == SUBCLUSTER_COMPRESSED || *type == SUBCLUSTER_INVALID)
        return g->extended_l2 ? SUBCLUSTERS_PER_CLUSTER - first : 1;
    uint32_t n = 1;
    while (first + n < SUBCLUSTERS_PER_CLUSTER &&
           l2_entry_subcluster_type(g, e, first + n) == *type)
        n++;
    return n;
}

int cluster_get_host_range(struct qcow2_image *img, uint64_t guest_off, uint64_t max_bytes,
                           struct host_range *r, struct qcow2_error *err)
{
    const struct geometry *g = &img->geo;
    uint32_t cb = g->cluster_bits;
    uint32_t l2_bits = geometry_l2_bits(g);
    uint64_t cs = img->cluster_size;
    uint64_t in_cluster = guest_off & (cs - 1);
    uint64_t l1_index = guest_off >> (cb + l2_bits);
    uint32_t l2_index = (uint32_t)((guest_off >> cb) & ((1ull << l2_bits) - 1));
    uint64_t to_table_end = (((uint64_t)1 << l2_bits) - l2_index) * cs - in_cluster;
    uint64_t limit = QVET_MIN(max_bytes, to_table_end);

    const uint8_t *table;
    int ret = cluster_l2_table(img, l1_index, &table, err);
    if (ret)
        return ret;
    if (!table) {
        *r = (struct host_range){ .type = SUBCLUSTER_UNALLOCATED_PLAIN, .bytes = limit };
        return 0;
    }

    uint64_t l2_offset = l1_entry_l2_offset(img->l1[l1_index]);
    uint32_t sc_shift = g->extended_l2 ? cb - 5u : cb;
    uint32_t first_sc = g->extended_l2 ? (uint32_t)(in_cluster >> sc_shift) : 0;
    uint64_t bytes = 0;
    uint64_t expected_host = 0;
    enum subcluster_type first_type = SUBCLUSTER_UNALLOCATED_PLAIN;

    for (uint32_t i = l2_index; i < (1u << l2_bits) && bytes < limit; i++) {
        struct l2_entry e = l2_entry_at(g, table, i);
        uint64_t entry_offset = l2_offset + (uint64_t)i * geometry_l2_entry_bytes(g);
        uint32_t start_sc = i == l2_index ? first_sc : 0;
        enum subcluster_type t;
        uint32_t run = same_type_run(g, e, start_sc, &t);
        uint64_t host = l2_entry_host_offset(e);

        if (i == l2_index) {
            ret = entry_error(img, err, e, t, entry_offset);
            if (ret)
                return ret;
            first_type = t;
            expected_host = host;
            if (t == SUBCLUSTER_COMPRESSED) {
                *r = (struct host_range){
                    .type = t, .compressed_word = e.word,
                    .bytes = QVET_MIN(limit, cs - in_cluster),
                };
                return 0;
            }
        } else {
            if (t != first_type)
                break;
            if (type_has_host_cluster(t)) {
                expected_host += cs;
                if (host != expected_host)
                    break;
            }
            if (entry_error(img, NULL, e, t, entry_offset))
                break;                  /* reported when the run reaches it */
        }
        uint64_t run_end = g->extended_l2 ? (uint64_t)(start_sc + run) << sc_shift : cs;
        uint64_t run_start = i == l2_index ? in_cluster : 0;
        bytes += run_end - run_start;
        if (g->extended_l2 && start_sc + run < SUBCLUSTERS_PER_CLUSTER)
            break;
    }

    r->type = first_type;
    r->bytes = QVET_MIN(bytes, limit);
    r->compressed_word = 0;
    r->host_offset = type_has_host_cluster(first_type)
                         ? l2_entry_host_offset(l2_entry_at(g, table, l2_index)) + in_cluster
                         : 0;
    return 0;
}
