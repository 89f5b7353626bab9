/* SPDX-License-Identifier: BSD-2-Clause */
#include "refcount.h"

#include <errno.h>
#include <inttypes.h>

#include "bytes.h"
#include "cache.h"
#include "image.h"

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

int refcount_get(struct qcow2_image *img, uint64_t cluster_index, uint64_t *refcount,
                 struct qcow2_error *err)
{
    uint32_t block_bits = refcount_block_bits(img->geo.cluster_bits, img->hdr.refcount_order);
    uint64_t table_index = cluster_index >> block_bits;
    *refcount = 0;
    if (table_index >= img->reftable_size)
        return 0;
    uint64_t entry = img->reftable[table_index];
    if (entry & REFTABLE_ENTRY_RESERVED_MASK)
        return image_error(img, err, -EIO, "refcount table entry",
                           img->hdr.refcount_table_offset + 8 * table_index,
                           "reserved bits set in 0x%016" PRIx64, entry);
    uint64_t block_offset = entry & REFTABLE_ENTRY_OFFSET_MASK;
    if (!block_offset)
        return 0;
    if (block_offset % img->cluster_size)
        return image_error(img, err, -EIO, "refcount table entry",
                           img->hdr.refcount_table_offset + 8 * table_index,
                           "refcount block offset 0x%" PRIx64 " is not cluster-aligned",
                           block_offset);
    if (block_offset > img->file_size || img->file_size - block_offset < img->cluster_size)
        return image_error(img, err, -EIO, "refcount table entry",
                           img->hdr.refcount_table_offset + 8 * table_index,
                           "refcount block at 0x%" PRIx64 " runs past the end of the file "
                           "(%" PRIu64 " bytes)",
                           block_offset, img->file_size);
    const uint8_t *block;
    int ret = cache_get(img->refblock_cache, img->backend, block_offset, &block);
    if (ret)
        return image_error(img, err, ret, "refcount block", block_offset, "read failed");
    uint64_t index = cluster_index & ((1ull << block_bits) - 1);
    *refcount = refcount_block_entry(block, img->hdr.refcount_order, index);
    return 0;
}
