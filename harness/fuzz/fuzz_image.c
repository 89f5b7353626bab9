/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_image: the input is a whole image file. In order:
 *
 *  1. open read-only (a backing file, if named, is the input itself served from memory,
 *     and its own backing an empty image, so no file is ever opened; if that open
 *     fails, again ignoring the backing file), consume
 *     the info, list the snapshots, walk qcow2_map_status over the disk and read every
 *     run it reports, within fixed budgets;
 *  2. read up to FUZZ_SNAPSHOTS snapshots through opens with `.snapshot`;
 *  3. open for check and run qcow2_check (REPAIR_NONE);
 *  4. open writable on a copy with headroom (repairing first when a writable open is
 *     refused), run the operations the input's last bytes describe (writes, zero writes,
 *     discards, compressed writes, resizes), flush, close, open again and check again.
 *
 * Step 4 is predicted by the oracle (oracle/, in memory, with the rules the soak uses):
 * the guest bytes of a window at the start of the disk must read back after the
 * operations as it says, and a write path that runs on an image `qcow2_check` found
 * consistent must leave it consistent (leaks from an injected I/O failure are allowed;
 * corruption never is). The tail of the input may
 * also ask for every host write after the k-th to fail, which models a crash at that
 * point: the image then reopens with nothing worse than leaks. On any image, writes
 * that all succeeded must leave it openable, and a failed resize must leave the size.
 *
 * QVET_FUZZ_DEBUG=1 narrates each step (for triage of one input).
 */
#include "fuzz_common.h"
#include "oracle.h"

#define FUZZ_SNAPSHOTS 4u
#define FUZZ_HEADROOM (4u << 20)        /* the writable copy may grow this much */
#define FUZZ_WINDOW (512u << 10)        /* guest bytes the write oracle tracks */
#define FUZZ_MAX_INPUT (8u << 20)
#define TAIL_BYTES 32u
#define OP_BYTES 4u
#define MAX_OPS ((TAIL_BYTES - 4u) / OP_BYTES)

static uint8_t chunk[FUZZ_READ_CHUNK];
static uint8_t expected[FUZZ_WINDOW];
static uint8_t readback[FUZZ_WINDOW];
static uint8_t pattern[FUZZ_WINDOW];

/* ------------------------------------------------------------------------------------ */
/* Steps 1-3: reading                                                                    */

static void read_edges(struct qcow2_image *img, const uint8_t *tail)
{
    struct qcow2_error err;
    uint64_t vsize = qcow2_virtual_size(img);
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    uint64_t cs = info.cluster_size ? info.cluster_size : 512;
    /* A read that straddles clusters at an odd offset, the last byte, and one past it. */
    if (vsize) {
        uint64_t off = ((uint64_t)tail[0] * cs / 256u + tail[1]) % vsize;
        size_t len = (size_t)(cs + 3u < vsize - off ? cs + 3u : vsize - off);
        if (len > sizeof(chunk))
            len = sizeof(chunk);
        qcow2_pread(img, chunk, len, off, &err);
        qcow2_pread(img, chunk, 1, vsize - 1, &err);
    }
    if (qcow2_pread(img, chunk, 1, vsize, &err) >= 0)
        fuzz_fail("a read past the virtual size %" PRIu64 " succeeded", vsize);
    if (qcow2_pread(img, chunk, 0, vsize, &err) < 0)
        fuzz_fail("an empty read at the virtual size %" PRIu64 " failed: %s", vsize,
                  err.message);
}

/* Steps 1 and 2. */
static void read_image(const uint8_t *data, size_t size, const uint8_t *tail)
{
    struct fuzz_backing_ctx bctx = { data, size, 1 };
    struct qcow2_open_options opts = {
        .cache_bytes = FUZZ_CACHE_BYTES,
        .open_backing = fuzz_memory_backing,
        .opener_ctx = &bctx,
    };
    struct qcow2_image *img;
    bool no_backing = false;
    if (fuzz_open_mem(data, size, size, &opts, &img)) {
        no_backing = true;
        opts.no_backing = true;
        if (fuzz_open_mem(data, size, size, &opts, &img))
            return;
    }
    size_t sum = fuzz_touch_info(img);
    uint32_t nsnap = fuzz_list_snapshots(img, &sum);
    fuzz_walk_and_read(img, chunk, FUZZ_READ_BYTES);
    read_edges(img, tail);

    char *ids[FUZZ_SNAPSHOTS] = { NULL };
    uint32_t nids = nsnap < FUZZ_SNAPSHOTS ? nsnap : FUZZ_SNAPSHOTS;
    for (uint32_t i = 0; i < nids; i++) {
        struct qcow2_snapshot_info s;
        /* The first few and the last: a bad entry tends to sit at the end. */
        uint32_t k = i + 1 == nids ? nsnap - 1 : i;
        if (qcow2_snapshot_get(img, k, &s) == 0)
            ids[i] = strdup(s.id);
    }
    qcow2_close(img);

    for (uint32_t i = 0; i < nids; i++) {
        if (!ids[i])
            continue;
        struct fuzz_backing_ctx sctx = { data, size, 1 };
        struct qcow2_open_options sopts = {
            .cache_bytes = FUZZ_CACHE_BYTES,
            .snapshot = ids[i],
            .open_backing = fuzz_memory_backing,
            .opener_ctx = &sctx,
            .no_backing = no_backing,
        };
        if (fuzz_open_mem(data, size, size, &sopts, &img) == 0) {
            fuzz_touch_info(img);
            fuzz_walk_and_read(img, chunk, FUZZ_READ_BYTES / 4u);
            qcow2_close(img);
        }
        free(ids[i]);
    }
    volatile size_t sink = sum;
    (void)sink;
}

/*
 * Refcounts of clusters past the end of the file are invisible to a check until the
 * file grows over them (QEMU's check, too, only counts up to the end): count the leaks
 * of the same image seen as FUZZ_HEADROOM bytes longer, all zeros, as writes may make it.
 */
static uint64_t leaks_past_end(const uint8_t *data, size_t size)
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
    view.pad_to = (uint64_t)size + FUZZ_HEADROOM;
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

/* Step 3. True when the check ran and found neither corruption nor check errors. */
static bool check_image(const uint8_t *data, size_t size, uint64_t *leaks)
{
    struct qcow2_open_options opts = {
        .cache_bytes = FUZZ_CACHE_BYTES,
        .no_backing = true,
        .for_check = true,
    };
    struct qcow2_image *img;
    if (fuzz_open_mem(data, size, size, &opts, &img))
        return false;
    struct qcow2_check_result res;
    bool clean = fuzz_check(img, QCOW2_REPAIR_NONE, &res) == 0 && res.corruptions == 0 &&
                 res.check_errors == 0;
    *leaks = res.leaks;
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    /* A dirty image's refcounts are allowed to be stale; do not hold writes to them. */
    if (info.incompatible_features & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))
        clean = false;
    /* A writable open clears the autoclear bits: the bitmaps' clusters then count as
     * leaked (as in QEMU once it finds the bitmaps extension stale). */
    if (info.autoclear_features)
        *leaks = UINT64_MAX;
    qcow2_close(img);
    if (clean && *leaks == 0)
        *leaks = leaks_past_end(data, size);
    return clean;
}

/* ------------------------------------------------------------------------------------ */
/* Step 4: writing, predicted by the oracle over the first FUZZ_WINDOW guest bytes       */

struct prediction {
    struct oracle *o;               /* NULL once it cannot say: an operation failed */
    uint64_t span;                  /* the operations address guest bytes [0, span) */
};

static void forget(struct prediction *pr)
{
    oracle_close(pr->o);
    pr->o = NULL;
}

/*
 * The oracle for the image just opened: it knows what the first bytes read now, and
 * the facts its rules need. None when those bytes do not read.
 */
static void predict(struct qcow2_image *img, struct prediction *pr)
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
    uint64_t vsize = qcow2_virtual_size(img);
    pr->span = vsize < FUZZ_WINDOW ? vsize : FUZZ_WINDOW;
    pr->o = NULL;
    struct qcow2_error err;
    if (pr->span && qcow2_pread(img, readback, (size_t)pr->span, 0, &err))
        return;
    char why[256];
    if (oracle_create_mem(vsize, readback, pr->span, &facts, &pr->o, why, sizeof(why)))
        fuzz_fail("no oracle for a %" PRIu64 "-byte disk: %s", vsize, why);
}

static void run_ops(struct qcow2_image *img, const uint8_t *tail, unsigned nops,
                    struct prediction *pr, bool *all_ok)
{
    struct qcow2_error err;
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    uint64_t cs = info.cluster_size;
    for (unsigned i = 0; i < nops; i++) {
        const uint8_t *op = tail + 4u + i * OP_BYTES;
        uint64_t vsize = qcow2_virtual_size(img);
        uint64_t window = pr->span;
        if (window == 0 || cs == 0)
            break;
        unsigned kind = op[0] % 6u;
        uint32_t v = (uint32_t)op[1] << 8 | op[2];
        uint64_t off, len;
        if (op[3] & 0x80) {
            uint64_t clusters = window / cs;
            off = clusters ? (v % clusters) * cs : 0;
            len = cs * ((op[3] & 7u) + 1u);
        } else {
            off = ((uint64_t)v * 97u) % window;
            len = ((uint64_t)(op[3] & 0x7fu) + 1u) * 331u;
        }
        if (len > window - off)
            len = window - off;
        if (len == 0)
            continue;
        int ret = 0, predicted = 0;
        unsigned author = i + 1;
        switch (kind) {
        case 0: /* write */
            fuzz_fill(pattern, (size_t)len, v ^ (uint32_t)i << 16);
            ret = qcow2_pwrite(img, pattern, (size_t)len, off, &err);
            if (!ret && pr->o)
                predicted = oracle_write(pr->o, pattern, (size_t)len, off, author);
            break;
        case 1: /* zero write */
        case 2: /* zero write, may unmap */
            ret = qcow2_pwrite_zeroes(img, off, len, kind == 2 ? QCOW2_ZERO_MAY_UNMAP : 0,
                                      &err);
            if (!ret && pr->o)
                predicted = oracle_zero(pr->o, len, off, author);
            break;
        case 3: /* discard */
            ret = qcow2_discard(img, off, len, &err);
            if (!ret && pr->o)
                predicted = oracle_discard(pr->o, len, off, author);
            break;
        case 4: { /* compressed write of one whole cluster (or the disk's tail) */
            off = off / cs * cs;
            len = cs < vsize - off ? cs : vsize - off;
            if (off + len > window)
                continue;
            fuzz_fill(pattern, (size_t)len, v * 7u + i);
            if (op[3] & 0x40)
                memset(pattern + len / 2, 0, (size_t)(len - len / 2));
            ret = qcow2_pwrite_compressed(img, pattern, (size_t)len, off, &err);
            if (!ret && pr->o)
                predicted = oracle_write_compressed(pr->o, pattern, (size_t)len, off, author);
            else if (ret == -EEXIST)
                ret = 0;            /* a refusal changes nothing */
            break;
        }
        default: { /* resize by a few clusters either way */
            uint64_t delta = cs * ((op[3] & 3u) + 1u);
            uint64_t target = (op[1] & 1)        ? vsize + delta
                              : vsize > delta ? vsize - delta
                                              : vsize;
            ret = qcow2_resize(img, target, &err);
            if (!ret) {
                if (qcow2_virtual_size(img) != target)
                    fuzz_fail("resize to %" PRIu64 " left virtual size %" PRIu64, target,
                              qcow2_virtual_size(img));
                if (target < pr->span)
                    pr->span = target;
                if (pr->o)
                    predicted = oracle_resize(pr->o, target, author);
            } else {
                ret = 0;            /* a refused shrink changes nothing either */
                if (qcow2_virtual_size(img) != vsize)
                    fuzz_fail("failed resize changed the virtual size");
            }
            break;
        }
        }
        fuzz_debug("op %u: kind %u at %" PRIu64 "+%" PRIu64 ": %d%s%s", i, kind, off, len, ret,
                   ret ? " " : "", ret ? err.message : "");
        if (predicted)
            fuzz_fail("op %u (kind %u at %" PRIu64 "+%" PRIu64 "): the oracle failed: %d", i,
                      kind, off, len, predicted);
        if (ret) {
            *all_ok = false;
            forget(pr);
            if (ret > 0)
                fuzz_fail("operation %u returned positive %d", kind, ret);
        }
    }
}

/* The first guest bytes the oracle knows (up to FUZZ_WINDOW) must read as it says. */
static void compare_window(struct qcow2_image *img, const struct prediction *pr,
                           const char *when)
{
    struct qcow2_error err;
    if (!pr->o)
        return;
    uint64_t n = oracle_known(pr->o) < FUZZ_WINDOW ? oracle_known(pr->o) : FUZZ_WINDOW;
    if (n == 0)
        return;
    if (qcow2_pread(img, readback, (size_t)n, 0, &err))
        fuzz_fail("%s: reading back the window failed: %s", when, err.message);
    if (oracle_read(pr->o, expected, (size_t)n, 0))
        fuzz_fail("%s: the oracle cannot read the %" PRIu64 " bytes it knows", when, n);
    if (memcmp(readback, expected, (size_t)n)) {
        size_t i = 0;
        while (readback[i] == expected[i])
            i++;
        fuzz_fail("%s: guest byte %zu reads 0x%02x, expected 0x%02x", when, i, readback[i],
                  expected[i]);
    }
}

static void write_image(const uint8_t *data, size_t size, const uint8_t *tail, bool pre_clean,
                        uint64_t pre_leaks)
{
    struct qcow2_backend *mem;
    if (qcow2_backend_mem_new(data, size, size + FUZZ_HEADROOM, &mem))
        return;
    struct fuzz_backing_ctx bctx = { data, size, 1 };
    struct qcow2_open_options opts = {
        .cache_bytes = FUZZ_CACHE_BYTES,
        .open_backing = fuzz_memory_backing,
        .opener_ctx = &bctx,
        .writable = true,
    };
    struct qcow2_image *img;
    /* Once armed, every host write (and truncate) after the k-th fails: a crash there. */
    struct io_fault fault;
    io_fault_init(&fault);
    fault.mask = IO_FAULT_WRITE | IO_FAULT_TRUNCATE;
    fault.persistent = true;
    bool repaired = false;
    int ret = fuzz_open_over(mem, &opts, &fault, &img);
    if (ret) {
        /* Perhaps only the backing chain failed: try without it. */
        opts.no_backing = true;
        ret = fuzz_open_over(mem, &opts, &fault, &img);
    }
    if (ret) {
        /* Refused (dirty, corrupt, ...): repair as `qemu-img check -r` would, retry. */
        struct qcow2_open_options copts = opts;
        copts.for_check = true;
        if (fuzz_open_over(mem, &copts, NULL, &img) == 0) {
            struct qcow2_check_result res;
            fuzz_check(img, (tail[2] & 1) ? QCOW2_REPAIR_ALL : QCOW2_REPAIR_LEAKS, &res);
            qcow2_close(img);
        }
        repaired = true;
        ret = fuzz_open_over(mem, &opts, &fault, &img);
        if (ret) {
            qcow2_backend_destroy(mem);
            return;
        }
    }
    bool oracle_on = pre_clean && !repaired;
    fuzz_debug("writable open%s%s; oracle %s", repaired ? " after repair" : "",
               opts.no_backing ? " without backing" : "", oracle_on ? "on" : "off");

    struct prediction pr;
    predict(img, &pr);
    struct qcow2_error err;

    if (tail[0] & 0x08) {
        fault.armed = true;
        fault.countdown = tail[1];
    }
    bool all_ok = true;
    unsigned nops = (tail[0] & 7u) + 1u;
    run_ops(img, tail, nops < MAX_OPS ? nops : MAX_OPS, &pr, &all_ok);
    if (qcow2_flush(img, &err))
        all_ok = false;
    bool injected = fault.fired > 0;
    fuzz_debug("ops done: all ok %d, injected failure %d, window %s (%" PRIu64 " bytes)",
               all_ok, injected, pr.o ? "tracked" : "lost", pr.o ? oracle_known(pr.o) : 0);
    /* On an image the check found inconsistent, two guest clusters may share a host
     * cluster (QEMU behaves the same): only a consistent image must read back. */
    if (!injected && all_ok && oracle_on)
        compare_window(img, &pr, "after the operations");
    if (!injected && all_ok && oracle_on) {
        /* Checking the image it just wrote, while still open, must find it consistent
         * (lazy refcounts aside: the dirty bit then excuses stale counts). */
        struct qcow2_info info;
        qcow2_get_info(img, &info);
        struct qcow2_check_result res;
        if (!(info.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) &&
            fuzz_check(img, QCOW2_REPAIR_NONE, &res) == 0 &&
            (res.corruptions || res.check_errors))
            fuzz_fail("open image: %" PRIu64 " corruptions, %" PRIu64
                      " check errors after writes on a consistent image",
                      res.corruptions, res.check_errors);
    }
    qcow2_close(img);

    /* Reopen what is on "disk" now, as after a restart. */
    size_t len;
    const uint8_t *now = qcow2_backend_mem_data(mem, &len);
    struct qcow2_open_options ropts = {
        .cache_bytes = FUZZ_CACHE_BYTES,
        .no_backing = true,
        .for_check = true,
    };
    if (fuzz_open_mem(now, len, len, &ropts, &img) == 0) {
        struct qcow2_info info;
        qcow2_get_info(img, &info);
        struct qcow2_check_result res;
        int cret = fuzz_check(img, QCOW2_REPAIR_NONE, &res);
        bool dirty = (info.incompatible_features & QCOW2_INCOMPAT_DIRTY) != 0;
        if (oracle_on && !dirty && cret == 0 && (res.corruptions || res.check_errors))
            fuzz_fail("reopened image: %" PRIu64 " corruptions, %" PRIu64 " check errors "
                      "after writes on a consistent image%s",
                      res.corruptions, res.check_errors,
                      injected ? " (with an injected I/O failure)" : "");
        /* Only from a leak-free image: next to leaked clusters, QEMU 7.2 itself leaks
         * one more on some allocations, and qvet allocates exactly as QEMU does. */
        if (oracle_on && !injected && all_ok && cret == 0 && pre_leaks == 0 && res.leaks)
            fuzz_fail("reopened image: %" PRIu64 " leaked clusters after successful writes "
                      "(%" PRIu64 " before)", res.leaks, pre_leaks);
        qcow2_close(img);
    } else if (!injected && (oracle_on || all_ok)) {
        /* Even on an inconsistent image, writes that all succeeded must not have
         * overwritten what opening needs (the header, the tables): QEMU refuses such an
         * allocation ("Preventing invalid allocation ... at offset 0", its metadata
         * overlap checks) and so does qvet (regressions/image/alloc-over-header-*). */
        struct qcow2_error err2;
        struct qcow2_backend *b2;
        int code = 0;
        if (qcow2_backend_mem_new(now, len, len, &b2) == 0) {
            struct qcow2_image *img2;
            code = qcow2_open_backend(b2, FUZZ_IMAGE_NAME, &ropts, &img2, &err2);
            if (!code)
                qcow2_close(img2);
        }
        fuzz_fail("the image no longer opens after writes that all succeeded%s: %s",
                  oracle_on ? " on a consistent image" : "", code ? err2.message : "?");
    }
    if (!injected && all_ok && oracle_on) {
        struct fuzz_backing_ctx rctx = { data, size, 1 };
        struct qcow2_open_options vopts = {
            .cache_bytes = FUZZ_CACHE_BYTES,
            .open_backing = fuzz_memory_backing,
            .opener_ctx = &rctx,
            .no_backing = opts.no_backing,
        };
        if (fuzz_open_mem(now, len, len, &vopts, &img) == 0) {
            compare_window(img, &pr, "after reopening");
            fuzz_walk_and_read(img, chunk, FUZZ_READ_BYTES / 4u);
            qcow2_close(img);
        } else {
            fuzz_fail("the image no longer opens read-only after writes");
        }
    }
    forget(&pr);
    qcow2_backend_destroy(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    /* The last bytes drive the reads' edges and the write step; short inputs pad with 0. */
    uint8_t tail[TAIL_BYTES] = { 0 };
    size_t t = size < TAIL_BYTES ? size : TAIL_BYTES;
    memcpy(tail + (TAIL_BYTES - t), data + (size - t), t);

    read_image(data, size, tail);
    uint64_t pre_leaks = 0;
    bool pre_clean = check_image(data, size, &pre_leaks);
    write_image(data, size, tail, pre_clean, pre_leaks);
    return 0;
}
