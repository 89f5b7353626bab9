/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Shrinking a failing trace with delta debugging (Zeller's ddmin): drop chunks of
 * operations for as long as what remains still fails the same way: the same outcome
 * at an operation of the same kind. Operations keep their numbers (payloads depend on
 * them), and an operation that no longer fits the disk is skipped by the driver.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "soak.h"

struct trial {
    struct soak_config config;
    enum soak_outcome outcome;
    enum op_kind kind;
    unsigned runs;
    FILE *log;
};

static bool fails_same_way(struct trial *t, const struct op *ops, size_t n)
{
    struct soak_result r;
    t->runs++;
    soak_run(&t->config, ops, n, &r, NULL);
    return r.outcome == t->outcome && r.failing_kind == t->kind;
}

static int write_trace(const char *path, const struct soak_config *c, const struct op *ops,
                       size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    char header[4096];
    soak_trace_header(c, path, " (minimized)", header, sizeof(header));
    fputs(header, f);
    char line[160];
    for (size_t i = 0; i < n; i++) {
        op_format(&ops[i], line, sizeof(line));
        fprintf(f, "%s\n", line);
    }
    return fclose(f) ? -errno : 0;
}

static const char *outcome_phrase(enum soak_outcome o)
{
    switch (o) {
    case SOAK_DIVERGED: return "read mismatch";
    case SOAK_CHECK_FAILED: return "check failure";
    case SOAK_SNAPSHOT_DIVERGED: return "snapshot mismatch";
    case SOAK_READER_DIVERGED: return "reader mismatch";
    case SOAK_CRASH_STATE: return "crash-state failure";
    default: return "target error";
    }
}

enum minimize_result soak_minimize(const char *trace, const char *out_path,
                                   const char *work_dir, const volatile sig_atomic_t *stop,
                                   FILE *log)
{
    struct trial t = { .log = log };
    struct op *ops;
    size_t n, nul_line;
    char errbuf[512];
    if (soak_trace_load(trace, &t.config, &ops, &n, &nul_line, errbuf, sizeof(errbuf))) {
        fprintf(log, "qvet: %s\n", errbuf);
        return MINIMIZE_ERROR;
    }
    if (nul_line)
        fprintf(log, "qvet: %s: line %zu: NUL bytes from here on (its writer was killed); "
                "using the %zu ops before them\n", trace, nul_line, n);
    t.config.quiet = true;
    t.config.ops = 0;
    t.config.stop = stop;
    snprintf(t.config.dir, sizeof(t.config.dir), "%s", work_dir);
    snprintf(t.config.trace, sizeof(t.config.trace), "%s/trace.txt", work_dir);

    struct soak_result r;
    soak_run(&t.config, ops, n, &r, NULL);
    if (r.outcome != SOAK_DIVERGED && r.outcome != SOAK_CHECK_FAILED &&
        r.outcome != SOAK_SNAPSHOT_DIVERGED && r.outcome != SOAK_TARGET_ERROR &&
        r.outcome != SOAK_READER_DIVERGED && r.outcome != SOAK_CRASH_STATE) {
        enum minimize_result ret = r.outcome == SOAK_PASSED ? MINIMIZE_TRACE_PASSES
                                   : r.outcome == SOAK_INTERRUPTED ? MINIMIZE_INTERRUPTED
                                                                   : MINIMIZE_ERROR;
        if (ret == MINIMIZE_INTERRUPTED)
            fprintf(log, "minimize: interrupted during the first run; %s not written\n",
                    out_path);
        else
            fprintf(log, "qvet: %s: the trace does not fail (%s), nothing to minimize\n",
                    trace, ret == MINIMIZE_TRACE_PASSES ? "it passes" : r.message);
        free(ops);
        return ret;
    }
    t.outcome = r.outcome;
    t.kind = r.failing_kind;
    /* Everything after the failing operation is irrelevant. */
    for (size_t i = 0; i < n; i++)
        if (ops[i].n == r.failing_op && r.failing_kind != OP_KINDS)
            n = i + 1;

    struct op *trial = malloc((n ? n : 1) * sizeof(*trial));
    size_t chunks = 2;
    bool interrupted = false;
    while (n >= 2 && trial && !interrupted) {
        size_t size = (n + chunks - 1) / chunks;
        bool reduced = false;
        for (size_t c = 0; c < chunks && !reduced && !(interrupted = stop && *stop); c++) {
            size_t lo = c * size, hi = lo + size < n ? lo + size : n;
            if (lo >= n)
                break;
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (i < lo || i >= hi)
                    trial[m++] = ops[i];
            if (m && fails_same_way(&t, trial, m)) {
                memcpy(ops, trial, m * sizeof(*ops));
                n = m;
                chunks = chunks > 2 ? chunks - 1 : 2;
                reduced = true;
            }
        }
        if (!reduced && !interrupted) {
            if (chunks >= n)
                break;
            chunks = chunks * 2 < n ? chunks * 2 : n;
        }
        fprintf(log, "minimize: %zu ops left after %u trial runs\n", n, t.runs);
    }
    free(trial);
    int ret = write_trace(out_path, &t.config, ops, n);
    if (ret) {
        fprintf(log, "qvet: %s: cannot write: %s\n", out_path, strerror(-ret));
    } else if (interrupted) {
        fprintf(log, "minimize: interrupted; %s holds the %zu ops found so far (they fail "
                "the same way: %s at a %s op)\n", out_path, n, outcome_phrase(t.outcome),
                op_kind_name(t.kind));
    } else {
        fprintf(log, "minimize: %zu ops still fail the same way (%s at a %s op); written to "
                "%s\nminimize: the minimized run, kept in %s:\n", n, outcome_phrase(t.outcome),
                op_kind_name(t.kind), out_path, work_dir);
        /* Its report and its files: the evidence of the minimized failure. */
        t.config.quiet = false;
        t.config.heartbeat = 0;
        soak_run(&t.config, ops, n, &r, log);
    }
    free(ops);
    return ret ? MINIMIZE_ERROR : interrupted ? MINIMIZE_INTERRUPTED : MINIMIZE_DONE;
}
