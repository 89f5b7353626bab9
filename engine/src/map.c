/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Allocation status with the meaning QEMU's block layer gives it, so that `qvet map`
 * and `qemu-img map` can be diffed: per layer, what the format says, then (for raw
 * layers, and for qcow2 layers QEMU guesses to be metadata-preallocated) what the host
 * file says about holes.
 */
#include <errno.h>
#include <string.h>

#include "bytes.h"
#include "cluster.h"
#include "image.h"
#include "refcount.h"

enum {
    STATUS_DATA = 1 << 0,
    STATUS_ZERO = 1 << 1,
    STATUS_OFFSET_VALID = 1 << 2,
    STATUS_ALLOCATED = 1 << 3,
};

struct layer_status {
    unsigned flags;
    uint64_t bytes;
    uint64_t host_offset;
};

/* The host file's view of [off, off+len): data or hole, as QEMU's file driver sees it. */
static int host_status(struct qcow2_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                       bool *is_hole, bool *at_eof)
{
    /* The file driver counts whole sectors: its length is the file's, rounded up. */
    uint64_t end = round_up_u64(img->file_size, 512);
    if (off >= end) {
        *pnum = 0;
        *is_hole = true;
        *at_eof = true;
        return 0;
    }
    len = QVET_MIN(len, end - off);
    int ret = image_block_status(img, off, len, pnum, is_hole);
    if (ret)
        return ret;
    if (*pnum == 0 || *pnum > len)
        *pnum = len;
    *at_eof = off + *pnum == end;
    return 0;
}

/*
 * QEMU's guess that an image was created with preallocation=metadata: clearly more
 * clusters carry a refcount than the host file really stores.
 */
static bool looks_metadata_preallocated(struct qcow2_image *img)
{
    uint64_t allocated;
    if (image_allocated_size(img, &allocated))
        return false;
    uint64_t real_clusters = allocated / img->cluster_size;
    uint64_t threshold = QVET_MAX(real_clusters * 10 / 9, real_clusters + 2);
    uint64_t end_cluster = round_up_u64(img->file_size, img->cluster_size) >> img->geo.cluster_bits;
    uint64_t counted = 0;
    for (uint64_t i = 0; i < end_cluster && counted < threshold; i++) {
        uint64_t refcount;
        if (refcount_get(img, i, &refcount, NULL))
            return false;
        counted += refcount != 0;
    }
    return counted >= threshold;
}

static int raw_layer_status(struct qcow2_image *img, uint64_t off, uint64_t len,
                            struct layer_status *s, struct qcow2_error *err)
{
    uint64_t pnum;
    bool hole, eof;
    int ret = host_status(img, off, len, &pnum, &hole, &eof);
    if (ret)
        return image_error(img, err, ret, "host file", off, "block status query failed");
    s->bytes = pnum ? pnum : len;
    s->flags = (hole ? STATUS_ZERO : STATUS_DATA) | STATUS_OFFSET_VALID | STATUS_ALLOCATED;
    s->host_offset = off;
    return 0;
}

static int qcow2_layer_status(struct qcow2_image *img, uint64_t off, uint64_t len,
                              struct layer_status *s, struct qcow2_error *err)
{
    struct host_range r;
    int ret = cluster_get_host_range(img, off, len, &r, err);
    if (ret)
        return ret;
    s->bytes = r.bytes;
    s->host_offset = r.host_offset;
    switch (r.type) {
    case SUBCLUSTER_NORMAL:
        s->flags = STATUS_DATA | STATUS_OFFSET_VALID;
        break;
    case SUBCLUSTER_ZERO_ALLOC:
        s->flags = STATUS_ZERO | STATUS_OFFSET_VALID;
        break;
    case SUBCLUSTER_UNALLOCATED_ALLOC:
        s->flags = STATUS_OFFSET_VALID;
        break;
    case SUBCLUSTER_ZERO_PLAIN:
        s->flags = STATUS_ZERO;
        break;
    case SUBCLUSTER_COMPRESSED:
        s->flags = STATUS_DATA;
        break;
    default:
        s->flags = 0;
        break;
    }

    if (s->flags & (STATUS_DATA | STATUS_ZERO)) {
        s->flags |= STATUS_ALLOCATED;
    } else if (!img->backing || off >= img->backing->virtual_size) {
        s->flags |= STATUS_ZERO;
    }

    if (s->flags == (STATUS_DATA | STATUS_OFFSET_VALID | STATUS_ALLOCATED)) {
        if (img->metadata_preallocation < 0)
            img->metadata_preallocation = looks_metadata_preallocated(img);
        if (img->metadata_preallocation) {
            uint64_t pnum;
            bool hole, eof;
            ret = host_status(img, s->host_offset, s->bytes, &pnum, &hole, &eof);
            if (ret)
                return image_error(img, err, ret, "host file", s->host_offset,
                                   "block status query failed");
            if (eof && (pnum == 0 || hole)) {
                s->flags |= STATUS_ZERO;
            } else {
                s->bytes = pnum;
                if (hole)
                    s->flags |= STATUS_ZERO;
            }
        }
    }
    return 0;
}

int qcow2_map_status(struct qcow2_image *img, uint64_t off, uint64_t len,
                     struct qcow2_map_entry *entry, struct qcow2_error *err)
{
    if (off >= img->virtual_size || len == 0)
        return image_error(img, err, -EINVAL, "map request", QCOW2_NO_OFFSET,
                           "offset %llu is past the virtual size %llu",
                           (unsigned long long)off, (unsigned long long)img->virtual_size);
    len = QVET_MIN(len, img->virtual_size - off);
    struct layer_status s = { 0 };
    uint32_t depth = 0;
    struct qcow2_image *layer = img;
    for (;;) {
        /* A layer is only asked about offsets below its size (the one above saw to it). */
        len = QVET_MIN(len, layer->virtual_size - off);
        int ret = layer->format == QCOW2_FORMAT_RAW
                      ? raw_layer_status(layer, off, len, &s, err)
                      : qcow2_layer_status(layer, off, len, &s, err);
        if (ret)
            return ret;
        len = s.bytes;
        if ((s.flags & (STATUS_DATA | STATUS_ZERO)) || !layer->backing)
            break;
        layer = layer->backing;
        depth++;
    }
    *entry = (struct qcow2_map_entry){
        .start = off,
        .length = len,
        .depth = depth,
        .present = (s.flags & STATUS_ALLOCATED) != 0,
        .zero = (s.flags & STATUS_ZERO) != 0,
        .data = (s.flags & STATUS_DATA) != 0,
        .has_offset = (s.flags & STATUS_OFFSET_VALID) != 0,
        .offset = (s.flags & STATUS_OFFSET_VALID) ? s.host_offset : 0,
    };
    return 0;
}

bool qcow2_map_entries_mergeable(const struct qcow2_map_entry *a,
                                 const struct qcow2_map_entry *b)
{
    if (a->length == 0)
        return false;
    if (a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
        a->present != b->present || a->has_offset != b->has_offset)
        return false;
    return !a->has_offset || a->offset + a->length == b->offset;
}
