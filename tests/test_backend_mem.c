/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The in-memory backend: a file that grows by writes and truncates, reads zeros past its
 * end and wherever it grew over bytes it had cut, and refuses to pass its limit; a new
 * file holds nothing of the one destroyed before it (whose mapping it may reuse).
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "qcow2.h"
#include "support.h"

#define LIMIT (256u * 1024u)

static void expect_fill(struct qcow2_backend *b, uint64_t off, size_t len, uint8_t byte,
                        const char *when)
{
    static uint8_t buf[LIMIT];
    ck_assert_int_eq(b->ops->read(b, buf, len, off), 0);
    /* One check per byte is seconds under a sanitizer: only a wrong byte is reported. */
    for (size_t i = 0; i < len; i++)
        if (buf[i] != byte)
            ck_abort_msg("%s: byte %llu: expected 0x%02x, got 0x%02x", when,
                         (unsigned long long)(off + i), byte, buf[i]);
}

static uint64_t length_of(struct qcow2_backend *b)
{
    uint64_t len = 0;
    ck_assert_int_eq(b->ops->size(b, &len), 0);
    return len;
}

START_TEST(growing_over_cut_bytes_reads_zeros)
{
    struct qcow2_backend *b;
    ck_assert_int_eq(qcow2_backend_mem_new(NULL, 0, LIMIT, &b), 0);
    static uint8_t ones[LIMIT];
    memset(ones, 0x11, sizeof(ones));
    ck_assert_int_eq(b->ops->write(b, ones, 100000, 1000), 0);
    ck_assert_uint_eq(length_of(b), 101000);
    expect_fill(b, 0, 1000, 0, "the gap before the first write");
    expect_fill(b, 1000, 100000, 0x11, "written");
    expect_fill(b, 101000, 5000, 0, "past the end");

    ck_assert_int_eq(b->ops->truncate(b, 5000), 0);
    ck_assert_uint_eq(length_of(b), 5000);
    expect_fill(b, 5000, 4096, 0, "past a cut");
    /* Growing again, by a truncate and by a write past the end: the cut bytes are gone. */
    ck_assert_int_eq(b->ops->truncate(b, 50000), 0);
    expect_fill(b, 1000, 4000, 0x11, "kept by the cut");
    expect_fill(b, 5000, 45000, 0, "grown by a truncate over cut bytes");
    ck_assert_int_eq(b->ops->truncate(b, 20000), 0);
    ck_assert_int_eq(b->ops->write(b, ones, 10, 90000), 0);
    expect_fill(b, 20000, 70000, 0, "grown by a write over cut bytes");
    expect_fill(b, 90000, 10, 0x11, "the write past the end");
    b->ops->destroy(b);
}
END_TEST

START_TEST(the_limit_holds)
{
    static uint8_t bytes[8192];
    memset(bytes, 0x22, sizeof(bytes));
    struct qcow2_backend *b;
    ck_assert_int_eq(qcow2_backend_mem_new(bytes, sizeof(bytes), 3 * 4096, &b), 0);
    expect_fill(b, 0, sizeof(bytes), 0x22, "the initial bytes");
    ck_assert_int_eq(b->ops->write(b, bytes, 4097, 8192), -ENOSPC);
    ck_assert_int_eq(b->ops->truncate(b, 3 * 4096 + 1), -ENOSPC);
    ck_assert_uint_eq(length_of(b), sizeof(bytes));
    ck_assert_int_eq(b->ops->write(b, bytes, 4096, 8192), 0);
    ck_assert_uint_eq(length_of(b), 3 * 4096);
    size_t len;
    const uint8_t *data = qcow2_backend_mem_data(b, &len);
    ck_assert_uint_eq(len, 3 * 4096);
    ck_assert_uint_eq(data[len - 1], 0x22);
    b->ops->destroy(b);

    /* A limit below the initial bytes is raised to them, as before. */
    ck_assert_int_eq(qcow2_backend_mem_new(bytes, sizeof(bytes), 0, &b), 0);
    ck_assert_int_eq(b->ops->write(b, bytes, 1, sizeof(bytes)), -ENOSPC);
    b->ops->destroy(b);
}
END_TEST

START_TEST(a_new_file_holds_nothing_of_a_destroyed_one)
{
    static uint8_t ones[LIMIT];
    memset(ones, 0x11, sizeof(ones));
    for (int round = 0; round < 3; round++) {
        struct qcow2_backend *b;
        ck_assert_int_eq(qcow2_backend_mem_new(ones, 16, LIMIT, &b), 0);
        expect_fill(b, 0, 16, 0x11, "the initial bytes");
        ck_assert_int_eq(b->ops->truncate(b, LIMIT), 0);
        expect_fill(b, 16, LIMIT - 16, 0x00, "the file grown to its limit");
        /* Written everywhere, then cut: the next file must not see any of it. */
        ck_assert_int_eq(b->ops->write(b, ones, LIMIT, 0), 0);
        ck_assert_int_eq(b->ops->truncate(b, 4096), 0);
        b->ops->destroy(b);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backend_mem");
    TCase *tc = tcase_create("mem");
    tcase_add_test(tc, growing_over_cut_bytes_reads_zeros);
    tcase_add_test(tc, the_limit_holds);
    tcase_add_test(tc, a_new_file_holds_nothing_of_a_destroyed_one);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
