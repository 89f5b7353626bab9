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
    fprintf(f, "# qvet soak trace 1 (minimized): replay with `qvet replay %s`\nseed %" PRIu64
            "\nsize %" PRIu64 "\noptions %s\nbacking %s\ncheck-every %" PRIu64 "\nops\n",
            path, c->seed, c->size, c->options[0] ? c->options : "-",
            soak_backing_name(c->backing), c->check_every);
    char line[160];
    for (size_t i = 0; i < n; i++) {
        op_format(&ops[i], line, sizeof(line));
        fprintf(f, "%s\n", line);
    }
    return fclose(f) ? -errno : 0;
}

int soak_minimize(const char *trace, const char *out_path, FILE *log)
{
    struct trial t = { .log = log };
    struct op *ops;
    size_t n;
    char errbuf[512];
    if (soak_trace_load(trace, &t.config, &ops, &n, errbuf, sizeof(errbuf))) {
        fprintf(log, "qvet: %s\n", errbuf);
        return -1;
    }
    t.config.quiet = true;
    t.config.ops = 0;
    snprintf(t.config.dir, sizeof(t.config.dir), "%s.minimize", out_path);
    snprintf(t.config.trace, sizeof(t.config.trace), "%s/trace.txt", t.config.dir);

    struct soak_result r;
    soak_run(&t.config, ops, n, &r, NULL);
    if (r.outcome == SOAK_PASSED || r.outcome == SOAK_SETUP_ERROR) {
        fprintf(log, "qvet: %s: the trace does not fail (%s), nothing to minimize\n", trace,
                r.outcome == SOAK_PASSED ? "it passes" : "setup failed");
        free(ops);
        return -1;
    }
    t.outcome = r.outcome;
    t.kind = r.failing_kind;
    /* Everything after the failing operation is irrelevant. */
    for (size_t i = 0; i < n; i++)
        if (ops[i].n == r.failing_op && r.failing_kind != OP_KINDS)
            n = i + 1;

    struct op *trial = malloc((n ? n : 1) * sizeof(*trial));
    size_t chunks = 2;
    while (n >= 2 && trial) {
        size_t size = (n + chunks - 1) / chunks;
        bool reduced = false;
        for (size_t c = 0; c < chunks && !reduced; c++) {
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
        if (!reduced) {
            if (chunks >= n)
                break;
            chunks = chunks * 2 < n ? chunks * 2 : n;
        }
        fprintf(log, "minimize: %zu ops left after %u trial runs\n", n, t.runs);
    }
    free(trial);
    int ret = write_trace(out_path, &t.config, ops, n);
    if (ret)
        fprintf(log, "qvet: %s: cannot write: %s\n", out_path, strerror(-ret));
    else
        fprintf(log, "minimize: %zu ops still fail the same way (%s at a %s op); written to "
                "%s\n", n, r.outcome == SOAK_DIVERGED ? "read mismatch"
                           : r.outcome == SOAK_CHECK_FAILED ? "check failure"
                           : r.outcome == SOAK_SNAPSHOT_DIVERGED ? "snapshot mismatch"
                                                               : "target error",
                op_kind_name(t.kind), out_path);
    free(ops);
    return ret ? -1 : 0;
}
