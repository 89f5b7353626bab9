/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The checker's shared state, inside the engine only. The checker is four files, each
 * calling only the ones below it and the lower engine layers:
 *   check.c            one pass and the public entry points (what qemu-img check reports)
 *   check_repair.c     comparing stored with computed refcounts, repairs, the rebuild
 *   check_refs.c       counting every reference the image's tables make
 *   check_snapshots.c  reading the snapshot table the way QEMU's check does, rewriting it
 *   check_io.c         reads (past the end: zeros), repair writes behind the overlap
 *                      guard, reference sets, messages
 */
#ifndef QVET_CHECKER_H
#define QVET_CHECKER_H

#include <stdbool.h>
#include <stdint.h>

#include "bytes.h"
#include "image.h"
#include "qcow2.h"
#include "refcount.h"
#include "snapshot.h"

#define CHECK_FIX_LEAKS 0x1u
#define CHECK_FIX_ERRORS 0x2u

/* QEMU refuses to check a file of more clusters than an int holds. */
#define CHECK_MAX_CLUSTERS 0x7FFFFFFFull
/* The in-memory refcounts may grow (a refblock past the end, the rebuild) up to this. */
#define CHECK_MAX_ARRAY_BYTES (1ull << 30)
#define CHECK_MAX_L1_ENTRIES (QCOW2_MAX_L1_BYTES / 8u)

/* A table offset and how many times it is referenced. */
struct check_ref {
    uint64_t offset;
    uint64_t size;
    uint64_t count;
    uint64_t active;                /* references from the active L1 */
};

/* Insertion-ordered set of check_ref keyed by (offset, size). */
struct check_refs {
    struct check_ref *items;
    uint32_t n, cap;
    uint32_t *index;                /* item number + 1, 0 = empty */
    uint32_t mask;
};

struct check_ctx {
    struct qcow2_image *img;
    qcow2_check_report report;
    void *report_ctx;
    unsigned fix;
    char last[256];                 /* the last finding, for the message of a failed run */

    uint32_t cb;
    uint64_t cs;
    uint32_t order;
    uint32_t rb_bits;               /* log2 of refcount entries per refblock */
    uint64_t rc_max;
    uint32_t l2_entries;
    uint32_t l2_entry_bytes;

    uint8_t *refs;                  /* computed refcounts, packed like a refblock */
    uint64_t nb;                    /* clusters covered (QEMU's nb_clusters) */
    uint64_t refs_cap;              /* a whole number of refblocks' worth */

    uint8_t *buf;                   /* one cluster */
    struct check_refs l2s;

    struct snapshot_table snaps;    /* as read by check_read_snapshots (tolerant) */
    uint64_t snaps_offset;
    uint64_t snaps_size;            /* bytes the table spans on disk */

    /* What repair writes must not overlap (per cluster), built on first use. */
    bool overlap_ready;
    uint64_t overlap_nb;
    uint8_t *meta;                  /* header, reftable, refblocks, snapshot table, L1s */
    uint8_t *active_l1;
    uint8_t *active_l2;
};

static inline uint64_t check_div_up(uint64_t v, uint64_t d)
{
    return v / d + (v % d != 0);
}

/* Reports one finding (and keeps it as the last one). */
void check_say(struct check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads bytes of the file; past its end they are zeros (as QEMU reads them). */
int check_read(struct check_ctx *c, void *buf, uint64_t len, uint64_t off);

/* A window over the file for many small reads in order. */
struct check_reader {
    uint8_t *win;
    uint64_t start;
    size_t len;
};

int check_reader_get(struct check_ctx *c, struct check_reader *r, void *dst, size_t n,
                     uint64_t off);

void check_refs_free(struct check_refs *m);

/* Adds `count` (and `active`) references to (offset, size). 0 or -ENOMEM. */
int check_refs_add(struct check_refs *m, uint64_t offset, uint64_t size, uint64_t count,
                   uint64_t active);

/* Entries of a table at `offset` that lie (at least partly) inside the file. */
static inline uint64_t check_entries_in_file(const struct check_ctx *c, uint64_t offset,
                                             uint64_t entries, uint32_t entry_bytes)
{
    if (offset >= c->img->file_size)
        return 0;
    return QVET_MIN(entries, check_div_up(c->img->file_size - offset, entry_bytes));
}

/* What a repair write may overlap: its own class of table. */
enum check_write_kind { CHECK_WRITE_OTHER, CHECK_WRITE_L1, CHECK_WRITE_L2 };

/*
 * Writes repair data after the overlap check. -EEXIST when it would overwrite other
 * metadata (a sign to stop), else the write's code.
 */
int check_write(struct check_ctx *c, struct qcow2_check_result *res, const void *buf,
                uint64_t len, uint64_t off, enum check_write_kind kind, const char *what);

/* Forgets the overlap map (the metadata moved). */
void check_overlap_reset(struct check_ctx *c);

/* The computed refcount of cluster k. */
static inline uint64_t check_ref_get(const struct check_ctx *c, uint64_t k)
{
    return k < c->nb ? refcount_block_entry(c->refs, c->order, k) : 0;
}

static inline void check_ref_put(struct check_ctx *c, uint64_t k, uint64_t v)
{
    refcount_block_set_entry(c->refs, c->order, k, v);
}

/* check_snapshots.c */

/* QEMU's qcow2_check_read_snapshot_table: into c->snaps. */
int check_read_snapshots(struct check_ctx *c, struct qcow2_check_result *res);

/* Writes c->snaps anew (QEMU's layout: at least the 24 known bytes of extra data). */
int check_write_snapshots(struct check_ctx *c, struct qcow2_error *err);

void check_snaps_free(struct check_ctx *c);

/* check_refs.c */

/* Covers clusters [0, want) in memory (new ones at 0). */
int check_refs_cover(struct check_ctx *c, uint64_t want);

/* Starts the in-memory refcounts over for the current file size. */
int check_refs_reset(struct check_ctx *c, struct qcow2_check_result *res);

/* QEMU's calculate_refcounts: every reference the image's tables make. */
int check_calculate(struct check_ctx *c, struct qcow2_check_result *res, bool *rebuild);

/* check_repair.c */

/* QEMU's qcow2_check_refcounts, repairs included. */
int check_refcounts(struct check_ctx *c, struct qcow2_check_result *res);

#endif
