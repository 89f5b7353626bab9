/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Image creation: qcow2_parse_size, the qemu-img style option string, every rule that
 * refuses a combination, and a matrix of option sets created both by qvet and by
 * `qemu-img create` (7.2) and compared. Every matrix case is expected to be
 * byte-identical to qemu-img's image (header, extensions, refcount structures, L1/L2
 * tables, file length), including the layouts where the L1 table or the refcount
 * blocks outgrow clusters 1..3 and the refcount table moves, and every preallocation mode.
 * Each case is also checked with `qemu-img check`, `qemu-img compare` and qvet's own
 * reader; preallocated cases additionally compare `qemu-img map` with host offsets left
 * out.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "support.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

#define BASE_QCOW2_SIZE (3 * MiB)
#define BASE_RAW_BYTES 1000u

/* Option strings must outlive the options that point into them: a few static slots. */
static char *keep_text(const char *text)
{
    static char slots[4][2048];
    static unsigned next;
    char *s = slots[next++ % 4];
    snprintf(s, sizeof(slots[0]), "%s", text);
    return s;
}

static int parse(struct qcow2_create_options *o, const char *text, struct qcow2_error *e)
{
    memset(e, 0, sizeof(*e));
    qcow2_create_options_init(o);
    return qcow2_create_options_parse(o, keep_text(text), e);
}

static void assert_error(const struct qcow2_error *e, int ret, int code, const char *needle,
                         const char *context)
{
    ck_assert_msg(ret == code, "%s: expected code %d (%s), got %d (%s)", context, code,
                  strerror(-code), ret, e->message);
    ck_assert_msg(e->code == code, "%s: expected err.code %d, got %d", context, code, e->code);
    ck_assert_msg(!strcmp(e->structure, "create option"),
                  "%s: expected structure \"create option\", got \"%s\"", context,
                  e->structure);
    ck_assert_msg(e->offset == QCOW2_NO_OFFSET,
                  "%s: expected no offset, got %" PRIu64, context, e->offset);
    ck_assert_msg(strstr(e->message, needle) != NULL,
                  "%s: expected the message to name \"%s\", got \"%s\"", context, needle,
                  e->message);
}

/* ------------------------------------------------------------------------------------ */
/* qcow2_parse_size                                                                      */

static const struct {
    const char *text;
    bool ok;
    uint64_t value;
} size_rows[] = {
    { "0", true, 0 },
    { "512", true, 512 },
    { "1000", true, 1000 },
    { "010", true, 10 },
    { "64k", true, 64 * KiB },
    { "64K", true, 64 * KiB },
    { "1m", true, MiB },
    { "1M", true, MiB },
    { "2G", true, 2 * GiB },
    { "2g", true, 2 * GiB },
    { "4T", true, 4 * TiB },
    { "1P", true, 1ull << 50 },
    { "1E", true, 1ull << 60 },
    { "7E", true, 7ull << 60 },
    { "1b", true, 1 },
    { "1B", true, 1 },
    { "1.5M", true, 3 * MiB / 2 },
    { "0.5k", true, 512 },
    { "1.M", true, MiB },
    { "1.0", true, 1 },
    { "0.0001k", true, 0 },
    { "9223372036854775807", true, INT64_MAX },
    { "9223372036854775808", false, 0 },
    { "8E", false, 0 },
    { "18446744073709551616", false, 0 },
    { "99999999999999999999999", false, 0 },
    { "", false, 0 },
    { "k", false, 0 },
    { "-1", false, 0 },
    { "+1", false, 0 },
    { " 1", false, 0 },
    { "1 ", false, 0 },
    { "1kb", false, 0 },
    { "1KiB", false, 0 },
    { "1x", false, 0 },
    { "0x10", false, 0 },
    { "1e3", false, 0 },
    { "1.5", false, 0 },
    { "1.5b", false, 0 },
    { ".5M", false, 0 },
    { "1..5M", false, 0 },
};

START_TEST(parse_size_table)
{
    uint64_t v = 12345;
    bool ok = qcow2_parse_size(size_rows[_i].text, &v);
    ck_assert_msg(ok == size_rows[_i].ok, "\"%s\": expected %s, got %s", size_rows[_i].text,
                  size_rows[_i].ok ? "accepted" : "refused", ok ? "accepted" : "refused");
    if (ok)
        ck_assert_msg(v == size_rows[_i].value, "\"%s\": expected %" PRIu64 ", got %" PRIu64,
                      size_rows[_i].text, size_rows[_i].value, v);
}
END_TEST

START_TEST(parse_size_null)
{
    uint64_t v;
    ck_assert_msg(!qcow2_parse_size(NULL, &v), "expected NULL refused, got accepted");
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Option strings                                                                        */

START_TEST(defaults_are_qemu_img_7_2)
{
    struct qcow2_create_options o;
    memset(&o, 0xA5, sizeof(o));
    qcow2_create_options_init(&o);
    ck_assert_msg(o.cluster_size == 65536, "expected cluster_size 65536, got %" PRIu32,
                  o.cluster_size);
    ck_assert_msg(o.version == 3, "expected version 3, got %" PRIu32, o.version);
    ck_assert_msg(o.refcount_bits == 16, "expected refcount_bits 16, got %" PRIu32,
                  o.refcount_bits);
    ck_assert_msg(o.compression == QCOW2_COMPRESSION_ZLIB, "expected zlib, got %d",
                  (int)o.compression);
    ck_assert_msg(!o.lazy_refcounts && !o.extended_l2, "expected lazy/extended L2 off");
    ck_assert_msg(o.preallocation == QCOW2_PREALLOC_OFF, "expected preallocation off, got %d",
                  (int)o.preallocation);
    ck_assert_msg(!o.has_size && o.size == 0, "expected no size, got %" PRIu64, o.size);
    ck_assert_msg(!o.backing_file && !o.backing_format, "expected no backing file");
}
END_TEST

START_TEST(every_key_is_applied)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    int ret = parse(&o,
                    "size=1G,cluster_size=4k,compat=0.10,refcount_bits=16,lazy_refcounts=off,"
                    "extended_l2=off,compression_type=zlib,preallocation=metadata,"
                    "backing_file=b.qcow2,backing_fmt=qcow2",
                    &e);
    ck_assert_msg(ret == 0, "expected success, got %d (%s)", ret, e.message);
    ck_assert_msg(o.has_size && o.size == GiB, "expected size 1G, got %" PRIu64, o.size);
    ck_assert_msg(o.cluster_size == 4096, "expected 4096, got %" PRIu32, o.cluster_size);
    ck_assert_msg(o.version == 2, "expected version 2, got %" PRIu32, o.version);
    ck_assert_msg(o.preallocation == QCOW2_PREALLOC_METADATA, "expected metadata, got %d",
                  (int)o.preallocation);
    ck_assert_msg(o.backing_file && !strcmp(o.backing_file, "b.qcow2"),
                  "expected backing_file b.qcow2, got %s", o.backing_file);
    ck_assert_msg(o.backing_format && !strcmp(o.backing_format, "qcow2"),
                  "expected backing_fmt qcow2, got %s", o.backing_format);

    ret = parse(&o,
                "compat=v3,refcount_bits=64,lazy_refcounts=on,extended_l2=on,"
                "compression_type=zstd,preallocation=off",
                &e);
    ck_assert_msg(ret == 0, "expected success, got %d (%s)", ret, e.message);
    ck_assert_msg(o.version == 3, "expected version 3, got %" PRIu32, o.version);
    ck_assert_msg(o.refcount_bits == 64, "expected 64, got %" PRIu32, o.refcount_bits);
    ck_assert_msg(o.lazy_refcounts && o.extended_l2, "expected lazy and extended L2 on");
    ck_assert_msg(o.compression == QCOW2_COMPRESSION_ZSTD, "expected zstd, got %d",
                  (int)o.compression);
    ck_assert_msg(o.preallocation == QCOW2_PREALLOC_OFF, "expected off, got %d",
                  (int)o.preallocation);
    ck_assert_msg(!o.has_size, "expected no size");
}
END_TEST

static const struct {
    const char *text;
    uint32_t version;
} compat_rows[] = {
    { "compat=0.10", 2 }, { "compat=v2", 2 }, { "compat=1.1", 3 }, { "compat=v3", 3 },
};

START_TEST(compat_synonyms)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    int ret = parse(&o, compat_rows[_i].text, &e);
    ck_assert_msg(ret == 0, "%s: expected success, got %d (%s)", compat_rows[_i].text, ret,
                  e.message);
    ck_assert_msg(o.version == compat_rows[_i].version, "%s: expected version %" PRIu32
                  ", got %" PRIu32, compat_rows[_i].text, compat_rows[_i].version, o.version);
}
END_TEST

static const struct {
    const char *text;
    bool value;
} bool_rows[] = {
    { "lazy_refcounts=on", true },    { "lazy_refcounts=yes", true },
    { "lazy_refcounts=true", true },  { "lazy_refcounts=y", true },
    { "lazy_refcounts", true },       { "lazy_refcounts=off", false },
    { "lazy_refcounts=no", false },   { "lazy_refcounts=false", false },
    { "lazy_refcounts=n", false },
};

START_TEST(boolean_spellings)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    int ret = parse(&o, bool_rows[_i].text, &e);
    ck_assert_msg(ret == 0, "%s: expected success, got %d (%s)", bool_rows[_i].text, ret,
                  e.message);
    ck_assert_msg(o.lazy_refcounts == bool_rows[_i].value, "%s: expected %d, got %d",
                  bool_rows[_i].text, bool_rows[_i].value, o.lazy_refcounts);
}
END_TEST

START_TEST(double_comma_escapes_a_comma_and_last_key_wins)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    int ret = parse(&o, "backing_file=a,,b.raw,backing_fmt=raw,size=1M,size=2M", &e);
    ck_assert_msg(ret == 0, "expected success, got %d (%s)", ret, e.message);
    ck_assert_msg(!strcmp(o.backing_file, "a,b.raw"), "expected \"a,b.raw\", got \"%s\"",
                  o.backing_file);
    ck_assert_msg(o.size == 2 * MiB, "expected the last size (2M), got %" PRIu64, o.size);
}
END_TEST

START_TEST(parse_applies_on_top_of_earlier_options)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    int ret = parse(&o, "cluster_size=4k", &e);
    ck_assert_msg(ret == 0, "expected success, got %d (%s)", ret, e.message);
    ret = qcow2_create_options_parse(&o, keep_text("refcount_bits=8"), &e);
    ck_assert_msg(ret == 0, "expected success, got %d (%s)", ret, e.message);
    ck_assert_msg(o.cluster_size == 4096 && o.refcount_bits == 8,
                  "expected 4096/8, got %" PRIu32 "/%" PRIu32, o.cluster_size,
                  o.refcount_bits);
}
END_TEST

static const struct {
    const char *text;
    int code;
    const char *needle;
} bad_value_rows[] = {
    { "size=-1", -EINVAL, "not a size" },
    { "size=1x", -EINVAL, "not a size" },
    { "size=8E", -EINVAL, "not a size" },
    { "size=", -EINVAL, "not a size" },
    { "size", -EINVAL, "not a size" },
    { "cluster_size=abc", -EINVAL, "cluster_size=abc" },
    { "cluster_size=8G", -EINVAL, "power of two" },
    { "compat=v4", -EINVAL, "compat=v4" },
    { "compat=V3", -EINVAL, "compat=V3" },
    { "compat=3", -EINVAL, "compat=3" },
    { "refcount_bits=x", -EINVAL, "refcount_bits=x" },
    { "refcount_bits=-1", -EINVAL, "refcount_bits=-1" },
    { "refcount_bits=99999999999", -EINVAL, "not a number" },
    { "lazy_refcounts=maybe", -EINVAL, "expected on or off" },
    { "lazy_refcounts=ON", -EINVAL, "expected on or off" },
    { "extended_l2=1", -EINVAL, "expected on or off" },
    { "compression_type=lz4", -EINVAL, "expected zlib or zstd" },
    { "preallocation=bogus", -EINVAL, "expected off, metadata" },
    { "backing_file=", -EINVAL, "backing_file needs a value" },
    { "backing_fmt", -EINVAL, "backing_fmt needs a value" },
    { "foo=bar", -EINVAL, "unknown option \"foo\"" },
    { "data_file=d.raw", -ENOTSUP, "\"data_file\" is not supported" },
    { "encrypt.format=luks", -ENOTSUP, "\"encrypt.format\" is not supported" },
    { "", -EINVAL, "empty item" },
    { "size=1M,", -EINVAL, "empty item" },
    { ",size=1M", -EINVAL, "empty item" },
    { "=1M", -EINVAL, "empty name" },
};

START_TEST(bad_values_are_refused_by_name)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    int ret = parse(&o, bad_value_rows[_i].text, &e);
    assert_error(&e, ret, bad_value_rows[_i].code, bad_value_rows[_i].needle,
                 bad_value_rows[_i].text);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Combinations refused before anything is written                                       */

static char long_backing_512[600];
static char long_backing_1024[1100];

/* Option strings with a backing name of `len` bytes of `fill`. */
static void build_long_option(char *buf, size_t cap, const char *prefix, char fill, size_t len)
{
    size_t n = strlen(prefix);
    if (n + len + 32 >= cap) {
        fprintf(stderr, "test_create: option buffer too small\n");
        exit(2);
    }
    memcpy(buf, prefix, n);
    memset(buf + n, fill, len);
    strcpy(buf + n + len, ",backing_fmt=raw");
}

static void build_long_options(void)
{
    build_long_option(long_backing_512, sizeof(long_backing_512),
                      "size=1M,cluster_size=512,backing_file=", 'x', 400);
    build_long_option(long_backing_1024, sizeof(long_backing_1024), "size=1M,backing_file=", 'y',
                      1024);
}

static const struct {
    const char *text;
    int code;
    const char *needle;
} bad_combo_rows[] = {
    { "size=1M,cluster_size=1000", -EINVAL, "power of two between 512 and 2048k" },
    { "size=1M,cluster_size=256", -EINVAL, "power of two between 512 and 2048k" },
    { "size=1M,cluster_size=4M", -EINVAL, "power of two between 512 and 2048k" },
    { "size=1M,refcount_bits=3", -EINVAL, "power of two and at most 64" },
    { "size=1M,refcount_bits=0", -EINVAL, "power of two and at most 64" },
    { "size=1M,refcount_bits=128", -EINVAL, "power of two and at most 64" },
    { "size=1M,compat=0.10,refcount_bits=8", -EINVAL, "refcount_bits 8 needs compat=1.1" },
    { "size=1M,compat=0.10,lazy_refcounts=on", -EINVAL, "lazy_refcounts=on needs compat=1.1" },
    { "size=1M,compat=0.10,extended_l2=on", -EINVAL, "extended_l2=on needs compat=1.1" },
    { "size=1M,extended_l2=on,cluster_size=8k", -EINVAL, "cluster_size of at least 16384" },
    { "size=1M,compat=v2,compression_type=zstd", -EINVAL, "zstd needs compat=1.1" },
    { "size=1M,backing_file=b.qcow2", -EINVAL, "needs backing_fmt" },
    { "size=1M,backing_fmt=qcow2", -EINVAL, "backing_fmt=qcow2 needs backing_file" },
    { "size=1M,backing_file=b.vmdk,backing_fmt=vmdk", -ENOTSUP, "backing_fmt=vmdk" },
    { "size=1M,backing_file=b.qcow2,backing_fmt=qcow2,preallocation=metadata", -EINVAL,
      "preallocation=metadata with a backing file needs extended_l2=on" },
    { "size=1M,backing_file=b.qcow2,backing_fmt=qcow2,preallocation=falloc", -EINVAL,
      "preallocation=falloc with a backing file needs extended_l2=on" },
    { "cluster_size=4k", -EINVAL, "size is missing" },
    { "size=129G,cluster_size=512", -EFBIG, "L1 entries" },
    { "size=65T,cluster_size=16k,extended_l2=on", -EFBIG, "L1 entries" },
    { "size=7E,cluster_size=2M", -EFBIG, "L1 entries" },
    { "size=9223372036854775807", -EINVAL, "rounded up" },
    { long_backing_512, -ENOSPC, "more than cluster 0" },
    { long_backing_1024, -EINVAL, "more than the 1023" },
};

START_TEST(bad_combinations_are_refused_before_writing)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    const char *text = bad_combo_rows[_i].text;
    int ret = parse(&o, text, &e);
    ck_assert_msg(ret == 0, "%.60s: expected the parse to succeed, got %d (%s)", text, ret,
                  e.message);

    uint8_t junk[64];
    memset(junk, 0xEE, sizeof(junk));
    struct qcow2_backend *b;
    ck_assert_int_eq(qcow2_backend_mem_new(junk, sizeof(junk), 1 << 20, &b), 0);
    ret = qcow2_create_backend(b, "mem.qcow2", &o, &e);
    char context[128];
    snprintf(context, sizeof(context), "%.60s (backend)", text);
    assert_error(&e, ret, bad_combo_rows[_i].code, bad_combo_rows[_i].needle, context);
    size_t len;
    const uint8_t *data = qcow2_backend_mem_data(b, &len);
    ck_assert_msg(len == sizeof(junk) && !memcmp(data, junk, len),
                  "%s: expected the backend untouched (64 bytes), got %zu bytes", context, len);
    qcow2_backend_destroy(b);

    /* The path entry point validates before it creates the file. */
    const char *path = test_path("refused.qcow2");
    unlink(path);
    ret = qcow2_create(path, &o, &e);
    snprintf(context, sizeof(context), "%.60s (path)", text);
    assert_error(&e, ret, bad_combo_rows[_i].code, bad_combo_rows[_i].needle, context);
    ck_assert_msg(access(path, F_OK) != 0, "%s: expected no file created, found one", context);
}
END_TEST

START_TEST(struct_values_outside_the_options_are_refused)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    struct qcow2_backend *b;
    ck_assert_int_eq(qcow2_backend_mem_new(NULL, 0, 1 << 20, &b), 0);

    qcow2_create_options_init(&o);
    o.size = MiB;
    o.version = 4;
    int ret = qcow2_create_backend(b, "mem.qcow2", &o, &e);
    assert_error(&e, ret, -EINVAL, "version 4", "version 4");

    qcow2_create_options_init(&o);
    o.size = MiB;
    o.compression = (enum qcow2_compression)7;
    ret = qcow2_create_backend(b, "mem.qcow2", &o, &e);
    assert_error(&e, ret, -EINVAL, "compression type 7", "compression 7");

    qcow2_create_options_init(&o);
    o.size = MiB;
    o.preallocation = (enum qcow2_preallocation)4;
    ret = qcow2_create_backend(b, "mem.qcow2", &o, &e);
    assert_error(&e, ret, -EINVAL, "preallocation mode 4", "preallocation 4");
    ck_assert_msg(!strcmp(e.file, "mem.qcow2"), "expected the error to name mem.qcow2, got %s",
                  e.file);
    qcow2_backend_destroy(b);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Files, backends and backing files                                                     */

START_TEST(unwritable_path_fails_with_errno)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    ck_assert_int_eq(parse(&o, "size=1M", &e), 0);
    const char *path = test_path("no/such/dir/x.qcow2");
    int ret = qcow2_create(path, &o, &e);
    ck_assert_msg(ret == -ENOENT, "expected -ENOENT, got %d (%s)", ret, e.message);
    ck_assert_msg(!strcmp(e.structure, "file"), "expected structure \"file\", got \"%s\"",
                  e.structure);
    ck_assert_msg(!strcmp(e.file, path), "expected the error to name %s, got %s", path, e.file);
}
END_TEST

START_TEST(backend_gets_the_same_bytes_as_the_file)
{
    static const char *const texts[] = {
        "size=1G",
        "size=100G,cluster_size=512,refcount_bits=64",
        "size=1M,cluster_size=4k,preallocation=metadata,refcount_bits=2",
        "size=3000000,cluster_size=64k,extended_l2=on,preallocation=metadata",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct qcow2_create_options o;
        struct qcow2_error e;
        ck_assert_int_eq(parse(&o, texts[i], &e), 0);
        const char *path = test_path("same.qcow2");
        int ret = qcow2_create(path, &o, &e);
        ck_assert_msg(ret == 0, "%s: expected success, got %d (%s)", texts[i], ret, e.message);
        size_t flen;
        uint8_t *file = test_read_file(path, &flen);
        ck_assert_ptr_nonnull(file);

        /* Whatever the backend held before is replaced. */
        uint8_t junk[4096];
        memset(junk, 0x5A, sizeof(junk));
        struct qcow2_backend *b;
        ck_assert_int_eq(qcow2_backend_mem_new(junk, sizeof(junk), 64 << 20, &b), 0);
        ret = qcow2_create_backend(b, path, &o, &e);
        ck_assert_msg(ret == 0, "%s: expected success, got %d (%s)", texts[i], ret, e.message);
        size_t mlen;
        const uint8_t *mem = qcow2_backend_mem_data(b, &mlen);
        ck_assert_msg(mlen == flen, "%s: expected %zu bytes as in the file, got %zu", texts[i],
                      flen, mlen);
        ck_assert_msg(!memcmp(mem, file, flen), "%s: expected the file's bytes in the backend",
                      texts[i]);
        qcow2_backend_destroy(b);
        free(file);
        unlink(path);
    }
}
END_TEST

START_TEST(backend_write_failures_are_reported)
{
    static const struct {
        const char *text;
        size_t max_len;
        const char *structure;
        uint64_t offset;
    } rows[] = {
        /* Cluster 0 fits, the refcount table and block (clusters 1-2) do not. */
        { "size=1G", 100 * KiB, "refcount table", 64 * KiB },
        /* Everything but the L1 table (from cluster 3, 256 KiB for 16 TiB) fits. */
        { "size=16T", 256 * KiB, "active L1 table", 192 * KiB },
        /* Preallocation runs out of room among the L2 tables and data clusters. */
        { "size=1G,preallocation=metadata", 1 * MiB, NULL, 0 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct qcow2_create_options o;
        struct qcow2_error e;
        ck_assert_int_eq(parse(&o, rows[i].text, &e), 0);
        struct qcow2_backend *b;
        ck_assert_int_eq(qcow2_backend_mem_new(NULL, 0, rows[i].max_len, &b), 0);
        int ret = qcow2_create_backend(b, "small.qcow2", &o, &e);
        ck_assert_msg(ret == -ENOSPC, "%s: expected -ENOSPC, got %d (%s)", rows[i].text, ret,
                      e.message);
        ck_assert_msg(!strcmp(e.file, "small.qcow2"), "%s: expected small.qcow2, got %s",
                      rows[i].text, e.file);
        if (rows[i].structure) {
            ck_assert_msg(!strcmp(e.structure, rows[i].structure),
                          "%s: expected structure \"%s\", got \"%s\"", rows[i].text,
                          rows[i].structure, e.structure);
            ck_assert_msg(e.offset == rows[i].offset,
                          "%s: expected offset %" PRIu64 ", got %" PRIu64, rows[i].text,
                          rows[i].offset, e.offset);
        } else {
            ck_assert_msg(e.structure[0] != '\0', "%s: expected a structure, got none",
                          rows[i].text);
        }
        qcow2_backend_destroy(b);
    }
}
END_TEST

static uint64_t info_size(const char *path)
{
    struct qcow2_image *img;
    struct qcow2_error e;
    int ret = qcow2_open(path, NULL, &img, &e);
    ck_assert_msg(ret == 0, "open %s: expected success, got %d (%s)", path, ret, e.message);
    uint64_t size = qcow2_virtual_size(img);
    qcow2_close(img);
    return size;
}

START_TEST(size_comes_from_the_backing_file_resolved_next_to_the_image)
{
    ck_assert_int_eq(test_run("mkdir -p '%s'", test_path("sub")), 0);
    ck_assert_int_eq(test_run("qemu-img create -q -f qcow2 '%s' 5M", test_path("sub/sbase.qcow2")),
                     0);
    uint8_t raw[BASE_RAW_BYTES];
    memset(raw, 0x42, sizeof(raw));
    ck_assert_int_eq(test_write_file(test_path("sub/sbase.raw"), raw, sizeof(raw)), 0);

    static const struct {
        const char *text;
        uint64_t size;
    } rows[] = {
        { "backing_file=sbase.qcow2,backing_fmt=qcow2", 5 * MiB },
        { "backing_file=sbase.raw,backing_fmt=raw", 1024 },
        { "backing_file=sbase.qcow2,backing_fmt=qcow2,size=0", 0 },
        { "backing_file=sbase.qcow2,backing_fmt=qcow2,size=7M", 7 * MiB },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct qcow2_create_options o;
        struct qcow2_error e;
        ck_assert_int_eq(parse(&o, rows[i].text, &e), 0);
        const char *ov = test_path("sub/ov.qcow2");
        int ret = qcow2_create(ov, &o, &e);
        ck_assert_msg(ret == 0, "%s: expected success, got %d (%s)", rows[i].text, ret,
                      e.message);
        uint64_t size = info_size(ov);
        ck_assert_msg(size == rows[i].size, "%s: expected size %" PRIu64 ", got %" PRIu64,
                      rows[i].text, rows[i].size, size);
        /* qemu-img resolves the name the same way and writes the same bytes. */
        const char *q = test_path("sub/ovq.qcow2");
        ck_assert_int_eq(test_run("qemu-img create -q -f qcow2 -o '%s' '%s'", rows[i].text, q),
                         0);
        int cmp = test_run("cmp -s '%s' '%s'", q, ov);
        ck_assert_msg(cmp == 0, "%s: expected the same bytes as qemu-img, cmp exit %d",
                      rows[i].text, cmp);
    }
}
END_TEST

START_TEST(missing_backing_file_without_size_is_an_error)
{
    struct qcow2_create_options o;
    struct qcow2_error e;
    ck_assert_int_eq(parse(&o, "backing_file=nowhere.qcow2,backing_fmt=qcow2", &e), 0);
    const char *path = test_path("orphan.qcow2");
    int ret = qcow2_create(path, &o, &e);
    ck_assert_msg(ret == -ENOENT, "expected -ENOENT, got %d (%s)", ret, e.message);
    ck_assert_msg(!strcmp(e.structure, "backing file"),
                  "expected structure \"backing file\", got \"%s\"", e.structure);
    ck_assert_msg(strstr(e.message, "nowhere.qcow2") != NULL,
                  "expected the message to name nowhere.qcow2, got \"%s\"", e.message);

    /* A size does not spare the backing file: qemu-img opens it all the same. */
    ck_assert_int_eq(parse(&o, "backing_file=nowhere.qcow2,backing_fmt=qcow2,size=1M", &e), 0);
    ret = qcow2_create(path, &o, &e);
    ck_assert_msg(ret == -ENOENT, "with a size: expected -ENOENT, got %d (%s)", ret, e.message);
    ck_assert_msg(access(path, F_OK) != 0, "a refused create left %s behind", path);

    /* -u (no_backing_check) names it without opening it, and then needs the size. */
    o.no_backing_check = true;
    ret = qcow2_create(path, &o, &e);
    ck_assert_msg(ret == 0, "with -u and a size: expected success, got %d (%s)", ret,
                  e.message);
    ck_assert_int_eq(parse(&o, "backing_file=nowhere.qcow2,backing_fmt=qcow2", &e), 0);
    o.no_backing_check = true;
    ret = qcow2_create(path, &o, &e);
    ck_assert_msg(ret == -EINVAL && strstr(e.message, "size is missing"),
                  "with -u and no size: expected -EINVAL (size is missing), got %d (%s)", ret,
                  e.message);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* The qemu-img matrix                                                                   */

struct matrix_case {
    char opts[192];
    bool identical;             /* byte-identical to qemu-img's image */
};

static struct matrix_case cases[320];
static int ncases;

static void add_case(bool identical, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_case(bool identical, const char *fmt, ...)
{
    if (ncases >= (int)(sizeof(cases) / sizeof(cases[0]))) {
        fprintf(stderr, "test_create: too many matrix cases\n");
        exit(2);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cases[ncases].opts, sizeof(cases[0].opts), fmt, ap);
    va_end(ap);
    cases[ncases].identical = identical;
    ncases++;
}

/* Whether qemu-img accepts the size: at most 2^22 L1 entries. */
static bool size_is_legal(uint64_t cs, bool extl2, uint64_t size)
{
    uint64_t per_l1 = cs * (cs / (extl2 ? 16 : 8));
    uint64_t entries = (size + per_l1 - 1) / per_l1;
    return entries <= (1u << 22);
}

static void build_matrix(void)
{
    static const char *const cluster_names[] = { "512", "4k", "64k", "2M" };
    static const uint64_t cluster_sizes[] = { 512, 4 * KiB, 64 * KiB, 2 * MiB };
    static const char *const size_names[] = { "0", "1000", "1M", "1G", "4T" };
    static const uint64_t sizes[] = { 0, 1000, MiB, GiB, 4 * TiB };

    /* Every cluster size, both versions, every size that fits the L1 limit. */
    for (int c = 0; c < 4; c++)
        for (int v = 0; v < 2; v++)
            for (int s = 0; s < 5; s++)
                if (size_is_legal(cluster_sizes[c], false, sizes[s]))
                    add_case(true, "cluster_size=%s,compat=%s,size=%s", cluster_names[c],
                             v ? "1.1" : "0.10", size_names[s]);
    /* Every refcount width (16 is above). */
    static const int widths[] = { 1, 2, 4, 8, 32, 64 };
    for (int w = 0; w < 6; w++)
        for (int c = 0; c < 4; c++)
            for (int s = 2; s < 4; s++)
                add_case(true, "cluster_size=%s,refcount_bits=%d,size=%s", cluster_names[c],
                         widths[w], size_names[s]);
    /* L1 tables and refcount blocks beyond clusters 1..3; the refcount table moves. */
    add_case(true, "cluster_size=512,size=128G");
    add_case(true, "cluster_size=512,size=40G");
    add_case(true, "cluster_size=512,refcount_bits=64,size=8G");
    add_case(true, "cluster_size=512,refcount_bits=1,size=100G");
    add_case(true, "cluster_size=4k,refcount_bits=64,size=4T");
    /* Extended L2. */
    static const char *const ext_clusters[] = { "16k", "64k", "2M" };
    for (int c = 0; c < 3; c++)
        for (int s = 0; s < 5; s++)
            add_case(true, "cluster_size=%s,extended_l2=on,size=%s", ext_clusters[c],
                     size_names[s]);
    /* zstd and lazy refcounts, alone and together. */
    add_case(true, "compression_type=zstd,size=1G");
    add_case(true, "lazy_refcounts=on,size=1G");
    add_case(true, "cluster_size=4k,compression_type=zstd,lazy_refcounts=on,refcount_bits=8,"
                   "size=1M");
    add_case(true, "cluster_size=32k,extended_l2=on,compression_type=zstd,lazy_refcounts=on,"
                   "size=4T");
    /* preallocation=metadata (qemu-img is slow with small clusters: sizes kept modest). */
    static const char *const pre_sizes[4][3] = {
        { "1000", "1M", "4M" }, { "1000", "1M", "64M" }, { "1000", "1M", "1G" },
        { "1000", "1M", "1G" },
    };
    for (int c = 0; c < 4; c++)
        for (int v = 0; v < 2; v++)
            for (int s = 0; s < 3; s++)
                add_case(true, "cluster_size=%s,compat=%s,preallocation=metadata,size=%s",
                         cluster_names[c], v ? "1.1" : "0.10", pre_sizes[c][s]);
    add_case(true, "cluster_size=512,refcount_bits=64,preallocation=metadata,size=4M");
    add_case(true, "cluster_size=512,refcount_bits=1,preallocation=metadata,size=4M");
    add_case(true, "cluster_size=4k,refcount_bits=2,preallocation=metadata,size=100M");
    add_case(true, "cluster_size=16k,extended_l2=on,preallocation=metadata,size=1000");
    add_case(true, "cluster_size=64k,extended_l2=on,preallocation=metadata,size=3000000");
    add_case(true, "cluster_size=2M,extended_l2=on,preallocation=metadata,size=1M");
    add_case(true, "lazy_refcounts=on,compression_type=zstd,preallocation=metadata,size=64M");
    /* The refcount table outgrows its cluster while preallocating (small clusters). */
    add_case(true, "cluster_size=512,preallocation=metadata,size=16M");
    add_case(true, "cluster_size=512,refcount_bits=8,preallocation=metadata,size=16M");
    add_case(true, "cluster_size=1k,refcount_bits=32,compat=1.1,preallocation=metadata,"
                   "size=16M");
    /* falloc and full: new refcount structures past the metadata, then one data run. */
    static const char *const data_modes[] = { "falloc", "full" };
    for (int m = 0; m < 2; m++) {
        add_case(true, "preallocation=%s,size=0", data_modes[m]);
        add_case(true, "preallocation=%s,size=1000", data_modes[m]);
        add_case(true, "cluster_size=512,preallocation=%s,size=4M", data_modes[m]);
        add_case(true, "cluster_size=4k,refcount_bits=1,preallocation=%s,size=16M",
                 data_modes[m]);
        add_case(true, "compat=0.10,cluster_size=64k,preallocation=%s,size=16M", data_modes[m]);
        add_case(true, "cluster_size=64k,extended_l2=on,preallocation=%s,size=3000000",
                 data_modes[m]);
        add_case(true, "cluster_size=2M,refcount_bits=64,preallocation=%s,size=8M",
                 data_modes[m]);
    }
    /* Backing files: qcow2 and raw, with and without a size, v2 and v3. */
    static const char *const fmts[] = { "qcow2", "raw" };
    static const char *const back_clusters[] = { "512", "4k", "64k" };
    for (int f = 0; f < 2; f++)
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 2; v++) {
                add_case(true, "cluster_size=%s,compat=%s,backing_file=base.%s,backing_fmt=%s",
                         back_clusters[c], v ? "1.1" : "0.10", fmts[f], fmts[f]);
                add_case(true,
                         "cluster_size=%s,compat=%s,backing_file=base.%s,backing_fmt=%s,"
                         "size=10M",
                         back_clusters[c], v ? "1.1" : "0.10", fmts[f], fmts[f]);
            }
    add_case(true, "backing_file=%s,backing_fmt=qcow2", test_path("base.qcow2"));
    add_case(true, "backing_file=base.qcow2,backing_fmt=qcow2,size=0");
    add_case(true, "backing_file=base.qcow2,backing_fmt=qcow2,extended_l2=on,"
                   "preallocation=metadata");
    add_case(true, "backing_file=base.raw,backing_fmt=raw,extended_l2=on,"
                   "preallocation=metadata,size=1G");
    add_case(true, "backing_file=base.qcow2,backing_fmt=qcow2,extended_l2=on,"
                   "preallocation=falloc");
    add_case(true, "backing_file=base.raw,backing_fmt=raw,extended_l2=on,"
                   "preallocation=full,size=1M");
}

/* The base images every backing case names, in test_dir(). */
static void make_bases(void)
{
    if (test_run("qemu-img create -q -f qcow2 '%s' %" PRIu64, test_path("base.qcow2"),
                 (uint64_t)BASE_QCOW2_SIZE)) {
        fprintf(stderr, "test_create: qemu-img create failed\n");
        exit(2);
    }
    uint8_t raw[BASE_RAW_BYTES];
    for (unsigned i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(i * 7 + 1);
    if (test_write_file(test_path("base.raw"), raw, sizeof(raw))) {
        fprintf(stderr, "test_create: cannot write base.raw\n");
        exit(2);
    }
}

/* What qvet's reader must report for an image made with these options. */
static void check_info(const char *path, const struct qcow2_create_options *o,
                       const char *opts)
{
    struct qcow2_image *img;
    struct qcow2_error e;
    int ret = qcow2_open(path, NULL, &img, &e);
    ck_assert_msg(ret == 0, "%s: qvet open: expected success, got %d (%s)", opts, ret,
                  e.message);
    struct qcow2_info info;
    ck_assert_int_eq(qcow2_get_info(img, &info), 0);

    uint64_t size = o->size;
    if (!o->has_size)
        size = !strcmp(o->backing_format, "raw") ? 1024 : BASE_QCOW2_SIZE;
    size = (size + 511) & ~511ull;
    ck_assert_msg(info.virtual_size == size, "%s: expected virtual size %" PRIu64
                  ", got %" PRIu64, opts, size, info.virtual_size);
    ck_assert_msg(info.cluster_size == o->cluster_size, "%s: expected cluster size %" PRIu32
                  ", got %" PRIu32, opts, o->cluster_size, info.cluster_size);
    ck_assert_msg(info.version == o->version, "%s: expected version %" PRIu32 ", got %" PRIu32,
                  opts, o->version, info.version);
    ck_assert_msg(info.refcount_bits == o->refcount_bits, "%s: expected refcount bits %" PRIu32
                  ", got %" PRIu32, opts, o->refcount_bits, info.refcount_bits);
    uint64_t incompat = (o->extended_l2 ? QCOW2_INCOMPAT_EXTL2 : 0) |
                        (o->compression == QCOW2_COMPRESSION_ZSTD ? QCOW2_INCOMPAT_COMPRESSION
                                                                 : 0);
    uint64_t compat = o->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0;
    ck_assert_msg(info.incompatible_features == incompat, "%s: expected incompatible 0x%" PRIx64
                  ", got 0x%" PRIx64, opts, incompat, info.incompatible_features);
    ck_assert_msg(info.compatible_features == compat, "%s: expected compatible 0x%" PRIx64
                  ", got 0x%" PRIx64, opts, compat, info.compatible_features);
    ck_assert_msg(info.autoclear_features == 0, "%s: expected autoclear 0, got 0x%" PRIx64,
                  opts, info.autoclear_features);
    ck_assert_msg(info.compression == o->compression, "%s: expected compression %d, got %d",
                  opts, (int)o->compression, (int)info.compression);
    ck_assert_msg(info.extended_l2 == o->extended_l2, "%s: expected extended L2 %d, got %d",
                  opts, o->extended_l2, info.extended_l2);
    if (o->backing_file) {
        ck_assert_msg(info.backing_name && !strcmp(info.backing_name, o->backing_file),
                      "%s: expected backing name %s, got %s", opts, o->backing_file,
                      info.backing_name ? info.backing_name : "(none)");
        ck_assert_msg(info.backing_format && !strcmp(info.backing_format, o->backing_format),
                      "%s: expected backing format %s, got %s", opts, o->backing_format,
                      info.backing_format ? info.backing_format : "(none)");
    } else {
        ck_assert_msg(!info.backing_name, "%s: expected no backing file, got %s", opts,
                      info.backing_name);
    }
    qcow2_close(img);
}

/* qemu-img map of both images, host offsets removed, must be the same. */
static void check_map_modulo_offsets(const char *q, const char *v, const char *opts)
{
    int ret = test_run("qemu-img map --output=json '%s' | sed 's/, \"offset\": [0-9]*//' > '%s.map'"
                       " && qemu-img map --output=json '%s' | sed 's/, \"offset\": [0-9]*//' >"
                       " '%s.map' && cmp -s '%s.map' '%s.map'",
                       q, q, v, v, q, v);
    ck_assert_msg(ret == 0, "%s: expected the same qemu-img map modulo host offsets, got a "
                  "difference (exit %d)", opts, ret);
    test_run("rm -f '%s.map' '%s.map'", q, v);
}

START_TEST(matrix_against_qemu_img)
{
    const struct matrix_case *c = &cases[_i];
    char vname[32], qname[32];
    snprintf(vname, sizeof(vname), "v%d.qcow2", _i);
    snprintf(qname, sizeof(qname), "q%d.qcow2", _i);
    const char *v = test_path(vname);
    const char *q = test_path(qname);

    struct qcow2_create_options o;
    struct qcow2_error e;
    int ret = parse(&o, c->opts, &e);
    ck_assert_msg(ret == 0, "%s: parse: expected success, got %d (%s)", c->opts, ret,
                  e.message);
    ret = qcow2_create(v, &o, &e);
    ck_assert_msg(ret == 0, "%s: qvet create: expected success, got %d (%s)", c->opts, ret,
                  e.message);
    ret = test_run("qemu-img create -q -f qcow2 -o '%s' '%s'", c->opts, q);
    ck_assert_msg(ret == 0, "%s: qemu-img create: expected exit 0, got %d", c->opts, ret);

    if (c->identical) {
        ret = test_run("cmp -s '%s' '%s'", q, v);
        ck_assert_msg(ret == 0, "%s: expected the image byte-identical to qemu-img's, cmp exit "
                      "%d", c->opts, ret);
    }
    ret = test_run("qemu-img check -q '%s' >/dev/null 2>&1", v);
    ck_assert_msg(ret == 0, "%s: qemu-img check: expected exit 0, got %d", c->opts, ret);
    ret = test_run("qemu-img compare -q '%s' '%s' >/dev/null 2>&1", q, v);
    ck_assert_msg(ret == 0, "%s: qemu-img compare: expected 0 (identical), got %d", c->opts,
                  ret);
    if (o.preallocation != QCOW2_PREALLOC_OFF || !c->identical)
        check_map_modulo_offsets(q, v, c->opts);
    check_info(v, &o, c->opts);
    unlink(v);
    unlink(q);
}
END_TEST

int main(void)
{
    build_long_options();
    build_matrix();
    make_bases();

    Suite *s = suite_create("create");
    TCase *tc = tcase_create("size");
    tcase_add_loop_test(tc, parse_size_table, 0, (int)(sizeof(size_rows) / sizeof(size_rows[0])));
    tcase_add_test(tc, parse_size_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_test(tc, defaults_are_qemu_img_7_2);
    tcase_add_test(tc, every_key_is_applied);
    tcase_add_loop_test(tc, compat_synonyms, 0,
                        (int)(sizeof(compat_rows) / sizeof(compat_rows[0])));
    tcase_add_loop_test(tc, boolean_spellings, 0, (int)(sizeof(bool_rows) / sizeof(bool_rows[0])));
    tcase_add_test(tc, double_comma_escapes_a_comma_and_last_key_wins);
    tcase_add_test(tc, parse_applies_on_top_of_earlier_options);
    tcase_add_loop_test(tc, bad_values_are_refused_by_name, 0,
                        (int)(sizeof(bad_value_rows) / sizeof(bad_value_rows[0])));
    tcase_add_loop_test(tc, bad_combinations_are_refused_before_writing, 0,
                        (int)(sizeof(bad_combo_rows) / sizeof(bad_combo_rows[0])));
    tcase_add_test(tc, struct_values_outside_the_options_are_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, unwritable_path_fails_with_errno);
    tcase_add_test(tc, backend_gets_the_same_bytes_as_the_file);
    tcase_add_test(tc, backend_write_failures_are_reported);
    tcase_add_test(tc, size_comes_from_the_backing_file_resolved_next_to_the_image);
    tcase_add_test(tc, missing_backing_file_without_size_is_an_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("qemu-img");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, matrix_against_qemu_img, 0, ncases);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
