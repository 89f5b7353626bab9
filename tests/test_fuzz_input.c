/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The fuzz targets' one input decoder (harness/fuzz/input.h): what each take yields, in
 * which byte order, and that an input too short for its takes yields zeros, never reads
 * past its end (ASan, in the sanitizer build, would say).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"
#include "support.h"

/* An exactly sized copy, so that a read past the end is a sanitizer report. */
static uint8_t *exact(const void *bytes, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    memcpy(p, bytes, n);
    return p;
}

START_TEST(integers_are_taken_front_to_back_big_endian)
{
    static const uint8_t bytes[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
                                     0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11 };
    uint8_t *data = exact(bytes, sizeof(bytes));
    struct fuzz_input in;
    fuzz_input_init(&in, data, sizeof(bytes));
    ck_assert_uint_eq(fuzz_input_u8(&in), 0x01);
    ck_assert_uint_eq(fuzz_input_u16(&in), 0x0203);
    ck_assert_uint_eq(fuzz_input_u32(&in), 0x04050607);
    ck_assert_uint_eq(fuzz_input_u64(&in), 0x08090a0b0c0d0e0full);
    ck_assert_uint_eq(fuzz_input_left(&in), 2);
    ck_assert(!fuzz_input_bool(&in));               /* 0x10: low bit clear */
    ck_assert(fuzz_input_bool(&in));                /* 0x11 */
    ck_assert_uint_eq(fuzz_input_left(&in), 0);
    free(data);
}
END_TEST

START_TEST(takes_past_the_end_yield_zeros)
{
    static const uint8_t bytes[] = { 0xab, 0xcd, 0xef };
    uint8_t *data = exact(bytes, sizeof(bytes));
    struct fuzz_input in;
    fuzz_input_init(&in, data, sizeof(bytes));
    ck_assert_uint_eq(fuzz_input_u16(&in), 0xabcd);
    ck_assert_uint_eq(fuzz_input_u32(&in), 0xef000000u);  /* the missing bytes are zeros */
    ck_assert_uint_eq(fuzz_input_u64(&in), 0);
    ck_assert_uint_eq(fuzz_input_u8(&in), 0);
    size_t got = 99;
    ck_assert_ptr_null(fuzz_input_bytes(&in, 4, &got));
    ck_assert_uint_eq(got, 0);
    free(data);
}
END_TEST

START_TEST(ranges_take_only_the_bytes_they_need)
{
    static const uint8_t bytes[] = { 250, 0x12, 0x34, 7, 0xff, 0xff };
    uint8_t *data = exact(bytes, sizeof(bytes));
    struct fuzz_input in;
    fuzz_input_init(&in, data, sizeof(bytes));
    ck_assert_uint_eq(fuzz_input_range(&in, 10, 19), 10 + 250 % 10);   /* one byte */
    ck_assert_uint_eq(fuzz_input_range(&in, 0, 999), 0x1234 % 1000);   /* two bytes */
    ck_assert_uint_eq(fuzz_input_range(&in, 5, 5), 5);                 /* none */
    ck_assert_uint_eq(fuzz_input_left(&in), 3);
    ck_assert_uint_eq(fuzz_input_range(&in, 0, 255), 7);
    ck_assert_uint_le(fuzz_input_range(&in, 100, 200), 200);
    free(data);
}
END_TEST

START_TEST(bytes_the_rest_and_the_tail)
{
    static const uint8_t bytes[] = { 1, 2, 3, 4, 5, 6 };
    uint8_t *data = exact(bytes, sizeof(bytes));
    struct fuzz_input in;
    fuzz_input_init(&in, data, sizeof(bytes));
    uint8_t tail[8];
    fuzz_input_tail(&in, tail, 4);
    ck_assert(!memcmp(tail, (uint8_t[]){ 3, 4, 5, 6 }, 4));
    fuzz_input_tail(&in, tail, 8);                  /* shorter than asked: zeros in front */
    ck_assert(!memcmp(tail, (uint8_t[]){ 0, 0, 1, 2, 3, 4, 5, 6 }, 8));
    ck_assert_uint_eq(fuzz_input_left(&in), 6);     /* the tail takes nothing */
    size_t got;
    const uint8_t *p = fuzz_input_bytes(&in, 2, &got);
    ck_assert(got == 2 && p[0] == 1 && p[1] == 2);
    p = fuzz_input_bytes(&in, 3, &got);
    ck_assert(got == 3 && p[0] == 3);
    p = fuzz_input_rest(&in, &got);
    ck_assert(got == 1 && p[0] == 6);
    ck_assert_ptr_null(fuzz_input_rest(&in, &got));
    ck_assert_uint_eq(got, 0);
    free(data);

    fuzz_input_init(&in, NULL, 0);                  /* an empty input decodes too */
    fuzz_input_tail(&in, tail, 2);
    ck_assert(tail[0] == 0 && tail[1] == 0);
    ck_assert_uint_eq(fuzz_input_u32(&in), 0);
}
END_TEST

static Suite *input_suite(void)
{
    Suite *s = suite_create("fuzz input");
    TCase *t = tcase_create("decoder");
    tcase_add_test(t, integers_are_taken_front_to_back_big_endian);
    tcase_add_test(t, takes_past_the_end_yield_zeros);
    tcase_add_test(t, ranges_take_only_the_bytes_they_need);
    tcase_add_test(t, bytes_the_rest_and_the_tail);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run_suite(input_suite());
}
