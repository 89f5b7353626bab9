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
    fuzz_read_edges(img, c->edge[0], c->edge[1]);
    fuzz_read_snapshots(img, data, size, &input_as_backing, opts.no_backing, SNAPSHOTS);
    qcow2_close(img);
    volatile size_t sink = sum;
    (void)sink;
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
        if (fuzz_window_op(img, &c->ops, i, &window, o)) {
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
    struct qcow2_open_options ro = { .no_backing = opts.no_backing,
                                     .open_backing = fuzz_memory_backing, .opener_ctx = &ctx };
    if (clean_run && fuzz_expect_state(now, len, &ro, NULL, o, WINDOW, "after reopening"))
        fuzz_fail("the image no longer opens read-only after writes");
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
