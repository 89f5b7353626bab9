/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One operation, end to end: applied to the target, predicted by the oracle, every read
 * compared with the oracle, and afterwards the target's disk size held to the oracle's.
 * The soak driver and the fuzz_ops target run every operation through step_run, so an
 * op means the same in both; they differ only in what they do with the outcome (a report
 * and a trace, or an abort). The oracle is also the list of snapshots: an apply or
 * delete of an id it does not hold is skipped.
 */
#ifndef QVET_STEP_H
#define QVET_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "oracle.h"
#include "soak.h"
#include "target.h"
#include "unflushed.h"

enum step_outcome {
    STEP_DONE,                      /* applied and predicted; a read agreed */
    STEP_SKIPPED,                   /* not issued (r->why): nothing changed */
    STEP_REFUSED,                   /* the target declined it as documented (t->message) */
    STEP_DIVERGED,                  /* a read differed from the oracle (r->sector) */
    STEP_SIZE_DIVERGED,             /* afterwards the target's size is not the oracle's */
    STEP_TARGET_FAILED,             /* the target failed it (r->error, t->message) */
    STEP_ORACLE_FAILED,             /* the oracle could not follow (r->error: the host's) */
    STEP_CRASH_DAMAGED,             /* around a crash the target's check found damage (r->check) */
    STEP_CRASH_LOST,                /* after a crash a sector holds none of its versions */
};

struct step {
    struct target *t;
    struct oracle *o;
    struct target_facts facts;      /* the target's, as of the last op it ran */
    unsigned max_snapshots;         /* a snapshot create past this many is skipped */
    uint8_t *buf, *want;            /* io_cap bytes each: the target's and the oracle's */
    size_t io_cap;                  /* the longest I/O issued; longer ops are skipped */
    struct unflushed *unflushed;    /* the writes since the last flush (NULL: no crash ops) */
    uint32_t full_reads;            /* step_compare's so far: where its pieces split */
};

struct step_result {
    enum step_outcome outcome;
    int error;
    char why[96];                   /* SKIPPED: why it was not issued */
    uint64_t off;                   /* DIVERGED: the bytes compared are buf and want, */
    size_t len;                     /* len bytes from guest offset off */
    uint64_t sector;                /* DIVERGED: the first sector that differs */
    bool unflushed_sector;          /* CRASH_LOST: the sector was written since the flush */
    bool before_crash;              /* CRASH_DAMAGED: the check before the crash found it */
    struct target_check check;      /* CRASH_DAMAGED: what the check after the crash found */
};

/* What a target must be able to do (TARGET_CAN_*) for an op of this kind. */
unsigned step_needs(enum op_kind k);
/* Everything the target was told so far is on disk (a cross-check flushed it). */
void step_flushed(struct step *st, uint32_t op);

/* Before the first op: the target's facts. Returns 0 or the target's error. */
int step_start(struct step *st);

/* Runs one operation. Writes carry payload_fill's data for the op's number. */
enum step_outcome step_run(struct step *st, const struct op *op, struct step_result *r);

/*
 * The whole disk (snapshot NULL) or a snapshot, as far as the current disk reaches (QEMU
 * reads a snapshot at the active size), against the oracle, 256 KiB (at most io_cap) at
 * a time: STEP_DONE, STEP_DIVERGED, STEP_TARGET_FAILED or STEP_ORACLE_FAILED
 * (STEP_SKIPPED for a snapshot of a target that cannot read snapshots).
 */
enum step_outcome step_compare(struct step *st, const char *snapshot, struct step_result *r);

#endif
