/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The step function (harness/soak/step.h), on a qvet target in memory and an oracle in
 * memory: what it does, what it skips and why, what it calls a refusal, and how it sees a
 * target that differs from the oracle (a read, a size, a snapshot).
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "soak.h"
#include "step.h"
#include "support.h"
#include "target.h"

#define DISK (1u << 20)
#define IO_CAP (256u << 10)

struct rig {
    struct step st;
    uint8_t buf[IO_CAP], want[IO_CAP];
};

static struct rig *rig_up(const char *options)
{
    struct rig *g = calloc(1, sizeof(*g));
    ck_assert_ptr_nonnull(g);
    struct target_params p = { .path = "/nonexistent-qvet-test/step.qcow2", .in_memory = true,
                               .max_file = 16u << 20, .size = DISK, .options = options };
    char errbuf[512];
    ck_assert_msg(target_create("qvet", &p, &g->st.t, errbuf, sizeof(errbuf)) == 0, "%s",
                  errbuf);
    g->st.max_snapshots = 2;
    g->st.buf = g->buf;
    g->st.want = g->want;
    g->st.io_cap = IO_CAP;
    ck_assert_int_eq(step_start(&g->st), 0);
    ck_assert_int_eq(oracle_create_mem(DISK, NULL, 0, &g->st.facts.oracle, &g->st.o, errbuf,
                                       sizeof(errbuf)), 0);
    return g;
}

static void rig_down(struct rig *g)
{
    g->st.t->ops->close(g->st.t);
    oracle_close(g->st.o);
    free(g);
}

static struct op op_of(uint32_t n, enum op_kind kind, uint64_t off, uint64_t len,
                       const char *snapshot)
{
    struct op op = { .n = n, .kind = kind, .off = off, .len = len };
    if (snapshot)
        snprintf(op.snapshot, sizeof(op.snapshot), "%s", snapshot);
    return op;
}

static enum step_outcome run(struct rig *g, struct op op, struct step_result *r)
{
    return step_run(&g->st, &op, r);
}

static void expect_skipped(struct rig *g, struct op op, const char *why)
{
    struct step_result r;
    ck_assert_int_eq(run(g, op, &r), STEP_SKIPPED);
    ck_assert_msg(strstr(r.why, why), "skipped because '%s', expected '%s'", r.why, why);
}

START_TEST(each_op_reaches_the_target_and_the_oracle_alike)
{
    struct rig *g = rig_up("cluster_size=4k");
    struct step_result r;
    ck_assert_int_eq(run(g, op_of(1, OP_WRITE, 1000, 9000, NULL), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(2, OP_ZERO, 4096, 512, NULL), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(3, OP_DISCARD, 8192, 4096, NULL), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(4, OP_WRITE_COMPRESSED, 65536, 4096, NULL), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(5, OP_SNAPSHOT_CREATE, 0, 0, "s5"), &r), STEP_DONE);
    ck_assert_uint_eq(oracle_snapshot_count(g->st.o), 1);
    const char *id = oracle_snapshot_id(g->st.o, 0);
    ck_assert_int_eq(run(g, op_of(6, OP_WRITE, 0, 4096, NULL), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(7, OP_RESIZE, 0, 2 * DISK, NULL), &r), STEP_DONE);
    ck_assert_uint_eq(g->st.facts.size, 2 * DISK);
    ck_assert_int_eq(run(g, op_of(8, OP_REOPEN, 0, 0, NULL), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(9, OP_READ, 0, 12000, NULL), &r), STEP_DONE);
    ck_assert_int_eq(step_compare(&g->st, id, &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(10, OP_SNAPSHOT_APPLY, 0, 0, id), &r), STEP_DONE);
    ck_assert_uint_eq(g->st.facts.size, DISK);
    ck_assert_int_eq(step_compare(&g->st, NULL, &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(11, OP_SNAPSHOT_DELETE, 0, 0, id), &r), STEP_DONE);
    ck_assert_uint_eq(oracle_snapshot_count(g->st.o), 0);
    ck_assert_int_eq(run(g, op_of(12, OP_FLUSH, 0, 0, NULL), &r), STEP_DONE);
    /* The data written is op 1's payload, as the oracle records. */
    ck_assert_uint_eq(oracle_sector_author(g->st.o, 1000 / 512 + 1), 1);
    rig_down(g);
}
END_TEST

START_TEST(what_cannot_be_issued_is_skipped_with_a_reason)
{
    struct rig *g = rig_up("cluster_size=4k");
    expect_skipped(g, op_of(1, OP_READ, DISK - 100, 200, NULL),
                   "outside the 1048576-byte disk");
    expect_skipped(g, op_of(2, OP_WRITE, DISK, 1, NULL), "outside");
    expect_skipped(g, op_of(3, OP_DISCARD, 0, 0, NULL), "outside");
    expect_skipped(g, op_of(4, OP_WRITE, 0, IO_CAP + 512, NULL), "longer than 262144 bytes");
    expect_skipped(g, op_of(5, OP_WRITE_COMPRESSED, 100, 4096, NULL), "not whole clusters");
    expect_skipped(g, op_of(6, OP_SNAPSHOT_APPLY, 0, 0, "7"), "no snapshot 7");
    expect_skipped(g, op_of(7, OP_SNAPSHOT_DELETE, 0, 0, "7"), "no snapshot 7");
    expect_skipped(g, op_of(8, OP_RESIZE, 0, 1000, NULL), "not a positive multiple of 512");
    struct step_result r;
    ck_assert_int_eq(run(g, op_of(9, OP_SNAPSHOT_CREATE, 0, 0, "a"), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(10, OP_SNAPSHOT_CREATE, 0, 0, "b"), &r), STEP_DONE);
    expect_skipped(g, op_of(11, OP_SNAPSHOT_CREATE, 0, 0, "c"), "2 snapshots already");
    /* A target without a capability: its ops are skipped, never issued. */
    g->st.t->caps &= ~(TARGET_CAN_RESIZE | TARGET_CAN_SNAPSHOT_READ);
    expect_skipped(g, op_of(12, OP_RESIZE, 0, 2 * DISK, NULL), "the qvet target cannot resize");
    ck_assert_uint_eq(g->st.facts.size, DISK);
    ck_assert_int_eq(step_compare(&g->st, oracle_snapshot_id(g->st.o, 0), &r), STEP_SKIPPED);
    ck_assert_msg(strstr(r.why, "cannot read snapshots"), "%s", r.why);
    rig_down(g);
}
END_TEST

START_TEST(a_documented_refusal_changes_nothing)
{
    struct rig *g = rig_up("cluster_size=4k");
    struct step_result r;
    ck_assert_int_eq(run(g, op_of(1, OP_WRITE, 0, 4096, NULL), &r), STEP_DONE);
    ck_assert_int_eq(run(g, op_of(2, OP_WRITE_COMPRESSED, 0, 4096, NULL), &r), STEP_REFUSED);
    ck_assert_msg(strstr(g->st.t->message, "compressed"), "%s", g->st.t->message);
    ck_assert_uint_eq(oracle_sector_author(g->st.o, 0), 1);
    ck_assert_int_eq(run(g, op_of(3, OP_READ, 0, 4096, NULL), &r), STEP_DONE);
    rig_down(g);
}
END_TEST

START_TEST(a_target_unlike_the_oracle_is_seen)
{
    struct rig *g = rig_up("cluster_size=4k");
    struct step_result r;
    ck_assert_int_eq(run(g, op_of(1, OP_WRITE, 0, 8192, NULL), &r), STEP_DONE);
    /* Behind the oracle's back: one byte of sector 9 changes. */
    uint8_t byte = 0xff;
    ck_assert_int_eq(g->st.t->ops->write(g->st.t, &byte, 1, 9 * 512 + 7), 0);
    ck_assert_int_eq(run(g, op_of(2, OP_READ, 1024, 7000, NULL), &r), STEP_DIVERGED);
    ck_assert_uint_eq(r.sector, 9);
    ck_assert_uint_eq(r.off, 1024);
    ck_assert_uint_eq(r.len, 7000);
    ck_assert_int_eq(g->st.buf[9 * 512 + 7 - 1024], 0xff);
    ck_assert_int_ne(g->st.want[9 * 512 + 7 - 1024], 0xff);
    ck_assert_int_eq(step_compare(&g->st, NULL, &r), STEP_DIVERGED);
    ck_assert_uint_eq(r.sector, 9);

    /* The disk grown behind the oracle's back: the next op the target runs says so. */
    ck_assert_int_eq(g->st.t->ops->resize(g->st.t, 2 * DISK), 0);
    ck_assert_int_eq(run(g, op_of(3, OP_FLUSH, 0, 0, NULL), &r), STEP_SIZE_DIVERGED);
    ck_assert_uint_eq(g->st.facts.size, 2 * DISK);
    rig_down(g);
}
END_TEST

static Suite *step_suite(void)
{
    Suite *s = suite_create("step");
    TCase *t = tcase_create("step");
    tcase_add_test(t, each_op_reaches_the_target_and_the_oracle_alike);
    tcase_add_test(t, what_cannot_be_issued_is_skipped_with_a_reason);
    tcase_add_test(t, a_documented_refusal_changes_nothing);
    tcase_add_test(t, a_target_unlike_the_oracle_is_seen);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run_suite(step_suite());
}
