/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The image's file: the only place the engine calls its backend's operations for an open
 * image, so that every failure becomes one message naming the image and the structure.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "bytes.h"
#include "error.h"
#include "header.h"
#include "image.h"

int image_error(const struct qcow2_image *img, struct qcow2_error *err, int code,
                const char *structure, uint64_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = err_vset(err, code, img->name, structure, offset, fmt, ap);
    va_end(ap);
    return ret;
}

int image_read(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
               const char *structure, struct qcow2_error *err)
{
    int ret = img->backend->ops->read(img->backend, buf, len, off);
    if (ret)
        return image_error(img, err, ret, structure, off, "read of %zu bytes failed: %s", len,
                           strerror(-ret));
    return 0;
}

/* True when clusters [first, first+count) meet the bytes [off, off+len). */
static bool meets(uint64_t first, uint64_t count, uint32_t cluster_bits, uint64_t off,
                  uint64_t len)
{
    if (!len)
        return false;
    uint64_t lo = off >> cluster_bits, hi = (off + len - 1) >> cluster_bits;
    return first <= hi && lo < first + count;
}

const char *image_meta_at(const struct qcow2_image *img, uint64_t first, uint64_t count,
                          enum image_meta own)
{
    const struct header *h = &img->hdr;
    uint32_t cb = img->geo.cluster_bits;
    if (own != IMAGE_META_HEADER && first == 0)
        return "the header";
    if (own != IMAGE_META_ACTIVE_L1 &&
        meets(first, count, cb, img->l1_offset, (uint64_t)img->l1_size * 8))
        return "the active L1 table";
    if (own != IMAGE_META_REFTABLE &&
        meets(first, count, cb, h->refcount_table_offset,
              (uint64_t)h->refcount_table_clusters << cb))
        return "the refcount table";
    if (meets(first, count, cb, h->snapshots_offset, img->snapshots.bytes))
        return "the snapshot table";
    for (uint32_t i = 0; i < img->snapshots.count; i++) {
        const struct snapshot *s = &img->snapshots.entries[i];
        if (meets(first, count, cb, s->l1_table_offset, (uint64_t)s->l1_size * 8))
            return "a snapshot's L1 table";
    }
    return NULL;
}

/*
 * Sets the corrupt bit (version 3 only: version 2 has no feature bits), as QEMU does when
 * its overlap check fires, so that no later open writes the image before a repair.
 */
static bool mark_corrupt(struct qcow2_image *img)
{
    struct qcow2_backend *b = img->backend;
    uint64_t features = img->hdr.incompatible_features | QCOW2_INCOMPAT_CORRUPT;
    uint8_t raw[8];
    be64_put(raw, features);
    if (img->hdr.version < 3 || b->ops->write(b, raw, sizeof(raw), HEADER_OFF_INCOMPAT) ||
        b->ops->flush(b))
        return false;
    img->hdr.incompatible_features = features;
    return true;
}

int image_write_meta(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                     enum image_meta own, const char *structure, struct qcow2_error *err)
{
    if (img->overlap_stopped)
        return image_error(img, err, -EIO, structure, off, "not written: an earlier write "
                           "failed the overlap check and the image takes no more writes");
    uint32_t cb = img->geo.cluster_bits;
    const char *hit = len ? image_meta_at(img, off >> cb, ((off + len - 1) >> cb) -
                                          (off >> cb) + 1, own) : NULL;
    if (hit) {
        img->overlap_stopped = true;
        bool marked = mark_corrupt(img);
        return image_error(img, err, -EIO, structure, off, "writing %zu bytes would overwrite "
                           "%s; refused by the overlap check, nothing written, %s", len, hit,
                           marked ? "image marked corrupt (repair with check -r all)"
                                  : "the image takes no more writes");
    }
    int ret = img->backend->ops->write(img->backend, buf, len, off);
    if (ret)
        return image_error(img, err, ret, structure, off, "write of %zu bytes failed: %s", len,
                           strerror(-ret));
    if (off + len > img->file_size)
        img->file_size = off + len;
    img->writes_unflushed++;
    img->writes_total++;
    return 0;
}

int image_write(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                const char *structure, struct qcow2_error *err)
{
    return image_write_meta(img, buf, len, off, IMAGE_META_NONE, structure, err);
}

int image_flush(struct qcow2_image *img, struct qcow2_error *err)
{
    int ret = img->backend->ops->flush(img->backend);
    if (ret)
        return image_error(img, err, ret, "file", QCOW2_NO_OFFSET, "flush failed: %s",
                           strerror(-ret));
    img->writes_unflushed = 0;
    return 0;
}

int image_update_file_size(struct qcow2_image *img, struct qcow2_error *err)
{
    int ret = img->backend->ops->size(img->backend, &img->file_size);
    if (ret)
        return image_error(img, err, ret, "file", QCOW2_NO_OFFSET, "cannot get its size: %s",
                           strerror(-ret));
    return 0;
}

int image_truncate(struct qcow2_image *img, uint64_t size, struct qcow2_error *err)
{
    struct qcow2_backend *b = img->backend;
    int ret = b->ops->truncate ? b->ops->truncate(b, size) : -ENOTSUP;
    if (ret)
        return image_error(img, err, ret, "file", size, "cannot set its length: %s",
                           strerror(-ret));
    return image_update_file_size(img, err);
}

int image_allocated_size(const struct qcow2_image *img, uint64_t *bytes)
{
    struct qcow2_backend *b = img->backend;
    return b->ops->allocated_size ? b->ops->allocated_size(b, bytes) : -ENOTSUP;
}

int image_block_status(struct qcow2_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                       bool *is_hole)
{
    struct qcow2_backend *b = img->backend;
    if (!b->ops->block_status) {
        *pnum = len;
        *is_hole = false;
        return 0;
    }
    return b->ops->block_status(b, off, len, pnum, is_hole);
}
