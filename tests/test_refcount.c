/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Refcount entries at every width (docs/format.md §5): LSB-first inside a byte below 8 bits,
 * big-endian from 16 bits; then lookups through the refcount table of an opened image.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "qcow2.h"
#include "refcount.h"
#include "support.h"

#define BLOCK 512u

static void expect_entry(const uint8_t *block, uint32_t order, uint64_t index, uint64_t want)
{
    uint64_t got = refcount_block_entry(block, order, index);
    ck_assert_msg(got == want,
                  "order %u entry %" PRIu64 ": expected 0x%" PRIx64 ", got 0x%" PRIx64, order,
                  index, want, got);
}

/* ---- hand-written layouts from docs/format.md §5 --------------------------------- */

START_TEST(order_0_is_lsb_first)
{
    uint8_t b[BLOCK] = { 0 };
    b[0] = 0x0F;        /* clusters 0-3 in use */
    b[1] = 0x80;        /* cluster 15 */
    b[BLOCK - 1] = 0x81;
    for (uint64_t i = 0; i < 8; i++)
        expect_entry(b, 0, i, i < 4 ? 1 : 0);
    for (uint64_t i = 8; i < 16; i++)
        expect_entry(b, 0, i, i == 15 ? 1 : 0);
    expect_entry(b, 0, BLOCK * 8 - 8, 1);
    expect_entry(b, 0, BLOCK * 8 - 7, 0);
    expect_entry(b, 0, BLOCK * 8 - 1, 1);
}
END_TEST

START_TEST(order_1_two_bits_lsb_first)
{
    uint8_t b[BLOCK] = { 0 };
    b[0] = 0x55;        /* four clusters at 1 */
    b[1] = 0xE4;        /* 11 10 01 00: entries 4..7 = 0, 1, 2, 3 */
    b[BLOCK - 1] = 0xC0;
    for (uint64_t i = 0; i < 4; i++)
        expect_entry(b, 1, i, 1);
    for (uint64_t i = 4; i < 8; i++)
        expect_entry(b, 1, i, i - 4);
    expect_entry(b, 1, BLOCK * 4 - 1, 3);   /* the maximum, in the last entry */
    expect_entry(b, 1, BLOCK * 4 - 2, 0);
}
END_TEST

START_TEST(order_2_low_nibble_first)
{
    uint8_t b[BLOCK] = { 0 };
    b[0] = 0x11;        /* two clusters at 1 */
    b[1] = 0x2F;        /* entry 2 = 0xF (max), entry 3 = 2 */
    b[BLOCK - 1] = 0xA0;
    expect_entry(b, 2, 0, 1);
    expect_entry(b, 2, 1, 1);
    expect_entry(b, 2, 2, 15);
    expect_entry(b, 2, 3, 2);
    expect_entry(b, 2, BLOCK * 2 - 2, 0);
    expect_entry(b, 2, BLOCK * 2 - 1, 10);
}
END_TEST

START_TEST(order_3_one_byte)
{
    uint8_t b[BLOCK] = { 0 };
    b[0] = 1;
    b[1] = 0xFF;
    b[BLOCK - 1] = 0x7E;
    expect_entry(b, 3, 0, 1);
    expect_entry(b, 3, 1, 255);
    expect_entry(b, 3, 2, 0);
    expect_entry(b, 3, BLOCK - 1, 0x7E);
}
END_TEST

START_TEST(order_4_big_endian_u16)
{
    uint8_t b[BLOCK] = { 0 };
    b[0] = 0x00; b[1] = 0x01;
    b[2] = 0x12; b[3] = 0x34;
    b[4] = 0xFF; b[5] = 0xFF;
    b[BLOCK - 2] = 0x80; b[BLOCK - 1] = 0x01;
    expect_entry(b, 4, 0, 1);
    expect_entry(b, 4, 1, 0x1234);
    expect_entry(b, 4, 2, 0xFFFF);
    expect_entry(b, 4, BLOCK / 2 - 1, 0x8001);
}
END_TEST

START_TEST(order_5_big_endian_u32)
{
    uint8_t b[BLOCK] = { 0 };
    static const uint8_t e1[] = { 0x12, 0x34, 0x56, 0x78 };
    memcpy(b + 4, e1, 4);
    memset(b + 8, 0xFF, 4);
    b[BLOCK - 1] = 1;
    expect_entry(b, 5, 0, 0);
    expect_entry(b, 5, 1, 0x12345678);
    expect_entry(b, 5, 2, 0xFFFFFFFFull);
    expect_entry(b, 5, BLOCK / 4 - 1, 1);
}
END_TEST

START_TEST(order_6_big_endian_u64)
{
    uint8_t b[BLOCK] = { 0 };
    static const uint8_t e1[] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF };
    memcpy(b + 8, e1, 8);
    memset(b + 16, 0xFF, 8);
    b[BLOCK - 8] = 0x80;
    expect_entry(b, 6, 0, 0);
    expect_entry(b, 6, 1, 0x0123456789ABCDEFull);
    expect_entry(b, 6, 2, UINT64_MAX);
    expect_entry(b, 6, BLOCK / 8 - 1, 0x8000000000000000ull);
}
END_TEST

/* ---- every entry of a block, every width ------------------------------------------ */

START_TEST(every_entry_every_order)
{
    uint32_t order = (uint32_t)_i;
    uint64_t entries = BLOCK * 8 >> order;
    uint64_t max = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
    uint8_t b[BLOCK];
    uint64_t want[BLOCK * 8];
    memset(b, 0, sizeof(b));
    /* Values from a mixing function, with 0, 1 and max among them; neighbours differ. */
    for (uint64_t i = 0; i < entries; i++) {
        uint64_t v = (i * 0x9E3779B97F4A7C15ull) ^ (i << 17);
        if (i % 5 == 0)
            v = max;
        else if (i % 7 == 0)
            v = 0;
        else if (i % 11 == 0)
            v = 1;
        want[i] = v & max;
        test_refcount_put(b, order, i, want[i]);
    }
    /* Compare all, then assert once (each Check assertion costs a message). */
    uint64_t i = 0;
    while (i < entries && refcount_block_entry(b, order, i) == want[i])
        i++;
    if (i < entries)
        expect_entry(b, order, i, want[i]);     /* fails, naming the entry */
    /* One entry at max among zeros does not leak into its neighbours. */
    memset(b, 0, sizeof(b));
    test_refcount_put(b, order, 5, max);
    expect_entry(b, order, 4, 0);
    expect_entry(b, order, 5, max);
    expect_entry(b, order, 6, 0);
}
END_TEST

/* ---- refcount_get through an opened image ----------------------------------------- */

static struct qcow2_image *open_image(const struct test_image *img)
{
    struct qcow2_backend *b;
    ck_assert_int_eq(qcow2_backend_mem_new(img->data, img->len, img->len, &b), 0);
    struct qcow2_image *q;
    struct qcow2_error err;
    int ret = qcow2_open_backend(b, "rc.qcow2", NULL, &q, &err);
    ck_assert_msg(ret == 0, "open failed: %d %s", ret, err.message);
    return q;
}

static void expect_refcount(struct qcow2_image *q, uint64_t cluster, uint64_t want)
{
    uint64_t rc = 0xDEAD;
    struct qcow2_error err;
    int ret = refcount_get(q, cluster, &rc, &err);
    ck_assert_msg(ret == 0, "cluster %" PRIu64 ": %d %s", cluster, ret, err.message);
    ck_assert_msg(rc == want, "cluster %" PRIu64 ": expected refcount %" PRIu64 ", got %" PRIu64,
                  cluster, want, rc);
}

START_TEST(refcount_get_every_order)
{
    uint32_t order = (uint32_t)_i;
    uint32_t cb = 12;
    uint64_t max = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
    struct test_image_spec s = test_image_spec(3, cb, 1 << 20);
    s.refcount_order = order;
    s.extra_clusters = 3;
    struct test_image img;
    ck_assert_int_eq(test_image_build(&s, &img), 0);
    uint64_t file_clusters = img.len >> cb;
    uint8_t *block = img.data + img.refblock_offset;
    /* The builder gave each cluster of the file refcount 1; vary two of them. */
    test_refcount_put(block, order, file_clusters - 1, max);
    test_refcount_put(block, order, file_clusters - 2, 0);
    /* A refcount past the end of the file is stored too (check ignores it, get does not). */
    uint64_t per_block = 1ull << (cb + 3 - order);
    test_refcount_put(block, order, per_block - 1, max > 2 ? 2 : 1);

    struct qcow2_image *q = open_image(&img);
    for (uint64_t c = 0; c < file_clusters - 2; c++)
        expect_refcount(q, c, 1);
    expect_refcount(q, file_clusters - 2, 0);
    expect_refcount(q, file_clusters - 1, max);
    expect_refcount(q, file_clusters, 0);
    expect_refcount(q, per_block - 1, max > 2 ? 2 : 1);
    /* Reftable entry 1 is zero: its whole range reads 0. */
    expect_refcount(q, per_block, 0);
    expect_refcount(q, 2 * per_block - 1, 0);
    /* Past the end of the one-cluster reftable (512 entries at 4 KiB). */
    uint64_t reftable_entries = 1ull << (cb - 3);
    expect_refcount(q, reftable_entries * per_block - 1, 0);
    expect_refcount(q, reftable_entries * per_block, 0);
    expect_refcount(q, UINT64_MAX >> cb, 0);
    qcow2_close(q);
    test_image_free(&img);
}
END_TEST

START_TEST(refcount_get_v2_uses_16_bits)
{
    struct test_image_spec s = test_image_spec(2, 16, 1 << 30);
    s.extra_clusters = 1;
    struct test_image img;
    ck_assert_int_eq(test_image_build(&s, &img), 0);
    uint8_t *block = img.data + img.refblock_offset;
    block[2 * 3] = 0x12;
    block[2 * 3 + 1] = 0x34;
    struct qcow2_image *q = open_image(&img);
    expect_refcount(q, 0, 1);
    expect_refcount(q, 3, 0x1234);
    expect_refcount(q, 4, 1);
    expect_refcount(q, 5, 0);
    /* 64 KiB blocks of 16-bit entries cover 32768 clusters each. */
    expect_refcount(q, 32767, 0);
    expect_refcount(q, 32768, 0);
    qcow2_close(q);
    test_image_free(&img);
}
END_TEST

START_TEST(refcount_get_second_refblock)
{
    /* A second refcount block, reached through reftable entry 1. */
    uint32_t cb = 9, order = 4;
    struct test_image_spec s = test_image_spec(3, cb, 1 << 20);
    s.refcount_order = order;
    s.extra_clusters = 1;
    struct test_image img;
    ck_assert_int_eq(test_image_build(&s, &img), 0);
    uint64_t second = img.extra_offset;
    test_put_be64(img.data + img.reftable_offset + 8, second);
    uint64_t per_block = 1ull << (cb + 3 - order);   /* 256 */
    test_refcount_put(img.data + second, order, 0, 7);
    test_refcount_put(img.data + second, order, per_block - 1, 0xFFFF);
    struct qcow2_image *q = open_image(&img);
    expect_refcount(q, per_block, 7);
    expect_refcount(q, 2 * per_block - 1, 0xFFFF);
    expect_refcount(q, per_block + 1, 0);
    expect_refcount(q, 2 * per_block, 0);
    qcow2_close(q);
    test_image_free(&img);
}
END_TEST

static void expect_get_error(struct qcow2_image *q, uint64_t cluster, uint64_t where,
                             const char *needle)
{
    uint64_t rc = 0xDEAD;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = refcount_get(q, cluster, &rc, &err);
    ck_assert_msg(ret == -EIO, "cluster %" PRIu64 ": expected -EIO, got %d", cluster, ret);
    ck_assert_str_eq(err.structure, "refcount table entry");
    ck_assert_msg(err.offset == where, "expected error offset %" PRIu64 ", got %" PRIu64,
                  where, err.offset);
    ck_assert_msg(strstr(err.message, needle), "message \"%s\" lacks \"%s\"", err.message,
                  needle);
    ck_assert_uint_eq(rc, 0);
}

START_TEST(refcount_get_bad_reftable_entries)
{
    uint32_t cb = 12, order = 4;
    struct test_image_spec s = test_image_spec(3, cb, 1 << 20);
    s.extra_clusters = 1;
    struct test_image img;
    ck_assert_int_eq(test_image_build(&s, &img), 0);
    uint64_t per_block = 1ull << (cb + 3 - order);
    uint8_t *rt = img.data + img.reftable_offset;
    test_put_be64(rt + 8, img.extra_offset + 0x200);                   /* unaligned */
    test_put_be64(rt + 16, img.extra_offset | 0x1);                    /* reserved bit */
    test_put_be64(rt + 24, (uint64_t)img.len);                         /* past EOF */
    struct qcow2_image *q = open_image(&img);
    expect_get_error(q, per_block + 3, img.reftable_offset + 8, "not cluster-aligned");
    expect_get_error(q, 2 * per_block, img.reftable_offset + 16, "reserved bits");
    expect_get_error(q, 3 * per_block + 9, img.reftable_offset + 24, "past the end of the file");
    /* Entry 0 is still fine. */
    expect_refcount(q, 1, 1);
    qcow2_close(q);
    test_image_free(&img);
}
END_TEST

/* The one placement policy: first fit from a hint, running past the array's end. */
START_TEST(first_fit_every_order)
{
    for (uint32_t order = 0; order <= 6; order++) {
        uint8_t counts[BLOCK];
        memset(counts, 0, sizeof(counts));
        /* used: 0-2, 4, 7; free: 3, 5-6, 8.. (the array covers 10 clusters) */
        const uint64_t used[] = { 0, 1, 2, 4, 7, 9 };
        for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++)
            refcount_block_set_entry(counts, order, used[i], 1);
        uint64_t hint = 0;
        ck_assert_uint_eq(refcount_first_fit(counts, order, 10, 0, 1, &hint), 3);
        ck_assert_uint_eq(hint, 3);
        ck_assert_uint_eq(refcount_first_fit(counts, order, 10, 0, 2, NULL), 5);
        /* No run of 3 inside: the run starts at the last free cluster and reaches past. */
        hint = 0;
        ck_assert_uint_eq(refcount_first_fit(counts, order, 10, 0, 3, &hint), 10);
        ck_assert_uint_eq(hint, 3);
        refcount_block_set_entry(counts, order, 9, 0);
        ck_assert_uint_eq(refcount_first_fit(counts, order, 10, 0, 3, NULL), 8);
        /* A hint at or past the end gives the hint; the hint stays where it was. */
        hint = 12;
        ck_assert_uint_eq(refcount_first_fit(counts, order, 10, 12, 4, &hint), 12);
        ck_assert_uint_eq(hint, 12);
    }
}
END_TEST

int main(void)
{
Suite *s = suite_create("refcount");

    TCase *tc = tcase_create("block entries");
    tcase_add_test(tc, order_0_is_lsb_first);
    tcase_add_test(tc, order_1_two_bits_lsb_first);
    tcase_add_test(tc, order_2_low_nibble_first);
    tcase_add_test(tc, order_3_one_byte);
    tcase_add_test(tc, order_4_big_endian_u16);
    tcase_add_test(tc, order_5_big_endian_u32);
    tcase_add_test(tc, order_6_big_endian_u64);
    tcase_add_test(tc, first_fit_every_order);
    tcase_add_loop_test(tc, every_entry_every_order, 0, 7);
    suite_add_tcase(s, tc);

    tc = tcase_create("lookup");
    tcase_add_loop_test(tc, refcount_get_every_order, 0, 7);
    tcase_add_test(tc, refcount_get_v2_uses_16_bits);
    tcase_add_test(tc, refcount_get_second_refblock);
    tcase_add_test(tc, refcount_get_bad_reftable_entries);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
