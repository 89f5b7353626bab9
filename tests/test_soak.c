/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The soak driver must catch bugs: each test injects one fault under the qvet target
 * (a backend wrapped around the engine's host file, or a target wrapped around the qvet
 * target), runs a short seeded soak and asserts that it fails the expected way within its
 * op budget, and, for data faults, that the report names a sector the fault damaged. The
 * fault knows which guest sectors it damaged because every sector the soak writes is a
 * self-describing payload (payload_identify). Each configuration also runs fault-free and
 * must pass, so no test can pass vacuously.
 */
#define _GNU_SOURCE
#include <check.h>
#include <zlib.h>
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_fault.h"
#include "qcow2.h"
#include "rundir.h"
#include "soak.h"
#include "support.h"
#include "target.h"

#define SECTOR 512u
#define CHECK_EVERY 50u
/* A fault arms once the soak has written data in op 50 or a later one. */
#define ARM_OP 50u
/* Guest sectors a damage map covers (64 MiB: the soak's disks stay far smaller). */
#define MAP_SECTORS (1u << 17)
#define L1_OFFSET_MASK 0x00fffffffffffe00ull
#define L2_OFFSET_MASK 0x00fffffffffffe00ull
#define L2_COMPRESSED (1ull << 62)
#define OFLAG_COPIED (1ull << 63)
#define MAX_IDS 16

/* ---- the run configurations ------------------------------------------------------ */

/* Every fault runs in one of these; each also runs fault-free (the twin) and must pass. */
enum config_id {
    CONFIG_DATA, CONFIG_REOPEN, CONFIG_POWER_CUT, CONFIGS,
    CONFIG_POWER_CUT_WHOLE = CONFIGS,   /* power-cut, each compare of the whole disk */
};

static const char *const config_names[CONFIGS] = { "data", "reopen", "power-cut" };

static void config_make(enum config_id id, const char *dir, struct soak_config *c)
{
    soak_config_defaults(c);
    c->seed = 20240501;
    c->ops = 1200;
    c->seconds = 0;
    c->size = 8u << 20;
    c->check_every = CHECK_EVERY;
    c->qemu_checks = true;
    snprintf(c->options, sizeof(c->options), "cluster_size=4k");
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    switch (id) {
    case CONFIG_DATA:
        break;
    case CONFIG_REOPEN:
        /* Frequent reopens: every L2 table is read from disk again, many times. */
        c->weights[OP_REOPEN] = 40;
        break;
    case CONFIG_POWER_CUT_WHOLE:
        c->crash_compare_whole = true;
        /* fall through */
    case CONFIG_POWER_CUT:
        /* Power cuts between data ops only (nothing a cut cannot be judged after). */
        c->weights[OP_POWER_CUT] = 20;
        c->weights[OP_DIRTY_REOPEN] = 10;
        c->weights[OP_REOPEN] = 0;
        c->weights[OP_RESIZE] = 0;
        c->weights[OP_SNAPSHOT_CREATE] = c->weights[OP_SNAPSHOT_APPLY] = 0;
        c->weights[OP_SNAPSHOT_DELETE] = 0;
        /*
         * A cross-check flushes: few of them, so that the power cuts see a flush lost.
         * Lazy refcounts: no barrier flushes inside writes, so only the flushes asked for
         * make data durable (and a dirty image is repaired at each reopen).
         */
        c->check_every = 600;
        snprintf(c->options, sizeof(c->options), "cluster_size=4k,lazy_refcounts=on");
        break;
    default:
        break;
    }
}

/*
 * A one-shot fault that later operations could undo before anything looks (an overwrite,
 * a snapshot apply, a shrink; a refcount written again, as the engine writes them through
 * as absolute values) strikes only in an op that a cross-check follows, which must then
 * see it.
 */
static bool just_before_check(uint32_t op)
{
    return op % CHECK_EVERY == 0;
}

/* ---- a fault and what it did ------------------------------------------------------ */

struct stale_table {
    uint64_t offset;
    uint8_t *first;                 /* the first version served */
};

struct fault;
typedef int (*fault_read_fn)(struct fault *f, struct qcow2_backend *file, void *buf,
                             size_t len, uint64_t off);
typedef int (*fault_write_fn)(struct fault *f, struct qcow2_backend *file, const void *buf,
                              size_t len, uint64_t off);

struct fault {
    fault_read_fn read;             /* NULL: the I/O fault's handling */
    fault_write_fn write;
    struct io_fault io;             /* the shim under the engine; io.inner: its file */
    char trace[1100];               /* the run's trace: its last line is the current op */
    bool armed;                     /* data of op ARM_OP or later has been written */
    bool in_guest_read;             /* the target is serving a guest read */
    unsigned fired;                 /* how often the fault acted */
    uint32_t fired_at;              /* the op during which it first acted */
    char what[256];                 /* what it did first, for messages */
    uint8_t *damaged;               /* bitmap of the guest sectors it damaged */
    uint64_t n_damaged;
    /* stale L2 tables */
    struct stale_table *stale;
    size_t n_stale;
    /* lost refcount update: the entry at leaked_at keeps the bytes leaked_old */
    uint64_t leaked_cluster, leaked_at;
    uint8_t leaked_old[8];
    size_t leaked_width;
    /* COPIED cleared on disk */
    uint32_t l1_index;
    /* wrong snapshot apply */
    char ids[MAX_IDS][TARGET_ID_MAX];
    unsigned n_ids;
};

static int tap_read(struct io_fault *io, struct qcow2_backend *file, void *buf, size_t len,
                    uint64_t off);
static int tap_write(struct io_fault *io, struct qcow2_backend *file, const void *buf,
                     size_t len, uint64_t off);

static void fault_init(struct fault *f)
{
    memset(f, 0, sizeof(*f));
    f->damaged = calloc(MAP_SECTORS / 8, 1);
    ck_assert_ptr_nonnull(f->damaged);
    io_fault_init(&f->io);
    f->io.read = tap_read;
    f->io.write = tap_write;
    f->io.ctx = f;
}

static void fault_free(struct fault *f)
{
    for (size_t i = 0; i < f->n_stale; i++)
        free(f->stale[i].first);
    free(f->stale);
    free(f->damaged);
    io_fault_fini(&f->io);
}

static void damage(struct fault *f, uint64_t sector)
{
    ck_assert_msg(sector < MAP_SECTORS, "damaged guest sector %" PRIu64 " is past the map",
                  sector);
    if (!(f->damaged[sector / 8] & (1u << (sector % 8)))) {
        f->damaged[sector / 8] |= (uint8_t)(1u << (sector % 8));
        f->n_damaged++;
    }
}

static bool is_damaged(const struct fault *f, uint64_t sector)
{
    return sector < MAP_SECTORS && (f->damaged[sector / 8] & (1u << (sector % 8)));
}

/*
 * The op the driver is running: the trace gets each op before the op runs. (Its file may
 * be longer than what is written so far, zero-filled.)
 */
static uint32_t current_op_and_kind(const struct fault *f, char kind[32])
{
    FILE *t = fopen(f->trace, "r");
    char line[256], name[32];
    unsigned n, op = 0;
    kind[0] = '\0';
    while (t && fgets(line, sizeof(line), t) && line[0])
        if (sscanf(line, "%u %31s", &n, name) == 2) {
            op = n;
            snprintf(kind, 32, "%s", name);
        }
    if (t)
        fclose(t);
    return op;
}

static uint32_t current_op(const struct fault *f)
{
    char kind[32];
    return current_op_and_kind(f, kind);
}

/*
 * The current op ends in a crash: a write lost in it is what a crash loses, and the leak it
 * leaves is forgiven by the repair after the crash, as it must be.
 */
static bool current_op_crashes(const struct fault *f)
{
    char kind[32];
    current_op_and_kind(f, kind);
    return !strcmp(kind, "power-cut") || !strcmp(kind, "torn-power-cut") ||
           !strcmp(kind, "dirty-reopen");
}

/* The first time the fault acts: remember when and what. */
static void fired(struct fault *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fired(struct fault *f, const char *fmt, ...)
{
    if (!f->fired++) {
        f->fired_at = current_op(f);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->what, sizeof(f->what), fmt, ap);
        va_end(ap);
    }
}

/* ---- reading the image behind the engine's back ------------------------------------ */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct geometry {
    uint32_t cs;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint32_t refcount_order;
};

static int read_geometry(struct qcow2_backend *file, struct geometry *g)
{
    uint8_t h[104];
    int ret = file->ops->read(file, h, sizeof(h), 0);
    if (ret)
        return ret;
    g->cs = 1u << be32(h + 20);
    g->l1_size = be32(h + 36);
    g->l1_offset = test_get_be64(h + 40);
    g->reftable_offset = test_get_be64(h + 48);
    g->reftable_clusters = be32(h + 56);
    g->refcount_order = be32(h + 4) >= 3 ? be32(h + 96) : 4;
    return 0;
}

/* The active L1 table as it is on disk (malloc'd, g->l1_size entries). */
static uint8_t *read_l1(struct qcow2_backend *file, const struct geometry *g)
{
    uint8_t *l1 = malloc((size_t)g->l1_size * 8 + 1);
    if (l1 && file->ops->read(file, l1, (size_t)g->l1_size * 8, g->l1_offset)) {
        free(l1);
        return NULL;
    }
    return l1;
}

/*
 * Where the payload sectors of a host buffer at host offset `off` start: the byte index
 * of the first whole sector, then every SECTOR bytes.
 */
static size_t first_sector_at(uint64_t off)
{
    return (size_t)((SECTOR - off % SECTOR) % SECTOR);
}

/*
 * Marks the guest sectors that host bytes [off, off+len) (held in buf) belong to: within
 * each host cluster, one payload sector tells which guest cluster the host cluster holds
 * (the mapping is linear inside a cluster), so every sector of the range is known,
 * payload or not. A cluster without a whole payload sector in the range marks nothing.
 */
static void damage_cluster_owners(struct fault *f, const uint8_t *buf, size_t len,
                                  uint64_t off, uint32_t cs)
{
    uint64_t end = off + len;
    for (uint64_t cluster = off / cs * cs; cluster < end; cluster += cs) {
        uint64_t lo = cluster > off ? cluster : off, hi = cluster + cs < end ? cluster + cs : end;
        for (uint64_t at = (lo + SECTOR - 1) / SECTOR * SECTOR; at + SECTOR <= hi; at += SECTOR) {
            uint32_t op;
            uint64_t sector;
            if (!payload_identify(buf + (at - off), &op, &sector))
                continue;
            uint64_t base = sector - (at - cluster) / SECTOR;
            for (uint64_t s = lo / SECTOR; s < (hi + SECTOR - 1) / SECTOR; s++)
                damage(f, base + (s - cluster / SECTOR));
            break;
        }
    }
}

/* ---- the tap: the I/O fault shim around the engine's file ---------------------------- */

static int tap_read(struct io_fault *io, struct qcow2_backend *file, void *buf, size_t len,
                    uint64_t off)
{
    struct fault *f = io->ctx;
    if (f->read)
        return f->read(f, file, buf, len, off);
    return io_fault_read(io, file, buf, len, off);
}

/* Arms the fault (and the I/O fault under it) once data of op ARM_OP or later is written. */
static int tap_write(struct io_fault *io, struct qcow2_backend *file, const void *buf,
                     size_t len, uint64_t off)
{
    struct fault *f = io->ctx;
    const uint8_t *p = buf;
    for (size_t i = first_sector_at(off); i + SECTOR <= len; i += SECTOR) {
        uint32_t op;
        uint64_t sector;
        if (p[i] == 'q' && payload_identify(p + i, &op, &sector) && op >= ARM_OP)
            f->armed = io->armed = true;
    }
    if (f->write)
        return f->write(f, file, buf, len, off);
    return io_fault_write(io, file, buf, len, off);
}

/* The target's backend hook: called at every open and reopen. */
static struct qcow2_backend *tap_hook(struct qcow2_backend *file, void *ctx)
{
    struct fault *f = ctx;
    struct qcow2_backend *shim = io_fault_wrap(file, true, &f->io);
    return shim ? shim : file;
}

/* ---- the wrapper: a target around the qvet target ---------------------------------- */

struct wrapper {
    struct target base;
    struct target *inner;
    struct fault *f;
    struct target_ops ops;
};

static struct wrapper *wrapper_of(struct target *t)
{
    return (struct wrapper *)t;
}

/* Passes the inner target's result and message on. */
static int relay(struct target *t, int ret)
{
    struct wrapper *w = wrapper_of(t);
    memcpy(t->message, w->inner->message, sizeof(t->message));
    return ret;
}

#define INNER(t) (wrapper_of(t)->inner)

static int w_facts(struct target *t, struct target_facts *f)
{
    return relay(t, INNER(t)->ops->facts(INNER(t), f));
}

static int w_read(struct target *t, void *buf, size_t len, uint64_t off)
{
    struct fault *f = wrapper_of(t)->f;
    f->in_guest_read = true;
    int ret = INNER(t)->ops->read(INNER(t), buf, len, off);
    f->in_guest_read = false;
    return relay(t, ret);
}

static int w_write(struct target *t, const void *buf, size_t len, uint64_t off)
{
    return relay(t, INNER(t)->ops->write(INNER(t), buf, len, off));
}

static int w_zero(struct target *t, uint64_t len, uint64_t off, bool unmap)
{
    return relay(t, INNER(t)->ops->zero(INNER(t), len, off, unmap));
}

static int w_discard(struct target *t, uint64_t len, uint64_t off)
{
    return relay(t, INNER(t)->ops->discard(INNER(t), len, off));
}

static int w_write_compressed(struct target *t, const void *buf, size_t len, uint64_t off)
{
    return relay(t, INNER(t)->ops->write_compressed(INNER(t), buf, len, off));
}

static int w_flush(struct target *t)
{
    return relay(t, INNER(t)->ops->flush(INNER(t)));
}

static int w_snapshot_create(struct target *t, const char *name, char *id)
{
    struct fault *f = wrapper_of(t)->f;
    int ret = INNER(t)->ops->snapshot_create(INNER(t), name, id);
    if (!ret && f->n_ids < MAX_IDS)
        snprintf(f->ids[f->n_ids++], TARGET_ID_MAX, "%s", id);
    return relay(t, ret);
}

static int w_snapshot_apply(struct target *t, const char *id)
{
    return relay(t, INNER(t)->ops->snapshot_apply(INNER(t), id));
}

static int w_snapshot_delete(struct target *t, const char *id)
{
    struct fault *f = wrapper_of(t)->f;
    int ret = INNER(t)->ops->snapshot_delete(INNER(t), id);
    for (unsigned i = 0; !ret && i < f->n_ids; i++) {
        if (!strcmp(f->ids[i], id)) {
            memmove(f->ids[i], f->ids[i + 1], (f->n_ids - i - 1) * sizeof(f->ids[0]));
            f->n_ids--;
            break;
        }
    }
    return relay(t, ret);
}

static int w_snapshot_read(struct target *t, const char *id, void *buf, size_t len,
                           uint64_t off)
{
    return relay(t, INNER(t)->ops->snapshot_read(INNER(t), id, buf, len, off));
}

static int w_resize(struct target *t, uint64_t size)
{
    return relay(t, INNER(t)->ops->resize(INNER(t), size));
}

static int w_reopen(struct target *t)
{
    return relay(t, INNER(t)->ops->reopen(INNER(t)));
}

static int w_check(struct target *t, struct target_check *result)
{
    return relay(t, INNER(t)->ops->check(INNER(t), result));
}

static int w_crash_reopen(struct target *t, enum target_crash how, uint64_t seed,
                          struct target_check *after)
{
    return relay(t, INNER(t)->ops->crash_reopen(INNER(t), how, seed, after));
}

static int w_snapshot_list(struct target *t, struct target_snapshot *out, unsigned cap,
                           unsigned *n)
{
    return relay(t, INNER(t)->ops->snapshot_list(INNER(t), out, cap, n));
}

static void w_close(struct target *t)
{
    INNER(t)->ops->close(INNER(t));
    free(t);
}

static const struct target_ops wrapper_ops = {
    .name = "qvet",
    .facts = w_facts,
    .read = w_read,
    .write = w_write,
    .zero = w_zero,
    .discard = w_discard,
    .write_compressed = w_write_compressed,
    .flush = w_flush,
    .snapshot_create = w_snapshot_create,
    .snapshot_apply = w_snapshot_apply,
    .snapshot_delete = w_snapshot_delete,
    .snapshot_read = w_snapshot_read,
    .resize = w_resize,
    .reopen = w_reopen,
    .check = w_check,
    .crash_reopen = w_crash_reopen,
    .snapshot_list = w_snapshot_list,
    .close = w_close,
};

/* The wrap_ctx of a wrapping fault: its fault and the operations it replaces. */
struct wrapping {
    struct fault *f;
    int (*check)(struct target *t, struct target_check *result);
    int (*snapshot_apply)(struct target *t, const char *id);
    int (*flush)(struct target *t);
    int (*snapshot_list)(struct target *t, struct target_snapshot *out, unsigned cap,
                         unsigned *n);
    int (*crash_reopen)(struct target *t, enum target_crash how, uint64_t seed,
                        struct target_check *after);
    unsigned caps_off;              /* what the wrapped target claims it cannot do */
};

static struct target *wrap_hook(struct target *inner, void *ctx)
{
    struct wrapping *how = ctx;
    struct wrapper *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->ops = wrapper_ops;
    if (how->check)
        w->ops.check = how->check;
    if (how->snapshot_apply)
        w->ops.snapshot_apply = how->snapshot_apply;
    if (how->flush)
        w->ops.flush = how->flush;
    if (how->snapshot_list)
        w->ops.snapshot_list = how->snapshot_list;
    if (how->crash_reopen)
        w->ops.crash_reopen = how->crash_reopen;
    w->base.ops = &w->ops;
    w->base.caps = inner->caps & ~how->caps_off;
    w->inner = inner;
    w->f = how->f;
    return &w->base;
}

/* ---- running the soak ---------------------------------------------------------------- */

struct run {
    int ret;
    struct soak_result r;
    char *report;
    size_t report_len;
    struct soak_config c;
};

/*
 * Runs config `id` in a fresh directory `name`, in this process or (`supervised`) in a
 * child; the report also goes to DIR/report.txt. (A supervised run's report is the
 * supervisor's part only: the child writes its own into its copy of the stream.)
 */
static void soak_with(enum config_id id, const char *name, const struct target_hooks *opts,
                      struct fault *f, bool supervised, const volatile sig_atomic_t *stop,
                      struct run *run)
{
    config_make(id, test_path(name), &run->c);
    run->c.stop = stop;
    if (f)
        snprintf(f->trace, sizeof(f->trace), "%s/trace.txt", run->c.dir);
    run->c.hooks = opts;
    FILE *out = open_memstream(&run->report, &run->report_len);
    ck_assert_ptr_nonnull(out);
    run->ret = supervised ? soak_run_supervised(&run->c, NULL, 0, &run->r, out)
                          : soak_run(&run->c, NULL, 0, &run->r, out);
    fclose(out);
    char path[1100];
    snprintf(path, sizeof(path), "%s/report.txt", run->c.dir);
    test_write_file(path, run->report, run->report_len);
}

static void soak(enum config_id id, const char *name, const struct target_hooks *opts,
                 struct fault *f, struct run *run)
{
    soak_with(id, name, opts, f, false, NULL, run);
}

/* A run of CONFIG_DATA with fault `f` (initialized) between the engine and its host file. */
static void soak_with_fault(const char *name, bool supervised, const volatile sig_atomic_t *stop,
                            struct fault *f, struct run *run)
{
    static struct target_hooks opts;
    opts = (struct target_hooks){ .hook = tap_hook, .hook_ctx = f };
    soak_with(CONFIG_DATA, name, &opts, f, supervised, stop, run);
}

/* The first lines of a report, for assertion messages. */
static const char *excerpt(const struct run *run)
{
    static char buf[1600];
    snprintf(buf, sizeof(buf), "%.*s", (int)(sizeof(buf) - 1), run->report);
    return buf;
}

/*
 * The run failed (soak_run returned 1) with one of the expected outcomes, after the fault
 * acted and within the op budget.
 */
static void expect_caught(const struct run *run, const struct fault *f, const char *fault_name,
                          const enum soak_outcome *expected, size_t n_expected)
{
    ck_assert_msg(f->fired, "%s: the fault never acted in %" PRIu64 " ops (the run %s): the "
                  "test proves nothing; report:\n%s", fault_name, run->r.ops_run,
                  soak_outcome_name(run->r.outcome), excerpt(run));
    ck_assert_msg(run->ret == 1, "%s (%s, in op %" PRIu32 "): expected the soak to fail "
                  "(1), it returned %d with outcome '%s' after %" PRIu64 " ops; report:\n%s",
                  fault_name, f->what, f->fired_at, run->ret, soak_outcome_name(run->r.outcome),
                  run->r.ops_run, excerpt(run));
    bool ok = false;
    for (size_t i = 0; i < n_expected; i++)
        ok |= run->r.outcome == expected[i];
    ck_assert_msg(ok, "%s (%s): expected outcome '%s', got '%s' at op %" PRIu64 "; report:\n%s",
                  fault_name, f->what, soak_outcome_name(expected[0]), soak_outcome_name(run->r.outcome),
                  run->r.failing_op, excerpt(run));
    uint64_t every = run->c.check_every, next_check = (f->fired_at + every - 1) / every * every;
    if (next_check > run->c.ops || !every)
        next_check = run->c.ops;
    ck_assert_msg(run->r.failing_op >= f->fired_at && run->r.failing_op <= next_check,
                  "%s: injected in op %" PRIu32 ", caught at op %" PRIu64 ": expected by the "
                  "first cross-check after it (op %" PRIu64 ")", fault_name, f->fired_at,
                  run->r.failing_op, next_check);
    fprintf(stderr, "test_soak: %s: %s (in op %" PRIu32 "); caught at op %" PRIu64
            " (%s, %s)\n", fault_name, f->what, f->fired_at, run->r.failing_op,
            soak_outcome_name(run->r.outcome), op_kind_name(run->r.failing_kind));
}

/* The report names the first divergent sector; it must be one the fault damaged. */
static uint64_t expect_damaged_sector_named(const struct run *run, const struct fault *f,
                                            const char *fault_name)
{
    static const char key[] = "contents mismatch in sector ";
    const char *at = strstr(run->report, key);
    ck_assert_msg(at, "%s: the report names no divergent sector:\n%s", fault_name,
                  excerpt(run));
    uint64_t sector = strtoull(at + strlen(key), NULL, 10);
    ck_assert_msg(is_damaged(f, sector), "%s: the report names sector %" PRIu64 ", which the "
                  "fault did not damage (it damaged %" PRIu64 " sectors: %s); report:\n%s",
                  fault_name, sector, f->n_damaged, f->what, excerpt(run));
    /* Its provenance: the op that last wrote it (and what that op was), or none. */
    char written[96], unwritten[96];
    snprintf(written, sizeof(written), "sector %" PRIu64 " was last written by op ", sector);
    snprintf(unwritten, sizeof(unwritten), "sector %" PRIu64 " has not been written", sector);
    const char *by = strstr(at, written);
    const char *end = by ? strchr(by, '\n') : NULL;
    bool described = by && end && !memmem(by, (size_t)(end - by), "(?)", 3);
    ck_assert_msg(described || strstr(at, unwritten), "%s: the report gives no provenance of "
                  "sector %" PRIu64 ":\n%s", fault_name, sector, excerpt(run));
    return sector;
}

/* Other ways a data fault may show, besides a comparison with the oracle. */
#define ALSO_CHECKS 1u      /* the image checks (or the target) find the metadata broken */
#define ALSO_SIZE 2u        /* the disk's size differs from the oracle's */

/*
 * A data fault is found by a read that diverges, by a snapshot that differs from its
 * oracle copy or, at the next cross-check, by `qemu-img compare` against the oracle;
 * each way the report names the first divergent sector, which must be one the fault
 * damaged.
 */
static void expect_data_fault_caught(const struct run *run, const struct fault *f,
                                     const char *fault_name, unsigned also)
{
    /* A power cut reads the whole disk back: it may be the first to see the damage. */
    static const enum soak_outcome want[] = { SOAK_DIVERGED, SOAK_SNAPSHOT_DIVERGED,
                                              SOAK_CHECK_FAILED, SOAK_CRASH_STATE,
                                              SOAK_TARGET_ERROR };
    expect_caught(run, f, fault_name, want, also & ALSO_CHECKS ? 5 : 4);
    if (run->r.outcome == SOAK_CHECK_FAILED &&
        !strstr(run->report, "qemu-img compare (image vs oracle) exited")) {
        ck_assert_msg(also & ALSO_CHECKS, "%s: a data fault should fail a comparison with "
                      "the oracle, not a check; report:\n%s", fault_name, excerpt(run));
        return;
    }
    if (run->r.outcome == SOAK_TARGET_ERROR)
        return;
    if (run->r.outcome == SOAK_DIVERGED && strstr(run->report, "bytes, the oracle's ")) {
        ck_assert_msg(also & ALSO_SIZE, "%s: the disk size diverged; report:\n%s",
                      fault_name, excerpt(run));
        return;
    }
    expect_damaged_sector_named(run, f, fault_name);
}

static void expect_report_has(const struct run *run, const char *what, const char *fault_name)
{
    ck_assert_msg(strstr(run->report, what), "%s: expected the report to contain '%s':\n%s",
                  fault_name, what, excerpt(run));
}

static void run_free(struct run *run)
{
    free(run->report);
}

/* ---- 1. a dropped data write ------------------------------------------------------- */

/*
 * The first host write carrying payload (a whole payload sector of op ARM_OP or later) in
 * an op a cross-check follows; with `inside`, only inside the file (a write past its end
 * that goes missing also leaves a cluster beyond the end of the file, which the image
 * checks report before any comparison).
 */
static bool data_strike(struct fault *f, struct qcow2_backend *file, const uint8_t *buf,
                        size_t len, uint64_t off, bool inside, struct geometry *g,
                        uint32_t *op, uint64_t *sector)
{
    uint64_t size;
    if (f->fired || !len)
        return false;
    size_t i = first_sector_at(off);
    for (; i + SECTOR <= len; i += SECTOR)
        if (payload_identify(buf + i, op, sector) && *op >= ARM_OP)
            break;
    return i + SECTOR <= len && just_before_check(*op) && !file->ops->size(file, &size) &&
           (!inside || off + len <= size) && !read_geometry(file, g);
}

/*
 * The guest cluster whose active L2 entry maps host cluster `host` as a plain data
 * cluster; false when none does (free space, metadata, compressed or snapshot-only data).
 */
static bool guest_cluster_of(struct qcow2_backend *file, const struct geometry *g,
                             uint64_t host, uint64_t *guest)
{
    uint8_t *l1 = read_l1(file, g), *l2 = malloc(g->cs);
    ck_assert_ptr_nonnull(l1);
    ck_assert_ptr_nonnull(l2);
    bool found = false;
    uint32_t entries = g->cs / 8;
    for (uint32_t i = 0; i < g->l1_size && !found; i++) {
        uint64_t table = test_get_be64(l1 + 8 * i) & L1_OFFSET_MASK;
        if (!table || file->ops->read(file, l2, g->cs, table))
            continue;
        for (uint32_t j = 0; j < entries && !found; j++) {
            uint64_t entry = test_get_be64(l2 + 8 * j);
            if (!(entry & L2_COMPRESSED) && (entry & L2_OFFSET_MASK) == host) {
                *guest = (uint64_t)i * entries + j;
                found = true;
            }
        }
    }
    free(l1);
    free(l2);
    return found;
}

static int drop_write(struct fault *f, struct qcow2_backend *file, const void *buf, size_t len,
                      uint64_t off)
{
    struct geometry g;
    uint32_t op;
    uint64_t sector;
    if (!data_strike(f, file, buf, len, off, true, &g, &op, &sector))
        return file->ops->write(file, buf, len, off);
    damage_cluster_owners(f, buf, len, off, g.cs);
    fired(f, "dropped op %" PRIu32 "'s host write of %zu bytes at %" PRIu64 " (guest sector %"
          PRIu64 " and on, %" PRIu64 " sectors)", op, len, off, sector, f->n_damaged);
    return 0;
}

START_TEST(a_dropped_data_write_is_caught)
{
    struct fault f;
    fault_init(&f);
    f.write = drop_write;
    struct target_hooks opts = { .hook = tap_hook, .hook_ctx = &f };
    struct run run;
    soak(CONFIG_DATA, "dropped-write", &opts, &f, &run);
    expect_data_fault_caught(&run, &f, "dropped data write", 0);
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* ---- 2. a data write landing one cluster further on ---------------------------------- */

/*
 * Writes the data one cluster further on, when that lands on another guest cluster's data
 * or past the end of the file (not into metadata: a clobbered table is for the image
 * checks to find).
 */
static int misplace_write(struct fault *f, struct qcow2_backend *file, const void *buf,
                          size_t len, uint64_t off)
{
    struct geometry g;
    uint32_t op;
    uint64_t sector, victim;
    /* (One past the end of the file is fine: landing further on, it leaves a hole.) */
    if (!data_strike(f, file, buf, len, off, false, &g, &op, &sector))
        return file->ops->write(file, buf, len, off);
    uint64_t to = off + g.cs, spc = g.cs / SECTOR, size;
    bool past_end = !file->ops->size(file, &size) && to / g.cs * g.cs >= size;
    if (to / g.cs != (to + len - 1) / g.cs ||
        (!past_end && !guest_cluster_of(file, &g, to / g.cs * g.cs, &victim)))
        return file->ops->write(file, buf, len, off);
    /* The intended sectors keep their old contents; the ones it lands on are overwritten. */
    damage_cluster_owners(f, buf, len, off, g.cs);
    for (uint64_t s = to % g.cs / SECTOR; !past_end && s <= (to + len - 1) % g.cs / SECTOR; s++)
        damage(f, victim * spc + s);
    fired(f, "wrote op %" PRIu32 "'s %zu bytes (guest sector %" PRIu64 " and on) at host %"
          PRIu64 " instead of %" PRIu64 ", %s (%" PRIu64 " sectors damaged)", op, len, sector,
          to, off, past_end ? "past the end of the file" : "over another guest cluster",
          f->n_damaged);
    return file->ops->write(file, buf, len, to);
}

START_TEST(a_data_write_in_the_wrong_cluster_is_caught)
{
    struct fault f;
    fault_init(&f);
    f.write = misplace_write;
    struct target_hooks opts = { .hook = tap_hook, .hook_ctx = &f };
    struct run run;
    soak(CONFIG_DATA, "misplaced-write", &opts, &f, &run);
    expect_data_fault_caught(&run, &f, "misplaced data write", 0);
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* ---- 3. a bit flipped on read -------------------------------------------------------- */

/*
 * Flips a bit in the first host read serving a guest read that starts with a payload
 * sector. (Other reads may never use what they read: copy-on-write reads a whole cluster
 * and then overlays the guest's data, the snapshot table is read with room to spare.)
 */
static int flip_on_read(struct fault *f, struct qcow2_backend *file, void *buf, size_t len,
                        uint64_t off)
{
    int ret = file->ops->read(file, buf, len, off);
    size_t i = first_sector_at(off);
    uint8_t *p = buf;
    uint32_t op;
    uint64_t sector;
    if (ret || f->fired || !f->in_guest_read || i + SECTOR > len ||
        !payload_identify(p + i, &op, &sector) || op < ARM_OP)
        return ret;
    p[i + 300] ^= 0x08;
    damage(f, sector);
    fired(f, "flipped bit 3 of byte 300 of guest sector %" PRIu64 " (op %" PRIu32
          "'s data) in a host read of %zu bytes at %" PRIu64, sector, op, len, off);
    return 0;
}

START_TEST(a_bit_flipped_on_read_is_caught)
{
    struct fault f;
    fault_init(&f);
    f.read = flip_on_read;
    struct wrapping how = { .f = &f };
    struct target_hooks opts = { .hook = tap_hook, .hook_ctx = &f, .wrap = wrap_hook,
                                        .wrap_ctx = &how };
    struct run run;
    soak(CONFIG_DATA, "bit-flip", &opts, &f, &run);
    expect_data_fault_caught(&run, &f, "bit flipped on read", 0);
    uint64_t sector = expect_damaged_sector_named(&run, &f, "bit flipped on read");
    char line[96];
    snprintf(line, sizeof(line), "expected (oracle), sector %" PRIu64, sector);
    expect_report_has(&run, line, "bit flipped on read");
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* ---- 4. a stale cached L2 table ----------------------------------------------------- */

/*
 * Every cluster-sized read of a table the active L1 points to at an offset served before
 * gets the version first served there: after a reopen the engine sees out-of-date L2s.
 */
static int stale_l2(struct fault *f, struct qcow2_backend *file, void *buf, size_t len,
                    uint64_t off)
{
    int ret = file->ops->read(file, buf, len, off);
    struct geometry g;
    if (ret || read_geometry(file, &g) || len != g.cs || off % g.cs)
        return ret;
    uint8_t *l1 = read_l1(file, &g);
    ck_assert_ptr_nonnull(l1);
    uint32_t index = UINT32_MAX;
    for (uint32_t i = 0; i < g.l1_size && index == UINT32_MAX && off; i++)
        if ((test_get_be64(l1 + 8 * i) & L1_OFFSET_MASK) == off)
            index = i;
    free(l1);
    if (index == UINT32_MAX)
        return 0;
    struct stale_table *s = NULL;
    for (size_t i = 0; i < f->n_stale && !s; i++)
        if (f->stale[i].offset == off)
            s = &f->stale[i];
    if (!s) {
        f->stale = realloc(f->stale, (f->n_stale + 1) * sizeof(*f->stale));
        ck_assert_ptr_nonnull(f->stale);
        s = &f->stale[f->n_stale++];
        s->offset = off;
        s->first = malloc(len);
        ck_assert_ptr_nonnull(s->first);
        memcpy(s->first, buf, len);
        return 0;
    }
    if (!memcmp(s->first, buf, len))
        return 0;
    /* The guest clusters whose mapping the stale table gets wrong. */
    uint32_t entries = g.cs / 8, per_cluster = g.cs / SECTOR, differ = 0;
    const uint8_t *now = buf;
    for (uint32_t j = 0; j < entries; j++) {
        if (!memcmp(s->first + 8 * j, now + 8 * j, 8))
            continue;
        differ++;
        uint64_t cluster = (uint64_t)index * entries + j;
        for (uint32_t k = 0; k < per_cluster; k++)
            damage(f, cluster * per_cluster + k);
    }
    fired(f, "served a stale L2 table (L1 index %" PRIu32 ", host %" PRIu64 ", %" PRIu32
          " entries out of date)", index, off, differ);
    memcpy(buf, s->first, len);
    return 0;
}

START_TEST(a_stale_l2_table_is_caught)
{
    struct fault f;
    fault_init(&f);
    f.read = stale_l2;
    struct target_hooks opts = { .hook = tap_hook, .hook_ctx = &f };
    struct run run;
    soak(CONFIG_REOPEN, "stale-l2", &opts, &f, &run);
    expect_data_fault_caught(&run, &f, "stale L2 table", ALSO_CHECKS);
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* ---- 5. a lost refcount update: a leak ---------------------------------------------- */

/*
 * A write-back cache writes a block's changed sectors again with every later change, which
 * would put the lost value back: the lost entry stays lost in every write after it, so
 * that it is the engine's update that never reaches the disk, not one write of it.
 */
static int keep_refcount_lost(struct fault *f, struct qcow2_backend *file, const void *buf,
                              size_t len, uint64_t off)
{
    if (f->leaked_at < off || f->leaked_at + f->leaked_width > off + len)
        return file->ops->write(file, buf, len, off);
    uint8_t *kept = malloc(len);
    ck_assert_ptr_nonnull(kept);
    memcpy(kept, buf, len);
    memcpy(kept + (f->leaked_at - off), f->leaked_old, f->leaked_width);
    int ret = file->ops->write(file, kept, len, off);
    free(kept);
    return ret;
}

/*
 * Drops the first lowered refcount in a write into a refcount block (the metadata cache
 * writes whole sectors of a block), in an op a cross-check follows: the rest of the write
 * lands, that entry keeps its old value on disk.
 */
static int lose_refcount_drop(struct fault *f, struct qcow2_backend *file, const void *buf,
                              size_t len, uint64_t off)
{
    struct geometry g;
    if (f->fired)
        return keep_refcount_lost(f, file, buf, len, off);
    if (!f->armed || read_geometry(file, &g) || g.refcount_order < 3 ||
        !just_before_check(current_op(f)) || current_op_crashes(f))
        return file->ops->write(file, buf, len, off);
    size_t width = (1u << g.refcount_order) / 8;
    size_t table_len = (size_t)g.reftable_clusters * g.cs;
    uint8_t *table = malloc(table_len);
    ck_assert_ptr_nonnull(table);
    ck_assert_int_eq(file->ops->read(file, table, table_len, g.reftable_offset), 0);
    uint64_t block = 0, index = 0;
    for (size_t i = 0; i < table_len / 8 && !block; i++) {
        uint64_t b = test_get_be64(table + 8 * i) & ~(uint64_t)(g.cs - 1);
        if (b && off >= b && off + len <= b + g.cs && (off - b) % width == 0 &&
            len % width == 0) {
            block = b;
            index = i;
        }
    }
    free(table);
    uint8_t *old = block ? malloc(len) : NULL;
    if (!old || file->ops->read(file, old, len, off)) {
        free(old);
        return file->ops->write(file, buf, len, off);
    }
    const uint8_t *fresh = buf;
    for (size_t at = 0; at < len; at += width) {
        uint64_t before = 0, after = 0;
        for (size_t i = 0; i < width; i++) {
            before = before << 8 | old[at + i];
            after = after << 8 | fresh[at + i];
        }
        if (after >= before)
            continue;
        uint8_t *kept = malloc(len);
        ck_assert_ptr_nonnull(kept);
        memcpy(kept, buf, len);
        memcpy(kept + at, old + at, width);
        uint64_t per_block = (uint64_t)g.cs * 8 >> g.refcount_order;
        f->leaked_cluster = index * per_block + (off + at - block) / width;
        f->leaked_at = off + at;
        f->leaked_width = width;
        memcpy(f->leaked_old, old + at, width);
        fired(f, "dropped the refcount update of host cluster %" PRIu64 " from %" PRIu64
              " to %" PRIu64, f->leaked_cluster, before, after);
        int ret = file->ops->write(file, kept, len, off);
        free(kept);
        free(old);
        return ret;
    }
    free(old);
    return file->ops->write(file, buf, len, off);
}

START_TEST(a_lost_refcount_update_is_caught_as_a_leak)
{
    struct fault f;
    fault_init(&f);
    f.write = lose_refcount_drop;
    struct target_hooks opts = { .hook = tap_hook, .hook_ctx = &f };
    struct run run;
    soak(CONFIG_DATA, "lost-refcount", &opts, &f, &run);
    static const enum soak_outcome want[] = { SOAK_CHECK_FAILED };
    expect_caught(&run, &f, "lost refcount update", want, 1);
    /*
     * `qemu-img check` reads the refcount on disk and finds the leak; the engine's check
     * takes stored refcounts from its refcount-block cache, which holds the lowered value,
     * so it would only see the leak after a reopen reloaded the block. Whichever check
     * finds it, the report names the leaked cluster.
     */
    char line[64];
    snprintf(line, sizeof(line), "Leaked cluster %" PRIu64 " ", f.leaked_cluster);
    expect_report_has(&run, line, "lost refcount update");
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* ---- 6. a corruption only qemu-img check sees -------------------------------------- */

static struct fault *copied_fault;

/*
 * Right after the target's own check found the image clean, behind the engine's back,
 * clears the COPIED flag of an allocated entry of the active L1 table on disk: a
 * corruption that only the next checker can see, `qemu-img check` at a cross-check, or
 * the check of the image reopened after a crash when it was the check before a crash.
 * (The engine's check reads the L1 table from disk, so a corruption made earlier would be
 * its find instead.)
 */
static int clear_copied_after_check(struct target *t, struct target_check *result)
{
    int ret = relay(t, INNER(t)->ops->check(INNER(t), result));
    struct fault *f = copied_fault;
    struct geometry g;
    if (ret || result->corruptions || result->leaks || result->check_errors || f->fired ||
        !f->armed || !f->io.inner || read_geometry(f->io.inner, &g))
        return ret;
    uint8_t *l1 = read_l1(f->io.inner, &g);
    ck_assert_ptr_nonnull(l1);
    for (uint32_t i = 0; i < g.l1_size; i++) {
        uint64_t entry = test_get_be64(l1 + 8 * i);
        if (!(entry & L1_OFFSET_MASK) || !(entry & OFLAG_COPIED))
            continue;
        uint8_t raw[8];
        test_put_be64(raw, entry & ~OFLAG_COPIED);
        struct qcow2_backend *file = f->io.inner;
        ck_assert_int_eq(file->ops->write(file, raw, 8, g.l1_offset + 8ull * i), 0);
        ck_assert_int_eq(file->ops->flush(file), 0);
        f->l1_index = i;
        fired(f, "cleared COPIED in L1 entry %" PRIu32 " on disk (0x%" PRIx64 ")", i, entry);
        break;
    }
    free(l1);
    return ret;
}

START_TEST(a_corruption_only_qemu_img_sees_is_caught)
{
    struct fault f;
    fault_init(&f);
    copied_fault = &f;
    struct wrapping how = { .f = &f, .check = clear_copied_after_check };
    struct target_hooks opts = { .hook = tap_hook, .hook_ctx = &f, .wrap = wrap_hook,
                                        .wrap_ctx = &how };
    struct run run;
    soak(CONFIG_DATA, "cleared-copied", &opts, &f, &run);
    static const enum soak_outcome want[] = { SOAK_CHECK_FAILED, SOAK_CRASH_STATE };
    expect_caught(&run, &f, "COPIED cleared on disk", want, 2);
    expect_report_has(&run, run.r.outcome == SOAK_CHECK_FAILED ? "qemu-img check exited"
                      : "the reopened image's check found", "COPIED cleared on disk");
    char line[64];
    snprintf(line, sizeof(line), "OFLAG_COPIED L2 cluster: l1_index=%" PRIu32 " ", f.l1_index);
    expect_report_has(&run, line, "COPIED cleared on disk");
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* ---- 7. a wrong snapshot applied ---------------------------------------------------- */

static struct fault *apply_fault;

/*
 * The guest sectors where snapshots `a` and `b` differ (sizes included); with `mark`,
 * they are marked damaged.
 */
static uint64_t snapshots_differ(struct fault *f, struct target *t, const char *a,
                                 const char *b, uint64_t size_a, uint64_t size_b, bool mark)
{
    uint64_t common = size_a < size_b ? size_a : size_b;
    uint64_t most = size_a < size_b ? size_b : size_a;
    uint64_t count = 0;
    size_t chunk = 1u << 20;
    uint8_t *x = malloc(chunk), *y = malloc(chunk);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    for (uint64_t off = 0; off < common; off += chunk) {
        size_t n = common - off < chunk ? (size_t)(common - off) : chunk;
        ck_assert_int_eq(t->ops->snapshot_read(t, a, x, n, off), 0);
        ck_assert_int_eq(t->ops->snapshot_read(t, b, y, n, off), 0);
        for (size_t i = 0; i < n; i += SECTOR) {
            if (!memcmp(x + i, y + i, n - i < SECTOR ? n - i : SECTOR))
                continue;
            count++;
            if (mark)
                damage(f, (off + i) / SECTOR);
        }
    }
    for (uint64_t s = common / SECTOR; s < (most + SECTOR - 1) / SECTOR; s++) {
        count++;
        if (mark)
            damage(f, s);
    }
    free(x);
    free(y);
    return count;
}

/* The virtual size snapshot `id` records. */
static uint64_t snapshot_size(const char *path, const char *id)
{
    struct qcow2_image *img;
    struct qcow2_error err;
    ck_assert_msg(qcow2_open(path, NULL, &img, &err) == 0, "open %s: %s", path, err.message);
    uint64_t size = 0;
    struct qcow2_snapshot_info info;
    for (uint32_t i = 0; i < qcow2_snapshot_count(img); i++)
        if (!qcow2_snapshot_get(img, i, &info) && !strcmp(info.id, id))
            size = info.disk_size;
    qcow2_close(img);
    ck_assert_msg(size, "%s: no snapshot %s", path, id);
    return size;
}

static char apply_image[1100];

/*
 * Applies the oldest snapshot whose contents differ from the one asked for (when there is
 * one), every time once armed. The damage is every sector where the two differ, summed
 * over the wrong applies.
 */
static int apply_another(struct target *t, const char *id)
{
    struct fault *f = apply_fault;
    const char *other = NULL;
    uint64_t size = 0, other_size = 0, differ = 0;
    if (f->armed) {
        size = snapshot_size(apply_image, id);
        for (unsigned i = 0; i < f->n_ids && !other; i++) {
            if (!strcmp(f->ids[i], id))
                continue;
            other_size = snapshot_size(apply_image, f->ids[i]);
            differ = snapshots_differ(f, INNER(t), id, f->ids[i], size, other_size, 0);
            if (differ)
                other = f->ids[i];
        }
    }
    if (!other)
        return relay(t, INNER(t)->ops->snapshot_apply(INNER(t), id));
    snapshots_differ(f, INNER(t), id, other, size, other_size, true);
    fired(f, "applied snapshot %s (%" PRIu64 " bytes) instead of %s (%" PRIu64 " bytes), %"
          PRIu64 " sectors differ", other, other_size, id, size, differ);
    return relay(t, INNER(t)->ops->snapshot_apply(INNER(t), other));
}

START_TEST(a_wrong_snapshot_apply_is_caught)
{
    struct fault f;
    fault_init(&f);
    apply_fault = &f;
    struct wrapping how = { .f = &f, .snapshot_apply = apply_another };
    struct target_hooks opts = { .hook = tap_hook, .hook_ctx = &f, .wrap = wrap_hook,
                                        .wrap_ctx = &how };
    snprintf(apply_image, sizeof(apply_image), "%s/image.qcow2", test_path("wrong-apply"));
    struct run run;
    soak(CONFIG_DATA, "wrong-apply", &opts, &f, &run);
    expect_data_fault_caught(&run, &f, "wrong snapshot applied", ALSO_SIZE);
    run_free(&run);
    fault_free(&f);
}
END_TEST

/*
 * A target that reports a flush it never made. Either a power cut loses "flushed" bytes,
 * or the cross-check after the flush finds the image as the engine left it unflushed: with
 * lazy refcounts its refcounts lag behind (qemu-img check: leaks). The engine's own
 * ordering barriers make much of the data durable anyway, so which of the two comes first
 * depends on the ops; a run that passes is the failure.
 */
static int flush_nothing(struct target *t)
{
    t->message[0] = '\0';
    return 0;
}

START_TEST(a_flush_that_did_nothing_is_caught)
{
    struct fault f;
    fault_init(&f);
    struct wrapping how = { .f = &f, .flush = flush_nothing };
    struct target_hooks opts = { .wrap = wrap_hook, .wrap_ctx = &how };
    struct run run;
    soak(CONFIG_POWER_CUT, "lost-flush", &opts, NULL, &run);
    const char *kind = soak_failure_kind(&run.r);
    bool by_power_cut = run.r.outcome == SOAK_CRASH_STATE &&
                        (run.r.failing_kind == OP_POWER_CUT ||
                         run.r.failing_kind == OP_DIRTY_REOPEN ||
                         run.r.failing_kind == OP_TORN_POWER_CUT) &&
                        (!strcmp(kind, "lost-flushed-bytes") ||
                         !strcmp(kind, "crash-state-corruption"));
    bool by_check = run.r.outcome == SOAK_CHECK_FAILED && strstr(run.report, "qemu-img check");
    ck_assert_msg(run.ret == 1 && (by_power_cut || by_check),
                  "a flush that did nothing: expected a power cut (crash-state) or the next "
                  "qemu-img check to fail, got %d ('%s', %s) at op %" PRIu64 "; report:\n%s",
                  run.ret, soak_outcome_name(run.r.outcome), kind, run.r.failing_op,
                  excerpt(&run));
    if (by_power_cut)
        ck_assert_msg(strstr(run.report, "after the crash"), "the report does not say what "
                      "the crash lost:\n%s", excerpt(&run));
    run_free(&run);
    fault_free(&f);
}
END_TEST

/*
 * A reopen after a power cut that damages one sector far from the writes since the flush,
 * once: in a slice the cut does not compare, the one the cut before it compared (so that
 * only the eighth cut from here, a read or a cross-check can see it), or, when every cut
 * compares the whole disk, a sector in the disk's second eighth.
 */
static struct fault *reopen_fault;

static int damage_beside_the_slice(struct target *t, enum target_crash how, uint64_t seed,
                                   struct target_check *after)
{
    int ret = relay(t, INNER(t)->ops->crash_reopen(INNER(t), how, seed, after));
    struct fault *f = reopen_fault;
    struct target_facts facts;
    if (ret || f->fired || current_op(f) < ARM_OP || INNER(t)->ops->facts(INNER(t), &facts))
        return ret;
    FILE *trace = fopen(f->trace, "r");
    char line[256];
    unsigned part = 0, parts = 0;
    while (trace && fgets(line, sizeof(line), trace) && line[0])
        if (!strstr(line, " compare ") || sscanf(strstr(line, " compare "), " compare %u/%u",
                                                 &part, &parts) != 2)
            part = parts = 0;
    if (trace)
        fclose(trace);
    if (parts && part < 2)
        return ret;
    uint64_t eighth = facts.size / SECTOR / 8;
    uint64_t sector = eighth * (parts ? part - 2 : 1) + eighth / 2;
    uint8_t junk[SECTOR];
    memset(junk, 0x5a, sizeof(junk));
    ck_assert_int_eq(INNER(t)->ops->write(INNER(t), junk, SECTOR, sector * SECTOR), 0);
    ck_assert_int_eq(INNER(t)->ops->flush(INNER(t)), 0);
    damage(f, sector);
    fired(f, "wrote 0x5a over sector %" PRIu64 " after the reopen (compare %u/%u)", sector,
          part, parts);
    return ret;
}

/*
 * Damage a cut leaves outside the slice it compares is still found: by the slice that
 * covers it at a later cut, a read or the next cross-check, and the report names that
 * sector with the cut in its history and says the disk was compared in slices since. With
 * --crash-compare whole the cut that left it finds it at once.
 */
START_TEST(damage_outside_a_crash_slice_is_found_later_and_named)
{
    for (int whole = 0; whole < 2; whole++) {
        struct fault f;
        fault_init(&f);
        reopen_fault = &f;
        struct wrapping how = { .f = &f, .crash_reopen = damage_beside_the_slice };
        struct target_hooks opts = { .wrap = wrap_hook, .wrap_ctx = &how };
        struct run run;
        soak(whole ? CONFIG_POWER_CUT_WHOLE : CONFIG_POWER_CUT,
             whole ? "damage-whole" : "damage-slice", &opts, &f, &run);
        static const enum soak_outcome want[] = { SOAK_CRASH_STATE, SOAK_DIVERGED,
                                                  SOAK_CHECK_FAILED };
        expect_caught(&run, &f, "damage after a reopen", want, whole ? 1 : 3);
        uint64_t sector = expect_damaged_sector_named(&run, &f, "damage after a reopen");
        char cut[64];
        snprintf(cut, sizeof(cut), "    op %" PRIu32 ": ", f.fired_at);
        const char *history = strstr(run.report, "history of sector");
        ck_assert_msg(history && strstr(history, cut), "the history of sector %" PRIu64
                      " does not list the cut of op %" PRIu32 ":\n%s", sector, f.fired_at,
                      excerpt(&run));
        if (whole) {
            ck_assert_msg(run.r.failing_op == f.fired_at, "--crash-compare whole: the damage "
                          "of op %" PRIu32 " was found at op %" PRIu64 " only", f.fired_at,
                          run.r.failing_op);
        } else {
            ck_assert_msg(run.r.failing_op > f.fired_at, "a slice found damage it should "
                          "not have compared (op %" PRIu64 ")", run.r.failing_op);
            if (run.r.outcome != SOAK_CHECK_FAILED)
                expect_report_has(&run, "the disk was last compared whole", "damage after a "
                                  "reopen");
        }
        run_free(&run);
        fault_free(&f);
    }
}
END_TEST

/* A snapshot table listing each name with its last byte changed. */
static int names_off_by_one(struct target *t, struct target_snapshot *out, unsigned cap,
                            unsigned *n)
{
    int ret = relay(t, INNER(t)->ops->snapshot_list(INNER(t), out, cap, n));
    for (unsigned i = 0; !ret && i < *n && i < cap; i++)
        out[i].name[strlen(out[i].name) - 1] ^= 1;
    return ret;
}

START_TEST(a_snapshot_table_that_differs_from_what_was_made_is_caught)
{
    struct fault f;
    fault_init(&f);
    struct wrapping how = { .f = &f, .snapshot_list = names_off_by_one };
    struct target_hooks opts = { .wrap = wrap_hook, .wrap_ctx = &how };
    struct run run;
    soak(CONFIG_DATA, "snapshot-names", &opts, NULL, &run);
    ck_assert_msg(run.ret == 1 && run.r.outcome == SOAK_CHECK_FAILED &&
                      strstr(run.r.message, "the snapshot table (qvet) differs from the "
                             "snapshots made: entry 1"),
                  "expected the snapshot table check to fail, got %d ('%s'): %s", run.ret,
                  soak_outcome_name(run.r.outcome), run.r.message);
    run_free(&run);
    fault_free(&f);
}
END_TEST

/*
 * Payloads: every sector of every kind names its op and sector, and the kinds differ in
 * how far they compress (compressed clusters of every size: packed, starting inside a
 * sector), which is what the compressed-cluster paths need.
 */
START_TEST(payloads_name_their_op_and_sector_and_many_compress)
{
    enum { OPS = 64, LEN = 65536 };
    uint8_t *buf = malloc(LEN), *packed = malloc(compressBound(LEN));
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(packed);
    unsigned small = 0, incompressible = 0;
    for (uint32_t op = 1; op <= OPS; op++) {
        uint64_t off = (uint64_t)op * 1048576 + 512;
        payload_fill(buf, off, LEN, op);
        for (size_t i = 0; i < LEN; i += 512) {
            uint32_t o;
            uint64_t sector;
            ck_assert_msg(payload_identify(buf + i, &o, &sector) && o == op &&
                              sector == (off + i) / 512,
                          "op %u: the sector at %zu does not name op %u sector %zu", op, i, op,
                          (size_t)((off + i) / 512));
        }
        uLongf n = compressBound(LEN);
        ck_assert_int_eq(compress2(packed, &n, buf, LEN, Z_DEFAULT_COMPRESSION), Z_OK);
        small += n < LEN / 2;
        incompressible += n > LEN * 9 / 10;
    }
    ck_assert_msg(small >= OPS / 4 && incompressible >= OPS / 8, "of %d payloads %u compress "
                  "below half, %u stay above 90%%", OPS, small, incompressible);
    free(buf);
    free(packed);
}
END_TEST

/* ---- the run's end: limits, stops, a full disk, a crash ------------------------------ */

/* The trace file holds text only, and its last operation is number `last`. */
static void expect_clean_trace(const char *dir, uint32_t last)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/trace.txt", dir);
    size_t len;
    uint8_t *text = test_read_file(path, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(!memchr(text, '\0', len), "%s: %zu bytes with NUL bytes in them", path, len);
    ck_assert_msg(len && text[len - 1] == '\n', "%s: does not end with a whole line", path);
    size_t start = len - 1;
    while (start && text[start - 1] != '\n')
        start--;
    ck_assert_msg(strtoul((char *)text + start, NULL, 10) == last, "%s: the last line is "
                  "'%.*s', not op %" PRIu32, path, (int)(len - start - 1), text + start, last);
    free(text);
}

START_TEST(ops_and_seconds_both_limit_a_run)
{
    struct run run;
    config_make(CONFIG_DATA, test_path("ops-first"), &run.c);
    run.c.ops = 300;
    run.c.seconds = 600;
    run.c.quiet = true;
    ck_assert_int_eq(soak_run(&run.c, NULL, 0, &run.r, NULL), 0);
    ck_assert_msg(run.r.ops_run == 300, "--ops 300 with --seconds 600 ran %" PRIu64 " ops",
                  run.r.ops_run);

    config_make(CONFIG_DATA, test_path("seconds-first"), &run.c);
    run.c.ops = UINT64_MAX / 2;
    run.c.seconds = 0.3;
    run.c.quiet = true;
    ck_assert_int_eq(soak_run(&run.c, NULL, 0, &run.r, NULL), 0);
    ck_assert_msg(run.r.ops_run < run.c.ops && run.r.seconds >= 0.3, "a 0.3 s limit with a "
                  "huge op count: %" PRIu64 " ops in %.2f s", run.r.ops_run, run.r.seconds);
}
END_TEST

START_TEST(a_heartbeat_line_reports_progress_off_a_terminal)
{
    /* At the default 10 s none comes sooner (a loaded machine may take that long). */
    struct run run;
    soak(CONFIG_DATA, "heartbeat-off", NULL, NULL, &run);
    for (const char *at = run.report; (at = strstr(at, "soak: after ")); at++) {
        double when = 0;
        ck_assert_msg(sscanf(at, "soak: after %lf s", &when) == 1 && when >= 10,
                      "a heartbeat sooner than the default 10 s:\n%s", excerpt(&run));
    }
    run_free(&run);

    config_make(CONFIG_DATA, test_path("heartbeat"), &run.c);
    run.c.heartbeat = 0.001;
    FILE *out = open_memstream(&run.report, &run.report_len);
    ck_assert_int_eq(soak_run(&run.c, NULL, 0, &run.r, out), 0);
    fclose(out);
    unsigned lines = 0;
    unsigned long long last_ops = 0;
    for (const char *at = run.report; (at = strstr(at, "soak: after ")); at++) {
        double when, rate, left;
        unsigned long long ops, reads, checks;
        ck_assert_msg(sscanf(at, "soak: after %lf s: %llu ops, %lf ops/s, %llu reads compared, "
                             "%llu checks, %lf s left", &when, &ops, &rate, &reads, &checks,
                             &left) == 6, "a malformed heartbeat: %.120s", at);
        ck_assert_msg(ops >= last_ops && ops < run.c.ops && reads <= ops,
                      "heartbeat counts out of order: %.120s", at);
        last_ops = ops;
        lines++;
    }
    ck_assert_msg(lines > 0, "no heartbeat line with a 1 ms interval:\n%s", excerpt(&run));
    run_free(&run);
}
END_TEST

/* A stop requested (by SIGINT, through the handler) during the first armed host write. */
static int interrupt_in_write(struct fault *f, struct qcow2_backend *file, const void *buf,
                              size_t len, uint64_t off)
{
    if (f->armed && !f->fired) {
        fired(f, "SIGINT during a host write");
        raise(SIGINT);
    }
    return file->ops->write(file, buf, len, off);
}

START_TEST(sigint_stops_the_run_after_the_current_op)
{
    struct fault f;
    struct run run;
    fault_init(&f);
    f.write = interrupt_in_write;
    soak_with_fault("interrupted", false, soak_stop_on_signals(), &f, &run);
    ck_assert_msg(f.fired, "no SIGINT raised: the test proves nothing");
    ck_assert_msg(run.ret == -1 && run.r.outcome == SOAK_INTERRUPTED, "after SIGINT: returned "
                  "%d, outcome %s; report:\n%s", run.ret, soak_outcome_name(run.r.outcome),
                  excerpt(&run));
    ck_assert_msg(run.r.last_op == f.fired_at && run.r.ops_run == f.fired_at,
                  "SIGINT in op %" PRIu32 ": the run went on to op %" PRIu32 " (%" PRIu64
                  " ops)", f.fired_at, run.r.last_op, run.r.ops_run);
    ck_assert_int_eq(soak_exit_status(run.r.outcome, run.r.signal_number), 128 + SIGINT);
    char want[1300];
    snprintf(want, sizeof(want), "soak: interrupted at op %" PRIu32 ": ", f.fired_at);
    expect_report_has(&run, want, "SIGINT");
    snprintf(want, sizeof(want), "  replay: qvet replay %s/trace.txt\n", run.c.dir);
    expect_report_has(&run, want, "SIGINT");
    expect_clean_trace(run.c.dir, f.fired_at);
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* The host file system: full from the first armed host write on, or failing it. */
static void disk_fails_once_armed(struct fault *f, int error)
{
    fault_init(f);
    f->io.mask = IO_FAULT_WRITE;
    f->io.persistent = true;
    f->io.error = error;
}

START_TEST(a_full_disk_is_an_environment_failure_not_a_bug)
{
    struct fault f;
    struct run run;
    disk_fails_once_armed(&f, -ENOSPC);
    soak_with_fault("enospc", false, NULL, &f, &run);
    ck_assert_msg(f.io.fired, "the disk never filled: the test proves nothing");
    ck_assert_msg(run.ret == -1 && run.r.outcome == SOAK_SETUP_ERROR,
                  "ENOSPC: returned %d, outcome %s; report:\n%s", run.ret,
                  soak_outcome_name(run.r.outcome), excerpt(&run));
    ck_assert_int_eq(soak_exit_status(run.r.outcome, 0), 2);
    expect_report_has(&run, "an environment failure, not a bug", "ENOSPC");
    expect_report_has(&run, "no bug found", "ENOSPC");
    ck_assert_msg(!strstr(run.report, "FAILED"), "ENOSPC reported as FAILED:\n%s",
                  excerpt(&run));
    run_free(&run);
    fault_free(&f);

    /* The twin: the same write failing with EIO is the target's failure, a finding. */
    disk_fails_once_armed(&f, -EIO);
    soak_with_fault("eio", false, NULL, &f, &run);
    ck_assert_msg(f.io.fired && run.ret == 1 && soak_exit_status(run.r.outcome, 0) == 1,
                  "EIO: returned %d, outcome %s; report:\n%s", run.ret,
                  soak_outcome_name(run.r.outcome), excerpt(&run));
    run_free(&run);
    fault_free(&f);
}
END_TEST

static int crash_in_write(struct fault *f, struct qcow2_backend *file, const void *buf,
                          size_t len, uint64_t off)
{
    if (f->armed)
        raise(SIGSEGV);
    return file->ops->write(file, buf, len, off);
}

START_TEST(a_crash_of_the_target_is_reported_as_a_bug)
{
    struct fault f;
    struct run run;
    fault_init(&f);
    f.write = crash_in_write;
    soak_with_fault("crash", true, NULL, &f, &run);
    ck_assert_msg(run.ret == 1 && run.r.outcome == SOAK_CRASHED, "a crash: returned %d, "
                  "outcome %s; report:\n%s", run.ret, soak_outcome_name(run.r.outcome),
                  excerpt(&run));
    ck_assert_int_eq(soak_exit_status(run.r.outcome, run.r.signal_number), 1);
    /* Armed by op ARM_OP's data: the crash is in that op or soon after. */
    ck_assert_msg(run.r.failing_op >= ARM_OP && run.r.failing_op < ARM_OP + 20,
                  "crashed at op %" PRIu64 ", armed at op %u", run.r.failing_op, ARM_OP);
    char want[160];
    snprintf(want, sizeof(want), "qvet soak: the target crashed at op %" PRIu64 " (",
             run.r.failing_op);
    expect_report_has(&run, want, "crash");
    expect_report_has(&run, "replay: qvet replay ", "crash");
    expect_clean_trace(run.c.dir, (uint32_t)run.r.failing_op);
    run_free(&run);
    fault_free(&f);
}
END_TEST

/* ---- what a run does not do ----------------------------------------------------------- */

/* How many lines of the run's trace contain `what`. */
static unsigned trace_lines_with(const struct run *run, const char *what)
{
    char path[1100], line[512];
    snprintf(path, sizeof(path), "%s/trace.txt", run->c.dir);
    FILE *t = fopen(path, "r");
    ck_assert_ptr_nonnull(t);
    unsigned n = 0;
    while (fgets(line, sizeof(line), t))
        n += strstr(line, what) != NULL;
    fclose(t);
    return n;
}

/*
 * A target that cannot resize or take snapshots still runs the rest: the generator never
 * makes those ops (its capabilities filter the weights) and the summary's counts say so;
 * a trace that holds them (made on another target) has them skipped, never issued, with a
 * note in the trace after each; a refused op is noted too.
 */
START_TEST(skipped_and_refused_ops_are_noted_in_the_trace)
{
    struct fault f;
    fault_init(&f);
    struct wrapping how = { .f = &f, .caps_off = TARGET_CAN_RESIZE | TARGET_CAN_SNAPSHOT };
    struct target_hooks hooks = { .wrap = wrap_hook, .wrap_ctx = &how };
    struct run run;
    config_make(CONFIG_DATA, test_path("limited"), &run.c);
    run.c.ops = 400;
    run.c.weights[OP_RESIZE] = 100;
    run.c.weights[OP_SNAPSHOT_CREATE] = 100;
    run.c.hooks = &hooks;
    run.c.quiet = true;
    run.ret = soak_run(&run.c, NULL, 0, &run.r, NULL);
    ck_assert_msg(run.ret == 0, "a target without resize and snapshots: %d, outcome %s",
                  run.ret, soak_outcome_name(run.r.outcome));
    ck_assert_uint_eq(trace_lines_with(&run, " resize "), 0);
    ck_assert_uint_eq(trace_lines_with(&run, " snapshot-create "), 0);
    ck_assert(!(run.r.target_caps & TARGET_CAN_RESIZE));
    ck_assert_uint_eq(run.r.done[OP_RESIZE] + run.r.done[OP_SNAPSHOT_CREATE], 0);
    ck_assert_msg(run.r.done[OP_WRITE] > 50, "only %" PRIu64 " writes done",
                  run.r.done[OP_WRITE]);
    ck_assert_msg(trace_lines_with(&run, " refused by the target: ") > 0, "no refused "
                  "compressed write noted in 400 ops");

    /* The same target replaying ops it cannot do: each skipped, with a note. */
    struct op replay[] = {
        { .n = 1, .kind = OP_WRITE, .off = 0, .len = 4096 },
        { .n = 2, .kind = OP_RESIZE, .len = 16u << 20 },
        { .n = 3, .kind = OP_SNAPSHOT_CREATE, .snapshot = "s3" },
        { .n = 4, .kind = OP_READ, .off = 0, .len = 4096 },
    };
    run.ret = soak_run(&run.c, replay, 4, &run.r, NULL);
    ck_assert_msg(run.ret == 0, "replay: %d, outcome %s", run.ret,
                  soak_outcome_name(run.r.outcome));
    ck_assert_uint_eq(trace_lines_with(&run, " skipped: the qvet target cannot resize"), 1);
    ck_assert_uint_eq(trace_lines_with(&run, " skipped: the qvet target cannot snapshot-create"),
                      1);
    ck_assert_uint_eq(f.n_ids, 0);
    fault_free(&f);

    /* The notes are comments: the trace replays, with the same ops skipped again. */
    struct soak_config c;
    struct op *ops;
    size_t n;
    char errbuf[512], trace[1100];
    snprintf(trace, sizeof(trace), "%s/trace.txt", run.c.dir);
    ck_assert_msg(soak_trace_load(trace, &c, &ops, &n, NULL, errbuf, sizeof(errbuf)) == 0, "%s",
                  errbuf);
    ck_assert_uint_eq(n, 4);
    free(ops);
}
END_TEST

/* ---- traces ---------------------------------------------------------------------------- */

/* Loads `text` as a trace; on failure errbuf holds the reason. */
static int load_text(const char *name, const char *text, size_t len, struct op **ops,
                     size_t *n, size_t *nul_line, char *errbuf, size_t errlen)
{
    const char *path = test_path(name);
    ck_assert_int_eq(test_write_file(path, text, len), 0);
    struct soak_config c;
    return soak_trace_load(path, &c, ops, n, nul_line, errbuf, errlen);
}

static void expect_refused(const char *name, const char *text, const char *reason)
{
    struct op *ops;
    size_t n;
    char errbuf[512], want[600];
    int ret = load_text(name, text, strlen(text), &ops, &n, NULL, errbuf, sizeof(errbuf));
    ck_assert_msg(ret == -EINVAL, "%s: loaded (%d, %zu ops) instead of being refused", name,
                  ret, n);
    snprintf(want, sizeof(want), "%s: %s", test_path(name), reason);
    ck_assert_msg(strstr(errbuf, want) && !strchr(errbuf, '\n'), "%s: the message '%s' does "
                  "not say '%s' on one line", name, errbuf, want);
}

#define HEADER "seed 3\nsize 1048576\noptions -\nbacking none\ncheck-every 0\nops\n"

START_TEST(a_trace_that_cannot_be_replayed_is_refused_with_its_line)
{
    expect_refused("empty.txt", HEADER, "line 6: no operations after the \"ops\" line");
    expect_refused("comments-only.txt", HEADER "# nothing\n\n", "line 6: no operations");
    expect_refused("outside.txt", HEADER "1 write 0 4096\n2 write 1048064 1024\n",
                   "line 8: op 2 (2 write 1048064 1024): outside the disk");
    expect_refused("huge.txt", HEADER "1 read 0 33554432\n", "line 7: op 1 (1 read 0 "
                   "33554432): longer than the soak's 16 MiB limit");
    expect_refused("empty-range.txt", HEADER "1 discard 4096 0\n", "line 7: op 1 (1 discard "
                   "4096 0): an empty range");
    expect_refused("op-zero.txt", HEADER "0 flush\n", "line 7: op 0 (0 flush): operation "
                   "number 0");
    expect_refused("bad-resize.txt", HEADER "1 resize 1000\n", "line 7: op 1 (1 resize 1000): "
                   "a size that is not a positive multiple of 512");
    expect_refused("malformed.txt", HEADER "1 write 0 4096\n2 wirte 0 4096\n",
                   "line 8: not an operation: \"2 wirte 0 4096\"");
    expect_refused("extra.txt", HEADER "1 flush now\n", "line 7: not an operation");
    expect_refused("slice-past.txt", HEADER "1 power-cut compare 9/8\n",
                   "line 7: not an operation");
    expect_refused("slice-zero.txt", HEADER "1 torn-power-cut compare 0/8\n",
                   "line 7: not an operation");
    expect_refused("slice-write.txt", HEADER "1 flush compare 1/8\n",
                   "line 7: not an operation");
    expect_refused("setting.txt", "seed one\nops\n1 flush\n",
                   "line 1: not a valid \"key value\" setting: \"seed one\"");
    expect_refused("size.txt", "size 1000\nops\n1 flush\n", "line 1: not a valid");
    expect_refused("options.txt", "options colour=blue\nops\n1 flush\n",
                   "line 1: not a valid");

    /* A resize makes room for what follows it; so does a size grown and shrunk again. */
    struct op *ops;
    size_t n;
    char errbuf[512];
    static const char grown[] = HEADER "1 resize 2097152\n2 resize 1048576\n"
                                "3 write 2096128 1024\n";
    ck_assert_msg(load_text("grown.txt", grown, strlen(grown), &ops, &n, NULL, errbuf,
                            sizeof(errbuf)) == 0 && n == 3, "a write inside the grown disk "
                  "refused: %s", errbuf);
    ck_assert_int_eq(ops[2].off, 2096128);
    free(ops);

    /* A crash op's slice comes back as written; without one the compare is whole. */
    static const char sliced[] = HEADER "1 dirty-reopen\n2 torn-power-cut compare 3/8\n";
    ck_assert_msg(load_text("sliced.txt", sliced, strlen(sliced), &ops, &n, NULL, errbuf,
                            sizeof(errbuf)) == 0 && n == 2, "%s", errbuf);
    ck_assert_uint_eq(ops[0].compare_parts, 0);
    ck_assert_uint_eq(ops[1].compare_part, 3);
    ck_assert_uint_eq(ops[1].compare_parts, 8);
    char line[160];
    op_format(&ops[1], line, sizeof(line));
    ck_assert_str_eq(line, "2 torn-power-cut compare 3/8");
    free(ops);
}
END_TEST

START_TEST(a_trace_cut_short_by_nul_bytes_is_read_up_to_them)
{
    static const char text[] = HEADER "1 write 0 4096\n2 read 0 4096\n3 fl\0\0\0\0\0\0";
    struct op *ops;
    size_t n, nul_line;
    char errbuf[512];
    ck_assert_msg(load_text("killed.txt", text, sizeof(text), &ops, &n, &nul_line, errbuf,
                            sizeof(errbuf)) == 0, "%s", errbuf);
    ck_assert_msg(n == 2 && nul_line == 9, "read %zu ops, NUL bytes at line %zu (expected 2 "
                  "ops, NUL at line 9)", n, nul_line);
    free(ops);

    static const char none[] = HEADER "\0\0\0\0";
    ck_assert_int_eq(load_text("killed-early.txt", none, sizeof(none), &ops, &n, &nul_line,
                               errbuf, sizeof(errbuf)), -EINVAL);
    ck_assert_msg(strstr(errbuf, "no operations") && strstr(errbuf, "NUL"), "%s", errbuf);

    /* The supervisor's repair: the file cut at its first NUL byte. */
    const char *path = test_path("killed.txt");
    ck_assert_int_eq(soak_trace_cut_at_nul(path), 0);
    size_t len;
    uint8_t *cut = test_read_file(path, &len);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert(!memcmp(cut, text, len));
    free(cut);
}
END_TEST

/* ---- run directories ------------------------------------------------------------------- */

static void touch(const char *dir, const char *name, const char *text)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ck_assert_int_eq(test_write_file(path, text, strlen(text)), 0);
}

static bool exists(const char *dir, const char *name)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

START_TEST(a_directory_in_use_is_refused_naming_its_holder)
{
    const char *dir = test_path("locked");
    struct rundir first, second;
    char err[1200];
    ck_assert_msg(rundir_claim(&first, dir, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(rundir_claim(&second, dir, err, sizeof(err)), -EBUSY);
    char pid[64];
    snprintf(pid, sizeof(pid), "(pid %ld,", (long)getpid());
    ck_assert_msg(strstr(err, dir) && strstr(err, pid) && !strchr(err, '\n'),
                  "the refusal '%s' does not name %s and %s", err, dir, pid);
    rundir_release(&first);
    ck_assert_msg(rundir_claim(&second, dir, err, sizeof(err)) == 0, "after the release: %s",
                  err);
    rundir_release(&second);

    /* A lock file left by a process that died holds no lock: it never blocks a run. */
    const char *stale = test_path("stale");
    ck_assert_int_eq(test_run("mkdir '%s' && echo 999999999 > '%s/" RUNDIR_LOCK_NAME "'",
                              stale, stale), 0);
    ck_assert_msg(rundir_claim(&first, stale, err, sizeof(err)) == 0, "a stale lock: %s", err);
    rundir_release(&first);
}
END_TEST

START_TEST(only_what_qvet_wrote_is_ever_removed)
{
    char err[1200];
    struct rundir rd;
    /* Not qvet's: refused, untouched. */
    const char *mine = test_path("users-own");
    ck_assert_int_eq(test_run("mkdir '%s'", mine), 0);
    touch(mine, "notes.txt", "mine");
    ck_assert_int_eq(rundir_claim(&rd, mine, err, sizeof(err)), -ENOTEMPTY);
    ck_assert(exists(mine, "notes.txt") && !exists(mine, RUNDIR_LOCK_NAME));

    /* Numbered runs beside a person's files; latest follows the newest. */
    const char *root = test_path("root");
    ck_assert_int_eq(test_run("mkdir '%s'", root), 0);
    touch(root, "notes.txt", "mine");
    struct rundir a, b;
    ck_assert_msg(rundir_claim_numbered(&a, root, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(rundir_claim_numbered(&b, root, err, sizeof(err)) == 0, "%s", err);
    char want[600];
    snprintf(want, sizeof(want), "%s/run-0002", root);
    ck_assert_str_eq(b.path, want);
    char link[64] = "";
    snprintf(want, sizeof(want), "%s/latest", root);
    ck_assert_int_gt(readlink(want, link, sizeof(link) - 1), 0);
    ck_assert_str_eq(link, "run-0002");
    ck_assert(exists(root, "notes.txt") && exists(root, "run-0001"));

    /* After a run that found nothing: the large files go, the record and notes stay. */
    for (const char *const *name = (const char *const[]){ "image.qcow2", "oracle.raw",
             "snap-3.raw", "base.raw", "mid.qcow2", "backing-view.raw", "trace.txt",
             "summary.json", "notes.txt", NULL }; *name; name++)
        touch(a.path, *name, "x");
    rundir_remove_large_files(&a);
    ck_assert(!exists(a.path, "image.qcow2") && !exists(a.path, "oracle.raw") &&
              !exists(a.path, "snap-3.raw") && !exists(a.path, "base.raw") &&
              !exists(a.path, "mid.qcow2") && !exists(a.path, "backing-view.raw"));
    ck_assert(exists(a.path, "trace.txt") && exists(a.path, "summary.json") &&
              exists(a.path, "notes.txt"));
    rundir_release(&a);

    /* A failed run's directory is evidence: refused, kept whole. */
    touch(b.path, "image.qcow2", "x");
    touch(b.path, "summary.json", "{\n  \"verdict\": \"diverged\"\n}\n");
    rundir_release(&b);
    ck_assert_int_eq(rundir_claim(&b, b.path, err, sizeof(err)), -EEXIST);
    ck_assert_msg(strstr(err, "verdict diverged") && exists(b.path, "image.qcow2"), "%s", err);

    /* A passed run's directory is reused: its files replaced, a person's kept. */
    touch(a.path, "summary.json", "{\n  \"verdict\": \"passed\"\n}\n");
    ck_assert_msg(rundir_claim(&a, a.path, err, sizeof(err)) == 0, "%s", err);
    ck_assert(!exists(a.path, "trace.txt") && !exists(a.path, "summary.json") &&
              exists(a.path, "notes.txt"));
    rundir_release(&a);

    /* A passed replay leaves nothing: its directory, the latest link, the empty root. */
    const char *replays = test_path("replays");
    ck_assert_msg(rundir_claim_numbered(&a, replays, err, sizeof(err)) == 0, "%s", err);
    touch(a.path, "trace.txt", "x");
    rundir_remove(&a);
    ck_assert_msg(access(replays, F_OK) && errno == ENOENT, "%s is still there", replays);
}
END_TEST

/* ---- the twins: every configuration passes without a fault ------------------------- */

START_TEST(each_configuration_passes_without_a_fault)
{
    enum config_id id = (enum config_id)_i;
    char name[64];
    snprintf(name, sizeof(name), "twin-%s", config_names[id]);
    struct run run;
    soak(id, name, NULL, NULL, &run);
    ck_assert_msg(run.ret == 0 && run.r.outcome == SOAK_PASSED,
                  "config '%s' without a fault: expected a pass, got %d ('%s' at op %" PRIu64
                  "); report:\n%s", config_names[id], run.ret, soak_outcome_name(run.r.outcome),
                  run.r.failing_op, excerpt(&run));
    ck_assert_msg(run.r.ops_run == run.c.ops && run.r.reads_compared > 0 &&
                      run.r.checks_run >= run.c.ops / run.c.check_every,
                  "config '%s': ran %" PRIu64 " ops, compared %" PRIu64 " reads, ran %" PRIu64
                  " checks", config_names[id], run.r.ops_run, run.r.reads_compared,
                  run.r.checks_run);
    run_free(&run);
}
END_TEST

static Suite *soak_suite(void)
{
    Suite *s = suite_create("soak");
    TCase *twins = tcase_create("fault-free twins");
    tcase_set_timeout(twins, 120);
    tcase_add_loop_test(twins, each_configuration_passes_without_a_fault, 0, CONFIGS);
    suite_add_tcase(s, twins);
    TCase *faults = tcase_create("injected faults");
    tcase_set_timeout(faults, 120);
    tcase_add_test(faults, a_dropped_data_write_is_caught);
    tcase_add_test(faults, a_data_write_in_the_wrong_cluster_is_caught);
    tcase_add_test(faults, a_bit_flipped_on_read_is_caught);
    tcase_add_test(faults, a_stale_l2_table_is_caught);
    tcase_add_test(faults, a_lost_refcount_update_is_caught_as_a_leak);
    tcase_add_test(faults, a_corruption_only_qemu_img_sees_is_caught);
    tcase_add_test(faults, a_wrong_snapshot_apply_is_caught);
    tcase_add_test(faults, a_flush_that_did_nothing_is_caught);
    tcase_add_test(faults, damage_outside_a_crash_slice_is_found_later_and_named);
    tcase_add_test(faults, a_snapshot_table_that_differs_from_what_was_made_is_caught);
    tcase_add_test(faults, payloads_name_their_op_and_sector_and_many_compress);
    suite_add_tcase(s, faults);
    TCase *ending = tcase_create("how a run ends");
    tcase_set_timeout(ending, 120);
    tcase_add_test(ending, ops_and_seconds_both_limit_a_run);
    tcase_add_test(ending, a_heartbeat_line_reports_progress_off_a_terminal);
    tcase_add_test(ending, sigint_stops_the_run_after_the_current_op);
    tcase_add_test(ending, a_full_disk_is_an_environment_failure_not_a_bug);
    tcase_add_test(ending, a_crash_of_the_target_is_reported_as_a_bug);
    tcase_add_test(ending, skipped_and_refused_ops_are_noted_in_the_trace);
    suite_add_tcase(s, ending);
    TCase *traces = tcase_create("traces and run directories");
    tcase_add_test(traces, a_trace_that_cannot_be_replayed_is_refused_with_its_line);
    tcase_add_test(traces, a_trace_cut_short_by_nul_bytes_is_read_up_to_them);
    tcase_add_test(traces, a_directory_in_use_is_refused_naming_its_holder);
    tcase_add_test(traces, only_what_qvet_wrote_is_ever_removed);
    suite_add_tcase(s, traces);
    return s;
}

int main(void)
{
    /* The soak flushes often: a disk-backed /tmp would make this suite crawl. */
    if (!getenv("TMPDIR") && access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 0);
    return test_run_suite(soak_suite());
}
