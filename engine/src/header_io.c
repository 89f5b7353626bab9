/* SPDX-License-Identifier: BSD-2-Clause */
/* Header field writes of an open image (see header_io.h). */
#include "header_io.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "bitmap.h"
#include "bytes.h"
#include "image.h"
#include "sync.h"

static int write_field(struct qcow2_image *img, const uint8_t *raw, size_t len, uint64_t at,
                       struct qcow2_error *err)
{
    return image_write_meta(img, raw, len, at, IMAGE_META_HEADER, "header", err);
}

int header_switch_table(struct qcow2_image *img, enum header_table which, const void *table,
                        size_t len, uint64_t at, uint64_t count, const char *structure,
                        struct qcow2_error *err)
{
    /* A rebuilt refcount table may reuse the old one's clusters: it replaces that table. */
    enum image_meta own = which == HEADER_TABLE_REFCOUNT ? IMAGE_META_REFTABLE : IMAGE_META_NONE;
    int ret = len ? image_write_meta(img, table, len, at, own, structure, err) : 0;
    /* The table, the refcounts of its clusters and what it names come first. */
    if (!ret)
        ret = image_sync(img, err);
    if (ret)
        return ret;
    uint8_t fields[12];
    struct header *h = &img->hdr;
    switch (which) {
    case HEADER_TABLE_L1:
        be32_put(fields, (uint32_t)count);
        be64_put(fields + 4, at);
        ret = write_field(img, fields, sizeof(fields), HEADER_OFF_L1_SIZE, err);
        if (!ret) {
            h->l1_size = (uint32_t)count;
            h->l1_table_offset = at;
        }
        break;
    case HEADER_TABLE_REFCOUNT:
        be64_put(fields, at);
        be32_put(fields + 8, (uint32_t)count);
        ret = write_field(img, fields, sizeof(fields), HEADER_OFF_REFTABLE_OFFSET, err);
        if (!ret) {
            h->refcount_table_offset = at;
            h->refcount_table_clusters = (uint32_t)count;
        }
        break;
    case HEADER_TABLE_SNAPSHOTS:
        be32_put(fields, (uint32_t)count);
        be64_put(fields + 4, at);
        ret = write_field(img, fields, sizeof(fields), HEADER_OFF_NB_SNAPSHOTS, err);
        if (!ret) {
            h->nb_snapshots = (uint32_t)count;
            h->snapshots_offset = at;
        }
        break;
    }
    return ret ? ret : image_flush(img, err);
}

bool header_table_is_at(const struct qcow2_image *img, enum header_table which, uint64_t at)
{
    switch (which) {
    case HEADER_TABLE_L1:
        return img->hdr.l1_table_offset == at;
    case HEADER_TABLE_REFCOUNT:
        return img->hdr.refcount_table_offset == at;
    case HEADER_TABLE_SNAPSHOTS:
        return img->hdr.snapshots_offset == at;
    }
    return false;
}

/* Writes a u64 field and, when `flush`, flushes it; *mirror (img->hdr's copy) follows. */
static int write_u64_field(struct qcow2_image *img, uint64_t at, uint64_t value, bool flush,
                           uint64_t *mirror, struct qcow2_error *err)
{
    uint8_t raw[8];
    be64_put(raw, value);
    int ret = write_field(img, raw, sizeof(raw), at, err);
    if (!ret && flush)
        ret = image_flush(img, err);
    if (!ret)
        *mirror = value;
    return ret;
}

int header_write_snapshot_count(struct qcow2_image *img, uint32_t count,
                                struct qcow2_error *err)
{
    uint8_t raw[4];
    be32_put(raw, count);
    int ret = write_field(img, raw, sizeof(raw), HEADER_OFF_NB_SNAPSHOTS, err);
    if (!ret)
        ret = image_flush(img, err);
    if (!ret)
        img->hdr.nb_snapshots = count;
    return ret;
}

int header_write_size(struct qcow2_image *img, uint64_t size, struct qcow2_error *err)
{
    return write_u64_field(img, HEADER_OFF_SIZE, size, false, &img->hdr.size, err);
}

/* Writes the incompatible feature bits, flushed. */
static int write_incompat(struct qcow2_image *img, uint64_t features, struct qcow2_error *err)
{
    return write_u64_field(img, HEADER_OFF_INCOMPAT, features, true,
                           &img->hdr.incompatible_features, err);
}

int header_clear_incompat(struct qcow2_image *img, uint64_t bits, struct qcow2_error *err)
{
    if (!(img->hdr.incompatible_features & bits))
        return 0;
    /* What the bit vouches for must be on disk before the bit goes. */
    int ret = image_sync(img, err);
    return ret ? ret : write_incompat(img, img->hdr.incompatible_features & ~bits, err);
}

int header_write_autoclear(struct qcow2_image *img, uint64_t bits, struct qcow2_error *err)
{
    return write_u64_field(img, HEADER_OFF_AUTOCLEAR, bits, true,
                           &img->hdr.autoclear_features, err);
}

int image_begin_change(struct qcow2_image *img, struct qcow2_error *err)
{
    if (!img->autoclear_pending)
        return 0;
    const struct bitmap_directory *d = &img->bitmaps;
    if (d->count && img->bitmaps_invalidated) {
        const char **names = malloc(d->count * sizeof(*names));
        if (!names)
            return image_error(img, err, -ENOMEM, "image", QCOW2_NO_OFFSET, "out of memory");
        for (uint32_t i = 0; i < d->count; i++)
            names[i] = d->entries[i].name;
        img->bitmaps_invalidated(img->notice_ctx, img->name, names, d->count);
        free(names);
    }
    int ret = header_write_autoclear(img, 0, err);
    if (ret)
        return ret;
    img->autoclear_pending = false;
    bitmap_directory_release(&img->bitmaps);
    return 0;
}

int image_mark_dirty(struct qcow2_image *img, struct qcow2_error *err)
{
    if (!img->lazy_refcounts || (img->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY))
        return 0;
    return write_incompat(img, img->hdr.incompatible_features | QCOW2_INCOMPAT_DIRTY, err);
}

int image_mark_dirty_during(struct qcow2_image *img, bool *marked, struct qcow2_error *err)
{
    *marked = false;
    if (img->hdr.version < 3 || (img->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY))
        return 0;
    int ret = write_incompat(img, img->hdr.incompatible_features | QCOW2_INCOMPAT_DIRTY, err);
    *marked = !ret;
    return ret;
}

int image_mark_clean(struct qcow2_image *img, struct qcow2_error *err)
{
    return header_clear_incompat(img, QCOW2_INCOMPAT_DIRTY, err);
}
