/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet faultinject: the Nth host I/O fails, for every N; the engine must say so and stay safe. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crash.h"
#include "io_fault.h"
#include "oracle.h"
#include "qcow2.h"
#include "step.h"
#include "target.h"

#define SECTOR 512u
#define MAX_SNAPSHOTS 4

static const char *const kind_names[FAULT_KINDS] = {
    "read-error", "write-error", "enospc", "short-write", "flush-error",
};

const char *fault_kind_name(enum fault_kind k)
{
    return k < FAULT_KINDS ? kind_names[k] : "?";
}

/* The engine names the structure an I/O was for; these are the steps they belong to. */
static const struct {
    const char *structure, *event;
} events[] = {
    { "data cluster", "data write" },
    { "compressed cluster", "compressed data write" },
    { "L2 table entry", "L2 update" },
    { "L2 table", "L2 table allocation" },
    { "L1 table entry", "L1 update" },
    { "active L1 table", "L1 growth" },
    { "refcount block", "refcount block update or allocation" },
    { "refcount table entry", "refcount table update" },
    { "refcount table", "reftable growth" },
    { "snapshot table", "snapshot table write" },
    { "snapshot L1 table", "snapshot table write" },
    { "header", "header update" },
    { "file", "flush" },
};

struct fi {
    const struct crash_config *c;
    struct fault_result *r;
    FILE *out;
    struct io_fault fault;
    char image[700], log_path[700];
    uint64_t size;
    uint8_t *before, *got;
};

static struct qcow2_backend *fault_hook(struct qcow2_backend *file, void *ctx)
{
    struct fi *fi = ctx;
    return io_fault_wrap(file, true, &fi->fault);
}

/* A target that does everything and holds nothing: what an op would do, in its oracle. */
struct null_target {
    struct target base;
    struct target_facts facts;
    unsigned next_id;
};

static int null_facts(struct target *t, struct target_facts *f)
{
    *f = ((struct null_target *)t)->facts;
    return 0;
}

static int null_data(struct target *t, const void *buf, size_t len, uint64_t off)
{
    (void)t, (void)buf, (void)len, (void)off;
    return 0;
}

static int null_range(struct target *t, uint64_t len, uint64_t off)
{
    (void)t, (void)len, (void)off;
    return 0;
}

static int null_zero(struct target *t, uint64_t len, uint64_t off, bool unmap)
{
    (void)unmap;
    return null_range(t, len, off);
}

static int null_flush(struct target *t)
{
    (void)t;
    return 0;
}

static int null_snapshot_create(struct target *t, const char *name, char *id)
{
    (void)name;
    snprintf(id, TARGET_ID_MAX, "%u", ++((struct null_target *)t)->next_id);
    return 0;
}

static int null_snapshot(struct target *t, const char *id)
{
    (void)t, (void)id;
    return 0;
}

static const struct target_ops null_ops = {
    .name = "oracle-only",
    .facts = null_facts,
    .write = null_data,
    .zero = null_zero,
    .discard = null_range,
    .write_compressed = null_data,
    .flush = null_flush,
    .snapshot_create = null_snapshot_create,
    .snapshot_apply = null_snapshot,
    .snapshot_delete = null_snapshot,
};

/* The step an engine message names: "FILE: STRUCTURE at offset N: ...". */
static const char *event_of(const char *image, const char *message, char *structure, size_t cap)
{
    size_t skip = strlen(image);
    const char *p = !strncmp(message, image, skip) && !strncmp(message + skip, ": ", 2)
                        ? message + skip + 2 : message;
    size_t n = strcspn(p, ":");
    const char *at = strstr(p, " at offset");
    if (at && (size_t)(at - p) < n)
        n = (size_t)(at - p);
    snprintf(structure, cap, "%.*s", (int)n, p);
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        if (!strcmp(events[i].structure, structure))
            return events[i].event;
    return structure;
}

static void count_point(struct fault_result *r, const char *name)
{
    for (size_t i = 0; i < r->n_points; i++)
        if (!strcmp(r->points[i].name, name)) {
            r->points[i].count++;
            return;
        }
    if (r->n_points < FAULT_MAX_POINTS) {
        snprintf(r->points[r->n_points].name, sizeof(r->points[0].name), "%s", name);
        r->points[r->n_points++].count = 1;
    }
}

/* From here on the Nth I/O of kind k fails, once. */
static void arm(struct io_fault *f, enum fault_kind k, uint64_t n)
{
    f->mask = k == FAULT_READ ? IO_FAULT_READ : k == FAULT_FLUSH ? IO_FAULT_FLUSH
                                                                  : IO_FAULT_WRITE;
    f->error = k == FAULT_ENOSPC ? -ENOSPC : -EIO;
    f->short_write = k == FAULT_SHORT_WRITE;
    f->countdown = n;
    f->armed = true;
}

/* Holds the reopened disk to the acknowledged state; the failed op's sectors: old or new. */
static void judge_disk(struct fi *fi, struct fault_figures *fig, uint64_t n, const char *what,
                       struct oracle *o, const struct op *failed)
{
    uint64_t lo = failed ? failed->off / SECTOR : 0;
    uint64_t hi = failed ? (failed->off + failed->len + SECTOR - 1) / SECTOR : 0;
    if (failed && failed->kind > OP_WRITE_COMPRESSED)
        lo = hi = 0;
    uint8_t after[SECTOR];
    uint64_t lost = 0, bad = 0, first = UINT64_MAX;
    for (uint64_t s = 0; s < fi->size / SECTOR; s++) {
        const uint8_t *got = fi->got + s * SECTOR;
        if (!memcmp(got, fi->before + s * SECTOR, SECTOR))
            continue;
        bool touched = s >= lo && s < hi;
        if (touched && !oracle_read(o, after, SECTOR, s * SECTOR) && !memcmp(got, after, SECTOR))
            continue;
        first = first < s ? first : s;
        if (touched)
            bad++;
        else
            lost += SECTOR;
    }
    fig->lost_bytes += lost;
    fig->bad_sectors += bad;
    if (lost)
        crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "lost-acknowledged-bytes", "%s: %" PRIu64 " bytes of acknowledged "
                    "writes differ after reopening, the first at guest sector %" PRIu64, what,
                    lost, first);
    if (bad)
        crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "bad-failed-write-sector", "%s: %" PRIu64 " sectors of the failed "
                    "op hold neither old nor new data, the first at guest sector %" PRIu64,
                    what, bad, first);
}

/* One run with the Nth I/O of kind k failing; *reached says whether the fault fired. */
static int run_once(struct fi *fi, enum fault_kind k, uint64_t n, const struct op *ops,
                    size_t n_ops, bool *reached)
{
    const struct crash_config *c = fi->c;
    struct fault_figures *fig = &fi->r->kinds[k];
    char what[160];
    snprintf(what, sizeof(what), "%s at I/O %" PRIu64, fault_kind_name(k), n);
    unlink(fi->image);
    io_fault_init(&fi->fault);
    struct target_hooks hooks = { .hook = fault_hook, .hook_ctx = fi };
    const struct target_params params = {
        .path = fi->image, .size = c->size, .options = c->options, .hooks = &hooks,
    };
    char errbuf[2400];
    struct step st = { .max_snapshots = MAX_SNAPSHOTS, .io_cap = 1u << 20 };
    struct null_target null = { .base = { .ops = &null_ops, .caps = TARGET_CAN_WRITE |
                                TARGET_CAN_DISCARD | TARGET_CAN_WRITE_COMPRESSED |
                                TARGET_CAN_FLUSH | TARGET_CAN_SNAPSHOT } };
    struct step shadow = { .t = &null.base, .max_snapshots = MAX_SNAPSHOTS, .io_cap = st.io_cap };
    if (target_create("qvet", &params, &st.t, errbuf, sizeof(errbuf)))
        return crash_setup_failed(&fi->r->found, "%s", errbuf);
    int ret = step_start(&st);
    fi->size = st.facts.size;
    null.facts = st.facts;
    st.buf = malloc(st.io_cap);
    st.want = malloc(st.io_cap);
    shadow.buf = st.buf;
    shadow.want = st.want;
    shadow.facts = st.facts;
    if (!ret && oracle_create_mem(fi->size, NULL, 0, &st.facts.oracle, &st.o, errbuf,
                                  sizeof(errbuf)))
        ret = crash_setup_failed(&fi->r->found, "oracle: %s", errbuf);
    shadow.o = st.o;
    if (!ret && (!st.buf || !st.want || !(fi->before = fi->before ? fi->before : malloc(fi->size)) ||
                 !(fi->got = fi->got ? fi->got : malloc(fi->size))))
        ret = crash_setup_failed(&fi->r->found, "out of memory");
    /* The image is open: from here on the fault counts. */
    arm(&fi->fault, k, n);
    const struct op *failed = NULL;
    *reached = false;
    fig->runs++;
    for (size_t i = 0; i < n_ops && !ret && !*reached; i++) {
        unsigned fired_before = fi->fault.fired;
        struct step_result sr;
        enum step_outcome out = step_run(&st, &ops[i], &sr);
        *reached = fi->fault.fired != fired_before;
        char line[128];
        op_format(&ops[i], line, sizeof(line));
        if (!*reached) {
            if (out != STEP_DONE && out != STEP_SKIPPED && out != STEP_REFUSED)
                ret = crash_setup_failed(&fi->r->found, "the workload failed untouched at op %s: %s", line,
                                   st.t->message);
            continue;
        }
        fig->fired++;
        if (out == STEP_DONE || out == STEP_REFUSED) {
            fig->misreports++;
            crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "fault-misreport", "%s: op %s reported success although the "
                        "I/O failed", what, line);
            break;
        }
        if (out != STEP_TARGET_FAILED) {
            ret = crash_setup_failed(&fi->r->found, "%s: op %s: unexpected outcome %d", what, line, (int)out);
            break;
        }
        fig->errors++;
        char structure[64];
        count_point(fi->r, event_of(fi->image, st.t->message, structure, sizeof(structure)));
        failed = &ops[i];
        /* Old: the oracle as acknowledged; new: what the op would have made of it. */
        if (oracle_read(st.o, fi->before, fi->size, 0))
            ret = crash_setup_failed(&fi->r->found, "the oracle cannot be read");
        else if (step_run(&shadow, failed, &sr) != STEP_DONE && sr.outcome != STEP_SKIPPED)
            ret = crash_setup_failed(&fi->r->found, "the oracle cannot follow op %s", line);
    }
    if (!ret && !failed && oracle_read(st.o, fi->before, fi->size, 0))
        ret = crash_setup_failed(&fi->r->found, "the oracle cannot be read");
    fi->fault.armed = false;
    st.t->ops->close(st.t);
    bool leaks;
    char reason[400];
    if (!ret && *reached &&
        crash_judge_structure(fi->image, fi->log_path, c->qemu, &leaks, reason, sizeof(reason))) {
        fig->corruptions++;
        crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "crash-state-corruption", "%s: %s", what, reason);
    } else if (!ret && *reached) {
        struct qcow2_error err;
        if (crash_qvet_read(fi->image, NULL, fi->got, fi->size, &err)) {
            fig->corruptions++;
            crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "crash-state-corruption", "%s: qvet cannot read it: %s", what,
                        err.message);
        } else {
            judge_disk(fi, fig, n, what, st.o, failed);
        }
    }
    if (fi->r->found.failures_total && !fi->r->found.kept_image[0]) {
        snprintf(fi->r->found.kept_image, sizeof(fi->r->found.kept_image), "%s/failed-%s-%" PRIu64 ".qcow2",
                 c->dir, fault_kind_name(k), n);
        if (rename(fi->image, fi->r->found.kept_image))
            fi->r->found.kept_image[0] = '\0';
    }
    if (st.o)
        oracle_close(st.o);
    free(st.buf);
    free(st.want);
    io_fault_fini(&fi->fault);
    return ret;
}

int faultinject_run(const struct crash_config *c, unsigned kinds, struct fault_result *r,
                    FILE *out)
{
    memset(r, 0, sizeof(*r));
    struct fi fi = { .c = c, .r = r, .out = out };
    snprintf(fi.image, sizeof(fi.image), "%s/workload.qcow2", c->dir);
    snprintf(fi.log_path, sizeof(fi.log_path), "%s/tool.log", c->dir);
    struct crash_config plain = *c;
    /* An apply's failure leaves every sector old or new, which says little: left out. */
    plain.weights[OP_SNAPSHOT_APPLY] = 0;
    struct op *ops = NULL;
    size_t n_ops = 0;
    char errbuf[600];
    struct qcow2_create_options o;
    qcow2_create_options_init(&o);
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", c->options);
    struct qcow2_error err;
    if (c->options[0] && qcow2_create_options_parse(&o, copy, &err))
        return crash_setup_failed(&r->found, "-o: %s", err.message);
    int ret = crash_workload(&plain, o.cluster_size, &ops, &n_ops, errbuf, sizeof(errbuf));
    if (ret)
        return crash_setup_failed(&r->found, "%s", errbuf);
    /* Generated snapshot ops name "#K"; here ids are 1, 2, ... as the engine gives them. */
    for (size_t i = 0; i < n_ops; i++)
        if (ops[i].snapshot[0] == '#')
            snprintf(ops[i].snapshot, sizeof(ops[i].snapshot), "%u",
                     1 + (unsigned)strtoul(ops[i].snapshot + 1, NULL, 10));
    r->ops = n_ops;
    for (int k = 0; k < FAULT_KINDS && !ret; k++) {
        if (!(kinds & (1u << k)))
            continue;
        bool reached = true;
        for (uint64_t n = 0; reached && !ret; n++) {
            if (c->only_state >= 0 && n != (uint64_t)c->only_state) {
                reached = n < (uint64_t)c->only_state;
                continue;
            }
            ret = run_once(&fi, (enum fault_kind)k, n, ops, n_ops, &reached);
            if (c->max_states && r->kinds[k].runs >= c->max_states)
                break;
        }
    }
    free(ops);
    free(fi.before);
    free(fi.got);
    unlink(fi.image);
    if (ret)
        return -1;
    unlink(fi.log_path);
    for (int k = 0; k < FAULT_KINDS; k++)
        if (r->kinds[k].misreports || r->kinds[k].corruptions || r->kinds[k].lost_bytes ||
            r->kinds[k].bad_sectors)
            return 1;
    return 0;
}
