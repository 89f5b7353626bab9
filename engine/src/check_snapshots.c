/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The snapshot table as QEMU's check reads it (snapshot.c's tolerant mode, entry by entry
 * through a window over the file, since a damaged table may span far more than a valid
 * one may hold) and writes it back after a repair (snapshot.c's encoder).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "checker.h"
#include "header_io.h"
#include "refcount.h"
#include "snapshot.h"
#include "sync.h"

/* QEMU stops reading a table that spans more than an int holds. */
#define CHECK_SNAPSHOT_MAX_SPAN 0x7FFFFFFFull

void check_snaps_free(struct check_ctx *c)
{
    snapshot_table_release(&c->snaps);
    memset(&c->snaps, 0, sizeof(c->snaps));
    c->snaps_offset = 0;
    c->snaps_size = 0;
}

/* Reads the kept extra data, the id and the name of an entry whose fixed part is known. */
static int check_take_entry(struct check_ctx *c, struct check_reader *r, struct snapshot *s,
                            const struct snapshot_entry_layout *l, uint64_t entry_pos)
{
    uint8_t *extra = malloc(l->kept_extra ? l->kept_extra : 1);
    uint8_t *id = malloc(l->id_size ? l->id_size : 1u);
    uint8_t *name = malloc(l->name_size ? l->name_size : 1u);
    int ret = extra && id && name ? 0 : -ENOMEM;
    uint64_t id_pos = entry_pos + snapshot_entry_id_pos(l);
    if (!ret)
        ret = check_reader_get(c, r, extra, l->kept_extra, entry_pos + SNAPSHOT_FIXED_BYTES);
    if (!ret)
        ret = check_reader_get(c, r, id, l->id_size, id_pos);
    if (!ret)
        ret = check_reader_get(c, r, name, l->name_size, id_pos + l->id_size);
    if (!ret)
        ret = snapshot_entry_take(s, l, SNAPSHOT_TOLERANT, extra, id, name);
    free(extra);
    free(id);
    free(name);
    return ret;
}

/*
 * Decodes the entries (QEMU's layout rules: each entry starts 8-aligned, the table's
 * size ends after the last name). With `repair`, extra data over 1024 bytes is cut
 * and a table over 64 MiB loses its trailing entries; otherwise either is fatal.
 */
static int check_parse_snaps(struct check_ctx *c, uint32_t count, bool repair,
                             uint32_t *reduced, uint32_t *dropped)
{
    struct check_reader r = { 0 };
    struct snapshot_table *t = &c->snaps;
    t->entries = calloc(count ? count : 1, sizeof(*t->entries));
    if (!t->entries)
        return -ENOMEM;
    enum snapshot_parse_mode mode = SNAPSHOT_TOLERANT;
    uint64_t start = c->snaps_offset, offset = start, table_length = 0;
    int ret = 0;
    uint32_t i;
    for (i = 0; i < count; i++) {
        struct snapshot *s = &t->entries[i];
        uint64_t pre = offset;
        table_length = round_up_u64(table_length, 8);
        offset = round_up_u64(offset, 8);
        uint8_t fixed[SNAPSHOT_FIXED_BYTES];
        ret = check_reader_get(c, &r, fixed, sizeof(fixed), offset);
        if (ret)
            break;
        struct snapshot_entry_layout l;
        s->entry_offset = offset;
        snapshot_entry_decode_fixed(fixed, mode, s, &l);
        if (l.kept_extra < l.stored_extra) {
            if (!repair) {
                check_say(c, "ERROR failed to read the snapshot table: Too much extra metadata "
                          "in snapshot table entry %" PRIu32 " (repair with -r all)", i);
                ret = -EFBIG;
                break;
            }
            check_say(c, "Discarding too much extra metadata in snapshot table entry %" PRIu32
                      " (%" PRIu32 " > %u)", i, l.stored_extra, SNAPSHOT_MAX_EXTRA_DATA);
            (*dropped)++;
        }
        uint64_t entry_pos = offset;
        offset += snapshot_entry_id_pos(&l) + l.id_size + l.name_size;
        table_length += snapshot_entry_kept_bytes(&l);
        if (table_length > SNAPSHOT_MAX_TABLE_BYTES || offset - start > CHECK_SNAPSHOT_MAX_SPAN) {
            if (!repair) {
                check_say(c, "ERROR failed to read the snapshot table: Snapshot table is too "
                          "big (%" PRIu32 " overhanging snapshots; repair with -r all)",
                          count - i);
                ret = -EFBIG;
                break;
            }
            check_say(c, "Discarding %" PRIu32 " overhanging snapshots (snapshot table is too "
                      "big)", count - i);
            *reduced += count - i;
            offset = pre;
            break;
        }
        t->count = i + 1;
        ret = check_take_entry(c, &r, s, &l, entry_pos);
        if (ret)
            break;
    }
    free(r.win);
    if (ret) {
        check_snaps_free(c);
        return ret;
    }
    t->count = i;
    c->snaps_size = offset - start;
    return 0;
}

int check_read_snapshots(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    check_snaps_free(c);
    uint32_t count = img->hdr.nb_snapshots;
    uint64_t offset = img->hdr.snapshots_offset;
    uint32_t reduced = 0, dropped = 0;
    if (count > QCOW2_MAX_SNAPSHOTS && (c->fix & CHECK_FIX_ERRORS)) {
        check_say(c, "Discarding %" PRIu32 " overhanging snapshots", count - QCOW2_MAX_SNAPSHOTS);
        reduced += count - QCOW2_MAX_SNAPSHOTS;
        count = QCOW2_MAX_SNAPSHOTS;
    }
    if (count > QCOW2_MAX_SNAPSHOTS ||
        (uint64_t)INT64_MAX - (uint64_t)count * SNAPSHOT_FIXED_BYTES < offset ||
        offset % c->cs) {
        res->check_errors++;
        check_say(c, "ERROR snapshot table %s", count > QCOW2_MAX_SNAPSHOTS ? "too large"
                                                                              : "offset invalid");
        if (count > QCOW2_MAX_SNAPSHOTS)
            check_say(c, "You can force-remove all %" PRIu32 " overhanging snapshots with "
                      "check -r all", count - QCOW2_MAX_SNAPSHOTS);
        return count > QCOW2_MAX_SNAPSHOTS ? -EFBIG : -EINVAL;
    }
    c->snaps_offset = offset;
    int ret = check_parse_snaps(c, count, (c->fix & CHECK_FIX_ERRORS) != 0, &reduced, &dropped);
    if (ret) {
        res->check_errors++;
        if (ret != -EFBIG)
            check_say(c, "ERROR failed to read the snapshot table: %s", strerror(-ret));
        return ret;
    }
    res->corruptions += (uint64_t)reduced + dropped;
    if (reduced) {
        struct qcow2_error e;
        ret = header_write_snapshot_count(img, c->snaps.count, &e);
        if (ret) {
            res->check_errors++;
            check_say(c, "ERROR failed to update the snapshot count in the image header: %s",
                      e.message);
            return ret;
        }
        res->corruptions_fixed += reduced;
        res->corruptions -= reduced;
    }
    if (img->hdr.version >= 3) {
        for (uint32_t i = 0; i < c->snaps.count; i++) {
            if (c->snaps.entries[i].extra_data_size < SNAPSHOT_V3_MIN_EXTRA_DATA) {
                res->corruptions++;
                check_say(c, "%s snapshot table entry %" PRIu32 " is incomplete",
                          (c->fix & CHECK_FIX_ERRORS) ? "Repairing" : "ERROR", i);
            }
        }
    }
    return 0;
}

int check_write_snapshots(struct check_ctx *c, struct qcow2_error *err)
{
    struct qcow2_image *img = c->img;
    struct snapshot_table *t = &c->snaps;
    for (uint32_t i = 0; i < t->count; i++)
        if (snapshot_complete_extra(&t->entries[i], img->virtual_size))
            return image_error(img, err, -ENOMEM, "snapshot table", QCOW2_NO_OFFSET,
                               "out of memory");
    uint64_t size = snapshot_table_unpadded_size(t);
    if (size > SNAPSHOT_MAX_TABLE_BYTES)
        return image_error(img, err, -EFBIG, "snapshot table", c->snaps_offset,
                           "the rewritten table would pass %u bytes", SNAPSHOT_MAX_TABLE_BYTES);
    uint8_t *buf = calloc(1, (size_t)snapshot_table_size(t) + 8);
    if (!buf)
        return image_error(img, err, -ENOMEM, "snapshot table", QCOW2_NO_OFFSET,
                           "out of memory");
    snapshot_table_encode(t, buf);
    uint64_t new_offset = 0;
    img->free_cluster_hint = 0;
    img->compressed_next = 0;
    /*
     * The repairs before this freed clusters (leaks): a sync puts the frees on disk, so
     * that the allocator may hand those clusters out again, and the table lands where
     * qemu-img's repair puts it.
     */
    int ret = image_sync(img, err);
    if (!ret && size)
        ret = refcount_alloc(img, check_div_up(size, c->cs), &new_offset, err);
    if (!ret)
        ret = header_switch_table(img, HEADER_TABLE_SNAPSHOTS, buf, (size_t)size, new_offset,
                                  t->count, "snapshot table", err);
    if (ret) {
        free(buf);
        return ret;
    }
    uint64_t old_offset = c->snaps_offset, old_size = c->snaps_size;
    c->snaps_offset = new_offset;
    c->snaps_size = size;
    if (old_size) {
        struct qcow2_error e;
        if (refcount_add_range(img, old_offset, old_size, -1, &e))
            check_say(c, "ERROR could not free the old snapshot table: %s", e.message);
    }
    /* The engine's copy of the table follows the new one. */
    struct snapshot_table loaded;
    struct qcow2_error e;
    if (snapshot_table_parse(buf, size, new_offset, t->count, img->name, &loaded, &e)) {
        check_say(c, "ERROR the rewritten snapshot table cannot be loaded: %s", e.message);
        memset(&loaded, 0, sizeof(loaded));
    }
    snapshot_table_release(&img->snapshots);
    img->snapshots = loaded;
    free(buf);
    return 0;
}
