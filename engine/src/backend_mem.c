/* SPDX-License-Identifier: BSD-2-Clause */
/* An in-memory file, for fuzzing and tests: the same seam as a real file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

struct mem_backend {
    struct qcow2_backend base;
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max_len;
};

static struct mem_backend *mem_of(struct qcow2_backend *b)
{
    return (struct mem_backend *)b;
}

static int mem_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    struct mem_backend *m = mem_of(b);
    size_t have = off < m->len ? m->len - (size_t)off : 0;
    size_t n = len < have ? len : have;
    if (n)
        memcpy(buf, m->data + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

static int mem_reserve(struct mem_backend *m, size_t want)
{
    if (want > m->max_len)
        return -ENOSPC;
    if (want <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 4096;
    while (cap < want)
        cap = cap > m->max_len / 2 ? m->max_len : cap * 2;
    uint8_t *p = realloc(m->data, cap);
    if (!p)
        return -ENOMEM;
    m->data = p;
    m->cap = cap;
    return 0;
}

static int mem_set_length(struct mem_backend *m, size_t len)
{
    int ret = mem_reserve(m, len);
    if (ret)
        return ret;
    if (len > m->len)
        memset(m->data + m->len, 0, len - m->len);
    m->len = len;
    return 0;
}

static int mem_write(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off)
{
    struct mem_backend *m = mem_of(b);
    if (off > m->max_len || len > m->max_len - off)
        return -ENOSPC;
    if (off + len > m->len) {
        int ret = mem_set_length(m, (size_t)(off + len));
        if (ret)
            return ret;
    }
    memcpy(m->data + off, buf, len);
    return 0;
}

static int mem_flush(struct qcow2_backend *b)
{
    (void)b;
    return 0;
}

static int mem_truncate(struct qcow2_backend *b, uint64_t size)
{
    if (size > mem_of(b)->max_len)
        return -ENOSPC;
    return mem_set_length(mem_of(b), (size_t)size);
}

static int mem_size(struct qcow2_backend *b, uint64_t *size)
{
    *size = mem_of(b)->len;
    return 0;
}

static void mem_destroy(struct qcow2_backend *b)
{
    free(mem_of(b)->data);
    free(b);
}

static const struct qcow2_backend_ops mem_ops = {
    .read = mem_read,
    .write = mem_write,
    .flush = mem_flush,
    .truncate = mem_truncate,
    .size = mem_size,
    .destroy = mem_destroy,
};

int qcow2_backend_mem_new(const void *data, size_t len, size_t max_len,
                          struct qcow2_backend **out)
{
    if (max_len < len)
        max_len = len;
    struct mem_backend *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->base.ops = &mem_ops;
    m->max_len = max_len;
    if (mem_set_length(m, len)) {
        free(m);
        return -ENOMEM;
    }
    if (len)
        memcpy(m->data, data, len);
    *out = &m->base;
    return 0;
}

const uint8_t *qcow2_backend_mem_data(struct qcow2_backend *b, size_t *len)
{
    *len = mem_of(b)->len;
    return mem_of(b)->data;
}
