/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The soak driver: generate (or replay) an operation, append it to the trace, apply it to
 * the target, mirror its guest-visible effect in the oracle, compare every read. Every
 * `check_every` operations and at the end: the target's own check, `qemu-img check`,
 * `qemu-img compare` against the oracle, and each snapshot against its oracle copy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "oracle.h"
#include "progress.h"
#include "soak.h"
#include "step.h"
#include "unflushed.h"

extern char **environ;

#define SECTOR 512u
#define MAX_IO SOAK_MAX_IO
#define MAX_SNAPSHOTS 8
#define RECENT 32
#define HISTORY_SHOWN 12
#define QVET_FILL_CLUSTERS 128

struct range {
    uint64_t off, len;
};

struct soak {
    const struct soak_config *c;
    struct soak_result *r;
    FILE *out;
    uint64_t rng[4];
    struct step step;               /* the target, the oracle, the facts, the buffers */
    unsigned weights[OP_KINDS];     /* the config's, without what the target cannot do */
    uint64_t initial_size;
    uint64_t backing_size;
    int backing_view_fd;            /* guest view of the backing chain, or -1 */
    char image[1024], trace_path[1024], backing_view[1024];
    int trace_fd;
    char *trace_map;                /* the trace file, mapped shared */
    size_t trace_cap, trace_used;
    struct range recent[RECENT];
    unsigned recent_count;
    struct progress progress;
    /* The snapshots made, as the image's table and `qemu-img snapshot -l` must list them. */
    struct target_snapshot made[MAX_SNAPSHOTS];
    unsigned n_made;
    bool crash_ops;                 /* the run has power cuts: the target keeps unflushed writes apart */
    struct op last;                 /* the op generated last */
    uint32_t cuts_generated;        /* crash ops generated: which slice the next compares */
    uint32_t whole_compared_after;  /* the op after which the disk was last compared whole */
    uint32_t sliced_cuts;           /* crash ops since then that compared a slice only */
    bool look_whole;                /* a read differed: the whole disk too, for the report */
};

/* ---- the generator ----------------------------------------------------------------- */

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct soak *s)
{
    uint64_t *r = s->rng;
    uint64_t result = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return result;
}

static uint64_t below(struct soak *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

static void rng_seed(struct soak *s, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        s->rng[i] = z ^ (z >> 31);
    }
}

static void remember(struct soak *s, uint64_t off, uint64_t len)
{
    s->recent[s->recent_count++ % RECENT] = (struct range){ off, len };
}

/* A small signed nudge around a boundary: where off-by-one bugs live. */
static int64_t nudge(struct soak *s)
{
    static const int64_t d[] = { 0, 0, 0, -1, 1, -512, 512, -4096, 4096, -100, 100 };
    return d[below(s, sizeof(d) / sizeof(d[0]))];
}

static uint64_t pick_offset(struct soak *s)
{
    const struct target_facts *f = &s->step.facts;
    uint64_t size = f->size;
    uint64_t cs = f->oracle.cluster_size;
    int64_t base;
    switch (below(s, 10)) {
    case 0: case 1:
        return below(s, size);
    case 2: case 3:
        base = (int64_t)(below(s, size / cs + 1) * cs) + nudge(s);
        break;
    case 4:
        base = (int64_t)(below(s, size / f->subcluster_size + 1) * f->subcluster_size) +
               nudge(s);
        break;
    case 5: {
        uint64_t l2 = cs * f->l2_coverage_clusters;
        base = (int64_t)(below(s, size / l2 + 1) * l2) + nudge(s);
        break;
    }
    case 6:
        base = (int64_t)size - (int64_t)below(s, 2 * cs + 1);
        break;
    case 7:
        base = s->backing_size ? (int64_t)s->backing_size + nudge(s) - (int64_t)below(s, cs)
                               : (int64_t)below(s, size);
        break;
    default:
        if (!s->recent_count)
            return below(s, size);
        struct range r = s->recent[below(s, s->recent_count < RECENT ? s->recent_count : RECENT)];
        base = (int64_t)r.off + (int64_t)below(s, r.len + 1) - (int64_t)below(s, 2);
        if (below(s, 2))
            base = (int64_t)r.off + nudge(s);
        break;
    }
    if (base < 0)
        base = 0;
    return (uint64_t)base >= size ? size - 1 : (uint64_t)base;
}

static uint64_t pick_length(struct soak *s, uint64_t off)
{
    uint64_t cs = s->step.facts.oracle.cluster_size, len;
    /* Now and then more than 64 clusters at once: where per-request arrays run out. */
    switch (below(s, 64) ? below(s, 10) : 10) {
    case 0: case 1: len = SECTOR * (1 + below(s, 8)); break;
    case 2: len = 4096; break;
    case 3: len = cs; break;
    case 4: len = 1 + below(s, 1024); break;
    case 5: len = cs * (1 + below(s, 3)) + below(s, 1024); break;
    case 6: len = s->step.facts.subcluster_size * (1 + below(s, 4)); break;
    case 10: len = cs * (65 + below(s, 16)) + below(s, 2) * below(s, cs); break;
    default: len = 1 + below(s, 2 * cs); break;
    }
    uint64_t room = s->step.facts.size - off;
    if (len > room)
        len = room;
    if (len > MAX_IO)
        len = MAX_IO;
    return len ? len : 1;
}

/*
 * A new disk size, whole clusters only (a partial last cluster would keep stale bytes
 * past a shrink): from the start as often smaller as larger. Smaller by a few clusters,
 * to just below the backing file's end, or to anywhere; larger by a few clusters or to
 * anywhere up to twice the first size (so that a disk shrunk far comes back, and the L1
 * table grows past what it ever held).
 */
static uint64_t pick_size(struct soak *s)
{
    uint64_t cs = s->step.facts.oracle.cluster_size;
    uint64_t now = (s->step.facts.size + cs - 1) / cs * cs;
    uint64_t top = 2 * s->initial_size / cs * cs;
    uint64_t few = cs * (1 + below(s, 4));
    if (now < top && (now <= few || below(s, 2))) {
        if (below(s, 2) && now + few <= top)
            return now + few;
        return now + cs * (1 + below(s, (top - now) / cs));
    }
    switch (below(s, 3)) {
    case 0:
        return now - few;
    case 1:
        if (s->backing_size > few && s->backing_size - few < now)
            return (s->backing_size - few) / cs * cs;
        return now - few;
    default:
        return cs * (1 + below(s, now / cs - 1));
    }
}

static enum op_kind pick_kind(struct soak *s)
{
    unsigned total = 0;
    for (int k = 0; k < OP_KINDS; k++)
        total += s->weights[k];
    uint64_t x = below(s, total ? total : 1);
    for (int k = 0; k < OP_KINDS; k++) {
        if (x < s->weights[k])
            return (enum op_kind)k;
        x -= s->weights[k];
    }
    return OP_READ;
}

/* The fill phase: op n writes the n-th stretch of 128 clusters, while below c->fill. */
static bool fill_op(struct soak *s, uint32_t n, struct op *op)
{
    uint64_t chunk = QVET_FILL_CLUSTERS * s->step.facts.oracle.cluster_size;
    if (chunk > MAX_IO)
        chunk = MAX_IO;
    uint64_t off = (uint64_t)(n - 1) * chunk;
    if (off >= s->c->fill || off >= s->step.facts.size)
        return false;
    op->kind = OP_WRITE;
    op->off = off;
    op->len = s->step.facts.size - off < chunk ? s->step.facts.size - off : chunk;
    return true;
}

/*
 * Op n was the fill's last. The fill exists to make the tables grow: what it left is
 * checked at once, before a crash, which forgives leaks, can cover one the growth left.
 */
static bool fill_ended(struct soak *s, uint32_t n)
{
    struct op unused;
    return fill_op(s, n, &unused) && !fill_op(s, n + 1, &unused);
}

/*
 * The ops that free clusters: a power cut right after one may find the refcount drop on
 * disk and the removal of the reference not (the engine orders them with a flush, lazy
 * refcounts excepted), until the next flush.
 */
static bool frees_clusters(enum op_kind k)
{
    return k == OP_DISCARD || k == OP_ZERO_UNMAP || k == OP_ZERO;
}

static bool writes_data(enum op_kind k)
{
    return k == OP_WRITE || k == OP_WRITE_COMPRESSED || frees_clusters(k);
}

static void generate(struct soak *s, uint32_t n, struct op *op)
{
    memset(op, 0, sizeof(*op));
    op->n = n;
    if (fill_op(s, n, op))
        return;
    /*
     * Over a backing file the first op reads the disk whole (up to the longest op): only
     * a disk as made has nothing allocated where reads cross the backing file's end. (A
     * fill ends with a cross-check, which reads it all.)
     */
    if (n == 1 && s->backing_size) {
        op->kind = OP_READ;
        op->len = s->step.facts.size < MAX_IO ? s->step.facts.size : MAX_IO;
        s->last = *op;
        return;
    }
    /*
     * The next write's allocation usually flushes, so a power cut drawn at random rarely
     * falls between a free and that flush: an eighth of the frees get one right after
     * (times the entry's crash boost).
     */
    unsigned boost = s->c->crash_boost ? s->c->crash_boost : 1;
    bool after_free = frees_clusters(s->last.kind) && s->weights[OP_TORN_POWER_CUT];
    op->kind = after_free && below(s, 8) < boost ? OP_TORN_POWER_CUT : pick_kind(s);
    /*
     * A quarter of the writes of any kind are read back at once: a cache that keeps what
     * a write replaced shows only to a read before something else displaces it.
     */
    if (op->kind != OP_TORN_POWER_CUT && writes_data(s->last.kind) && s->weights[OP_READ] &&
        !below(s, 4)) {
        op->kind = OP_READ;
        op->off = s->last.off;
        op->len = s->last.len;
        s->last = *op;
        return;
    }
    uint32_t n_snapshots = oracle_snapshot_count(s->step.o);
    if ((op->kind == OP_SNAPSHOT_APPLY || op->kind == OP_SNAPSHOT_DELETE) && !n_snapshots)
        op->kind = OP_SNAPSHOT_CREATE;
    if (op->kind == OP_SNAPSHOT_CREATE && n_snapshots == MAX_SNAPSHOTS)
        op->kind = OP_SNAPSHOT_DELETE;
    const char *why;
    if (op_kind_is_crash(op->kind) && s->step.unflushed &&
        !unflushed_modelled(s->step.unflushed, &why))
        op->kind = OP_FLUSH;        /* a flush first; a later power cut can be judged */
    uint64_t cs = s->step.facts.oracle.cluster_size;
    switch (op->kind) {
    case OP_POWER_CUT:
    case OP_DIRTY_REOPEN:
    case OP_TORN_POWER_CUT:
        /* The first cut compares the whole disk: a slice would leave the rest unproven. */
        if (s->cuts_generated++ && !s->c->crash_compare_whole) {
            op->compare_parts = SOAK_CRASH_SLICES;
            op->compare_part = (s->cuts_generated - 2) % SOAK_CRASH_SLICES + 1;
        }
        break;
    case OP_SNAPSHOT_CREATE: {
        /* Names of every length a trace can hold: where a name's padding goes wrong. */
        int len = snprintf(op->snapshot, sizeof(op->snapshot), "s%" PRIu32, n);
        size_t want = 1 + below(s, sizeof(op->snapshot) - 1);
        for (size_t i = (size_t)len; i < want; i++)
            op->snapshot[i] = (char)('a' + (n + i) % 26);
        op->snapshot[want] = '\0';
        break;
    }
    case OP_SNAPSHOT_APPLY:
    case OP_SNAPSHOT_DELETE:
        strcpy(op->snapshot, oracle_snapshot_id(s->step.o, (uint32_t)below(s, n_snapshots)));
        break;
    case OP_RESIZE:
        op->len = pick_size(s);
        break;
    case OP_WRITE_COMPRESSED:
        op->off = pick_offset(s) / cs * cs;
        op->len = cs * (1 + below(s, 2));
        if (op->off + op->len > s->step.facts.size)
            op->len = s->step.facts.size - op->off;
        break;
    default:
        if (op->kind > OP_WRITE_COMPRESSED)
            break;
        if (s->c->io_size) {
            op->off = below(s, s->step.facts.size / s->c->io_size) * s->c->io_size;
            op->len = s->c->io_size;
            /* A quarter of them go back to a recent range, half of those the latest. */
            if (s->recent_count && !below(s, 4)) {
                unsigned kept = s->recent_count < RECENT ? s->recent_count : RECENT;
                unsigned i = below(s, 2) ? (s->recent_count - 1) % RECENT
                                         : (unsigned)below(s, kept);
                op->off = s->recent[i].off / s->c->io_size * s->c->io_size;
            }
        } else {
            op->off = pick_offset(s);
            op->len = pick_length(s, op->off);
        }
        break;
    }
    s->last = *op;
}

/* ---- running external tools ------------------------------------------------------- */

/*
 * Runs argv with stdout and stderr going to `log`; returns the exit status, 128 + the
 * signal that ended it, or -errno when it could not be started or waited for.
 */
static int run_tool(const char *log, char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int ret = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (ret)
        return -ret;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool on_path(const char *name)
{
    const char *path = getenv("PATH");
    char candidate[4096];
    for (const char *p = path ? path : ""; *p;) {
        size_t len = strcspn(p, ":");
        snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)len, len ? p : ".", name);
        if (access(candidate, X_OK) == 0)
            return true;
        p += len + (p[len] == ':');
    }
    return false;
}

bool soak_tools_available(const struct soak_config *c, char *errbuf, size_t errlen)
{
    bool backing = c->backing != BACKING_NONE;
    const char *missing = NULL, *why = NULL;
    if ((c->qemu_checks || backing) && !on_path("qemu-img")) {
        missing = "qemu-img";
        why = backing ? "it makes the backing files" : "it runs the check and compare "
              "cross-checks (--no-qemu-checks runs without them)";
    } else if (backing && !on_path("qemu-io")) {
        missing = "qemu-io";
        why = "it writes the backing files' data";
    }
    if (missing)
        snprintf(errbuf, errlen, "%s not found on PATH: %s; install qemu-utils", missing, why);
    return !missing;
}

/* The first lines of a tool's log, indented, into the report. */
static void show_log(struct soak *s, const char *log, int max_lines)
{
    FILE *f = fopen(log, "r");
    char line[512];
    for (int i = 0; f && i < max_lines && fgets(line, sizeof(line), f); i++)
        fprintf(s->out, "    %s", line);
    if (f)
        fclose(f);
}

/* ---- reporting --------------------------------------------------------------------- */

static void hexdump_sector(FILE *out, const uint8_t *p, const uint8_t *other)
{
    for (unsigned line = 0; line < SECTOR; line += 16) {
        bool differs = memcmp(p + line, other + line, 16) != 0;
        if (line >= 64 && !differs)
            continue;
        fprintf(out, "    %03x:%s", line, differs ? "*" : " ");
        for (unsigned i = 0; i < 16; i++)
            fprintf(out, " %02x", p[line + i]);
        fprintf(out, "  |");
        for (unsigned i = 0; i < 16; i++)
            fputc(p[line + i] >= 0x20 && p[line + i] < 0x7f ? p[line + i] : '.', out);
        fprintf(out, "|\n");
    }
}

static void describe_op(const struct op *op, char *buf, size_t cap)
{
    char line[128];
    op_format(op, line, sizeof(line));
    const char *rest = strchr(line, ' ');
    snprintf(buf, cap, "%s", rest ? rest + 1 : line);
}

static bool op_touches(const struct op *op, uint64_t sector)
{
    uint64_t first = op->off / SECTOR, last = (op->off + op->len - 1) / SECTOR;
    switch (op->kind) {
    case OP_WRITE: case OP_ZERO: case OP_ZERO_UNMAP: case OP_DISCARD: case OP_WRITE_COMPRESSED:
        return op->len && sector >= first && sector <= last;
    case OP_SNAPSHOT_APPLY: case OP_RESIZE: case OP_POWER_CUT: case OP_DIRTY_REOPEN:
    case OP_TORN_POWER_CUT:
        return true;
    default:
        return false;
    }
}

/* Provenance and history of one sector, from the oracle and the trace on disk. */
static void report_sector_history(struct soak *s, uint64_t sector)
{
    struct soak_config c;
    struct op *ops = NULL;
    size_t n = 0;
    char errbuf[256];
    uint32_t author = oracle_sector_author(s->step.o, sector);
    if (soak_trace_load(s->trace_path, &c, &ops, &n, NULL, errbuf, sizeof(errbuf)))
        n = 0;
    char what[160];
    if (author == ORACLE_NO_OP) {
        fprintf(s->out, "  sector %" PRIu64 " has not been written in this run: it holds the "
                "image's initial contents (%s)\n", sector,
                s->backing_view_fd >= 0 ? "the backing file's data" : "zeros");
    } else {
        snprintf(what, sizeof(what), "?");
        for (size_t i = 0; i < n; i++)
            if (ops[i].n == author)
                describe_op(&ops[i], what, sizeof(what));
        fprintf(s->out, "  sector %" PRIu64 " was last written by op %" PRIu32 " (%s)\n",
                sector, author, what);
    }
    size_t shown = 0, first = n;
    for (size_t i = n; i-- > 0 && shown < HISTORY_SHOWN;)
        if (op_touches(&ops[i], sector)) {
            shown++;
            first = i;
        }
    if (shown) {
        fprintf(s->out, "  history of sector %" PRIu64 " (last %zu ops that touched it):\n",
                sector, shown);
        for (size_t i = first; i < n; i++) {
            if (!op_touches(&ops[i], sector))
                continue;
            describe_op(&ops[i], what, sizeof(what));
            fprintf(s->out, "    op %" PRIu32 ": %s\n", ops[i].n, what);
        }
    }
    free(ops);
}

/* The first line of a report: printed (the status line out of the way) and kept. */
static void headline(struct soak *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void headline(struct soak *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->r->message, sizeof(s->r->message), fmt, ap);
    va_end(ap);
    progress_clear(&s->progress);
    fprintf(s->out, "%s\n", s->r->message);
}

static void report_footer(struct soak *s)
{
    fprintf(s->out, "  image, oracle and trace kept in %s\n  replay: qvet replay %s\n",
             s->c->dir, s->trace_path);
}

/*
 * When power cuts since the last compare of the whole disk compared only slices of it,
 * damage found now may be older than the op that found it: when the compare was, and
 * (after a read that differed) the whole disk's first difference, with its history.
 */
static void report_since_whole(struct soak *s, uint64_t sector)
{
    bool look = s->look_whole;
    s->look_whole = false;
    if (!s->sliced_cuts)
        return;
    char when[48] = "before the first op";
    if (s->whole_compared_after)
        snprintf(when, sizeof(when), "after op %" PRIu32, s->whole_compared_after);
    fprintf(s->out, "  the disk was last compared whole %s; the %" PRIu32 " crashes since "
            "compared one slice each (--crash-compare slice)\n", when, s->sliced_cuts);
    struct step_result sr;
    if (!look || step_compare(&s->step, NULL, &sr) != STEP_DIVERGED)
        return;
    if (sr.sector == sector) {
        fprintf(s->out, "  the whole disk compared now: sector %" PRIu64 " is its first "
                "difference\n", sector);
        return;
    }
    fprintf(s->out, "  the whole disk compared now: its first difference is sector %" PRIu64
            "\n", sr.sector);
    report_sector_history(s, sr.sector);
}

static void report_mismatch(struct soak *s, const char *what, const struct op *op,
                            uint64_t off, size_t len, uint64_t sector, const uint8_t *got,
                            const uint8_t *want)
{
    const uint8_t *g = got + (sector * SECTOR - (off & ~(uint64_t)(SECTOR - 1)));
    const uint8_t *w = want + (sector * SECTOR - (off & ~(uint64_t)(SECTOR - 1)));
    char desc[160];
    describe_op(op, desc, sizeof(desc));
    headline(s, "qvet soak: %s at op %" PRIu32 " (%s)", what, op->n, desc);
    s->r->has_failing_sector = true;
    s->r->failing_sector = sector;
    uint64_t first = off / SECTOR, count = (off % SECTOR + len + SECTOR - 1) / SECTOR;
    fprintf(s->out, "  read sector_num=%" PRIu64 " nb_sectors=%" PRIu64
            " contents mismatch in sector %" PRIu64 "\n", first, count, sector);
    fprintf(s->out, "  expected (oracle), sector %" PRIu64 ":\n", sector);
    hexdump_sector(s->out, w, g);
    fprintf(s->out, "  actual (%s):\n", s->step.t->ops->name);
    hexdump_sector(s->out, g, w);
    uint32_t from_op;
    uint64_t from_sector;
    if (payload_identify(g, &from_op, &from_sector)) {
        fprintf(s->out, "  the actual bytes are op %" PRIu32 "'s data for sector %" PRIu64,
                from_op, from_sector);
        if (from_sector != sector)
            fprintf(s->out, " (misplaced by %+" PRId64 " sectors)",
                    (int64_t)(sector - from_sector));
        else if (from_op != oracle_sector_author(s->step.o, sector))
            fprintf(s->out, " (stale: a later op rewrote it)");
        fprintf(s->out, "\n");
    } else {
        static const uint8_t zeros[SECTOR];
        fprintf(s->out, "  the actual bytes are %s\n",
                memcmp(g, zeros, SECTOR) ? "not a payload of this run" : "all zeros");
    }
    report_sector_history(s, sector);
    report_since_whole(s, sector);
    report_footer(s);
}

/* Records what stopped the run: 1 for a problem in the target, -1 for setup. */
static int fail(struct soak *s, enum soak_outcome outcome, const struct op *op)
{
    s->r->outcome = outcome;
    s->r->failing_kind = op ? op->kind : OP_KINDS;
    s->r->failing_op = op ? op->n : s->r->ops_run;
    return outcome == SOAK_SETUP_ERROR ? -1 : 1;
}

/* Errors that say the host ran out of something, not that the target is wrong. */
static bool environment_errno(int ret)
{
    return ret == -ENOSPC || ret == -EDQUOT || ret == -EROFS || ret == -ENOMEM ||
           ret == -EMFILE || ret == -ENFILE;
}

static int target_failed(struct soak *s, const struct op *op, int ret)
{
    char desc[160];
    describe_op(op, desc, sizeof(desc));
    if (environment_errno(ret)) {
        headline(s, "qvet soak: the host could not complete op %" PRIu32 " (%s): %s (%d): an "
                 "environment failure, not a bug in the %s target", op->n, desc,
                 s->step.t->message, ret, s->step.t->ops->name);
        return fail(s, SOAK_SETUP_ERROR, op);
    }
    headline(s, "qvet soak: the target failed op %" PRIu32 " (%s): %s (%d)", op->n, desc,
             s->step.t->message, ret);
    report_footer(s);
    return fail(s, SOAK_TARGET_ERROR, op);
}

/* ---- cross-checks ------------------------------------------------------------------ */

/* After an op: the target's disk must be the oracle's size. */
static int report_size(struct soak *s, const struct op *op)
{
    char desc[160];
    describe_op(op, desc, sizeof(desc));
    headline(s, "qvet soak: after op %" PRIu32 " (%s) the %s disk is %" PRIu64 " bytes, the "
             "oracle's %" PRIu64, op->n, desc, s->step.t->ops->name, s->step.facts.size,
             oracle_size(s->step.o));
    report_footer(s);
    return fail(s, SOAK_DIVERGED, op);
}

/* A comparison that found a difference: reported as a read of the chunk compared. */
static void report_compared(struct soak *s, const char *what, const struct step_result *sr)
{
    struct op op = { .n = (uint32_t)s->r->ops_run, .kind = OP_READ, .off = sr->off,
                     .len = sr->len };
    report_mismatch(s, what, &op, sr->off, sr->len, sr->sector, s->step.buf, s->step.want);
}

static int compare_snapshots(struct soak *s)
{
    struct step_result sr;
    for (uint32_t i = 0; i < oracle_snapshot_count(s->step.o); i++) {
        const char *id = oracle_snapshot_id(s->step.o, i);
        switch (step_compare(&s->step, id, &sr)) {
        case STEP_TARGET_FAILED:
            headline(s, "qvet soak: reading snapshot %s failed: %s", id, s->step.t->message);
            report_footer(s);
            return fail(s, SOAK_SNAPSHOT_DIVERGED, NULL);
        case STEP_ORACLE_FAILED:
            return fail(s, SOAK_SETUP_ERROR, NULL);
        case STEP_DIVERGED: {
            char what[96];
            snprintf(what, sizeof(what), "snapshot %s differs from its oracle copy", id);
            report_compared(s, what, &sr);
            return fail(s, SOAK_SNAPSHOT_DIVERGED, NULL);
        }
        default:
            break;
        }
    }
    return 0;
}

/*
 * After `qemu-img compare` found the image and the oracle different: the first divergent
 * sector as the target reads it, with its provenance, as for a read that diverged.
 */
static void report_first_divergence(struct soak *s)
{
    struct step_result sr;
    if (step_compare(&s->step, NULL, &sr) == STEP_DIVERGED)
        report_compared(s, "the image differs from the oracle", &sr);
    else
        report_footer(s);
}

/*
 * One qemu-img cross-check: 0 when it passed; 1 when it failed (reported, with the start
 * of its log); fail()'s -1 when qemu-img could not be started at all.
 */
static int run_qemu_img(struct soak *s, const char *log, char *const argv[], const char *what,
                        int log_lines)
{
    int ret = run_tool(log, argv);
    if (ret < 0) {
        headline(s, "qvet soak: after op %" PRIu64 " %s (%s) could not be run: %s",
                 s->r->ops_run, what, argv[0], strerror(-ret));
        return fail(s, SOAK_SETUP_ERROR, NULL);
    }
    if (ret) {
        headline(s, "qvet soak: after op %" PRIu64 " %s exited %d:", s->r->ops_run, what, ret);
        show_log(s, log, log_lines);
    }
    return ret ? 1 : 0;
}

/* The target's own check, when it has one: 0 when it found nothing, else fail()'s. */
static int own_check(struct soak *s)
{
    struct target_check tc;
    if (!target_can(s->step.t, TARGET_CAN_CHECK))
        return 0;
    int ret = s->step.t->ops->check(s->step.t, &tc);
    if (ret) {
        headline(s, "qvet soak: after op %" PRIu64 " the %s check could not run: %s",
                 s->r->ops_run, s->step.t->ops->name, s->step.t->message);
        report_footer(s);
        return fail(s, environment_errno(ret) ? SOAK_SETUP_ERROR : SOAK_CHECK_FAILED, NULL);
    }
    if (tc.corruptions || tc.leaks || tc.check_errors) {
        headline(s, "qvet soak: after op %" PRIu64 " the %s check found problems: %" PRIu64
                 " corruptions, %" PRIu64 " leaks, %" PRIu64 " check errors", s->r->ops_run,
                 s->step.t->ops->name, tc.corruptions, tc.leaks, tc.check_errors);
        if (s->step.t->message[0])
            fprintf(s->out, "    %s\n", s->step.t->message);
        report_footer(s);
        return fail(s, SOAK_CHECK_FAILED, NULL);
    }
    return 0;
}

/* The first line where two files differ (1-based), with both lines; 0 when equal. */
static size_t first_line_difference(const char *a, const char *b, char *la, char *lb,
                                    size_t cap)
{
    FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
    size_t line = 0;
    for (size_t n = 1; fa && fb; n++) {
        char *ra = fgets(la, (int)cap, fa), *rb = fgets(lb, (int)cap, fb);
        if (!ra && !rb)
            break;
        if (!ra || !rb || strcmp(la, lb)) {
            if (!ra)
                snprintf(la, cap, "(end of file)\n");
            if (!rb)
                snprintf(lb, cap, "(end of file)\n");
            line = n;
            break;
        }
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return line;
}

/* `qvet map` of the image against `qemu-img map`, both as JSON: byte for byte. */
static int check_map(struct soak *s)
{
    if (!s->c->qemu_checks || !s->c->qvet_binary[0] || !target_can(s->step.t, TARGET_QCOW2_FILE))
        return 0;
    char ours[1100], theirs[1100];
    snprintf(ours, sizeof(ours), "%s/map-qvet.json", s->c->dir);
    snprintf(theirs, sizeof(theirs), "%s/map-qemu-img.json", s->c->dir);
    char *qvet[] = { (char *)s->c->qvet_binary, "map", "--output=json", "-U", s->image, NULL };
    char *qemu[] = { "qemu-img", "map", "--output=json", "-f", "qcow2", s->image, NULL };
    int ret = run_qemu_img(s, theirs, qemu, "qemu-img map", 10);
    if (!ret)
        ret = run_qemu_img(s, ours, qvet, "qvet map", 10);
    if (ret) {
        if (ret > 0)
            report_footer(s);
        return ret < 0 ? ret : fail(s, SOAK_CHECK_FAILED, NULL);
    }
    char la[512], lb[512];
    size_t line = first_line_difference(ours, theirs, la, lb, sizeof(la));
    if (!line)
        return 0;
    headline(s, "qvet soak: after op %" PRIu64 " the allocation map differs from qemu-img "
             "map's, first at line %zu", s->r->ops_run, line);
    fprintf(s->out, "    qvet map:     %s    qemu-img map: %s  (%s, %s)\n", la, lb, ours, theirs);
    report_footer(s);
    return fail(s, SOAK_CHECK_FAILED, NULL);
}

/* Why a snapshot table differs from the snapshots made (NULL: it does not). */
static const char *table_difference(const struct soak *s, const struct target_snapshot *got,
                                    unsigned n, bool sizes, char *buf, size_t cap)
{
    if (n != s->n_made) {
        snprintf(buf, cap, "%u snapshots listed, %u made", n, s->n_made);
        return buf;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct target_snapshot *m = &s->made[i];
        if (strcmp(got[i].id, m->id) || strcmp(got[i].name, m->name))
            snprintf(buf, cap, "entry %u is id '%s' name '%s'; made: id '%s' name '%s'",
                     i + 1, got[i].id, got[i].name, m->id, m->name);
        else if (sizes && got[i].disk_size != m->disk_size)
            snprintf(buf, cap, "snapshot %s has disk size %" PRIu64 ", made at %" PRIu64,
                     m->id, got[i].disk_size, m->disk_size);
        else
            continue;
        return buf;
    }
    return NULL;
}

/* `qemu-img snapshot -l`'s table: id and name of each row, in order. */
static int qemu_snapshot_list(struct soak *s, struct target_snapshot *got, unsigned cap,
                              unsigned *n)
{
    char list[1100];
    snprintf(list, sizeof(list), "%s/snapshot-list.txt", s->c->dir);
    char *argv[] = { "qemu-img", "snapshot", "-l", s->image, NULL };
    int ret = run_qemu_img(s, list, argv, "qemu-img snapshot -l", 10);
    if (ret)
        return ret;
    FILE *f = fopen(list, "r");
    char line[512];
    *n = 0;
    /* "Snapshot list:", then the column heads, then one row per snapshot */
    for (int row = 0; f && fgets(line, sizeof(line), f); row++) {
        char id[TARGET_ID_MAX], name[TARGET_ID_MAX * 4];
        if (row < 2 || sscanf(line, "%31s %127s", id, name) != 2)
            continue;
        if (*n < cap) {
            snprintf(got[*n].id, sizeof(got[*n].id), "%s", id);
            snprintf(got[*n].name, sizeof(got[*n].name), "%s", name);
        }
        (*n)++;
    }
    if (f)
        fclose(f);
    return 0;
}

/* The snapshot table against the snapshots made: ids, names, disk sizes and count. */
static int check_snapshot_table(struct soak *s)
{
    struct target *t = s->step.t;
    struct target_snapshot got[MAX_SNAPSHOTS + 1];
    unsigned n;
    char why[400];
    const char *diff = NULL, *who = NULL;
    if (target_can(t, TARGET_CAN_SNAPSHOT_LIST)) {
        int ret = t->ops->snapshot_list(t, got, MAX_SNAPSHOTS + 1, &n);
        if (ret) {
            headline(s, "qvet soak: after op %" PRIu64 " listing the snapshots failed: %s",
                     s->r->ops_run, t->message);
            report_footer(s);
            return fail(s, SOAK_CHECK_FAILED, NULL);
        }
        diff = table_difference(s, got, n, true, why, sizeof(why));
        who = t->ops->name;
    }
    if (!diff && s->c->qemu_checks && target_can(t, TARGET_QCOW2_FILE)) {
        int ret = qemu_snapshot_list(s, got, MAX_SNAPSHOTS + 1, &n);
        if (ret) {
            if (ret > 0)
                report_footer(s);
            return ret < 0 ? ret : fail(s, SOAK_CHECK_FAILED, NULL);
        }
        diff = table_difference(s, got, n, false, why, sizeof(why));
        who = "qemu-img snapshot -l";
    }
    if (!diff)
        return 0;
    headline(s, "qvet soak: after op %" PRIu64 " the snapshot table (%s) differs from the "
             "snapshots made: %s", s->r->ops_run, who, diff);
    report_footer(s);
    return fail(s, SOAK_CHECK_FAILED, NULL);
}

/* The whole disk read through the target, against the oracle. */
static int full_read(struct soak *s)
{
    struct step_result sr;
    switch (step_compare(&s->step, NULL, &sr)) {
    case STEP_DONE:
        s->whole_compared_after = s->r->last_op;
        s->sliced_cuts = 0;
        return 0;
    case STEP_DIVERGED:
        report_compared(s, "reading the whole disk: it differs from the oracle", &sr);
        return fail(s, SOAK_DIVERGED, NULL);
    case STEP_TARGET_FAILED:
        headline(s, "qvet soak: after op %" PRIu64 " reading the whole disk failed: %s",
                 s->r->ops_run, s->step.t->message);
        report_footer(s);
        return fail(s, SOAK_TARGET_ERROR, NULL);
    default:
        headline(s, "qvet soak: %s: the oracle could not read its disk (is the disk full?)",
                 s->c->dir);
        return fail(s, SOAK_SETUP_ERROR, NULL);
    }
}

/* The target takes its image back after a detach (a no-op for one that never lets go). */
static int reattach(struct soak *s)
{
    struct target *t = s->step.t;
    int ret = t->ops->attach ? t->ops->attach(t) : 0;
    if (!ret)
        return 0;
    headline(s, "qvet soak: after op %" PRIu64 " the %s target could not take the image "
             "back: %s", s->r->ops_run, t->ops->name, t->message);
    return fail(s, environment_errno(ret) ? SOAK_SETUP_ERROR : SOAK_TARGET_ERROR, NULL);
}

/* Opens the reader on the image: 0, or a negative errno with the reason in errbuf. */
static int open_reader(struct soak *s, struct target **reader, char *errbuf, size_t errlen)
{
    const struct target_params p = { .path = s->image, .read_only = true };
    return target_open(s->c->reader, &p, reader, errbuf, errlen);
}

/*
 * The reader (a second implementation, read-only) on the flushed image: it must see the
 * oracle's disk, size and bytes. Its report reads as the target's would, naming it.
 */
static int compare_reader(struct soak *s)
{
    if (!s->c->reader[0])
        return 0;
    struct target *reader;
    char errbuf[2400];
    if (open_reader(s, &reader, errbuf, sizeof(errbuf))) {
        headline(s, "qvet soak: after op %" PRIu64 " the reader %s cannot open the image: %s",
                 s->r->ops_run, s->c->reader, errbuf);
        report_footer(s);
        return fail(s, SOAK_READER_DIVERGED, NULL);
    }
    struct target *t = s->step.t;
    struct target_facts facts = s->step.facts;
    s->step.t = reader;
    int ret = reader->ops->facts(reader, &s->step.facts);
    struct step_result sr;
    if (ret || s->step.facts.size != oracle_size(s->step.o)) {
        headline(s, "qvet soak: after op %" PRIu64 " the reader %s sees a disk of %" PRIu64
                 " bytes, the oracle's is %" PRIu64 "%s%s", s->r->ops_run, s->c->reader,
                 ret ? 0 : s->step.facts.size, oracle_size(s->step.o), ret ? ": " : "",
                 ret ? reader->message : "");
        report_footer(s);
        ret = fail(s, SOAK_READER_DIVERGED, NULL);
    } else {
        switch (step_compare(&s->step, NULL, &sr)) {
        case STEP_DONE:
            break;
        case STEP_DIVERGED:
            report_compared(s, "the reader reads differently from the oracle", &sr);
            ret = fail(s, SOAK_READER_DIVERGED, NULL);
            break;
        case STEP_TARGET_FAILED:
            headline(s, "qvet soak: after op %" PRIu64 " the reader %s failed a read at %"
                     PRIu64 ": %s", s->r->ops_run, s->c->reader, sr.off, reader->message);
            report_footer(s);
            ret = fail(s, SOAK_READER_DIVERGED, NULL);
            break;
        default:
            ret = fail(s, SOAK_SETUP_ERROR, NULL);
            break;
        }
    }
    reader->ops->close(reader);
    s->step.t = t;
    s->step.facts = facts;
    return ret;
}

/*
 * Everything that reads the image from outside the target, done with the image flushed
 * and (for a target that holds locks, such as qemu-nbd) let go of.
 */
static int checks_from_outside(struct soak *s)
{
    struct target *t = s->step.t;
    int ret = t->ops->detach ? t->ops->detach(t) : 0;
    if (ret) {
        headline(s, "qvet soak: after op %" PRIu64 " the %s target could not let go of the "
                 "image: %s", s->r->ops_run, t->ops->name, t->message);
        return fail(s, environment_errno(ret) ? SOAK_SETUP_ERROR : SOAK_TARGET_ERROR, NULL);
    }
    step_flushed(&s->step, s->r->last_op);
    if ((ret = own_check(s)))
        return ret;
    if (s->c->qemu_checks && target_can(t, TARGET_QCOW2_FILE)) {
        char log[1100];
        snprintf(log, sizeof(log), "%s/qemu-img.log", s->c->dir);
        char *check[] = { "qemu-img", "check", "-f", "qcow2", s->image, NULL };
        if ((ret = run_qemu_img(s, log, check, "qemu-img check", 20))) {
            if (ret < 0)
                return ret;
            report_footer(s);
            return fail(s, SOAK_CHECK_FAILED, NULL);
        }
        char *compare[] = { "qemu-img", "compare", "-f", "qcow2", "-F", "raw", s->image,
                            (char *)oracle_path(s->step.o), NULL };
        if ((ret = run_qemu_img(s, log, compare, "qemu-img compare (image vs oracle)", 10))) {
            if (ret < 0)
                return ret;
            if (!reattach(s))
                report_first_divergence(s);
            return fail(s, SOAK_CHECK_FAILED, NULL);
        }
    }
    if ((ret = check_snapshot_table(s)) || (ret = check_map(s)) || (ret = compare_reader(s)))
        return ret;
    return reattach(s);
}

static int cross_check(struct soak *s)
{
    s->r->checks_run++;
    struct target *t = s->step.t;
    int ret = target_can(t, TARGET_CAN_FLUSH) ? t->ops->flush(t) : 0;
    if (ret) {
        headline(s, "qvet soak: flush before the check failed: %s", t->message);
        return fail(s, environment_errno(ret) ? SOAK_SETUP_ERROR : SOAK_TARGET_ERROR, NULL);
    }
    if ((ret = checks_from_outside(s)) || (ret = full_read(s)))
        return ret;
    return compare_snapshots(s);
}

/* ---- applying one operation ------------------------------------------------------- */

static int trace_append(struct soak *s, const char *text, size_t n);

/* A note after an op's line in the trace: why it was skipped or refused (one line). */
static int note_op(struct soak *s, const struct op *op, const char *what, const char *why)
{
    char line[400];
    int n = snprintf(line, sizeof(line), "# %" PRIu32 " %s: %s", op->n, what, why);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n')
            line[i] = ' ';
    line[len++] = '\n';
    if (!trace_append(s, line, len))
        return 0;
    headline(s, "qvet soak: %s: cannot append to the trace after op %" PRIu32, s->trace_path,
             op->n);
    return fail(s, SOAK_SETUP_ERROR, op);
}

static void remember_snapshot(struct soak *s, const struct op *op)
{
    uint32_t n = oracle_snapshot_count(s->step.o);
    if (op->kind == OP_SNAPSHOT_CREATE && n && s->n_made < MAX_SNAPSHOTS) {
        struct target_snapshot *m = &s->made[s->n_made++];
        snprintf(m->id, sizeof(m->id), "%s", oracle_snapshot_id(s->step.o, n - 1));
        snprintf(m->name, sizeof(m->name), "%s", op->snapshot);
        m->disk_size = oracle_size(s->step.o);
    }
    for (unsigned i = 0; op->kind == OP_SNAPSHOT_DELETE && i < s->n_made; i++)
        if (!strcmp(s->made[i].id, op->snapshot)) {
            memmove(&s->made[i], &s->made[i + 1], (s->n_made - i - 1) * sizeof(s->made[0]));
            s->n_made--;
            break;
        }
}

/*
 * The oracle could not follow an op: a host problem (a full disk), unless it is the
 * target's doing: a snapshot id the target gave twice.
 */
static int oracle_failed(struct soak *s, const struct op *op, int error)
{
    char desc[160];
    describe_op(op, desc, sizeof(desc));
    if (op->kind == OP_SNAPSHOT_CREATE && error == -EEXIST) {
        headline(s, "qvet soak: op %" PRIu32 " (%s): the %s target gave the new snapshot an id "
                 "that an existing snapshot has", op->n, desc, s->step.t->ops->name);
        report_footer(s);
        return fail(s, SOAK_TARGET_ERROR, op);
    }
    headline(s, "qvet soak: %s: the oracle could not follow op %" PRIu32 " (%s): %s: an "
             "environment failure, not a bug (is the disk full?)", s->c->dir, op->n, desc,
             strerror(-error));
    return fail(s, SOAK_SETUP_ERROR, op);
}

static int report_crash_damage(struct soak *s, const struct op *op, const struct step_result *sr)
{
    char desc[160];
    describe_op(op, desc, sizeof(desc));
    if (!sr->before_crash)
        snprintf(s->r->kind, sizeof(s->r->kind), "crash-state-corruption");
    if (sr->before_crash)
        headline(s, "qvet soak: before the crash of op %" PRIu32 " (%s) the %s check found "
                 "problems: %" PRIu64 " corruptions, %" PRIu64 " leaks, %" PRIu64 " check "
                 "errors", op->n, desc, s->step.t->ops->name, sr->check.corruptions,
                 sr->check.leaks, sr->check.check_errors);
    else
        headline(s, "qvet soak: after the crash of op %" PRIu32 " (%s) the reopened image's "
                 "check found %" PRIu64 " corruptions, %" PRIu64 " check errors (%" PRIu64
                 " leaks)", op->n, desc, sr->check.corruptions, sr->check.check_errors,
                 sr->check.leaks);
    if (s->step.t->message[0])
        fprintf(s->out, "    %s\n", s->step.t->message);
    report_footer(s);
    return fail(s, sr->before_crash ? SOAK_CHECK_FAILED : SOAK_CRASH_STATE, op);
}

/* What the disk's last whole compare was: a crash op's (without a slice) or a cross-check's. */
static void note_crash_compare(struct soak *s, const struct op *op)
{
    if (op->compare_parts) {
        s->sliced_cuts++;
        return;
    }
    s->whole_compared_after = op->n;
    s->sliced_cuts = 0;
}

/* One op through the step; the outcome becomes the run's status and, if need be, a report. */
static int apply(struct soak *s, const struct op *op)
{
    struct step_result sr;
    switch (step_run(&s->step, op, &sr)) {
    case STEP_DONE:
        s->r->done[op->kind]++;
        if (op_kind_is_crash(op->kind))
            note_crash_compare(s, op);
        if (op->kind == OP_READ)
            s->r->reads_compared++;
        else if (op->kind <= OP_WRITE_COMPRESSED)
            remember(s, op->off, op->len);
        remember_snapshot(s, op);
        return 0;
    case STEP_SKIPPED:
        return note_op(s, op, "skipped", sr.why);
    case STEP_REFUSED:
        return note_op(s, op, "refused by the target", s->step.t->message);
    case STEP_DIVERGED:
        s->r->reads_compared++;
        s->look_whole = true;
        report_mismatch(s, "read differs from the oracle", op, op->off, op->len, sr.sector,
                        s->step.buf, s->step.want);
        return fail(s, SOAK_DIVERGED, op);
    case STEP_SIZE_DIVERGED:
        return report_size(s, op);
    case STEP_TARGET_FAILED:
        return target_failed(s, op, sr.error);
    case STEP_CRASH_DAMAGED:
        return report_crash_damage(s, op, &sr);
    case STEP_CRASH_LOST:
        snprintf(s->r->kind, sizeof(s->r->kind), "%s", sr.unflushed_sector ?
                 "crash-state-corruption" : "lost-flushed-bytes");
        report_mismatch(s, sr.unflushed_sector ? "after the crash a sector written since the "
                        "last flush holds none of its versions" : "after the crash a flushed "
                        "sector is not back", op, sr.off, sr.len, sr.sector, s->step.buf,
                        s->step.want);
        return fail(s, SOAK_CRASH_STATE, op);
    default:
        return oracle_failed(s, op, sr.error);
    }
}

/* ---- the trace file ---------------------------------------------------------------- */

/*
 * The trace is written through a shared mapping: no system call per operation, and what
 * was stored survives the process crashing (the page cache keeps it). The file is cut to
 * its real length on close; after a crash its tail is zeros, where the loader stops (and
 * the supervisor cuts it). Its space is allocated before it is mapped: a full disk then
 * fails the append, instead of killing the process with SIGBUS at a store to the map.
 */
static int trace_append(struct soak *s, const char *text, size_t n)
{
    if (s->trace_used + n > s->trace_cap) {
        size_t cap = s->trace_cap ? s->trace_cap * 2 : (1u << 20);
        while (cap < s->trace_used + n)
            cap *= 2;
        if (s->trace_map)
            munmap(s->trace_map, s->trace_cap);
        s->trace_map = NULL;
        int ret = posix_fallocate(s->trace_fd, 0, (off_t)cap);
        if (ret)
            return -ret;
        void *m = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, s->trace_fd, 0);
        if (m == MAP_FAILED)
            return -errno;
        s->trace_map = m;
        s->trace_cap = cap;
    }
    memcpy(s->trace_map + s->trace_used, text, n);
    s->trace_used += n;
    return 0;
}

static void trace_close(struct soak *s)
{
    if (s->trace_map)
        munmap(s->trace_map, s->trace_cap);
    if (s->trace_fd >= 0) {
        if (ftruncate(s->trace_fd, (off_t)s->trace_used))
            s->trace_used = 0;
        close(s->trace_fd);
    }
}

/* ---- setting up -------------------------------------------------------------------- */

static int setup_error(struct soak *s, const char *what, const char *detail)
{
    headline(s, "qvet soak: %s: %s%s", s->c->dir, what, detail);
    return fail(s, SOAK_SETUP_ERROR, NULL);
}

static int qemu(struct soak *s, char *const argv[])
{
    char log[1100];
    snprintf(log, sizeof(log), "%s/setup.log", s->c->dir);
    int ret = run_tool(log, argv);
    if (ret < 0)
        fprintf(s->out, "qvet soak: %s: `%s %s` could not be run: %s\n", s->c->dir, argv[0],
                argv[1], strerror(-ret));
    else if (ret) {
        fprintf(s->out, "qvet soak: %s: `%s %s` failed (exit %d):\n", s->c->dir, argv[0],
                argv[1], ret);
        show_log(s, log, 5);
    }
    return ret;
}

/* Makes the backing chain (with data written by QEMU's tools) and its raw guest view. */
static int make_backing(struct soak *s, char *name, size_t cap, const char **fmt)
{
    const struct soak_config *c = s->c;
    char base[1100], top[1100], size_text[32], half[32], quarter[32];
    s->backing_size = c->size / 4 * 3 / SECTOR * SECTOR;
    snprintf(size_text, sizeof(size_text), "%" PRIu64, s->backing_size);
    snprintf(half, sizeof(half), "%" PRIu64, s->backing_size / 2 / SECTOR * SECTOR);
    snprintf(quarter, sizeof(quarter), "%" PRIu64, s->backing_size / 4 / SECTOR * SECTOR);
    char w1[96], w2[96];
    snprintf(w1, sizeof(w1), "write -q -P 0xb1 0 %s", half);
    snprintf(w2, sizeof(w2), "write -q -P 0xb2 %s %s", half, quarter);
    if (c->backing == BACKING_RAW || c->backing == BACKING_CHAIN) {
        snprintf(base, sizeof(base), "%s/base.raw", c->dir);
        char *create[] = { "qemu-img", "create", "-q", "-f", "raw", base, size_text, NULL };
        char *io[] = { "qemu-io", "-f", "raw", "-c", w1, base, NULL };
        if (qemu(s, create) || qemu(s, io))
            return -1;
        snprintf(name, cap, "base.raw");
        *fmt = "raw";
        snprintf(top, sizeof(top), "%s", base);
    }
    if (c->backing == BACKING_QCOW2 || c->backing == BACKING_CHAIN) {
        snprintf(top, sizeof(top), "%s/mid.qcow2", c->dir);
        char *create_plain[] = { "qemu-img", "create", "-q", "-f", "qcow2", top, size_text,
                                 NULL };
        char *create_over[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw",
                                "-F", "raw", top, size_text, NULL };
        char *io[] = { "qemu-io", "-f", "qcow2", "-c", w2, "-c", "write -q -c -P 0xb3 0 64k",
                       top, NULL };
        if (qemu(s, c->backing == BACKING_CHAIN ? create_over : create_plain) || qemu(s, io))
            return -1;
        snprintf(name, cap, "mid.qcow2");
        *fmt = "qcow2";
    }
    snprintf(s->backing_view, sizeof(s->backing_view), "%s/backing-view.raw", c->dir);
    char *convert[] = { "qemu-img", "convert", "-O", "raw", top, s->backing_view, NULL };
    if (qemu(s, convert))
        return -1;
    s->backing_view_fd = open(s->backing_view, O_RDONLY | O_CLOEXEC);
    return s->backing_view_fd < 0 ? -1 : 0;
}

static int setup(struct soak *s)
{
    const struct soak_config *c = s->c;
    char missing[256];
    if (!soak_tools_available(c, missing, sizeof(missing)))
        return setup_error(s, missing, "");
    if (mkdir(c->dir, 0755) && errno != EEXIST)
        return setup_error(s, "cannot create the directory: ", strerror(errno));
    snprintf(s->image, sizeof(s->image), "%s/image.qcow2", c->dir);
    soak_trace_path(c, s->trace_path, sizeof(s->trace_path));
    char backing_name[64] = "";
    const char *backing_fmt = NULL;
    if (c->backing != BACKING_NONE && make_backing(s, backing_name, sizeof(backing_name),
                                                   &backing_fmt))
        return setup_error(s, "could not make the backing file", "");

    const struct target_params params = {
        .path = s->image,
        .size = c->size,
        .options = c->options,
        .backing = backing_fmt ? backing_name : NULL,
        .backing_format = backing_fmt,
        .cache_bytes = c->cache_bytes,
        .crash_ops = s->crash_ops,
        .hooks = c->hooks,
    };
    char errbuf[2400];
    int made = target_create(c->target, &params, &s->step.t, errbuf, sizeof(errbuf));
    if (made && !environment_errno(made) &&
        !target_check_options(c->target, c->options, missing, sizeof(missing))) {
        /* Options it accepts, a host with room: an image it cannot make or open is a bug. */
        headline(s, "qvet soak: %s: the %s target cannot make the image it was asked for: %s",
                 c->dir, c->target, errbuf);
        return fail(s, SOAK_TARGET_ERROR, NULL);
    }
    if (made)
        return setup_error(s, errbuf, "");
    int ret = step_start(&s->step);
    if (ret)
        return setup_error(s, "the target's facts: ", s->step.t->message);
    /* The one place the target's capabilities shape the mix: it is never asked for more. */
    s->r->target_caps = s->step.t->caps;
    for (int k = 0; k < OP_KINDS; k++) {
        s->weights[k] = target_can(s->step.t, step_needs((enum op_kind)k)) ? c->weights[k] : 0;
        if (op_kind_is_crash((enum op_kind)k) && c->crash_boost)
            s->weights[k] *= c->crash_boost;
    }
    s->initial_size = s->step.facts.size;
    s->step.max_snapshots = MAX_SNAPSHOTS;
    s->step.io_cap = MAX_IO;
    if (target_can(s->step.t, TARGET_CAN_CRASH) && !(s->step.unflushed = unflushed_new()))
        return setup_error(s, "out of memory", "");
    if (oracle_create(c->dir, s->initial_size, backing_fmt ? s->backing_view : NULL,
                      &s->step.facts.oracle,
                      &s->step.o, errbuf, sizeof(errbuf)))
        return setup_error(s, "oracle: ", errbuf);
    struct target *reader;
    if (c->reader[0] && open_reader(s, &reader, errbuf, sizeof(errbuf)))
        return setup_error(s, "the reader: ", errbuf);
    if (c->reader[0])
        reader->ops->close(reader);

    s->trace_fd = open(s->trace_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->trace_fd < 0)
        return setup_error(s, "cannot write the trace: ", strerror(errno));
    char header[4096];
    soak_trace_header(c, s->trace_path, "", header, sizeof(header));
    ret = trace_append(s, header, strlen(header));
    return ret ? setup_error(s, "cannot write the trace: ", strerror(-ret)) : 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int log_op(struct soak *s, const struct op *op)
{
    char line[160];
    op_format(op, line, sizeof(line));
    size_t n = strlen(line);
    line[n++] = '\n';
    /* Appended before it runs, so a crash still leaves a replayable trace. */
    int ret = trace_append(s, line, n);
    if (!ret)
        return 0;
    headline(s, "qvet soak: %s: cannot append op %" PRIu32 " to the trace: %s", s->trace_path,
             op->n, strerror(-ret));
    return fail(s, SOAK_SETUP_ERROR, op);
}

/* Seconds of operations still to go, by whichever limit comes first (-1: unknown). */
static double time_left(double seconds, uint64_t limit, const struct soak_result *r,
                        double op_seconds)
{
    double left = -1;
    if (seconds > 0)
        left = seconds > op_seconds ? seconds - op_seconds : 0;
    if (limit && r->ops_run && op_seconds > 0) {
        double by_count = (double)(limit - r->ops_run) * op_seconds / (double)r->ops_run;
        if (left < 0 || by_count < left)
            left = by_count;
    }
    return left;
}

/* A cross-check, its time added to *in_checks; the watchdog sees it running. */
static int timed_cross_check(struct soak *s, double *in_checks)
{
    double t0 = now_seconds();
    s->r->in_cross_check = true;
    s->r->busy_since = t0;
    int status = cross_check(s);
    s->r->busy_since = 0;
    s->r->in_cross_check = false;
    *in_checks += now_seconds() - t0;
    return status;
}

static void print_summary(const struct soak *s, FILE *out)
{
    const struct soak_config *c = s->c;
    const struct soak_result *r = s->r;
    char verdict[128];
    switch (r->outcome) {
    case SOAK_PASSED:
        snprintf(verdict, sizeof(verdict), "passed");
        break;
    case SOAK_INTERRUPTED:
        snprintf(verdict, sizeof(verdict), "interrupted at op %" PRIu32, r->last_op);
        break;
    case SOAK_SETUP_ERROR:
        snprintf(verdict, sizeof(verdict), "not finished, an environment failure at op %"
                 PRIu32 " (no bug found)", r->last_op);
        break;
    default:
        snprintf(verdict, sizeof(verdict), "FAILED (%s at op %" PRIu64 ")",
                 soak_outcome_name(r->outcome), r->failing_op);
        break;
    }
    fprintf(out, "soak: %s: %" PRIu64 " ops in %.1f s (%.0f ops/s), %" PRIu64 " reads compared, %"
            PRIu64 " checks run; seed %" PRIu64 ", options %s, backing %s\n", verdict,
            r->ops_run, r->seconds, r->seconds > 0 ? (double)r->ops_run / r->seconds : 0.0,
            r->reads_compared, r->checks_run, c->seed, c->options[0] ? c->options : "(defaults)",
            soak_backing_name(c->backing));
    char left_out[256] = "";
    for (int k = 0; k < OP_KINDS; k++)
        if (c->weights[k] && (r->target_caps & step_needs((enum op_kind)k)) !=
                             step_needs((enum op_kind)k))
            snprintf(left_out + strlen(left_out), sizeof(left_out) - strlen(left_out), "%s%s",
                     left_out[0] ? ", " : "", op_kind_name((enum op_kind)k));
    if (c->target[0] && strcmp(c->target, "qvet"))
        fprintf(out, "  target %s%s%s\n", c->target, c->reader[0] ? ", reader " : "",
                c->reader);
    else if (c->reader[0])
        fprintf(out, "  reader %s\n", c->reader);
    if (left_out[0])
        fprintf(out, "  left out (the %s target cannot do them): %s\n", s->step.t->ops->name,
                left_out);
    if (r->outcome == SOAK_INTERRUPTED || r->outcome == SOAK_SETUP_ERROR)
        fprintf(out, "  replay: qvet replay %s\n", s->trace_path);
    else if (r->outcome != SOAK_PASSED)
        fprintf(out, "  reason: %s\n", r->message[0] ? r->message : "(none recorded)");
}

int soak_run(const struct soak_config *c, const struct op *replay, size_t n_replay,
             struct soak_result *r, FILE *out)
{
    struct soak s = { .c = c, .r = r, .backing_view_fd = -1, .trace_fd = -1 };
    FILE *devnull = NULL;
    if (c->quiet)
        out = devnull = fopen("/dev/null", "w");
    s.out = out;
    memset(r, 0, sizeof(*r));
    r->failing_kind = OP_KINDS;
    rng_seed(&s, c->seed);
    payload_set_compressible(c->compressible_payload);
    for (int k = 0; !replay && k < OP_KINDS; k++)
        s.crash_ops |= c->weights[k] && op_kind_is_crash((enum op_kind)k);
    for (size_t i = 0; replay && i < n_replay; i++)
        s.crash_ops |= op_kind_is_crash(replay[i].kind);
    s.step.buf = malloc(MAX_IO);
    s.step.want = malloc(MAX_IO);
    int status = s.step.buf && s.step.want ? setup(&s) : -1;
    bool set_up = status == 0;
    double start = now_seconds(), in_checks = 0;
    progress_start(&s.progress, c->quiet ? NULL : out, c->heartbeat, start);
    /* A replay runs all of its ops; a generated run stops at the first limit reached. */
    uint64_t limit = replay ? n_replay : c->ops;
    double seconds = replay ? 0 : c->seconds;
    for (uint64_t i = 0; !status; i++) {
        double now = now_seconds(), op_seconds = now - start - in_checks;
        if ((replay || limit) && i >= limit)
            break;
        /* The fill is the run's way to its state: the time limit does not cut it short. */
        struct op fill;
        if (seconds > 0 && op_seconds >= seconds && !fill_op(&s, (uint32_t)(i + 1), &fill))
            break;
        if (c->stop && *c->stop) {
            r->outcome = SOAK_INTERRUPTED;
            r->signal_number = *c->stop;
            status = -1;
            break;
        }
        progress_tick(&s.progress, r, now, op_seconds, time_left(seconds, limit, r, op_seconds));
        struct op op;
        if (replay)
            op = replay[i];
        else
            generate(&s, (uint32_t)(i + 1), &op);
        if ((status = log_op(&s, &op)))
            break;
        r->last_op = op.n;
        r->busy_since = now_seconds();
        status = apply(&s, &op);
        r->busy_since = 0;
        r->ops_run++;
        if (!status && ((c->check_every && r->ops_run % c->check_every == 0) ||
                        fill_ended(&s, op.n)))
            status = timed_cross_check(&s, &in_checks);
    }
    if (!status)
        status = timed_cross_check(&s, &in_checks);
    r->seconds = now_seconds() - start - in_checks;
    if (set_up && r->outcome == SOAK_SETUP_ERROR && !r->message[0])
        headline(&s, "qvet soak: %s: the oracle could not follow op %" PRIu32 " (the host "
                 "refused a write: is the disk full?): an environment failure, not a bug",
                 c->dir, r->last_op);
    progress_clear(&s.progress);
    if (set_up && out)
        print_summary(&s, out);
    if (s.step.t)
        s.step.t->ops->close(s.step.t);
    if (s.step.o)
        oracle_close(s.step.o);
    if (s.backing_view_fd >= 0)
        close(s.backing_view_fd);
    unflushed_free(s.step.unflushed);
    trace_close(&s);
    free(s.step.buf);
    free(s.step.want);
    if (devnull)
        fclose(devnull);
    return status;
}

static const char *const outcome_names[] = {
    [SOAK_PASSED] = "passed",
    [SOAK_DIVERGED] = "diverged",
    [SOAK_CHECK_FAILED] = "check-failed",
    [SOAK_SNAPSHOT_DIVERGED] = "snapshot-diverged",
    [SOAK_TARGET_ERROR] = "target-error",
    [SOAK_SETUP_ERROR] = "setup-error",
    [SOAK_INTERRUPTED] = "interrupted",
    [SOAK_CRASHED] = "crashed",
    [SOAK_KILLED] = "killed",
    [SOAK_READER_DIVERGED] = "reader-diverged",
    [SOAK_HUNG] = "hung",
    [SOAK_CRASH_STATE] = "crash-state",
};

const char *soak_outcome_name(enum soak_outcome o)
{
    return o < sizeof(outcome_names) / sizeof(outcome_names[0]) ? outcome_names[o] : "?";
}

const char *soak_failure_kind(const struct soak_result *r)
{
    if (r->kind[0])
        return r->kind;
    switch (r->outcome) {
    case SOAK_PASSED: case SOAK_INTERRUPTED: return "none";
    case SOAK_DIVERGED: return "divergence";
    case SOAK_CHECK_FAILED: return "check-failure";
    case SOAK_SNAPSHOT_DIVERGED: return "snapshot-divergence";
    case SOAK_TARGET_ERROR: return "target-error";
    case SOAK_SETUP_ERROR: return "setup-error";
    case SOAK_CRASHED: return "crash";
    case SOAK_KILLED: return "killed";
    case SOAK_HUNG: return "hang";
    case SOAK_READER_DIVERGED: return "reader-divergence";
    case SOAK_CRASH_STATE: return "crash-state-corruption";
    }
    return "unknown";
}

int soak_exit_status(enum soak_outcome o, int signal_number)
{
    switch (o) {
    case SOAK_PASSED:
        return 0;
    case SOAK_SETUP_ERROR:
    case SOAK_KILLED:
        return 2;
    case SOAK_INTERRUPTED:
        return 128 + signal_number;
    default:
        return 1;
    }
}
