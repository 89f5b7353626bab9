/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_ops: structure-aware, and the soak in miniature. The input decodes into an image
 * configuration (its first bytes) and a list of operations (six bytes each), each run by
 * the soak's own step function (harness/soak/step.h) against the qvet target in memory
 * (no file is touched) and predicted by an oracle in memory. Every read is compared;
 * after every op the disk must be the oracle's size; at the end the whole disk and every
 * snapshot are compared and the target's check must find the image consistent. Any
 * difference aborts, so the fuzzer reports a logic bug as a crash. It reaches the engine
 * only through the target seam.
 *
 *   byte 0: cluster size (512 B .. 64 KiB), version, extended L2
 *   byte 1: refcount width (1..64 bits), compression type, lazy refcounts
 *   byte 2: disk size (16 KiB steps up to 1 MiB), plus 0..3 sectors
 *   then per op: kind (enum op_kind), offset (2 bytes, scaled to the disk), length (2
 *   bytes), spare (the snapshot an apply or delete takes; for a resize, bit 7 shrinks
 *   instead of growing and the low bits say by how many clusters)
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "input.h"
#include "soak.h"
#include "step.h"
#include "target.h"

#define OPS_MAX 64u
#define OP_BYTES 6u
#define MAX_DISK (2u << 20)         /* grown disks stay below this */
#define MAX_FILE (64u << 20)
#define MAX_SNAPSHOTS 4u
#define CACHE_BYTES (256u << 10)    /* small, so eviction is exercised */
#define IMAGE_NAME "/nonexistent-qvet-fuzz/ops.qcow2"

static uint8_t buf[MAX_DISK];
static uint8_t want[MAX_DISK];

/* The create options the first three bytes choose, as `qvet create -o` takes them. */
static uint64_t configure(struct fuzz_input *in, char *options, size_t cap)
{
    static const uint32_t cluster_sizes[] = { 512, 1024, 4096, 16384, 65536 };
    uint8_t a = fuzz_input_u8(in), b = fuzz_input_u8(in), c = fuzz_input_u8(in);
    uint32_t cs = cluster_sizes[a % 5];
    if ((a >> 3) & 1) {
        snprintf(options, cap, "compat=0.10,cluster_size=%" PRIu32, cs);
    } else {
        snprintf(options, cap, "cluster_size=%" PRIu32 ",refcount_bits=%u%s%s%s", cs,
                 1u << (b % 7), cs >= 16384 && ((a >> 4) & 1) ? ",extended_l2=on" : "",
                 (b >> 3) & 1 ? ",compression_type=zstd" : "",
                 (b >> 4) & 1 ? ",lazy_refcounts=on" : "");
    }
    return ((uint64_t)(c % 64) + 1) * 16384 + ((c >> 6) & 3) * 512;
}

/* A resize by `spare`: bit 7 shrinks, the low bits say by how many clusters (1..4). */
static uint64_t resize_target(uint64_t size, uint64_t cs, uint8_t spare)
{
    uint64_t delta = cs * (1u + spare % 4u);
    if (spare & 0x80)
        return size > delta ? size - delta : size;
    return size + delta;
}

/* Op `n` from its six bytes; false when it is not worth issuing (a resize out of bounds). */
static bool decode(struct fuzz_input *in, uint32_t n, const struct step *st, struct op *op)
{
    enum op_kind kind = (enum op_kind)fuzz_input_range(in, 0, OP_KINDS - 1);
    uint64_t disk = st->facts.size, cs = st->facts.oracle.cluster_size;
    uint64_t off = fuzz_input_u16(in) * disk / 65536u;
    uint64_t len = fuzz_input_u16(in) % (3 * cs) + 1;
    uint8_t spare = fuzz_input_u8(in);
    *op = (struct op){ .n = n, .kind = kind, .off = off, .len = len < disk - off ? len
                                                                             : disk - off };
    uint32_t snapshots = oracle_snapshot_count(st->o);
    switch (kind) {
    case OP_WRITE_COMPRESSED:
        op->off = off / cs * cs;
        op->len = cs < disk - op->off ? cs : disk - op->off;
        return true;
    case OP_SNAPSHOT_CREATE:
        snprintf(op->snapshot, sizeof(op->snapshot), "s%" PRIu32, n);
        return true;
    case OP_SNAPSHOT_APPLY:
    case OP_SNAPSHOT_DELETE:
        if (snapshots)
            snprintf(op->snapshot, sizeof(op->snapshot), "%s",
                     oracle_snapshot_id(st->o, spare % snapshots));
        return true;
    case OP_RESIZE:
        op->len = resize_target(disk, cs, spare);
        return op->len <= MAX_DISK && op->len != disk;
    default:
        return true;
    }
}

/* What the step found, as a finding. */
static void judge(const struct step *st, const struct op *op, const struct step_result *r,
                  const char *what)
{
    char line[160];
    op_format(op, line, sizeof(line));
    switch (r->outcome) {
    case STEP_DIVERGED: {
        size_t i = r->sector * ORACLE_SECTOR > r->off ? r->sector * ORACLE_SECTOR - r->off : 0;
        while (st->buf[i] == st->want[i])
            i++;
        fuzz_fail("%s (op %s): guest byte %" PRIu64 " reads 0x%02x, the oracle says 0x%02x",
                  what, line, r->off + i, st->buf[i], st->want[i]);
    }
    case STEP_SIZE_DIVERGED:
        fuzz_fail("after op %s the disk is %" PRIu64 " bytes, the oracle's %" PRIu64, line,
                  st->facts.size, oracle_size(st->o));
    case STEP_TARGET_FAILED:
        fuzz_fail("%s (op %s) failed: %s (%d)", what, line, st->t->message, r->error);
    case STEP_ORACLE_FAILED:
        fuzz_fail("%s (op %s): the oracle failed: %d", what, line, r->error);
    default:
        break;
    }
}

/* The end: the whole disk and every snapshot as the oracle says, and a clean check. */
static void finish(struct step *st, uint32_t n_ops)
{
    struct step_result r;
    struct op last = { .n = n_ops, .kind = OP_READ, .len = st->facts.size };
    step_compare(st, NULL, &r);
    judge(st, &last, &r, "final read");
    if (st->t->ops->flush(st->t))
        fuzz_fail("the final flush failed: %s", st->t->message);
    for (uint32_t i = 0; i < oracle_snapshot_count(st->o); i++) {
        step_compare(st, oracle_snapshot_id(st->o, i), &r);
        judge(st, &last, &r, "snapshot read");
    }
    struct target_check c;
    if (st->t->ops->check(st->t, &c) || c.corruptions || c.leaks || c.check_errors)
        fuzz_fail("after %" PRIu32 " ops the checker finds %" PRIu64 " corruptions, %" PRIu64
                  " leaks, %" PRIu64 " errors: %s", n_ops, c.corruptions, c.leaks,
                  c.check_errors, st->t->message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in;
    fuzz_input_init(&in, data, size);
    if (size < 3)
        return 0;
    char options[160], errbuf[2400];
    uint64_t disk = configure(&in, options, sizeof(options));
    const struct target_params params = {
        .path = IMAGE_NAME, .in_memory = true, .max_file = MAX_FILE, .size = disk,
        .options = options, .cache_bytes = CACHE_BYTES,
    };
    struct step st = { .max_snapshots = MAX_SNAPSHOTS, .buf = buf, .want = want,
                       .io_cap = MAX_DISK };
    if (target_create("qvet", &params, &st.t, errbuf, sizeof(errbuf)))
        fuzz_fail("no image for -o %s: %s", options, errbuf);
    if (step_start(&st))
        fuzz_fail("the new image has no facts: %s", st.t->message);
    if (oracle_create_mem(disk, NULL, 0, &st.facts.oracle, &st.o, errbuf, sizeof(errbuf)))
        fuzz_fail("no oracle for the image: %s", errbuf);
    uint32_t n_ops = (uint32_t)(fuzz_input_left(&in) / OP_BYTES);
    if (n_ops > OPS_MAX)
        n_ops = OPS_MAX;
    for (uint32_t n = 1; n <= n_ops; n++) {
        struct op op;
        struct step_result r;
        if (!decode(&in, n, &st, &op))
            continue;
        enum step_outcome out = step_run(&st, &op, &r);
        char line[160];
        op_format(&op, line, sizeof(line));
        fuzz_debug("op %s: outcome %d%s%s", line, (int)out, r.why[0] ? ", " : "", r.why);
        judge(&st, &op, &r, op_kind_name(op.kind));
    }
    finish(&st, n_ops);
    st.t->ops->close(st.t);
    oracle_close(st.o);
    return 0;
}
