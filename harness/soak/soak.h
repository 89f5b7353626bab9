/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The differential soak: a seeded stream of operations applied to a target and mirrored
 * to the oracle; every read compared (blkverify), and at intervals the target's own
 * check, `qemu-img check`, `qemu-img compare` and every snapshot's contents.
 */
#ifndef QVET_SOAK_H
#define QVET_SOAK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "target.h"

enum op_kind {
    OP_READ,
    OP_WRITE,
    OP_ZERO,
    OP_ZERO_UNMAP,
    OP_DISCARD,
    OP_WRITE_COMPRESSED,
    OP_FLUSH,
    OP_SNAPSHOT_CREATE,
    OP_SNAPSHOT_APPLY,
    OP_SNAPSHOT_DELETE,
    OP_REOPEN,
    OP_RESIZE,
    OP_KINDS
};

struct op {
    uint32_t n;                     /* 1-based number in the run */
    enum op_kind kind;
    uint64_t off;
    uint64_t len;                   /* for OP_RESIZE: the new size */
    char snapshot[TARGET_ID_MAX];   /* apply/delete: id; create: the name */
};

/* "write", "read", ...; and the reverse (false when unknown). */
const char *op_kind_name(enum op_kind k);
bool op_kind_parse(const char *name, enum op_kind *k);

/* One trace line (no newline) / parsed back. */
void op_format(const struct op *op, char *buf, size_t cap);
bool op_parse(const char *line, struct op *op);

enum soak_backing { BACKING_NONE, BACKING_QCOW2, BACKING_RAW, BACKING_CHAIN };

struct soak_config {
    uint64_t seed;
    uint64_t ops;                   /* stop after this many (0: by time) */
    double seconds;                 /* stop after this long (0: by count) */
    uint64_t size;
    char options[512];              /* qvet create -o string */
    enum soak_backing backing;
    uint64_t check_every;           /* ops between cross-checks (0: only at the end) */
    char dir[512];
    char trace[600];                /* "" = DIR/trace.txt */
    unsigned weights[OP_KINDS];
    bool quiet;
    bool qemu_checks;               /* run qemu-img check/compare at each cross-check */
    uint64_t io_size;               /* nonzero: every I/O is this long and aligned to it */
    const struct target_qvet_options *target_opts;  /* hooks for the driver's own tests */
};

void soak_config_defaults(struct soak_config *c);
bool soak_backing_parse(const char *s, enum soak_backing *b);
const char *soak_backing_name(enum soak_backing b);
/* Parses "read=30,write=30,..." into c->weights. Returns false on a bad key or value. */
bool soak_weights_parse(struct soak_config *c, const char *text);

/* What stopped a run; a replay or minimization that "fails the same way" matches this. */
enum soak_outcome {
    SOAK_PASSED,
    SOAK_DIVERGED,                  /* a read differed from the oracle */
    SOAK_CHECK_FAILED,              /* engine check, qemu-img check or compare failed */
    SOAK_SNAPSHOT_DIVERGED,
    SOAK_TARGET_ERROR,              /* the target failed an operation it should do */
    SOAK_SETUP_ERROR,
};

struct soak_result {
    enum soak_outcome outcome;
    enum op_kind failing_kind;      /* of the op that failed (or OP_KINDS for a check) */
    uint64_t failing_op;
    uint64_t ops_run;
    uint64_t reads_compared;
    uint64_t checks_run;
    double seconds;                 /* spent in operations, cross-checks excluded */
};

/*
 * Runs the soak. With `replay` (n_replay ops) the operations come from it instead of the
 * generator. Writes the trace, prints progress, the failure report and the summary to
 * `out` (unless quiet). Returns 0 when the run passed, 1 when it found a problem, -1 when
 * it could not run (setup). Every problem keeps image, oracle and trace in the directory.
 */
int soak_run(const struct soak_config *c, const struct op *replay, size_t n_replay,
             struct soak_result *r, FILE *out);

/* Reads a trace written by soak_run: its config and its operations (malloc'd). */
int soak_trace_load(const char *path, struct soak_config *c, struct op **ops, size_t *n,
                    char *errbuf, size_t errlen);

/*
 * Shrinks a failing trace by delta debugging: the smallest op list (renumbered) that
 * still fails with the same outcome and failing op kind. Writes it to `out_path`.
 */
int soak_minimize(const char *trace, const char *out_path, FILE *log);

/* Test payloads: every sector names the op and the sector it was written for. */
void payload_fill(uint8_t *buf, uint64_t off, size_t len, uint32_t op);
/* Recognizes a payload sector: its op and original sector number. */
bool payload_identify(const uint8_t *sector, uint32_t *op, uint64_t *sector_no);

#endif
