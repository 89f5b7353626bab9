/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The metadata cache: hits, misses, LRU eviction, bounded memory; and write-back: what
 * it writes, when, and in which order against the cache it depends on.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "image.h"
#include "qcow2.h"
#include "support.h"

#define TABLE 512u
#define TABLES 64u
#define EVENTS 64u

/*
 * A file of 64 tables, each filled with its own index, that logs every write and flush
 * as "w<table>" or "f" (and "r<table>" for reads), and can fail its next write.
 */
struct logged_file {
    struct qcow2_backend base;
    uint8_t bytes[TABLES * TABLE];
    char log[EVENTS][8];
    unsigned events;
    bool fail_next_write;
};

static void note(struct logged_file *f, char kind, uint64_t off)
{
    if (f->events < EVENTS) {
        if (kind == 'f')
            snprintf(f->log[f->events], sizeof(f->log[0]), "f");
        else
            snprintf(f->log[f->events], sizeof(f->log[0]), "%c%u", kind,
                     (unsigned)(off / TABLE));
    }
    f->events++;
}

static int logged_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    struct logged_file *f = (struct logged_file *)b;
    note(f, 'r', off);
    memcpy(buf, f->bytes + off, len);
    return 0;
}

static int logged_write(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off)
{
    struct logged_file *f = (struct logged_file *)b;
    if (f->fail_next_write) {
        f->fail_next_write = false;
        return -EIO;
    }
    note(f, 'w', off);
    memcpy(f->bytes + off, buf, len);
    return 0;
}

static int logged_flush(struct qcow2_backend *b)
{
    note((struct logged_file *)b, 'f', 0);
    return 0;
}

static const struct qcow2_backend_ops logged_ops = {
    .read = logged_read, .write = logged_write, .flush = logged_flush,
};

struct fixture {
    struct logged_file file;
    struct qcow2_image img;
};

static struct fixture *fixture_new(void)
{
    struct fixture *x = calloc(1, sizeof(*x));
    ck_assert_ptr_nonnull(x);
    x->file.base.ops = &logged_ops;
    for (unsigned i = 0; i < TABLES; i++)
        memset(x->file.bytes + i * TABLE, (int)i, TABLE);
    x->img.backend = &x->file.base;
    x->img.name = "logged";
    x->img.file_size = sizeof(x->file.bytes);
    return x;
}

/* The events since the last call, space-separated ("w3 f w5"), then forgotten. */
static const char *events(struct fixture *x)
{
    static char out[EVENTS * 8];
    out[0] = '\0';
    for (unsigned i = 0; i < x->file.events && i < EVENTS; i++) {
        if (i)
            strcat(out, " ");
        strcat(out, x->file.log[i]);
    }
    x->file.events = 0;
    return out;
}

static void expect_events(struct fixture *x, const char *want)
{
    const char *got = events(x);
    ck_assert_msg(strcmp(got, want) == 0, "expected the file to see \"%s\", it saw \"%s\"",
                  want, got);
}

/* Writes cache `c` back (it must succeed) and returns only the events of that writeback. */
static const char *writeback_events(struct fixture *x, struct cache *c)
{
    events(x);
    ck_assert_int_eq(cache_writeback(c, &x->img, NULL), 0);
    return events(x);
}

static void expect_writeback(struct fixture *x, struct cache *c, const char *want)
{
    const char *got = writeback_events(x, c);
    ck_assert_msg(strcmp(got, want) == 0,
                  "expected the writeback to write \"%s\", it wrote \"%s\"", want, got);
}

/* Sets byte `at` of cached table `index` to `value` and marks it dirty. */
static void change(struct fixture *x, struct cache *c, unsigned index, uint32_t at,
                   uint8_t value)
{
    uint8_t *t;
    ck_assert_int_eq(cache_get_mut(c, &x->img, (uint64_t)index * TABLE, &t, NULL), 0);
    t[at] = value;
    cache_mark_dirty(c, (uint64_t)index * TABLE, at, 1);
}

/* A file with a refcount block cache and an L2 cache of `l2_slots` that depends on it. */
static struct fixture *two_caches(uint32_t l2_slots, struct cache **refblocks,
                                  struct cache **l2)
{
    struct fixture *x = fixture_new();
    ck_assert_int_eq(cache_new(4, TABLE, "refcount block", refblocks), 0);
    ck_assert_int_eq(cache_new(l2_slots, TABLE, "L2 table", l2), 0);
    cache_depend_on(*l2, *refblocks);
    return x;
}

static void free_all(struct fixture *x, struct cache *a, struct cache *b)
{
    cache_free(a);
    cache_free(b);
    free(x);
}

START_TEST(hit_returns_the_table_read_on_miss)
{
    struct fixture *x = fixture_new();
    struct cache *c;
    ck_assert_int_eq(cache_new(4, TABLE, "table", &c), 0);
    const uint8_t *t;
    ck_assert_int_eq(cache_get(c, &x->img, 5 * TABLE, &t, NULL), 0);
    ck_assert_msg(t[0] == 5 && t[TABLE - 1] == 5, "expected table 5, got bytes %u..%u", t[0],
                  t[TABLE - 1]);
    const uint8_t *again;
    ck_assert_int_eq(cache_get(c, &x->img, 5 * TABLE, &again, NULL), 0);
    ck_assert_ptr_eq(t, again);
    expect_events(x, "r5");
    free_all(x, c, NULL);
}
END_TEST

START_TEST(least_recently_used_table_is_evicted)
{
    struct fixture *x = fixture_new();
    struct cache *c;
    ck_assert_int_eq(cache_new(2, TABLE, "table", &c), 0);
    const uint8_t *t1, *t2, *t;
    ck_assert_int_eq(cache_get(c, &x->img, 1 * TABLE, &t1, NULL), 0);
    ck_assert_int_eq(cache_get(c, &x->img, 2 * TABLE, &t2, NULL), 0);
    ck_assert_int_eq(cache_get(c, &x->img, 1 * TABLE, &t, NULL), 0); /* 1 is the most recent */
    ck_assert_int_eq(cache_get(c, &x->img, 3 * TABLE, &t, NULL), 0); /* evicts 2 */
    ck_assert_ptr_eq(t, t2);
    ck_assert_uint_eq(t[0], 3);
    ck_assert_int_eq(cache_get(c, &x->img, 1 * TABLE, &t, NULL), 0);
    ck_assert_ptr_eq(t, t1);
    ck_assert_uint_eq(t[0], 1);
    free_all(x, c, NULL);
}
END_TEST

START_TEST(many_tables_through_few_slots_stay_correct)
{
    struct fixture *x = fixture_new();
    struct cache *c;
    ck_assert_int_eq(cache_new(3, TABLE, "table", &c), 0);
    for (unsigned round = 0; round < 5; round++) {
        for (unsigned i = 0; i < TABLES; i += 1 + round) {
            const uint8_t *t;
            ck_assert_int_eq(cache_get(c, &x->img, (uint64_t)i * TABLE, &t, NULL), 0);
            ck_assert_msg(t[0] == i && t[TABLE / 2] == i, "table %u: got %u", i, t[0]);
        }
    }
    ck_assert_uint_eq(cache_slot_count(c), 3);
    cache_drop(c);
    const uint8_t *t;
    ck_assert_int_eq(cache_get(c, &x->img, 7 * TABLE, &t, NULL), 0);
    ck_assert_uint_eq(t[0], 7);
    free_all(x, c, NULL);
}
END_TEST

START_TEST(a_change_waits_for_writeback)
{
    struct fixture *x = fixture_new();
    struct cache *c;
    ck_assert_int_eq(cache_new(4, TABLE, "table", &c), 0);
    change(x, c, 6, 100, 0xab);
    ck_assert(cache_is_dirty(c));
    expect_events(x, "r6");
    ck_assert_uint_eq(x->file.bytes[6 * TABLE + 100], 6);
    expect_writeback(x, c, "w6");
    ck_assert_msg(x->file.bytes[6 * TABLE + 100] == 0xab, "expected 0xab on the file, got %u",
                  x->file.bytes[6 * TABLE + 100]);
    ck_assert(!cache_is_dirty(c));
    /* Clean now: a second writeback writes nothing. */
    expect_writeback(x, c, "");
    free_all(x, c, NULL);
}
END_TEST

/* The L2 cache's order: its dependency's tables, a flush, then its own tables. */
START_TEST(a_dependent_cache_writes_its_dependency_and_flushes_first)
{
    struct cache *refblocks, *l2;
    struct fixture *x = two_caches(4, &refblocks, &l2);
    change(x, l2, 10, 0, 1);
    change(x, refblocks, 20, 0, 1);
    change(x, l2, 11, 0, 1);
    const char *got = writeback_events(x, l2);
    ck_assert_msg(strcmp(got, "w20 f w10 w11") == 0 || strcmp(got, "w20 f w11 w10") == 0,
                  "expected the refcount block, a flush, then both L2 tables; got \"%s\"", got);
    /* The dependency's own writeback needs nothing first. */
    change(x, refblocks, 21, 0, 1);
    expect_writeback(x, refblocks, "w21");
    free_all(x, l2, refblocks);
}
END_TEST

/* Data written before (anything unflushed) is flushed before an L2 table goes out. */
START_TEST(a_dependent_cache_flushes_earlier_writes_first)
{
    struct cache *refblocks, *l2;
    struct fixture *x = two_caches(4, &refblocks, &l2);
    change(x, l2, 10, 0, 1);
    uint8_t data[TABLE] = { 0 };
    ck_assert_int_eq(image_write(&x->img, data, TABLE, 30 * TABLE, "data cluster", NULL), 0);
    expect_writeback(x, l2, "f w10");
    free_all(x, l2, refblocks);
}
END_TEST

START_TEST(evicting_a_dirty_table_writes_back_in_order)
{
    struct cache *refblocks, *l2;
    struct fixture *x = two_caches(2, &refblocks, &l2);
    change(x, refblocks, 20, 3, 1);
    change(x, l2, 10, 0, 1);
    const uint8_t *t;
    ck_assert_int_eq(cache_get(l2, &x->img, 12 * TABLE, &t, NULL), 0);
    events(x);
    /* Table 10 is the least recently used, and dirty: the whole cache goes out first. */
    ck_assert_int_eq(cache_get(l2, &x->img, 13 * TABLE, &t, NULL), 0);
    expect_events(x, "w20 f w10 r13");
    ck_assert_uint_eq(x->file.bytes[10 * TABLE], 1);
    ck_assert_uint_eq(x->file.bytes[20 * TABLE + 3], 1);
    ck_assert_uint_eq(t[0], 13);
    free_all(x, l2, refblocks);
}
END_TEST

START_TEST(a_forgotten_table_is_never_written)
{
    struct fixture *x = fixture_new();
    struct cache *c;
    ck_assert_int_eq(cache_new(4, TABLE, "table", &c), 0);
    change(x, c, 8, 0, 0xee);
    cache_forget(c, 8 * TABLE);
    ck_assert(!cache_is_dirty(c));
    expect_writeback(x, c, "");
    ck_assert_uint_eq(x->file.bytes[8 * TABLE], 8);
    free_all(x, c, NULL);
}
END_TEST

START_TEST(a_failed_write_keeps_the_table_dirty)
{
    struct fixture *x = fixture_new();
    struct cache *c;
    ck_assert_int_eq(cache_new(4, TABLE, "L2 table", &c), 0);
    change(x, c, 9, 7, 0x55);
    x->file.fail_next_write = true;
    struct qcow2_error err;
    ck_assert_int_eq(cache_writeback(c, &x->img, &err), -EIO);
    ck_assert_msg(strstr(err.message, "L2 table") || strstr(err.structure, "L2 table"),
                  "expected the error to name the L2 table, got \"%s\"", err.message);
    ck_assert(cache_is_dirty(c));
    expect_writeback(x, c, "w9");
    ck_assert_uint_eq(x->file.bytes[9 * TABLE + 7], 0x55);
    free_all(x, c, NULL);
}
END_TEST

START_TEST(an_installed_table_is_written_whole_only_when_dirty)
{
    struct fixture *x = fixture_new();
    struct cache *c;
    ck_assert_int_eq(cache_new(4, TABLE, "table", &c), 0);
    uint8_t fresh[TABLE];
    memset(fresh, 0x77, sizeof(fresh));
    ck_assert_int_eq(cache_install(c, &x->img, 40 * TABLE, fresh, false, NULL), 0);
    ck_assert(!cache_is_dirty(c));
    ck_assert_int_eq(cache_install(c, &x->img, 41 * TABLE, fresh, true, NULL), 0);
    expect_writeback(x, c, "w41");
    ck_assert_msg(memcmp(x->file.bytes + 41 * TABLE, fresh, TABLE) == 0,
                  "the dirty installed table did not reach the file whole");
    ck_assert_uint_eq(x->file.bytes[40 * TABLE], 40);
    free_all(x, c, NULL);
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
    TCase *wb = tcase_create("writeback");
    tcase_add_test(wb, a_change_waits_for_writeback);
    tcase_add_test(wb, a_dependent_cache_writes_its_dependency_and_flushes_first);
    tcase_add_test(wb, a_dependent_cache_flushes_earlier_writes_first);
    tcase_add_test(wb, evicting_a_dirty_table_writes_back_in_order);
    tcase_add_test(wb, a_forgotten_table_is_never_written);
    tcase_add_test(wb, a_failed_write_keeps_the_table_dirty);
    tcase_add_test(wb, an_installed_table_is_written_whole_only_when_dirty);
    suite_add_tcase(s, wb);
    return test_run_suite(s);
}
