/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The image's file: the only place the engine calls its backend's operations for an open
 * image, so that every failure becomes one message naming the image and the structure.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "error.h"
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

int image_write(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                const char *structure, struct qcow2_error *err)
{
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
