/* SPDX-License-Identifier: BSD-2-Clause */
/* The fuzz targets' shared helpers (helpers.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

int fuzz_refuse_backing(void *ctx, const char *path, struct qcow2_backend **out,
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
struct view {
    struct qcow2_backend base;
    const uint8_t *data;
    size_t len;
};

static int view_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    const struct view *v = (const struct view *)b;
    size_t have = off < v->len ? v->len - (size_t)off : 0;
    size_t n = len < have ? len : have;
    if (n)
        memcpy(buf, v->data + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

static int view_write(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off)
{
    (void)b;
    (void)buf;
    (void)len;
    (void)off;
    return -EROFS;
}

static int view_flush(struct qcow2_backend *b)
{
    (void)b;
    return 0;
}

static int view_truncate(struct qcow2_backend *b, uint64_t size)
{
    (void)b;
    (void)size;
    return -EROFS;
}

static int view_size(struct qcow2_backend *b, uint64_t *size)
{
    *size = ((const struct view *)b)->len;
    return 0;
}

static void view_destroy(struct qcow2_backend *b)
{
    free(b);
}

static const struct qcow2_backend_ops view_ops = {
    .read = view_read,
    .write = view_write,
    .flush = view_flush,
    .truncate = view_truncate,
    .size = view_size,
    .destroy = view_destroy,
};

/* A view of bytes the caller keeps; NULL when out of memory. */
static struct qcow2_backend *new_view(const uint8_t *data, size_t len)
{
    struct view *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->base.ops = &view_ops;
    v->data = data;
    v->len = len;
    return &v->base;
}

/*
 * An empty qcow2 image (1 MiB, no backing file), made once: the end of every chain a
 * fuzz target opens, so that a chain always resolves without touching a file.
 */
static const uint8_t *fuzz_empty_image(size_t *len)
{
    static uint8_t *bytes;
    static size_t bytes_len;
    if (!bytes) {
        struct qcow2_backend *b = fuzz_create_mem("cluster_size=4k", 1u << 20, 1u << 20);
        bytes = fuzz_bytes_of(b, &bytes_len);
        qcow2_backend_destroy(b);
    }
    *len = bytes_len;
    return bytes;
}

struct qcow2_backend *fuzz_create_mem(const char *options, uint64_t size, size_t max_len)
{
    struct qcow2_create_options o;
    struct qcow2_error err;
    char text[256];
    qcow2_create_options_init(&o);
    snprintf(text, sizeof(text), "%s", options);
    if (qcow2_create_options_parse(&o, text, &err))
        fuzz_fail("create -o %s: %s", options, err.message);
    o.size = size;
    o.has_size = true;
    struct qcow2_backend *mem;
    if (qcow2_backend_mem_new(NULL, 0, max_len, &mem))
        fuzz_fail("out of memory for a new image");
    if (qcow2_create_backend(mem, FUZZ_IMAGE_NAME, &o, &err))
        fuzz_fail("create -o %s: %s", options, err.message);
    return mem;
}

uint8_t *fuzz_bytes_of(struct qcow2_backend *mem, size_t *len)
{
    const uint8_t *p = qcow2_backend_mem_data(mem, len);
    uint8_t *copy = malloc(*len ? *len : 1);
    if (!copy)
        fuzz_fail("out of memory for a copy of %zu bytes", *len);
    memcpy(copy, p, *len);
    return copy;
}

int fuzz_memory_backing(void *vctx, const char *path, struct qcow2_backend **out,
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
    if (!(*out = new_view(data, size))) {
        memset(err, 0, sizeof(*err));
        err->code = -ENOMEM;
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* fuzz_open_mem, with the engine's error. */
static int open_mem(const uint8_t *data, size_t size, size_t max_len,
                    const struct qcow2_open_options *opts, struct qcow2_image **img,
                    struct qcow2_error *err)
{
    struct qcow2_backend *b;
    *img = NULL;
    if (opts && opts->writable) {
        if (qcow2_backend_mem_new(data, size, max_len, &b))
            return -ENOMEM;
    } else {
        if (!(b = new_view(data, size)))
            return -ENOMEM;
    }
    int ret = qcow2_open_backend(b, FUZZ_IMAGE_NAME, opts, img, err);
    if (ret) {
        fuzz_debug("open%s%s%s failed: %s", opts && opts->writable ? " writable" : "",
                   opts && opts->for_check ? " for check" : "",
                   opts && opts->snapshot ? " snapshot" : "", err->message);
        /* The message must be one complete, terminated line. */
        if (strnlen(err->message, sizeof(err->message)) == sizeof(err->message))
            fuzz_fail("error message not terminated (code %d)", ret);
        if (ret >= 0)
            fuzz_fail("open failed with a non-negative code %d", ret);
        if (*img)
            fuzz_fail("open failed (%d) but returned an image", ret);
    }
    return ret;
}

int fuzz_open_mem(const uint8_t *data, size_t size, size_t max_len,
                  const struct qcow2_open_options *opts, struct qcow2_image **img)
{
    struct qcow2_error err;
    return open_mem(data, size, max_len, opts, img, &err);
}

int fuzz_open_over(struct qcow2_backend *inner, const struct qcow2_open_options *opts,
                   struct io_fault *fault, struct qcow2_image **img)
{
    static struct io_fault no_fault;
    struct qcow2_error err;
    *img = NULL;
    struct qcow2_backend *shim = io_fault_wrap(inner, false, fault ? fault : &no_fault);
    if (!shim)
        return -ENOMEM;
    int ret = qcow2_open_backend(shim, FUZZ_IMAGE_NAME, opts, img, &err);
    if (ret)
        fuzz_debug("open%s%s failed: %s", opts->writable ? " writable" : "",
                   opts->for_check ? " for check" : "", err.message);
    return ret;
}

size_t fuzz_touch_info(const struct qcow2_image *img)
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

uint32_t fuzz_list_snapshots(const struct qcow2_image *img, size_t *sum)
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

uint32_t fuzz_list_bitmaps(const struct qcow2_image *img, size_t *sum)
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

bool fuzz_walk_and_read(struct qcow2_image *img, uint32_t read_budget)
{
    static uint8_t buf[FUZZ_READ_CHUNK];
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

/* The check's report lines, each of which must be one bounded line. */
struct fuzz_check_lines {
    unsigned count;
};

static void fuzz_check_report(void *ctx, const char *line)
{
    struct fuzz_check_lines *l = ctx;
    l->count++;
    if (!line || strlen(line) > 4096)
        fuzz_fail("check report line missing or too long");
}

int fuzz_check(struct qcow2_image *img, enum qcow2_repair repair,
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

void fuzz_fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1u;
    for (size_t i = 0; i < len; i++) {
        if ((i & 63) == 0)
            x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16) ^ (uint8_t)(i >> 6);
    }
}


/* ---- invariants more than one target holds ------------------------------------------ */

int fuzz_open_writable(struct qcow2_backend *mem, struct qcow2_open_options *opts,
                       bool repair_all, struct io_fault *fault, struct qcow2_image **img,
                       bool *repaired)
{
    *repaired = false;
    int ret = fuzz_open_over(mem, opts, fault, img);
    if (ret) {
        /* Perhaps only the backing chain failed: try without it. */
        opts->no_backing = true;
        ret = fuzz_open_over(mem, opts, fault, img);
    }
    if (!ret)
        return 0;
    /* Refused (dirty, corrupt, a broken table): repair as `qemu-img check -r`, retry. */
    struct qcow2_open_options copts = *opts;
    copts.for_check = true;
    if (fuzz_open_over(mem, &copts, NULL, img) == 0) {
        struct qcow2_check_result res;
        fuzz_check(*img, repair_all ? QCOW2_REPAIR_ALL : QCOW2_REPAIR_LEAKS, &res);
        qcow2_close(*img);
    }
    *repaired = true;
    return fuzz_open_over(mem, opts, fault, img);
}

void fuzz_read_snapshots(const struct qcow2_image *img, const uint8_t *data, size_t size,
                         const struct fuzz_backing_ctx *backing, bool no_backing,
                         unsigned max)
{
    uint32_t count = qcow2_snapshot_count(img), n = count < max ? count : max;
    for (uint32_t i = 0; i < n; i++) {
        struct qcow2_snapshot_info s;
        if (qcow2_snapshot_get(img, i + 1 == n ? count - 1 : i, &s))
            continue;
        struct fuzz_backing_ctx ctx = backing ? *backing : (struct fuzz_backing_ctx){ 0 };
        struct qcow2_open_options o = {
            .cache_bytes = FUZZ_CACHE_BYTES,
            .snapshot = s.id,
            .open_backing = backing ? fuzz_memory_backing : fuzz_refuse_backing,
            .opener_ctx = &ctx,
            .no_backing = no_backing,
        };
        struct qcow2_image *snap;
        if (fuzz_open_mem(data, size, size, &o, &snap) == 0) {
            fuzz_touch_info(snap);
            fuzz_walk_and_read(snap, FUZZ_READ_BYTES / 4u);
            qcow2_close(snap);
        }
    }
}

/*
 * Refcounts of clusters past the end of the file are invisible to a check until the
 * file grows over them (QEMU's check, too, only counts up to the end): the leaks of the
 * same image seen as `headroom` bytes longer, all zeros, as writes may make it.
 */
static uint64_t leaks_past_end(const uint8_t *data, size_t size, uint64_t headroom)
{
    struct qcow2_backend *mem;
    if (qcow2_backend_mem_new(data, size, size, &mem))
        return UINT64_MAX;
    struct qcow2_open_options opts = {
        .cache_bytes = FUZZ_CACHE_BYTES,
        .no_backing = true,
        .for_check = true,
    };
    struct io_fault view;
    io_fault_init(&view);
    view.pad_to = (uint64_t)size + headroom;
    struct qcow2_image *img;
    uint64_t leaks = UINT64_MAX;
    if (fuzz_open_over(mem, &opts, &view, &img) == 0) {
        struct qcow2_check_result res;
        if (fuzz_check(img, QCOW2_REPAIR_NONE, &res) == 0)
            leaks = res.leaks;
        qcow2_close(img);
    }
    qcow2_backend_destroy(mem);
    return leaks;
}

static const struct qcow2_open_options for_check = {
    .cache_bytes = FUZZ_CACHE_BYTES,
    .no_backing = true,
    .for_check = true,
};

bool fuzz_consistent(const uint8_t *data, size_t size, uint64_t headroom, uint64_t *leaks)
{
    struct qcow2_image *img;
    if (fuzz_open_mem(data, size, size, &for_check, &img))
        return false;
    struct qcow2_check_result res;
    bool clean = fuzz_check(img, QCOW2_REPAIR_NONE, &res) == 0 && res.corruptions == 0 &&
                 res.check_errors == 0;
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    /* A dirty image's refcounts are allowed to be stale; do not hold writes to them. */
    if (info.incompatible_features & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))
        clean = false;
    qcow2_close(img);
    if (!leaks)
        return clean;
    /* A writable open clears the autoclear bits: the bitmaps' clusters then count as
     * leaked (as in QEMU once it finds the bitmaps extension stale). */
    *leaks = info.autoclear_features ? UINT64_MAX : res.leaks;
    if (clean && *leaks == 0)
        *leaks = leaks_past_end(data, size, headroom);
    return clean;
}

int fuzz_recheck(const uint8_t *bytes, size_t len, bool stays_consistent, bool must_open,
                 const char *after, struct qcow2_check_result *res, bool *dirty)
{
    struct qcow2_image *img;
    struct qcow2_error err;
    memset(res, 0, sizeof(*res));
    *dirty = false;
    int ret = open_mem(bytes, len, len, &for_check, &img, &err);
    if (ret) {
        /* Even an inconsistent image must not lose what opening needs (the header, the
         * tables) to writes that succeeded: QEMU's overlap checks refuse such an
         * allocation, and so does qvet (regressions/image/alloc-over-header-*). */
        if (must_open)
            fuzz_fail("the image no longer opens after %s: %s", after, err.message);
        return ret;
    }
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    *dirty = (info.incompatible_features & QCOW2_INCOMPAT_DIRTY) != 0;
    ret = fuzz_check(img, QCOW2_REPAIR_NONE, res);
    if (stays_consistent && !*dirty && ret == 0 && (res->corruptions || res->check_errors))
        fuzz_fail("after %s on a consistent image the reopened image has %" PRIu64
                  " corruptions, %" PRIu64 " check errors", after, res->corruptions,
                  res->check_errors);
    qcow2_close(img);
    return ret;
}

struct oracle *fuzz_oracle(const struct qcow2_image *img, uint64_t size, const void *bytes,
                           uint64_t known)
{
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    const struct qcow2_image *backing = qcow2_backing_image(img);
    const struct oracle_facts facts = {
        .version = info.version,
        .cluster_size = info.cluster_size,
        .has_backing = backing != NULL,
        .backing_size = backing ? qcow2_virtual_size(backing) : 0,
    };
    struct oracle *o;
    char why[256];
    if (oracle_create_mem(size, bytes, known, &facts, &o, why, sizeof(why)))
        fuzz_fail("no oracle for a %" PRIu64 "-byte disk: %s", size, why);
    return o;
}

/* The guest bytes a window holds: what the image reads and what the oracle says. */
static uint8_t window_got[FUZZ_WINDOW_MAX];
static uint8_t window_want[FUZZ_WINDOW_MAX];

struct oracle *fuzz_oracle_now(struct qcow2_image *img, uint64_t window)
{
    struct qcow2_error err;
    uint64_t size = qcow2_virtual_size(img);
    uint64_t n = size < window ? size : window;
    if (n > FUZZ_WINDOW_MAX)
        n = FUZZ_WINDOW_MAX;
    if (n && qcow2_pread(img, window_got, (size_t)n, 0, &err))
        return NULL;
    return fuzz_oracle(img, size, window_got, n);
}

void fuzz_expect_oracle(struct qcow2_image *img, struct oracle *o, const char *state,
                        uint64_t window, const char *when)
{
    struct qcow2_error err;
    uint64_t size = state ? oracle_snapshot_size(o, state) : oracle_size(o);
    if (qcow2_virtual_size(img) != size)
        fuzz_fail("%s: the disk is %" PRIu64 " bytes, the oracle's %" PRIu64, when,
                  qcow2_virtual_size(img), size);
    uint64_t n = oracle_known(o) < window ? oracle_known(o) : window;
    if (n > size)
        n = size;
    if (n > FUZZ_WINDOW_MAX)
        n = FUZZ_WINDOW_MAX;
    if (n && qcow2_pread(img, window_got, (size_t)n, 0, &err))
        fuzz_fail("%s: the disk does not read: %s", when, err.message);
    int ret = state ? oracle_snapshot_read(o, state, window_want, (size_t)n, 0)
                    : oracle_read(o, window_want, (size_t)n, 0);
    if (ret)
        fuzz_fail("%s: the oracle cannot read the %" PRIu64 " bytes it knows: %d", when, n,
                  ret);
    if (!memcmp(window_got, window_want, (size_t)n))
        return;
    size_t i = 0;
    while (window_got[i] == window_want[i])
        i++;
    fuzz_fail("%s: guest byte %zu reads 0x%02x, the oracle says 0x%02x", when, i,
              window_got[i], window_want[i]);
}

static uint8_t edge_buf[FUZZ_READ_CHUNK];

void fuzz_read_edges(struct qcow2_image *img, uint8_t where, uint8_t shift)
{
    struct qcow2_error err;
    uint64_t vsize = qcow2_virtual_size(img);
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    uint64_t cs = info.cluster_size ? info.cluster_size : 512;
    if (vsize) {
        uint64_t off = ((uint64_t)where * cs / 256u + shift) % vsize;
        size_t len = (size_t)(cs + 3u < vsize - off ? cs + 3u : vsize - off);
        qcow2_pread(img, edge_buf, len < sizeof(edge_buf) ? len : sizeof(edge_buf), off, &err);
        qcow2_pread(img, edge_buf, 1, vsize - 1, &err);
    }
    if (qcow2_pread(img, edge_buf, 1, vsize, &err) >= 0)
        fuzz_fail("a read past the virtual size %" PRIu64 " succeeded", vsize);
    if (qcow2_pread(img, edge_buf, 0, vsize, &err) < 0)
        fuzz_fail("an empty read at the virtual size %" PRIu64 " failed: %s", vsize,
                  err.message);
}

/* What a window op writes (FUZZ_WINDOW_MAX bytes at most). */
static uint8_t op_pattern[FUZZ_WINDOW_MAX];

int fuzz_window_op(struct qcow2_image *img, struct fuzz_input *in, unsigned i,
                  uint64_t *window, struct oracle *o)
{
    struct qcow2_error err;
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    uint64_t cs = info.cluster_size, vsize = qcow2_virtual_size(img);
    unsigned kind = fuzz_input_u8(in) % 6u;
    uint16_t v = fuzz_input_u16(in);
    uint8_t flags = fuzz_input_u8(in);
    uint64_t off, len, clusters = *window / cs;
    if (flags & 0x80) {
        off = clusters ? v % clusters * cs : 0;
        len = cs * ((flags & 7u) + 1u);
    } else {
        off = (uint64_t)v * 97u % *window;
        len = ((uint64_t)(flags & 0x7fu) + 1u) * 331u;
    }
    len = len < *window - off ? len : *window - off;
    if (len == 0)
        return 0;
    int ret = 0, predicted = 0;
    if (kind == 0) {
        fuzz_fill(op_pattern, (size_t)len, v ^ (uint32_t)i << 16);
        if (!(ret = qcow2_pwrite(img, op_pattern, (size_t)len, off, &err)) && o)
            predicted = oracle_write(o, op_pattern, (size_t)len, off, i + 1);
    } else if (kind <= 2) {
        ret = qcow2_pwrite_zeroes(img, off, len, kind == 2 ? QCOW2_ZERO_MAY_UNMAP : 0, &err);
        if (!ret && o)
            predicted = oracle_zero(o, len, off, i + 1);
    } else if (kind == 3) {
        if (!(ret = qcow2_discard(img, off, len, &err)) && o)
            predicted = oracle_discard(o, len, off, i + 1);
    } else if (kind == 4) {
        /* One whole cluster (or the disk's tail), half zeros on request. */
        off = off / cs * cs;
        len = cs < vsize - off ? cs : vsize - off;
        if (off + len > *window)
            return 0;
        fuzz_fill(op_pattern, (size_t)len, v * 7u + i);
        if (flags & 0x40)
            memset(op_pattern + len / 2, 0, (size_t)(len - len / 2));
        ret = qcow2_pwrite_compressed(img, op_pattern, (size_t)len, off, &err);
        if (!ret && o)
            predicted = oracle_write_compressed(o, op_pattern, (size_t)len, off, i + 1);
        else if (ret == -EEXIST)
            ret = 0;                    /* a refusal changes nothing */
    } else {
        uint64_t delta = cs * ((flags & 3u) + 1u);
        uint64_t to = (v >> 8) & 1 ? vsize + delta : vsize > delta ? vsize - delta : vsize;
        ret = qcow2_resize(img, to, &err);
        /*
         * A refusal changes nothing. An I/O error can strike after the new size reached
         * the header (the flush that ends the resize): that leaves the new size, as a
         * failed write leaves old or new data; the oracle then knows neither, and is
         * dropped as after any failed op.
         */
        bool io_error = ret == -EIO || ret == -ENOSPC;
        uint64_t now = qcow2_virtual_size(img);
        if (now != (ret ? vsize : to) && !(io_error && now == to))
            fuzz_fail("resize to %" PRIu64 " (%d: %s) left virtual size %" PRIu64, to, ret,
                      ret ? err.message : "", now);
        if (!ret && to < *window)
            *window = to;
        if (!ret && o)
            predicted = oracle_resize(o, to, i + 1);
        if (!io_error)
            ret = 0;                    /* a refused resize changes nothing either */
    }
    fuzz_debug("op %u: kind %u at %" PRIu64 "+%" PRIu64 ": %d%s%s", i, kind, off, len, ret,
               ret ? " " : "", ret ? err.message : "");
    if (predicted)
        fuzz_fail("op %u (kind %u at %" PRIu64 "+%" PRIu64 "): the oracle failed: %d", i, kind,
                  off, len, predicted);
    if (ret > 0)
        fuzz_fail("operation %u returned positive %d", kind, ret);
    return ret;
}

int fuzz_expect_state(const uint8_t *bytes, size_t len, const struct qcow2_open_options *opts,
                      const char *snapshot, struct oracle *o, uint64_t window, const char *when)
{
    struct qcow2_open_options at = *opts;
    at.cache_bytes = FUZZ_CACHE_BYTES;
    at.snapshot = snapshot;
    struct qcow2_image *img;
    int ret = fuzz_open_mem(bytes, len, len, &at, &img);
    if (ret)
        return ret;
    if (o)
        fuzz_expect_oracle(img, o, snapshot, window, when);
    fuzz_walk_and_read(img, FUZZ_READ_BYTES / 4u);
    qcow2_close(img);
    return 0;
}
