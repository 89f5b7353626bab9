/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Repairs (QEMU's compare_refcounts, rebuild_refcount_structure, check_oflag_copied):
 * the stored refcounts against the computed ones, leaks and too-low refcounts fixed
 * through refcount.c, COPIED flags, and a new refcount structure when the old one
 * cannot be trusted, placed by refcount.c's first-fit policy.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "cache.h"
#include "checker.h"
#include "cluster.h"
#include "header.h"
#include "header_io.h"
#include "refcount.h"

/* QEMU's compare_refcounts: stored against computed, fixing what `fix` allows. */
static void check_compare(struct check_ctx *c, struct qcow2_check_result *res, unsigned fix,
                          bool *rebuild, uint64_t *highest)
{
    *highest = 0;
    for (uint64_t i = 0; i < c->nb; i++) {
        uint64_t stored, computed = check_ref_get(c, i);
        int ret = refcount_get_for_check(c->img, i, &stored);
        if (ret) {
            check_say(c, "Can't get refcount for cluster %" PRIu64 ": %s", i, strerror(-ret));
            res->check_errors++;
            continue;
        }
        if (stored || computed)
            *highest = i;
        if (stored == computed)
            continue;
        uint64_t *fixed = NULL;
        if (stored == 0)
            *rebuild = true;
        else if (stored > computed && (fix & CHECK_FIX_LEAKS))
            fixed = &res->leaks_fixed;
        else if (stored < computed && (fix & CHECK_FIX_ERRORS))
            fixed = &res->corruptions_fixed;
        check_say(c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
                  fixed ? "Repairing" : stored < computed ? "ERROR" : "Leaked", i, stored,
                  computed);
        if (fixed) {
            struct qcow2_error e;
            ret = refcount_set(c->img, i, computed, &e);
            if (!ret) {
                (*fixed)++;
                continue;
            }
            check_say(c, "ERROR could not update the refcount of cluster %" PRIu64 ": %s", i,
                      strerror(-ret));
        }
        if (stored < computed)
            res->corruptions++;
        else
            res->leaks++;
    }
}

/*
 * Takes `count` contiguous clusters that are free in the computed refcounts, placed by
 * refcount.c's first-fit policy at or after *first_free (the in-memory refcounts grow
 * when the run has to extend past their end), and counts them as used.
 */
static int check_alloc(struct check_ctx *c, uint64_t count, uint64_t *first_free,
                       uint64_t *cluster_out)
{
    uint64_t k = refcount_first_fit(c->refs, c->order, c->nb, *first_free, count, first_free);
    if (k + count > c->nb) {
        int ret = check_refs_cover(c, k + count);
        if (ret)
            return ret;
    }
    for (uint64_t i = 0; i < count; i++)
        check_ref_put(c, k + i, 1);
    *cluster_out = k;
    return 0;
}

struct check_new_reftable {
    uint64_t *entries;              /* host-endian refblock offsets */
    uint64_t size;                  /* a whole number of clusters' worth */
};

/*
 * Writes a refcount block, straight from the computed refcounts, for every range that
 * has a non-zero refcount among clusters [first, end), allocating it first where the
 * new table has none. Returns 1 when the new table had to grow, 0, or negative.
 */
static int check_write_refblocks(struct check_ctx *c, uint64_t first, uint64_t end,
                                 struct check_new_reftable *t)
{
    uint64_t per_block = 1ull << c->rb_bits;
    uint64_t first_free = 0;
    int grown = 0;
    for (uint64_t k = first; k < end; k++) {
        if (!check_ref_get(c, k))
            continue;
        uint64_t r = k >> c->rb_bits, range_start = r << c->rb_bits;
        uint64_t offset;
        if (r < t->size && t->entries[r]) {
            offset = t->entries[r];
        } else {
            /* Never inside a range whose block is already written. */
            first_free = QVET_MAX(first_free, range_start);
            uint64_t cluster;
            int ret = check_alloc(c, 1, &first_free, &cluster);
            if (ret)
                return ret;
            if (cluster >= end)
                end = cluster + 1;  /* its own refcount needs writing too */
            if (r >= t->size) {
                uint64_t size = round_up_u64((r + 1) * 8u, c->cs) / 8u;
                if (size * 8u > QCOW2_MAX_REFTABLE_BYTES)
                    return -EFBIG;
                uint64_t *p = realloc(t->entries, (size_t)size * sizeof(*p));
                if (!p)
                    return -ENOMEM;
                memset(p + t->size, 0, (size_t)(size - t->size) * sizeof(*p));
                t->entries = p;
                t->size = size;
                grown = 1;
            }
            offset = cluster << c->cb;
            t->entries[r] = offset;
        }
        struct qcow2_error e;
        int ret = refcount_write_block(c->img, offset, c->refs + r * c->cs, &e);
        if (ret)
            return ret;
        k = range_start + per_block - 1;
    }
    return grown;
}

/*
 * A new refcount structure from the computed refcounts (QEMU's placement: refcount
 * blocks and then the table go to the first clusters nothing references, so they never
 * overwrite anything in use). The header is switched to it last; the old structure is
 * then unreferenced, and the caller reclaims it as leaks.
 */
static int check_rebuild(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    struct check_new_reftable t = { 0 };
    uint64_t table_cluster = 0, table_clusters = 0;
    int ret = check_write_refblocks(c, 0, c->nb, &t);
    while (ret > 0) {
        table_clusters = t.size * 8u / c->cs;
        uint64_t first_free = 0;
        ret = check_alloc(c, table_clusters, &first_free, &table_cluster);
        if (!ret)
            ret = check_write_refblocks(c, table_cluster, table_cluster + table_clusters, &t);
    }
    uint8_t *raw = ret ? NULL : malloc((size_t)(t.size * 8u));
    if (!ret && !raw)
        ret = -ENOMEM;
    struct qcow2_error e = { .message = "" };
    if (!ret) {
        for (uint64_t i = 0; i < t.size; i++)
            be64_put(raw + 8 * i, t.entries[i]);
        ret = header_switch_table(img, HEADER_TABLE_REFCOUNT, raw, (size_t)(t.size * 8u),
                                  table_cluster << c->cb, table_clusters, "refcount table",
                                  &e);
    }
    free(raw);
    if (ret) {
        free(t.entries);
        res->check_errors++;
        check_say(c, "ERROR rebuilding the refcount structure: %s",
                  e.message[0] ? e.message : strerror(-ret));
        return ret;
    }
    free(img->reftable);
    img->reftable = t.entries;
    img->reftable_size = (uint32_t)t.size;
    cache_drop(img->refblock_cache);
    img->free_cluster_hint = 0;
    img->compressed_next = 0;
    return 0;
}

/* QEMU's check_oflag_copied, over the active L1 and its L2 tables. */
static int check_copied(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    const struct header *h = &img->hdr;
    const struct geometry *g = &img->geo;
    bool repair = (c->fix & CHECK_FIX_ERRORS) ||
                  ((c->fix & CHECK_FIX_LEAKS) && !res->check_errors && !res->corruptions &&
                   !res->leaks);
    uint64_t n = check_entries_in_file(c, h->l1_table_offset, h->l1_size, 8);
    if (!n)
        return 0;
    uint8_t *l1 = malloc((size_t)n * 8u);
    if (!l1) {
        res->check_errors++;
        return -ENOMEM;
    }
    int ret = check_read(c, l1, n * 8u, h->l1_table_offset);
    if (ret)
        res->check_errors++;
    struct check_refs tables = { 0 };
    for (uint64_t i = 0; i < n && !ret; i++) {
        uint64_t entry = be64_get(l1 + 8 * i);
        uint64_t l2 = l1_entry_l2_offset(entry);
        if (!l2)
            continue;
        if (check_refs_add(&tables, l2, 0, 1, 0)) {
            res->check_errors++;
            ret = -ENOMEM;
            break;
        }
        uint64_t rc;
        if (refcount_get_for_check(c->img, l2 >> c->cb, &rc))
            continue;
        if ((rc == 1) == l1_entry_is_copied(entry))
            continue;
        res->corruptions++;
        check_say(c, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64 " l1_entry=%" PRIx64
                  " refcount=%" PRIu64, repair ? "Repairing" : "ERROR", i, entry, rc);
        if (!repair)
            continue;
        uint64_t fixed = l1_entry_with_copied(entry, rc == 1);
        uint8_t raw[8];
        be64_put(raw, fixed);
        ret = check_write(c, res, raw, 8, h->l1_table_offset + 8 * i, CHECK_WRITE_L1,
                          "L1 table entry");
        if (ret)
            break;
        be64_put(l1 + 8 * i, fixed);
        if (img->selected_snapshot < 0 && i < img->l1_size)
            img->l1[i] = fixed;
        res->corruptions--;
        res->corruptions_fixed++;
    }
    free(l1);

    for (uint32_t t = 0; t < tables.n && !ret; t++) {
        uint64_t l2 = tables.items[t].offset, times = tables.items[t].count;
        uint64_t entries = check_entries_in_file(c, l2, c->l2_entries, c->l2_entry_bytes);
        if (!entries)
            continue;
        ret = check_read(c, c->buf, c->cs, l2);
        if (ret) {
            res->check_errors++;
            check_say(c, "ERROR: Could not read L2 table at 0x%" PRIx64, l2);
            break;
        }
        uint64_t errors = 0;
        for (uint32_t j = 0; j < entries; j++) {
            struct l2_entry e = l2_entry_at(g, c->buf, j);
            enum cluster_type type = l2_entry_cluster_type(g, e);
            if (type != CLUSTER_NORMAL && type != CLUSTER_ZERO_ALLOC)
                continue;
            uint64_t rc;
            if (refcount_get_for_check(c->img, l2_entry_host_offset(e) >> c->cb, &rc))
                continue;
            if ((rc == 1) == l2_entry_is_copied(e))
                continue;
            errors++;
            check_say(c, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64,
                      repair ? "Repairing" : "ERROR", e.word, rc);
            if (repair) {
                l2_entry_put(g, c->buf, j, l2_entry_with_copied(e, rc == 1));
            }
        }
        if (!errors)
            continue;
        if (!repair) {
            res->corruptions += errors * times;
            continue;
        }
        /* Fixed on the first walk; QEMU's later walks of the same table find nothing. */
        res->corruptions += errors;
        ret = check_write(c, res, c->buf, c->cs, l2, CHECK_WRITE_L2, "L2 table");
        if (ret)
            break;
        cache_forget(img->l2_cache, l2);
        res->corruptions -= errors;
        res->corruptions_fixed += errors;
    }
    check_refs_free(&tables);
    return ret;
}

int check_refcounts(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    bool rebuild = false;
    uint64_t highest = 0;
    res->total_clusters = check_div_up(img->virtual_size, c->cs);
    int ret = check_refs_reset(c, res);
    if (!ret)
        ret = check_calculate(c, res, &rebuild);
    if (ret)
        return ret;

    struct qcow2_check_result before = *res;
    check_compare(c, res, 0, &rebuild, &highest);

    if (rebuild && (c->fix & CHECK_FIX_ERRORS)) {
        struct qcow2_check_result old = *res;
        uint64_t fresh_leaks = 0;
        check_say(c, "Rebuilding refcount structure");
        ret = check_rebuild(c, res);
        if (ret)
            return ret;
        res->corruptions = 0;
        res->leaks = 0;
        rebuild = false;
        check_overlap_reset(c);
        ret = check_refs_reset(c, res);
        if (!ret) {
            unsigned fix = c->fix;
            c->fix = 0;
            ret = check_calculate(c, res, &rebuild);
            c->fix = fix;
        }
        if (ret)
            return ret;
        if (c->fix & CHECK_FIX_LEAKS) {
            /* The old structure is unreferenced now: reclaim it (not counted as a fix). */
            struct qcow2_check_result saved = *res;
            memset(res, 0, sizeof(*res));
            check_compare(c, res, CHECK_FIX_LEAKS, &rebuild, &highest);
            if (rebuild)
                check_say(c, "ERROR rebuilt refcount structure is still broken");
            fresh_leaks = res->leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions)
            res->corruptions_fixed += old.corruptions - res->corruptions;
        if (res->leaks < old.leaks)
            res->leaks_fixed += old.leaks - res->leaks;
        res->leaks += fresh_leaks;
    } else if (c->fix) {
        if (rebuild) {
            check_say(c, "ERROR need to rebuild refcount structures");
            res->check_errors++;
            return -EIO;
        }
        if (res->leaks || res->corruptions) {
            *res = before;
            check_compare(c, res, c->fix, &rebuild, &highest);
        }
    }
    check_overlap_reset(c);
    ret = check_copied(c, res);
    if (ret)
        return ret;
    res->image_end_offset = (highest + 1) << c->cb;
    return 0;
}
