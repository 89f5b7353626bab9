/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Creating, applying and deleting internal snapshots, in QEMU's crash-safe order: the
 * new snapshot table always goes to fresh clusters and the header switches to it in one
 * write, refcounts rise before anything new refers to them and fall only after the
 * reference is gone. A crash anywhere leaves at worst leaked clusters.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bytes.h"
#include "cache.h"
#include "cluster.h"
#include "header_io.h"
#include "image.h"
#include "l1.h"
#include "refcount.h"
#include "snapshot.h"

/*
 * The index of the snapshot `key` names (id first, then name), or without a key the
 * first with `id` and `name` (NULL: any); else -ENOENT and a message saying what was
 * asked for.
 */
static int find_snapshot(const struct qcow2_image *img, const char *key, const char *id,
                         const char *name, struct qcow2_error *err)
{
    const struct snapshot_table *t = &img->snapshots;
    int i = key ? snapshot_find(t, key) : snapshot_find_by(t, id, name);
    if (i >= 0)
        return i;
    char wanted[600];
    if (key)
        snprintf(wanted, sizeof(wanted), "id or name \"%s\"", key);
    else if (id && name)
        snprintf(wanted, sizeof(wanted), "id \"%s\" and name \"%s\"", id, name);
    else if (id || name)
        snprintf(wanted, sizeof(wanted), "%s \"%s\"", id ? "id" : "name", id ? id : name);
    else
        snprintf(wanted, sizeof(wanted), "neither id nor name given");
    return image_error(img, err, -ENOENT, "snapshot table", img->hdr.snapshots_offset,
                       "no snapshot with %s (%" PRIu32 " snapshots)", wanted, t->count);
}

int qcow2_snapshot_find(const struct qcow2_image *img, const char *id, const char *name,
                        struct qcow2_error *err)
{
    return find_snapshot(img, NULL, id, name, err);
}

int qcow2_snapshot_find_key(const struct qcow2_image *img, const char *key,
                            struct qcow2_error *err)
{
    return find_snapshot(img, key, NULL, NULL, err);
}

static int writable_or_fail(struct qcow2_image *img, struct qcow2_error *err)
{
    if (!img->writable)
        return image_error(img, err, -EROFS, "image", QCOW2_NO_OFFSET,
                           "snapshots can only be changed on an image opened read-write");
    if (img->hdr.refcount_order == 0)
        return image_error(img, err, -ENOTSUP, "header field refcount_order",
                           HEADER_OFF_REFCOUNT_ORDER,
                           "1-bit refcounts cannot count a cluster shared with a snapshot");
    return 0;
}

/* Host clusters that one walk of an L1 tree references, once per reference. */
struct cluster_list {
    uint64_t *items;
    size_t count, cap;
};

static int list_add_range(struct cluster_list *l, uint32_t cluster_bits, uint64_t start,
                          uint64_t bytes)
{
    for (uint64_t c = start >> cluster_bits; c <= (start + bytes - 1) >> cluster_bits; c++) {
        if (l->count == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 1024;
            uint64_t *items = realloc(l->items, cap * sizeof(*items));
            if (!items)
                return -ENOMEM;
            l->items = items;
            l->cap = cap;
        }
        l->items[l->count++] = c;
    }
    return 0;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every L2 table and data cluster reachable from `l1` (host-endian, `size` entries). */
static int collect_tree(struct qcow2_image *img, const uint64_t *l1, uint32_t size,
                        struct cluster_list *l, struct qcow2_error *err)
{
    const struct geometry *g = &img->geo;
    uint32_t entries = 1u << geometry_l2_bits(g);
    for (uint32_t i = 0; i < size; i++) {
        uint64_t l2_offset = l1_entry_l2_offset(l1[i]);
        if (!l2_offset)
            continue;
        if (l2_offset % img->cluster_size || l2_offset >= img->file_size)
            return image_error(img, err, -EIO, "L1 table entry", QCOW2_NO_OFFSET,
                               "L2 table offset 0x%" PRIx64 " is unaligned or past the end "
                               "of the file", l2_offset);
        const uint8_t *table;
        int ret = cache_get(img->l2_cache, img, l2_offset, &table, err);
        if (ret)
            return ret;
        ret = list_add_range(l, g->cluster_bits, l2_offset, 1);
        for (uint32_t j = 0; j < entries && !ret; j++) {
            struct l2_entry e = l2_entry_at(g, table, j);
            if (l2_entry_is_compressed(e)) {
                struct compressed_desc d = compressed_desc_decode(g, e.word);
                ret = list_add_range(l, g->cluster_bits, d.host_offset & ~(uint64_t)511,
                                     d.max_bytes + (d.host_offset & 511));
            } else if (l2_entry_host_offset(e)) {
                ret = list_add_range(l, g->cluster_bits, l2_entry_host_offset(e), 1);
            }
        }
        if (ret)
            return image_error(img, err, ret, "L2 table", l2_offset, "out of memory");
    }
    return 0;
}

/*
 * Adds `addend` (+1 or -1) to the refcount of every L2 table and data cluster reachable
 * from `l1`. Every new value is checked before the first is written, so a refusal (a
 * refcount that would overflow its width) changes nothing.
 */
static int add_to_tree(struct qcow2_image *img, const uint64_t *l1, uint32_t size,
                       int64_t addend, struct qcow2_error *err)
{
    struct cluster_list l = { 0 };
    int ret = collect_tree(img, l1, size, &l, err);
    if (!ret && l.count)
        qsort(l.items, l.count, sizeof(*l.items), compare_u64);
    uint64_t max = refcount_max(img->hdr.refcount_order);
    for (size_t i = 0; i < l.count && !ret;) {
        size_t n = 1;
        while (i + n < l.count && l.items[i + n] == l.items[i])
            n++;
        uint64_t rc;
        ret = refcount_get(img, l.items[i], &rc, err);
        if (!ret && addend > 0 && max - rc < n)
            ret = image_error(img, err, -ERANGE, "refcount block", QCOW2_NO_OFFSET,
                              "host cluster %" PRIu64 " has refcount %" PRIu64 " and %zu more "
                              "references would pass the %u-bit maximum",
                              l.items[i], rc, n, 1u << img->hdr.refcount_order);
        if (!ret && addend < 0 && rc < n)
            ret = image_error(img, err, -EIO, "refcount block", QCOW2_NO_OFFSET,
                              "host cluster %" PRIu64 " has refcount %" PRIu64 " but %zu "
                              "references to drop (the image is corrupt)",
                              l.items[i], rc, n);
        i += n;
    }
    /* A table whose cluster becomes free leaves the cache there (refcount_set). */
    for (size_t i = 0; i < l.count && !ret; i++)
        ret = refcount_add_range(img, l.items[i] << img->geo.cluster_bits, 1, addend, err);
    free(l.items);
    return ret;
}

/* Sets COPIED on active L1 and L2 entries exactly where the refcount is 1. */
static int refresh_copied_flags(struct qcow2_image *img, struct qcow2_error *err)
{
    const struct geometry *g = &img->geo;
    uint32_t entries = 1u << geometry_l2_bits(g);
    for (uint32_t i = 0; i < img->l1_size; i++) {
        uint64_t l2_offset = l1_entry_l2_offset(img->l1[i]);
        if (!l2_offset)
            continue;
        uint64_t rc;
        int ret = refcount_get(img, l2_offset >> g->cluster_bits, &rc, err);
        if (ret)
            return ret;
        uint64_t want = l1_entry_with_copied(l2_offset, rc == 1);
        if (want != img->l1[i]) {
            ret = image_write_l1_entry(img, i, want, err);
            if (ret)
                return ret;
        }
        for (uint32_t j = 0; j < entries; j++) {
            struct l2_ref l2 = { .offset = l2_offset };
            ret = cache_get_mut(img->l2_cache, img, l2_offset, &l2.table, err);
            if (ret)
                return ret;
            struct l2_entry e = l2_entry_at(g, l2.table, j);
            uint64_t host = l2_entry_host_offset(e);
            if (!host || l2_entry_is_compressed(e))
                continue;
            ret = refcount_get(img, host >> g->cluster_bits, &rc, err);
            if (ret)
                return ret;
            struct l2_entry fixed = l2_entry_with_copied(e, rc == 1);
            if (fixed.word == e.word)
                continue;
            cluster_put_l2_entry(img, &l2, j, fixed);
        }
    }
    return 0;
}

/*
 * Writes `t` to fresh clusters, switches the header to it, frees the old table. On a
 * failure, *switched says the header was switched (only the flush after it failed): `t`
 * is the table from then on, and the old one stays allocated, as the disk may name it.
 */
static int replace_table(struct qcow2_image *img, struct snapshot_table *t, bool *switched,
                         struct qcow2_error *err)
{
    *switched = false;
    uint64_t cs = img->cluster_size;
    uint64_t bytes = snapshot_table_size(t);
    uint64_t at = 0;
    uint8_t *buf = NULL;
    int ret = 0;
    if (bytes) {
        buf = calloc(1, round_up_u64(bytes, cs));
        if (!buf)
            return image_error(img, err, -ENOMEM, "snapshot table", QCOW2_NO_OFFSET,
                               "out of memory");
        snapshot_table_encode(t, buf);
        ret = refcount_alloc(img, round_up_u64(bytes, cs) / cs, &at, err);
    }
    uint64_t old = img->hdr.snapshots_offset;
    if (!ret)
        ret = header_switch_table(img, HEADER_TABLE_SNAPSHOTS, buf, bytes, at, t->count,
                                  "snapshot table", err);
    free(buf);
    *switched = ret && old != at && header_table_is_at(img, HEADER_TABLE_SNAPSHOTS, at);
    if (ret && !*switched)
        return ret;
    uint64_t old_bytes = img->snapshots.bytes;
    t->bytes = bytes;
    if (*switched)
        return ret;
    return old_bytes && old ? refcount_add_range(img, old, old_bytes, -1, err) : 0;
}

/* Reads a snapshot's L1 table, validated as QEMU does before using it. */
static int read_snapshot_l1(struct qcow2_image *img, const struct snapshot *s, uint64_t **l1,
                            struct qcow2_error *err)
{
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    if (bytes > QCOW2_MAX_L1_BYTES || s->l1_table_offset % img->cluster_size ||
        (bytes && !span_fits(img->file_size, s->l1_table_offset, bytes)))
        return image_error(img, err, -EINVAL, "snapshot table entry", s->entry_offset,
                           "snapshot \"%s\" has an invalid L1 table (0x%" PRIx64 ", %" PRIu32
                           " entries)",
                           s->name, s->l1_table_offset, s->l1_size);
    *l1 = calloc(s->l1_size ? s->l1_size : 1, 8);
    if (!*l1)
        return image_error(img, err, -ENOMEM, "snapshot L1 table", s->l1_table_offset,
                           "out of memory");
    int ret = image_read(img, *l1, bytes, s->l1_table_offset, "snapshot L1 table", err);
    for (uint32_t i = 0; i < s->l1_size && !ret; i++)
        (*l1)[i] = be64_get((const uint8_t *)&(*l1)[i]);
    if (ret) {
        free(*l1);
        *l1 = NULL;
    }
    return ret;
}

static char *next_snapshot_id(const struct snapshot_table *t)
{
    unsigned long long max = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        char *end;
        unsigned long long v = strtoull(t->entries[i].id, &end, 10);
        if (*t->entries[i].id && !*end && v > max)
            max = v;
    }
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", max + 1);
    return strdup(buf);
}

/*
 * A snapshot operation changes refcounts and COPIED flags that no order of writes keeps
 * consistent with each other at every step, so a version 3 image carries the dirty bit
 * while it runs (a crash midway is repaired on open, as with lazy refcounts). An
 * operation that fails before changing anything leaves the bit as it found it.
 */
struct dirty_bracket {
    bool marked;
    uint64_t writes_after_mark;
};

static int bracket_begin(struct qcow2_image *img, struct dirty_bracket *b, struct qcow2_error *err)
{
    b->marked = false;
    int ret = image_begin_change(img, err);
    if (!ret)
        ret = image_mark_dirty_during(img, &b->marked, err);
    b->writes_after_mark = img->writes_total;
    return ret;
}

static int bracket_end(struct qcow2_image *img, const struct dirty_bracket *b, int ret,
                       struct qcow2_error *err)
{
    /*
     * The next open repairs what a host I/O or memory failure midway left (lazy
     * refcounts' dirty bit too); a refusal undoes what it wrote and leaves no such mess.
     */
    bool midway = ret == -EIO || ret == -ENOSPC || ret == -EDQUOT || ret == -ENOMEM;
    if (midway && img->writes_total != b->writes_after_mark)
        img->keep_dirty = true;
    if (!b->marked || img->keep_dirty)
        return ret;
    int cleared = image_mark_clean(img, ret ? NULL : err);
    return ret ? ret : cleared;
}

static int snapshot_create(struct qcow2_image *img, const char *name, struct qcow2_error *err);

int qcow2_snapshot_create(struct qcow2_image *img, const char *name, struct qcow2_error *err)
{
    int ret = writable_or_fail(img, err);
    if (ret)
        return ret;
    if (img->snapshots.count >= QCOW2_MAX_SNAPSHOTS)
        return image_error(img, err, -EFBIG, "snapshot table", img->hdr.snapshots_offset,
                           "already holds the maximum of %u snapshots", QCOW2_MAX_SNAPSHOTS);
    struct dirty_bracket b;
    ret = bracket_begin(img, &b, err);
    return bracket_end(img, &b, ret ? ret : snapshot_create(img, name, err), err);
}

static int snapshot_create(struct qcow2_image *img, const char *name, struct qcow2_error *err)
{
    int ret;
    struct snapshot_table *t = &img->snapshots;
    uint64_t cs = img->cluster_size;
    uint64_t l1_bytes = round_up_u64((uint64_t)img->l1_size * 8, cs);
    uint64_t l1_copy = 0;
    ret = image_begin_change(img, err);
    if (ret)
        return ret;
    if (l1_bytes) {
        uint8_t *raw = calloc(1, l1_bytes);
        if (!raw)
            return image_error(img, err, -ENOMEM, "snapshot L1 table", QCOW2_NO_OFFSET,
                               "out of memory");
        for (uint32_t i = 0; i < img->l1_size; i++)
            be64_put(raw + 8 * i, l1_entry_with_copied(img->l1[i], false));
        ret = refcount_alloc(img, l1_bytes / cs, &l1_copy, err);
        if (!ret)
            ret = image_write(img, raw, l1_bytes, l1_copy, "snapshot L1 table", err);
        free(raw);
    }
    if (!ret) {
        ret = add_to_tree(img, img->l1, img->l1_size, 1, err);
        if (ret && l1_bytes)
            refcount_add_range(img, l1_copy, l1_bytes, -1, NULL);
    }
    if (!ret)
        ret = refresh_copied_flags(img, err);
    if (ret)
        return ret;

    struct snapshot *grown = realloc(t->entries, (t->count + 1) * sizeof(*grown));
    if (!grown)
        return image_error(img, err, -ENOMEM, "snapshot table", QCOW2_NO_OFFSET,
                           "out of memory");
    t->entries = grown;
    struct snapshot *s = &t->entries[t->count];
    memset(s, 0, sizeof(*s));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->l1_table_offset = l1_copy;
    s->l1_size = img->l1_size;
    s->date_sec = (uint32_t)now.tv_sec;
    s->date_nsec = (uint32_t)now.tv_nsec;
    s->id = next_snapshot_id(t);
    s->name = strdup(name);
    if (!s->id || !s->name || snapshot_set_extra(s, 0, img->virtual_size, 0)) {
        free(s->id);
        free(s->name);
        free(s->extra_data);
        return image_error(img, err, -ENOMEM, "snapshot table", QCOW2_NO_OFFSET,
                           "out of memory");
    }
    t->count++;
    bool switched;
    ret = replace_table(img, t, &switched, err);
    if (ret && !switched) {
        t->count--;
        free(s->id);
        free(s->name);
        free(s->extra_data);
    }
    return ret;
}

static int index_or_fail(struct qcow2_image *img, uint32_t i, struct qcow2_error *err)
{
    int ret = writable_or_fail(img, err);
    if (!ret && i >= img->snapshots.count)
        ret = image_error(img, err, -ENOENT, "snapshot table", img->hdr.snapshots_offset,
                          "no snapshot at index %" PRIu32 " (the table has %" PRIu32 ")", i,
                          img->snapshots.count);
    return ret;
}

int qcow2_snapshot_apply(struct qcow2_image *img, const char *key, struct qcow2_error *err)
{
    int i = qcow2_snapshot_find_key(img, key, err);
    return i < 0 ? i : qcow2_snapshot_apply_at(img, (uint32_t)i, err);
}

static int snapshot_apply(struct qcow2_image *img, uint32_t i, struct qcow2_error *err);

int qcow2_snapshot_apply_at(struct qcow2_image *img, uint32_t i, struct qcow2_error *err)
{
    int ret = index_or_fail(img, i, err);
    if (ret)
        return ret;
    struct dirty_bracket b;
    ret = bracket_begin(img, &b, err);
    return bracket_end(img, &b, ret ? ret : snapshot_apply(img, i, err), err);
}

static int snapshot_apply(struct qcow2_image *img, uint32_t i, struct qcow2_error *err)
{
    int ret;
    const struct snapshot *s = &img->snapshots.entries[i];
    uint64_t *snap_l1;
    ret = read_snapshot_l1(img, s, &snap_l1, err);
    if (ret)
        return ret;
    /* The recorded size is read from disk: it must be one the header could hold. */
    uint64_t disk_size = snapshot_disk_size(s, img->virtual_size);
    uint64_t l1_limit = QCOW2_MAX_L1_BYTES / 8;
    if (disk_size % 512 || image_l1_entries_for(img, disk_size) > l1_limit) {
        free(snap_l1);
        return image_error(img, err, -EINVAL, "snapshot table entry", s->entry_offset,
                           "snapshot \"%s\" records a disk size of %" PRIu64 " bytes, which "
                           "is not a multiple of 512 or needs more than %" PRIu64
                           " L1 entries", s->name, disk_size, l1_limit);
    }
    /* Then the step that may be refused (a refcount at its maximum): nothing changed yet. */
    ret = image_begin_change(img, err);
    if (!ret)
        ret = add_to_tree(img, snap_l1, s->l1_size, 1, err);
    bool raised = !ret;
    uint64_t old_disk_size = img->virtual_size;
    if (!ret && disk_size != img->virtual_size)
        ret = image_set_size(img, disk_size, err);
    if (!ret)
        ret = image_grow_l1(img, s->l1_size, err);
    uint64_t *old_l1 = NULL;
    uint8_t *raw = NULL;
    bool switched = false;
    uint32_t old_size = img->l1_size;
    if (!ret) {
        old_l1 = malloc((size_t)old_size * 8 + 8);
        raw = calloc(old_size ? old_size : 1, 8);
        if (!old_l1 || !raw)
            ret = image_error(img, err, -ENOMEM, "active L1 table", QCOW2_NO_OFFSET,
                              "out of memory");
    }
    if (!ret) {
        memcpy(old_l1, img->l1, (size_t)old_size * 8);
        for (uint32_t j = 0; j < old_size; j++) {
            img->l1[j] = j < s->l1_size ? l1_entry_with_copied(snap_l1[j], false) : 0;
            be64_put(raw + 8 * j, img->l1[j]);
        }
        ret = image_write_meta(img, raw, (size_t)old_size * 8, img->l1_offset,
                               IMAGE_META_ACTIVE_L1, "active L1 table", err);
        switched = !ret;
        if (!ret)
            ret = image_flush(img, err);
        if (!switched)
            memcpy(img->l1, old_l1, (size_t)old_size * 8);
    }
    if (!ret) {
        ret = add_to_tree(img, old_l1, old_size, -1, err);
    } else if (raised && !switched) {
        /* The active L1 still holds the old tree: give the snapshot's tree its counts back. */
        add_to_tree(img, snap_l1, s->l1_size, -1, NULL);
    }
    /* Nor has the disk then taken the snapshot's size: the old disk, size and bytes. */
    if (!switched && img->virtual_size != old_disk_size)
        image_set_size(img, old_disk_size, NULL);
    if (!ret)
        ret = refresh_copied_flags(img, err);
    img->cluster_buf_word = 0;
    free(raw);
    free(old_l1);
    free(snap_l1);
    return ret;
}

int qcow2_snapshot_delete(struct qcow2_image *img, const char *key, struct qcow2_error *err)
{
    int i = qcow2_snapshot_find_key(img, key, err);
    return i < 0 ? i : qcow2_snapshot_delete_at(img, (uint32_t)i, err);
}

static int snapshot_delete(struct qcow2_image *img, uint32_t i, struct qcow2_error *err);

int qcow2_snapshot_delete_at(struct qcow2_image *img, uint32_t i, struct qcow2_error *err)
{
    int ret = index_or_fail(img, i, err);
    if (ret)
        return ret;
    struct dirty_bracket b;
    ret = bracket_begin(img, &b, err);
    return bracket_end(img, &b, ret ? ret : snapshot_delete(img, i, err), err);
}

static int snapshot_delete(struct qcow2_image *img, uint32_t i, struct qcow2_error *err)
{
    int ret;
    struct snapshot_table *t = &img->snapshots;
    struct snapshot gone = t->entries[i];
    uint64_t *snap_l1 = NULL;
    ret = read_snapshot_l1(img, &gone, &snap_l1, err);
    if (!ret)
        ret = image_begin_change(img, err);
    if (ret) {
        free(snap_l1);
        return ret;
    }
    memmove(&t->entries[i], &t->entries[i + 1], (t->count - (uint32_t)i - 1) * sizeof(gone));
    t->count--;
    bool switched;
    ret = replace_table(img, t, &switched, err);
    if (ret && !switched) {
        memmove(&t->entries[i + 1], &t->entries[i], (t->count - i) * sizeof(gone));
        t->entries[i] = gone;
        t->count++;
        free(snap_l1);
        return ret;
    }
    /* Switched with its flush failed: the disk may still name the snapshot, so keep all. */
    if (!ret)
        ret = add_to_tree(img, snap_l1, gone.l1_size, -1, err);
    uint64_t l1_bytes = round_up_u64((uint64_t)gone.l1_size * 8, img->cluster_size);
    if (!ret && l1_bytes)
        ret = refcount_add_range(img, gone.l1_table_offset, l1_bytes, -1, err);
    if (!ret)
        ret = refresh_copied_flags(img, err);
    free(snap_l1);
    free(gone.id);
    free(gone.name);
    free(gone.extra_data);
    return ret;
}

uint32_t qcow2_snapshot_count(const struct qcow2_image *img)
{
    return img->snapshots.count;
}
