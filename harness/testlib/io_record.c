/* SPDX-License-Identifier: BSD-2-Clause */
/* The recording shim of io_record.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io_forward.h"
#include "io_record.h"

struct shim {
    struct io_forward fw;
    struct io_record *r;
};

static struct shim *shim_of(struct qcow2_backend *b)
{
    return (struct shim *)b;
}

static struct qcow2_backend *inner_of(struct qcow2_backend *b)
{
    return shim_of(b)->fw.inner;
}

void io_record_init(struct io_record *r)
{
    memset(r, 0, sizeof(*r));
}

void io_record_fini(struct io_record *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->events[i].data);
    free(r->events);
    free(r->initial);
    memset(r, 0, sizeof(*r));
}

static int append(struct io_record *r, enum io_record_kind kind, uint64_t off, const void *data,
                  size_t len)
{
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct io_record_event *e = realloc(r->events, cap * sizeof(*e));
        if (!e)
            return r->error = -ENOMEM;
        r->events = e;
        r->cap = cap;
    }
    uint8_t *copy = NULL;
    if (kind == IO_RECORD_WRITE) {
        copy = malloc(len ? len : 1);
        if (!copy)
            return r->error = -ENOMEM;
        memcpy(copy, data, len);
    }
    r->events[r->count++] = (struct io_record_event){ kind, off, len, copy };
    return 0;
}

/* A write is logged only once the file took it: a failed one never reached the disk. */
static int shim_write(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_backend *in = inner_of(b);
    int ret = in->ops->write(in, buf, len, off);
    return ret ? ret : append(shim_of(b)->r, IO_RECORD_WRITE, off, buf, len);
}

static int shim_flush(struct qcow2_backend *b)
{
    struct qcow2_backend *in = inner_of(b);
    int ret = in->ops->flush(in);
    return ret ? ret : append(shim_of(b)->r, IO_RECORD_FLUSH, 0, NULL, 0);
}

static int shim_truncate(struct qcow2_backend *b, uint64_t size)
{
    struct qcow2_backend *in = inner_of(b);
    if (!in->ops->truncate)
        return -ENOTSUP;
    int ret = in->ops->truncate(in, size);
    return ret ? ret : append(shim_of(b)->r, IO_RECORD_TRUNCATE, size, NULL, 0);
}

static int read_initial(struct qcow2_backend *inner, struct io_record *r)
{
    uint64_t size;
    int ret = inner->ops->size(inner, &size);
    if (ret)
        return ret;
    r->initial = malloc(size ? size : 1);
    if (!r->initial)
        return -ENOMEM;
    r->initial_len = (size_t)size;
    return inner->ops->read(inner, r->initial, (size_t)size, 0);
}

struct qcow2_backend *io_record_wrap(struct qcow2_backend *inner, struct io_record *r)
{
    struct shim *s = io_forward_new(sizeof(*s), inner, true);
    if (!s || (!r->started && read_initial(inner, r))) {
        free(s);
        qcow2_backend_destroy(inner);
        return NULL;
    }
    r->started = true;
    /* Reads, sizes and block status pass through: they change nothing a crash keeps. */
    s->fw.ops.write = shim_write;
    s->fw.ops.flush = shim_flush;
    s->fw.ops.truncate = shim_truncate;
    s->r = r;
    return &s->fw.base;
}

int io_record_apply(const struct io_record_event *e, size_t keep, uint8_t **buf, size_t *len)
{
    if (e->kind == IO_RECORD_FLUSH)
        return 0;
    size_t need = e->kind == IO_RECORD_TRUNCATE ? (size_t)e->off : (size_t)e->off + keep;
    if (e->kind == IO_RECORD_TRUNCATE || need > *len) {
        uint8_t *grown = realloc(*buf, need ? need : 1);
        if (!grown)
            return -ENOMEM;
        if (need > *len)
            memset(grown + *len, 0, need - *len);
        *buf = grown;
        if (e->kind == IO_RECORD_TRUNCATE || need > *len)
            *len = need;
    }
    if (e->kind == IO_RECORD_WRITE)
        memcpy(*buf + e->off, e->data, keep);
    return 0;
}

int io_record_replay(const struct io_record *r, size_t n, uint8_t **out, size_t *len)
{
    *len = r->initial_len;
    *out = malloc(*len ? *len : 1);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, r->initial, *len);
    for (size_t i = 0; i < n && i < r->count; i++) {
        const struct io_record_event *e = &r->events[i];
        int ret = io_record_apply(e, e->len, out, len);
        if (ret) {
            free(*out);
            *out = NULL;
            return ret;
        }
    }
    return 0;
}
