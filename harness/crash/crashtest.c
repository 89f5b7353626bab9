/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet crashtest: the workload, the crashed images built from its log, their judges. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash.h"
#include "io_record.h"
#include "oracle.h"
#include "qcow2.h"
#include "step.h"
#include "target.h"
#include "torn.h"

extern char **environ;

#define SECTOR 512u
#define MAX_SNAPSHOTS 4
#define EXHAUSTIVE_WRITES 3         /* intervals this short get every subset */

/* ---- configurations ------------------------------------------------------------------ */

#define MIX_PLAIN "write=50,zero=8,zero-unmap=4,discard=6,write-compressed=0,flush=14," \
                  "snapshot-create=0,snapshot-apply=0,snapshot-delete=0"

const struct crash_preset crash_presets[] = {
    { "default", "", false, NULL, 4u << 20, "qemu-img's defaults, the whole mix" },
    { "cluster-4k-rc1", "cluster_size=4k,refcount_bits=1", false, NULL, 1u << 20,
      "4 KiB clusters, 1-bit refcounts" },
    { "cluster-4k-rc64", "cluster_size=4k,refcount_bits=64", false, NULL, 1u << 20,
      "4 KiB clusters, 64-bit refcounts" },
    { "cluster-512-rc1", "cluster_size=512,refcount_bits=1", false, MIX_PLAIN, 512u << 10,
      "512 B clusters, 1-bit refcounts (many L2 tables)" },
    { "cluster-512-rc64", "cluster_size=512,refcount_bits=64", false, MIX_PLAIN, 2u << 20,
      "512 B clusters, 64-bit refcounts (refcount blocks, reftable growth)" },
    { "lazy", "lazy_refcounts=on", false, NULL, 4u << 20, "lazy refcounts (a dirty image)" },
    { "extended-l2", "extended_l2=on", false, NULL, 4u << 20, "extended L2 entries" },
    /*
     * Without a dirty bit, a crash inside a snapshot operation on a version 2 image can
     * leave COPIED flags that disagree with the refcounts (as in QEMU): no snapshots here.
     */
    { "compat-0.10", "compat=0.10", false,
      "snapshot-create=0,snapshot-apply=0,snapshot-delete=0", 4u << 20,
      "version 2 (no zero flag, no dirty bit), without snapshots" },
    { "backing", "", true, NULL, 4u << 20, "over a raw backing file" },
    { "snapshots", "", false, "snapshot-create=10,snapshot-delete=5,snapshot-apply=3", 4u << 20,
      "internal snapshots created, applied, deleted" },
    { "compressed", "", false, "write-compressed=30,write=30", 4u << 20,
      "compressed writes and overwrites of them" },
    { "discard", "", false, "discard=25,zero=20,zero-unmap=20,write=30", 4u << 20,
      "discards and zero writes" },
    { "resize", "", true, "resize=15", 4u << 20,
      "grows and shrinks over a raw backing file (below its end, then past it again)" },
};

const size_t crash_preset_count = sizeof(crash_presets) / sizeof(crash_presets[0]);

void crash_config_defaults(struct crash_config *c)
{
    memset(c, 0, sizeof(*c));
    c->seed = 1;
    c->ops = 40;
    c->size = 4u << 20;
    c->samples = 6;
    c->tears = 2;
    c->max_states = 400;
    c->only_state = -1;
    c->qemu = true;
    c->preset = "default";
    static const unsigned mix[OP_KINDS] = {
        [OP_WRITE] = 40, [OP_ZERO] = 8, [OP_ZERO_UNMAP] = 4, [OP_DISCARD] = 8,
        [OP_WRITE_COMPRESSED] = 6, [OP_FLUSH] = 14, [OP_SNAPSHOT_CREATE] = 3,
        [OP_SNAPSHOT_APPLY] = 1, [OP_SNAPSHOT_DELETE] = 2, [OP_RESIZE] = 3,
    };
    memcpy(c->weights, mix, sizeof(mix));
}

bool crash_config_preset(struct crash_config *c, const char *name)
{
    for (size_t i = 0; i < crash_preset_count; i++) {
        const struct crash_preset *p = &crash_presets[i];
        if (strcmp(p->name, name))
            continue;
        c->preset = p->name;
        snprintf(c->options, sizeof(c->options), "%s", p->options);
        c->backing = p->backing;
        c->size = p->size;
        if (p->weights) {
            struct soak_config s;
            memcpy(s.weights, c->weights, sizeof(s.weights));
            if (!soak_weights_parse(&s, p->weights))
                return false;
            memcpy(c->weights, s.weights, sizeof(s.weights));
        }
        return true;
    }
    return false;
}

/* ---- the workload -------------------------------------------------------------------- */

/* splitmix64: every choice reproducible from the seed. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static uint64_t below(uint64_t *state, uint64_t n)
{
    return n ? rng_next(state) % n : 0;
}

static enum op_kind pick_kind(const unsigned *weights, uint64_t *rng)
{
    unsigned total = 0;
    for (int k = 0; k < OP_KINDS; k++)
        total += weights[k];
    uint64_t x = below(rng, total);
    for (int k = 0; k < OP_KINDS; k++) {
        if (x < weights[k])
            return (enum op_kind)k;
        x -= weights[k];
    }
    return OP_WRITE;
}

/* Offsets and lengths on the boundaries where ordering matters: clusters, subclusters. */
static void pick_range(uint64_t *rng, uint64_t size, uint64_t cs, struct op *op)
{
    uint64_t clusters = size / cs;
    uint64_t sub = cs >= 16384 ? cs / 32 : SECTOR;
    uint64_t off = below(rng, clusters) * cs;
    switch (below(rng, 4)) {
    case 0: off += below(rng, cs / SECTOR) * SECTOR; break;
    case 1: off += below(rng, cs / sub) * sub; break;
    default: break;
    }
    static const unsigned scale[] = { 1, 2, 8 };
    uint64_t len;
    switch (below(rng, 6)) {
    case 0: len = SECTOR * (1 + below(rng, 8)); break;
    case 1: len = sub * (1 + below(rng, 3)); break;
    case 2: len = cs * scale[below(rng, 3)]; break;
    case 3: len = cs / 2 + SECTOR; break;
    default: len = cs; break;
    }
    if (len > (64u << 10) && len > cs)
        len = cs;
    if (off >= size)
        off = size > cs ? size - cs : 0;
    op->off = off;
    op->len = len < size - off ? len : size - off;
}

static int parse_script(const char *script, struct op **ops, size_t *n, char *errbuf,
                        size_t errlen)
{
    char *copy = strdup(script);
    size_t cap = 16;
    *ops = calloc(cap, sizeof(**ops));
    *n = 0;
    if (!copy || !*ops) {
        free(copy);
        snprintf(errbuf, errlen, "out of memory");
        return -ENOMEM;
    }
    char *save = NULL;
    for (char *item = strtok_r(copy, ";\n", &save); item; item = strtok_r(NULL, ";\n", &save)) {
        while (*item == ' ')
            item++;
        size_t end = strlen(item);
        while (end && item[end - 1] == ' ')
            item[--end] = '\0';
        if (!*item)
            continue;
        if (*n == cap) {
            struct op *grown = realloc(*ops, 2 * cap * sizeof(**ops));
            if (!grown)
                break;
            *ops = grown;
            cap *= 2;
        }
        char line[256];
        snprintf(line, sizeof(line), "%zu %s", *n + 1, item);
        if (!op_parse(line, &(*ops)[*n])) {
            snprintf(errbuf, errlen, "--script: not an operation: \"%.60s\" (e.g. \"write 0 "
                     "65536\", \"flush\", \"snapshot-create s1\")", item);
            free(copy);
            free(*ops);
            *ops = NULL;
            return -EINVAL;
        }
        (*n)++;
    }
    free(copy);
    if (!*n) {
        snprintf(errbuf, errlen, "--script: no operations");
        free(*ops);
        *ops = NULL;
        return -EINVAL;
    }
    return 0;
}

int crash_workload(const struct crash_config *c, uint64_t cs, struct op **ops, size_t *n,
                   char *errbuf, size_t errlen)
{
    if (c->script[0])
        return parse_script(c->script, ops, n, errbuf, errlen);
    *ops = calloc(c->ops ? c->ops : 1, sizeof(**ops));
    if (!*ops) {
        snprintf(errbuf, errlen, "out of memory");
        return -ENOMEM;
    }
    uint64_t rng = c->seed;
    unsigned snapshots = 0, next_name = 1;
    uint64_t size = c->size;            /* the disk's size as the resizes so far left it */
    for (uint32_t i = 0; i < c->ops; i++) {
        struct op *op = &(*ops)[i];
        op->n = i + 1;
        op->kind = pick_kind(c->weights, &rng);
        /* Ids are the engine's: 1, 2, ... in creation order, which the generator mirrors. */
        if ((op->kind == OP_SNAPSHOT_APPLY || op->kind == OP_SNAPSHOT_DELETE) && !snapshots)
            op->kind = OP_SNAPSHOT_CREATE;
        if (op->kind == OP_SNAPSHOT_CREATE && snapshots == MAX_SNAPSHOTS)
            op->kind = OP_SNAPSHOT_DELETE;
        switch (op->kind) {
        case OP_SNAPSHOT_CREATE:
            snprintf(op->snapshot, sizeof(op->snapshot), "s%" PRIu32, op->n);
            snapshots++;
            next_name++;
            break;
        case OP_SNAPSHOT_APPLY:
        case OP_SNAPSHOT_DELETE:
            /* Resolved when it runs: the oracle knows which ids exist (see run_workload). */
            snprintf(op->snapshot, sizeof(op->snapshot), "#%" PRIu64, below(&rng, snapshots));
            if (op->kind == OP_SNAPSHOT_DELETE)
                snapshots--;
            break;
        case OP_WRITE_COMPRESSED:
            pick_range(&rng, size, cs, op);
            op->off = op->off / cs * cs;
            op->len = cs;
            break;
        case OP_FLUSH:
            break;
        case OP_RESIZE:
            /*
             * From one cluster to twice the first size, shrinks and grows, below written
             * data and the backing file's end; one in four into the middle of a cluster
             * (whose bytes past the end a later grow shows again).
             */
            size = cs * (1 + below(&rng, 2 * c->size / cs));
            if (!below(&rng, 4))
                size -= SECTOR * below(&rng, cs / SECTOR);
            op->len = size;
            break;
        default:
            pick_range(&rng, size, cs, op);
            break;
        }
    }
    *n = c->ops;
    (void)next_name;
    return 0;
}

/* ---- running the workload under the recorder ------------------------------------------ */

/* What one op did, as far as the judges need it. */
struct op_record {
    struct op op;
    enum step_outcome outcome;
    size_t ev_start, ev_end;        /* its host events: [ev_start, ev_end) of the log */
    uint64_t lo, hi;                /* guest sectors it may have changed: [lo, hi) */
    uint8_t *after;                 /* what they held after it, (hi - lo) sectors */
    bool dropped;                   /* a shrink: [lo, hi) may also show the backing file */
    uint64_t size_after;            /* the disk's size after it */
    uint8_t *flushed;               /* a completed flush: the whole disk after it */
    char snapshot_id[TARGET_ID_MAX]; /* create: the id; delete: the id removed */
    uint8_t *snapshot;              /* create: the snapshot's contents */
    uint64_t snapshot_size;
};

struct run {
    const struct crash_config *c;
    struct crash_result *r;
    FILE *out;
    struct io_record rec;
    uint64_t size, cluster_size;    /* size: the disk's before the first op */
    uint64_t cap;                   /* the largest disk the workload can make */
    struct op_record *ops;
    size_t n_ops;
    uint8_t *initial;               /* the disk before the first op (cap bytes, zeros past) */
    char image[700], state_path[700], raw_path[700], log_path[700], base_path[700];
    uint8_t *got;                   /* one disk */
};

static struct qcow2_backend *record_hook(struct qcow2_backend *file, void *ctx)
{
    struct run *run = ctx;
    return io_record_wrap(file, &run->rec);
}

/* The backing file: a raw file with a pattern over its first three quarters. */
static int make_backing(struct run *run)
{
    snprintf(run->base_path, sizeof(run->base_path), "%s/base.raw", run->c->dir);
    int fd = open(run->base_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return crash_setup_failed(&run->r->found, "%s: %s", run->base_path, strerror(errno));
    /* Made before the image, whose facts give run->size: the configured size. */
    uint64_t len = run->c->size / 4 * 3 / SECTOR * SECTOR;
    uint8_t sector[SECTOR];
    int ret = 0;
    for (uint64_t off = 0; off < len && !ret; off += SECTOR) {
        memset(sector, 0xb0 + (int)(off / SECTOR % 15), sizeof(sector));
        memcpy(sector, &off, sizeof(off));
        ret = pwrite(fd, sector, SECTOR, (off_t)off) == SECTOR ? 0 : -1;
    }
    if (close(fd) || ret)
        return crash_setup_failed(&run->r->found, "%s: %s", run->base_path, strerror(errno));
    return 0;
}

/* Reads the first len bytes of a file into buf (zeros past its end); *file_size its size. */
static int read_file(const char *path, uint8_t *buf, uint64_t len, uint64_t *file_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    memset(buf, 0, len);
    struct stat st;
    ssize_t n = fstat(fd, &st) ? -1 : pread(fd, buf, len, 0);
    int ret = n < 0 ? -errno : 0;
    if (!ret && file_size)
        *file_size = (uint64_t)st.st_size;
    close(fd);
    return ret;
}

void crash_resolve_snapshot(const struct oracle *o, struct op *op)
{
    if (op->snapshot[0] != '#')
        return;
    uint32_t count = oracle_snapshot_count(o);
    uint32_t k = (uint32_t)strtoul(op->snapshot + 1, NULL, 10);
    const char *id = count ? oracle_snapshot_id(o, k % count) : NULL;
    snprintf(op->snapshot, sizeof(op->snapshot), "%s", id ? id : "none");
}

/* Keeps what the judges need about one op that ran: its range's new bytes, a flush's disk. */
static int remember_op(struct oracle *o, uint64_t size_before, struct op_record *rec)
{
    const struct op *op = &rec->op;
    rec->size_after = oracle_size(o);
    if (rec->outcome != STEP_DONE)
        return 0;
    uint64_t size = rec->size_after;
    switch (op->kind) {
    case OP_WRITE: case OP_ZERO: case OP_ZERO_UNMAP: case OP_DISCARD:
    case OP_WRITE_COMPRESSED:
        rec->lo = op->off / SECTOR;
        rec->hi = (op->off + op->len + SECTOR - 1) / SECTOR;
        break;
    case OP_SNAPSHOT_APPLY:
        rec->lo = 0;
        rec->hi = max_u64(size, size_before) / SECTOR;
        break;
    case OP_RESIZE:
        /*
         * A grow shows what the oracle says; a shrink drops the clusters past the new
         * end before it stores the size, so a crash in between may show the old size
         * with them unallocated: zeros, or the backing file's data.
         */
        rec->lo = min_u64(size, size_before) / SECTOR;
        rec->hi = max_u64(size, size_before) / SECTOR;
        rec->dropped = size < size_before;
        break;
    case OP_FLUSH:
        if (!(rec->flushed = malloc(size ? size : 1)))
            return -ENOMEM;
        return oracle_read(o, rec->flushed, size, 0);
    case OP_SNAPSHOT_CREATE: {
        const char *id = oracle_snapshot_id(o, oracle_snapshot_count(o) - 1);
        snprintf(rec->snapshot_id, sizeof(rec->snapshot_id), "%s", id);
        rec->snapshot_size = oracle_snapshot_size(o, id);
        if (!(rec->snapshot = malloc(rec->snapshot_size ? rec->snapshot_size : 1)))
            return -ENOMEM;
        return oracle_snapshot_read(o, id, rec->snapshot, rec->snapshot_size, 0);
    }
    case OP_SNAPSHOT_DELETE:
        snprintf(rec->snapshot_id, sizeof(rec->snapshot_id), "%s", op->snapshot);
        return 0;
    default:
        return 0;
    }
    size_t bytes = (size_t)(rec->hi - rec->lo) * SECTOR;
    if (!(rec->after = calloc(1, bytes ? bytes : 1)))
        return -ENOMEM;
    uint64_t end = min_u64(rec->hi * SECTOR, size);
    return end > rec->lo * SECTOR ? oracle_read(o, rec->after, end - rec->lo * SECTOR,
                                                rec->lo * SECTOR) : 0;
}

static int run_workload(struct run *run, const struct op *ops, size_t n)
{
    const struct crash_config *c = run->c;
    snprintf(run->image, sizeof(run->image), "%s/workload.qcow2", c->dir);
    unlink(run->image);
    if (c->backing && make_backing(run))
        return -1;
    struct target_hooks hooks = { .hook = record_hook, .hook_ctx = run };
    const struct target_params params = {
        .path = run->image,
        .size = c->size,
        .options = c->options,
        .backing = c->backing ? "base.raw" : NULL,
        .backing_format = c->backing ? "raw" : NULL,
        .hooks = &hooks,
    };
    char errbuf[2400];
    struct step st = { .max_snapshots = MAX_SNAPSHOTS, .io_cap = 1u << 20 };
    if (target_create("qvet", &params, &st.t, errbuf, sizeof(errbuf)))
        return crash_setup_failed(&run->r->found, "%s", errbuf);
    int ret = step_start(&st);
    if (ret) {
        st.t->ops->close(st.t);
        return crash_setup_failed(&run->r->found, "the target's facts: %s", st.t->message);
    }
    run->size = st.facts.size;
    run->cap = run->size;
    for (size_t i = 0; i < n; i++)
        if (ops[i].kind == OP_RESIZE)
            run->cap = max_u64(run->cap, ops[i].len);
    run->initial = calloc(1, run->cap);
    st.buf = malloc(st.io_cap);
    st.want = malloc(st.io_cap);
    if (!run->initial || !st.buf || !st.want)
        ret = crash_setup_failed(&run->r->found, "out of memory");
    if (!ret && c->backing) {
        uint64_t len = run->c->size / 4 * 3 / SECTOR * SECTOR;
        if (len > run->size)
            len = run->size;
        ret = read_file(run->base_path, run->initial, len, NULL);
        if (ret)
            ret = crash_setup_failed(&run->r->found, "%s: %s", run->base_path, strerror(-ret));
    }
    if (!ret && oracle_create_mem(run->size, run->initial, run->size, &st.facts.oracle, &st.o,
                                  errbuf, sizeof(errbuf)))
        ret = crash_setup_failed(&run->r->found, "oracle: %s", errbuf);
    run->ops = calloc(n ? n : 1, sizeof(*run->ops));
    if (!ret && !run->ops)
        ret = crash_setup_failed(&run->r->found, "out of memory");
    for (size_t i = 0; i < n && !ret; i++) {
        struct op_record *rec = &run->ops[i];
        rec->op = ops[i];
        crash_resolve_snapshot(st.o, &rec->op);
        rec->ev_start = run->rec.count;
        uint64_t size_before = oracle_size(st.o);
        struct step_result sr;
        rec->outcome = step_run(&st, &rec->op, &sr);
        rec->ev_end = run->rec.count;
        run->n_ops = i + 1;
        char line[128];
        op_format(&rec->op, line, sizeof(line));
        if (rec->outcome != STEP_DONE && rec->outcome != STEP_SKIPPED &&
            rec->outcome != STEP_REFUSED) {
            ret = crash_setup_failed(&run->r->found, "the workload itself failed at op %s: %s", line,
                               st.t->message[0] ? st.t->message : "a read differed");
            break;
        }
        if (run->rec.error)
            ret = crash_setup_failed(&run->r->found, "the recorder: %s", strerror(-run->rec.error));
        else if (remember_op(st.o, size_before, rec))
            ret = crash_setup_failed(&run->r->found, "out of memory keeping op %s", line);
    }
    st.t->ops->close(st.t);
    if (st.o)
        oracle_close(st.o);
    free(st.buf);
    free(st.want);
    run->cluster_size = st.facts.oracle.cluster_size;
    return ret;
}

/* ---- external judges ------------------------------------------------------------------ */

int crash_run_tool(const char *log_path, char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int ret = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (ret)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The first line of the tool's log that says something, for a reason. */
static void log_excerpt(const char *log_path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(log_path, "r");
    char line[300];
    while (f && fgets(line, sizeof(line), f)) {
        if (strstr(line, "ERROR") || strstr(line, "rror") || strstr(line, "corrupt")) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, cap, "%s", line);
            break;
        }
    }
    if (f)
        fclose(f);
}

/* ---- judging one crashed image -------------------------------------------------------- */

/* What the judges expect of a state built from interval `w`. */
struct expectation {
    const uint8_t *flushed;         /* the disk at the last completed guest flush */
    uint64_t flushed_size;          /* its size */
    size_t first_op, end_op;        /* ops after that flush that may have written: [,) */
    size_t flush_op;                /* that flush's op index + 1 (0: none, the start) */
};

void crash_note(struct crash_findings *f, FILE *out, const char *where, uint64_t at,
                const char *kind, const char *fmt, ...)
{
    f->failures_total++;
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (out)
        fprintf(out, "qvet %s %" PRIu64 ": %s: %s\n", where, at, kind, reason);
    if (f->n_failures < CRASH_MAX_FAILURES) {
        struct crash_failure *x = &f->failures[f->n_failures++];
        x->state = at;
        x->kind = kind;
        snprintf(x->reason, sizeof(x->reason), "%s", reason);
    }
}

int crash_setup_failed(struct crash_findings *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->setup_error, sizeof(f->setup_error), fmt, ap);
    va_end(ap);
    return -1;
}

static bool sector_allowed(const struct run *run, const struct expectation *x, uint64_t s,
                           const uint8_t *got, bool *touched)
{
    *touched = false;
    if (s < x->flushed_size / SECTOR && !memcmp(got, x->flushed + s * SECTOR, SECTOR))
        return true;
    for (size_t i = x->first_op; i < x->end_op; i++) {
        const struct op_record *o = &run->ops[i];
        if (!o->after || s < o->lo || s >= o->hi)
            continue;
        *touched = true;
        if (!memcmp(got, o->after + (s - o->lo) * SECTOR, SECTOR))
            return true;
        if (o->dropped && run->c->backing && !memcmp(got, run->initial + s * SECTOR, SECTOR))
            return true;
    }
    return false;
}

/*
 * A resize and a snapshot apply store the new size in the header, written through: a
 * crash shows the size at the flush or one that an op since gave the disk.
 */
static bool size_allowed(const struct run *run, const struct expectation *x, uint64_t size)
{
    if (size == x->flushed_size)
        return true;
    for (size_t i = x->first_op; i < x->end_op; i++) {
        const struct op_record *o = &run->ops[i];
        if ((o->op.kind == OP_RESIZE || o->op.kind == OP_SNAPSHOT_APPLY) &&
            o->outcome == STEP_DONE && o->size_after == size)
            return true;
    }
    return false;
}

/*
 * Holds a disk of `size` bytes read back by one reader against the expectation; false
 * when it failed.
 */
static bool judge_disk(struct run *run, const struct expectation *x, uint64_t state,
                       const char *reader, uint64_t size)
{
    if (!size_allowed(run, x, size)) {
        uint64_t lost = size > x->flushed_size ? size - x->flushed_size
                                               : x->flushed_size - size;
        run->r->lost_bytes += lost;
        crash_note(&run->r->found, run->out, "crashtest: state", state, "lost-flushed-bytes",
                   "read through %s, the disk is %" PRIu64 " bytes: neither the %" PRIu64
                   " of %s nor a size an op since gave it", reader, size, x->flushed_size,
                   x->flush_op ? "the last completed guest flush" : "the initial image");
        return false;
    }
    uint64_t lost = 0, bad = 0, first_lost = UINT64_MAX, first_bad = UINT64_MAX;
    for (uint64_t s = 0; s < size / SECTOR; s++) {
        bool touched;
        if (sector_allowed(run, x, s, run->got + s * SECTOR, &touched))
            continue;
        if (touched) {
            bad++;
            first_bad = first_bad < s ? first_bad : s;
        } else {
            lost += SECTOR;
            first_lost = first_lost < s ? first_lost : s;
        }
    }
    run->r->lost_bytes += lost;
    run->r->bad_sectors += bad;
    if (lost)
        crash_note(&run->r->found, run->out, "crashtest: state", state, "lost-flushed-bytes",
                    "read through %s, %" PRIu64 " bytes flushed by %s differ, the first at "
                    "guest sector %" PRIu64, reader, lost,
                    x->flush_op ? "a completed guest flush" : "the initial image", first_lost);
    if (bad)
        crash_note(&run->r->found, run->out, "crashtest: state", state, "bad-unflushed-sector",
                    "read through %s, %" PRIu64 " sectors written since the last flush hold "
                    "neither their old nor their new data, the first at guest sector %" PRIu64,
                    reader, bad, first_bad);
    return !lost && !bad;
}

int crash_qvet_read(const char *path, const char *snapshot, uint8_t *buf, uint64_t len,
                    uint64_t *disk_size, struct qcow2_error *err)
{
    struct qcow2_open_options o = { .no_locks = true, .snapshot = snapshot };
    struct qcow2_image *img;
    int ret = qcow2_open(path, &o, &img, err);
    if (ret)
        return ret;
    uint64_t size = qcow2_virtual_size(img);
    if (disk_size)
        *disk_size = size;
    memset(buf, 0, len);
    ret = qcow2_pread(img, buf, size < len ? size : len, 0, err);
    qcow2_close(img);
    return ret;
}

/* Keeps the first error qvet's check reports (leaks are no failure). */
static void first_line(void *ctx, const char *line)
{
    char *buf = ctx;
    if (!buf[0] && strncmp(line, "Leaked", 6))
        snprintf(buf, 300, "%s", line);
}

int crash_judge_structure(const char *path, const char *log_path, bool qemu, bool *leaks,
                          char *reason, size_t cap)
{
    struct qcow2_error err;
    struct qcow2_image *img;
    struct qcow2_open_options rw = { .writable = true, .no_locks = true };
    *leaks = false;
    int ret = qcow2_open(path, &rw, &img, &err);
    if (ret) {
        snprintf(reason, cap, "qvet cannot open it read-write: %s", err.message);
        return 1;
    }
    qcow2_close(img);
    struct qcow2_open_options co = { .for_check = true, .no_locks = true };
    struct qcow2_check_result cr;
    char finding[300] = "";
    ret = qcow2_open(path, &co, &img, &err);
    if (!ret) {
        ret = qcow2_check(img, QCOW2_REPAIR_NONE, &cr, first_line, finding, &err);
        qcow2_close(img);
    }
    if (ret || cr.corruptions || cr.check_errors) {
        snprintf(reason, cap, "qvet check: %s", ret ? err.message : finding);
        return 1;
    }
    *leaks = cr.leaks != 0;
    if (!qemu)
        return 0;
    char *check[] = { "qemu-img", "check", "-f", "qcow2", (char *)path, NULL };
    int status = crash_run_tool(log_path, check);
    if (status == 0 || status == 3) {
        *leaks |= status == 3;
        return 0;
    }
    char excerpt[300];
    log_excerpt(log_path, excerpt, sizeof(excerpt));
    snprintf(reason, cap, "qemu-img check exits %d: %s", status, excerpt);
    return 1;
}

/* The structure judges, counted. */
static bool judge_structure(struct run *run, uint64_t state, bool *leaks)
{
    char reason[400];
    if (!crash_judge_structure(run->state_path, run->log_path, run->c->qemu, leaks, reason,
                               sizeof(reason)))
        return true;
    run->r->corruptions++;
    crash_note(&run->r->found, run->out, "crashtest: state", state, "crash-state-corruption", "%s", reason);
    return false;
}

/* Reads the disk (or a snapshot) through qemu-img convert into run->got; *size its size. */
static bool qemu_read_all(struct run *run, const char *snapshot_id, uint64_t *size)
{
    char sel[64];
    snprintf(sel, sizeof(sel), "snapshot.id=%s", snapshot_id ? snapshot_id : "");
    char *plain[] = { "qemu-img", "convert", "-f", "qcow2", "-O", "raw", run->state_path,
                      run->raw_path, NULL };
    char *snap[] = { "qemu-img", "convert", "-f", "qcow2", "-l", sel, "-O", "raw",
                     run->state_path, run->raw_path, NULL };
    unlink(run->raw_path);
    if (crash_run_tool(run->log_path, snapshot_id ? snap : plain))
        return false;
    return read_file(run->raw_path, run->got, run->cap, size) == 0;
}

/* Every snapshot that existed at the flush, and no op since deleted, reads as it was. */
static bool judge_snapshots(struct run *run, const struct expectation *x, uint64_t state)
{
    bool ok = true;
    for (size_t i = 0; i < x->flush_op; i++) {
        const struct op_record *o = &run->ops[i];
        if (!o->snapshot)
            continue;
        bool gone = false;
        for (size_t j = i + 1; j < x->end_op && !gone; j++)
            gone = run->ops[j].op.kind == OP_SNAPSHOT_DELETE &&
                   run->ops[j].outcome == STEP_DONE &&
                   !strcmp(run->ops[j].snapshot_id, o->snapshot_id);
        if (gone)
            continue;
        /*
         * Both readers give a snapshot the active disk's size (as QEMU's snapshot load
         * does): what both define, the snapshot and the read, is judged.
         */
        struct expectation sx = { .flushed = o->snapshot, .flush_op = x->flush_op };
        struct qcow2_error err;
        uint64_t size;
        if (crash_qvet_read(run->state_path, o->snapshot_id, run->got, run->cap, &size, &err)) {
            run->r->lost_bytes += o->snapshot_size;
            crash_note(&run->r->found, run->out, "crashtest: state", state, "lost-flushed-bytes", "snapshot %s, flushed, is gone for "
                        "qvet: %s", o->snapshot_id, err.message);
            ok = false;
            continue;
        }
        char reader[64];
        snprintf(reader, sizeof(reader), "qvet (snapshot %s)", o->snapshot_id);
        sx.flushed_size = min_u64(size, o->snapshot_size);
        ok &= judge_disk(run, &sx, state, reader, sx.flushed_size);
        if (!run->c->qemu)
            continue;
        if (!qemu_read_all(run, o->snapshot_id, &size)) {
            run->r->lost_bytes += o->snapshot_size;
            crash_note(&run->r->found, run->out, "crashtest: state", state, "lost-flushed-bytes", "snapshot %s, flushed, cannot be "
                        "read by qemu-img convert", o->snapshot_id);
            ok = false;
            continue;
        }
        snprintf(reader, sizeof(reader), "QEMU (snapshot %s)", o->snapshot_id);
        sx.flushed_size = min_u64(size, o->snapshot_size);
        ok &= judge_disk(run, &sx, state, reader, sx.flushed_size);
    }
    return ok;
}

static int write_whole(const char *path, const uint8_t *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, bytes + done, len - done);
        if (n <= 0) {
            close(fd);
            return n < 0 ? -errno : -EIO;
        }
        done += (size_t)n;
    }
    return close(fd) ? -errno : 0;
}

/* Judges one crashed image; keeps the first failing one. Returns -1 on a setup failure. */
static int judge(struct run *run, const struct expectation *x, uint64_t state,
                 const uint8_t *bytes, size_t len, const char *what)
{
    struct crash_result *r = run->r;
    if (write_whole(run->state_path, bytes, len))
        return crash_setup_failed(&run->r->found, "%s: cannot write: %s", run->state_path, strerror(errno));
    r->states++;
    uint64_t failures_before = r->found.failures_total;
    bool leaks = false;
    if (judge_structure(run, state, &leaks)) {
        struct qcow2_error err;
        uint64_t size;
        if (crash_qvet_read(run->state_path, NULL, run->got, run->cap, &size, &err)) {
            r->corruptions++;
            crash_note(&run->r->found, run->out, "crashtest: state", state, "crash-state-corruption", "qvet cannot read it: %s",
                        err.message);
        } else {
            judge_disk(run, x, state, "qvet", size);
        }
        if (run->c->qemu) {
            if (!qemu_read_all(run, NULL, &size)) {
                r->corruptions++;
                crash_note(&run->r->found, run->out, "crashtest: state", state, "crash-state-corruption",
                            "qemu-img convert cannot read it");
            } else {
                judge_disk(run, x, state, "QEMU", size);
            }
        }
        judge_snapshots(run, x, state);
    }
    r->leaky_states += leaks;
    if (r->found.failures_total > failures_before) {
        if (run->out)
            fprintf(run->out, "qvet crashtest: state %" PRIu64 " was %s\n", state, what);
        if (!r->found.kept_image[0]) {
            snprintf(r->found.kept_image, sizeof(r->found.kept_image), "%s/crashed-%" PRIu64 ".qcow2",
                     run->c->dir, state);
            if (write_whole(r->found.kept_image, bytes, len))
                r->found.kept_image[0] = '\0';
        }
    }
    return 0;
}

/* ---- building the crashed images ------------------------------------------------------ */

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* One interval: the writes between two ordering points (flushes, truncates). */
struct interval {
    size_t first, end;              /* its writes: events [first, end) */
    struct expectation x;
    uint64_t *seen;                 /* hashes of the images judged for it */
    size_t n_seen;
    uint64_t judged, budget;        /* its share of --max-states */
};

static void expect_for(const struct run *run, size_t end_event, bool at_end, struct expectation *x)
{
    size_t flush = 0;
    for (size_t i = 0; i < run->n_ops; i++)
        if (run->ops[i].flushed && (at_end || run->ops[i].ev_end <= end_event))
            flush = i + 1;
    x->flush_op = flush;
    x->flushed = flush ? run->ops[flush - 1].flushed : run->initial;
    x->flushed_size = flush ? run->ops[flush - 1].size_after : run->size;
    x->first_op = flush;
    x->end_op = flush;
    for (size_t i = flush; i < run->n_ops; i++)
        if (at_end || run->ops[i].ev_start < end_event)
            x->end_op = i + 1;
}

/* A crashed image being built in memory, as torn.h's file. */
struct image_buf {
    uint8_t **bytes;
    size_t *len;
};

static int image_buf_read(void *ctx, void *buf, size_t len, uint64_t off)
{
    const struct image_buf *b = ctx;
    size_t have = off < *b->len ? *b->len - (size_t)off : 0;
    size_t n = len < have ? len : have;
    if (n)
        memcpy(buf, *b->bytes + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

static int image_buf_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
    struct image_buf *b = ctx;
    struct io_record_event e = { IO_RECORD_WRITE, off, len, (uint8_t *)buf };
    return io_record_apply(&e, len, b->bytes, b->len);
}

/*
 * Lands the writes of interval `iv` marked in `lands` (write `torn` only its first
 * `torn_len` bytes) on the image in *img, sector by sector as a power cut does (torn.h).
 */
static int land(const struct run *run, const struct interval *iv, const uint8_t *lands,
                size_t torn, size_t torn_len, uint8_t **img, size_t *len)
{
    size_t n = iv->end - iv->first;
    struct torn_write *w = malloc((n ? n : 1) * sizeof(*w));
    if (!w)
        return -ENOMEM;
    for (size_t k = 0; k < n; k++) {
        const struct io_record_event *e = &run->rec.events[iv->first + k];
        size_t keep = iv->first + k == torn ? torn_len : lands[k] ? e->len : 0;
        w[k] = (struct torn_write){ e->off, e->len, e->data, keep };
    }
    struct image_buf b = { img, len };
    struct torn_file file = { image_buf_read, image_buf_write, *len, &b };
    int ret = torn_land(w, n, &file);
    free(w);
    return ret;
}

/*
 * Builds the state of interval `iv` where the writes marked in `lands` reached the disk
 * (write `torn`, if not SIZE_MAX, only its first `torn_len` bytes) over `durable`, and
 * judges it unless an identical image was judged for this interval.
 */
static int build_and_judge(struct run *run, struct interval *iv, const uint8_t *durable,
                           size_t durable_len, const uint8_t *lands, size_t torn,
                           size_t torn_len, uint64_t *state, const char *what)
{
    uint64_t number = (*state)++;
    if (run->c->only_state >= 0 && number != (uint64_t)run->c->only_state)
        return 0;
    if (run->c->max_states &&
        (run->r->states >= run->c->max_states || iv->judged >= iv->budget)) {
        run->r->bounded = true;
        return 0;
    }
    size_t len = durable_len;
    uint8_t *img = malloc(len ? len : 1);
    if (!img)
        return crash_setup_failed(&run->r->found, "out of memory");
    memcpy(img, durable, len);
    int ret = land(run, iv, lands, torn, torn_len, &img, &len);
    run->r->states_built++;
    uint64_t h = fnv1a(img, len);
    bool dup = false;
    for (size_t i = 0; i < iv->n_seen && !dup; i++)
        dup = iv->seen[i] == h;
    if (!ret && !dup) {
        uint64_t *grown = realloc(iv->seen, (iv->n_seen + 1) * sizeof(*grown));
        if (grown) {
            iv->seen = grown;
            iv->seen[iv->n_seen++] = h;
        }
        ret = judge(run, &iv->x, number, img, len, what);
        iv->judged++;
    }
    free(img);
    return ret;
}

static void describe(char *buf, size_t cap, const struct interval *iv, const uint8_t *lands,
                     size_t torn, size_t torn_len)
{
    size_t used = (size_t)snprintf(buf, cap, "host events up to %zu on disk; of writes %zu..%zu "
                                   "landed:", iv->first, iv->first, iv->end);
    for (size_t i = iv->first; i < iv->end && used < cap; i++)
        if (lands[i - iv->first] || i == torn)
            used += (size_t)snprintf(buf + used, cap - used, " %zu", i);
    if (torn != SIZE_MAX && used < cap)
        snprintf(buf + used, cap - used, " (write %zu torn after %zu bytes)", torn, torn_len);
}

static int explore_interval(struct run *run, struct interval *iv, const uint8_t *durable,
                            size_t durable_len, uint64_t *state)
{
    const struct crash_config *c = run->c;
    size_t k = iv->end - iv->first;
    uint8_t *lands = calloc(k ? k : 1, 1);
    char what[700];
    if (!lands)
        return crash_setup_failed(&run->r->found, "out of memory");
    uint64_t rng = c->seed ^ (0x5bd1e995ull * (iv->first + 1));
    describe(what, sizeof(what), iv, lands, SIZE_MAX, 0);
    int ret = build_and_judge(run, iv, durable, durable_len, lands, SIZE_MAX, 0, state, what);
    if (k && k <= EXHAUSTIVE_WRITES) {
        for (uint64_t mask = 1; mask + 1 < (1ull << k) && !ret; mask++) {
            for (size_t i = 0; i < k; i++)
                lands[i] = (mask >> i) & 1;
            describe(what, sizeof(what), iv, lands, SIZE_MAX, 0);
            ret = build_and_judge(run, iv, durable, durable_len, lands, SIZE_MAX, 0, state, what);
        }
    } else if (k) {
        for (unsigned s = 0; s < c->samples && !ret; s++) {
            for (size_t i = 0; i < k; i++)
                lands[i] = (uint8_t)below(&rng, 2);
            describe(what, sizeof(what), iv, lands, SIZE_MAX, 0);
            ret = build_and_judge(run, iv, durable, durable_len, lands, SIZE_MAX, 0, state, what);
        }
    }
    /* Torn writes: one write cut at a sector boundary, any subset of the others. */
    size_t tearable = 0;
    for (size_t i = iv->first; i < iv->end; i++)
        tearable += run->rec.events[i].len > SECTOR;
    for (unsigned t = 0; t < c->tears && tearable && !ret; t++) {
        size_t pick = (size_t)below(&rng, tearable), torn = SIZE_MAX;
        for (size_t i = iv->first; i < iv->end && torn == SIZE_MAX; i++)
            if (run->rec.events[i].len > SECTOR && !pick--)
                torn = i;
        size_t sectors = (run->rec.events[torn].len + SECTOR - 1) / SECTOR;
        size_t torn_len = (size_t)(1 + below(&rng, sectors - 1)) * SECTOR;
        for (size_t i = 0; i < k; i++)
            lands[i] = (uint8_t)below(&rng, 2);
        lands[torn - iv->first] = 0;
        describe(what, sizeof(what), iv, lands, torn, torn_len);
        ret = build_and_judge(run, iv, durable, durable_len, lands, torn, torn_len, state, what);
    }
    free(lands);
    return ret;
}

static int explore(struct run *run)
{
    const struct io_record *rec = &run->rec;
    size_t len = rec->initial_len;
    uint8_t *durable = malloc(len ? len : 1);
    if (!durable)
        return crash_setup_failed(&run->r->found, "out of memory");
    memcpy(durable, rec->initial, len);
    uint64_t state = 0;
    int ret = 0;
    size_t first = 0;
    /* A bound is shared out over the intervals, so that it cuts every one, not the end. */
    uint64_t intervals = 1;
    for (size_t i = 0; i < rec->count; i++)
        intervals += rec->events[i].kind != IO_RECORD_WRITE;
    uint64_t budget = run->c->max_states / intervals;
    for (size_t i = 0; i <= rec->count && !ret; i++) {
        bool at_end = i == rec->count;
        if (!at_end && rec->events[i].kind == IO_RECORD_WRITE)
            continue;
        struct interval iv = { .first = first, .end = i, .budget = budget ? budget : 1 };
        expect_for(run, i, at_end, &iv.x);
        run->r->intervals++;
        ret = explore_interval(run, &iv, durable, len, &state);
        free(iv.seen);
        /* Everything up to and including this ordering point is now on disk. */
        for (size_t j = first; j < i + !at_end && j < rec->count && !ret; j++)
            ret = io_record_apply(&rec->events[j], rec->events[j].len, &durable, &len);
        first = i + 1;
    }
    free(durable);
    return ret;
}

/* ---- the run -------------------------------------------------------------------------- */

static uint64_t cluster_size_of(const char *options)
{
    struct qcow2_create_options o;
    qcow2_create_options_init(&o);
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", options);
    struct qcow2_error err;
    if (options[0] && qcow2_create_options_parse(&o, copy, &err))
        return 65536;
    return o.cluster_size;
}

int crashtest_run(const struct crash_config *c, struct crash_result *r, FILE *out)
{
    memset(r, 0, sizeof(*r));
    struct run run = { .c = c, .r = r, .out = out };
    io_record_init(&run.rec);
    snprintf(run.state_path, sizeof(run.state_path), "%s/state.qcow2", c->dir);
    snprintf(run.raw_path, sizeof(run.raw_path), "%s/state.raw", c->dir);
    snprintf(run.log_path, sizeof(run.log_path), "%s/tool.log", c->dir);
    struct op *ops = NULL;
    size_t n = 0;
    char errbuf[600];
    int ret = crash_workload(c, cluster_size_of(c->options), &ops, &n, errbuf, sizeof(errbuf));
    if (ret)
        ret = crash_setup_failed(&run.r->found, "%s", errbuf);
    if (!ret)
        ret = run_workload(&run, ops, n);
    free(ops);
    r->ops = run.n_ops;
    r->events = run.rec.count;
    for (size_t i = 0; i < run.rec.count; i++) {
        r->writes += run.rec.events[i].kind == IO_RECORD_WRITE;
        r->flushes += run.rec.events[i].kind == IO_RECORD_FLUSH;
    }
    if (!ret && !(run.got = malloc(run.cap)))
        ret = crash_setup_failed(&run.r->found, "out of memory");
    if (!ret)
        ret = explore(&run);
    for (size_t i = 0; i < run.n_ops; i++) {
        free(run.ops[i].after);
        free(run.ops[i].flushed);
        free(run.ops[i].snapshot);
    }
    free(run.ops);
    free(run.initial);
    free(run.got);
    io_record_fini(&run.rec);
    unlink(run.state_path);
    unlink(run.raw_path);
    unlink(run.image);
    if (ret)
        return -1;
    unlink(run.log_path);
    return r->corruptions || r->lost_bytes || r->bad_sectors ? 1 : 0;
}
