/* SPDX-License-Identifier: BSD-2-Clause */
#include "bitmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

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
    BME_FIXED_BYTES = 24,
};

#define BME_FLAG_IN_USE 0x1u
#define BME_RESERVED_FLAGS 0xFFFFFFF8u
#define BME_TYPE_DIRTY_TRACKING 1u
#define BME_MIN_GRANULARITY 9u
#define BME_MAX_GRANULARITY 31u
#define BME_MAX_NAME 1023u
#define BME_MAX_TABLE_ENTRIES 0x8000000u
#define BME_MAX_TABLE_BYTES_COVERED (512ull << 20)

static int check_entry(struct qcow2_image *img, const uint8_t *e, uint64_t at,
                       struct qcow2_error *err)
{
    uint64_t table_offset = be64_get(e + BME_TABLE_OFFSET);
    uint32_t table_size = be32_get(e + BME_TABLE_SIZE);
    uint32_t flags = be32_get(e + BME_FLAGS);
    uint8_t type = e[BME_TYPE];
    uint8_t gran = e[BME_GRANULARITY];
    uint16_t name_size = be16_get(e + BME_NAME_SIZE);
    uint32_t extra = be32_get(e + BME_EXTRA_SIZE);
    const char *what = "bitmap directory entry";

    if (table_size == 0 || table_size > BME_MAX_TABLE_ENTRIES)
        return image_error(img, err, -EINVAL, what, at,
                           "bitmap table size %" PRIu32 " outside 1..%u", table_size,
                           BME_MAX_TABLE_ENTRIES);
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

int bitmap_directory_check(struct qcow2_image *img, struct qcow2_error *err)
{
    const struct header *h = &img->hdr;
    uint64_t off = h->bitmap_directory_offset;
    uint64_t size = h->bitmap_directory_size;
    if (!span_fits(img->file_size, off, size))
        return image_error(img, err, -EINVAL, "bitmap directory", off,
                           "%" PRIu64 " bytes run past the end of the file (%" PRIu64
                           " bytes)",
                           size, img->file_size);
    uint8_t *dir = malloc(size ? size : 1);
    if (!dir)
        return image_error(img, err, -ENOMEM, "bitmap directory", off, "out of memory");
    int ret = image_read(img, dir, size, off, "bitmap directory", err);
    uint64_t pos = 0;
    uint32_t i = 0;
    for (; !ret && i < h->nb_bitmaps; i++) {
        if (!span_fits(size, pos, BME_FIXED_BYTES)) {
            ret = image_error(img, err, -EINVAL, "bitmap directory", off,
                              "holds %" PRIu32 " entries, but the header says %" PRIu32, i,
                              h->nb_bitmaps);
            break;
        }
        const uint8_t *e = dir + pos;
        ret = check_entry(img, e, off + pos, err);
        uint64_t len = round_up_u64(BME_FIXED_BYTES + (uint64_t)be32_get(e + BME_EXTRA_SIZE) +
                                        be16_get(e + BME_NAME_SIZE), 8);
        if (!ret && !span_fits(size, pos, len))
            ret = image_error(img, err, -EINVAL, "bitmap directory entry", off + pos,
                              "entry %" PRIu32 " runs past the directory's end", i);
        pos += len;
    }
    if (!ret && pos != size)
        ret = image_error(img, err, -EINVAL, "bitmap directory", off,
                          "entries take %" PRIu64 " bytes, but the header says %" PRIu64, pos,
                          size);
    free(dir);
    return ret;
}
