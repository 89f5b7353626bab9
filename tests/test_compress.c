/* SPDX-License-Identifier: BSD-2-Clause */
/* Compressed clusters (docs/format.md §7): raw deflate with a 4 KiB window, and zstd frames. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "compress.h"
#include "qcow2.h"
#include "support.h"

/* Compressible but not trivial: text-like runs mixed with some noise. */
static void fill_cluster(uint8_t *buf, size_t len, uint32_t seed)
{
    static const char words[] = "qcow2 cluster refcount snapshot backing L1 L2 zero ";
    test_fill_random(buf, len, seed);
    for (size_t i = 0; i < len; i++)
        if (buf[i] % 4)
            buf[i] = (uint8_t)words[(i / 3 + seed) % (sizeof(words) - 1)];
}

static struct decompressor *new_dec(enum qcow2_compression type)
{
    struct decompressor *d = NULL;
    ck_assert_int_eq(decompressor_new(type, &d), 0);
    ck_assert_ptr_nonnull(d);
    return d;
}

static size_t zstd_compress(const void *in, size_t len, void *out, size_t cap)
{
    size_t n = ZSTD_compress(out, cap, in, len, 3);
    ck_assert_msg(!ZSTD_isError(n), "ZSTD_compress: %s", ZSTD_getErrorName(n));
    return n;
}

static size_t zlib_compress(const void *in, size_t len, void *out, size_t cap)
{
    size_t n = test_deflate_raw(in, len, out, cap);
    ck_assert_msg(n > 0, "deflate failed for %zu bytes", len);
    return n;
}

typedef size_t (*compress_fn)(const void *in, size_t len, void *out, size_t cap);

static const struct {
    enum qcow2_compression type;
    compress_fn compress;
    const char *name;
} codecs[] = {
    { QCOW2_COMPRESSION_ZLIB, zlib_compress, "zlib" },
    { QCOW2_COMPRESSION_ZSTD, zstd_compress, "zstd" },
};

/* Buffers: a cluster, its compressed form (with room for extras), and the output. */
struct bufs {
    size_t cs;
    uint8_t *plain, *packed, *out;
    size_t packed_cap;
};

static void bufs_new(struct bufs *b, size_t cs)
{
    b->cs = cs;
    b->packed_cap = 2 * cs + 4096;
    b->plain = malloc(cs);
    b->packed = malloc(b->packed_cap);
    b->out = malloc(cs);
    ck_assert(b->plain && b->packed && b->out);
}

static void bufs_free(struct bufs *b)
{
    free(b->plain);
    free(b->packed);
    free(b->out);
}

static void expect_decodes(struct decompressor *d, const struct bufs *b, size_t packed_len,
                           const char *what)
{
    memset(b->out, 0xEE, b->cs);
    int ret = decompress_cluster(d, b->packed, packed_len, b->out, b->cs);
    ck_assert_msg(ret == 0, "%s (cluster %zu): expected 0, got %d", what, b->cs, ret);
    ck_assert_msg(!memcmp(b->out, b->plain, b->cs), "%s (cluster %zu): output differs", what,
                  b->cs);
}

static void expect_fails(struct decompressor *d, const struct bufs *b, size_t packed_len,
                         const char *what)
{
    int ret = decompress_cluster(d, b->packed, packed_len, b->out, b->cs);
    ck_assert_msg(ret == -EIO, "%s (cluster %zu): expected -EIO, got %d", what, b->cs, ret);
}

/* _i = codec * 5 + size index */
static const size_t sizes[] = { 512, 4096, 16384, 65536, 2u << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

START_TEST(round_trip)
{
    size_t c = (size_t)_i / NSIZES, cs = sizes[(size_t)_i % NSIZES];
    struct bufs b;
    bufs_new(&b, cs);
    struct decompressor *d = new_dec(codecs[c].type);
    for (uint32_t seed = 0; seed < 3; seed++) {
        fill_cluster(b.plain, cs, seed);
        size_t n = codecs[c].compress(b.plain, cs, b.packed, b.packed_cap);
        expect_decodes(d, &b, n, codecs[c].name);
        /* A cluster of zeros, the most common compressed cluster. */
        memset(b.plain, 0, cs);
        n = codecs[c].compress(b.plain, cs, b.packed, b.packed_cap);
        expect_decodes(d, &b, n, codecs[c].name);
    }
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

START_TEST(trailing_garbage_accepted)
{
    /* The stored range is rounded to sectors and may hold the next cluster's bytes. */
    size_t c = (size_t)_i / NSIZES, cs = sizes[(size_t)_i % NSIZES];
    struct bufs b;
    bufs_new(&b, cs);
    struct decompressor *d = new_dec(codecs[c].type);
    fill_cluster(b.plain, cs, 11);
    size_t n = codecs[c].compress(b.plain, cs, b.packed, b.packed_cap);
    memset(b.packed + n, 0xA5, 700);
    expect_decodes(d, &b, n + 700, codecs[c].name);
    /* Garbage that looks like the start of another stream. */
    size_t m = codecs[c].compress(b.plain, cs / 2, b.packed + n, b.packed_cap - n);
    expect_decodes(d, &b, n + m, codecs[c].name);
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

START_TEST(truncated_stream_refused)
{
    size_t c = (size_t)_i / NSIZES, cs = sizes[(size_t)_i % NSIZES];
    struct bufs b;
    bufs_new(&b, cs);
    struct decompressor *d = new_dec(codecs[c].type);
    test_fill_random(b.plain, cs, 3);       /* incompressible: the stream is long */
    size_t n = codecs[c].compress(b.plain, cs, b.packed, b.packed_cap);
    ck_assert_uint_gt(n, cs / 2);
    expect_fails(d, &b, n / 2, codecs[c].name);
    expect_fails(d, &b, 1, codecs[c].name);
    expect_fails(d, &b, 0, codecs[c].name);
    /* The whole stream still decodes with the same decompressor afterwards. */
    expect_decodes(d, &b, n, codecs[c].name);
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

START_TEST(stream_shorter_than_cluster_refused)
{
    /* A valid stream that produces less than a cluster. */
    size_t c = (size_t)_i / NSIZES, cs = sizes[(size_t)_i % NSIZES];
    struct bufs b;
    bufs_new(&b, cs);
    struct decompressor *d = new_dec(codecs[c].type);
    fill_cluster(b.plain, cs, 4);
    size_t n = codecs[c].compress(b.plain, cs - 1, b.packed, b.packed_cap);
    expect_fails(d, &b, n, codecs[c].name);
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

START_TEST(garbage_refused)
{
    size_t c = (size_t)_i;
    struct bufs b;
    bufs_new(&b, 65536);
    struct decompressor *d = new_dec(codecs[c].type);
    /* 0xFF: a deflate block of the reserved type 3; no zstd frame magic. */
    memset(b.packed, 0xFF, 4096);
    expect_fails(d, &b, 4096, codecs[c].name);
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

START_TEST(zstd_frame_longer_than_cluster_refused)
{
    size_t cs = sizes[(size_t)_i];
    struct bufs b;
    bufs_new(&b, cs);
    uint8_t *two = malloc(2 * cs);
    fill_cluster(two, 2 * cs, 5);
    memcpy(b.plain, two, cs);
    size_t n = zstd_compress(two, 2 * cs, b.packed, b.packed_cap);
    struct decompressor *d = new_dec(QCOW2_COMPRESSION_ZSTD);
    expect_fails(d, &b, n, "zstd frame of two clusters");
    /* One byte too many is enough. */
    n = zstd_compress(two, cs + 1, b.packed, b.packed_cap);
    expect_fails(d, &b, n, "zstd frame of a cluster + 1");
    decompressor_free(d);
    free(two);
    bufs_free(&b);
}
END_TEST

START_TEST(zlib_stream_longer_than_cluster_accepted)
{
    /*
     * QEMU's zlib reader accepts Z_BUF_ERROR once the output is full: a deflate stream
     * holding more than a cluster yields its first cluster (docs/format.md §7).
     */
    size_t cs = sizes[(size_t)_i];
    struct bufs b;
    bufs_new(&b, cs);
    uint8_t *two = malloc(2 * cs);
    fill_cluster(two, 2 * cs, 6);
    memcpy(b.plain, two, cs);
    size_t n = zlib_compress(two, 2 * cs, b.packed, b.packed_cap);
    struct decompressor *d = new_dec(QCOW2_COMPRESSION_ZLIB);
    expect_decodes(d, &b, n, "zlib stream of two clusters");
    decompressor_free(d);
    free(two);
    bufs_free(&b);
}
END_TEST

START_TEST(zstd_concatenated_frames_accepted)
{
    size_t cs = sizes[(size_t)_i];
    struct bufs b;
    bufs_new(&b, cs);
    fill_cluster(b.plain, cs, 8);
    struct decompressor *d = new_dec(QCOW2_COMPRESSION_ZSTD);
    /* Two halves. */
    size_t n1 = zstd_compress(b.plain, cs / 2, b.packed, b.packed_cap);
    size_t n2 = zstd_compress(b.plain + cs / 2, cs - cs / 2, b.packed + n1, b.packed_cap - n1);
    expect_decodes(d, &b, n1 + n2, "two zstd frames");
    /* Four uneven pieces, the last followed by garbage. */
    size_t cuts[] = { 0, 1, cs / 3, cs - 7, cs };
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n += zstd_compress(b.plain + cuts[i], cuts[i + 1] - cuts[i], b.packed + n,
                           b.packed_cap - n);
    memset(b.packed + n, 0x5A, 64);
    expect_decodes(d, &b, n + 64, "four zstd frames");
    /* The frames stop short of the cluster: refused. */
    n1 = zstd_compress(b.plain, cs / 2, b.packed, b.packed_cap);
    n2 = zstd_compress(b.plain + cs / 2, cs / 4, b.packed + n1, b.packed_cap - n1);
    expect_fails(d, &b, n1 + n2, "zstd frames short of a cluster");
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

START_TEST(zstd_frame_with_checksum_accepted)
{
    /* QEMU writes no checksum, but a frame carrying one is still a valid frame. */
    size_t cs = sizes[(size_t)_i];
    struct bufs b;
    bufs_new(&b, cs);
    fill_cluster(b.plain, cs, 10);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ck_assert_ptr_nonnull(cctx);
    ck_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)));
    size_t n = ZSTD_compress2(cctx, b.packed, b.packed_cap, b.plain, cs);
    ck_assert_msg(!ZSTD_isError(n), "ZSTD_compress2: %s", ZSTD_getErrorName(n));
    ZSTD_freeCCtx(cctx);
    struct decompressor *d = new_dec(QCOW2_COMPRESSION_ZSTD);
    expect_decodes(d, &b, n, "zstd frame with a checksum");
    /* A damaged checksum is damage. */
    b.packed[n - 1] ^= 0xFF;
    expect_fails(d, &b, n, "zstd frame with a wrong checksum");
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

START_TEST(decompressor_reused_across_clusters)
{
    size_t c = (size_t)_i;
    struct bufs b;
    bufs_new(&b, 65536);
    struct decompressor *d = new_dec(codecs[c].type);
    for (uint32_t seed = 0; seed < 8; seed++) {
        fill_cluster(b.plain, b.cs, seed);
        size_t n = codecs[c].compress(b.plain, b.cs, b.packed, b.packed_cap);
        if (seed % 3 == 2)
            expect_fails(d, &b, n / 3, codecs[c].name);     /* errors do not stick */
        expect_decodes(d, &b, n, codecs[c].name);
    }
    decompressor_free(d);
    decompressor_free(NULL);
    bufs_free(&b);
}
END_TEST

/*
 * The engine's compressor keeps its stream from cluster to cluster: each cluster must
 * come out as a new compressor would write it (no history carried over, a failure not
 * sticking) and decode to itself.
 */
START_TEST(compressor_reused_across_clusters)
{
    size_t c = (size_t)_i / NSIZES, cs = sizes[(size_t)_i % NSIZES];
    struct bufs b;
    bufs_new(&b, cs);
    struct decompressor *d = new_dec(codecs[c].type);
    struct compressor *kept = NULL;
    ck_assert_int_eq(compressor_new(codecs[c].type, cs, &kept), 0);
    for (uint32_t seed = 0; seed < 6; seed++) {
        if (seed % 3 == 1)
            test_fill_random(b.plain, cs, seed);        /* incompressible: stored plain */
        else if (seed % 3 == 2)
            memset(b.plain, 0, cs);
        else
            fill_cluster(b.plain, cs, seed);
        const uint8_t *packed, *fresh_packed;
        size_t n = compress_cluster(kept, b.plain, cs, cs - 1, &packed);
        struct compressor *fresh = NULL;
        ck_assert_int_eq(compressor_new(codecs[c].type, cs, &fresh), 0);
        size_t fresh_n = compress_cluster(fresh, b.plain, cs, cs - 1, &fresh_packed);
        ck_assert_msg(n == fresh_n && !memcmp(packed, fresh_packed, n),
                      "%s cluster %zu, seed %u: the kept compressor wrote %zu bytes, a new "
                      "one %zu (or other bytes)", codecs[c].name, cs, seed, n, fresh_n);
        compressor_free(fresh);
        if (seed % 3 == 1) {
            ck_assert_msg(n == 0, "%s: random cluster of %zu compressed to %zu bytes",
                          codecs[c].name, cs, n);
            continue;
        }
        ck_assert_msg(n > 0 && n < cs, "%s: cluster %zu, seed %u: got %zu bytes",
                      codecs[c].name, cs, seed, n);
        memcpy(b.packed, packed, n);
        expect_decodes(d, &b, n, codecs[c].name);
        /* One byte too few for it: refused, and the next cluster is not hurt. */
        ck_assert_uint_eq(compress_cluster(kept, b.plain, cs, n - 1, &packed), 0);
    }
    compressor_free(kept);
    compressor_free(NULL);
    decompressor_free(d);
    bufs_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("compress");

    TCase *tc = tcase_create("both codecs");
    tcase_add_loop_test(tc, round_trip, 0, 2 * NSIZES);
    tcase_add_loop_test(tc, trailing_garbage_accepted, 0, 2 * NSIZES);
    tcase_add_loop_test(tc, truncated_stream_refused, 0, 2 * NSIZES);
    tcase_add_loop_test(tc, stream_shorter_than_cluster_refused, 0, 2 * NSIZES);
    tcase_add_loop_test(tc, garbage_refused, 0, 2);
    tcase_add_loop_test(tc, decompressor_reused_across_clusters, 0, 2);
    tcase_add_loop_test(tc, compressor_reused_across_clusters, 0, 2 * NSIZES);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("overlong and multi-frame");
    tcase_add_loop_test(tc, zstd_frame_longer_than_cluster_refused, 0, NSIZES);
    tcase_add_loop_test(tc, zlib_stream_longer_than_cluster_accepted, 0, NSIZES);
    tcase_add_loop_test(tc, zstd_concatenated_frames_accepted, 0, NSIZES);
    tcase_add_loop_test(tc, zstd_frame_with_checksum_accepted, 0, NSIZES);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
