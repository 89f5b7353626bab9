/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Counting references (QEMU's calculate_refcounts): every cluster the header, the L1
 * and L2 trees of the active state and of each snapshot, the snapshot table, the
 * refcount structure and the bitmaps use, into the in-memory refcounts of checker.h.
 * An L2 or bitmap table referenced many times is walked once and its references are
 * counted with their multiplicity, which gives the same counts as walking it each time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "bytes.h"
#include "cache.h"
#include "checker.h"
#include "cluster.h"
#include "header.h"
#include "refcount.h"

int check_refs_cover(struct check_ctx *c, uint64_t want)
{
    if (want <= c->nb)
        return 0;
    if (want > c->refs_cap) {
        uint64_t per_block = 1ull << c->rb_bits;
        uint64_t blocks = check_div_up(want, per_block);
        if (blocks > CHECK_MAX_ARRAY_BYTES / c->cs)
            return -EFBIG;
        uint64_t bytes = blocks * c->cs;
        uint64_t old_bytes = (c->refs_cap >> c->rb_bits) * c->cs;
        uint8_t *p = realloc(c->refs, (size_t)bytes);
        if (!p)
            return -ENOMEM;
        memset(p + old_bytes, 0, (size_t)(bytes - old_bytes));
        c->refs = p;
        c->refs_cap = blocks * per_block;
    }
    c->nb = want;
    return 0;
}

/*
 * Counts `times` references to every cluster touched by [offset, offset+size). A
 * region reaching one cluster or more past the end of the file is a corruption and is
 * not counted; a count that would pass the refcount width's maximum is one too.
 */
static int check_inc(struct check_ctx *c, struct qcow2_check_result *res, uint64_t offset,
                     uint64_t size, uint64_t times)
{
    if (!size || !times)
        return 0;
    uint64_t file_len = c->img->file_size;
    if (offset > (uint64_t)INT64_MAX - size ||
        (offset + size > file_len && offset + size - file_len >= c->cs)) {
        check_say(c, "ERROR: counting reference for region exceeding the end of the file by one "
                  "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64, offset, size);
        res->corruptions += times;
        return 0;
    }
    uint64_t first = offset >> c->cb, last = (offset + size - 1) >> c->cb;
    int ret = check_refs_cover(c, last + 1);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: cannot track refcounts up to cluster %" PRIu64 ": %s", last,
                  strerror(-ret));
        return ret;
    }
    for (uint64_t k = first; k <= last; k++) {
        uint64_t rc = check_ref_get(c, k);
        uint64_t room = c->rc_max - rc;
        if (times <= room) {
            check_ref_put(c, k, rc + times);
            continue;
        }
        check_ref_put(c, k, c->rc_max);
        res->corruptions += times - room;
        check_say(c, "ERROR: overflow cluster offset=0x%" PRIx64 " (%" PRIu64
                  " references past the %u-bit maximum)",
                  k << c->cb, times - room, 1u << c->order);
    }
    return 0;
}

/* "id (name)" of snapshot i for messages, printable characters only. */
static void check_snap_label(const struct check_ctx *c, uint32_t i, char *out, size_t cap)
{
    const struct snapshot *s = &c->snaps.entries[i];
    char id[33] = "", name[33] = "";
    size_t n = QVET_MIN((size_t)s->id_size, sizeof(id) - 1);
    for (size_t j = 0; j < n; j++)
        id[j] = s->id[j] >= 0x20 && s->id[j] < 0x7F ? s->id[j] : '?';
    n = QVET_MIN((size_t)s->name_size, sizeof(name) - 1);
    for (size_t j = 0; j < n; j++)
        name[j] = s->name[j] >= 0x20 && s->name[j] < 0x7F ? s->name[j] : '?';
    snprintf(out, cap, "%s (%s)", id, name);
}

/*
 * Reads an L1 table (the part inside the file) and counts it, and the L2 tables its
 * entries name, `times` times. The L2 tables are queued in c->l2s.
 */
static int check_l1(struct check_ctx *c, struct qcow2_check_result *res, uint64_t l1_offset,
                    uint32_t l1_size, uint64_t times, bool active)
{
    if (!l1_size)
        return 0;
    int ret = check_inc(c, res, l1_offset, (uint64_t)l1_size * 8u, times);
    if (ret)
        return ret;
    uint64_t n = check_entries_in_file(c, l1_offset, l1_size, 8);
    if (!n)
        return 0;
    uint8_t *raw = malloc((size_t)n * 8u);
    if (!raw) {
        res->check_errors++;
        check_say(c, "ERROR: out of memory for an L1 table of %" PRIu64 " entries", n);
        return -ENOMEM;
    }
    ret = check_read(c, raw, n * 8u, l1_offset);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: I/O error reading the L1 table at 0x%" PRIx64, l1_offset);
    }
    for (uint64_t i = 0; i < n && !ret; i++) {
        uint64_t entry = be64_get(raw + 8 * i);
        if (!entry)
            continue;
        if (l1_entry_reserved_bits(entry)) {
            check_say(c, "ERROR found L1 entry with reserved bits set: %" PRIx64, entry);
            res->corruptions += times;
        }
        uint64_t l2 = l1_entry_l2_offset(entry);
        ret = check_inc(c, res, l2, c->cs, times);
        if (ret)
            break;
        if (l2 % c->cs) {
            check_say(c, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                      "corrupted", l2);
            res->corruptions += times;
        }
        if (check_refs_add(&c->l2s, l2, c->cs, times, active ? times : 0)) {
            res->check_errors++;
            check_say(c, "ERROR: out of memory");
            ret = -ENOMEM;
        }
    }
    free(raw);
    return ret;
}

/* QEMU's fix for a preallocated zero cluster whose offset is not aligned. */
static int check_zero_entry(struct check_ctx *c, struct qcow2_check_result *res,
                            uint64_t l2_offset, uint32_t index, struct l2_entry e)
{
    const struct geometry *g = &c->img->geo;
    l2_entry_put(g, c->buf, index, l2_entry_zeroed(g, e));
    uint64_t at = l2_offset + (uint64_t)index * c->l2_entry_bytes;
    int ret = check_write(c, res, c->buf + (size_t)index * c->l2_entry_bytes, c->l2_entry_bytes,
                          at, CHECK_WRITE_L2, "L2 table entry");
    if (ret) {
        l2_entry_put(g, c->buf, index, e);
        return ret;
    }
    cache_forget(c->img->l2_cache, l2_offset);
    return 0;
}

/*
 * Counts the references of one L2 table referenced `times` times (`active` of them
 * from the active L1, which also feed the allocation statistics).
 */
static int check_l2(struct check_ctx *c, struct qcow2_check_result *res, uint64_t l2_offset,
                    uint64_t times, uint64_t active)
{
    const struct geometry *g = &c->img->geo;
    uint64_t n = check_entries_in_file(c, l2_offset, c->l2_entries, c->l2_entry_bytes);
    if (!n)
        return 0;
    int ret = check_read(c, c->buf, c->cs, l2_offset);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: I/O error reading the L2 table at 0x%" PRIx64, l2_offset);
        return ret;
    }
    uint64_t next_contiguous = 0, allocated = 0, fragmented = 0, compressed = 0;
    const uint32_t run = ZERO_RUN_BYTES / c->l2_entry_bytes;
    for (uint32_t i = 0; i < n; i++) {
        /* An all-zero entry is unallocated with nothing set: nothing to count or report. */
        if (i % run == 0 && n - i >= run &&
            bytes_zero_run(c->buf + (size_t)i * c->l2_entry_bytes, ZERO_RUN_BYTES)) {
            i += run - 1;
            continue;
        }
        struct l2_entry e = l2_entry_at(g, c->buf, i);
        enum cluster_type type = l2_entry_cluster_type(g, e);
        uint64_t found = 0;         /* corruptions one walk of this entry finds */
        if (type != CLUSTER_COMPRESSED && l2_entry_reserved_bits(e)) {
            check_say(c, "ERROR found l2 entry with reserved bits set: %" PRIx64, e.word);
            found++;
        }
        switch (type) {
        case CLUSTER_COMPRESSED: {
            struct compressed_desc d = compressed_desc_decode(g, e.word);
            uint64_t coffset = compressed_desc_stored_offset(d);
            if (l2_entry_is_copied(e)) {
                check_say(c, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
                          "compressed clusters", coffset);
                found++;
            }
            if (e.bitmap) {
                check_say(c, "ERROR compressed cluster %" PRIu32 " with non-zero subcluster "
                          "allocation bitmap, entry=0x%" PRIx64, i, e.word);
                found++;
                break;
            }
            ret = check_inc(c, res, coffset, d.max_bytes, times);
            allocated++;
            compressed++;
            fragmented++;
            break;
        }
        case CLUSTER_ZERO_ALLOC:
        case CLUSTER_NORMAL: {
            uint64_t offset = l2_entry_host_offset(e);
            if (l2_entry_bitmap_conflicts(e)) {
                check_say(c, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
                          "subcluster allocation bitmap", offset);
                found++;
            }
            if (offset % c->cs) {
                bool has_data = l2_entry_has_data(g, e);
                found++;
                if (!has_data) {
                    bool repair = (c->fix & CHECK_FIX_ERRORS) != 0;
                    check_say(c, "%s offset=%" PRIx64 ": Preallocated cluster is not properly "
                              "aligned; L2 entry corrupted.", repair ? "Repairing" : "ERROR",
                              offset);
                    int fixed = repair ? check_zero_entry(c, res, l2_offset, i, e) : 1;
                    if (!fixed) {
                        /* Fixed on the first walk: the others see a plain zero entry. */
                        res->corruptions += found - 1;
                        res->corruptions_fixed++;
                        continue;
                    }
                    /* Metadata in the way stops the check; a failed write does not. */
                    if (fixed == -EEXIST || fixed == -ENOMEM)
                        return fixed;
                } else {
                    check_say(c, "ERROR offset=%" PRIx64 ": Data cluster is not properly "
                              "aligned; L2 entry corrupted.", offset);
                }
            }
            allocated++;
            if (next_contiguous && offset != next_contiguous)
                fragmented++;
            next_contiguous = offset + c->cs;
            ret = check_inc(c, res, offset, c->cs, times);
            break;
        }
        case CLUSTER_ZERO_PLAIN:
            break;
        case CLUSTER_UNALLOCATED:
            if (l2_entry_allocated_subclusters(e)) {
                check_say(c, "ERROR: Unallocated cluster has non-zero subcluster allocation map");
                found++;
            }
            break;
        }
        res->corruptions += found * times;
        if (ret)
            return ret;
    }
    res->allocated_clusters += allocated * active;
    res->fragmented_clusters += fragmented * active;
    res->compressed_clusters += compressed * active;
    return 0;
}

static int check_bme_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Bitmap directory, tables and data clusters (only while autoclear bit 0 is set). */
static int check_bitmaps(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    const struct header *h = &img->hdr;
    if (!(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) || !h->has_bitmaps_ext ||
        !h->nb_bitmaps)
        return 0;
    uint64_t dir_offset = h->bitmap_directory_offset, dir_size = h->bitmap_directory_size;
    int ret = check_inc(c, res, dir_offset, dir_size, 1);
    if (ret)
        return ret;
    if (!span_fits(img->file_size, dir_offset, dir_size) ||
        dir_size > (uint64_t)h->nb_bitmaps * (BITMAP_ENTRY_FIXED_BYTES + 2048u)) {
        res->corruptions++;
        res->check_errors++;
        check_say(c, "ERROR bitmap directory at 0x%" PRIx64 " (%" PRIu64 " bytes) cannot be "
                  "loaded", dir_offset, dir_size);
        return -EINVAL;
    }
    uint8_t *dir = malloc(dir_size ? (size_t)dir_size : 1);
    uint64_t *tables = malloc((size_t)h->nb_bitmaps * 2u * sizeof(uint64_t));
    if (!dir || !tables) {
        free(dir);
        free(tables);
        res->check_errors++;
        return -ENOMEM;
    }
    ret = check_read(c, dir, dir_size, dir_offset);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < h->nb_bitmaps && !ret; i++) {
        struct bitmap_entry_fields f;
        uint64_t len = bitmap_entry_decode(dir, dir_size, pos, &f) ? f.length : 0;
        uint64_t table_offset = len ? f.table_offset : 0;
        uint32_t table_size = len ? f.table_size : 0;
        if (!len || !span_fits(dir_size, pos, len) || !table_size ||
            table_size > BITMAP_MAX_TABLE_ENTRIES || !table_offset ||
            table_offset % c->cs) {
            res->corruptions++;
            res->check_errors++;
            check_say(c, "ERROR bitmap directory entry %" PRIu32 " is invalid", i);
            ret = -EINVAL;
            break;
        }
        tables[2 * i] = table_offset;
        tables[2 * i + 1] = table_size;
        pos += len;
    }
    free(dir);
    if (ret) {
        free(tables);
        return ret;
    }
    /* The same table named by several bitmaps is read once. */
    qsort(tables, h->nb_bitmaps, 2 * sizeof(uint64_t), check_bme_cmp);
    for (uint32_t i = 0; i < h->nb_bitmaps && !ret;) {
        uint32_t j = i + 1;
        while (j < h->nb_bitmaps && tables[2 * j] == tables[2 * i] &&
               tables[2 * j + 1] == tables[2 * i + 1])
            j++;
        uint64_t times = j - i, offset = tables[2 * i], size = tables[2 * i + 1];
        i = j;
        ret = check_inc(c, res, offset, size * 8u, times);
        uint64_t n = ret ? 0 : check_entries_in_file(c, offset, size, 8);
        uint8_t *raw = n ? malloc((size_t)n * 8u) : NULL;
        if (n && !raw) {
            res->check_errors++;
            ret = -ENOMEM;
            break;
        }
        if (n)
            ret = check_read(c, raw, n * 8u, offset);
        for (uint64_t k = 0; k < n && !ret; k++) {
            uint64_t entry = be64_get(raw + 8 * k);
            uint64_t data = entry & BITMAP_TABLE_OFFSET_MASK;
            if (bitmap_table_entry_problem(entry, c->cs)) {
                res->corruptions++;
                res->check_errors++;
                check_say(c, "ERROR bitmap table at 0x%" PRIx64 " has an invalid entry "
                          "0x%016" PRIx64, offset, entry);
                ret = -EINVAL;
                break;
            }
            if (data)
                ret = check_inc(c, res, data, c->cs, times);
        }
        free(raw);
    }
    free(tables);
    return ret;
}

/* QEMU's check_refblocks: the refcount blocks themselves. */
static int check_refblocks(struct check_ctx *c, struct qcow2_check_result *res, bool *rebuild)
{
    struct qcow2_image *img = c->img;
    for (uint32_t i = 0; i < img->reftable_size; i++) {
        uint64_t entry = img->reftable[i];
        uint64_t offset = reftable_entry_block(entry);
        uint64_t cluster = offset >> c->cb;
        if (reftable_entry_reserved_bits(entry)) {
            check_say(c, "ERROR refcount table entry %" PRIu32 " has reserved bits set", i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (offset % c->cs) {
            check_say(c, "ERROR refcount block %" PRIu32 " is not cluster aligned; refcount "
                      "table entry corrupted", i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (cluster >= c->nb) {
            bool repair = (c->fix & CHECK_FIX_ERRORS) != 0;
            res->corruptions++;
            check_say(c, "%s refcount block %" PRIu32 " is outside image",
                      repair ? "Repairing" : "ERROR", i);
            if (!repair)
                continue;
            /* Grow the file to hold it (bounded: the refcounts must still fit in memory). */
            int ret = -EFBIG;
            uint64_t want = cluster + 1;
            if (offset <= (uint64_t)INT64_MAX - c->cs &&
                check_div_up(want, 1ull << c->rb_bits) <= CHECK_MAX_ARRAY_BYTES / c->cs)
                ret = image_truncate(img, offset + c->cs, NULL);
            uint64_t size = img->file_size;
            if (!ret && check_div_up(size, c->cs) < want)
                ret = -EINVAL;
            if (!ret) {
                ret = check_refs_cover(c, check_div_up(size, c->cs));
                if (ret) {
                    res->check_errors++;
                    return ret;
                }
                res->corruptions--;
                res->corruptions_fixed++;
                ret = check_inc(c, res, offset, c->cs, 1);
                if (ret)
                    return ret;
                continue;
            }
            *rebuild = true;
            check_say(c, "ERROR could not resize image: %s", strerror(-ret));
            continue;
        }
        if (offset) {
            int ret = check_inc(c, res, offset, c->cs, 1);
            if (ret)
                return ret;
            uint64_t rc = check_ref_get(c, cluster);
            if (rc != 1) {
                check_say(c, "ERROR refcount block %" PRIu32 " refcount=%" PRIu64, i, rc);
                res->corruptions++;
                *rebuild = true;
            }
        }
    }
    return 0;
}

int check_calculate(struct check_ctx *c, struct qcow2_check_result *res, bool *rebuild)
{
    struct qcow2_image *img = c->img;
    const struct header *h = &img->hdr;
    int ret = check_inc(c, res, 0, c->cs, 1);
    if (ret)
        return ret;

    check_refs_free(&c->l2s);
    ret = check_l1(c, res, h->l1_table_offset, h->l1_size, 1, true);
    if (ret)
        return ret;

    /* Snapshot L1 tables; identical ones are walked once. */
    struct check_refs l1s = { 0 };
    char label[160];
    for (uint32_t i = 0; i < c->snaps.count && !ret; i++) {
        const struct snapshot *s = &c->snaps.entries[i];
        if (s->l1_table_offset % c->cs) {
            check_snap_label(c, i, label, sizeof(label));
            check_say(c, "ERROR snapshot %s l1_offset=%#" PRIx64 ": L1 table is not cluster "
                      "aligned; snapshot table entry corrupted", label, s->l1_table_offset);
            res->corruptions++;
            continue;
        }
        if (s->l1_size > CHECK_MAX_L1_ENTRIES) {
            check_snap_label(c, i, label, sizeof(label));
            check_say(c, "ERROR snapshot %s l1_size=%#" PRIx32 ": L1 table is too large; "
                      "snapshot table entry corrupted", label, s->l1_size);
            res->corruptions++;
            continue;
        }
        if (check_refs_add(&l1s, s->l1_table_offset, s->l1_size, 1, 0)) {
            res->check_errors++;
            ret = -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < l1s.n && !ret; i++)
        ret = check_l1(c, res, l1s.items[i].offset, (uint32_t)l1s.items[i].size,
                       l1s.items[i].count, false);
    check_refs_free(&l1s);
    for (uint32_t i = 0; i < c->l2s.n && !ret; i++)
        ret = check_l2(c, res, c->l2s.items[i].offset, c->l2s.items[i].count,
                       c->l2s.items[i].active);
    if (!ret)
        ret = check_inc(c, res, c->snaps_offset, c->snaps_size, 1);
    if (!ret)
        ret = check_inc(c, res, h->refcount_table_offset, (uint64_t)img->reftable_size * 8u, 1);
    if (!ret)
        ret = check_bitmaps(c, res);
    if (!ret)
        ret = check_refblocks(c, res, rebuild);
    return ret;
}

int check_refs_reset(struct check_ctx *c, struct qcow2_check_result *res)
{
    free(c->refs);
    c->refs = NULL;
    c->nb = c->refs_cap = 0;
    uint64_t nb = check_div_up(c->img->file_size, c->cs);
    if (nb > CHECK_MAX_CLUSTERS) {
        res->check_errors++;
        check_say(c, "ERROR the image file has %" PRIu64 " clusters, too many to check", nb);
        return -EFBIG;
    }
    int ret = check_refs_cover(c, nb ? nb : 1);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR cannot hold the refcounts of %" PRIu64 " clusters in memory", nb);
    }
    return ret;
}
