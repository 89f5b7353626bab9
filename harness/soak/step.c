/* SPDX-License-Identifier: BSD-2-Clause */
/* step_run and step_compare: one operation on the target and the oracle (step.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "step.h"

#define COMPARE_PIECE (256u << 10)
#define SNAPSHOTS_SEEN 64           /* more than a run makes, with a cut's own */

static enum step_outcome end(struct step_result *r, enum step_outcome outcome, int error)
{
    r->outcome = outcome;
    r->error = error;
    return outcome;
}

static enum step_outcome skip(struct step_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static enum step_outcome skip(struct step_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    return end(r, STEP_SKIPPED, 0);
}

/* A target's result: 0 done, TARGET_REFUSED declined, else failed. */
static enum step_outcome by_target(struct step_result *r, int ret)
{
    if (ret == TARGET_REFUSED)
        return end(r, STEP_REFUSED, 0);
    return ret ? end(r, STEP_TARGET_FAILED, ret) : STEP_DONE;
}

/* The oracle following an op the target did. */
static enum step_outcome by_oracle(struct step_result *r, int ret)
{
    return ret ? end(r, STEP_ORACLE_FAILED, ret) : end(r, STEP_DONE, 0);
}

unsigned step_needs(enum op_kind k)
{
    switch (k) {
    case OP_WRITE: return TARGET_CAN_WRITE;
    case OP_ZERO: case OP_ZERO_UNMAP: return TARGET_CAN_ZERO;
    case OP_DISCARD: return TARGET_CAN_DISCARD;
    case OP_WRITE_COMPRESSED: return TARGET_CAN_WRITE_COMPRESSED;
    case OP_FLUSH: return TARGET_CAN_FLUSH;
    case OP_SNAPSHOT_CREATE: case OP_SNAPSHOT_APPLY: case OP_SNAPSHOT_DELETE:
        return TARGET_CAN_SNAPSHOT;
    case OP_REOPEN: return TARGET_CAN_REOPEN;
    case OP_RESIZE: return TARGET_CAN_RESIZE;
    case OP_POWER_CUT: case OP_DIRTY_REOPEN: case OP_TORN_POWER_CUT: return TARGET_CAN_CRASH;
    default: return 0;
    }
}

static bool has_range(enum op_kind k)
{
    return k <= OP_WRITE_COMPRESSED;
}

/* Reads [off, off+len) from the target (or a snapshot) and the oracle, and compares. */
static enum step_outcome compare(struct step *st, const char *snapshot, uint64_t off,
                                 size_t len, struct step_result *r)
{
    struct target *t = st->t;
    int ret = snapshot ? t->ops->snapshot_read(t, snapshot, st->buf, len, off)
                       : t->ops->read(t, st->buf, len, off);
    if (ret)
        return end(r, STEP_TARGET_FAILED, ret);
    r->off = off;
    r->len = len;
    /* In place: the oracle's bytes are copied out only for the report of a difference. */
    ret = oracle_compare(st->o, snapshot, st->buf, len, off, &r->sector);
    if (ret == 1)
        ret = snapshot ? oracle_snapshot_read(st->o, snapshot, st->want, len, off)
                       : oracle_read(st->o, st->want, len, off);
    else if (!ret)
        return end(r, STEP_DONE, 0);
    return ret ? end(r, STEP_ORACLE_FAILED, ret) : end(r, STEP_DIVERGED, 0);
}

/*
 * [lo, hi) of the disk or a snapshot against the oracle, in pieces. The first piece is
 * another odd number of clusters each time: pieces of io_cap from lo would meet the
 * disk's boundaries (a backing file's end, L2 ranges) only at their ends. Whole clusters,
 * as a target may need its I/O aligned (QEMU's compress filter); pieces small enough that
 * the compare finds the bytes the read left in the cache.
 */
static enum step_outcome compare_range(struct step *st, const char *snapshot, uint64_t lo,
                                       uint64_t hi, struct step_result *r)
{
    size_t step = st->io_cap < COMPARE_PIECE ? st->io_cap : COMPARE_PIECE;
    uint64_t cs = st->facts.oracle.cluster_size ? st->facts.oracle.cluster_size : ORACLE_SECTOR;
    uint64_t pairs = step / cs / 2;
    uint64_t split = pairs ? (1 + 2 * ((uint64_t)st->full_reads * 2654435761u % pairs)) * cs
                           : step;
    st->full_reads++;
    for (uint64_t off = lo; off < hi;) {
        uint64_t want = off > lo ? step : split;
        size_t n = hi - off < want ? (size_t)(hi - off) : (size_t)want;
        enum step_outcome out = compare(st, snapshot, off, n, r);
        if (out != STEP_DONE)
            return out;
        off += n;
    }
    return end(r, STEP_DONE, 0);
}

/*
 * The part-th of `parts` stretches of the disk, each of whole clusters (the last may end
 * in the disk's partial cluster): together they are the disk, whatever its size then.
 */
static enum step_outcome compare_part(struct step *st, uint32_t part, uint32_t parts,
                                      struct step_result *r)
{
    memset(r, 0, sizeof(*r));
    uint64_t size = oracle_size(st->o) < st->facts.size ? oracle_size(st->o) : st->facts.size;
    uint64_t cs = st->facts.oracle.cluster_size ? st->facts.oracle.cluster_size : ORACLE_SECTOR;
    uint64_t clusters = (size + cs - 1) / cs;
    uint64_t lo = clusters * (part - 1) / parts * cs, hi = clusters * part / parts * cs;
    return compare_range(st, NULL, lo, hi < size ? hi : size, r);
}

/*
 * A slice found a difference: the disk below the slice too, so that the report names
 * the disk's first sector that differs (damage an earlier cut left where no slice has
 * looked since). The slice's piece is kept for the report if the disk below is right.
 */
static enum step_outcome first_difference(struct step *st, struct step_result *r)
{
    struct step_result below;
    uint8_t *got = malloc(r->len), *want = malloc(r->len);
    enum step_outcome out = STEP_DIVERGED;
    if (got && want) {
        memcpy(got, st->buf, r->len);
        memcpy(want, st->want, r->len);
        memset(&below, 0, sizeof(below));
        out = compare_range(st, NULL, 0, r->off, &below);
        if (out == STEP_DONE) {
            memcpy(st->buf, got, r->len);
            memcpy(st->want, want, r->len);
            out = STEP_DIVERGED;
        } else {
            *r = below;
        }
    }
    free(got);
    free(want);
    return out;
}

/*
 * After a power cut: every sector written since the last flush must hold one of the
 * versions it had since (unflushed.h); the oracle then takes what the target kept.
 */
static enum step_outcome settle_unflushed(struct step *st, uint32_t op, struct step_result *r)
{
    const uint64_t *sectors;
    size_t n = unflushed_sectors(st->unflushed, &sectors);
    for (size_t i = 0; i < n;) {
        size_t run = 1;
        while (i + run < n && sectors[i + run] == sectors[i] + run &&
               (run + 1) * ORACLE_SECTOR <= st->io_cap)
            run++;
        uint64_t off = sectors[i] * ORACLE_SECTOR;
        size_t len = run * ORACLE_SECTOR;
        int ret = st->t->ops->read(st->t, st->buf, len, off);
        if (ret)
            return end(r, STEP_TARGET_FAILED, ret);
        if ((ret = oracle_read(st->o, st->want, len, off)))
            return end(r, STEP_ORACLE_FAILED, ret);
        for (size_t k = 0; k < run; k++) {
            const uint8_t *got = st->buf + k * ORACLE_SECTOR;
            const uint8_t *latest = st->want + k * ORACLE_SECTOR;
            uint32_t author;
            if (!unflushed_acceptable(st->unflushed, sectors[i + k], got, latest, &author)) {
                r->off = off;
                r->len = len;
                r->sector = sectors[i + k];
                r->unflushed_sector = true;
                return end(r, STEP_CRASH_LOST, 0);
            }
            if (!memcmp(got, latest, ORACLE_SECTOR))
                continue;
            ret = oracle_write(st->o, got, ORACLE_SECTOR, (sectors[i + k]) * ORACLE_SECTOR,
                               author == UNFLUSHED_BY_CRASH ? op : author);
            if (ret)
                return end(r, STEP_ORACLE_FAILED, ret);
        }
        i += run;
    }
    return STEP_DONE;
}

/*
 * The torn cuts that did not check first (a check writes the cache back, leaving a
 * request less to order) fall inside a request, between the implementation's own
 * ordering points, which a cut between requests never reaches: a flush (the refcount
 * blocks on disk, the L2 tables that need them not), or on a version 3 image a snapshot
 * created for the cut and deleted after it if it survives (a new table written and the
 * header naming it). Neither changes the guest's bytes. A version 2 image has no dirty
 * bit to cover a snapshot operation cut midway. Returns 0, or the request's failure
 * other than the cut's -EIO; `name` gets the snapshot's name ("": none).
 */
static int interrupt_request(struct step *st, const struct op *op, char name[TARGET_ID_MAX])
{
    struct target *t = st->t;
    if (!t->ops->crash_arm)
        return 0;
    bool snapshot = op->n % 4 == 3 && target_can(t, TARGET_CAN_SNAPSHOT) &&
                    target_can(t, TARGET_CAN_SNAPSHOT_LIST) &&
                    st->facts.oracle.version >= 3;
    /* A snapshot create makes about six host flushes, a flush one or two. */
    int ret = t->ops->crash_arm(t, op->n, snapshot ? op->n / 4 % 6 : op->n / 4 % 2);
    if (ret)
        return ret;
    if (snapshot) {
        char id[TARGET_ID_MAX];
        snprintf(name, TARGET_ID_MAX, "cut%" PRIu32, op->n);
        ret = t->ops->snapshot_create(t, name, id);
    } else {
        ret = t->ops->flush(t);
    }
    return ret == -EIO || ret == TARGET_REFUSED ? 0 : ret;
}

/* The snapshot made for a cut, if it survived, goes: the oracle never knew it. */
static int drop_cut_snapshot(struct target *t, const char *name)
{
    struct target_snapshot list[SNAPSHOTS_SEEN];
    unsigned n;
    int ret = t->ops->snapshot_list(t, list, SNAPSHOTS_SEEN, &n);
    for (unsigned i = 0; !ret && i < n && i < SNAPSHOTS_SEEN; i++)
        if (!strcmp(list[i].name, name))
            return t->ops->snapshot_delete(t, list[i].id);
    return ret;
}

/* A power cut (or a kill without a clean close), the reopen, and what it must keep. */
static enum step_outcome crash(struct step *st, const struct op *op, struct step_result *r)
{
    const char *why;
    if (!st->unflushed)
        return skip(r, "no record of the unflushed writes");
    /*
     * A killed process keeps every write it issued but loses what the engine held in
     * memory (a write-back metadata cache, as QEMU's): it is judged as a power cut is.
     */
    bool keep = op->kind == OP_DIRTY_REOPEN;
    if (!unflushed_modelled(st->unflushed, &why))
        return skip(r, "%s", why);
    /*
     * The leaks a crash leaves are forgiven (and repaired) after it, so the image must have
     * none before: a leak of the engine's own would hide behind the crash. But a check
     * writes back what a write-back cache holds, and a cut after it would find nothing to
     * lose: so only the crashes of even-numbered ops check first (the op number is in the
     * trace, so a replay does the same).
     */
    bool check_first = op->n % 2 == 0 && target_can(st->t, TARGET_CAN_CHECK);
    int ret = check_first ? st->t->ops->check(st->t, &r->check) : 0;
    if (ret)
        return end(r, STEP_TARGET_FAILED, ret);
    if (r->check.leaks || r->check.corruptions || r->check.check_errors) {
        r->before_crash = true;
        return end(r, STEP_CRASH_DAMAGED, 0);
    }
    enum target_crash how = TARGET_CRASH_DROP;
    if (keep)
        how = TARGET_CRASH_KEEP;
    else if (op->kind == OP_TORN_POWER_CUT)
        how = TARGET_CRASH_TEAR;
    char cut_name[TARGET_ID_MAX] = "";
    if (how == TARGET_CRASH_TEAR && !check_first && (ret = interrupt_request(st, op, cut_name)))
        return end(r, STEP_TARGET_FAILED, ret);
    ret = st->t->ops->crash_reopen(st->t, how, op->n, &r->check);
    if (ret)
        return end(r, STEP_TARGET_FAILED, ret);
    if (r->check.corruptions || r->check.check_errors)
        return end(r, STEP_CRASH_DAMAGED, 0);
    if (cut_name[0] && (ret = drop_cut_snapshot(st->t, cut_name)))
        return end(r, STEP_TARGET_FAILED, ret);
    enum step_outcome out = settle_unflushed(st, op->n, r);
    if (out != STEP_DONE)
        return out;
    /* The facts may have been read before the crash; the size must not have changed. */
    if ((ret = st->t->ops->facts(st->t, &st->facts)))
        return end(r, STEP_TARGET_FAILED, ret);
    out = op->compare_parts ? compare_part(st, op->compare_part, op->compare_parts, r)
                            : step_compare(st, NULL, r);
    if (out == STEP_DIVERGED && op->compare_parts)
        out = first_difference(st, r);
    if (out == STEP_DIVERGED)
        return end(r, STEP_CRASH_LOST, 0);
    if (out == STEP_DONE)
        unflushed_flushed(st->unflushed, op->n);
    return out;
}

/* What the unflushed record must know before a data op changes the guest's bytes. */
static int note_before(struct step *st, const struct op *op)
{
    if (!st->unflushed || !has_range(op->kind) || op->kind == OP_READ)
        return 0;
    bool zeroing = op->kind != OP_WRITE && op->kind != OP_WRITE_COMPRESSED;
    return unflushed_before(st->unflushed, st->o, op->off, op->len, zeroing);
}

static int note_after(struct step *st, const struct op *op)
{
    switch (op->kind) {
    case OP_WRITE: case OP_ZERO: case OP_ZERO_UNMAP: case OP_DISCARD: case OP_WRITE_COMPRESSED:
        return unflushed_after(st->unflushed, st->o, op->off, op->len);
    case OP_FLUSH: case OP_REOPEN:
        unflushed_flushed(st->unflushed, op->n);
        return 0;
    case OP_SNAPSHOT_CREATE: case OP_SNAPSHOT_APPLY: case OP_SNAPSHOT_DELETE: case OP_RESIZE:
        unflushed_metadata_changed(st->unflushed);
        return 0;
    default:
        return 0;
    }
}

void step_flushed(struct step *st, uint32_t op)
{
    if (st->unflushed)
        unflushed_flushed(st->unflushed, op);
}

static enum step_outcome apply(struct step *st, const struct op *op, struct step_result *r)
{
    struct target *t = st->t;
    struct oracle *o = st->o;
    size_t len = (size_t)op->len;
    enum step_outcome out;
    switch (op->kind) {
    case OP_READ:
        return compare(st, NULL, op->off, len, r);
    case OP_WRITE:
        payload_fill(st->buf, op->off, len, op->n);
        if ((out = by_target(r, t->ops->write(t, st->buf, len, op->off))))
            return out;
        return by_oracle(r, oracle_write(o, st->buf, len, op->off, op->n));
    case OP_WRITE_COMPRESSED:
        if (!oracle_compressed_whole(o, op->len, op->off))
            return skip(r, "not whole clusters");
        payload_fill(st->buf, op->off, len, op->n);
        if ((out = by_target(r, t->ops->write_compressed(t, st->buf, len, op->off))))
            return out;
        return by_oracle(r, oracle_write_compressed(o, st->buf, len, op->off, op->n));
    case OP_ZERO:
    case OP_ZERO_UNMAP:
        if ((out = by_target(r, t->ops->zero(t, op->len, op->off, op->kind == OP_ZERO_UNMAP))))
            return out;
        return by_oracle(r, oracle_zero(o, op->len, op->off, op->n));
    case OP_DISCARD:
        if ((out = by_target(r, t->ops->discard(t, op->len, op->off))))
            return out;
        return by_oracle(r, oracle_discard(o, op->len, op->off, op->n));
    case OP_FLUSH:
        return by_target(r, t->ops->flush(t));
    case OP_REOPEN:
        return by_target(r, t->ops->reopen(t));
    case OP_SNAPSHOT_CREATE: {
        if (oracle_snapshot_count(o) >= st->max_snapshots)
            return skip(r, "%u snapshots already", st->max_snapshots);
        char id[TARGET_ID_MAX];
        if ((out = by_target(r, t->ops->snapshot_create(t, op->snapshot, id))))
            return out;
        return by_oracle(r, oracle_snapshot_create(o, id));
    }
    case OP_SNAPSHOT_APPLY:
    case OP_SNAPSHOT_DELETE:
        if (!oracle_snapshot_size(o, op->snapshot))
            return skip(r, "no snapshot %s", op->snapshot);
        if (op->kind == OP_SNAPSHOT_APPLY) {
            if ((out = by_target(r, t->ops->snapshot_apply(t, op->snapshot))))
                return out;
            return by_oracle(r, oracle_snapshot_apply(o, op->snapshot));
        }
        if ((out = by_target(r, t->ops->snapshot_delete(t, op->snapshot))))
            return out;
        return by_oracle(r, oracle_snapshot_delete(o, op->snapshot));
    case OP_RESIZE:
        if (!op->len || op->len % ORACLE_SECTOR)
            return skip(r, "a size that is not a positive multiple of %u", ORACLE_SECTOR);
        if ((out = by_target(r, t->ops->resize(t, op->len))))
            return out;
        return by_oracle(r, oracle_resize(o, op->len, op->n));
    case OP_POWER_CUT:
    case OP_DIRTY_REOPEN:
    case OP_TORN_POWER_CUT:
        return crash(st, op, r);
    default:
        return skip(r, "not an operation");
    }
}

int step_start(struct step *st)
{
    return st->t->ops->facts(st->t, &st->facts);
}

enum step_outcome step_run(struct step *st, const struct op *op, struct step_result *r)
{
    memset(r, 0, sizeof(*r));
    if (!target_can(st->t, step_needs(op->kind)))
        return skip(r, "the %s target cannot %s", st->t->ops->name, op_kind_name(op->kind));
    uint64_t size = st->facts.size;
    if (has_range(op->kind) && (!op->len || op->off >= size || op->len > size - op->off))
        return skip(r, "outside the %" PRIu64 "-byte disk", size);
    if (has_range(op->kind) && op->len > st->io_cap)
        return skip(r, "longer than %zu bytes", st->io_cap);
    int ret = note_before(st, op);
    if (ret)
        return end(r, STEP_ORACLE_FAILED, ret);
    enum step_outcome out = apply(st, op, r);
    if (out != STEP_DONE && out != STEP_REFUSED)
        return out;
    if (st->unflushed && (ret = note_after(st, op)))
        return end(r, STEP_ORACLE_FAILED, ret);
    /* Whatever the op, done or declined, the disk must be the size the oracle says. */
    ret = st->t->ops->facts(st->t, &st->facts);
    if (ret)
        return end(r, STEP_TARGET_FAILED, ret);
    if (st->facts.size != oracle_size(st->o))
        return end(r, STEP_SIZE_DIVERGED, 0);
    return out;
}

enum step_outcome step_compare(struct step *st, const char *snapshot, struct step_result *r)
{
    memset(r, 0, sizeof(*r));
    if (snapshot && !target_can(st->t, TARGET_CAN_SNAPSHOT_READ))
        return skip(r, "the %s target cannot read snapshots", st->t->ops->name);
    uint64_t size = snapshot ? oracle_snapshot_size(st->o, snapshot) : oracle_size(st->o);
    return compare_range(st, snapshot, 0, size < st->facts.size ? size : st->facts.size, r);
}
