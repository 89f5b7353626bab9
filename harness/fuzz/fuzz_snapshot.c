/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_snapshot: a valid small image with internal snapshots is built once per layout
 * (through the engine's own create, write and snapshot calls on a memory backend); the
 * input then replaces its snapshot table:
 *
 *   byte 0      bits 0-1: which base layout; bits 2-7: which operations (below)
 *   byte 1      nb_snapshots written into the header
 *   byte 2..    the bytes written over the snapshot table, from its offset on
 *
 * The patched image is read through every listed snapshot, checked, then opened
 * writable for apply / delete / create, predicted by the oracle (oracle/, in memory):
 * what a snapshot read before an apply is what the active state must read after it,
 * and after a restart the active state and a snapshot taken last must read as the
 * oracle says. Writes on an image the check found consistent must leave it consistent.
 *
 * Setting QVET_FUZZ_SNAPSHOT_SEEDS=<dir> makes the first run write one seed per layout
 * (its own, unmodified table) into <dir>; corpus/make-seeds.sh uses this. For triage,
 * QVET_FUZZ_DUMP=<file> saves the patched image an input makes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "snapshots.h"

#define SNAP_READS 4u
#define MAX_TABLE_INPUT (256u << 10)
#define HEADROOM (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_snapshot_bases_init();
    if (size < 2 || size > MAX_TABLE_INPUT + 2)
        return 0;
    struct fuzz_input in;
    fuzz_input_init(&in, data, size);
    uint8_t first = fuzz_input_u8(&in), ops = first >> 2;
    size_t len;
    const uint8_t *image = fuzz_snapshot_patched_image(&in, first & 3u, &len);
    if (!image)
        return 0;

    /* 1. Every listed snapshot, read through its own open. */
    struct qcow2_open_options ro = { .cache_bytes = FUZZ_CACHE_BYTES,
                                     .open_backing = fuzz_refuse_backing };
    struct qcow2_image *img;
    uint32_t nsnap = 0;
    if (fuzz_open_mem(image, len, len, &ro, &img) == 0) {
        size_t sum = fuzz_touch_info(img);
        nsnap = fuzz_list_snapshots(img, &sum);
        fuzz_read_snapshots(img, image, len, NULL, false, SNAP_READS);
        qcow2_close(img);
    }

    /* 2. The check, read-only: does the oracle hold the writes to consistency? */
    bool clean = fuzz_consistent(image, len, 0, NULL);

    /* 3. Writable (repaired first if need be): apply, delete, create. */
    struct qcow2_backend *mem;
    if (qcow2_backend_mem_new(image, len, len + HEADROOM, &mem))
        return 0;
    struct qcow2_open_options rw = { .cache_bytes = FUZZ_CACHE_BYTES, .writable = true,
                                     .open_backing = fuzz_refuse_backing };
    bool repaired, all_ok = true;
    if (fuzz_open_writable(mem, &rw, ops & 1, NULL, &img, &repaired)) {
        qcow2_backend_destroy(mem);
        return 0;
    }
    clean &= !repaired;
    uint32_t count = qcow2_snapshot_count(img);
    if (count != nsnap && nsnap)
        fuzz_fail("writable open lists %" PRIu32 " snapshots, read-only %" PRIu32, count,
                  nsnap);
    struct oracle *model = count ? fuzz_snapshot_apply_one(img, image, len, ops, repaired, &all_ok)
                                 : NULL;
    fuzz_snapshot_delete_one(img, ops, &all_ok);
    if (!model)
        model = fuzz_oracle_now(img, FUZZ_SNAPSHOT_WINDOW);
    char *new_id = ops & 0x10 ? fuzz_snapshot_create_one(img, model, &all_ok) : NULL;
    struct qcow2_error err;
    if (qcow2_snapshot_delete(img, "no such snapshot \x01", &err) != -ENOENT)
        all_ok = false;
    if (qcow2_flush(img, &err))
        all_ok = false;
    qcow2_close(img);

    /* 4. After a restart: consistent, and reading as the oracle says. */
    size_t now_len;
    const uint8_t *now = qcow2_backend_mem_data(mem, &now_len);
    struct qcow2_check_result res;
    bool dirty;
    fuzz_recheck(now, now_len, clean && all_ok, clean && all_ok, "snapshot operations", &res,
                 &dirty);
    if (model && all_ok) {
        struct qcow2_open_options at = { .open_backing = fuzz_refuse_backing };
        fuzz_expect_state(now, now_len, &at, NULL, model, FUZZ_SNAPSHOT_WINDOW,
                          "the active state after reopening");
        /* Taken last, "fz" has the active state's size and known prefix. */
        if (new_id)
            fuzz_expect_state(now, now_len, &at, new_id, model, FUZZ_SNAPSHOT_WINDOW,
                              "snapshot \"fz\" after reopening");
    }
    free(new_id);
    oracle_close(model);
    qcow2_backend_destroy(mem);
    return 0;
}
