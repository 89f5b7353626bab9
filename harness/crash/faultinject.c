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
    { "refcount block entry", "refcount block update or allocation" },
    { "refcount table entry", "refcount table update" },
    { "refcount table", "reftable growth" },
    { "snapshot table", "snapshot table write" },
    { "snapshot L1 table", "snapshot table write" },
    { "header", "header update" },
    { "file", "flush" },
};

/* What every faultinject over the configurations together must reach (fault_point_missed). */
static const char *const named_points[] = {
    "data write", "L2 update", "L2 table allocation", "refcount block update or allocation",
    "reftable growth", "L1 growth", "snapshot table write", "header update", "data read",
    "metadata read",
};

const char *fault_named_point(size_t i)
{
    return i < sizeof(named_points) / sizeof(named_points[0]) ? named_points[i] : NULL;
}

/* Reads are named by what they read: data, or the metadata structure. */
static bool is_data(const char *structure)
{
    return !strcmp(structure, "data cluster") || !strcmp(structure, "compressed cluster");
}

uint64_t fault_point_count(const struct fault_result *r, const char *name)
{
    bool any_metadata_read = !strcmp(name, "metadata read");
    uint64_t n = 0;
    for (size_t i = 0; i < r->n_points; i++) {
        const char *p = r->points[i].name;
        size_t len = strlen(p);
        bool read = len > 5 && !strcmp(p + len - 5, " read");
        if (!strcmp(p, name) || (any_metadata_read && read && strcmp(p, "data read")))
            n += r->points[i].count;
    }
    return n;
}

/*
 * The reach mix faultinject adds to its configuration's: reads (of data, and of
 * metadata when a reopen has emptied the cache), reopens (the header, tables and
 * snapshot table read again) and resizes (L1 growth, header updates).
 */
static const unsigned reach_weights[OP_KINDS] = {
    [OP_READ] = 12, [OP_REOPEN] = 3, [OP_RESIZE] = 4,
};

struct fi {
    const struct crash_config *c;
    struct fault_result *r;
    FILE *out;
    struct io_fault fault;
    char image[700], log_path[700];
    uint64_t cap;                   /* the largest disk the workload makes (twice the first) */
    uint64_t before_size;           /* the disk before the failed op (or at the end) */
    uint8_t *before, *got;          /* cap bytes each */
    unsigned fired_at_open;         /* faults fired when the target last opened the image */
};

static struct qcow2_backend *fault_hook(struct qcow2_backend *file, void *ctx)
{
    struct fi *fi = ctx;
    fi->fired_at_open = fi->fault.fired;
    return io_fault_wrap(file, true, &fi->fault);
}

/* A target that does everything and holds nothing: what an op would do, in its oracle. */
struct null_target {
    struct target base;
    struct target_facts facts;
    const struct oracle *o;         /* the disk is always the size the oracle says */
};

static int null_facts(struct target *t, struct target_facts *f)
{
    const struct null_target *nt = (const struct null_target *)t;
    *f = nt->facts;
    f->size = oracle_size(nt->o);
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

/* The id the engine gives a new snapshot, as QEMU does: one past the largest number. */
static int null_snapshot_create(struct target *t, const char *name, char *id)
{
    (void)name;
    const struct oracle *o = ((struct null_target *)t)->o;
    unsigned long long max = 0;
    for (uint32_t i = 0; oracle_snapshot_id(o, i); i++) {
        char *end;
        unsigned long long v = strtoull(oracle_snapshot_id(o, i), &end, 10);
        if (!*end && v > max)
            max = v;
    }
    snprintf(id, TARGET_ID_MAX, "%llu", max + 1);
    return 0;
}

static int null_snapshot(struct target *t, const char *id)
{
    (void)t, (void)id;
    return 0;
}

static int null_resize(struct target *t, uint64_t size)
{
    (void)t, (void)size;
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
    .resize = null_resize,
};

/*
 * The step an engine message names: "FILE: STRUCTURE at offset N: ...". A read is named
 * by what it read ("data read", "L2 table read").
 */
static const char *event_of(const char *image, const char *message, bool read, char *structure,
                            size_t cap)
{
    size_t skip = strlen(image);
    const char *p = !strncmp(message, image, skip) && !strncmp(message + skip, ": ", 2)
                        ? message + skip + 2 : message;
    size_t n = strcspn(p, ":");
    const char *at = strstr(p, " at offset");
    if (at && (size_t)(at - p) < n)
        n = (size_t)(at - p);
    snprintf(structure, cap, "%.*s", (int)n, p);
    if (read) {
        size_t used = is_data(structure) ? (size_t)snprintf(structure, cap, "data")
                                         : strlen(structure);
        snprintf(structure + used, cap - used, " read");
        return structure;
    }
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

/* The sectors of [0, size) where `got` differs from `want`: how many, and the first. */
static uint64_t sectors_differing(const uint8_t *got, const uint8_t *want, uint64_t size,
                                  uint64_t *first)
{
    uint64_t n = 0;
    for (uint64_t s = 0; s < size / SECTOR; s++) {
        if (!memcmp(got + s * SECTOR, want + s * SECTOR, SECTOR))
            continue;
        if (!n++)
            *first = s;
    }
    return n;
}

/*
 * A shrink drops the bytes past the new end before it records the new size (as QEMU's
 * does): one that failed in between leaves the old size with those sectors as they were
 * or as zeros, which the guest, having asked them gone, cannot tell from either state.
 */
static bool dropped_or_kept(const struct fi *fi, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[SECTOR];
    for (uint64_t s = from / SECTOR; s < to / SECTOR; s++)
        if (memcmp(fi->got + s * SECTOR, fi->before + s * SECTOR, SECTOR) &&
            memcmp(fi->got + s * SECTOR, zeros, SECTOR))
            return false;
    return true;
}

/*
 * An op that fails as a whole (a snapshot apply, a resize, a reopen, a read, a snapshot
 * create or delete): the reopened disk is the state before it or the state after it,
 * size and bytes, never a mix.
 */
static void judge_whole_state(struct fi *fi, struct fault_figures *fig, uint64_t n,
                              const char *what, struct oracle *o, uint64_t got_size)
{
    uint64_t sector = 0, after_size = oracle_size(o);
    if (got_size == fi->before_size && !sectors_differing(fi->got, fi->before, got_size, &sector))
        return;
    if (got_size == fi->before_size && after_size < got_size &&
        !sectors_differing(fi->got, fi->before, after_size, &sector) &&
        dropped_or_kept(fi, after_size, got_size))
        return;
    if (got_size == after_size && !oracle_compare(o, NULL, fi->got, (size_t)got_size, 0, &sector))
        return;
    uint64_t common = got_size < fi->before_size ? got_size : fi->before_size;
    uint64_t differ = sectors_differing(fi->got, fi->before, common, &sector);
    fig->lost_bytes += differ ? differ * SECTOR : SECTOR;
    crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "lost-acknowledged-bytes",
               "%s: the reopened disk (%" PRIu64 " bytes) is neither the one before the "
               "failed op (%" PRIu64 " bytes) nor the one after it (%" PRIu64 " bytes); %"
               PRIu64 " sectors differ from before, the first at guest sector %" PRIu64, what,
               got_size, fi->before_size, after_size, differ, differ ? sector : common / SECTOR);
}

/*
 * Holds the reopened disk to the acknowledged state; the failed op's sectors: old or new
 * (an op that fails as a whole: judge_whole_state).
 */
static void judge_disk(struct fi *fi, struct fault_figures *fig, uint64_t n, const char *what,
                       struct oracle *o, const struct op *failed, uint64_t got_size)
{
    if (failed && (failed->kind == OP_READ || failed->kind > OP_WRITE_COMPRESSED)) {
        judge_whole_state(fi, fig, n, what, o, got_size);
        return;
    }
    if (got_size != fi->before_size) {
        fig->lost_bytes += SECTOR;
        crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "lost-acknowledged-bytes",
                   "%s: the reopened disk is %" PRIu64 " bytes, the acknowledged one %" PRIu64,
                   what, got_size, fi->before_size);
        return;
    }
    uint64_t lo = failed ? failed->off / SECTOR : 0;
    uint64_t hi = failed ? (failed->off + failed->len + SECTOR - 1) / SECTOR : 0;
    uint8_t after[SECTOR];
    uint64_t lost = 0, bad = 0, first = UINT64_MAX;
    for (uint64_t s = 0; s < got_size / SECTOR; s++) {
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
        crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "lost-acknowledged-bytes",
                   "%s: %" PRIu64 " bytes of acknowledged writes differ after reopening, the "
                   "first at guest sector %" PRIu64, what, lost, first);
    if (bad)
        crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "bad-failed-write-sector",
                   "%s: %" PRIu64 " sectors of the failed op hold neither old nor new data, "
                   "the first at guest sector %" PRIu64, what, bad, first);
}

/* Makes the judge's buffers hold a disk of `size` bytes (a script may grow it past cap). */
static int ensure_cap(struct fi *fi, uint64_t size)
{
    if (size <= fi->cap && fi->before && fi->got)
        return 0;
    uint64_t cap = size > fi->cap ? size : fi->cap;
    uint8_t *before = realloc(fi->before, cap), *got = before ? realloc(fi->got, cap) : NULL;
    if (before)
        fi->before = before;
    if (got)
        fi->got = got;
    if (!before || !got)
        return -ENOMEM;
    fi->cap = cap;
    return 0;
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
                                TARGET_CAN_ZERO |
                                TARGET_CAN_DISCARD | TARGET_CAN_WRITE_COMPRESSED |
                                TARGET_CAN_FLUSH | TARGET_CAN_SNAPSHOT |
                                TARGET_CAN_RESIZE } };
    struct step shadow = { .t = &null.base, .max_snapshots = MAX_SNAPSHOTS, .io_cap = st.io_cap };
    if (target_create("qvet", &params, &st.t, errbuf, sizeof(errbuf)))
        return crash_setup_failed(&fi->r->found, "%s", errbuf);
    int ret = step_start(&st);
    null.facts = st.facts;
    st.buf = malloc(st.io_cap);
    st.want = malloc(st.io_cap);
    shadow.buf = st.buf;
    shadow.want = st.want;
    if (!ret && oracle_create_mem(st.facts.size, NULL, 0, &st.facts.oracle, &st.o, errbuf,
                                  sizeof(errbuf)))
        ret = crash_setup_failed(&fi->r->found, "oracle: %s", errbuf);
    null.o = st.o;
    shadow.o = st.o;
    if (!ret && (!st.buf || !st.want || ensure_cap(fi, st.facts.size)))
        ret = crash_setup_failed(&fi->r->found, "out of memory");
    const struct op *failed = NULL;
    struct op op;
    bool armed = false;
    *reached = false;
    fig->runs++;
    for (size_t i = 0; i < n_ops && !ret && !*reached; i++) {
        /* The image is open: from here on (or from the op asked for) the fault counts. */
        if (!armed && i + 1 >= c->armed_from_op) {
            arm(&fi->fault, k, n);
            armed = true;
        }
        unsigned fired_before = fi->fault.fired;
        struct step_result sr;
        op = ops[i];
        crash_resolve_snapshot(st.o, &op);
        /* As the op found the disk: what stays when it fails as a whole. */
        shadow.facts = st.facts;
        enum step_outcome out = step_run(&st, &op, &sr);
        *reached = fi->fault.fired != fired_before;
        char line[128];
        op_format(&op, line, sizeof(line));
        if (!*reached) {
            if (out != STEP_DONE && out != STEP_SKIPPED && out != STEP_REFUSED)
                ret = crash_setup_failed(&fi->r->found, "the workload failed untouched at op "
                                         "%s: %s", line, st.t->message);
            continue;
        }
        fig->fired++;
        /*
         * A reopen flushes (which reports), closes and opens. The close only clears the
         * dirty bit of lazy refcounts, best effort and unreported, as QEMU's close: a
         * fault there (before the open began) leaves a dirty image for the open to
         * repair, and the op rightly succeeds. The image is judged all the same.
         */
        if (out == STEP_DONE && op.kind == OP_REOPEN && fi->fired_at_open != fired_before) {
            count_point(fi->r, "close (unreported)");
            failed = &op;
            fi->before_size = oracle_size(st.o);
            if (ensure_cap(fi, fi->before_size) ||
                oracle_read(st.o, fi->before, fi->before_size, 0))
                ret = crash_setup_failed(&fi->r->found, "the oracle cannot be read");
            break;
        }
        if (out == STEP_DONE || out == STEP_REFUSED) {
            fig->misreports++;
            crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "fault-misreport",
                       "%s: op %s reported success although the I/O failed", what, line);
            break;
        }
        if (out != STEP_TARGET_FAILED) {
            ret = crash_setup_failed(&fi->r->found, "%s: op %s: unexpected outcome %d", what,
                                     line, (int)out);
            break;
        }
        fig->errors++;
        char structure[64];
        count_point(fi->r, event_of(fi->image, st.t->message, k == FAULT_READ, structure,
                                    sizeof(structure)));
        failed = &op;
        size_t used = strlen(what);
        snprintf(what + used, sizeof(what) - used, " (op %s)", line);
        /* Old: the oracle as acknowledged; new: what the op would have made of it. */
        fi->before_size = oracle_size(st.o);
        if (ensure_cap(fi, fi->before_size) || oracle_read(st.o, fi->before, fi->before_size, 0))
            ret = crash_setup_failed(&fi->r->found, "the oracle cannot be read");
        else if (op.kind != OP_READ && step_run(&shadow, failed, &sr) != STEP_DONE &&
                 sr.outcome != STEP_SKIPPED)
            ret = crash_setup_failed(&fi->r->found, "the oracle cannot follow op %s", line);
    }
    if (!ret && !failed) {
        fi->before_size = oracle_size(st.o);
        if (ensure_cap(fi, fi->before_size) || oracle_read(st.o, fi->before, fi->before_size, 0))
            ret = crash_setup_failed(&fi->r->found, "the oracle cannot be read");
    }
    fi->fault.armed = false;
    st.t->ops->close(st.t);
    bool leaks;
    char reason[400];
    if (!ret && *reached &&
        crash_judge_structure(fi->image, fi->log_path, c->qemu, &leaks, reason, sizeof(reason))) {
        fig->corruptions++;
        crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "crash-state-corruption",
                   "%s: %s", what, reason);
    } else if (!ret && *reached) {
        struct qcow2_error err;
        uint64_t got_size = 0;
        if (ensure_cap(fi, oracle_size(st.o))) {
            ret = crash_setup_failed(&fi->r->found, "out of memory");
        } else if (crash_qvet_read(fi->image, NULL, fi->got, fi->cap, &got_size, &err)) {
            fig->corruptions++;
            crash_note(&fi->r->found, fi->out, "faultinject: N =", n, "crash-state-corruption",
                       "%s: qvet cannot read it: %s", what, err.message);
        } else {
            judge_disk(fi, fig, n, what, st.o, failed, got_size);
        }
    }
    if (fi->r->found.failures_total && !fi->r->found.kept_image[0]) {
        snprintf(fi->r->found.kept_image, sizeof(fi->r->found.kept_image),
                 "%s/failed-%s-%" PRIu64 ".qcow2", c->dir, fault_kind_name(k), n);
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
    for (int k = 0; k < OP_KINDS; k++)
        plain.weights[k] += reach_weights[k];
    fi.cap = 2 * c->size;
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
