/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The active L1 table of a writable image: its entries, its growth, and the virtual size
 * it must cover.
 */
#include "l1.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "header_io.h"
#include "image.h"
#include "refcount.h"
#include "sync.h"

int image_write_l1_entry(struct qcow2_image *img, uint64_t index, uint64_t value,
                         struct qcow2_error *err)
{
    /* The L2 table it names, and that table's refcount, are on disk first. */
    int ret = l1_entry_l2_offset(value) ? image_sync(img, err) : 0;
    if (ret)
        return ret;
    uint8_t raw[8];
    be64_put(raw, value);
    ret = image_write_meta(img, raw, 8, img->l1_offset + 8 * index, IMAGE_META_ACTIVE_L1,
                           "L1 table entry", err);
    if (!ret)
        img->l1[index] = value;
    return ret;
}

/*
 * As QEMU, only the entries are written, not the rest of their last cluster: a file that
 * ends in the table ends where qemu-img's does.
 */
int image_grow_l1(struct qcow2_image *img, uint32_t entries, struct qcow2_error *err)
{
    if (entries <= img->l1_size)
        return 0;
    if ((uint64_t)entries * 8 > QCOW2_MAX_L1_BYTES)
        return image_error(img, err, -EFBIG, "active L1 table", img->l1_offset,
                           "%" PRIu32 " entries would pass the %u-byte limit", entries,
                           QCOW2_MAX_L1_BYTES);
    uint64_t cs = img->cluster_size;
    uint64_t bytes = round_up_u64((uint64_t)entries * 8, cs);
    uint64_t *l1 = calloc(entries, 8);
    uint8_t *raw = calloc(1, bytes);
    uint64_t at = 0;
    int ret = l1 && raw ? 0 : image_error(img, err, -ENOMEM, "active L1 table",
                                          QCOW2_NO_OFFSET, "out of memory");
    bool allocated = false;
    if (!ret)
        allocated = !(ret = refcount_alloc(img, bytes / cs, &at, err));
    /* A new image has no L1 table yet (img->l1 NULL): nothing to copy. */
    if (!ret && img->l1_size) {
        memcpy(l1, img->l1, (size_t)img->l1_size * 8);
        for (uint32_t i = 0; i < img->l1_size; i++)
            be64_put(raw + 8 * i, l1[i]);
    }
    uint64_t old = img->l1_offset, old_bytes = round_up_u64((uint64_t)img->l1_size * 8, cs);
    if (!ret)
        ret = header_switch_table(img, HEADER_TABLE_L1, raw, (size_t)entries * 8, at, entries,
                                  "active L1 table", err);
    free(raw);
    bool switched = ret && allocated && header_table_is_at(img, HEADER_TABLE_L1, at);
    if (ret && !switched) {
        if (allocated)
            refcount_add_range(img, at, bytes, -1, NULL);
        free(l1);
        return ret;
    }
    free(img->l1);
    img->l1 = l1;
    img->l1_size = entries;
    img->l1_offset = at;
    if (switched)
        return ret;
    return old_bytes ? refcount_add_range(img, old, old_bytes, -1, err) : 0;
}

uint64_t image_l1_entries_for(const struct qcow2_image *img, uint64_t size)
{
    uint32_t shift = img->geo.cluster_bits + geometry_l2_bits(&img->geo);
    return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

int image_reserve_size(struct qcow2_image *img, uint64_t size, struct qcow2_error *err)
{
    uint64_t entries = image_l1_entries_for(img, size);
    if (entries > QCOW2_MAX_L1_BYTES / 8)
        return image_error(img, err, -EFBIG, "header field size", HEADER_OFF_SIZE,
                           "a virtual size of %" PRIu64 " bytes needs %" PRIu64
                           " L1 entries, more than the %u the format allows", size, entries,
                           QCOW2_MAX_L1_BYTES / 8);
    return image_grow_l1(img, (uint32_t)entries, err);
}

int image_set_size(struct qcow2_image *img, uint64_t size, struct qcow2_error *err)
{
    int ret = image_reserve_size(img, size, err);
    if (ret)
        return ret;
    ret = header_write_size(img, size, err);
    if (ret)
        return ret;
    img->virtual_size = size;
    return 0;
}
