/* SPDX-License-Identifier: BSD-2-Clause */
/* An in-memory file, for fuzzing and tests: the same seam as a real file. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qcow2.h"

/*
 * The file's bytes live in one private anonymous mapping of max_len bytes (rounded up to
 * pages) made at the start: growing never copies, and pages the file never reached cost
 * nothing. Past `dirty` the mapping has never been written, so it reads as zeros.
 */
struct mem_backend {
    struct qcow2_backend base;
    uint8_t *data;
    size_t len;
    size_t dirty;               /* bytes [dirty, max_len) were never written: zeros */
    size_t mapped;
    size_t max_len;
};

static struct mem_backend *mem_of(struct qcow2_backend *b)
{
    return (struct mem_backend *)b;
}

/*
 * One mapping kept from the last backend destroyed, its written bytes zeroed again, for
 * the next one of the same size: the fuzzers make one backend per input, and a fresh
 * mapping costs a page fault for every page the image touches. Its size is kept in its
 * first bytes (zeroed when it is taken). Only a mapping that was written little is kept:
 * zeroing much costs more than the faults it saves.
 */
#define SPARE_MAX_DIRTY (8u << 20)

static _Atomic(uint8_t *) spare;

static void spare_drop(uint8_t *p)
{
    if (p) {
        size_t mapped;
        memcpy(&mapped, p, sizeof(mapped));
        munmap(p, mapped);
    }
}

static uint8_t *spare_take(size_t mapped)
{
    uint8_t *p = atomic_exchange(&spare, NULL);
    size_t size;
    if (p && (memcpy(&size, p, sizeof(size)), size == mapped)) {
        memset(p, 0, sizeof(size));
        return p;
    }
    spare_drop(p);
    return NULL;
}

static void spare_keep(struct mem_backend *m)
{
    if (m->dirty > SPARE_MAX_DIRTY) {
        munmap(m->data, m->mapped);
        return;
    }
    memset(m->data, 0, m->dirty);
    memcpy(m->data, &m->mapped, sizeof(m->mapped));
    spare_drop(atomic_exchange(&spare, m->data));
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

/* A longer file reads as zeros past its old end; a shorter one forgets what it cut. */
static int mem_set_length(struct mem_backend *m, size_t len)
{
    if (len > m->max_len)
        return -ENOSPC;
    if (len > m->len && m->dirty > m->len)
        memset(m->data + m->len, 0, (len < m->dirty ? len : m->dirty) - m->len);
    if (len > m->dirty)
        m->dirty = len;
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
    struct mem_backend *m = mem_of(b);
    if (m->data)
        spare_keep(m);
    free(m);
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
    long page = sysconf(_SC_PAGESIZE);
    size_t unit = page > 0 ? (size_t)page : 4096u;
    m->mapped = max_len > SIZE_MAX - unit ? 0 : (max_len + unit) / unit * unit;
    void *p = m->mapped ? spare_take(m->mapped) : NULL;
    if (!p)
        p = m->mapped ? mmap(NULL, m->mapped, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                      : MAP_FAILED;
    if (p == MAP_FAILED) {
        free(m);
        return -ENOMEM;
    }
    m->data = p;
    if (len)
        memcpy(m->data, data, len);
    m->len = m->dirty = len;
    *out = &m->base;
    return 0;
}

const uint8_t *qcow2_backend_mem_data(struct qcow2_backend *b, size_t *len)
{
    *len = mem_of(b)->len;
    return mem_of(b)->data;
}
