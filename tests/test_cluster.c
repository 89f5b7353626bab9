/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * L2 entries and compressed descriptors (docs/format.md §4): decoding in isolation, then
 * guest reads through the public API of hand-built images, then the L2 table a write
 * gets (cluster_l2_for_write) watched from the disk's side.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "image.h"
#include "io_fault.h"
#include "qcow2.h"
#include "refcount.h"
#include "support.h"

#define COPIED (1ull << 63)
#define COMPRESSED (1ull << 62)
#define ZERO_FLAG 1ull

static const struct geometry std_geo = { .version = 3, .cluster_bits = 16, .extended_l2 = false };
static const struct geometry ext_geo = { .version = 3, .cluster_bits = 16, .extended_l2 = true };

static enum subcluster_type type_of(const struct geometry *g, uint64_t word, uint64_t bitmap,
                                    uint32_t sc)
{
    struct l2_entry e = { .word = word, .bitmap = bitmap };
    return l2_entry_subcluster_type(g, e, sc);
}

#define EXPECT_TYPE(g, word, bitmap, sc, want)                                              \
    do {                                                                                    \
        enum subcluster_type got_ = type_of(g, word, bitmap, sc);                           \
        ck_assert_msg(got_ == (want),                                                       \
                      "word 0x%016" PRIx64 " bitmap 0x%016" PRIx64 " sc %u: expected %s (%d), " \
                      "got %d", (uint64_t)(word), (uint64_t)(bitmap), (unsigned)(sc), #want,    \
                      (int)(want), (int)got_);                                              \
    } while (0)

/* ---- l2_entry_at ----------------------------------------------------------------- */

START_TEST(l2_entry_at_standard)
{
    static uint8_t table[65536];
    memset(table, 0, sizeof(table));
    test_put_be64(table + 8 * 2, 0x8000000000050000ull);
    test_put_be64(table + 8 * 8191, 0x4123456789ABCDEFull);
    struct l2_entry e = l2_entry_at(&std_geo, table, 2);
    ck_assert_uint_eq(e.word, 0x8000000000050000ull);
    ck_assert_uint_eq(e.bitmap, 0);
    e = l2_entry_at(&std_geo, table, 8191);
    ck_assert_uint_eq(e.word, 0x4123456789ABCDEFull);
    ck_assert_uint_eq(e.bitmap, 0);
    e = l2_entry_at(&std_geo, table, 3);
    ck_assert_uint_eq(e.word, 0);
}
END_TEST

START_TEST(l2_entry_at_extended)
{
    static uint8_t table[65536];
    memset(table, 0, sizeof(table));
    test_put_be64(table + 16 * 1, 0x8000000000070000ull);
    test_put_be64(table + 16 * 1 + 8, 0x0000000200000005ull);
    test_put_be64(table + 16 * 4095, 0x00000000000A0000ull);
    test_put_be64(table + 16 * 4095 + 8, 0xFFFFFFFF00000000ull);
    struct l2_entry e = l2_entry_at(&ext_geo, table, 1);
    ck_assert_uint_eq(e.word, 0x8000000000070000ull);
    ck_assert_uint_eq(e.bitmap, 0x0000000200000005ull);
    e = l2_entry_at(&ext_geo, table, 4095);
    ck_assert_uint_eq(e.word, 0x00000000000A0000ull);
    ck_assert_uint_eq(e.bitmap, 0xFFFFFFFF00000000ull);
    /* The same bytes read as a standard table are two separate entries. */
    e = l2_entry_at(&std_geo, table, 3);
    ck_assert_uint_eq(e.word, 0x0000000200000005ull);
}
END_TEST

/* ---- subcluster types ------------------------------------------------------------ */

START_TEST(standard_entry_types)
{
    const struct geometry *g = &std_geo;
    EXPECT_TYPE(g, 0, 0, 0, SUBCLUSTER_UNALLOCATED_PLAIN);
    EXPECT_TYPE(g, 0x50000, 0, 0, SUBCLUSTER_NORMAL);
    EXPECT_TYPE(g, COPIED | 0x50000, 0, 0, SUBCLUSTER_NORMAL);
    EXPECT_TYPE(g, ZERO_FLAG, 0, 0, SUBCLUSTER_ZERO_PLAIN);
    EXPECT_TYPE(g, COPIED | 0x50000 | ZERO_FLAG, 0, 0, SUBCLUSTER_ZERO_ALLOC);
    EXPECT_TYPE(g, COMPRESSED | 0x50000, 0, 0, SUBCLUSTER_COMPRESSED);
    /* Bit 62 wins over everything: bit 0 is part of the descriptor then. */
    EXPECT_TYPE(g, COMPRESSED | 0x50001, 0, 0, SUBCLUSTER_COMPRESSED);
    EXPECT_TYPE(g, COMPRESSED, 0, 0, SUBCLUSTER_COMPRESSED);
    /* COPIED alone (offset 0) is still unallocated without a data file. */
    EXPECT_TYPE(g, COPIED, 0, 0, SUBCLUSTER_UNALLOCATED_PLAIN);
    /* The classification does not depend on the version; a v2 zero flag is refused on
       read (see the end-to-end tests). */
    struct geometry v2 = { .version = 2, .cluster_bits = 16, .extended_l2 = false };
    EXPECT_TYPE(&v2, ZERO_FLAG, 0, 0, SUBCLUSTER_ZERO_PLAIN);
}
END_TEST

START_TEST(extended_entry_types_allocated_cluster)
{
    const struct geometry *g = &ext_geo;
    uint64_t w = COPIED | 0x70000;
    /* alloc: 0, 5, 31; zero: 1, 30 */
    uint64_t bm = (1ull << 0) | (1ull << 5) | (1ull << 31) | (1ull << 33) | (1ull << 62);
    for (uint32_t sc = 0; sc < 32; sc++) {
        enum subcluster_type want = SUBCLUSTER_UNALLOCATED_ALLOC;
        if (sc == 0 || sc == 5 || sc == 31)
            want = SUBCLUSTER_NORMAL;
        if (sc == 1 || sc == 30)
            want = SUBCLUSTER_ZERO_ALLOC;
        enum subcluster_type got = type_of(g, w, bm, sc);
        ck_assert_msg(got == want, "subcluster %u: expected %d, got %d", sc, want, got);
    }
    EXPECT_TYPE(g, w, 0xFFFFFFFFull, 17, SUBCLUSTER_NORMAL);
    EXPECT_TYPE(g, w, 0xFFFFFFFF00000000ull, 17, SUBCLUSTER_ZERO_ALLOC);
    EXPECT_TYPE(g, w, 0, 0, SUBCLUSTER_UNALLOCATED_ALLOC);
    EXPECT_TYPE(g, w, 0, 31, SUBCLUSTER_UNALLOCATED_ALLOC);
}
END_TEST

START_TEST(extended_entry_alloc_and_zero_is_invalid)
{
    const struct geometry *g = &ext_geo;
    uint64_t w = 0x70000;
    /* Subcluster 3 is both allocated and zero: the whole entry is invalid, so every
       subcluster of it is, including ones whose own bits are fine. */
    uint64_t bm = (1ull << 3) | (1ull << 35) | (1ull << 4);
    for (uint32_t sc = 0; sc < 32; sc++)
        EXPECT_TYPE(g, w, bm, sc, SUBCLUSTER_INVALID);
    EXPECT_TYPE(g, w, 0xFFFFFFFFFFFFFFFFull, 0, SUBCLUSTER_INVALID);
    EXPECT_TYPE(g, w, (1ull << 31) | (1ull << 63), 0, SUBCLUSTER_INVALID);
    /* Different subclusters allocated and zero are fine. */
    EXPECT_TYPE(g, w, (1ull << 31) | (1ull << 62), 31, SUBCLUSTER_NORMAL);
    EXPECT_TYPE(g, w, (1ull << 31) | (1ull << 62), 30, SUBCLUSTER_ZERO_ALLOC);
}
END_TEST

START_TEST(extended_entry_types_unallocated_cluster)
{
    const struct geometry *g = &ext_geo;
    EXPECT_TYPE(g, 0, 0, 0, SUBCLUSTER_UNALLOCATED_PLAIN);
    EXPECT_TYPE(g, 0, 0, 31, SUBCLUSTER_UNALLOCATED_PLAIN);
    EXPECT_TYPE(g, 0, 1ull << 40, 8, SUBCLUSTER_ZERO_PLAIN);
    EXPECT_TYPE(g, 0, 1ull << 40, 9, SUBCLUSTER_UNALLOCATED_PLAIN);
    EXPECT_TYPE(g, 0, 0xFFFFFFFF00000000ull, 0, SUBCLUSTER_ZERO_PLAIN);
    EXPECT_TYPE(g, 0, 0xFFFFFFFF00000000ull, 31, SUBCLUSTER_ZERO_PLAIN);
    /* An ALLOC bit without a host cluster is invalid, for any subcluster. */
    EXPECT_TYPE(g, 0, 1ull << 7, 7, SUBCLUSTER_INVALID);
    EXPECT_TYPE(g, 0, 1ull << 7, 0, SUBCLUSTER_INVALID);
    EXPECT_TYPE(g, 0, (1ull << 31) | (1ull << 32), 0, SUBCLUSTER_INVALID);
}
END_TEST

START_TEST(extended_entry_ignores_word_bit_0)
{
    /* With extended L2 bit 0 is not the zero flag: the bitmap decides (QEMU does the
       same; reading such an entry is refused by the strict read path). */
    const struct geometry *g = &ext_geo;
    EXPECT_TYPE(g, 0x70000 | ZERO_FLAG, 1ull << 2, 2, SUBCLUSTER_NORMAL);
    EXPECT_TYPE(g, ZERO_FLAG, 0, 2, SUBCLUSTER_UNALLOCATED_PLAIN);
}
END_TEST

START_TEST(extended_compressed_entry)
{
    const struct geometry *g = &ext_geo;
    EXPECT_TYPE(g, COMPRESSED | 0x70123, 0, 0, SUBCLUSTER_COMPRESSED);
    EXPECT_TYPE(g, COMPRESSED | 0x70123, 0, 31, SUBCLUSTER_COMPRESSED);
    /* Even with a (forbidden) bitmap: the read path refuses it, the type says compressed. */
    EXPECT_TYPE(g, COMPRESSED | 0x70123, 0xFFFFFFFFull, 3, SUBCLUSTER_COMPRESSED);
}
END_TEST

/* ---- compressed descriptors ------------------------------------------------------ */

/*
 * The word as docs/format.md §4.4 defines it: offset in bits 0..x-1, N in bits x..61,
 * x = 70 - cb.
 */
static uint64_t desc_word(uint32_t cb, uint64_t offset, uint64_t n)
{
    return COMPRESSED | (n << (70 - cb)) | offset;
}

static void expect_desc(uint32_t cb, uint64_t word, uint64_t offset, uint64_t n)
{
    struct geometry g = { .version = 3, .cluster_bits = cb, .extended_l2 = false };
    struct compressed_desc d = compressed_desc_decode(&g, word);
    uint64_t want_host = offset & ((1ull << 56) - 1);
    uint64_t want_high = offset >> 56;
    uint64_t want_bytes = (n + 1) * 512 - (offset % 512);
    ck_assert_msg(d.host_offset == want_host,
                  "cb %u word 0x%016" PRIx64 ": host_offset expected 0x%" PRIx64 ", got 0x%" PRIx64,
                  cb, word, want_host, d.host_offset);
    ck_assert_msg(d.high_offset_bits == want_high,
                  "cb %u word 0x%016" PRIx64 ": high bits expected 0x%" PRIx64 ", got 0x%" PRIx64,
                  cb, word, want_high, d.high_offset_bits);
    ck_assert_msg(d.max_bytes == want_bytes,
                  "cb %u word 0x%016" PRIx64 " (N=%" PRIu64 ", offset 0x%" PRIx64 "): max_bytes "
                  "expected %" PRIu64 ", got %" PRIu64,
                  cb, word, n, offset, want_bytes, d.max_bytes);
}

START_TEST(compressed_descriptor_every_cluster_size)
{
    uint32_t cb = (uint32_t)_i;
    uint32_t x = 70 - cb;
    uint64_t n_max = (1ull << (cb - 8)) - 1;
    uint64_t offset_max = (1ull << x) - 1;
    uint64_t usable_max = x > 56 ? (1ull << 56) - 1 : offset_max;
    const uint64_t offsets[] = {
        0, 1, 511, 512, 0x50000, 0x5004F, 0x58AA1, 0x123456789ull & usable_max,
        usable_max - 511, usable_max, (usable_max & ~511ull) | 0x1FF,
    };
    const uint64_t ns[] = { 0, 1, n_max / 2, n_max - 1, n_max };
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
            uint64_t n = ns[j] > n_max ? n_max : ns[j];
            uint64_t w = desc_word(cb, offsets[i], n);
            expect_desc(cb, w, offsets[i], n);
            /* COPIED (bit 63) is outside both fields. */
            expect_desc(cb, w | COPIED, offsets[i], n);
        }
    }
    /* The field boundary: bit x-1 belongs to the offset, bit x to N. */
    expect_desc(cb, COMPRESSED | (1ull << (x - 1)), 1ull << (x - 1), 0);
    expect_desc(cb, COMPRESSED | (1ull << x), 0, 1);
    expect_desc(cb, COMPRESSED | (1ull << 61), 0, 1ull << (cb - 9));
    /* All bits of both fields set. */
    expect_desc(cb, desc_word(cb, offset_max, n_max), offset_max, n_max);
    /* N at its maximum spans exactly two clusters from a sector boundary. */
    struct geometry g = { .version = 3, .cluster_bits = cb, .extended_l2 = false };
    ck_assert_uint_eq(compressed_desc_decode(&g, desc_word(cb, 0x10000, n_max)).max_bytes,
                      2ull << cb);
    ck_assert_uint_eq(compressed_desc_decode(&g, desc_word(cb, 0x10000, 0)).max_bytes, 512);
}
END_TEST

START_TEST(compressed_descriptor_high_offset_bits)
{
    /* Only when the offset field is wider than 56 bits (cb < 14) can bits >= 56 be set. */
    for (uint32_t cb = 9; cb < 14; cb++) {
        uint32_t x = 70 - cb;
        uint64_t off = (1ull << (x - 1)) | 0x1234;
        expect_desc(cb, desc_word(cb, off, 0), off, 0);
        struct geometry g = { .version = 3, .cluster_bits = cb, .extended_l2 = false };
        struct compressed_desc d = compressed_desc_decode(&g, desc_word(cb, off, 0));
        ck_assert_uint_eq(d.high_offset_bits, 1ull << (x - 1 - 56));
        ck_assert_uint_eq(d.host_offset, 0x1234);
    }
    for (uint32_t cb = 14; cb <= 21; cb++) {
        struct geometry g = { .version = 3, .cluster_bits = cb, .extended_l2 = false };
        struct compressed_desc d = compressed_desc_decode(&g, ~0ull);
        ck_assert_uint_eq(d.high_offset_bits, 0);
    }
}
END_TEST

START_TEST(compressed_descriptor_matches_qemu_shift_and_mask)
{
    /* QEMU's csize_shift is x = 70 - cb, csize_mask has cb - 8 bits (docs/format.md §4.4). */
    static const struct { uint32_t cb, shift; uint64_t mask; } t[] = {
        { 9, 61, 0x1 }, { 12, 58, 0xF }, { 16, 54, 0xFF }, { 21, 49, 0x1FFF },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct geometry g = { .version = 3, .cluster_bits = t[i].cb, .extended_l2 = false };
        uint64_t off = (1ull << t[i].shift) - 1;    /* every offset bit */
        if (off >> 56)
            off &= (1ull << 56) - 1;
        uint64_t w = COMPRESSED | (t[i].mask << t[i].shift) | off;
        struct compressed_desc d = compressed_desc_decode(&g, w);
        ck_assert_uint_eq(d.host_offset, off);
        ck_assert_uint_eq(d.max_bytes, (t[i].mask + 1) * 512 - (off & 511));
        ck_assert_uint_eq(d.high_offset_bits, 0);
    }
}
END_TEST

START_TEST(compressed_descriptor_writer_formula)
{
    /* N = ((offset + clen - 1) >> 9) - (offset >> 9); the bound covers the stream and
       ends on a sector boundary. */
    for (uint32_t cb = 9; cb <= 21; cb++) {
        struct geometry g = { .version = 3, .cluster_bits = cb, .extended_l2 = false };
        const uint64_t offs[] = { 0x50000, 0x5004F, 0x58AA1, 0x601FF };
        for (size_t i = 0; i < 4; i++) {
            for (uint64_t clen = 1; clen < (1ull << cb); clen = clen * 3 + 7) {
                uint64_t off = offs[i];
                uint64_t n = ((off + clen - 1) >> 9) - (off >> 9);
                struct compressed_desc d = compressed_desc_decode(&g, desc_word(cb, off, n));
                ck_assert_msg(d.host_offset == off && d.max_bytes >= clen &&
                                  d.max_bytes - clen < 512 && (off + d.max_bytes) % 512 == 0,
                              "cb %u offset 0x%" PRIx64 " clen %" PRIu64 ": got offset 0x%"
                              PRIx64 " max_bytes %" PRIu64,
                              cb, off, clen, d.host_offset, d.max_bytes);
            }
        }
    }
}
END_TEST

/* ---- end to end through qcow2_open_backend --------------------------------------- */

#define E2E_CB 12
#define E2E_CS 4096u
#define E2E_CLUSTERS 8u

struct e2e {
    struct test_image img;
    uint64_t l2;            /* host offset of the L2 table */
    uint8_t expect[E2E_CLUSTERS * E2E_CS];
};

static void set_l2(struct e2e *t, uint32_t index, uint64_t word)
{
    test_put_be64(t->img.data + t->l2 + 8u * index, word);
}

/*
 * Guest clusters: 0 NORMAL (random), 1 ZERO plain, 2 compressed, 3 unallocated,
 * 4 ZERO_ALLOC over data, 5 NORMAL (random), 6 compressed packed right after 2's
 * stream, 7 unallocated. Host: L2 at extra+0, data A at +1, compressed at +2.., B at +4.
 */
static void build_e2e(struct e2e *t, uint32_t version)
{
    struct test_image_spec s = test_image_spec(version, E2E_CB, E2E_CLUSTERS * E2E_CS);
    s.extra_clusters = 5;
    ck_assert_int_eq(test_image_build(&s, &t->img), 0);
    uint8_t *d = t->img.data;
    uint64_t base = t->img.extra_offset;
    t->l2 = base;
    uint64_t a = base + E2E_CS, comp = base + 2 * E2E_CS + 100, b = base + 4 * E2E_CS;
    test_put_be64(d + t->img.l1_offset, COPIED | t->l2);

    memset(t->expect, 0, sizeof(t->expect));
    test_fill_random(t->expect + 0 * E2E_CS, E2E_CS, 1);
    memcpy(d + a, t->expect, E2E_CS);
    set_l2(t, 0, COPIED | a);

    set_l2(t, 1, version >= 3 ? ZERO_FLAG : 0);

    /* Compressible clusters 2 and 6. */
    for (uint32_t i = 0; i < E2E_CS; i++) {
        t->expect[2 * E2E_CS + i] = (uint8_t)("qcow2 compressed "[i % 17] + i / 512);
        t->expect[6 * E2E_CS + i] = (uint8_t)(i * 7 / 100);
    }
    uint8_t *p = d + comp;
    size_t len2 = test_deflate_raw(t->expect + 2 * E2E_CS, E2E_CS, p, E2E_CS);
    ck_assert_uint_gt(len2, 0);
    uint64_t n2 = ((comp + len2 - 1) >> 9) - (comp >> 9);
    set_l2(t, 2, desc_word(E2E_CB, comp, n2));
    uint64_t comp6 = comp + len2;
    size_t len6 = test_deflate_raw(t->expect + 6 * E2E_CS, E2E_CS, d + comp6, E2E_CS);
    ck_assert_uint_gt(len6, 0);
    ck_assert_uint_lt(comp6 + len6, b);
    uint64_t n6 = ((comp6 + len6 - 1) >> 9) - (comp6 >> 9);
    set_l2(t, 6, desc_word(E2E_CB, comp6, n6));

    set_l2(t, 3, 0);
    /* Zero + preallocated: the data under it must not show. */
    set_l2(t, 4, version >= 3 ? (COPIED | a | ZERO_FLAG) : 0);

    test_fill_random(t->expect + 5 * E2E_CS, E2E_CS, 5);
    memcpy(d + b, t->expect + 5 * E2E_CS, E2E_CS);
    set_l2(t, 5, COPIED | b);
    set_l2(t, 7, 0);
}

static int open_mem(const struct test_image *img, struct qcow2_image **out,
                    struct qcow2_error *err)
{
    struct qcow2_backend *b;
    ck_assert_int_eq(qcow2_backend_mem_new(img->data, img->len, img->len, &b), 0);
    memset(err, 0, sizeof(*err));
    return qcow2_open_backend(b, "mem.qcow2", NULL, out, err);
}

static struct qcow2_image *open_ok(const struct test_image *img)
{
    struct qcow2_image *q;
    struct qcow2_error err;
    int ret = open_mem(img, &q, &err);
    ck_assert_msg(ret == 0, "open failed: %d %s", ret, err.message);
    return q;
}

static void expect_read_error(struct qcow2_image *q, uint64_t off, size_t len, int code,
                              const char *structure, uint64_t where, const char *needle)
{
    uint8_t *buf = malloc(len);
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = qcow2_pread(q, buf, len, off, &err);
    free(buf);
    ck_assert_msg(ret == code, "read %" PRIu64 "+%zu: expected %d, got %d (%s)", off, len, code,
                  ret, err.message);
    ck_assert_str_eq(err.structure, structure);
    ck_assert_msg(err.offset == where, "expected error offset %" PRIu64 ", got %" PRIu64 " (%s)",
                  where, err.offset, err.message);
    ck_assert_msg(strstr(err.message, needle), "message \"%s\" lacks \"%s\"", err.message,
                  needle);
    ck_assert_str_eq(err.file, "mem.qcow2");
}

static void check_reads(struct e2e *t)
{
    struct qcow2_image *q = open_ok(&t->img);
    ck_assert_uint_eq(qcow2_virtual_size(q), E2E_CLUSTERS * E2E_CS);
    static uint8_t buf[E2E_CLUSTERS * E2E_CS];
    struct qcow2_error err;
    memset(buf, 0xEE, sizeof(buf));
    ck_assert_int_eq(qcow2_pread(q, buf, sizeof(buf), 0, &err), 0);
    for (uint32_t c = 0; c < E2E_CLUSTERS; c++)
        ck_assert_msg(!memcmp(buf + c * E2E_CS, t->expect + c * E2E_CS, E2E_CS),
                      "guest cluster %u differs", c);
    /* Unaligned pieces crossing entry boundaries, in reverse order. */
    for (uint64_t off = sizeof(buf) - 3000; off > 0 && off < sizeof(buf); off -= 2777) {
        size_t len = (size_t)(sizeof(buf) - off < 5000 ? sizeof(buf) - off : 5000);
        memset(buf, 0xEE, len);
        ck_assert_int_eq(qcow2_pread(q, buf, len, off, &err), 0);
        ck_assert_msg(!memcmp(buf, t->expect + off, len), "read %" PRIu64 "+%zu differs", off,
                      len);
    }
    qcow2_close(q);
}

/*
 * QEMU's whole-cluster types (what check counts by): bit 0 means zero only without
 * extended L2, and the fix for an unaligned zero cluster keeps reading zeros.
 */
START_TEST(cluster_types_and_zeroed_entries)
{
    struct l2_entry e = { .word = 0x50000 | (1ull << 63), .bitmap = 0 };
    ck_assert_int_eq(l2_entry_cluster_type(&std_geo, e), CLUSTER_NORMAL);
    ck_assert(l2_entry_has_data(&std_geo, e));
    e.word |= 1;
    ck_assert_int_eq(l2_entry_cluster_type(&std_geo, e), CLUSTER_ZERO_ALLOC);
    ck_assert(!l2_entry_has_data(&std_geo, e));
    ck_assert_int_eq(l2_entry_cluster_type(&ext_geo, e), CLUSTER_NORMAL);
    e.word = 1;
    ck_assert_int_eq(l2_entry_cluster_type(&std_geo, e), CLUSTER_ZERO_PLAIN);
    ck_assert_int_eq(l2_entry_cluster_type(&ext_geo, e), CLUSTER_UNALLOCATED);
    e.word = 0;
    ck_assert_int_eq(l2_entry_cluster_type(&std_geo, e), CLUSTER_UNALLOCATED);
    e.word = 1ull << 62;
    ck_assert_int_eq(l2_entry_cluster_type(&std_geo, e), CLUSTER_COMPRESSED);

    struct l2_entry z = l2_entry_zeroed(&std_geo, (struct l2_entry){ .word = 0x50201 });
    ck_assert_uint_eq(z.word, 1);
    /* Extended L2: allocated or zero subclusters become zero ones, the cluster goes. */
    z = l2_entry_zeroed(&ext_geo,
                        (struct l2_entry){ .word = 0x50200, .bitmap = 0x0000000300000004ull });
    ck_assert_uint_eq(z.word, 0);
    ck_assert_uint_eq(z.bitmap, 0x0000000700000000ull);
    ck_assert_int_eq(type_of(&ext_geo, z.word, z.bitmap, 2), SUBCLUSTER_ZERO_PLAIN);

    struct l2_entry c = l2_entry_with_copied((struct l2_entry){ .word = 0x50000 }, true);
    ck_assert(l2_entry_is_copied(c));
    ck_assert(!l2_entry_is_copied(l2_entry_with_copied(c, false)));
    ck_assert_uint_eq(l1_entry_with_copied(0x70000, true), 0x70000 | (1ull << 63));
}
END_TEST

/* The stored offset keeps the bits at 56 and above that the host offset drops. */
START_TEST(compressed_stored_offset_keeps_high_bits)
{
    const struct geometry g = { .version = 3, .cluster_bits = 9, .extended_l2 = false };
    uint64_t word = (1ull << 62) | (1ull << 58) | 0x1234;
    struct compressed_desc d = compressed_desc_decode(&g, word);
    ck_assert_uint_eq(d.host_offset, 0x1234);
    ck_assert_uint_eq(compressed_desc_stored_offset(d), (1ull << 58) | 0x1234);
}
END_TEST

START_TEST(read_normal_zero_compressed_unallocated_v3)
{
    static struct e2e t;
    build_e2e(&t, 3);
    check_reads(&t);
    test_image_free(&t.img);
}
END_TEST

START_TEST(read_normal_compressed_unallocated_v2)
{
    static struct e2e t;
    build_e2e(&t, 2);
    check_reads(&t);
    test_image_free(&t.img);
}
END_TEST

START_TEST(unaligned_data_offset_names_the_entry)
{
    static struct e2e t;
    build_e2e(&t, 3);
    set_l2(&t, 5, COPIED | (t.img.extra_offset + 4 * E2E_CS + 512));
    struct qcow2_image *q = open_ok(&t.img);
    expect_read_error(q, 5 * E2E_CS, 100, -EIO, "L2 table entry", t.l2 + 5 * 8,
                      "not cluster-aligned");
    /* A read that starts in a good cluster stops at the bad one with the same error. */
    expect_read_error(q, 4 * E2E_CS + 10, E2E_CS, -EIO, "L2 table entry", t.l2 + 5 * 8,
                      "not cluster-aligned");
    qcow2_close(q);
    test_image_free(&t.img);
}
END_TEST

START_TEST(zero_flag_in_v2_names_the_entry)
{
    static struct e2e t;
    build_e2e(&t, 2);
    set_l2(&t, 1, ZERO_FLAG);
    struct qcow2_image *q = open_ok(&t.img);
    expect_read_error(q, E2E_CS, E2E_CS, -EIO, "L2 table entry", t.l2 + 8, "zero flag");
    /* Zero + preallocated is refused in v2 too. */
    set_l2(&t, 1, 0);
    qcow2_close(q);
    set_l2(&t, 4, COPIED | (t.img.extra_offset + E2E_CS) | ZERO_FLAG);
    q = open_ok(&t.img);
    expect_read_error(q, 4 * E2E_CS + 8, 8, -EIO, "L2 table entry", t.l2 + 4 * 8, "zero flag");
    uint8_t buf[16];
    struct qcow2_error err;
    ck_assert_int_eq(qcow2_pread(q, buf, sizeof(buf), E2E_CS, &err), 0);
    qcow2_close(q);
    test_image_free(&t.img);
}
END_TEST

START_TEST(reserved_bits_name_the_entry)
{
    static const uint64_t reserved[] = { 1ull << 1, 1ull << 8, 1ull << 56, 1ull << 61 };
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        static struct e2e t;
        build_e2e(&t, 3);
        set_l2(&t, 5, COPIED | (t.img.extra_offset + 4 * E2E_CS) | reserved[i]);
        struct qcow2_image *q = open_ok(&t.img);
        expect_read_error(q, 5 * E2E_CS, 512, -EIO, "L2 table entry", t.l2 + 5 * 8,
                          "reserved bits");
        qcow2_close(q);
        test_image_free(&t.img);
    }
}
END_TEST

START_TEST(damaged_compressed_stream)
{
    static struct e2e t;
    build_e2e(&t, 3);
    uint64_t comp = t.img.extra_offset + 2 * E2E_CS + 100;
    memset(t.img.data + comp, 0xFF, 16);    /* deflate block type 3: invalid */
    struct qcow2_image *q = open_ok(&t.img);
    expect_read_error(q, 2 * E2E_CS, 10, -EIO, "compressed cluster", comp, "damaged");
    /* The other compressed cluster still reads. */
    uint8_t buf[E2E_CS];
    struct qcow2_error err;
    ck_assert_int_eq(qcow2_pread(q, buf, sizeof(buf), 6 * E2E_CS, &err), 0);
    ck_assert_mem_eq(buf, t.expect + 6 * E2E_CS, E2E_CS);
    qcow2_close(q);
    test_image_free(&t.img);
}
END_TEST

/* Extended L2 at 16 KiB clusters: 512-byte subclusters. */
START_TEST(read_extended_l2_subclusters)
{
    enum { CB = 14, CS = 1 << CB, SC = CS / 32 };
    struct test_image_spec s = test_image_spec(3, CB, 4 * CS);
    s.extended_l2 = 1;
    s.extra_clusters = 3;
    struct test_image img;
    ck_assert_int_eq(test_image_build(&s, &img), 0);
    uint64_t l2 = img.extra_offset, data = l2 + CS, data2 = l2 + 2 * CS;
    test_put_be64(img.data + img.l1_offset, COPIED | l2);
    test_fill_random(img.data + data, 2 * CS, 9);

    static uint8_t expect[4 * CS];
    memset(expect, 0, sizeof(expect));
    /* Cluster 0: alloc 0, 2, 31; zero 1; the rest unallocated (zeros, no backing). */
    test_put_be64(img.data + l2, COPIED | data);
    test_put_be64(img.data + l2 + 8, (1ull << 0) | (1ull << 2) | (1ull << 31) | (1ull << 33));
    memcpy(expect + 0 * SC, img.data + data + 0 * SC, SC);
    memcpy(expect + 2 * SC, img.data + data + 2 * SC, SC);
    memcpy(expect + 31 * SC, img.data + data + 31 * SC, SC);
    /* Cluster 1: unallocated, all zero bits. Cluster 2: unallocated. */
    test_put_be64(img.data + l2 + 16 + 8, 0xFFFFFFFF00000000ull);
    /* Cluster 3: fully allocated. */
    test_put_be64(img.data + l2 + 48, COPIED | data2);
    test_put_be64(img.data + l2 + 56, 0xFFFFFFFFull);
    memcpy(expect + 3 * CS, img.data + data2, CS);

    struct qcow2_image *q = open_ok(&img);
    static uint8_t buf[4 * CS];
    struct qcow2_error err;
    memset(buf, 0xEE, sizeof(buf));
    ck_assert_int_eq(qcow2_pread(q, buf, sizeof(buf), 0, &err), 0);
    for (uint32_t i = 0; i < 4 * 32; i++)
        ck_assert_msg(!memcmp(buf + i * SC, expect + i * SC, SC), "subcluster %u differs", i);
    memset(buf, 0xEE, 3 * SC);
    ck_assert_int_eq(qcow2_pread(q, buf, 3 * SC - 2, SC + 1, &err), 0);
    ck_assert_mem_eq(buf, expect + SC + 1, 3 * SC - 2);
    qcow2_close(q);

    /* Alloc and zero for the same subcluster: refused, naming the entry. */
    test_put_be64(img.data + l2 + 8, (1ull << 4) | (1ull << 36));
    q = open_ok(&img);
    expect_read_error(q, 0, 512, -EIO, "L2 table entry", l2, "bitmap");
    qcow2_close(q);
    /* A compressed cluster has no subclusters: its bitmap must be zero. */
    uint8_t packed[CS];
    uint8_t plain[CS];
    memset(plain, 0x61, sizeof(plain));
    size_t n = test_deflate_raw(plain, sizeof(plain), packed, sizeof(packed));
    ck_assert_uint_gt(n, 0);
    memcpy(img.data + data, packed, n);
    uint64_t cw = desc_word(CB, data, (n - 1) >> 9);
    test_put_be64(img.data + l2, cw);
    test_put_be64(img.data + l2 + 8, 0);
    q = open_ok(&img);
    memset(buf, 0, CS);
    ck_assert_int_eq(qcow2_pread(q, buf, CS, 0, &err), 0);
    ck_assert_mem_eq(buf, plain, CS);
    qcow2_close(q);
    test_put_be64(img.data + l2 + 8, 1ull << 40);
    q = open_ok(&img);
    expect_read_error(q, 0, 512, -EIO, "L2 table entry", l2, "bitmap");
    qcow2_close(q);
    /* Bit 0 of word 0 must be zero with extended L2 entries. */
    test_put_be64(img.data + l2 + 8, 1);
    test_put_be64(img.data + l2, COPIED | data | ZERO_FLAG);
    q = open_ok(&img);
    expect_read_error(q, 0, 512, -EIO, "L2 table entry", l2, "bit 0");
    qcow2_close(q);
    test_image_free(&img);
}
END_TEST

/* ---- cluster_l2_for_write, watched from the disk ----------------------------------- */

#define LW_CB 12
#define LW_CS 4096u
#define LW_L2_SPAN (LW_CS / 8u * LW_CS)     /* guest bytes one L2 table maps */

/*
 * An image on a memory backend behind a crash-mode shim that never crashes: writes
 * wait for a flush, so the memory backend holds what a power cut would leave. The
 * shim's write hook looks at that state when L1 entry `watch` is written.
 */
struct l2_watch {
    struct test_image img;
    struct io_fault fault;
    struct qcow2_backend *disk;     /* the flushed state */
    struct qcow2_image *q;
    uint32_t watch;
    unsigned l1_writes;             /* writes that covered the watched L1 entry */
    uint64_t named;                 /* the value the last one stored */
    uint64_t named_refcount;        /* on disk, when it was written: the table it names */
    bool table_on_disk;             /* that table's bytes equal `expect_table` by then */
    uint64_t old_l2;                /* the table it replaces (0: none) */
    uint64_t old_refcount;          /* on disk, when the entry was written */
    uint8_t expect_table[LW_CS];
};

static uint64_t disk_refcount(struct l2_watch *w, uint64_t host)
{
    size_t len;
    const uint8_t *d = qcow2_backend_mem_data(w->disk, &len);
    const uint8_t *p = d + w->img.refblock_offset + 2 * (host >> LW_CB);
    return (uint64_t)p[0] << 8 | p[1];
}

static int watch_write(struct io_fault *f, struct qcow2_backend *inner, const void *buf,
                       size_t len, uint64_t off)
{
    struct l2_watch *w = f->ctx;
    uint64_t entry_at = w->img.l1_offset + 8u * w->watch;
    if (off <= entry_at && entry_at + 8 <= off + len) {
        size_t disk_len;
        const uint8_t *d = qcow2_backend_mem_data(w->disk, &disk_len);
        w->l1_writes++;
        w->named = test_get_be64((const uint8_t *)buf + (entry_at - off));
        uint64_t table = l1_entry_l2_offset(w->named);
        w->named_refcount = table ? disk_refcount(w, table) : 0;
        w->table_on_disk = table && table + LW_CS <= disk_len &&
                           !memcmp(d + table, w->expect_table, LW_CS);
        w->old_refcount = w->old_l2 ? disk_refcount(w, w->old_l2) : 0;
    }
    return io_fault_write(f, inner, buf, len, off);
}

static void watch_open(struct l2_watch *w)
{
    memset(w, 0, sizeof(*w));
    struct test_image_spec s = test_image_spec(3, LW_CB, 2 * LW_L2_SPAN);
    ck_assert_int_eq(test_image_build(&s, &w->img), 0);
    ck_assert_int_eq(qcow2_backend_mem_new(w->img.data, w->img.len, 1u << 22, &w->disk), 0);
    io_fault_init(&w->fault);
    w->fault.crash = IO_FAULT_CRASH_KEEP;
    w->fault.write = watch_write;
    w->fault.ctx = w;
    struct qcow2_backend *shim = io_fault_wrap(w->disk, false, &w->fault);
    ck_assert_ptr_nonnull(shim);
    struct qcow2_open_options o = { .writable = true };
    struct qcow2_error err;
    int ret = qcow2_open_backend(shim, "mem.qcow2", &o, &w->q, &err);
    ck_assert_msg(ret == 0, "open read-write: expected success, got %d: %s", ret, err.message);
}

static void watch_close(struct l2_watch *w)
{
    qcow2_close(w->q);
    io_fault_fini(&w->fault);
    qcow2_backend_destroy(w->disk);
    test_image_free(&w->img);
}

static struct l2_ref l2_for_write_ok(struct l2_watch *w, uint32_t l1_index)
{
    struct l2_ref l2 = { 0, NULL };
    struct qcow2_error err;
    int ret = cluster_l2_for_write(w->q, l1_index, &l2, &err);
    ck_assert_msg(ret == 0, "L2 table for L1 entry %u: expected success, got %d: %s",
                  l1_index, ret, err.message);
    ck_assert_ptr_nonnull(l2.table);
    return l2;
}

static uint64_t cached_refcount(struct qcow2_image *q, uint64_t host)
{
    uint64_t rc;
    struct qcow2_error err;
    ck_assert_int_eq(refcount_get(q, host >> LW_CB, &rc, &err), 0);
    return rc;
}

START_TEST(l2_for_write_new_table_named_after_sync)
{
    struct l2_watch w;
    watch_open(&w);
    w.watch = 1;
    memset(w.expect_table, 0, LW_CS);
    ck_assert_uint_eq(w.q->l1[1], 0);
    struct l2_ref l2 = l2_for_write_ok(&w, 1);
    ck_assert_msg(l2.offset && l2.offset % LW_CS == 0,
                  "new L2 table: expected a cluster-aligned offset, got 0x%" PRIx64, l2.offset);
    ck_assert_msg(w.l1_writes == 1, "L1 entry 1: expected one write, got %u", w.l1_writes);
    ck_assert_msg(w.named == (l2.offset | COPIED), "L1 entry 1 on disk: expected 0x%016"
                  PRIx64 ", got 0x%016" PRIx64, (uint64_t)(l2.offset | COPIED), w.named);
    ck_assert_msg(w.named_refcount == 1, "when L1 entry 1 was written, the new table's "
                  "refcount on disk: expected 1, got %" PRIu64, w.named_refcount);
    ck_assert_msg(w.table_on_disk, "when L1 entry 1 was written, the new table (zeros) "
                  "at 0x%" PRIx64 " was not on disk yet", l2.offset);
    ck_assert_uint_eq(w.q->l1[1], l2.offset | COPIED);
    for (uint32_t i = 0; i < LW_CS; i++)
        ck_assert_msg(l2.table[i] == 0, "new table byte %u: expected 0, got 0x%02x", i,
                      l2.table[i]);

    /* Refcount 1 and COPIED: the same table again, nothing allocated or written. */
    size_t len_before;
    qcow2_backend_mem_data(w.disk, &len_before);
    struct l2_ref again = l2_for_write_ok(&w, 1);
    ck_assert_msg(again.offset == l2.offset, "owned table: expected 0x%" PRIx64
                  " again, got 0x%" PRIx64, l2.offset, again.offset);
    ck_assert_msg(w.l1_writes == 1, "owned table: expected no L1 write, got %u more",
                  w.l1_writes - 1);
    ck_assert_uint_eq(cached_refcount(w.q, l2.offset), 1);
    ck_assert_uint_eq(cached_refcount(w.q, l2.offset + LW_CS), 0);
    watch_close(&w);
}
END_TEST

START_TEST(l2_for_write_copies_a_table_shared_with_a_snapshot)
{
    struct l2_watch w;
    watch_open(&w);
    struct qcow2_error err;
    uint8_t data[LW_CS];
    test_fill_random(data, sizeof(data), 21);
    ck_assert_int_eq(qcow2_pwrite(w.q, data, sizeof(data), 3 * LW_CS, &err), 0);
    ck_assert_int_eq(qcow2_snapshot_create(w.q, "s", &err), 0);
    uint64_t old = l1_entry_l2_offset(w.q->l1[0]);
    ck_assert_msg(old && !l1_entry_is_copied(w.q->l1[0]), "after a snapshot: expected "
                  "L1 entry 0 shared (no COPIED), got 0x%016" PRIx64, w.q->l1[0]);
    ck_assert_uint_eq(cached_refcount(w.q, old), 2);
    const uint8_t *old_table;
    ck_assert_int_eq(cluster_l2_table(w.q, 0, &old_table, &err), 0);
    memcpy(w.expect_table, old_table, LW_CS);
    uint64_t data_host = l2_entry_host_offset(l2_entry_at(&w.q->geo, old_table, 3));
    ck_assert_uint_eq(cached_refcount(w.q, data_host), 2);
    w.watch = 0;
    w.l1_writes = 0;
    w.old_l2 = old;

    struct l2_ref l2 = l2_for_write_ok(&w, 0);
    ck_assert_msg(l2.offset != old, "shared table 0x%" PRIx64 ": expected a copy elsewhere",
                  old);
    ck_assert_msg(w.l1_writes == 1, "L1 entry 0: expected one write, got %u", w.l1_writes);
    ck_assert_msg(w.named == (l2.offset | COPIED), "L1 entry 0 on disk: expected 0x%016"
                  PRIx64 ", got 0x%016" PRIx64, (uint64_t)(l2.offset | COPIED), w.named);
    ck_assert_msg(w.table_on_disk, "when L1 entry 0 was written, the copy at 0x%" PRIx64
                  " did not hold the shared table's entries on disk", l2.offset);
    ck_assert_msg(w.named_refcount == 1, "when L1 entry 0 was written, the copy's refcount "
                  "on disk: expected 1, got %" PRIu64, w.named_refcount);
    ck_assert_msg(w.old_refcount == 2, "when L1 entry 0 was written, the shared table's "
                  "refcount on disk: expected still 2, got %" PRIu64, w.old_refcount);
    ck_assert_msg(!memcmp(l2.table, w.expect_table, LW_CS),
                  "the copy's cached entries differ from the shared table's");
    ck_assert_uint_eq(w.q->l1[0], l2.offset | COPIED);
    uint64_t rc = cached_refcount(w.q, old);
    ck_assert_msg(rc == 1, "shared table after the copy: expected refcount 1 (the "
                  "snapshot's), got %" PRIu64, rc);
    ck_assert_uint_eq(cached_refcount(w.q, l2.offset), 1);
    rc = cached_refcount(w.q, data_host);
    ck_assert_msg(rc == 2, "data cluster under both tables: expected refcount 2, got %"
                  PRIu64, rc);
    uint8_t back[LW_CS];
    ck_assert_int_eq(qcow2_pread(w.q, back, sizeof(back), 3 * LW_CS, &err), 0);
    ck_assert_mem_eq(back, data, sizeof(data));
    watch_close(&w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cluster");

    TCase *tc = tcase_create("l2 entries");
    tcase_add_test(tc, l2_entry_at_standard);
    tcase_add_test(tc, l2_entry_at_extended);
    tcase_add_test(tc, standard_entry_types);
    tcase_add_test(tc, cluster_types_and_zeroed_entries);
    tcase_add_test(tc, compressed_stored_offset_keeps_high_bits);
    tcase_add_test(tc, extended_entry_types_allocated_cluster);
    tcase_add_test(tc, extended_entry_alloc_and_zero_is_invalid);
    tcase_add_test(tc, extended_entry_types_unallocated_cluster);
    tcase_add_test(tc, extended_entry_ignores_word_bit_0);
    tcase_add_test(tc, extended_compressed_entry);
    suite_add_tcase(s, tc);

    tc = tcase_create("compressed descriptor");
    tcase_add_loop_test(tc, compressed_descriptor_every_cluster_size, 9, 22);
    tcase_add_test(tc, compressed_descriptor_high_offset_bits);
    tcase_add_test(tc, compressed_descriptor_matches_qemu_shift_and_mask);
    tcase_add_test(tc, compressed_descriptor_writer_formula);
    suite_add_tcase(s, tc);

    tc = tcase_create("reads");
    tcase_add_test(tc, read_normal_zero_compressed_unallocated_v3);
    tcase_add_test(tc, read_normal_compressed_unallocated_v2);
    tcase_add_test(tc, unaligned_data_offset_names_the_entry);
    tcase_add_test(tc, zero_flag_in_v2_names_the_entry);
    tcase_add_test(tc, reserved_bits_name_the_entry);
    tcase_add_test(tc, damaged_compressed_stream);
    tcase_add_test(tc, read_extended_l2_subclusters);
    suite_add_tcase(s, tc);

    tc = tcase_create("l2 for write");
    tcase_add_test(tc, l2_for_write_new_table_named_after_sync);
    tcase_add_test(tc, l2_for_write_copies_a_table_shared_with_a_snapshot);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
