/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Power loss and I/O faults, judged (docs/crash-safety.md).
 *
 * crashtest: a seeded workload runs on the qvet engine through a recording backend
 * (harness/testlib/io_record.h) while the oracle follows it. From the log of host writes,
 * flushes and truncates it then builds the files a power loss could leave, under the
 * model of a volatile write cache: everything before the last completed flush is on
 * disk; of the writes since, any subset (sampled, seeded), and one of them possibly torn
 * (a prefix, in 512-byte sectors). Each crashed image must open (a dirty image is
 * repaired, as QEMU repairs it), pass qemu-img check and qvet's check without
 * corruption (leaks are counted, not failures), and read back, through QEMU and through
 * qvet, exactly what the oracle held at the last guest flush that had completed, except
 * that a sector an operation since then touched may hold its old or its new data, and
 * the size may be one a resize (or snapshot apply) since gave the disk.
 *
 * faultinject: a fixed workload runs again and again with the Nth host I/O failing
 * (read error, write error, ENOSPC, short write, flush error) for every N, until a run
 * completes without the fault being reached. See faultinject_run.
 */
#ifndef QVET_CRASH_H
#define QVET_CRASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "soak.h"

#define CRASH_MAX_FAILURES 16

/* A named configuration: image options, backing file and workload mix. */
struct crash_preset {
    const char *name;
    const char *options;
    bool backing;
    const char *weights;            /* soak_weights_parse text over the crash mix */
    uint64_t size;
    const char *what;               /* one line for --help */
};

extern const struct crash_preset crash_presets[];
extern const size_t crash_preset_count;

struct crash_config {
    uint64_t seed;
    uint32_t ops;                   /* generated workload length */
    uint64_t size;                  /* virtual size */
    char options[512];              /* qvet create -o */
    bool backing;                   /* a raw backing file holding a pattern */
    unsigned weights[OP_KINDS];
    char script[4096];              /* "write 0 65536; flush; ...": the workload instead */
    unsigned samples;               /* random subsets of each interval's writes */
    unsigned tears;                 /* torn writes per interval */
    uint64_t max_states;            /* states judged at most (0: no bound) */
    int64_t only_state;             /* judge just this state (-1: all) */
    uint32_t armed_from_op;         /* faultinject: I/Os count from this op on (0, 1: all) */
    bool qemu;                      /* QEMU judges too (qemu-img check, convert) */
    char dir[512];                  /* the work directory (exists) */
    const char *preset;             /* the preset's name, for the report */
};

/* Defaults, then a preset (false when the name is unknown). */
void crash_config_defaults(struct crash_config *c);
bool crash_config_preset(struct crash_config *c, const char *name);

struct crash_failure {
    uint64_t state;
    const char *kind;               /* crash-state-corruption, lost-flushed-bytes, ... */
    char reason[400];
};

/* What a run found: its first failures, the image kept, or why it could not run. */
struct crash_findings {
    size_t n_failures;              /* the first CRASH_MAX_FAILURES are kept */
    uint64_t failures_total;
    struct crash_failure failures[CRASH_MAX_FAILURES];
    char kept_image[600];           /* the first failing image ("" none) */
    char setup_error[600];          /* setup failed (the workload itself, a tool) */
};

/* Records a failure and prints "qvet WHERE N: KIND: REASON" to out (may be NULL). */
void crash_note(struct crash_findings *f, FILE *out, const char *where, uint64_t at,
                const char *kind, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Records why the run could not go on; returns -1. */
int crash_setup_failed(struct crash_findings *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct crash_result {
    uint64_t ops, events, writes, flushes, intervals;
    uint64_t states_built, states, leaky_states;
    uint64_t corruptions, lost_bytes, bad_sectors;
    bool bounded;                   /* max_states stopped the exploration */
    struct crash_findings found;
};

/*
 * Runs the crashtest in c->dir; progress and findings to `out` (may be NULL). Returns 0
 * when no state failed, 1 when one did, -1 on a setup failure (r->setup_error).
 */
int crashtest_run(const struct crash_config *c, struct crash_result *r, FILE *out);

/* The workload: c->script parsed, or c->ops generated from c->seed. */
int crash_workload(const struct crash_config *c, uint64_t cluster_size, struct op **ops,
                   size_t *n, char *errbuf, size_t errlen);

/* ---- faultinject ------------------------------------------------------------------------ */

enum fault_kind { FAULT_READ, FAULT_WRITE, FAULT_ENOSPC, FAULT_SHORT_WRITE, FAULT_FLUSH,
                  FAULT_KINDS };

/* "read-error", "write-error", "enospc", "short-write", "flush-error". */
const char *fault_kind_name(enum fault_kind k);

struct fault_figures {
    uint64_t runs;                  /* workloads run with this kind of fault armed */
    uint64_t fired;                 /* ... in which the fault was reached */
    uint64_t errors;                /* ... and the op reported an error */
    uint64_t misreports;            /* ... and the op reported success */
    uint64_t corruptions, lost_bytes, bad_sectors;
};

/* Where faults struck, in the engine's terms (the failing structure). */
#define FAULT_MAX_POINTS 24
struct fault_point {
    char name[64];
    uint64_t count;
};

struct fault_result {
    struct fault_figures kinds[FAULT_KINDS];
    struct fault_point points[FAULT_MAX_POINTS];
    size_t n_points;
    uint64_t ops;
    struct crash_findings found;
};

/*
 * The fault points every faultinject over the configurations together must reach, by
 * index (NULL past the last), and how often a result reached one ("metadata read": any
 * read but of data).
 */
const char *fault_named_point(size_t i);
uint64_t fault_point_count(const struct fault_result *r, const char *name);

/*
 * Runs the workload of `c` (its script, or c->ops generated ops, the configuration's mix
 * with reads, reopens and resizes added) once per N and fault kind in `kinds` (a mask of
 * 1 << enum fault_kind), with the Nth host I/O of that kind failing (c->only_state: only
 * that N), until a run completes without reaching it. The op that meets the fault must
 * fail, but a reopen whose close met it (the close, as QEMU's, cannot report: point
 * "close (unreported)"); after closing and reopening, the image must pass the structure
 * judges, every op acknowledged before reads back, and the failed op shows old or new
 * data in each sector. Returns 0, 1 when a run failed, -1 on a setup failure.
 */
int faultinject_run(const struct crash_config *c, unsigned kinds, struct fault_result *r,
                    FILE *out);

/* ---- shared by crashtest and faultinject ---------------------------------------------- */

/* Runs a tool with its output into log_path; its exit status, or -1 if it did not run. */
int crash_run_tool(const char *log_path, char *const argv[]);

/*
 * The structure judges of an image on disk: qvet opens it read-write (repairing a dirty
 * image), qvet's check and (with qemu) qemu-img check find no corruption. Returns 0 and
 * *leaks, or 1 with a one-line reason.
 */
int crash_judge_structure(const char *path, const char *log_path, bool qemu, bool *leaks,
                          char *reason, size_t cap);

/*
 * Reads the disk (or a snapshot) through qvet into buf (len bytes, zeros past the end);
 * *disk_size (when not NULL) the disk's size.
 */
struct qcow2_error;
int crash_qvet_read(const char *path, const char *snapshot, uint8_t *buf, uint64_t len,
                    uint64_t *disk_size, struct qcow2_error *err);

/* Resolves a generated snapshot name "#K" (the K-th snapshot the oracle holds) to its id. */
struct oracle;
void crash_resolve_snapshot(const struct oracle *o, struct op *op);

#endif
