/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The differential soak: a seeded stream of operations applied to a target and mirrored
 * to the oracle; every read compared (blkverify), and at intervals the target's own
 * check, `qemu-img check`, `qemu-img compare` and every snapshot's contents.
 */
#ifndef QVET_SOAK_H
#define QVET_SOAK_H

#include <signal.h>
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
    /*
     * Crashes (targets that can simulate one): the power fails and every write since the
     * last flush is lost; or the process dies with every write landed but without a clean
     * close (a dirty image under lazy refcounts); or the power fails and each write since
     * the flush lands, or not, or only its first sectors (the storage reordered them).
     * Each time the image is opened again and must check clean (leaks aside) and hold
     * every flushed byte.
     */
    OP_POWER_CUT,
    OP_DIRTY_REOPEN,
    OP_TORN_POWER_CUT,              /* each unflushed write lands, or not, or in part */
    OP_KINDS
};

/* The longest I/O the soak issues (and a trace may hold): room for 64+ large clusters. */
#define SOAK_MAX_IO (16u << 20)

struct op {
    uint32_t n;                     /* 1-based number in the run */
    enum op_kind kind;
    uint64_t off;
    uint64_t len;                   /* for OP_RESIZE: the new size */
    char snapshot[TARGET_ID_MAX];   /* apply/delete: id; create: the name */
    /*
     * Crash ops: besides the sectors written since the last flush, the reopened disk is
     * compared whole (compare_parts 0), or only its compare_part-th of compare_parts
     * equal stretches of whole clusters (1-based). A trace line says "compare K/N".
     */
    uint32_t compare_part, compare_parts;
};

/* The stretches a crash compare of a run in slices goes through, one per power cut. */
#define SOAK_CRASH_SLICES 8

/* "write", "read", ...; and the reverse (false when unknown). */
const char *op_kind_name(enum op_kind k);
bool op_kind_parse(const char *name, enum op_kind *k);
/* A power cut, torn or not, or a dirty reopen: the kinds a crash shim must be under. */
bool op_kind_is_crash(enum op_kind k);

/* One trace line (no newline) / parsed back. */
void op_format(const struct op *op, char *buf, size_t cap);
bool op_parse(const char *line, struct op *op);

enum soak_backing { BACKING_NONE, BACKING_QCOW2, BACKING_RAW, BACKING_CHAIN };

struct soak_config {
    uint64_t seed;
    /* A generated run stops at whichever limit it reaches first (0: no such limit). */
    uint64_t ops;                   /* stop after this many operations */
    double seconds;                 /* stop after this long, cross-checks excluded */
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
    /*
     * Progress: on a terminal a status line rewritten in place; otherwise a line every
     * `heartbeat` seconds (0: none). Never when quiet.
     */
    double heartbeat;
    /* Set (to the signal's number) when the run should stop after the current op. */
    const volatile sig_atomic_t *stop;
    char target[512];               /* the target's spec (target.h): "qvet" */
    char reader[512];               /* a read-only second implementation's spec, or "" */
    bool compressible_payload;      /* payload_set_compressible for the run */
    size_t cache_bytes;             /* the target's metadata cache (0: its default) */
    /* A generated run starts by writing the first `fill` bytes of the disk, in order. */
    uint64_t fill;
    /* The crash ops' weights are multiplied by this (0: as they are): lazy refcounts. */
    unsigned crash_boost;
    /* An op (or a cross-check: six times as long) running longer than this is a hang. */
    double hang_seconds;
    char config_name[64];           /* the matrix entry the run is (""; --config NAME) */
    /* A qvet command for `qvet map` at the cross-checks ("": no map check). */
    char qvet_binary[512];
    const struct target_hooks *hooks;   /* for the driver's own tests; NULL: none */
    /*
     * After a power cut: the whole disk compared (true), or one slice of it, each cut the
     * next (op.compare_part), the first cut of the run and every cross-check whole.
     */
    bool crash_compare_whole;
};

/*
 * The hooks soak_config_defaults puts into every config, so that a test program can run
 * the whole qvet command over a wrapped target (tests/triage/qvet_liar.c); NULL in qvet.
 */
extern const struct target_hooks *soak_process_hooks;

void soak_config_defaults(struct soak_config *c);
/* The qvet command later soak_config_defaults give for the map check (qvet_binary). */
void soak_set_qvet_command(const char *path);

/*
 * The configuration matrix: named image settings a soak can be pinned to (--config NAME)
 * or rotated through (--config all), covering cluster sizes, refcount widths, v2 and v3,
 * extended L2, both compression types, lazy refcounts, every kind of backing, options
 * crossed with a backing file, and small metadata caches.
 */
struct soak_matrix_entry {
    const char *name;
    const char *options;            /* qvet create -o */
    enum soak_backing backing;
    uint64_t size;
    size_t cache_bytes;             /* 0: the target's default */
    uint64_t fill;                  /* bytes written first (soak_config.fill) */
    unsigned crash_boost;           /* soak_config.crash_boost */
};
const struct soak_matrix_entry *soak_matrix(size_t *n);
const struct soak_matrix_entry *soak_matrix_find(const char *name);
/* Sets c's image settings (options, backing, size, cache, config_name, crash_boost). */
void soak_matrix_apply(struct soak_config *c, const struct soak_matrix_entry *e);
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
    SOAK_SETUP_ERROR,               /* setup or environment (a full disk, a missing tool) */
    SOAK_INTERRUPTED,               /* asked to stop (SIGINT, SIGTERM, SIGHUP) */
    SOAK_CRASHED,                   /* the process running the target died */
    SOAK_KILLED,                    /* ... of SIGKILL: the OOM killer or a person */
    SOAK_READER_DIVERGED,           /* the --reader read differently from the oracle */
    SOAK_HUNG,                      /* an op or a cross-check outran hang_seconds */
    SOAK_CRASH_STATE,               /* after a power cut: lost flushed bytes or damage */
};

/* "passed", "diverged", "check-failed", ...: the verdict of summary.json. */
const char *soak_outcome_name(enum soak_outcome o);

/*
 * The exit status a run ends with: 0 passed; 1 a bug found; 2 setup, usage or
 * environment; 128 + the signal's number when interrupted (as a shell reports it).
 */
int soak_exit_status(enum soak_outcome o, int signal_number);

struct soak_result {
    enum soak_outcome outcome;
    enum op_kind failing_kind;      /* of the op that failed (or OP_KINDS for a check) */
    uint64_t failing_op;
    uint64_t ops_run;
    uint64_t reads_compared;
    uint64_t checks_run;
    double seconds;                 /* spent in operations, cross-checks excluded */
    uint32_t last_op;               /* number of the last op started (0: none) */
    bool in_cross_check;            /* a cross-check was running (for a crash report) */
    /* When the running op or cross-check started (CLOCK_MONOTONIC seconds; 0: none). */
    volatile double busy_since;
    bool has_failing_sector;
    uint64_t failing_sector;        /* first mismatching sector of a divergence */
    int signal_number;              /* of an interrupt, crash or kill */
    char message[512];              /* the report's first line, or the setup error */
    unsigned target_caps;           /* what the target could do (TARGET_CAN_*) */
    uint64_t done[OP_KINDS];        /* ops of each kind the target did */
    char kind[40];                  /* the failure's kind when the outcome does not say it */
};

/*
 * The failure's kind as every tool's summary.json names it (divergence, check-failure,
 * crash-state-corruption, lost-flushed-bytes, hang, ...); "none" for a run without one.
 */
const char *soak_failure_kind(const struct soak_result *r);

/*
 * Runs the soak. With `replay` (n_replay ops) the operations come from it instead of the
 * generator. Writes the trace, prints progress, the failure report and the summary to
 * `out` (unless quiet). Returns 0 when the run passed, 1 when it found a problem, -1 when
 * it could not run (setup or environment) or was interrupted. Every problem keeps image,
 * oracle and trace in the directory. `r` is kept current while the run goes on.
 */
int soak_run(const struct soak_config *c, const struct op *replay, size_t n_replay,
             struct soak_result *r, FILE *out);

/*
 * soak_run in a child process, so that a crash of the target is reported (outcome
 * SOAK_CRASHED, the op it died in, the trace cut to its text) instead of ending qvet.
 * SIGINT, SIGTERM and SIGHUP reach the child, which stops after its current op; a
 * second one ends it at once. Returns soak_run's value (1 for a crash, -1 for a kill).
 */
int soak_run_supervised(const struct soak_config *c, const struct op *replay, size_t n_replay,
                        struct soak_result *r, FILE *out);

/*
 * Makes SIGINT, SIGTERM and SIGHUP ask for a stop instead of ending the process; the
 * second one ends it as usual. Returns the flag for soak_config.stop.
 */
const volatile sig_atomic_t *soak_stop_on_signals(void);

/*
 * A trace's header: the settings a replay needs ("target" first: the options are its
 * kind's), up to and including the "ops" line. `note` follows "trace 1" in the comment.
 */
void soak_trace_header(const struct soak_config *c, const char *path, const char *note,
                       char *buf, size_t cap);

/* Where the run's trace goes: c->trace, or DIR/trace.txt. */
void soak_trace_path(const struct soak_config *c, char *buf, size_t cap);

/*
 * The external tools the configuration needs (qemu-img, qemu-io) are on PATH; otherwise
 * a one-line reason in errbuf.
 */
bool soak_tools_available(const struct soak_config *c, char *errbuf, size_t errlen);

/*
 * Reads a trace written by soak_run: its config and its operations (malloc'd). Refuses
 * (-EINVAL, "PATH: line N: ..." in errbuf) a malformed line, an operation outside the
 * largest disk the trace reaches, and a trace without operations. A trace whose writer
 * was killed may end in NUL bytes: reading stops there, and *nul_line (when not NULL)
 * is the line they start on (0: none).
 */
int soak_trace_load(const char *path, struct soak_config *c, struct op **ops, size_t *n,
                    size_t *nul_line, char *errbuf, size_t errlen);

/* Cuts a trace file at its first NUL byte (the unwritten tail of a killed run). */
int soak_trace_cut_at_nul(const char *path);

enum minimize_result {
    MINIMIZE_DONE,                  /* out_path holds the minimized trace */
    MINIMIZE_INTERRUPTED,           /* ... the smallest found before the stop */
    MINIMIZE_TRACE_PASSES,          /* nothing to minimize */
    MINIMIZE_ERROR,                 /* the trace or out_path could not be used */
};

/*
 * Shrinks a failing trace by delta debugging: the smallest op list (ops keep their
 * numbers) that still fails with the same outcome and failing op kind. Writes it to
 * `out_path`; the trial runs happen in `work_dir`, which in the end holds a run of the
 * minimized trace. Stops early, keeping the best found so far, when *stop is set.
 */
enum minimize_result soak_minimize(const char *trace, const char *out_path,
                                   const char *work_dir, const volatile sig_atomic_t *stop,
                                   FILE *log);

/* Test payloads: every sector names the op and the sector it was written for. */
void payload_fill(uint8_t *buf, uint64_t off, size_t len, uint32_t op);
/*
 * Payloads that compress to about half (half of each sector one repeated word), for
 * implementations that compress what they are given (QEMU's compress filter). Off by
 * default.
 */
void payload_set_compressible(bool on);
/* Recognizes a payload sector: its op and original sector number. */
bool payload_identify(const uint8_t *sector, uint32_t *op, uint64_t *sector_no);

#endif
