/* SPDX-License-Identifier: BSD-2-Clause */
/* The metadata cache: hits, misses, LRU eviction, bounded memory. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "qcow2.h"
#include "support.h"

#define TABLE 512u

/* A backend over a file of 64 tables, each filled with its own index. */
static struct qcow2_backend *table_file(void)
{
    static uint8_t file[64 * TABLE];
    for (unsigned i = 0; i < 64; i++)
        memset(file + i * TABLE, (int)i, TABLE);
    struct qcow2_backend *b;
    ck_assert_int_eq(qcow2_backend_mem_new(file, sizeof(file), sizeof(file), &b), 0);
    return b;
}

START_TEST(hit_returns_the_table_read_on_miss)
{
    struct qcow2_backend *b = table_file();
    struct cache *c;
    ck_assert_int_eq(cache_new(4, TABLE, &c), 0);
    const uint8_t *t;
    ck_assert_int_eq(cache_get(c, b, 5 * TABLE, &t), 0);
    ck_assert_msg(t[0] == 5 && t[TABLE - 1] == 5, "expected table 5, got bytes %u..%u", t[0],
                  t[TABLE - 1]);
    const uint8_t *again;
    ck_assert_int_eq(cache_get(c, b, 5 * TABLE, &again), 0);
    ck_assert_ptr_eq(t, again);
    cache_free(c);
    qcow2_backend_destroy(b);
}
END_TEST

START_TEST(least_recently_used_table_is_evicted)
{
    struct qcow2_backend *b = table_file();
    struct cache *c;
    ck_assert_int_eq(cache_new(2, TABLE, &c), 0);
    const uint8_t *t1, *t2, *t;
    ck_assert_int_eq(cache_get(c, b, 1 * TABLE, &t1), 0);
    ck_assert_int_eq(cache_get(c, b, 2 * TABLE, &t2), 0);
    ck_assert_int_eq(cache_get(c, b, 1 * TABLE, &t), 0);   /* 1 is now the most recent */
    ck_assert_int_eq(cache_get(c, b, 3 * TABLE, &t), 0);   /* evicts 2 */
    ck_assert_ptr_eq(t, t2);
    ck_assert_uint_eq(t[0], 3);
    ck_assert_int_eq(cache_get(c, b, 1 * TABLE, &t), 0);
    ck_assert_ptr_eq(t, t1);
    ck_assert_uint_eq(t[0], 1);
    cache_free(c);
    qcow2_backend_destroy(b);
}
END_TEST

START_TEST(many_tables_through_few_slots_stay_correct)
{
    struct qcow2_backend *b = table_file();
    struct cache *c;
    ck_assert_int_eq(cache_new(3, TABLE, &c), 0);
    for (unsigned round = 0; round < 5; round++) {
        for (unsigned i = 0; i < 64; i += 1 + round) {
            const uint8_t *t;
            ck_assert_int_eq(cache_get(c, b, (uint64_t)i * TABLE, &t), 0);
            ck_assert_msg(t[0] == i && t[TABLE / 2] == i, "table %u: got %u", i, t[0]);
        }
    }
    ck_assert_uint_eq(cache_slot_count(c), 3);
    cache_drop(c);
    const uint8_t *t;
    ck_assert_int_eq(cache_get(c, b, 7 * TABLE, &t), 0);
    ck_assert_uint_eq(t[0], 7);
    cache_free(c);
    qcow2_backend_destroy(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("lru");
    tcase_add_test(tc, hit_returns_the_table_read_on_miss);
    tcase_add_test(tc, least_recently_used_table_is_evicted);
    tcase_add_test(tc, many_tables_through_few_slots_stay_correct);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
