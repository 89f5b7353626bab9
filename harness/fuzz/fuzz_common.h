/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Pieces the fuzz targets share. Each target is one file with LLVMFuzzerTestOneInput and
 * reaches the engine only through qcow2.h; this header holds the helpers that bound the
 * work an input can ask for (however it lies about sizes) and the backing openers that
 * keep a fuzz run from ever touching a file.
 *
 * An engine error return is never a finding. A finding is a crash, a leak, a hang, a
 * sanitizer report, or one of the few invariants the targets assert with fuzz_fail()
 * (a write path that turns a consistent image into a corrupt one, or data that does not
 * read back as written).
 */
#ifndef QVET_FUZZ_COMMON_H
#define QVET_FUZZ_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The name every fuzz image is opened under. Its directory does not exist, so the
 * engine's realpath() calls resolve nothing, and a relative backing name resolves into
 * that same missing directory.
 */
#define FUZZ_IMAGE_NAME "/nonexistent-qvet-fuzz/input.qcow2"

/* Bounds on the work one input may cause. */
#define FUZZ_MAP_CALLS 1024u            /* qcow2_map_status calls per walk */
#define FUZZ_READ_CALLS 1024u           /* qcow2_pread calls per walk */
#define FUZZ_READ_BYTES (2u << 20)      /* guest bytes read per walk */
#define FUZZ_READ_CHUNK (64u << 10)     /* bytes per qcow2_pread */
#define FUZZ_CACHE_BYTES (256u << 10)   /* metadata cache: small, so eviction is exercised */

__attribute__((noreturn, format(printf, 1, 2))) static void fuzz_fail(const char *fmt, ...);

#include <stdarg.h>
static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qvet fuzz invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* With QVET_FUZZ_DEBUG set, a target narrates what it did (for triage of one input). */
__attribute__((format(printf, 1, 2))) static inline void fuzz_debug(const char *fmt, ...)
{
    static int on = -1;
    if (on < 0)
        on = getenv("QVET_FUZZ_DEBUG") != NULL;
    if (!on)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A backing opener that refuses everything: no file is ever opened. */
static inline int fuzz_refuse_backing(void *ctx, const char *path, struct qcow2_backend **out,
                                      struct qcow2_error *err)
{
    (void)ctx;
    (void)path;
    *out = NULL;
    memset(err, 0, sizeof(*err));
    err->code = -EACCES;
    snprintf(err->message, sizeof(err->message), "backing files are refused while fuzzing");
    return -EACCES;
}

/*
 * A read-only view of bytes the caller keeps (no copy): what every read-only open of a
 * fuzz target uses, since copying a large input for each open would dominate the run.
 */
struct fuzz_view {
    struct qcow2_backend base;
    const uint8_t *data;
    size_t len;
};

static inline int fuzz_view_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    const struct fuzz_view *v = (const struct fuzz_view *)b;
    size_t have = off < v->len ? v->len - (size_t)off : 0;
    size_t n = len < have ? len : have;
    if (n)
        memcpy(buf, v->data + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

static inline int fuzz_view_write(struct qcow2_backend *b, const void *buf, size_t len,
                                  uint64_t off)
{
    (void)b;
    (void)buf;
    (void)len;
    (void)off;
    return -EROFS;
}

static inline int fuzz_view_flush(struct qcow2_backend *b)
{
    (void)b;
    return 0;
}

static inline int fuzz_view_truncate(struct qcow2_backend *b, uint64_t size)
{
    (void)b;
    (void)size;
    return -EROFS;
}

static inline int fuzz_view_size(struct qcow2_backend *b, uint64_t *size)
{
    *size = ((const struct fuzz_view *)b)->len;
    return 0;
}

static inline void fuzz_view_destroy(struct qcow2_backend *b)
{
    free(b);
}

static const struct qcow2_backend_ops fuzz_view_ops = {
    .read = fuzz_view_read,
    .write = fuzz_view_write,
    .flush = fuzz_view_flush,
    .truncate = fuzz_view_truncate,
    .size = fuzz_view_size,
    .destroy = fuzz_view_destroy,
};

/*
 * An empty qcow2 image (1 MiB, no backing file), made once: the end of every chain a
 * fuzz target opens, so that a chain always resolves without touching a file.
 */
static inline const uint8_t *fuzz_empty_image(size_t *len)
{
    static uint8_t *bytes;
    static size_t bytes_len;
    if (!bytes) {
        struct qcow2_backend *b;
        struct qcow2_create_options o;
        struct qcow2_error err;
        qcow2_create_options_init(&o);
        o.size = 1u << 20;
        o.has_size = true;
        o.cluster_size = 4096;
        if (qcow2_backend_mem_new(NULL, 0, 1u << 20, &b))
            fuzz_fail("out of memory for the empty image");
        if (qcow2_create_backend(b, "empty.qcow2", &o, &err))
            fuzz_fail("cannot create the empty image: %s", err.message);
        size_t n;
        const uint8_t *p = qcow2_backend_mem_data(b, &n);
        bytes = malloc(n ? n : 1);
        if (!bytes)
            fuzz_fail("out of memory for the empty image");
        memcpy(bytes, p, n);
        bytes_len = n;
        qcow2_backend_destroy(b);
    }
    *len = bytes_len;
    return bytes;
}

/*
 * A backing opener that serves an in-memory copy of some bytes (the input itself) for
 * the first `uses` requests, then the empty image: a chain of bounded depth, read from
 * memory only.
 */
struct fuzz_backing_ctx {
    const uint8_t *data;
    size_t size;
    unsigned uses;
};

static inline int fuzz_memory_backing(void *vctx, const char *path, struct qcow2_backend **out,
                                      struct qcow2_error *err)
{
    struct fuzz_backing_ctx *ctx = vctx;
    (void)path;
    const uint8_t *data = ctx ? ctx->data : NULL;
    size_t size = ctx ? ctx->size : 0;
    if (ctx && ctx->uses)
        ctx->uses--;
    else
        data = fuzz_empty_image(&size);
    struct fuzz_view *v = calloc(1, sizeof(*v));
    if (!v) {
        memset(err, 0, sizeof(*err));
        err->code = -ENOMEM;
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -ENOMEM;
    }
    v->base.ops = &fuzz_view_ops;
    v->data = data;
    v->len = size;
    *out = &v->base;
    return 0;
}

/*
 * Opens bytes as an image: read-only opens see the caller's bytes in place (they must
 * outlive the image), writable ones a fresh in-memory copy of at most max_len bytes.
 */
static inline int fuzz_open_mem(const uint8_t *data, size_t size, size_t max_len,
                                const struct qcow2_open_options *opts, struct qcow2_image **img)
{
    struct qcow2_backend *b;
    struct qcow2_error err;
    *img = NULL;
    if (opts && opts->writable) {
        if (qcow2_backend_mem_new(data, size, max_len, &b))
            return -ENOMEM;
    } else {
        struct fuzz_view *v = calloc(1, sizeof(*v));
        if (!v)
            return -ENOMEM;
        v->base.ops = &fuzz_view_ops;
        v->data = data;
        v->len = size;
        b = &v->base;
    }
    int ret = qcow2_open_backend(b, FUZZ_IMAGE_NAME, opts, img, &err);
    if (ret) {
        fuzz_debug("open%s%s%s failed: %s", opts && opts->writable ? " writable" : "",
                   opts && opts->for_check ? " for check" : "",
                   opts && opts->snapshot ? " snapshot" : "", err.message);
        /* The message must be one complete, terminated line. */
        if (strnlen(err.message, sizeof(err.message)) == sizeof(err.message))
            fuzz_fail("error message not terminated (code %d)", ret);
        if (ret >= 0)
            fuzz_fail("open failed with a non-negative code %d", ret);
        if (*img)
            fuzz_fail("open failed (%d) but returned an image", ret);
    }
    return ret;
}

/* ------------------------------------------------------------------------------------ */
/* A backend that forwards to a memory backend it does not own, and can fail on demand   */

struct fault_backend {
    struct qcow2_backend base;
    struct qcow2_backend *inner;
    bool armed;                     /* fail every write after `writes_left` more */
    uint32_t writes_left;
    bool failed;                    /* a write or flush has been refused */
    uint64_t pad_to;                /* report at least this size (zeros past the end) */
};

static inline struct fault_backend *fault_of(struct qcow2_backend *b)
{
    return (struct fault_backend *)b;
}

static inline bool fault_hit(struct fault_backend *f)
{
    if (f->failed)
        return true;
    if (!f->armed)
        return false;
    if (f->writes_left == 0) {
        f->failed = true;
        return true;
    }
    f->writes_left--;
    return false;
}

static inline int fault_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    struct qcow2_backend *in = fault_of(b)->inner;
    return in->ops->read(in, buf, len, off);
}

static inline int fault_write(struct qcow2_backend *b, const void *buf, size_t len,
                              uint64_t off)
{
    struct fault_backend *f = fault_of(b);
    if (fault_hit(f))
        return -EIO;
    return f->inner->ops->write(f->inner, buf, len, off);
}

static inline int fault_flush(struct qcow2_backend *b)
{
    struct fault_backend *f = fault_of(b);
    if (f->failed)
        return -EIO;
    return f->inner->ops->flush(f->inner);
}

static inline int fault_truncate(struct qcow2_backend *b, uint64_t size)
{
    struct fault_backend *f = fault_of(b);
    if (fault_hit(f))
        return -EIO;
    return f->inner->ops->truncate(f->inner, size);
}

static inline int fault_size(struct qcow2_backend *b, uint64_t *size)
{
    struct fault_backend *f = fault_of(b);
    int ret = f->inner->ops->size(f->inner, size);
    if (!ret && *size < f->pad_to)
        *size = f->pad_to;
    return ret;
}

static inline void fault_destroy(struct qcow2_backend *b)
{
    free(b);
}

static const struct qcow2_backend_ops fault_ops = {
    .read = fault_read,
    .write = fault_write,
    .flush = fault_flush,
    .truncate = fault_truncate,
    .size = fault_size,
    .destroy = fault_destroy,
};

/*
 * Opens the image in `inner` through a fault backend, so that `inner` stays the caller's
 * (its bytes outlive qcow2_close). `fault` may be NULL.
 */
static inline int fuzz_open_over(struct qcow2_backend *inner,
                                 const struct qcow2_open_options *opts,
                                 struct fault_backend **fault, struct qcow2_image **img)
{
    struct qcow2_error err;
    *img = NULL;
    struct fault_backend *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->base.ops = &fault_ops;
    f->inner = inner;
    if (fault)
        *fault = f;
    int ret = qcow2_open_backend(&f->base, FUZZ_IMAGE_NAME, opts, img, &err);
    if (ret)
        fuzz_debug("open%s%s failed: %s", opts->writable ? " writable" : "",
                   opts->for_check ? " for check" : "", err.message);
    if (ret && fault)
        *fault = NULL;
    return ret;
}

/* Touches every string and number qcow2_get_info returns, as a consumer would. */
static inline size_t fuzz_touch_info(const struct qcow2_image *img)
{
    struct qcow2_info info;
    if (qcow2_get_info(img, &info))
        return 0;
    size_t sum = info.virtual_size + info.file_size + info.cluster_size + info.refcount_bits;
    sum += info.version + info.snapshot_count + info.bitmap_count;
    if (info.filename)
        sum += strlen(info.filename);
    if (info.backing_name)
        sum += strlen(info.backing_name);
    if (info.backing_path)
        sum += strlen(info.backing_path);
    if (info.backing_format)
        sum += strlen(info.backing_format);
    if (info.format == QCOW2_FORMAT_QCOW2) {
        if (info.version != 2 && info.version != 3)
            fuzz_fail("info: version %" PRIu32, info.version);
        if (info.cluster_size < 512 || info.cluster_size > (2u << 20) ||
            (info.cluster_size & (info.cluster_size - 1)))
            fuzz_fail("info: cluster size %" PRIu32, info.cluster_size);
        if (info.refcount_bits < 1 || info.refcount_bits > 64)
            fuzz_fail("info: refcount bits %" PRIu32, info.refcount_bits);
        if (info.virtual_size % 512)
            fuzz_fail("info: virtual size %" PRIu64 " not a sector multiple",
                      info.virtual_size);
    }
    return sum;
}

/* Every snapshot's facts; returns how many were listed. */
static inline uint32_t fuzz_list_snapshots(const struct qcow2_image *img, size_t *sum)
{
    uint32_t n = qcow2_snapshot_count(img);
    for (uint32_t i = 0; i < n; i++) {
        struct qcow2_snapshot_info s;
        if (qcow2_snapshot_get(img, i, &s))
            fuzz_fail("snapshot %" PRIu32 " of %" PRIu32 " cannot be listed", i, n);
        *sum += strlen(s.id) + strlen(s.name) + s.l1_size + (size_t)s.disk_size;
    }
    struct qcow2_snapshot_info s;
    if (qcow2_snapshot_get(img, n, &s) != -ENOENT)
        fuzz_fail("snapshot %" PRIu32 " past the end of the table is listed", n);
    return n;
}

/* Lists every persistent bitmap, as `qvet info` does; returns how many. */
static inline uint32_t fuzz_list_bitmaps(const struct qcow2_image *img, size_t *sum)
{
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    struct qcow2_bitmap_info b;
    for (uint32_t i = 0; i < info.bitmap_count; i++) {
        if (qcow2_bitmap_get(img, i, &b))
            fuzz_fail("bitmap %" PRIu32 " of %" PRIu32 " cannot be listed", i,
                      info.bitmap_count);
        if (!b.granularity || (b.granularity & (b.granularity - 1)))
            fuzz_fail("bitmap %" PRIu32 " has granularity %" PRIu64, i, b.granularity);
        *sum += strlen(b.name) + b.flags;
    }
    if (qcow2_bitmap_get(img, info.bitmap_count, &b) != -ENOENT)
        fuzz_fail("bitmap %" PRIu32 " past the end of the directory is listed",
                  info.bitmap_count);
    return info.bitmap_count;
}

/*
 * Walks qcow2_map_status from guest offset 0 and reads every run it reports (data,
 * compressed, zero and backing alike), within the FUZZ_* budgets; `buf` holds
 * FUZZ_READ_CHUNK bytes. Returns false once the engine reported an error.
 */
static inline bool fuzz_walk_and_read(struct qcow2_image *img, uint8_t *buf,
                                      uint32_t read_budget)
{
    struct qcow2_error err;
    uint64_t vsize = qcow2_virtual_size(img);
    uint64_t off = 0;
    uint32_t read_calls = 0;
    uint64_t read_bytes = 0;
    for (unsigned calls = 0; off < vsize && calls < FUZZ_MAP_CALLS; calls++) {
        struct qcow2_map_entry e;
        int ret = qcow2_map_status(img, off, vsize - off, &e, &err);
        if (ret)
            return false;
        if (e.start != off || e.length == 0 || e.length > vsize - off)
            fuzz_fail("map_status at %" PRIu64 " returned run %" PRIu64 "+%" PRIu64
                      " (virtual size %" PRIu64 ")", off, e.start, e.length, vsize);
        /* Read the run, but no more than a chunk per run, so that one huge run of zeros
         * cannot eat the whole budget. */
        uint64_t want = e.length < FUZZ_READ_CHUNK ? e.length : FUZZ_READ_CHUNK;
        if (read_calls < FUZZ_READ_CALLS && read_bytes + want <= read_budget) {
            read_calls++;
            read_bytes += want;
            if (qcow2_pread(img, buf, (size_t)want, off, &err))
                return false;
            /* memcmp, not a byte loop: the fuzzer's comparison hooks would make a loop
             * over every byte read the most expensive part of a run. */
            static const uint8_t zeros[FUZZ_READ_CHUNK];
            if (e.zero && memcmp(buf, zeros, (size_t)want)) {
                uint64_t i = 0;
                while (!buf[i])
                    i++;
                fuzz_fail("map says %" PRIu64 "+%" PRIu64 " reads as zeros, byte %" PRIu64
                          " is 0x%02x", e.start, e.length, off + i, buf[i]);
            }
        }
        off += e.length;
    }
    return true;
}

/* Runs qcow2_check and makes sure its result is self-consistent. */
struct fuzz_check_lines {
    unsigned count;
};

static inline void fuzz_check_report(void *ctx, const char *line)
{
    struct fuzz_check_lines *l = ctx;
    l->count++;
    if (!line || strlen(line) > 4096)
        fuzz_fail("check report line missing or too long");
}

static inline int fuzz_check(struct qcow2_image *img, enum qcow2_repair repair,
                             struct qcow2_check_result *res)
{
    struct qcow2_error err;
    struct fuzz_check_lines lines = { 0 };
    memset(res, 0, sizeof(*res));
    int ret = qcow2_check(img, repair, res, fuzz_check_report, &lines, &err);
    if (ret)
        fuzz_debug("check (repair %d) failed: %s", (int)repair, err.message);
    else
        fuzz_debug("check (repair %d): %" PRIu64 " corruptions, %" PRIu64 " leaks, %" PRIu64
                   " check errors, %" PRIu64 "+%" PRIu64 " fixed", (int)repair,
                   res->corruptions, res->leaks, res->check_errors, res->corruptions_fixed,
                   res->leaks_fixed);
    if (ret > 0)
        fuzz_fail("qcow2_check returned positive %d", ret);
    if (!ret) {
        int status = qcow2_check_exit_status(res);
        if (status < 0 || status > 3)
            fuzz_fail("check exit status %d", status);
    }
    return ret;
}

/* A small deterministic byte pattern for writes. */
static inline void fuzz_fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1u;
    for (size_t i = 0; i < len; i++) {
        if ((i & 63) == 0)
            x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16) ^ (uint8_t)(i >> 6);
    }
}

#endif
