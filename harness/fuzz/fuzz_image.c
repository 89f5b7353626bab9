/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_image: the input is a whole image file, and its last TAIL_BYTES also steer the
 * run (the edges read, the operations, an injected failure). In order:
 *
 *  1. open read-only (a backing file, if named, is the input itself served from memory,
 *     and its own backing an empty image; if that fails, again ignoring the backing
 *     file), consume the info, list the snapshots, walk the map and read every run it
 *     reports within fixed budgets, read the edges, and open up to SNAPSHOTS snapshots;
 *  2. open for check and run qcow2_check: is the image consistent?
 *  3. open writable on a copy with headroom (repairing first when that is refused), run
 *     up to MAX_OPS writes, zero writes, discards, compressed writes and resizes, flush,
 *     close, open again and check again.
 *
 * Step 3 is predicted by the oracle over the first WINDOW guest bytes. On an image step 2
 * found consistent, the window reads as the oracle says, and the writes leave the image
 * consistent: an injected failure of every host write after the k-th (a crash there)
 * may leak clusters, never corrupt. On any image, writes that all succeeded leave it
 * openable, and a failed resize leaves the size.
 *
 * QVET_FUZZ_DEBUG=1 narrates each step (for triage of one input).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "helpers.h"

#define SNAPSHOTS 4u
#define HEADROOM (4u << 20)             /* the writable copy may grow this much */
#define WINDOW (512u << 10)             /* guest bytes the write oracle tracks */
#define MAX_INPUT (8u << 20)
#define TAIL_BYTES 32u                  /* 4 control bytes, then MAX_OPS of 4 bytes */
#define MAX_OPS 7u

/* What the tail says; missing bytes are zeros. */
struct controls {
    uint8_t edge[2];                    /* where the odd read starts */
    unsigned n_ops;
    bool inject;                        /* fail every host write after the fail_after-th */
    uint8_t fail_after;
    bool repair_all;
    struct fuzz_input ops;              /* MAX_OPS of: kind, value (2 bytes), flags */
};

static uint8_t chunk[FUZZ_READ_CHUNK];
static uint8_t pattern[WINDOW];

/* A read that straddles clusters at an odd offset, the last byte, and one past the end. */
static void read_edges(struct qcow2_image *img, const struct controls *c)
{
    struct qcow2_error err;
    uint64_t vsize = qcow2_virtual_size(img);
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    uint64_t cs = info.cluster_size ? info.cluster_size : 512;
    if (vsize) {
        uint64_t off = ((uint64_t)c->edge[0] * cs / 256u + c->edge[1]) % vsize;
        size_t len = (size_t)(cs + 3u < vsize - off ? cs + 3u : vsize - off);
        qcow2_pread(img, chunk, len < sizeof(chunk) ? len : sizeof(chunk), off, &err);
        qcow2_pread(img, chunk, 1, vsize - 1, &err);
    }
    if (qcow2_pread(img, chunk, 1, vsize, &err) >= 0)
        fuzz_fail("a read past the virtual size %" PRIu64 " succeeded", vsize);
    if (qcow2_pread(img, chunk, 0, vsize, &err) < 0)
        fuzz_fail("an empty read at the virtual size %" PRIu64 " failed: %s", vsize,
                  err.message);
}

/* Step 1. */
static void read_image(const uint8_t *data, size_t size, const struct controls *c)
{
    const struct fuzz_backing_ctx input_as_backing = { data, size, 1 };
    struct fuzz_backing_ctx ctx = input_as_backing;
    struct qcow2_open_options opts = { .cache_bytes = FUZZ_CACHE_BYTES,
                                       .open_backing = fuzz_memory_backing,
                                       .opener_ctx = &ctx };
    struct qcow2_image *img;
    if (fuzz_open_mem(data, size, size, &opts, &img)) {
        opts.no_backing = true;
        if (fuzz_open_mem(data, size, size, &opts, &img))
            return;
    }
    size_t sum = fuzz_touch_info(img);
    fuzz_list_snapshots(img, &sum);
    fuzz_walk_and_read(img, FUZZ_READ_BYTES);
    read_edges(img, c);
    fuzz_read_snapshots(img, data, size, &input_as_backing, opts.no_backing, SNAPSHOTS);
    qcow2_close(img);
    volatile size_t sink = sum;
    (void)sink;
}

/* One op of step 3 on the first `window` bytes; its error, or 0. *o follows it (or NULL). */
static int run_op(struct qcow2_image *img, struct fuzz_input *in, unsigned i,
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
        fuzz_fill(pattern, (size_t)len, v ^ (uint32_t)i << 16);
        if (!(ret = qcow2_pwrite(img, pattern, (size_t)len, off, &err)) && o)
            predicted = oracle_write(o, pattern, (size_t)len, off, i + 1);
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
        fuzz_fill(pattern, (size_t)len, v * 7u + i);
        if (flags & 0x40)
            memset(pattern + len / 2, 0, (size_t)(len - len / 2));
        ret = qcow2_pwrite_compressed(img, pattern, (size_t)len, off, &err);
        if (!ret && o)
            predicted = oracle_write_compressed(o, pattern, (size_t)len, off, i + 1);
        else if (ret == -EEXIST)
            ret = 0;                    /* a refusal changes nothing */
    } else {
        uint64_t delta = cs * ((flags & 3u) + 1u);
        uint64_t to = (v >> 8) & 1 ? vsize + delta : vsize > delta ? vsize - delta : vsize;
        ret = qcow2_resize(img, to, &err);
        if (qcow2_virtual_size(img) != (ret ? vsize : to))
            fuzz_fail("resize to %" PRIu64 " (%d) left virtual size %" PRIu64, to, ret,
                      qcow2_virtual_size(img));
        if (!ret && to < *window)
            *window = to;
        if (!ret && o)
            predicted = oracle_resize(o, to, i + 1);
        ret = 0;                        /* a refused shrink changes nothing either */
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

/* Step 3, on a copy of the image that step 2 found `consistent` (with `leaks`) or not. */
static void write_image(const uint8_t *data, size_t size, struct controls *c,
                        bool consistent, uint64_t leaks)
{
    struct qcow2_backend *mem;
    if (qcow2_backend_mem_new(data, size, size + HEADROOM, &mem))
        return;
    struct fuzz_backing_ctx ctx = { data, size, 1 };
    struct qcow2_open_options opts = { .cache_bytes = FUZZ_CACHE_BYTES, .writable = true,
                                       .open_backing = fuzz_memory_backing,
                                       .opener_ctx = &ctx };
    /* Once armed, every host write (and truncate) after the k-th fails: a crash there. */
    struct io_fault fault;
    io_fault_init(&fault);
    fault.mask = IO_FAULT_WRITE | IO_FAULT_TRUNCATE;
    fault.persistent = true;
    struct qcow2_image *img;
    bool repaired;
    if (fuzz_open_writable(mem, &opts, c->repair_all, &fault, &img, &repaired)) {
        qcow2_backend_destroy(mem);
        return;
    }
    bool oracle_on = consistent && !repaired;
    uint64_t vsize = qcow2_virtual_size(img), window = vsize < WINDOW ? vsize : WINDOW;
    struct oracle *o = fuzz_oracle_now(img, window);
    fault.armed = c->inject;
    fault.countdown = c->fail_after;
    bool all_ok = true;
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    for (unsigned i = 0; i < c->n_ops && window && info.cluster_size; i++) {
        if (run_op(img, &c->ops, i, &window, o)) {
            all_ok = false;
            oracle_close(o);
            o = NULL;
        }
    }
    struct qcow2_error err;
    all_ok &= qcow2_flush(img, &err) == 0;
    bool injected = fault.fired > 0, clean_run = !injected && all_ok && oracle_on;
    fuzz_debug("ops done: all ok %d, injected failure %d, oracle %s", all_ok, injected,
               oracle_on ? "on" : "off");
    /* On an image the check found inconsistent, two guest clusters may share a host
     * cluster (QEMU behaves the same): only a consistent image must read back, and must
     * check consistent while still open (lazy refcounts aside: the dirty bit then
     * excuses stale counts). */
    struct qcow2_check_result res;
    if (clean_run && o)
        fuzz_expect_oracle(img, o, NULL, WINDOW, "after the operations");
    if (clean_run && !(info.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) &&
        fuzz_check(img, QCOW2_REPAIR_NONE, &res) == 0 && (res.corruptions || res.check_errors))
        fuzz_fail("open image: %" PRIu64 " corruptions, %" PRIu64 " check errors after "
                  "writes on a consistent image", res.corruptions, res.check_errors);
    qcow2_close(img);

    /* What is on "disk" now, as after a restart. */
    size_t len;
    const uint8_t *now = qcow2_backend_mem_data(mem, &len);
    bool dirty;
    int checked = fuzz_recheck(now, len, oracle_on, !injected && (oracle_on || all_ok),
                               injected ? "writes with an injected I/O failure" : "writes",
                               &res, &dirty);
    /* Only from a leak-free image: next to leaked clusters, QEMU 7.2 itself leaks one
     * more on some allocations, and qvet allocates exactly as QEMU does. */
    if (clean_run && checked == 0 && leaks == 0 && res.leaks)
        fuzz_fail("reopened image: %" PRIu64 " leaked clusters after successful writes",
                  res.leaks);
    ctx = (struct fuzz_backing_ctx){ data, size, 1 };
    struct qcow2_open_options ro = { .cache_bytes = FUZZ_CACHE_BYTES,
                                     .no_backing = opts.no_backing,
                                     .open_backing = fuzz_memory_backing, .opener_ctx = &ctx };
    if (clean_run && fuzz_open_mem(now, len, len, &ro, &img))
        fuzz_fail("the image no longer opens read-only after writes");
    if (clean_run) {
        if (o)
            fuzz_expect_oracle(img, o, NULL, WINDOW, "after reopening");
        fuzz_walk_and_read(img, FUZZ_READ_BYTES / 4u);
        qcow2_close(img);
    }
    oracle_close(o);
    qcow2_backend_destroy(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    struct fuzz_input in;
    fuzz_input_init(&in, data, size);
    uint8_t tail[TAIL_BYTES];
    fuzz_input_tail(&in, tail, sizeof(tail));
    struct controls c;
    fuzz_input_init(&c.ops, tail, sizeof(tail));
    uint8_t first = fuzz_input_u8(&c.ops);
    c.edge[0] = first;
    c.edge[1] = c.fail_after = fuzz_input_u8(&c.ops);
    c.repair_all = fuzz_input_bool(&c.ops);
    fuzz_input_u8(&c.ops);              /* spare */
    c.n_ops = (first & 7u) + 1u < MAX_OPS ? (first & 7u) + 1u : MAX_OPS;
    c.inject = first & 0x08;

    size_t len;
    const uint8_t *image = fuzz_input_rest(&in, &len);
    read_image(image, len, &c);
    uint64_t leaks = 0;
    bool consistent = fuzz_consistent(image, len, HEADROOM, &leaks);
    write_image(image, len, &c, consistent, leaks);
    return 0;
}
