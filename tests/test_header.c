/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The header parser, rule by rule: each test starts from a valid image built by
 * test_image_build, breaks exactly one thing and checks the code, the structure, the
 * offset of the offending field and that the message names the rule.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "header.h"
#include "qcow2.h"
#include "support.h"

#define NAME "dir/hdr.qcow2"

/* Header field offsets (docs/format.md §1). */
enum {
    F_MAGIC = 0, F_VERSION = 4, F_BACKING_OFFSET = 8, F_BACKING_SIZE = 16,
    F_CLUSTER_BITS = 20, F_SIZE = 24, F_CRYPT = 32, F_L1_SIZE = 36, F_L1_OFFSET = 40,
    F_REFTABLE_OFFSET = 48, F_REFTABLE_CLUSTERS = 56, F_NB_SNAPSHOTS = 60,
    F_SNAPSHOTS_OFFSET = 64, F_INCOMPAT = 72, F_COMPAT = 80, F_AUTOCLEAR = 88,
    F_REFCOUNT_ORDER = 96, F_HEADER_LENGTH = 100, F_COMPRESSION = 104,
};

#define EXT_END 0x00000000u
#define EXT_BACKING_FORMAT 0xE2792ACAu
#define EXT_FEATURES 0x6803F857u
#define EXT_BITMAPS 0x23852875u
#define EXT_FDE 0x0537BE77u
#define EXT_UNKNOWN 0x1D2C3B4Au

static void build_spec(struct test_image *img, struct test_image_spec s)
{
    s.extra_clusters = s.extra_clusters ? s.extra_clusters : 2;
    ck_assert_int_eq(test_image_build(&s, img), 0);
}

static void build(struct test_image *img, uint32_t version, uint32_t cb, uint64_t size)
{
    build_spec(img, test_image_spec(version, cb, size));
}

/* The usual starting point: v3, 64 KiB clusters, 1 GiB (two L1 entries). */
static void build_v3(struct test_image *img)
{
    build(img, 3, 16, 1ull << 30);
}

static void set32(struct test_image *img, size_t off, uint32_t v)
{
    test_put_be32(img->data + off, v);
}

static void set64(struct test_image *img, size_t off, uint64_t v)
{
    test_put_be64(img->data + off, v);
}

static void or64(struct test_image *img, size_t off, uint64_t bits)
{
    set64(img, off, test_get_be64(img->data + off) | bits);
}

static int parse_sized(const struct test_image *img, uint64_t file_size, struct header *h,
                       struct qcow2_error *err)
{
    memset(err, 0, sizeof(*err));
    return header_parse(img->data, img->cluster_size, file_size, NAME, h, err);
}

static void expect_refused_sized(const struct test_image *img, uint64_t file_size, int code,
                                 const char *structure, uint64_t offset, const char *needle)
{
    struct header h;
    struct qcow2_error err;
    int ret = parse_sized(img, file_size, &h, &err);
    ck_assert_msg(ret == code, "expected %d for \"%s\", got %d (%s)", code, needle, ret,
                  err.message);
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.structure, structure);
    ck_assert_msg(err.offset == offset, "\"%s\": expected offset %" PRIu64 ", got %" PRIu64
                  " (%s)", needle, offset, err.offset, err.message);
    ck_assert_msg(strstr(err.message, needle) != NULL,
                  "message \"%s\" does not name the rule \"%s\"", err.message, needle);
    ck_assert_str_eq(err.file, NAME);
    /* A refusal leaves nothing allocated. */
    ck_assert_ptr_null(h.backing_name);
    ck_assert_ptr_null(h.feature_names);
}

static void expect_refused(const struct test_image *img, int code, const char *structure,
                           uint64_t offset, const char *needle)
{
    expect_refused_sized(img, img->len, code, structure, offset, needle);
}

static void expect_parses(const struct test_image *img, struct header *h)
{
    struct qcow2_error err;
    int ret = parse_sized(img, img->len, h, &err);
    ck_assert_msg(ret == 0, "expected a valid header, got %d: %s", ret, err.message);
}

/* Parses, expects success, and releases. */
static void expect_ok(const struct test_image *img)
{
    struct header h;
    expect_parses(img, &h);
    header_release(&h);
}

/* ---- identity -------------------------------------------------------------------- */

START_TEST(magic_must_match)
{
    struct test_image img;
    build_v3(&img);
    img.data[3] = 0xFA;
    expect_refused(&img, -EINVAL, "header field magic", F_MAGIC, "QFI");
    test_image_free(&img);
}
END_TEST

START_TEST(version_1_is_qcow1)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_VERSION, 1);
    expect_refused(&img, -EINVAL, "header field version", F_VERSION, "version 1");
    test_image_free(&img);
}
END_TEST

START_TEST(version_4_unsupported)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_VERSION, 4);
    expect_refused(&img, -EINVAL, "header field version", F_VERSION, "version 4");
    test_image_free(&img);
}
END_TEST

START_TEST(file_shorter_than_header)
{
    struct test_image img;
    build_v3(&img);
    expect_refused_sized(&img, 103, -EINVAL, "header", 0, "shorter than the 104-byte");
    /* Long enough for the fixed v3 fields but not for header_length (112). */
    expect_refused_sized(&img, 108, -EINVAL, "header field header_length", F_HEADER_LENGTH,
                         "past the end of the file");
    /* Too short to even hold the magic. */
    expect_refused_sized(&img, 4, -EINVAL, "header field magic", F_MAGIC, "QFI");
    test_image_free(&img);

    build(&img, 2, 16, 1ull << 30);
    expect_refused_sized(&img, 71, -EINVAL, "header", 0, "shorter than the 72-byte");
    test_image_free(&img);
}
END_TEST

/* ---- cluster_bits ---------------------------------------------------------------- */

START_TEST(cluster_bits_out_of_range)
{
    static const uint32_t bad[] = { 0, 8, 22, 63, 64, 0xFFFFFFFFu };
    struct test_image img;
    build_v3(&img);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set32(&img, F_CLUSTER_BITS, bad[i]);
        expect_refused(&img, -EINVAL, "header field cluster_bits", F_CLUSTER_BITS,
                       "outside 9..21");
    }
    test_image_free(&img);
}
END_TEST

START_TEST(cluster_bits_bounds_accepted)
{
    struct test_image img;
    build(&img, 3, 9, 1 << 20);
    expect_ok(&img);
    test_image_free(&img);
    build(&img, 3, 21, 1ull << 40);
    expect_ok(&img);
    test_image_free(&img);
}
END_TEST

/* ---- header_length and padding --------------------------------------------------- */

START_TEST(header_length_below_104)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_HEADER_LENGTH, 96);
    expect_refused(&img, -EINVAL, "header field header_length", F_HEADER_LENGTH,
                   "shorter than the 104");
    set32(&img, F_HEADER_LENGTH, 72);
    expect_refused(&img, -EINVAL, "header field header_length", F_HEADER_LENGTH,
                   "shorter than the 104");
    test_image_free(&img);
}
END_TEST

START_TEST(header_length_beyond_cluster)
{
    struct test_image img;
    build(&img, 3, 9, 1 << 20);
    set32(&img, F_HEADER_LENGTH, 520);
    expect_refused(&img, -EINVAL, "header field header_length", F_HEADER_LENGTH,
                   "exceeds the cluster size");
    /* Exactly one cluster is allowed: everything after 112 is unknown (zero) fields. */
    set32(&img, F_HEADER_LENGTH, 512);
    expect_ok(&img);
    test_image_free(&img);
}
END_TEST

START_TEST(header_length_not_multiple_of_8)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_HEADER_LENGTH, 108);
    expect_refused(&img, -EINVAL, "header field header_length", F_HEADER_LENGTH,
                   "multiple of 8");
    set32(&img, F_HEADER_LENGTH, 105);
    expect_refused(&img, -EINVAL, "header field header_length", F_HEADER_LENGTH,
                   "multiple of 8");
    test_image_free(&img);
}
END_TEST

START_TEST(padding_bytes_must_be_zero)
{
    struct test_image img;
    build_v3(&img);
    for (size_t i = 105; i < 112; i++) {
        img.data[i] = 0x40;
        expect_refused(&img, -EINVAL, "header padding", i, "padding");
        img.data[i] = 0;
    }
    expect_ok(&img);
    test_image_free(&img);
}
END_TEST

START_TEST(unknown_header_fields_after_112_accepted)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_HEADER_LENGTH, 120);
    memset(img.data + 112, 0xA5, 8);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_uint_eq(h.header_length, 120);
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(header_length_104_has_no_compression_type)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_HEADER_LENGTH, 104);
    /* Extensions start at 104, where compression_type would be. */
    size_t off = test_image_put_extension(&img, 104, EXT_BACKING_FORMAT, "raw", 3);
    test_image_put_extension(&img, off, EXT_END, NULL, 0);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_uint_eq(h.header_length, 104);
    ck_assert_uint_eq(h.compression_type, 0);
    ck_assert(h.has_backing_format);
    ck_assert_str_eq(h.backing_format, "raw");
    header_release(&h);
    test_image_free(&img);
}
END_TEST

/* ---- backing file name ----------------------------------------------------------- */

static void put_backing_name(struct test_image *img, uint64_t off, const void *name,
                             uint32_t len)
{
    set64(img, F_BACKING_OFFSET, off);
    set32(img, F_BACKING_SIZE, len);
    memcpy(img->data + off, name, len);
}

START_TEST(backing_offset_past_cluster_0)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_BACKING_OFFSET, 65537);
    set32(&img, F_BACKING_SIZE, 4);
    expect_refused(&img, -EINVAL, "header field backing_file_offset", F_BACKING_OFFSET,
                   "past the end of cluster 0");
    test_image_free(&img);
}
END_TEST

START_TEST(backing_name_too_long)
{
    struct test_image img;
    build_v3(&img);
    /* Would cross the end of cluster 0. */
    set64(&img, F_BACKING_OFFSET, 65536 - 10);
    set32(&img, F_BACKING_SIZE, 11);
    memset(img.data + 65536 - 10, 'b', 10);
    expect_refused(&img, -EINVAL, "header field backing_file_size", F_BACKING_SIZE,
                   "exceeds");
    /* More than 1023 bytes, although it fits in the cluster. */
    memset(img.data + 1024, 'b', 1024);
    set64(&img, F_BACKING_OFFSET, 1024);
    set32(&img, F_BACKING_SIZE, 1024);
    expect_refused(&img, -EINVAL, "header field backing_file_size", F_BACKING_SIZE,
                   "exceeds");
    /* 1023 is the limit. */
    set32(&img, F_BACKING_SIZE, 1023);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_uint_eq(strlen(h.backing_name), 1023);
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(backing_name_past_eof)
{
    struct test_image img;
    build_v3(&img);
    put_backing_name(&img, 200, "base-image-name-of-fifty-bytes-................end", 50);
    expect_refused_sized(&img, 220, -EINVAL, "backing file name", 200,
                         "past the end of the file");
    test_image_free(&img);
}
END_TEST

START_TEST(backing_name_with_nul)
{
    struct test_image img;
    build_v3(&img);
    put_backing_name(&img, 200, "ab\0cd", 5);
    expect_refused(&img, -EINVAL, "backing file name", 200, "NUL");
    test_image_free(&img);
}
END_TEST

START_TEST(backing_name_overlapping_header)
{
    struct test_image img;
    /* Only the two fields change: the "name" is whatever header bytes lie there. */
    build_v3(&img);
    set64(&img, F_BACKING_OFFSET, 100);
    set32(&img, F_BACKING_SIZE, 4);
    expect_refused(&img, -EINVAL, "header field backing_file_offset", F_BACKING_OFFSET,
                   "overlaps");
    set64(&img, F_BACKING_OFFSET, 108);
    expect_refused(&img, -EINVAL, "header field backing_file_offset", F_BACKING_OFFSET,
                   "overlaps");
    test_image_free(&img);

    build(&img, 2, 16, 1ull << 30);
    set64(&img, F_BACKING_OFFSET, 64);
    set32(&img, F_BACKING_SIZE, 4);
    expect_refused(&img, -EINVAL, "header field backing_file_offset", F_BACKING_OFFSET,
                   "overlaps");
    test_image_free(&img);
}
END_TEST

/* ---- header extension walk ------------------------------------------------------- */

START_TEST(extension_too_large)
{
    struct test_image img;
    build_v3(&img);
    test_image_put_extension(&img, 112, EXT_UNKNOWN, NULL, 0);
    set32(&img, 112 + 4, 65536);
    expect_refused(&img, -EINVAL, "header extension", 112, "runs past the end");
    test_image_free(&img);

    /* The area ends at the backing name: 112 + 8 + 81 > 200. */
    build_v3(&img);
    uint8_t data[81];
    memset(data, 'x', sizeof(data));
    test_image_put_extension(&img, 112, EXT_UNKNOWN, data, 81);
    put_backing_name(&img, 200, "base", 4);
    expect_refused(&img, -EINVAL, "header extension", 112, "runs past the end");
    test_image_free(&img);
}
END_TEST

START_TEST(extension_ending_exactly_at_area_end_needs_no_end_marker)
{
    struct test_image img;
    build_v3(&img);
    uint8_t data[80];
    memset(data, 'x', sizeof(data));
    test_image_put_extension(&img, 112, EXT_UNKNOWN, data, 80);
    put_backing_name(&img, 200, "base", 4);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_str_eq(h.backing_name, "base");
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(extension_header_truncated)
{
    struct test_image img;
    build_v3(&img);
    /* Only 4 bytes between header_length and the backing name. */
    put_backing_name(&img, 116, "base", 4);
    expect_refused(&img, -EINVAL, "header extension", 112, "8-byte");
    test_image_free(&img);
}
END_TEST

START_TEST(end_marker_stops_the_walk)
{
    struct test_image img;
    build_v3(&img);
    size_t off = test_image_put_extension(&img, 112, EXT_END, NULL, 0);
    /* Junk after the end marker, which would be refused if it were read. */
    uint8_t junk[100];
    memset(junk, 'j', sizeof(junk));
    test_image_put_extension(&img, off, EXT_BACKING_FORMAT, junk, sizeof(junk));
    struct header h;
    expect_parses(&img, &h);
    ck_assert(!h.has_backing_format);
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(unknown_extension_skipped)
{
    struct test_image img;
    build_v3(&img);
    size_t off = test_image_put_extension(&img, 112, EXT_UNKNOWN, "hello", 5);
    ck_assert_uint_eq(off, 128);
    off = test_image_put_extension(&img, off, EXT_BACKING_FORMAT, "raw", 3);
    test_image_put_extension(&img, off, EXT_END, NULL, 0);
    struct header h;
    expect_parses(&img, &h);
    ck_assert(h.has_backing_format);
    ck_assert_str_eq(h.backing_format, "raw");
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(duplicate_known_extension_refused)
{
    struct test_image img;
    build_v3(&img);
    size_t off = test_image_put_extension(&img, 112, EXT_BACKING_FORMAT, "raw", 3);
    ck_assert_uint_eq(off, 128);
    off = test_image_put_extension(&img, off, EXT_BACKING_FORMAT, "qcow2", 5);
    test_image_put_extension(&img, off, EXT_END, NULL, 0);
    expect_refused(&img, -EINVAL, "header extension", 128, "more than once");
    test_image_free(&img);
}
END_TEST

START_TEST(backing_format_too_long)
{
    struct test_image img;
    build_v3(&img);
    test_image_put_extension(&img, 112, EXT_BACKING_FORMAT, "abcdefghijklmnop", 16);
    expect_refused(&img, -EINVAL, "backing format extension", 120, "15-byte");
    test_image_free(&img);

    build_v3(&img);
    test_image_put_extension(&img, 112, EXT_BACKING_FORMAT, "abcdefghijklmno", 15);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_str_eq(h.backing_format, "abcdefghijklmno");
    header_release(&h);
    test_image_free(&img);
}
END_TEST

/* ---- feature bits and the feature name table ------------------------------------- */

static void feature_entry(uint8_t *e, uint8_t type, uint8_t bit, const char *name)
{
    memset(e, 0, 48);
    e[0] = type;
    e[1] = bit;
    memcpy(e + 2, name, strlen(name) < 46 ? strlen(name) : 46);
}

START_TEST(feature_table_odd_length)
{
    struct test_image img;
    build_v3(&img);
    uint8_t entry[48];
    feature_entry(entry, 0, 0, "dirty");
    test_image_put_extension(&img, 112, EXT_FEATURES, entry, 47);
    expect_refused(&img, -EINVAL, "feature name table extension", 120, "multiple of the 48");
    test_image_free(&img);
}
END_TEST

/* A feature name table right after the header: the dirty bit's name, then one more. */
static size_t put_two_feature_names(struct test_image *img, uint8_t type, uint8_t bit,
                                    const char *name)
{
    uint8_t table[96];
    feature_entry(table, 0, 0, "dirty bit");
    feature_entry(table + 48, type, bit, name);
    return test_image_put_extension(img, 112, EXT_FEATURES, table, sizeof(table));
}

/*
 * A file that ends inside cluster 0 may be given as only its bytes: past them the cluster
 * reads as zeros (an end marker), and an extension cut by the end of the file asks for
 * the whole cluster (-ENOBUFS), whose zeros then are its data.
 */
START_TEST(short_file_given_without_the_rest_of_cluster_0)
{
    struct test_image img;
    build_v3(&img);
    size_t end = put_two_feature_names(&img, 1, 0, "lazy refcounts");
    ck_assert_uint_eq(end, 216);
    /* The tables lie past such a file's end: only a check-mode open tolerates that. */
    struct header h;
    struct qcow2_error err;
    memset(img.data + end, 0xee, 8);
    memset(&err, 0, sizeof(err));
    int ret = header_parse_flags(img.data, end, end, NAME, HEADER_FOR_CHECK, &h, &err);
    ck_assert_msg(ret == 0, "the file ending after the table: %d (%s)", ret, err.message);
    ck_assert_uint_eq(h.feature_name_count, 2);
    ck_assert_str_eq(h.feature_names[1].name, "lazy refcounts");
    header_release(&h);

    /* Cut inside the second entry: the whole cluster, zeros past the file, is needed. */
    size_t cut = 176;
    memset(&err, 0, sizeof(err));
    ret = header_parse_flags(img.data, cut, cut, NAME, HEADER_FOR_CHECK, &h, &err);
    ck_assert_int_eq(ret, -ENOBUFS);
    ck_assert_ptr_null(h.feature_names);
    memset(img.data + cut, 0, img.cluster_size - cut);
    ret = header_parse_flags(img.data, img.cluster_size, cut, NAME, HEADER_FOR_CHECK, &h, &err);
    ck_assert_msg(ret == 0, "the whole cluster: %d (%s)", ret, err.message);
    ck_assert_uint_eq(h.feature_name_count, 2);
    ck_assert_str_eq(h.feature_names[1].name, "lazy r");
    header_release(&h);

    /* Fewer bytes than the file holds of cluster 0 are the caller's bug. */
    ret = header_parse_flags(img.data, cut - 8, cut, NAME, HEADER_FOR_CHECK, &h, &err);
    ck_assert_int_eq(ret, -EINVAL);
    ck_assert_msg(strstr(err.message, "internal"), "message \"%s\"", err.message);
    test_image_free(&img);
}
END_TEST

START_TEST(unknown_incompat_bit_named_from_table)
{
    struct test_image img;
    build_v3(&img);
    put_two_feature_names(&img, 0, 40, "future widget");
    or64(&img, F_INCOMPAT, 1ull << 40);
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "future widget");
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "bit 40");
    test_image_free(&img);
}
END_TEST

START_TEST(unknown_incompat_bit_without_table)
{
    struct test_image img;
    build_v3(&img);
    or64(&img, F_INCOMPAT, 1ull << 5);
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "unknown incompatible feature bit 5");
    set64(&img, F_INCOMPAT, 1ull << 63);
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "unknown incompatible feature bit 63");
    test_image_free(&img);
}
END_TEST

START_TEST(unknown_compat_and_autoclear_bits_accepted)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_COMPAT, (1ull << 20) | 1);
    set64(&img, F_AUTOCLEAR, 1ull << 30);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_uint_eq(h.compatible_features, (1ull << 20) | 1);
    ck_assert_uint_eq(h.autoclear_features, 1ull << 30);
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(compression_type_2_unknown)
{
    struct test_image img;
    build_v3(&img);
    img.data[F_COMPRESSION] = 2;
    expect_refused(&img, -EINVAL, "header field compression_type", F_COMPRESSION,
                   "unknown compression type 2");
    or64(&img, F_INCOMPAT, 1ull << 3);
    expect_refused(&img, -EINVAL, "header field compression_type", F_COMPRESSION,
                   "unknown compression type 2");
    test_image_free(&img);
}
END_TEST

START_TEST(compression_bit_must_match_type)
{
    struct test_image img;
    build_v3(&img);
    /* zlib with bit 3 set. */
    or64(&img, F_INCOMPAT, 1ull << 3);
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "bit 3 is set but compression_type is 0");
    /* The same when the field is absent (header_length 104 means zlib). */
    set32(&img, F_HEADER_LENGTH, 104);
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "bit 3 is set but compression_type is 0");
    test_image_free(&img);

    /* zstd with bit 3 clear. */
    build_v3(&img);
    img.data[F_COMPRESSION] = 1;
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "bit 3 is clear");
    /* Both set: zstd. */
    or64(&img, F_INCOMPAT, 1ull << 3);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_uint_eq(h.compression_type, 1);
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(external_data_file_not_supported)
{
    struct test_image img;
    build_v3(&img);
    or64(&img, F_INCOMPAT, 1ull << 2);
    expect_refused(&img, -ENOTSUP, "header field incompatible_features", F_INCOMPAT,
                   "external data file");
    test_image_free(&img);
}
END_TEST

START_TEST(data_file_raw_without_data_file)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_AUTOCLEAR, 1ull << 1);
    expect_refused(&img, -EINVAL, "header field autoclear_features", F_AUTOCLEAR,
                   "requires an external data file");
    test_image_free(&img);
}
END_TEST

START_TEST(extended_l2_needs_cluster_bits_14)
{
    struct test_image_spec s = test_image_spec(3, 13, 1ull << 30);
    s.extended_l2 = 1;
    struct test_image img;
    build_spec(&img, s);
    expect_refused(&img, -EINVAL, "header field incompatible_features", F_INCOMPAT,
                   "subcluster");
    test_image_free(&img);

    s.cluster_bits = 14;
    build_spec(&img, s);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_uint_eq(h.incompatible_features, 1ull << 4);
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(refcount_order_7)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_REFCOUNT_ORDER, 7);
    expect_refused(&img, -EINVAL, "header field refcount_order", F_REFCOUNT_ORDER,
                   "exceeds 6");
    set32(&img, F_REFCOUNT_ORDER, 6);
    expect_ok(&img);
    test_image_free(&img);
}
END_TEST

/* ---- encryption ------------------------------------------------------------------ */

static void put_fde(struct test_image *img, uint32_t len)
{
    uint8_t fde[16];
    test_put_be64(fde, 4 * (uint64_t)img->cluster_size);
    test_put_be64(fde + 8, img->cluster_size);
    test_image_put_extension(img, img->header_length, EXT_FDE, fde, len);
}

START_TEST(crypt_method_aes_not_supported)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_CRYPT, 1);
    expect_refused(&img, -ENOTSUP, "header field crypt_method", F_CRYPT, "AES");
    test_image_free(&img);
}
END_TEST

START_TEST(crypt_method_luks_without_fde)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_CRYPT, 2);
    expect_refused(&img, -EINVAL, "header field crypt_method", F_CRYPT,
                   "without the encryption header extension");
    /* With the extension it is well formed, but qvet does not decrypt. */
    put_fde(&img, 16);
    expect_refused(&img, -ENOTSUP, "header field crypt_method", F_CRYPT, "LUKS");
    test_image_free(&img);
}
END_TEST

START_TEST(crypt_method_3_unknown)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_CRYPT, 3);
    expect_refused(&img, -EINVAL, "header field crypt_method", F_CRYPT,
                   "unsupported encryption method 3");
    test_image_free(&img);
}
END_TEST

START_TEST(fde_extension_with_crypt_0)
{
    struct test_image img;
    build_v3(&img);
    put_fde(&img, 16);
    expect_refused(&img, -EINVAL, "encryption header extension", 120, "crypt_method is 0");
    test_image_free(&img);
}
END_TEST

START_TEST(fde_extension_wrong_length)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_CRYPT, 2);
    put_fde(&img, 8);
    expect_refused(&img, -EINVAL, "encryption header extension", 120, "required 16");
    test_image_free(&img);
}
END_TEST

/* ---- bitmaps extension ----------------------------------------------------------- */

struct bitmaps_ext {
    uint32_t nb;
    uint32_t reserved;
    uint64_t dir_size;
    uint64_t dir_offset;
};

static void put_bitmaps(struct test_image *img, struct bitmaps_ext b, uint32_t len,
                        int autoclear_bit)
{
    uint8_t e[24];
    test_put_be32(e, b.nb);
    test_put_be32(e + 4, b.reserved);
    test_put_be64(e + 8, b.dir_size);
    test_put_be64(e + 16, b.dir_offset);
    memset(img->data + 112, 0, 64);
    test_image_put_extension(img, 112, EXT_BITMAPS, e, len);
    set64(img, F_AUTOCLEAR, autoclear_bit ? 1 : 0);
}

static struct bitmaps_ext good_bitmaps(const struct test_image *img)
{
    return (struct bitmaps_ext){ .nb = 2, .dir_size = 128, .dir_offset = img->extra_offset };
}

/* With autoclear bit 0 the rule applies; without it the extension is stale and ignored. */
static void expect_bitmaps_rule(struct test_image *img, struct bitmaps_ext b, uint64_t offset,
                                const char *needle)
{
    put_bitmaps(img, b, 24, 1);
    expect_refused(img, -EINVAL, "bitmaps extension", offset, needle);
    put_bitmaps(img, b, 24, 0);
    struct header h;
    expect_parses(img, &h);
    ck_assert(h.has_bitmaps_ext);
    ck_assert_uint_eq(h.nb_bitmaps, 0);
    header_release(&h);
}

START_TEST(bitmaps_extension_valid)
{
    struct test_image img;
    build_v3(&img);
    put_bitmaps(&img, good_bitmaps(&img), 24, 1);
    struct header h;
    expect_parses(&img, &h);
    ck_assert(h.has_bitmaps_ext);
    ck_assert_uint_eq(h.nb_bitmaps, 2);
    ck_assert_uint_eq(h.bitmap_directory_size, 128);
    ck_assert_uint_eq(h.bitmap_directory_offset, img.extra_offset);
    header_release(&h);
    test_image_free(&img);
}
END_TEST

START_TEST(bitmaps_extension_wrong_length)
{
    /* QEMU refuses a wrong length whether or not the autoclear bit is set. */
    struct test_image img;
    build_v3(&img);
    put_bitmaps(&img, good_bitmaps(&img), 16, 1);
    expect_refused(&img, -EINVAL, "bitmaps extension", 120, "required 24");
    put_bitmaps(&img, good_bitmaps(&img), 16, 0);
    expect_refused(&img, -EINVAL, "bitmaps extension", 120, "required 24");
    test_image_free(&img);
}
END_TEST

START_TEST(bitmaps_extension_reserved_nonzero)
{
    struct test_image img;
    build_v3(&img);
    struct bitmaps_ext b = good_bitmaps(&img);
    b.reserved = 1;
    expect_bitmaps_rule(&img, b, 124, "reserved");
    test_image_free(&img);
}
END_TEST

START_TEST(bitmaps_extension_zero_count)
{
    struct test_image img;
    build_v3(&img);
    struct bitmaps_ext b = good_bitmaps(&img);
    b.nb = 0;
    expect_bitmaps_rule(&img, b, 120, "nb_bitmaps is 0");
    b.nb = 65536;
    expect_bitmaps_rule(&img, b, 120, "65535");
    test_image_free(&img);
}
END_TEST

START_TEST(bitmaps_extension_unaligned_directory)
{
    struct test_image img;
    build_v3(&img);
    struct bitmaps_ext b = good_bitmaps(&img);
    b.dir_offset += 512;
    expect_bitmaps_rule(&img, b, 136, "not cluster-aligned");
    test_image_free(&img);
}
END_TEST

START_TEST(bitmaps_extension_directory_too_large)
{
    struct test_image img;
    build_v3(&img);
    struct bitmaps_ext b = good_bitmaps(&img);
    b.dir_size = 65535ull * 1024 + 1;
    expect_bitmaps_rule(&img, b, 128, "exceeds the limit");
    test_image_free(&img);
}
END_TEST

/* ---- tables ---------------------------------------------------------------------- */

START_TEST(refcount_table_clusters_zero)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_REFTABLE_CLUSTERS, 0);
    expect_refused(&img, -EINVAL, "header field refcount_table_clusters",
                   F_REFTABLE_CLUSTERS, "no refcount table");
    test_image_free(&img);
}
END_TEST

START_TEST(refcount_table_unaligned)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_REFTABLE_OFFSET, img.reftable_offset + 512);
    expect_refused(&img, -EINVAL, "header field refcount_table_offset", F_REFTABLE_OFFSET, "not cluster-aligned");
    test_image_free(&img);
}
END_TEST

START_TEST(refcount_table_past_eof)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_REFTABLE_OFFSET, img.len);
    expect_refused(&img, -EINVAL, "header field refcount_table_offset", F_REFTABLE_OFFSET,
                   "past the end of the file");
    /* At its place but longer than the file. */
    set64(&img, F_REFTABLE_OFFSET, img.reftable_offset);
    set32(&img, F_REFTABLE_CLUSTERS, (uint32_t)(img.len / img.cluster_size));
    expect_refused(&img, -EINVAL, "header field refcount_table_offset", F_REFTABLE_OFFSET,
                   "past the end of the file");
    test_image_free(&img);
}
END_TEST

START_TEST(refcount_table_over_8_mib)
{
    struct test_image img;
    build_v3(&img);
    /* 129 x 64 KiB: the size limit, which concerns refcount_table_clusters. */
    set32(&img, F_REFTABLE_CLUSTERS, 129);
    expect_refused(&img, -EINVAL, "header field refcount_table_clusters", F_REFTABLE_CLUSTERS, "limit");
    /* 128 x 64 KiB = 8 MiB is within the limit; it only runs past the end of the file. */
    set32(&img, F_REFTABLE_CLUSTERS, 128);
    expect_refused(&img, -EINVAL, "header field refcount_table_offset", F_REFTABLE_OFFSET,
                   "past the end of the file");
    test_image_free(&img);
}
END_TEST

START_TEST(too_many_snapshots)
{
    struct test_image img;
    build_v3(&img);
    set32(&img, F_NB_SNAPSHOTS, 65537);
    set64(&img, F_SNAPSHOTS_OFFSET, img.extra_offset);
    expect_refused(&img, -EINVAL, "header field nb_snapshots", F_NB_SNAPSHOTS, "65536");
    set32(&img, F_NB_SNAPSHOTS, 65536);
    expect_ok(&img);
    test_image_free(&img);
}
END_TEST

START_TEST(snapshots_offset_unaligned)
{
    struct test_image img;
    build_v3(&img);
    /* QEMU refuses it even without snapshots. */
    set64(&img, F_SNAPSHOTS_OFFSET, img.extra_offset + 8);
    expect_refused(&img, -EINVAL, "header field snapshots_offset", F_SNAPSHOTS_OFFSET,
                   "not cluster-aligned");
    set32(&img, F_NB_SNAPSHOTS, 1);
    expect_refused(&img, -EINVAL, "header field snapshots_offset", F_SNAPSHOTS_OFFSET,
                   "not cluster-aligned");
    /* Aligned but past the end of the file. */
    set64(&img, F_SNAPSHOTS_OFFSET, img.len);
    expect_refused(&img, -EINVAL, "header field snapshots_offset", F_SNAPSHOTS_OFFSET,
                   "outside the file");
    test_image_free(&img);
}
END_TEST

START_TEST(l1_table_unaligned)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_L1_OFFSET, img.l1_offset + 8);
    expect_refused(&img, -EINVAL, "header field l1_table_offset", F_L1_OFFSET, "not cluster-aligned");
    test_image_free(&img);
}
END_TEST

START_TEST(l1_table_past_eof)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_L1_OFFSET, img.len);
    expect_refused(&img, -EINVAL, "header field l1_table_offset", F_L1_OFFSET, "past the end of the file");
    set64(&img, F_L1_OFFSET, img.l1_offset);
    set32(&img, F_L1_SIZE, 100000);
    expect_refused(&img, -EINVAL, "header field l1_table_offset", F_L1_OFFSET, "past the end of the file");
    test_image_free(&img);
}
END_TEST

/*
 * Opened for a check, the header keeps QEMU's own rules only: tables may run past the end
 * of the file (the check reads zeros there and reports what that breaks) and the snapshot
 * fields are the checker's; alignment and size limits still hold.
 */
START_TEST(check_mode_accepts_tables_past_eof)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_REFTABLE_OFFSET, img.len + 4 * img.cluster_size);
    set64(&img, F_L1_OFFSET, 1ull << 40);
    set32(&img, F_NB_SNAPSHOTS, 70000);
    set64(&img, F_SNAPSHOTS_OFFSET, 0x200);
    struct header h;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = header_parse_flags(img.data, img.cluster_size, img.len, NAME, HEADER_FOR_CHECK,
                                 &h, &err);
    ck_assert_msg(ret == 0, "expected the check-mode parse to succeed, got %d: %s", ret,
                  err.message);
    ck_assert_uint_eq(h.l1_table_offset, 1ull << 40);
    ck_assert_uint_eq(h.nb_snapshots, 70000);
    header_release(&h);
    /* The same header is refused by an ordinary open, for the first rule it breaks. */
    expect_refused(&img, -EINVAL, "header field refcount_table_offset", F_REFTABLE_OFFSET,
                   "past the end of the file");

    set64(&img, F_L1_OFFSET, (1ull << 40) + 512);
    memset(&err, 0, sizeof(err));
    ret = header_parse_flags(img.data, img.cluster_size, img.len, NAME, HEADER_FOR_CHECK, &h,
                             &err);
    ck_assert_int_eq(ret, -EINVAL);
    ck_assert_str_eq(err.structure, "header field l1_table_offset");
    ck_assert_msg(strstr(err.message, "not cluster-aligned"), "message \"%s\"", err.message);
    test_image_free(&img);
}
END_TEST

START_TEST(l1_table_at_offset_0)
{
    struct test_image img;
    build_v3(&img);
    set64(&img, F_L1_OFFSET, 0);
    expect_refused(&img, -EINVAL, "header field l1_table_offset", F_L1_OFFSET, "overlap the header");
    test_image_free(&img);
}
END_TEST

START_TEST(l1_table_over_32_mib)
{
    struct test_image img;
    build_v3(&img);
    /* The size limit concerns l1_size. */
    set32(&img, F_L1_SIZE, 4194305);
    expect_refused(&img, -EINVAL, "header field l1_size", F_L1_SIZE, "limit");
    set32(&img, F_L1_SIZE, 4194304);
    expect_refused(&img, -EINVAL, "header field l1_table_offset", F_L1_OFFSET, "past the end of the file");
    test_image_free(&img);
}
END_TEST

START_TEST(l1_too_small_for_size)
{
    struct test_image img;
    build_v3(&img);                         /* 1 GiB needs 2 entries of 512 MiB */
    ck_assert_uint_eq(img.l1_size, 2);
    set64(&img, F_SIZE, (1ull << 30) + 1);
    expect_refused(&img, -EINVAL, "header field l1_size", F_L1_SIZE, "cannot map");
    /* A larger L1 than needed is legal (VM state area). */
    set64(&img, F_SIZE, 1ull << 29);
    expect_ok(&img);
    test_image_free(&img);
}
END_TEST

START_TEST(l1_too_small_with_extended_l2)
{
    /* Extended L2 halves the entries per table: 1 GiB at 64 KiB needs 4 L1 entries. */
    struct test_image img;
    build_v3(&img);
    or64(&img, F_INCOMPAT, 1ull << 4);
    expect_refused(&img, -EINVAL, "header field l1_size", F_L1_SIZE, "cannot map");
    test_image_free(&img);
}
END_TEST

START_TEST(size_too_big)
{
    struct test_image img;
    build(&img, 3, 9, 1 << 20);
    set64(&img, F_SIZE, 1ull << 62);
    expect_refused(&img, -EINVAL, "header field size", F_SIZE, "too big");
    set64(&img, F_SIZE, UINT64_MAX);
    expect_refused(&img, -EINVAL, "header field size", F_SIZE, "too big");
    test_image_free(&img);
}
END_TEST

/* ---- valid images: every field decoded ------------------------------------------- */

static const char long_feature_name[] = "a-feature-name-that-fills-all-forty-six-bytes!";

struct written {
    uint32_t version, cb, order;
    uint64_t size, incompat, compat, autoclear;
    uint8_t compression;
    uint64_t backing_offset;
    const char *backing_name;
};

/* Builds a valid image with every field set to something distinctive. */
static void build_full(struct test_image *img, uint32_t version, uint32_t cb,
                       struct written *w)
{
    int v3 = version == 3;
    int ext_l2 = v3 && cb >= 14;
    uint32_t l2_bits = cb - (ext_l2 ? 4 : 3);
    struct test_image_spec s = test_image_spec(version, cb,
                                               (5ull << (cb + l2_bits)) + 12345);
    s.extended_l2 = ext_l2;
    s.compression_type = v3 && cb == 16 ? 1 : 0;
    s.refcount_order = cb == 9 ? 6 : cb == 16 ? 5 : 0;
    s.extra_clusters = 2;
    build_spec(img, s);

    memset(w, 0, sizeof(*w));
    w->version = version;
    w->cb = cb;
    w->order = v3 ? s.refcount_order : 4;
    w->size = s.size;
    w->compression = s.compression_type;
    if (v3) {
        w->incompat = 0x1 | 0x2 | (ext_l2 ? 0x10u : 0) | (s.compression_type ? 0x8u : 0);
        w->compat = 0x1 | (1ull << 40);
        w->autoclear = 0x1;
        set64(img, F_INCOMPAT, w->incompat);
        set64(img, F_COMPAT, w->compat);
        set64(img, F_AUTOCLEAR, w->autoclear);
    }
    set32(img, F_NB_SNAPSHOTS, 3);
    set64(img, F_SNAPSHOTS_OFFSET, img->extra_offset);

    size_t off = img->header_length;
    off = test_image_put_extension(img, off, EXT_BACKING_FORMAT, "qcow2", 5);
    uint8_t table[4 * 48];
    feature_entry(table, 0, 0, "dirty bit");
    feature_entry(table + 48, 1, 0, "lazy refcounts");
    feature_entry(table + 96, 2, 0, "bitmaps");
    feature_entry(table + 144, 0, 63, long_feature_name);
    off = test_image_put_extension(img, off, EXT_FEATURES, table, sizeof(table));
    if (v3) {
        uint8_t b[24];
        test_put_be32(b, 1);
        test_put_be32(b + 4, 0);
        test_put_be64(b + 8, 64);
        test_put_be64(b + 16, img->extra_offset + img->cluster_size);
        off = test_image_put_extension(img, off, EXT_BITMAPS, b, sizeof(b));
    }
    off = test_image_put_extension(img, off, EXT_UNKNOWN, "unknown!", 8);
    off = test_image_put_extension(img, off, EXT_END, NULL, 0);
    w->backing_offset = off;
    w->backing_name = "base image.qcow2";
    put_backing_name(img, off, w->backing_name, (uint32_t)strlen(w->backing_name));
    ck_assert_uint_lt(off + strlen(w->backing_name), img->cluster_size);
}

static void check_full(uint32_t version, uint32_t cb)
{
    struct test_image img;
    struct written w;
    build_full(&img, version, cb, &w);
    struct header h;
    expect_parses(&img, &h);
    ck_assert_uint_eq(h.version, version);
    ck_assert_uint_eq(h.backing_file_offset, w.backing_offset);
    ck_assert_uint_eq(h.backing_file_size, strlen(w.backing_name));
    ck_assert_uint_eq(h.cluster_bits, cb);
    ck_assert_uint_eq(h.size, w.size);
    ck_assert_uint_eq(h.crypt_method, 0);
    ck_assert_uint_eq(h.l1_size, img.l1_size);
    ck_assert_uint_eq(h.l1_size, 6);
    ck_assert_uint_eq(h.l1_table_offset, img.l1_offset);
    ck_assert_uint_eq(h.refcount_table_offset, img.reftable_offset);
    ck_assert_uint_eq(h.refcount_table_clusters, 1);
    ck_assert_uint_eq(h.nb_snapshots, 3);
    ck_assert_uint_eq(h.snapshots_offset, img.extra_offset);
    /* v2 implies no features, 16-bit refcounts and a 72-byte header, whatever bytes
       follow byte 72 (here: extensions). */
    ck_assert_uint_eq(h.incompatible_features, w.incompat);
    ck_assert_uint_eq(h.compatible_features, w.compat);
    ck_assert_uint_eq(h.autoclear_features, w.autoclear);
    ck_assert_uint_eq(h.refcount_order, w.order);
    ck_assert_uint_eq(h.header_length, version == 3 ? 112 : 72);
    ck_assert_uint_eq(h.compression_type, w.compression);
    ck_assert_ptr_nonnull(h.backing_name);
    ck_assert_str_eq(h.backing_name, w.backing_name);
    ck_assert(h.has_backing_format);
    ck_assert_str_eq(h.backing_format, "qcow2");
    ck_assert_uint_eq(h.feature_name_count, 4);
    ck_assert_str_eq(header_feature_name(&h, FEATURE_INCOMPAT, 0), "dirty bit");
    ck_assert_str_eq(header_feature_name(&h, FEATURE_COMPAT, 0), "lazy refcounts");
    ck_assert_str_eq(header_feature_name(&h, FEATURE_AUTOCLEAR, 0), "bitmaps");
    ck_assert_str_eq(header_feature_name(&h, FEATURE_INCOMPAT, 63), long_feature_name);
    ck_assert_ptr_null(header_feature_name(&h, FEATURE_INCOMPAT, 1));
    ck_assert_ptr_null(header_feature_name(&h, FEATURE_COMPAT, 63));
    ck_assert_ptr_null(header_feature_name(&h, FEATURE_AUTOCLEAR, 1));
    ck_assert_int_eq(h.has_bitmaps_ext, version == 3);
    ck_assert_uint_eq(h.nb_bitmaps, version == 3 ? 1 : 0);
    ck_assert_uint_eq(h.bitmap_directory_size, version == 3 ? 64 : 0);
    ck_assert_uint_eq(h.bitmap_directory_offset,
                      version == 3 ? img.extra_offset + img.cluster_size : 0);
    ck_assert(!h.has_fde_ext);
    ck_assert(!h.has_data_file_ext);
    header_release(&h);
    ck_assert_ptr_null(h.backing_name);
    ck_assert_ptr_null(h.feature_names);
    test_image_free(&img);
}

START_TEST(valid_v2_images)
{
    static const uint32_t cbs[] = { 9, 16, 21 };
    check_full(2, cbs[_i]);
}
END_TEST

START_TEST(valid_v3_images)
{
    static const uint32_t cbs[] = { 9, 16, 21 };
    check_full(3, cbs[_i]);
}
END_TEST

START_TEST(minimal_images_from_the_builder)
{
    /* The builder's own output, every cluster size, both versions: all valid. */
    for (uint32_t version = 2; version <= 3; version++) {
        for (uint32_t cb = 9; cb <= 21; cb++) {
            struct test_image img;
            build(&img, version, cb, 100ull << 20);
            struct header h;
            expect_parses(&img, &h);
            ck_assert_uint_eq(h.cluster_bits, cb);
            ck_assert_uint_eq(h.version, version);
            ck_assert_ptr_null(h.backing_name);
            ck_assert_uint_eq(h.feature_name_count, 0);
            header_release(&h);
            test_image_free(&img);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("header");

    TCase *tc = tcase_create("identity");
    tcase_add_test(tc, magic_must_match);
    tcase_add_test(tc, version_1_is_qcow1);
    tcase_add_test(tc, version_4_unsupported);
    tcase_add_test(tc, file_shorter_than_header);
    tcase_add_test(tc, cluster_bits_out_of_range);
    tcase_add_test(tc, cluster_bits_bounds_accepted);
    tcase_add_test(tc, header_length_below_104);
    tcase_add_test(tc, header_length_beyond_cluster);
    tcase_add_test(tc, header_length_not_multiple_of_8);
    tcase_add_test(tc, padding_bytes_must_be_zero);
    tcase_add_test(tc, unknown_header_fields_after_112_accepted);
    tcase_add_test(tc, header_length_104_has_no_compression_type);
    suite_add_tcase(s, tc);

    tc = tcase_create("backing name");
    tcase_add_test(tc, backing_offset_past_cluster_0);
    tcase_add_test(tc, backing_name_too_long);
    tcase_add_test(tc, backing_name_past_eof);
    tcase_add_test(tc, backing_name_with_nul);
    tcase_add_test(tc, backing_name_overlapping_header);
    suite_add_tcase(s, tc);

    tc = tcase_create("extensions");
    tcase_add_test(tc, extension_too_large);
    tcase_add_test(tc, extension_ending_exactly_at_area_end_needs_no_end_marker);
    tcase_add_test(tc, extension_header_truncated);
    tcase_add_test(tc, end_marker_stops_the_walk);
    tcase_add_test(tc, unknown_extension_skipped);
    tcase_add_test(tc, duplicate_known_extension_refused);
    tcase_add_test(tc, backing_format_too_long);
    tcase_add_test(tc, feature_table_odd_length);
    tcase_add_test(tc, short_file_given_without_the_rest_of_cluster_0);
    suite_add_tcase(s, tc);

    tc = tcase_create("features");
    tcase_add_test(tc, unknown_incompat_bit_named_from_table);
    tcase_add_test(tc, unknown_incompat_bit_without_table);
    tcase_add_test(tc, unknown_compat_and_autoclear_bits_accepted);
    tcase_add_test(tc, compression_type_2_unknown);
    tcase_add_test(tc, compression_bit_must_match_type);
    tcase_add_test(tc, external_data_file_not_supported);
    tcase_add_test(tc, data_file_raw_without_data_file);
    tcase_add_test(tc, extended_l2_needs_cluster_bits_14);
    tcase_add_test(tc, refcount_order_7);
    suite_add_tcase(s, tc);

    tc = tcase_create("encryption");
    tcase_add_test(tc, crypt_method_aes_not_supported);
    tcase_add_test(tc, crypt_method_luks_without_fde);
    tcase_add_test(tc, crypt_method_3_unknown);
    tcase_add_test(tc, fde_extension_with_crypt_0);
    tcase_add_test(tc, fde_extension_wrong_length);
    suite_add_tcase(s, tc);

    tc = tcase_create("bitmaps");
    tcase_add_test(tc, bitmaps_extension_valid);
    tcase_add_test(tc, bitmaps_extension_wrong_length);
    tcase_add_test(tc, bitmaps_extension_reserved_nonzero);
    tcase_add_test(tc, bitmaps_extension_zero_count);
    tcase_add_test(tc, bitmaps_extension_unaligned_directory);
    tcase_add_test(tc, bitmaps_extension_directory_too_large);
    suite_add_tcase(s, tc);

    tc = tcase_create("tables");
    tcase_add_test(tc, refcount_table_clusters_zero);
    tcase_add_test(tc, refcount_table_unaligned);
    tcase_add_test(tc, refcount_table_past_eof);
    tcase_add_test(tc, refcount_table_over_8_mib);
    tcase_add_test(tc, too_many_snapshots);
    tcase_add_test(tc, snapshots_offset_unaligned);
    tcase_add_test(tc, l1_table_unaligned);
    tcase_add_test(tc, l1_table_past_eof);
    tcase_add_test(tc, l1_table_at_offset_0);
    tcase_add_test(tc, check_mode_accepts_tables_past_eof);
    tcase_add_test(tc, l1_table_over_32_mib);
    tcase_add_test(tc, l1_too_small_for_size);
    tcase_add_test(tc, l1_too_small_with_extended_l2);
    tcase_add_test(tc, size_too_big);
    suite_add_tcase(s, tc);

    tc = tcase_create("valid");
    tcase_add_loop_test(tc, valid_v2_images, 0, 3);
    tcase_add_loop_test(tc, valid_v3_images, 0, 3);
    tcase_add_test(tc, minimal_images_from_the_builder);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
