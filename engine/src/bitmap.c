/* SPDX-License-Identifier: BSD-2-Clause */
#include "bitmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "image.h"

/* Byte offsets inside one directory entry. */
enum {
    BME_TABLE_OFFSET = 0,
    BME_TABLE_SIZE = 8,
    BME_FLAGS = 12,
    BME_TYPE = 16,
    BME_GRANULARITY = 17,
    BME_NAME_SIZE = 18,
    BME_EXTRA_SIZE = 20,
};

#define BME_FLAG_IN_USE 0x1u
#define BME_RESERVED_FLAGS 0xFFFFFFF8u
#define BME_TYPE_DIRTY_TRACKING 1u
#define BME_MIN_GRANULARITY 9u
#define BME_MAX_GRANULARITY 31u
#define BME_MAX_NAME 1023u
#define BME_MAX_TABLE_BYTES_COVERED (512ull << 20)

bool bitmap_entry_decode(const uint8_t *dir, uint64_t size, uint64_t pos,
                         struct bitmap_entry_fields *f)
{
    if (!span_fits(size, pos, BITMAP_ENTRY_FIXED_BYTES))
        return false;
    const uint8_t *e = dir + pos;
    f->table_offset = be64_get(e + BME_TABLE_OFFSET);
    f->table_size = be32_get(e + BME_TABLE_SIZE);
    f->flags = be32_get(e + BME_FLAGS);
    f->type = e[BME_TYPE];
    f->granularity_bits = e[BME_GRANULARITY];
    f->name_size = be16_get(e + BME_NAME_SIZE);
    f->extra_size = be32_get(e + BME_EXTRA_SIZE);
    f->length = round_up_u64(BITMAP_ENTRY_FIXED_BYTES + (uint64_t)f->extra_size + f->name_size, 8);
    return true;
}

static int check_entry(struct qcow2_image *img, const struct bitmap_entry_fields *f, uint64_t at,
                       struct qcow2_error *err)
{
    uint64_t table_offset = f->table_offset;
    uint32_t table_size = f->table_size;
    uint32_t flags = f->flags;
    uint8_t type = f->type;
    uint8_t gran = f->granularity_bits;
    uint16_t name_size = f->name_size;
    uint32_t extra = f->extra_size;
    const char *what = "bitmap directory entry";

    if (table_size == 0 || table_size > BITMAP_MAX_TABLE_ENTRIES)
        return image_error(img, err, -EINVAL, what, at,
                           "bitmap table size %" PRIu32 " outside 1..%u", table_size,
                           BITMAP_MAX_TABLE_ENTRIES);
    if (table_offset == 0 || table_offset % img->cluster_size)
        return image_error(img, err, -EINVAL, what, at,
                           "bitmap table offset 0x%" PRIx64 " is zero or not cluster-aligned",
                           table_offset);
    if (type != BME_TYPE_DIRTY_TRACKING)
        return image_error(img, err, -EINVAL, what, at,
                           "type %u is not 1 (dirty tracking)", type);
    if (gran < BME_MIN_GRANULARITY || gran > BME_MAX_GRANULARITY)
        return image_error(img, err, -EINVAL, what, at,
                           "granularity_bits %u outside %u..%u", gran, BME_MIN_GRANULARITY,
                           BME_MAX_GRANULARITY);
    if (flags & BME_RESERVED_FLAGS)
        return image_error(img, err, -EINVAL, what, at,
                           "reserved flag bits set in 0x%08" PRIx32, flags);
    if (name_size == 0 || name_size > BME_MAX_NAME)
        return image_error(img, err, -EINVAL, what, at, "name size %u outside 1..%u",
                           name_size, BME_MAX_NAME);
    if (extra)
        return image_error(img, err, -ENOTSUP, what, at,
                           "%" PRIu32 " bytes of extra data; bitmap extra data is not "
                           "supported",
                           extra);
    uint64_t covered = (uint64_t)table_size * img->cluster_size;
    if (covered > BME_MAX_TABLE_BYTES_COVERED)
        return image_error(img, err, -EINVAL, what, at,
                           "bitmap data of %" PRIu64 " bytes exceeds the limit of %llu",
                           covered, BME_MAX_TABLE_BYTES_COVERED);
    if (!(flags & BME_FLAG_IN_USE) && (covered * 8u) << gran < img->virtual_size)
        return image_error(img, err, -EINVAL, what, at,
                           "bitmap (not in use) covers less than the virtual size %" PRIu64,
                           img->virtual_size);
    return 0;
}

/* How many of a table's entries lie (at least partly) inside the file: the rest read as 0. */
static uint64_t entries_in_file(const struct qcow2_image *img, uint64_t offset, uint64_t entries)
{
    if (offset >= img->file_size)
        return 0;
    return QVET_MIN(entries, (img->file_size - offset + 7) / 8);
}

/* What QEMU checks when it loads a bitmap that is not in use: every table entry. */
static int check_table(struct qcow2_image *img, const struct bitmap *bm, struct qcow2_error *err)
{
    uint64_t n = entries_in_file(img, bm->table_offset, bm->table_size);
    if (!n)
        return 0;
    uint8_t *raw = malloc((size_t)n * 8u);
    if (!raw)
        return image_error(img, err, -ENOMEM, "bitmap table", bm->table_offset,
                           "out of memory for %" PRIu64 " entries", n);
    int ret = image_read(img, raw, (size_t)n * 8u, bm->table_offset, "bitmap table", err);
    for (uint64_t i = 0; i < n && !ret; i++) {
        uint64_t entry = be64_get(raw + 8 * i);
        const char *problem = bitmap_table_entry_problem(entry, img->cluster_size);
        if (problem)
            ret = image_error(img, err, -EINVAL, "bitmap table entry",
                              bm->table_offset + 8 * i,
                              "entry %" PRIu64 " of bitmap \"%s\" (0x%016" PRIx64 "): %s", i,
                              bm->name, entry, problem);
    }
    free(raw);
    return ret;
}

/* Loads the entry at dir[pos..] (its fixed part already decoded into f). */
static int load_entry(struct qcow2_image *img, const uint8_t *dir, uint64_t size, uint64_t pos,
                      const struct bitmap_entry_fields *f, uint32_t index, struct bitmap *bm,
                      uint64_t *next, struct qcow2_error *err)
{
    uint64_t at = img->hdr.bitmap_directory_offset + pos;
    int ret = check_entry(img, f, at, err);
    if (ret)
        return ret;
    uint64_t len = f->length;
    if (!span_fits(size, pos, len))
        return image_error(img, err, -EINVAL, "bitmap directory entry", at,
                           "entry %" PRIu32 " (%" PRIu64 " bytes) runs past the directory's end "
                           "(%" PRIu64 " bytes)",
                           index, len, size);
    const uint8_t *name = dir + pos + BITMAP_ENTRY_FIXED_BYTES;
    size_t shown = strnlen((const char *)name, f->name_size);
    bm->name = malloc(shown + 1);
    if (!bm->name)
        return image_error(img, err, -ENOMEM, "bitmap directory entry", at, "out of memory");
    memcpy(bm->name, name, shown);
    bm->name[shown] = '\0';
    bm->table_offset = f->table_offset;
    bm->table_size = f->table_size;
    bm->flags = f->flags;
    bm->granularity_bits = f->granularity_bits;
    *next = pos + len;
    return (bm->flags & BME_FLAG_IN_USE) ? 0 : check_table(img, bm, err);
}

int bitmap_directory_load(struct qcow2_image *img, struct qcow2_error *err)
{
    const struct header *h = &img->hdr;
    uint64_t off = h->bitmap_directory_offset;
    uint64_t size = h->bitmap_directory_size;
    if (!span_fits(img->file_size, off, size))
        return image_error(img, err, -EINVAL, "bitmap directory", off,
                           "%" PRIu64 " bytes run past the end of the file (%" PRIu64
                           " bytes)",
                           size, img->file_size);
    /* The count sizes an allocation: first make sure the directory could hold that many. */
    if ((uint64_t)h->nb_bitmaps * BITMAP_ENTRY_FIXED_BYTES > size)
        return image_error(img, err, -EINVAL, "bitmap directory", off,
                           "%" PRIu32 " entries of at least %u bytes cannot fit in its %" PRIu64
                           " bytes",
                           h->nb_bitmaps, BITMAP_ENTRY_FIXED_BYTES, size);
    uint8_t *dir = malloc(size ? size : 1);
    struct bitmap_directory *d = &img->bitmaps;
    d->entries = calloc(h->nb_bitmaps, sizeof(*d->entries));
    if (!dir || !d->entries) {
        free(dir);
        return image_error(img, err, -ENOMEM, "bitmap directory", off, "out of memory");
    }
    int ret = image_read(img, dir, size, off, "bitmap directory", err);
    uint64_t pos = 0;
    for (uint32_t i = 0; !ret && i < h->nb_bitmaps; i++) {
        struct bitmap_entry_fields f;
        if (!bitmap_entry_decode(dir, size, pos, &f)) {
            ret = image_error(img, err, -EINVAL, "bitmap directory", off,
                              "holds %" PRIu32 " entries, but the header says %" PRIu32, i,
                              h->nb_bitmaps);
            break;
        }
        d->count = i + 1;
        ret = load_entry(img, dir, size, pos, &f, i, &d->entries[i], &pos, err);
    }
    if (!ret && pos != size)
        ret = image_error(img, err, -EINVAL, "bitmap directory", off,
                          "entries take %" PRIu64 " bytes, but the header says %" PRIu64, pos,
                          size);
    free(dir);
    if (ret)
        bitmap_directory_release(d);
    return ret;
}

void bitmap_directory_release(struct bitmap_directory *d)
{
    for (uint32_t i = 0; i < d->count; i++)
        free(d->entries[i].name);
    free(d->entries);
    d->entries = NULL;
    d->count = 0;
}
