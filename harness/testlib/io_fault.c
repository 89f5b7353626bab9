/* SPDX-License-Identifier: BSD-2-Clause */
/* The fault-injecting shim of io_fault.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io_fault.h"
#include "io_forward.h"
#include "torn.h"

struct io_fault_pending {
    uint64_t off;
    size_t len;
    uint8_t *data;
};

struct shim {
    struct io_forward fw;
    struct io_fault *f;
};

static struct shim *shim_of(struct qcow2_backend *b)
{
    return (struct shim *)b;
}

void io_fault_init(struct io_fault *f)
{
    memset(f, 0, sizeof(*f));
    f->error = -EIO;
}

static void drop_pending(struct io_fault *f)
{
    for (size_t i = 0; i < f->n_pending; i++)
        free(f->pending[i].data);
    f->n_pending = 0;
}

void io_fault_fini(struct io_fault *f)
{
    drop_pending(f);
    free(f->pending);
    f->pending = NULL;
    f->pending_cap = 0;
}

/* ---- crash modes: the unflushed writes ------------------------------------------- */

static int buffer_write(struct io_fault *f, const void *buf, size_t len, uint64_t off)
{
    if (f->n_pending == f->pending_cap) {
        size_t cap = f->pending_cap ? f->pending_cap * 2 : 16;
        struct io_fault_pending *p = realloc(f->pending, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        f->pending = p;
        f->pending_cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, buf, len);
    f->pending[f->n_pending++] = (struct io_fault_pending){ off, len, copy };
    return 0;
}

/* Every unflushed write reaches `inner`, oldest first. */
static int land_all(struct io_fault *f, struct qcow2_backend *inner)
{
    int ret = 0;
    for (size_t i = 0; i < f->n_pending && !ret; i++)
        ret = inner->ops->write(inner, f->pending[i].data, f->pending[i].len, f->pending[i].off);
    drop_pending(f);
    return ret;
}

/* splitmix64: TEAR's choices, reproducible from the seed. */
static uint64_t next_choice(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int inner_read(void *ctx, void *buf, size_t len, uint64_t off)
{
    struct qcow2_backend *inner = ctx;
    return inner->ops->read(inner, buf, len, off);
}

static int inner_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_backend *inner = ctx;
    return inner->ops->write(inner, buf, len, off);
}

/*
 * TEAR: each unflushed write reaches the disk whole, not at all, or up to one of the
 * file's sector boundaries inside it, and torn.h lands them sector by sector.
 */
static void land_torn(struct io_fault *f, struct qcow2_backend *inner)
{
    struct torn_write *w = malloc((f->n_pending ? f->n_pending : 1) * sizeof(*w));
    struct torn_file file = { inner_read, inner_write, 0, inner };
    if (!w || inner->ops->size(inner, &file.size)) {
        free(w);
        return;
    }
    uint64_t state = f->seed;
    for (size_t i = 0; i < f->n_pending; i++) {
        const struct io_fault_pending *p = &f->pending[i];
        uint64_t first = (p->off / TORN_SECTOR + 1) * TORN_SECTOR;
        uint64_t cuts = first < p->off + p->len ? (p->off + p->len - 1 - first) / TORN_SECTOR + 1
                                                : 0;
        uint64_t choice = next_choice(&state);
        size_t keep = p->len;
        if (choice % 3 == 1)
            keep = 0;
        else if (choice % 3 == 2 && cuts)
            keep = (size_t)(first + choice / 3 % cuts * TORN_SECTOR - p->off);
        w[i] = (struct torn_write){ p->off, p->len, p->data, keep };
    }
    torn_land(w, f->n_pending, &file);
    free(w);
}

void io_fault_crash_now(struct io_fault *f)
{
    if (f->crashed)
        return;
    f->crashed = true;
    if (f->inner && f->crash == IO_FAULT_CRASH_TEAR)
        land_torn(f, f->inner);
    else if (f->inner && f->crash != IO_FAULT_CRASH_DROP)
        land_all(f, f->inner);
    drop_pending(f);
}

/* ---- the fault ---------------------------------------------------------------------- */

/* Whether this I/O of `kind` fails: counts it, and fires the fault when its turn comes. */
static bool strikes(struct io_fault *f, unsigned kind)
{
    if (f->crashed)
        return true;
    if (f->persistent && f->fired && (kind & (f->mask | IO_FAULT_FLUSH))) {
        f->fired++;
        return true;
    }
    if (!f->armed || !(kind & f->mask))
        return false;
    f->seen++;
    if (f->countdown) {
        f->countdown--;
        return false;
    }
    f->fired++;
    if (!f->persistent)
        f->armed = false;
    if (f->crash != IO_FAULT_NO_CRASH)
        io_fault_crash_now(f);
    return true;
}

static int failure(const struct io_fault *f)
{
    return f->crashed ? -EIO : f->error;
}

static int store(struct io_fault *f, struct qcow2_backend *inner, const void *buf, size_t len,
                 uint64_t off)
{
    if (f->crash != IO_FAULT_NO_CRASH)
        return buffer_write(f, buf, len, off);
    return inner->ops->write(inner, buf, len, off);
}

int io_fault_read(struct io_fault *f, struct qcow2_backend *inner, void *buf, size_t len,
                  uint64_t off)
{
    if (strikes(f, IO_FAULT_READ))
        return failure(f);
    int ret = inner->ops->read(inner, buf, len, off);
    /* What the page cache holds: the unflushed writes over the file's bytes. */
    for (size_t i = 0; !ret && i < f->n_pending; i++) {
        const struct io_fault_pending *p = &f->pending[i];
        uint64_t lo = p->off > off ? p->off : off;
        uint64_t hi = p->off + p->len < off + len ? p->off + p->len : off + len;
        if (lo < hi)
            memcpy((uint8_t *)buf + (lo - off), p->data + (lo - p->off), (size_t)(hi - lo));
    }
    return ret;
}

int io_fault_write(struct io_fault *f, struct qcow2_backend *inner, const void *buf,
                   size_t len, uint64_t off)
{
    if (strikes(f, IO_FAULT_WRITE)) {
        /*
         * Storage writes whole sectors of the file or none: the half is cut back to the
         * file's sector boundary before it (not the write's: a write may start mid-sector).
         */
        uint64_t cut = (off + len / 2) / TORN_SECTOR * TORN_SECTOR;
        if (f->short_write && !f->crashed && cut > off)
            store(f, inner, buf, (size_t)(cut - off), off);
        return failure(f);
    }
    return store(f, inner, buf, len, off);
}

/* ---- the shim ----------------------------------------------------------------------- */

static int shim_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    struct shim *s = shim_of(b);
    if (s->f->read)
        return s->f->read(s->f, s->fw.inner, buf, len, off);
    return io_fault_read(s->f, s->fw.inner, buf, len, off);
}

static int shim_write(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off)
{
    struct shim *s = shim_of(b);
    if (s->f->write)
        return s->f->write(s->f, s->fw.inner, buf, len, off);
    return io_fault_write(s->f, s->fw.inner, buf, len, off);
}

static int shim_flush(struct qcow2_backend *b)
{
    struct shim *s = shim_of(b);
    if (strikes(s->f, IO_FAULT_FLUSH))
        return failure(s->f);
    int ret = land_all(s->f, s->fw.inner);
    return ret ? ret : s->fw.inner->ops->flush(s->fw.inner);
}

static int shim_truncate(struct qcow2_backend *b, uint64_t size)
{
    struct shim *s = shim_of(b);
    if (strikes(s->f, IO_FAULT_TRUNCATE))
        return failure(s->f);
    int ret = land_all(s->f, s->fw.inner);
    return ret ? ret : s->fw.inner->ops->truncate(s->fw.inner, size);
}

static int shim_size(struct qcow2_backend *b, uint64_t *size)
{
    struct shim *s = shim_of(b);
    int ret = s->fw.inner->ops->size(s->fw.inner, size);
    for (size_t i = 0; !ret && i < s->f->n_pending; i++)
        if (s->f->pending[i].off + s->f->pending[i].len > *size)
            *size = s->f->pending[i].off + s->f->pending[i].len;
    if (!ret && *size < s->f->pad_to)
        *size = s->f->pad_to;
    return ret;
}

/* A shim closed without a crash is a clean shutdown: its unflushed writes reach the file. */
static void shim_destroy(struct qcow2_backend *b)
{
    struct shim *s = shim_of(b);
    if (!s->f->crashed)
        land_all(s->f, s->fw.inner);
    if (s->f->inner == s->fw.inner)
        s->f->inner = NULL;
    io_forward_destroy(b);
}

struct qcow2_backend *io_fault_wrap(struct qcow2_backend *inner, bool owns_inner,
                                    struct io_fault *f)
{
    struct shim *s = io_forward_new(sizeof(*s), inner, owns_inner);
    if (!s)
        return NULL;
    s->fw.ops.read = shim_read;
    s->fw.ops.write = shim_write;
    s->fw.ops.flush = shim_flush;
    s->fw.ops.truncate = shim_truncate;
    s->fw.ops.size = shim_size;
    s->fw.ops.destroy = shim_destroy;
    /* Block status would not see the writes a crash mode holds back: "all data" then. */
    if (f->crash != IO_FAULT_NO_CRASH)
        s->fw.ops.block_status = NULL;
    s->f = f;
    f->inner = inner;
    return &s->fw.base;
}
