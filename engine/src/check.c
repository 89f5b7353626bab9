/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Consistency check and repair, with the meaning `qemu-img check` (QEMU 7.2) gives
 * them; docs/format.md §12.
 *
 * One pass recomputes every refcount in memory from the image's own tables (header,
 * L1/L2 trees of the active state and of every snapshot, the snapshot table, the
 * refcount structure itself, bitmaps), compares that with the stored refcounts, then
 * checks the COPIED flags of the active tree. With a repair mode the same pass fixes
 * what it may (leaked refcounts, refcounts that are too low, COPIED flags, refcount
 * blocks that lie past the end of the file, preallocated zero clusters that are not
 * aligned), rebuilding the whole refcount structure when it cannot be trusted. After a
 * repair a second pass reports what remains, as qemu-img does.
 *
 * Hostile images: everything sized by the file is bounded. Tables are read only as
 * far as the file reaches (bytes past the end read as zeros, and zeros reference
 * nothing). This file runs the passes; checker.h says which file does what.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "header_io.h"
#include "image.h"
#include "refcount.h"
#include "sync.h"

static void check_add(struct qcow2_check_result *out, const struct qcow2_check_result *in,
                      bool allocation)
{
    out->corruptions += in->corruptions;
    out->leaks += in->leaks;
    out->check_errors += in->check_errors;
    out->corruptions_fixed += in->corruptions_fixed;
    out->leaks_fixed += in->leaks_fixed;
    if (allocation) {
        out->image_end_offset = in->image_end_offset;
        out->total_clusters = in->total_clusters;
        out->allocated_clusters = in->allocated_clusters;
        out->fragmented_clusters = in->fragmented_clusters;
        out->compressed_clusters = in->compressed_clusters;
    }
}

/* One run of QEMU's qcow2_co_check_locked; negative when the run had to stop. */
static int check_pass(struct check_ctx *c, struct qcow2_check_result *result)
{
    struct qcow2_check_result snap = { 0 }, refs = { 0 };
    memset(result, 0, sizeof(*result));
    int ret = check_read_snapshots(c, &snap);
    if (ret) {
        check_add(result, &snap, false);
        return ret;
    }
    ret = check_refcounts(c, &refs);
    check_add(result, &refs, true);
    if (ret) {
        check_add(result, &snap, false);
        return ret;
    }
    if (snap.corruptions && (c->fix & CHECK_FIX_ERRORS)) {
        struct qcow2_error e;
        if (check_write_snapshots(c, &e)) {
            snap.check_errors++;
            check_say(c, "ERROR failed to update snapshot table: %s", e.message);
        } else {
            snap.corruptions_fixed += snap.corruptions;
            snap.corruptions = 0;
        }
    }
    check_add(result, &snap, false);
    if (c->fix) {
        struct qcow2_error e;
        int r = image_sync(c->img, &e);
        if (!r && !result->check_errors && !result->corruptions) {
            r = image_mark_clean(c->img, &e);
            if (!r)
                r = header_clear_incompat(c->img, QCOW2_INCOMPAT_CORRUPT, &e);
        }
        if (r) {
            result->check_errors++;
            check_say(c, "ERROR: %s", e.message);
        }
    }
    return 0;
}

static void check_ctx_release(struct check_ctx *c)
{
    free(c->refs);
    free(c->buf);
    check_refs_free(&c->l2s);
    check_snaps_free(c);
    check_overlap_reset(c);
}

int qcow2_check(struct qcow2_image *img, enum qcow2_repair repair,
                struct qcow2_check_result *result, qcow2_check_report report,
                void *report_ctx, struct qcow2_error *err)
{
    memset(result, 0, sizeof(*result));
    if (img->format != QCOW2_FORMAT_QCOW2)
        return image_error(img, err, -ENOTSUP, "image", QCOW2_NO_OFFSET,
                           "only qcow2 images can be checked");
    if (repair != QCOW2_REPAIR_NONE && !img->writable)
        return image_error(img, err, -EROFS, "image", QCOW2_NO_OFFSET,
                           "repair needs the image opened writable (and for check)");
    /* The check reads the file: the metadata cache's changes go there first. */
    int ret = img->writable ? image_sync(img, err) : 0;
    if (ret)
        return ret;
    struct check_ctx c = {
        .img = img,
        .report = report,
        .report_ctx = report_ctx,
        .fix = repair == QCOW2_REPAIR_ALL ? CHECK_FIX_LEAKS | CHECK_FIX_ERRORS
               : repair == QCOW2_REPAIR_LEAKS ? CHECK_FIX_LEAKS : 0,
        .cb = img->geo.cluster_bits,
        .cs = img->cluster_size,
        .order = img->hdr.refcount_order,
        .rb_bits = refcount_block_bits(img->geo.cluster_bits, img->hdr.refcount_order),
        .rc_max = refcount_max(img->hdr.refcount_order),
        .l2_entries = 1u << geometry_l2_bits(&img->geo),
        .l2_entry_bytes = geometry_l2_entry_bytes(&img->geo),
    };
    c.buf = malloc(c.cs);
    if (!c.buf)
        return image_error(img, err, -ENOMEM, "image", QCOW2_NO_OFFSET, "out of memory");

    ret = check_pass(&c, result);
    if (!ret && c.fix && (result->corruptions_fixed || result->leaks_fixed)) {
        /* Report what is left, as qemu-img does after a repair. */
        struct qcow2_check_result first = *result;
        c.fix = 0;
        ret = check_pass(&c, result);
        result->corruptions_fixed = first.corruptions_fixed;
        result->leaks_fixed = first.leaks_fixed;
    }
    if (ret) {
        /* The run stopped part-way (qemu-img: "Check failed"); *result has what it saw. */
        if (!result->check_errors)
            result->check_errors = 1;
        image_error(img, err, ret, "image", QCOW2_NO_OFFSET, "check failed: %s",
                    c.last[0] ? c.last : strerror(-ret));
    }
    check_ctx_release(&c);
    return ret;
}

int qcow2_check_exit_status(const struct qcow2_check_result *r)
{
    if (r->check_errors)
        return 1;
    if (r->corruptions)
        return 2;
    if (r->leaks)
        return 3;
    return 0;
}
