/* SPDX-License-Identifier: BSD-2-Clause */
/* The forwarding backend of io_forward.h. */
#include <errno.h>
#include <stdlib.h>

#include "io_forward.h"

static struct qcow2_backend *inner_of(struct qcow2_backend *b)
{
    return io_forward_of(b)->inner;
}

static int forward_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    struct qcow2_backend *in = inner_of(b);
    return in->ops->read(in, buf, len, off);
}

static int forward_write(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_backend *in = inner_of(b);
    return in->ops->write(in, buf, len, off);
}

static int forward_flush(struct qcow2_backend *b)
{
    struct qcow2_backend *in = inner_of(b);
    return in->ops->flush(in);
}

static int forward_truncate(struct qcow2_backend *b, uint64_t size)
{
    struct qcow2_backend *in = inner_of(b);
    return in->ops->truncate ? in->ops->truncate(in, size) : -ENOTSUP;
}

static int forward_size(struct qcow2_backend *b, uint64_t *size)
{
    struct qcow2_backend *in = inner_of(b);
    return in->ops->size(in, size);
}

static int forward_block_status(struct qcow2_backend *b, uint64_t off, uint64_t len,
                                uint64_t *pnum, bool *is_hole)
{
    struct qcow2_backend *in = inner_of(b);
    return in->ops->block_status(in, off, len, pnum, is_hole);
}

static int forward_allocated_size(struct qcow2_backend *b, uint64_t *bytes)
{
    struct qcow2_backend *in = inner_of(b);
    return in->ops->allocated_size(in, bytes);
}

void io_forward_destroy(struct qcow2_backend *b)
{
    struct io_forward *fw = io_forward_of(b);
    if (fw->owns_inner)
        qcow2_backend_destroy(fw->inner);
    free(fw);
}

void *io_forward_new(size_t size, struct qcow2_backend *inner, bool owns_inner)
{
    struct io_forward *fw = calloc(1, size);
    if (!fw)
        return NULL;
    fw->ops = (struct qcow2_backend_ops){
        .read = forward_read,
        .write = forward_write,
        .flush = forward_flush,
        .truncate = forward_truncate,
        .size = forward_size,
        .block_status = inner->ops->block_status ? forward_block_status : NULL,
        .allocated_size = inner->ops->allocated_size ? forward_allocated_size : NULL,
        .destroy = io_forward_destroy,
    };
    fw->base.ops = &fw->ops;
    fw->inner = inner;
    fw->owns_inner = owns_inner;
    return fw;
}
