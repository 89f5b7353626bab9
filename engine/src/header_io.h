/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Changes to an open image's header, one named field at a time, each written through and
 * mirrored in img->hdr once it is on disk.
 */
#ifndef QVET_HEADER_IO_H
#define QVET_HEADER_IO_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "qcow2.h"

struct qcow2_image;

/* The tables the header points to with an (offset, count) pair. */
enum header_table {
    HEADER_TABLE_L1,                /* count: entries */
    HEADER_TABLE_REFCOUNT,          /* count: clusters */
    HEADER_TABLE_SNAPSHOTS,         /* count: snapshots */
};

/*
 * Moves a table to a new copy, in the order that survives a crash at any point: the
 * `len` bytes of `table` are written at `at` (none when len is 0), flushed, the header is
 * switched to (at, count), flushed. Freeing the old copy is the caller's (after it has
 * installed the new one in memory), since this layer sits below the allocator.
 */
/*
 * Whether the header (as last written without error) names the table `which` at `at`.
 * After header_switch_table failed it says how far it came: when the header was switched
 * and only the flush after it failed, the disk may name either copy, so the caller keeps
 * both allocated (a leak, not a corruption) and uses the new one from then on.
 */
bool header_table_is_at(const struct qcow2_image *img, enum header_table which, uint64_t at);

int header_switch_table(struct qcow2_image *img, enum header_table which, const void *table,
                        size_t len, uint64_t at, uint64_t count, const char *structure,
                        struct qcow2_error *err);

/* Writes the snapshot count alone (a check dropping entries past the end of the table). */
int header_write_snapshot_count(struct qcow2_image *img, uint32_t count,
                                struct qcow2_error *err);

/* Writes the virtual size field (not flushed: the caller orders it). */
int header_write_size(struct qcow2_image *img, uint64_t size, struct qcow2_error *err);

/* Clears incompatible feature bits (flushing before and after), if any of them is set. */
int header_clear_incompat(struct qcow2_image *img, uint64_t bits, struct qcow2_error *err);

/* Sets the autoclear feature bits to `bits`, flushed. */
int header_write_autoclear(struct qcow2_image *img, uint64_t bits, struct qcow2_error *err);

/*
 * Every change to an image starts here: the autoclear bits qvet does not implement (all
 * of them: it keeps no bitmaps) are cleared on disk before the first one, after telling
 * the caller which bitmaps that invalidates.
 */
int image_begin_change(struct qcow2_image *img, struct qcow2_error *err);

/*
 * With lazy refcounts, refcounts may go stale from the first change on: the dirty bit
 * says so on disk before that change.
 */
int image_mark_dirty(struct qcow2_image *img, struct qcow2_error *err);

/* Clears the dirty bit (after a flush), if set. */
int image_mark_clean(struct qcow2_image *img, struct qcow2_error *err);

/*
 * Sets the dirty bit (flushed) on a version 3 image that does not have it, for a change
 * whose steps cannot all be consistent on disk (refcounts and COPIED flags of a snapshot
 * operation move together): a crash midway then leaves an image that every opener
 * repairs. *marked says whether it was set here (to clear it with image_mark_clean).
 */
int image_mark_dirty_during(struct qcow2_image *img, bool *marked, struct qcow2_error *err);

#endif
