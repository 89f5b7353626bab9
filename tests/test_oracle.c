/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The oracle: contents, provenance, resize, snapshots, sparseness, blkverify compare, the
 * memory mode and its known prefix, and one test per rule of guest-visible semantics.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oracle.h"
#include "support.h"

#define KiB 1024ull
#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

/*
 * A v3 image of 512-byte clusters without a backing file: every resize the tests below
 * make is whole clusters, so nothing of the rules but zeros and bytes shows.
 */
static const struct oracle_facts plain = { .version = 3, .cluster_size = 512 };

/* A fresh directory per test (the suites run forked or not). */
static const char *fresh_dir(const char *name)
{
    const char *d = test_path(name);
    ck_assert_msg(test_run("rm -rf '%s' && mkdir -p '%s'", d, d) == 0, "cannot make %s", d);
    return d;
}

static struct oracle *make(const char *dir, uint64_t size, const char *initial)
{
    struct oracle *o = NULL;
    char err[256] = "";
    int ret = oracle_create(dir, size, initial, &plain, &o, err, sizeof(err));
    ck_assert_msg(ret == 0 && o, "oracle_create(%s, %llu): expected 0, got %d (%s)", dir,
                  (unsigned long long)size, ret, err);
    return o;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

static uint64_t file_allocated(const char *path)
{
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_blocks * 512u;
}

/*
 * Reads the whole active disk and checks it equals model (size bytes); with `files`, a
 * file oracle's file too.
 */
static void expect_disk_and_file(struct oracle *o, const uint8_t *model, uint64_t size,
                                 bool files, const char *when)
{
    ck_assert_msg(oracle_size(o) == size, "%s: expected size %llu, got %llu", when,
                  (unsigned long long)size, (unsigned long long)oracle_size(o));
    uint8_t *got = malloc(size ? size : 1);
    ck_assert_ptr_nonnull(got);
    int ret = oracle_read(o, got, size, 0);
    ck_assert_msg(ret == 0, "%s: read of the whole disk: expected 0, got %d", when, ret);
    uint64_t sector;
    bool differs = oracle_first_mismatch(got, model, size, 0, &sector);
    if (differs) {
        uint64_t i = sector * ORACLE_SECTOR;
        while (i < size && got[i] == model[i])
            i++;
        unsigned want_byte = model[i], got_byte = got[i];
        free(got);
        ck_abort_msg("%s: byte %llu (sector %llu) differs: expected 0x%02x, got 0x%02x", when,
                     (unsigned long long)i, (unsigned long long)sector, want_byte, got_byte);
    }
    free(got);
    if (!oracle_path(o) || !files)
        return;                     /* in memory */
    ck_assert_msg(file_size(oracle_path(o)) == size, "%s: %s: expected %llu bytes, got %llu",
                  when, oracle_path(o), (unsigned long long)size,
                  (unsigned long long)file_size(oracle_path(o)));
    /* The file is what qemu-img compare reads: it must hold the same bytes. */
    size_t flen;
    uint8_t *file = test_read_file(oracle_path(o), &flen);
    ck_assert_msg(file && flen == size, "%s: cannot read %s", when, oracle_path(o));
    differs = oracle_first_mismatch(file, model, size, 0, &sector);
    free(file);
    ck_assert_msg(!differs, "%s: %s differs from the disk at sector %llu", when,
                  oracle_path(o), (unsigned long long)sector);
}

static void expect_disk(struct oracle *o, const uint8_t *model, uint64_t size, const char *when)
{
    expect_disk_and_file(o, model, size, true, when);
}

/* Reads the whole of snapshot `id` (and its file, for a file oracle): it must equal model. */
static void expect_snapshot(struct oracle *o, const char *id, const uint8_t *model,
                            uint64_t size, const char *when)
{
    ck_assert_msg(oracle_snapshot_size(o, id) == size, "%s: snapshot %s: expected size "
                  "%llu, got %llu", when, id, (unsigned long long)size,
                  (unsigned long long)oracle_snapshot_size(o, id));
    uint8_t *got = malloc(size ? size : 1);
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(oracle_snapshot_read(o, id, got, size, 0), 0);
    uint64_t sector;
    bool differs = oracle_first_mismatch(got, model, size, 0, &sector);
    free(got);
    ck_assert_msg(!differs, "%s: snapshot %s differs at sector %llu", when, id,
                  (unsigned long long)sector);
    if (!oracle_path(o))
        return;                     /* in memory */
    const char *path = oracle_snapshot_path(o, id);
    ck_assert_msg(path, "%s: snapshot %s: no file (%s)", when, id, strerror(errno));
    size_t flen;
    uint8_t *file = test_read_file(path, &flen);
    ck_assert_msg(file && flen == size, "%s: %s: expected %llu bytes", when, path,
                  (unsigned long long)size);
    differs = oracle_first_mismatch(file, model, size, 0, &sector);
    free(file);
    ck_assert_msg(!differs, "%s: %s differs at sector %llu", when, path,
                  (unsigned long long)sector);
}

static struct oracle *make_mem(uint64_t size, const void *initial, uint64_t initial_len,
                               const struct oracle_facts *facts)
{
    struct oracle *o = NULL;
    char err[256] = "";
    int ret = oracle_create_mem(size, initial, initial_len, facts, &o, err, sizeof(err));
    ck_assert_msg(ret == 0 && o, "oracle_create_mem(%llu, %llu): expected 0, got %d (%s)",
                  (unsigned long long)size, (unsigned long long)initial_len, ret, err);
    return o;
}

/* Asserts that bytes [off, off+len) of the active disk all equal `byte`. */
static void expect_bytes(struct oracle *o, uint64_t off, uint64_t len, int byte,
                         const char *when)
{
    uint8_t *got = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(got);
    int ret = oracle_read(o, got, len, off);
    ck_assert_msg(ret == 0, "%s: read %llu+%llu: expected 0, got %d", when,
                  (unsigned long long)off, (unsigned long long)len, ret);
    for (uint64_t i = 0; i < len; i++)
        if (got[i] != byte) {
            unsigned g = got[i];
            free(got);
            ck_abort_msg("%s: byte %llu: expected 0x%02x, got 0x%02x", when,
                         (unsigned long long)(off + i), byte, g);
        }
    free(got);
}

/* Fills [off, off+len) of the active disk with `byte`, authored by op. */
static void fill_bytes(struct oracle *o, uint64_t off, uint64_t len, int byte, uint32_t op)
{
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    memset(buf, byte, len);
    ck_assert_int_eq(oracle_write(o, buf, len, off, op), 0);
    free(buf);
}

/* Checks sectors [first, end) have author `op`. */
static void expect_authors(struct oracle *o, uint64_t first, uint64_t end, uint32_t op,
                           const char *when)
{
    for (uint64_t s = first; s < end; s++) {
        uint32_t a = oracle_sector_author(o, s);
        if (a != op)                    /* not ck_assert: each one is a write to a pipe */
            ck_abort_msg("%s: sector %llu: expected author %u, got %u", when,
                         (unsigned long long)s, op, a);
    }
}

/* ---- reads and writes -------------------------------------------------------------- */

START_TEST(round_trips_at_unaligned_offsets)
{
    const uint64_t size = 64 * KiB;
    struct oracle *o = make(fresh_dir("rt"), size, NULL);
    uint8_t *model = calloc(1, size);
    ck_assert_ptr_nonnull(model);
    expect_disk(o, model, size, "fresh disk");

    static const struct { uint64_t off; size_t len; } w[] = {
        {0, 1}, {1, 7}, {511, 2}, {513, 1000}, {4095, 4097}, {12345, 6789},
        {size - 1, 1}, {size - 700, 700}, {3, 65000},
    };
    uint8_t buf[65536];
    for (unsigned i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        test_fill_random(buf, w[i].len, 100 + i);
        int ret = oracle_write(o, buf, w[i].len, w[i].off, i + 1);
        ck_assert_msg(ret == 0, "write %u at %llu+%zu: expected 0, got %d", i,
                      (unsigned long long)w[i].off, w[i].len, ret);
        memcpy(model + w[i].off, buf, w[i].len);

        /* Read back exactly what was written, and an unaligned window around it. */
        uint8_t back[65536 + 64];
        ck_assert_int_eq(oracle_read(o, back, w[i].len, w[i].off), 0);
        ck_assert_msg(memcmp(back, buf, w[i].len) == 0, "write %u does not read back", i);
        uint64_t from = w[i].off >= 13 ? w[i].off - 13 : 0;
        uint64_t to = w[i].off + w[i].len + 29 <= size ? w[i].off + w[i].len + 29 : size;
        ck_assert_int_eq(oracle_read(o, back, to - from, from), 0);
        ck_assert_msg(memcmp(back, model + from, to - from) == 0,
                      "window [%llu, %llu) after write %u differs from the model",
                      (unsigned long long)from, (unsigned long long)to, i);
    }
    expect_disk(o, model, size, "after the writes");
    free(model);
    oracle_close(o);
}
END_TEST

START_TEST(out_of_range_is_refused)
{
    struct oracle *o = make(fresh_dir("range"), 8 * KiB, NULL);
    uint8_t buf[1024] = {0};
    ck_assert_int_eq(oracle_read(o, buf, 1, 8 * KiB), -EINVAL);
    ck_assert_int_eq(oracle_read(o, buf, 2, 8 * KiB - 1), -EINVAL);
    ck_assert_int_eq(oracle_write(o, buf, 1024, 8 * KiB - 512, 1), -EINVAL);
    ck_assert_int_eq(oracle_write(o, buf, 16, UINT64_MAX - 8, 1), -EINVAL);
    ck_assert_int_eq(oracle_zero(o, 1, 8 * KiB, 1), -EINVAL);
    ck_assert_int_eq(oracle_zero(o, UINT64_MAX, 512, 1), -EINVAL);
    /* Empty transfers at the end are fine and author nothing. */
    ck_assert_int_eq(oracle_read(o, buf, 0, 8 * KiB), 0);
    ck_assert_int_eq(oracle_write(o, buf, 0, 8 * KiB, 5), 0);
    ck_assert_int_eq(oracle_zero(o, 0, 0, 5), 0);
    expect_authors(o, 0, 16, ORACLE_NO_OP, "after refused and empty ops");
    ck_assert_uint_eq(oracle_sector_author(o, 16), ORACLE_NO_OP);
    ck_assert_uint_eq(oracle_sector_author(o, UINT64_MAX), ORACLE_NO_OP);
    oracle_close(o);
}
END_TEST

START_TEST(zero_clears_exactly_the_range)
{
    const uint64_t size = 256 * KiB;
    struct oracle *o = make(fresh_dir("zero"), size, NULL);
    uint8_t *model = malloc(size);
    ck_assert_ptr_nonnull(model);
    test_fill_random(model, size, 7);
    ck_assert_int_eq(oracle_write(o, model, size, 0, 1), 0);

    /* Unaligned on both ends, spanning whole file-system blocks in the middle. */
    ck_assert_int_eq(oracle_zero(o, 100000, 1001, 2), 0);
    memset(model + 1001, 0, 100000);
    /* Inside one sector. */
    ck_assert_int_eq(oracle_zero(o, 10, 200000, 3), 0);
    memset(model + 200000, 0, 10);
    /* The very end. */
    ck_assert_int_eq(oracle_zero(o, 513, size - 513, 4), 0);
    memset(model + size - 513, 0, 513);
    expect_disk(o, model, size, "after the zero ops");

    expect_authors(o, 0, 1, 1, "before the first zero");
    expect_authors(o, 1, (1001 + 100000 - 1) / 512 + 1, 2, "first zero");
    expect_authors(o, (1001 + 100000 - 1) / 512 + 1, 200000 / 512, 1, "between zeros");
    expect_authors(o, 200000 / 512, 200000 / 512 + 1, 3, "one-sector zero");
    expect_authors(o, (size - 513) / 512, size / 512, 4, "zero at the end");
    free(model);
    oracle_close(o);
}
END_TEST

/* ---- provenance -------------------------------------------------------------------- */

START_TEST(provenance_per_sector)
{
    struct oracle *o = make(fresh_dir("prov"), 16 * KiB, NULL);
    uint8_t buf[4096];
    memset(buf, 0xab, sizeof(buf));
    expect_authors(o, 0, 32, ORACLE_NO_OP, "fresh disk");

    /* One byte in sector 3 authors the whole of sector 3 and nothing else. */
    ck_assert_int_eq(oracle_write(o, buf, 1, 3 * 512 + 100, 10), 0);
    expect_authors(o, 0, 3, ORACLE_NO_OP, "before a one-byte write");
    expect_authors(o, 3, 4, 10, "one-byte write");
    expect_authors(o, 4, 32, ORACLE_NO_OP, "after a one-byte write");

    /* Two bytes straddling sectors 5 and 6. */
    ck_assert_int_eq(oracle_write(o, buf, 2, 6 * 512 - 1, 11), 0);
    expect_authors(o, 5, 7, 11, "straddling write");
    expect_authors(o, 7, 8, ORACLE_NO_OP, "after the straddling write");

    /* Exactly sectors 8..15: ends on a boundary, so sector 16 stays untouched. */
    ck_assert_int_eq(oracle_write(o, buf, 4096, 8 * 512, 12), 0);
    expect_authors(o, 8, 16, 12, "aligned 4 KiB write");
    ck_assert_uint_eq(oracle_sector_author(o, 16), ORACLE_NO_OP);

    /* A later write overrides part of it. */
    ck_assert_int_eq(oracle_write(o, buf, 600, 10 * 512 + 10, 13), 0);
    expect_authors(o, 8, 10, 12, "left of the override");
    expect_authors(o, 10, 12, 13, "override");
    expect_authors(o, 12, 16, 12, "right of the override");

    /* Zeroing authors too, and so does an override of a zeroed sector. */
    ck_assert_int_eq(oracle_zero(o, 1, 3 * 512, 14), 0);
    expect_authors(o, 3, 4, 14, "zeroed sector");
    ck_assert_int_eq(oracle_write(o, buf, 512, 3 * 512, 15), 0);
    expect_authors(o, 3, 4, 15, "rewritten zeroed sector");
    oracle_close(o);
}
END_TEST

/* ---- resize ------------------------------------------------------------------------ */

START_TEST(resize_grow_reads_zeros_authored_by_the_resize)
{
    const uint64_t small = 8 * KiB, big = 40 * KiB;
    struct oracle *o = make(fresh_dir("grow"), small, NULL);
    uint8_t *model = calloc(1, big);
    ck_assert_ptr_nonnull(model);
    test_fill_random(model, small, 3);
    ck_assert_int_eq(oracle_write(o, model, small, 0, 1), 0);

    int ret = oracle_resize(o, big, 2);
    ck_assert_msg(ret == 0, "grow: expected 0, got %d", ret);
    expect_disk(o, model, big, "after growing");
    expect_authors(o, 0, small / 512, 1, "old part after growing");
    expect_authors(o, small / 512, big / 512, 2, "grown part");
    ck_assert_uint_eq(oracle_sector_author(o, big / 512), ORACLE_NO_OP);

    /* The new area is a normal part of the disk. */
    uint8_t buf[1000];
    test_fill_random(buf, sizeof(buf), 4);
    ck_assert_int_eq(oracle_write(o, buf, sizeof(buf), big - sizeof(buf), 3), 0);
    memcpy(model + big - sizeof(buf), buf, sizeof(buf));
    expect_disk(o, model, big, "after writing the grown part");
    free(model);
    oracle_close(o);
}
END_TEST

START_TEST(resize_shrink_drops_the_tail)
{
    const uint64_t big = 32 * KiB, small = 12 * KiB + 512;
    struct oracle *o = make(fresh_dir("shrink"), big, NULL);
    uint8_t *model = malloc(big);
    ck_assert_ptr_nonnull(model);
    test_fill_random(model, big, 5);
    ck_assert_int_eq(oracle_write(o, model, big, 0, 1), 0);

    ck_assert_int_eq(oracle_resize(o, small, 2), 0);
    expect_disk(o, model, small, "after shrinking");
    expect_authors(o, 0, small / 512, 1, "kept part after shrinking");
    ck_assert_uint_eq(oracle_sector_author(o, small / 512), ORACLE_NO_OP);
    uint8_t b[512];
    ck_assert_int_eq(oracle_read(o, b, 1, small), -EINVAL);
    ck_assert_int_eq(oracle_write(o, b, 1, small, 3), -EINVAL);

    /* Growing back exposes zeros, not the old tail, authored by the grow. */
    ck_assert_int_eq(oracle_resize(o, big, 4), 0);
    memset(model + small, 0, big - small);
    expect_disk(o, model, big, "after shrinking and growing back");
    expect_authors(o, 0, small / 512, 1, "kept part after growing back");
    expect_authors(o, small / 512, big / 512, 4, "regrown part");

    ck_assert_int_eq(oracle_resize(o, big + 100, 5), -EINVAL);
    ck_assert_int_eq(oracle_resize(o, 0, 6), 0);
    ck_assert_uint_eq(oracle_size(o), 0);
    ck_assert_uint_eq(oracle_sector_author(o, 0), ORACLE_NO_OP);
    ck_assert_int_eq(oracle_resize(o, 1024, 7), 0);
    expect_authors(o, 0, 2, 7, "grown from nothing");
    free(model);
    oracle_close(o);
}
END_TEST

/* ---- creation ---------------------------------------------------------------------- */

START_TEST(initial_raw_shorter_than_the_disk)
{
    const char *dir = fresh_dir("init-short");
    const uint64_t size = 16 * KiB;
    uint8_t raw[3000];                  /* not even a whole number of sectors */
    test_fill_random(raw, sizeof(raw), 9);
    const char *raw_path = test_path("init-short.raw");
    ck_assert_int_eq(test_write_file(raw_path, raw, sizeof(raw)), 0);

    struct oracle *o = make(dir, size, raw_path);
    uint8_t *model = calloc(1, size);
    ck_assert_ptr_nonnull(model);
    memcpy(model, raw, sizeof(raw));
    expect_disk(o, model, size, "disk over a shorter raw file");
    expect_authors(o, 0, size / 512, ORACLE_NO_OP, "initial contents");
    /* The initial raw file itself is left alone. */
    ck_assert_uint_eq(file_size(raw_path), sizeof(raw));
    free(model);
    oracle_close(o);
}
END_TEST

START_TEST(initial_raw_longer_than_the_disk)
{
    const char *dir = fresh_dir("init-long");
    const uint64_t size = 8 * KiB;
    uint8_t raw[20000];
    test_fill_random(raw, sizeof(raw), 10);
    const char *raw_path = test_path("init-long.raw");
    ck_assert_int_eq(test_write_file(raw_path, raw, sizeof(raw)), 0);

    struct oracle *o = make(dir, size, raw_path);
    expect_disk(o, raw, size, "disk over a longer raw file");
    expect_authors(o, 0, size / 512, ORACLE_NO_OP, "initial contents");
    /* Growing later shows zeros, not the rest of the raw file. */
    ck_assert_int_eq(oracle_resize(o, 16 * KiB, 1), 0);
    uint8_t model[16 * KiB] = {0};
    memcpy(model, raw, size);
    expect_disk(o, model, 16 * KiB, "grown disk over a longer raw file");
    oracle_close(o);
}
END_TEST

START_TEST(initial_raw_holes_stay_holes)
{
    const char *dir = fresh_dir("init-sparse");
    const char *raw_path = test_path("init-sparse.raw");
    /* 256 MiB, mostly a hole, with "qvet" at 100000000 and 4 MiB of written zeros. */
    ck_assert_int_eq(test_run("truncate -s 256M '%s' && printf 'qvet' | dd of='%s' bs=1 "
                              "seek=100000000 conv=notrunc status=none && dd if=/dev/zero "
                              "of='%s' bs=1M seek=10 count=4 conv=notrunc status=none",
                              raw_path, raw_path, raw_path),
                     0);
    ck_assert_msg(file_allocated(raw_path) >= 4 * MiB, "%s: expected 4 MiB allocated",
                  raw_path);
    struct oracle *o = make(dir, 512 * MiB, raw_path);
    uint8_t got[8];
    ck_assert_int_eq(oracle_read(o, got, 8, 100000000 - 2), 0);
    ck_assert_msg(memcmp(got, "\0\0qvet\0\0", 8) == 0, "expected ..qvet.. at 99999998, got "
                  "%02x %02x %02x %02x %02x %02x %02x %02x", got[0], got[1], got[2], got[3],
                  got[4], got[5], got[6], got[7]);
    /* Neither the hole nor the written zeros take space in the oracle. */
    uint64_t alloc = file_allocated(oracle_path(o));
    ck_assert_msg(alloc <= 1 * MiB, "oracle over a sparse raw file: expected at most 1 MiB "
                  "allocated, got %llu", (unsigned long long)alloc);
    oracle_close(o);
}
END_TEST

START_TEST(create_errors_say_why)
{
    struct oracle *o = (struct oracle *)1;
    char err[256];

    const char *missing = test_path("no-such-dir");
    int ret = oracle_create(missing, 4096, NULL, &plain, &o, err, sizeof(err));
    ck_assert_msg(ret == -ENOENT, "missing directory: expected %d, got %d", -ENOENT, ret);
    ck_assert_ptr_null(o);
    ck_assert_msg(strstr(err, missing) && !strchr(err, '\n'),
                  "expected a one-line reason naming %s, got \"%s\"", missing, err);

    ret = oracle_create(fresh_dir("errs"), 1000, NULL, &plain, &o, err, sizeof(err));
    ck_assert_msg(ret == -EINVAL, "size 1000: expected %d, got %d", -EINVAL, ret);
    ck_assert_msg(strstr(err, "1000") != NULL, "expected the size in \"%s\"", err);

    const char *raw = test_path("no-such.raw");
    ret = oracle_create(test_path("errs"), 4096, raw, &plain, &o, err, sizeof(err));
    ck_assert_msg(ret == -ENOENT, "missing raw: expected %d, got %d", -ENOENT, ret);
    ck_assert_msg(strstr(err, raw) && !strchr(err, '\n'),
                  "expected a one-line reason naming %s, got \"%s\"", raw, err);

    ret = oracle_create(test_path("errs"), 4096, test_dir(), &plain, &o, err, sizeof(err));
    ck_assert_msg(ret < 0, "directory as raw: expected an error, got %d", ret);
    ck_assert_msg(err[0] != '\0', "directory as raw: expected a reason");

    /* Tiny and absent error buffers are fine. */
    ret = oracle_create(missing, 4096, NULL, &plain, &o, err, 4);
    ck_assert_int_eq(ret, -ENOENT);
    ck_assert_uint_eq(strlen(err), 3);
    ck_assert_int_eq(oracle_create(missing, 4096, NULL, &plain, &o, NULL, 0), -ENOENT);
}
END_TEST

START_TEST(files_stay_after_close)
{
    const char *dir = fresh_dir("keep");
    struct oracle *o = make(dir, 4 * KiB, NULL);
    ck_assert_int_eq(oracle_write(o, "kept", 4, 1000, 1), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "1"), 0);
    char active[512], snap[512];
    snprintf(active, sizeof(active), "%s", oracle_path(o));
    snprintf(snap, sizeof(snap), "%s", oracle_snapshot_path(o, "1"));
    oracle_close(o);
    size_t len;
    uint8_t *data = test_read_file(active, &len);
    ck_assert_msg(data && len == 4 * KiB && memcmp(data + 1000, "kept", 4) == 0,
                  "%s after close: expected 4096 bytes with \"kept\" at 1000", active);
    free(data);
    data = test_read_file(snap, &len);
    ck_assert_msg(data && len == 4 * KiB && memcmp(data + 1000, "kept", 4) == 0,
                  "%s after close: expected 4096 bytes with \"kept\" at 1000", snap);
    free(data);
}
END_TEST

/* ---- snapshots --------------------------------------------------------------------- */

START_TEST(snapshot_apply_restores_contents_and_provenance)
{
    const uint64_t size = 128 * KiB;
    struct oracle *o = make(fresh_dir("snap"), size, NULL);
    uint8_t *at_snap = calloc(1, size), *later = calloc(1, size);
    ck_assert_ptr_nonnull(at_snap);
    ck_assert_ptr_nonnull(later);

    test_fill_random(at_snap + 4096, 8192, 1);
    ck_assert_int_eq(oracle_write(o, at_snap + 4096, 8192, 4096, 1), 0);
    test_fill_random(at_snap + 70001, 999, 2);
    ck_assert_int_eq(oracle_write(o, at_snap + 70001, 999, 70001, 2), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "1"), 0);
    ck_assert_uint_eq(oracle_snapshot_count(o), 1);
    ck_assert_uint_eq(oracle_snapshot_size(o, "1"), size);
    ck_assert_int_eq(oracle_snapshot_create(o, "1"), -EEXIST);

    /* Change everything after the snapshot. */
    test_fill_random(later, size, 3);
    ck_assert_int_eq(oracle_write(o, later, size, 0, 3), 0);
    ck_assert_int_eq(oracle_zero(o, 4096, 8192, 4), 0);
    memset(later + 8192, 0, 4096);
    expect_disk(o, later, size, "before apply");

    /* The snapshot still reads as it was. */
    uint8_t *snap = malloc(size);
    ck_assert_ptr_nonnull(snap);
    ck_assert_int_eq(oracle_snapshot_read(o, "1", snap, size, 0), 0);
    ck_assert_msg(memcmp(snap, at_snap, size) == 0, "snapshot 1 changed with the active disk");
    ck_assert_int_eq(oracle_snapshot_read(o, "1", snap, 10, 70000), 0);
    ck_assert_msg(memcmp(snap, at_snap + 70000, 10) == 0, "unaligned snapshot read differs");
    ck_assert_int_eq(oracle_snapshot_read(o, "1", snap, 1, size), -EINVAL);
    ck_assert_int_eq(oracle_snapshot_read(o, "2", snap, 1, 0), -ENOENT);

    ck_assert_int_eq(oracle_snapshot_apply(o, "1"), 0);
    expect_disk(o, at_snap, size, "after apply");
    expect_authors(o, 0, 8, ORACLE_NO_OP, "after apply, before write 1");
    expect_authors(o, 8, 24, 1, "after apply, write 1");
    expect_authors(o, 24, 70001 / 512, ORACLE_NO_OP, "after apply, between writes");
    expect_authors(o, 70001 / 512, (70001 + 999 - 1) / 512 + 1, 2, "after apply, write 2");
    expect_authors(o, (70001 + 999 - 1) / 512 + 1, size / 512, ORACLE_NO_OP,
                   "after apply, the rest");
    /* The snapshot survives its apply, and the active disk is independent of it again. */
    ck_assert_uint_eq(oracle_snapshot_count(o), 1);
    ck_assert_int_eq(oracle_write(o, later, 512, 4096, 5), 0);
    ck_assert_int_eq(oracle_snapshot_read(o, "1", snap, 512, 4096), 0);
    ck_assert_msg(memcmp(snap, at_snap + 4096, 512) == 0, "write after apply reached the "
                  "snapshot");
    ck_assert_int_eq(oracle_snapshot_apply(o, "nope"), -ENOENT);
    free(snap);
    free(at_snap);
    free(later);
    oracle_close(o);
}
END_TEST

START_TEST(snapshot_apply_restores_the_size)
{
    const uint64_t size = 32 * KiB;
    struct oracle *o = make(fresh_dir("snap-size"), size, NULL);
    uint8_t *model = malloc(2 * size);
    ck_assert_ptr_nonnull(model);
    test_fill_random(model, size, 11);
    ck_assert_int_eq(oracle_write(o, model, size, 0, 1), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "small"), 0);

    /* Grow, fill the new part, snapshot the big disk. */
    ck_assert_int_eq(oracle_resize(o, 2 * size, 2), 0);
    test_fill_random(model + size, size, 12);
    ck_assert_int_eq(oracle_write(o, model + size, size - 512, size, 3), 0);
    memset(model + 2 * size - 512, 0, 512);
    ck_assert_int_eq(oracle_snapshot_create(o, "big"), 0);
    ck_assert_uint_eq(oracle_snapshot_size(o, "small"), size);
    ck_assert_uint_eq(oracle_snapshot_size(o, "big"), 2 * size);
    ck_assert_uint_eq(file_size(oracle_snapshot_path(o, "big")), 2 * size);

    /* Back to the small one: size, file and provenance shrink with it. */
    ck_assert_int_eq(oracle_snapshot_apply(o, "small"), 0);
    expect_disk(o, model, size, "after applying the small snapshot");
    expect_authors(o, 0, size / 512, 1, "after applying the small snapshot");
    ck_assert_uint_eq(oracle_sector_author(o, size / 512), ORACLE_NO_OP);

    /* Shrink further, then apply the big one: the grown part comes back. */
    ck_assert_int_eq(oracle_resize(o, 4096, 4), 0);
    ck_assert_int_eq(oracle_snapshot_apply(o, "big"), 0);
    expect_disk(o, model, 2 * size, "after applying the big snapshot");
    expect_authors(o, 0, size / 512, 1, "old part of the big snapshot");
    expect_authors(o, size / 512, 2 * size / 512 - 1, 3, "written part of the big snapshot");
    expect_authors(o, 2 * size / 512 - 1, 2 * size / 512, 2, "last sector, from the grow");
    free(model);
    oracle_close(o);
}
END_TEST

START_TEST(snapshot_delete_removes_it)
{
    const char *dir = fresh_dir("snap-del");
    struct oracle *o = make(dir, 8 * KiB, NULL);
    ck_assert_int_eq(oracle_write(o, "first", 5, 0, 1), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "1"), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "2"), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "3"), 0);
    ck_assert_uint_eq(oracle_snapshot_count(o), 3);

    /* Keep snapshot 2's file open through a read, then delete it. */
    char buf[8];
    ck_assert_int_eq(oracle_snapshot_read(o, "2", buf, 5, 0), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s", oracle_snapshot_path(o, "2"));
    ck_assert_int_eq(oracle_snapshot_delete(o, "2"), 0);
    ck_assert_uint_eq(oracle_snapshot_count(o), 2);
    /* The others keep their order, oldest first. */
    ck_assert_str_eq(oracle_snapshot_id(o, 0), "1");
    ck_assert_str_eq(oracle_snapshot_id(o, 1), "3");
    ck_assert_ptr_null(oracle_snapshot_id(o, 2));
    ck_assert_msg(access(path, F_OK) != 0, "%s: expected gone after delete", path);
    ck_assert_ptr_null(oracle_snapshot_path(o, "2"));
    ck_assert_uint_eq(oracle_snapshot_size(o, "2"), 0);
    ck_assert_int_eq(oracle_snapshot_read(o, "2", buf, 1, 0), -ENOENT);
    ck_assert_int_eq(oracle_snapshot_apply(o, "2"), -ENOENT);
    ck_assert_int_eq(oracle_snapshot_delete(o, "2"), -ENOENT);
    ck_assert_ptr_nonnull(oracle_snapshot_path(o, "1"));
    ck_assert_ptr_nonnull(oracle_snapshot_path(o, "3"));

    /* The id can be reused, and reads see the new snapshot, not the old file. */
    ck_assert_int_eq(oracle_write(o, "again", 5, 0, 2), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "2"), 0);
    ck_assert_int_eq(oracle_snapshot_read(o, "2", buf, 5, 0), 0);
    ck_assert_msg(memcmp(buf, "again", 5) == 0, "recreated snapshot 2: expected \"again\", "
                  "got \"%.5s\"", buf);
    ck_assert_int_eq(oracle_snapshot_read(o, "1", buf, 5, 0), 0);
    ck_assert_msg(memcmp(buf, "first", 5) == 0, "snapshot 1: expected \"first\", got "
                  "\"%.5s\"", buf);
    ck_assert_int_eq(oracle_snapshot_delete(o, "1"), 0);
    ck_assert_int_eq(oracle_snapshot_delete(o, "3"), 0);
    ck_assert_int_eq(oracle_snapshot_delete(o, "2"), 0);
    ck_assert_uint_eq(oracle_snapshot_count(o), 0);
    oracle_close(o);
}
END_TEST

START_TEST(snapshot_keeps_lone_bytes)
{
    /* One nonzero byte at either end of a block or of the disk must not pass for a hole. */
    const uint64_t size = 3 * MiB;
    struct oracle *o = make(fresh_dir("snap-bytes"), size, NULL);
    static const uint64_t at[] = {0, 4095, 4096 * 5, 1 * MiB - 1, 1 * MiB, 2 * MiB + 4095,
                                  size - 1};
    const unsigned n = sizeof(at) / sizeof(at[0]);
    for (unsigned i = 0; i < n; i++) {
        uint8_t b = (uint8_t)(0x80 + i);
        ck_assert_int_eq(oracle_write(o, &b, 1, at[i], i + 1), 0);
    }
    /* And a block of one repeated nonzero byte is data too. */
    uint8_t ff[4096];
    memset(ff, 0xff, sizeof(ff));
    ck_assert_int_eq(oracle_write(o, ff, sizeof(ff), 3 * MiB / 2, 50), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "1"), 0);
    ck_assert_int_eq(oracle_zero(o, size, 0, 100), 0);
    uint8_t got[4096];
    ck_assert_int_eq(oracle_snapshot_read(o, "1", got, sizeof(got), 3 * MiB / 2), 0);
    ck_assert_msg(memcmp(got, ff, sizeof(got)) == 0, "snapshot block of 0xff: got 0x%02x at "
                  "its start", got[0]);
    for (unsigned i = 0; i < n; i++) {
        uint8_t b = 0;
        ck_assert_int_eq(oracle_snapshot_read(o, "1", &b, 1, at[i]), 0);
        ck_assert_msg(b == 0x80 + i, "snapshot byte at %llu: expected 0x%02x, got 0x%02x",
                      (unsigned long long)at[i], 0x80 + i, b);
    }
    ck_assert_int_eq(oracle_snapshot_apply(o, "1"), 0);
    for (unsigned i = 0; i < n; i++) {
        uint8_t b = 0;
        ck_assert_int_eq(oracle_read(o, &b, 1, at[i]), 0);
        ck_assert_msg(b == 0x80 + i, "byte at %llu after apply: expected 0x%02x, got 0x%02x",
                      (unsigned long long)at[i], 0x80 + i, b);
        expect_authors(o, at[i] / 512, at[i] / 512 + 1, i + 1, "lone byte after apply");
    }
    oracle_close(o);
}
END_TEST

START_TEST(snapshot_ids_stay_inside_the_directory)
{
    const char *dir = fresh_dir("snap-ids");
    struct oracle *o = make(dir, 4 * KiB, NULL);
    static const char *ids[] = {"17", "../evil", "a/b", "a_b", "a%2Fb", ".", "..", "x y\n"};
    size_t dlen = strlen(dir);
    for (unsigned i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        int ret = oracle_snapshot_create(o, ids[i]);
        ck_assert_msg(ret == 0, "id \"%s\": expected 0, got %d", ids[i], ret);
        const char *p = oracle_snapshot_path(o, ids[i]);
        ck_assert_msg(p && strncmp(p, dir, dlen) == 0 && p[dlen] == '/' &&
                      !strchr(p + dlen + 1, '/') && strncmp(p + dlen + 1, "snap-", 5) == 0,
                      "id \"%s\": expected %s/snap-..., got %s", ids[i], dir, p ? p : "NULL");
        ck_assert_msg(access(p, F_OK) == 0, "id \"%s\": %s missing", ids[i], p);
        for (unsigned j = 0; j < i; j++)
            ck_assert_msg(strcmp(p, oracle_snapshot_path(o, ids[j])) != 0,
                          "ids \"%s\" and \"%s\" share %s", ids[i], ids[j], p);
    }
    ck_assert_str_eq(strrchr(oracle_snapshot_path(o, "17"), '/') + 1, "snap-17.raw");
    ck_assert_int_eq(access(test_path("evil.raw"), F_OK), -1);
    ck_assert_int_eq(oracle_snapshot_create(o, ""), -EINVAL);
    char longid[300];
    memset(longid, '7', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    ck_assert_int_eq(oracle_snapshot_create(o, longid), -ENAMETOOLONG);
    ck_assert_uint_eq(oracle_snapshot_count(o), sizeof(ids) / sizeof(ids[0]));
    oracle_close(o);
}
END_TEST

START_TEST(snapshots_of_a_sparse_disk_stay_sparse)
{
    const uint64_t size = 1 * GiB;
    struct oracle *o = make(fresh_dir("sparse"), size, NULL);
    uint8_t buf[4096];
    for (unsigned i = 0; i < 8; i++) {
        test_fill_random(buf, sizeof(buf), i);
        ck_assert_int_eq(oracle_write(o, buf, sizeof(buf), i * 128 * MiB + 12345, i + 1), 0);
    }
    /* A written-then-zeroed area need not come back as data either. */
    ck_assert_int_eq(oracle_write(o, buf, sizeof(buf), 900 * MiB, 9), 0);
    ck_assert_int_eq(oracle_zero(o, 1 * MiB, 900 * MiB, 10), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "1"), 0);

    const char *sp = oracle_snapshot_path(o, "1");
    ck_assert_uint_eq(file_size(sp), size);
    uint64_t alloc = file_allocated(sp);
    ck_assert_msg(alloc <= 1 * MiB, "snapshot of a 1 GiB disk with 32 KiB written: expected "
                  "at most 1 MiB allocated, got %llu", (unsigned long long)alloc);

    ck_assert_int_eq(oracle_write(o, buf, sizeof(buf), 500 * MiB, 11), 0);
    ck_assert_int_eq(oracle_snapshot_apply(o, "1"), 0);
    alloc = file_allocated(oracle_path(o));
    ck_assert_msg(alloc <= 1 * MiB, "active disk after apply: expected at most 1 MiB "
                  "allocated, got %llu", (unsigned long long)alloc);
    ck_assert_uint_eq(file_size(oracle_path(o)), size);

    for (unsigned i = 0; i < 8; i++) {
        uint8_t want[4096], got[4096];
        test_fill_random(want, sizeof(want), i);
        ck_assert_int_eq(oracle_read(o, got, sizeof(got), i * 128 * MiB + 12345), 0);
        ck_assert_msg(memcmp(got, want, sizeof(got)) == 0, "block %u differs after apply", i);
        ck_assert_uint_eq(oracle_sector_author(o, (i * 128 * MiB + 12345) / 512), i + 1);
    }
    ck_assert_int_eq(oracle_read(o, buf, sizeof(buf), 500 * MiB), 0);
    uint64_t sector;
    static const uint8_t zero[4096];
    ck_assert_msg(!oracle_first_mismatch(buf, zero, sizeof(buf), 500 * MiB, &sector),
                  "write after the snapshot survived apply (sector %llu)",
                  (unsigned long long)sector);
    ck_assert_uint_eq(oracle_sector_author(o, 500 * MiB / 512), ORACLE_NO_OP);
    ck_assert_uint_eq(oracle_sector_author(o, 900 * MiB / 512), 10);
    oracle_close(o);
}
END_TEST

/* ---- copy on write: snapshots share the active disk's chunks ------------------------ */

/*
 * The chunks are 64 KiB: these tests write a few bytes inside one chunk, across the
 * boundary of two, and over whole ones, after snapshots that share them.
 */
static void write_after_snapshot_leaves_it(struct oracle *o)
{
    const uint64_t size = oracle_size(o);
    uint8_t *model = calloc(1, size), *buf = malloc(size);
    ck_assert_ptr_nonnull(model);
    ck_assert_ptr_nonnull(buf);
    test_fill_random(model, size, 31);
    ck_assert_int_eq(oracle_write(o, model, size, 0, 1), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "a"), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "b"), 0);

    /* A small write inside a chunk, one across two chunks, a whole chunk, a zero write. */
    ck_assert_int_eq(oracle_write(o, "xyz", 3, 1000, 2), 0);
    test_fill_random(buf, 8 * KiB, 32);
    ck_assert_int_eq(oracle_write(o, buf, 8 * KiB, 64 * KiB - 4 * KiB, 3), 0);
    ck_assert_int_eq(oracle_write(o, buf, 64 * KiB, 128 * KiB, 4), 0);
    ck_assert_int_eq(oracle_zero(o, 64 * KiB + 512, 192 * KiB - 512, 5), 0);

    expect_snapshot(o, "a", model, size, "snapshot a after writes to the active disk");
    expect_snapshot(o, "b", model, size, "snapshot b after writes to the active disk");
    /* The active disk has the writes, and its authors changed, not the snapshots'. */
    memcpy(model + 1000, "xyz", 3);
    memcpy(model + 64 * KiB - 4 * KiB, buf, 8 * KiB);
    memcpy(model + 128 * KiB, buf, 64 * KiB);
    memset(model + 192 * KiB - 512, 0, 64 * KiB + 512);
    expect_disk(o, model, size, "active disk after writes over shared chunks");
    expect_authors(o, 1, 2, 2, "the small write");
    expect_authors(o, 120, 136, 3, "the write across two chunks");
    ck_assert_int_eq(oracle_snapshot_apply(o, "a"), 0);
    expect_authors(o, 0, size / 512, 1, "after applying snapshot a");
    free(model);
    free(buf);
    oracle_close(o);
}

/* Runs a test body on a new file oracle (in directory `dir`), then on a memory one. */
static void in_both_modes(void (*body)(struct oracle *), const char *dir, uint64_t size)
{
    body(make(fresh_dir(dir), size, NULL));
    body(make_mem(size, NULL, 0, &plain));
}

START_TEST(cow_write_after_snapshot_leaves_it)
{
    in_both_modes(write_after_snapshot_leaves_it, "cow-write", 256 * KiB);
}
END_TEST

/*
 * The whole disk written (op 1, random bytes from `seed`, kept in *at_snap), snapshot
 * `id` taken, and the whole disk written again (op 2, kept in *later); the caller frees
 * both buffers.
 */
static void rewritten_after_snapshot(struct oracle *o, const char *id, uint32_t seed,
                                     uint8_t **at_snap, uint8_t **later)
{
    const uint64_t size = oracle_size(o);
    *at_snap = malloc(size);
    *later = malloc(size);
    ck_assert_ptr_nonnull(*at_snap);
    ck_assert_ptr_nonnull(*later);
    test_fill_random(*at_snap, size, seed);
    ck_assert_int_eq(oracle_write(o, *at_snap, size, 0, 1), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, id), 0);
    test_fill_random(*later, size, seed + 1);
    ck_assert_int_eq(oracle_write(o, *later, size, 0, 2), 0);
}

/* After an apply the active disk and the snapshot share chunks; a write splits them. */
static void apply_then_write(struct oracle *o)
{
    const uint64_t size = oracle_size(o);
    uint8_t *at_snap, *later;
    rewritten_after_snapshot(o, "s", 41, &at_snap, &later);

    for (uint32_t round = 0; round < 3; round++) {
        ck_assert_int_eq(oracle_snapshot_apply(o, "s"), 0);
        expect_disk(o, at_snap, size, "right after the apply");
        uint64_t off = 70 * KiB + round * 33 * KiB;
        ck_assert_int_eq(oracle_write(o, later + off, 5000, off, 3 + round), 0);
        expect_snapshot(o, "s", at_snap, size, "snapshot after apply and write");
        uint8_t *model = malloc(size);
        ck_assert_ptr_nonnull(model);
        memcpy(model, at_snap, size);
        memcpy(model + off, later + off, 5000);
        expect_disk(o, model, size, "active disk after apply and write");
        expect_authors(o, off / 512, (off + 5000 - 1) / 512 + 1, 3 + round,
                       "the write after the apply");
        free(model);
    }
    /* A zero write over a whole shared chunk drops it from the active disk only. */
    ck_assert_int_eq(oracle_snapshot_apply(o, "s"), 0);
    ck_assert_int_eq(oracle_zero(o, 64 * KiB, 64 * KiB, 9), 0);
    expect_snapshot(o, "s", at_snap, size, "snapshot after a zero write over a chunk");
    expect_bytes(o, 64 * KiB, 64 * KiB, 0, "the zeroed chunk");
    free(at_snap);
    free(later);
    oracle_close(o);
}

START_TEST(cow_apply_then_write)
{
    in_both_modes(apply_then_write, "cow-apply", 192 * KiB);
}
END_TEST

/* Deleting a snapshot that shares chunks with others and the active disk frees nothing
 * they still use (the sanitizer build would see a use after free). */
static void delete_of_a_shared_chunk(struct oracle *o)
{
    const uint64_t size = oracle_size(o);
    uint8_t *model = malloc(size);
    ck_assert_ptr_nonnull(model);
    test_fill_random(model, size, 51);
    ck_assert_int_eq(oracle_write(o, model, size, 0, 1), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "1"), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "2"), 0);
    ck_assert_int_eq(oracle_snapshot_create(o, "3"), 0);
    ck_assert_int_eq(oracle_snapshot_delete(o, "2"), 0);
    expect_snapshot(o, "1", model, size, "snapshot 1 after deleting 2");
    expect_snapshot(o, "3", model, size, "snapshot 3 after deleting 2");
    expect_disk(o, model, size, "active disk after deleting 2");
    /* The last holders of the chunks go one by one; what stays still reads right. */
    ck_assert_int_eq(oracle_snapshot_delete(o, "1"), 0);
    ck_assert_int_eq(oracle_zero(o, size, 0, 2), 0);
    expect_snapshot(o, "3", model, size, "snapshot 3, the chunks' last holder");
    ck_assert_int_eq(oracle_snapshot_apply(o, "3"), 0);
    ck_assert_int_eq(oracle_snapshot_delete(o, "3"), 0);
    expect_disk(o, model, size, "active disk after deleting every snapshot");
    expect_authors(o, 0, size / 512, 1, "active disk after deleting every snapshot");
    ck_assert_int_eq(oracle_write(o, "q", 1, 0, 3), 0);
    model[0] = 'q';
    expect_disk(o, model, size, "a write to chunks nobody else holds");
    free(model);
    oracle_close(o);
}

START_TEST(cow_delete_of_a_shared_chunk)
{
    in_both_modes(delete_of_a_shared_chunk, "cow-delete", 128 * KiB);
}
END_TEST

/* A snapshot's file holds the snapshot, not what the active disk became since. */
START_TEST(cow_snapshot_file_is_the_snapshot)
{
    const uint64_t size = 128 * KiB;
    const char *dir = fresh_dir("cow-file");
    struct oracle *o = make(dir, size, NULL);
    uint8_t *model, *later;
    rewritten_after_snapshot(o, "old", 61, &model, &later);
    /* Not written until asked for (that is what makes the create cheap)... */
    char path[512];
    snprintf(path, sizeof(path), "%s/snap-old.raw", dir);
    ck_assert_msg(access(path, F_OK) != 0, "%s: expected no file before its path is asked",
                  path);
    /* ... and then it holds the snapshot's bytes, and stays after close. */
    expect_snapshot(o, "old", model, size, "snapshot file after later writes");
    ck_assert_int_eq(oracle_snapshot_create(o, "new"), 0);
    oracle_close(o);
    snprintf(path, sizeof(path), "%s/snap-new.raw", dir);
    size_t len;
    uint8_t *data = test_read_file(path, &len);
    ck_assert_msg(data && len == size && memcmp(data, later, size) == 0,
                  "%s: expected the snapshot's %llu bytes, written at close", path,
                  (unsigned long long)size);
    free(data);
    free(model);
    free(later);
}
END_TEST

/* ---- comparison -------------------------------------------------------------------- */

START_TEST(first_mismatch_by_sector)
{
    uint8_t a[4096], b[4096];
    test_fill_random(a, sizeof(a), 21);
    memcpy(b, a, sizeof(b));
    uint64_t sector = 12345;

    ck_assert(!oracle_first_mismatch(a, b, sizeof(a), 0, &sector));
    ck_assert(!oracle_first_mismatch(a, b, sizeof(a), 777, &sector));
    ck_assert(!oracle_first_mismatch(a, b, 0, 0, &sector));
    ck_assert_uint_eq(sector, 12345);   /* untouched when equal */

    static const struct {
        uint64_t off;
        size_t byte;            /* index into the buffer of the only differing byte */
        uint64_t sector;
    } cases[] = {
        {0, 0, 0},      {0, 511, 0},     {0, 512, 1},     {0, 4095, 7},
        {1024, 0, 2},   {1024, 513, 3},
        {1000, 0, 1},   {1000, 23, 1},   {1000, 24, 2},   {1000, 535, 2},  {1000, 536, 3},
        {511, 0, 0},    {511, 1, 1},
        {(1ull << 40) + 100, 411, (1ull << 40) / 512 + 0},
        {(1ull << 40) + 100, 412, (1ull << 40) / 512 + 1},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(b, a, sizeof(b));
        b[cases[i].byte] ^= 0x10;
        bool differs = oracle_first_mismatch(a, b, sizeof(a), cases[i].off, &sector);
        ck_assert_msg(differs && sector == cases[i].sector,
                      "off %llu, byte %zu: expected sector %llu, got %s %llu",
                      (unsigned long long)cases[i].off, cases[i].byte,
                      (unsigned long long)cases[i].sector, differs ? "sector" : "no mismatch",
                      (unsigned long long)sector);
    }

    /* Two differences: the first one wins; a difference past len is not seen. */
    memcpy(b, a, sizeof(b));
    b[3000] ^= 1;
    b[2000] ^= 1;
    ck_assert(oracle_first_mismatch(a, b, sizeof(a), 0, &sector));
    ck_assert_uint_eq(sector, 3);
    ck_assert(!oracle_first_mismatch(a, b, 2000, 0, &sector));
    ck_assert(oracle_first_mismatch(a, b, 2001, 0, &sector));
    ck_assert_uint_eq(sector, 3);
}
END_TEST

/* ---- memory mode -------------------------------------------------------------------- */

START_TEST(compare_in_place_finds_the_first_sector_that_differs)
{
    const uint64_t size = 256 * KiB;
    struct oracle *o = make_mem(size, NULL, 0, &plain);
    /* Bytes in the second chunk only: the first reads as zeros from no chunk at all. */
    fill_bytes(o, 64 * KiB + 100, 1000, 0x5a, 1);
    ck_assert_int_eq(oracle_snapshot_create(o, "s"), 0);
    fill_bytes(o, 64 * KiB + 100, 1000, 0x77, 2);
    uint8_t *got = calloc(1, size);
    ck_assert_ptr_nonnull(got);
    memset(got + 64 * KiB + 100, 0x77, 1000);
    uint64_t sector = 0;
    ck_assert_int_eq(oracle_compare(o, NULL, got, size, 0, &sector), 0);
    ck_assert_int_eq(oracle_compare(o, "s", got, size, 0, &sector), 1);
    ck_assert_uint_eq(sector, (64 * KiB + 100) / 512);
    got[5000] = 1;
    ck_assert_int_eq(oracle_compare(o, NULL, got, size, 0, &sector), 1);
    ck_assert_uint_eq(sector, 5000 / 512);
    ck_assert_int_eq(oracle_compare(o, NULL, got + 4608, 392, 4608, &sector), 0);
    ck_assert_int_eq(oracle_compare(o, NULL, got + 4608, 393, 4608, &sector), 1);
    ck_assert_uint_eq(sector, 9);
    ck_assert_int_eq(oracle_compare(o, NULL, got, 1, size, &sector), -EINVAL);
    ck_assert_int_eq(oracle_compare(o, "none", got, 1, 0, &sector), -ENOENT);
    free(got);
    oracle_close(o);

    uint8_t initial[1024] = {0};
    o = make_mem(4 * KiB, initial, sizeof(initial), &plain);
    ck_assert_int_eq(oracle_compare(o, NULL, initial, 1024, 0, &sector), 0);
    ck_assert_int_eq(oracle_compare(o, NULL, initial, 1024, 512, &sector), -ENODATA);
    oracle_close(o);
}
END_TEST

START_TEST(memory_mode_keeps_the_same_api)
{
    const uint64_t size = 64 * KiB;
    struct oracle *o = make_mem(size, NULL, 0, &plain);
    ck_assert_ptr_null(oracle_path(o));
    ck_assert_uint_eq(oracle_known(o), size);
    expect_bytes(o, 0, size, 0, "fresh disk in memory");
    fill_bytes(o, 1000, 3000, 0x5a, 1);
    expect_bytes(o, 1000, 3000, 0x5a, "written in memory");
    expect_authors(o, 1, 8, 1, "written in memory");
    ck_assert_uint_eq(oracle_sector_author(o, 0), ORACLE_NO_OP);
    ck_assert_uint_eq(oracle_sector_author(o, 8), ORACLE_NO_OP);

    ck_assert_int_eq(oracle_snapshot_create(o, "1"), 0);
    ck_assert_ptr_null(oracle_snapshot_path(o, "1"));
    ck_assert_uint_eq(oracle_snapshot_size(o, "1"), size);
    ck_assert_int_eq(oracle_zero(o, size, 0, 2), 0);
    expect_bytes(o, 0, size, 0, "zeroed in memory");
    uint8_t b[3000];
    ck_assert_int_eq(oracle_snapshot_read(o, "1", b, sizeof(b), 1000), 0);
    for (unsigned i = 0; i < sizeof(b); i++)
        ck_assert_msg(b[i] == 0x5a, "snapshot byte %u: expected 0x5a, got 0x%02x", 1000 + i,
                      b[i]);
    ck_assert_int_eq(oracle_resize(o, 2 * size, 3), 0);
    ck_assert_int_eq(oracle_snapshot_apply(o, "1"), 0);
    ck_assert_uint_eq(oracle_size(o), size);
    expect_bytes(o, 1000, 3000, 0x5a, "after apply in memory");
    expect_authors(o, 1, 8, 1, "after apply in memory");
    ck_assert_int_eq(oracle_snapshot_delete(o, "1"), 0);
    ck_assert_uint_eq(oracle_snapshot_count(o), 0);
    ck_assert_int_eq(oracle_read(o, b, 1, size), -EINVAL);
    ck_assert_int_eq(oracle_write(o, b, 1, size, 4), -EINVAL);
    oracle_close(o);
}
END_TEST

START_TEST(an_existing_image_is_known_as_far_as_given)
{
    uint8_t initial[8 * KiB];
    test_fill_random(initial, sizeof(initial), 31);
    struct oracle *o = make_mem(1 * GiB, initial, sizeof(initial), &plain);
    ck_assert_uint_eq(oracle_size(o), 1 * GiB);
    ck_assert_uint_eq(oracle_known(o), sizeof(initial));
    uint8_t got[8 * KiB];
    ck_assert_int_eq(oracle_read(o, got, sizeof(got), 0), 0);
    ck_assert_msg(memcmp(got, initial, sizeof(got)) == 0, "the initial bytes do not read back");
    ck_assert_int_eq(oracle_read(o, got, 1, sizeof(initial)), -ENODATA);
    ck_assert_int_eq(oracle_read(o, got, 2, sizeof(initial) - 1), -ENODATA);
    ck_assert_int_eq(oracle_read(o, got, 1, 1 * GiB), -EINVAL);

    /* Operations reaching past the prefix are accepted; they predict only inside it. */
    fill_bytes(o, 8 * KiB - 512, 1024, 0x77, 1);
    expect_bytes(o, 8 * KiB - 512, 512, 0x77, "the known half of a write");
    ck_assert_int_eq(oracle_zero(o, 1 * MiB, 4 * KiB, 2), 0);
    expect_bytes(o, 4 * KiB, 4 * KiB, 0, "the known part of a zero write");
    expect_authors(o, 8, 16, 2, "the known part of a zero write");
    ck_assert_uint_eq(oracle_sector_author(o, 16), ORACLE_NO_OP);

    /* A snapshot keeps the prefix; a shrink into it shortens it; apply brings it back. */
    ck_assert_int_eq(oracle_snapshot_create(o, "s"), 0);
    ck_assert_int_eq(oracle_resize(o, 6 * KiB, 3), 0);
    ck_assert_uint_eq(oracle_known(o), 6 * KiB);
    ck_assert_int_eq(oracle_snapshot_read(o, "s", got, 1, 8 * KiB), -ENODATA);
    ck_assert_int_eq(oracle_snapshot_apply(o, "s"), 0);
    ck_assert_uint_eq(oracle_size(o), 1 * GiB);
    ck_assert_uint_eq(oracle_known(o), 8 * KiB);
    expect_bytes(o, 4 * KiB, 4 * KiB, 0, "after apply");
    oracle_close(o);

    /* A prefix must be whole sectors of the disk, and no bytes means a new image. */
    char err[256];
    struct oracle *bad;
    ck_assert_int_eq(oracle_create_mem(4096, initial, 1000, &plain, &bad, err, sizeof(err)),
                     -EINVAL);
    ck_assert_msg(strstr(err, "1000") != NULL, "expected the length in \"%s\"", err);
    ck_assert_int_eq(oracle_create_mem(4096, initial, 8192, &plain, &bad, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(oracle_create_mem(4096, NULL, 512, &plain, &bad, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_null(bad);
}
END_TEST

START_TEST(facts_are_checked)
{
    char err[256];
    struct oracle *o;
    struct oracle_facts f = plain;
    f.version = 4;
    ck_assert_int_eq(oracle_create_mem(4096, NULL, 0, &f, &o, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "version 4") != NULL, "expected the version in \"%s\"", err);
    static const uint32_t bad_sizes[] = { 0, 256, 3000, 4u << 20 };
    for (unsigned i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        f = plain;
        f.cluster_size = bad_sizes[i];
        ck_assert_int_eq(oracle_create_mem(4096, NULL, 0, &f, &o, err, sizeof(err)), -EINVAL);
        char want[32];
        snprintf(want, sizeof(want), "cluster size %u", bad_sizes[i]);
        ck_assert_msg(strstr(err, want) != NULL, "expected \"%s\" in \"%s\"", want, err);
    }
    ck_assert_int_eq(oracle_create_mem(4096, NULL, 0, NULL, &o, err, sizeof(err)), -EINVAL);
    f.cluster_size = 3000;
    ck_assert_int_eq(oracle_create(fresh_dir("facts"), 4096, NULL, &f, &o, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_null(o);
}
END_TEST

/* ---- the rules ---------------------------------------------------------------------- */

/* A file oracle of `size` bytes over a raw backing file of `backing` bytes of 0xbb. */
static struct oracle *over_backing(const char *name, uint64_t size, uint64_t backing,
                                   uint32_t version, uint32_t cluster_size)
{
    uint8_t *raw = malloc(backing);
    ck_assert_ptr_nonnull(raw);
    memset(raw, 0xbb, backing);
    char path[600];
    snprintf(path, sizeof(path), "%s.raw", test_path(name));
    ck_assert_int_eq(test_write_file(path, raw, backing), 0);
    free(raw);
    const struct oracle_facts f = { .version = version, .cluster_size = cluster_size,
                                    .has_backing = true, .backing_size = backing };
    struct oracle *o = NULL;
    char err[256] = "";
    int ret = oracle_create(fresh_dir(name), size, path, &f, &o, err, sizeof(err));
    ck_assert_msg(ret == 0, "oracle over %s: %d (%s)", path, ret, err);
    return o;
}

START_TEST(zero_writes_read_as_zeros_even_over_a_backing_file)
{
    for (uint32_t version = 2; version <= 3; version++) {
        struct oracle *o = over_backing(version == 2 ? "zero-v2" : "zero-v3", 32 * KiB,
                                        32 * KiB, version, 4 * KiB);
        expect_bytes(o, 0, 32 * KiB, 0xbb, "the backing file's data");
        /* With or without unmap: the guest sees zeros, not the backing file. */
        ck_assert_int_eq(oracle_zero(o, 5000, 3000, 1), 0);
        expect_bytes(o, 0, 3000, 0xbb, "before the zero write");
        expect_bytes(o, 3000, 5000, 0, "the zero write over the backing file");
        expect_bytes(o, 8000, 32 * KiB - 8000, 0xbb, "after the zero write");
        expect_authors(o, 3000 / 512, 8000 / 512 + 1, 1, "the zero write");
        oracle_close(o);
    }
}
END_TEST

START_TEST(discard_on_v2_over_a_backing_file_changes_nothing)
{
    /* The fuzz_image false alarm: v2, 512-byte clusters, a raw backing file. */
    struct oracle *o = over_backing("discard-v2", 64 * KiB, 64 * KiB, 2, 512);
    fill_bytes(o, 0, 331, 0x01, 1);
    fill_bytes(o, 1024, 512, 0x02, 2);
    ck_assert_int_eq(oracle_zero(o, 2048, 0, 3), 0);
    ck_assert_int_eq(oracle_discard(o, 1536, 512, 4), 0);
    expect_bytes(o, 0, 2048, 0, "a discard ignored: the zeros stay, no backing data");
    expect_authors(o, 0, 4, 3, "a discard ignored");
    fill_bytes(o, 0, 64 * KiB, 0x11, 5);
    ck_assert_int_eq(oracle_discard(o, 64 * KiB, 0, 6), 0);
    expect_bytes(o, 0, 64 * KiB, 0x11, "a discard of the whole disk, ignored");
    expect_authors(o, 0, 128, 5, "a discard of the whole disk, ignored");
    oracle_close(o);

    /* Without a backing file, or on v3, the clusters read as zeros (never as the
     * backing file's data). */
    o = over_backing("discard-v3", 64 * KiB, 64 * KiB, 3, 512);
    fill_bytes(o, 0, 4096, 0x11, 1);
    ck_assert_int_eq(oracle_discard(o, 64 * KiB, 0, 2), 0);
    expect_bytes(o, 0, 64 * KiB, 0, "v3 over a backing file: discarded reads as zeros");
    expect_authors(o, 0, 128, 2, "v3 discard");
    oracle_close(o);
    const struct oracle_facts v2 = { .version = 2, .cluster_size = 512 };
    o = make_mem(64 * KiB, NULL, 0, &v2);
    fill_bytes(o, 0, 4096, 0x11, 1);
    ck_assert_int_eq(oracle_discard(o, 4096, 0, 2), 0);
    expect_bytes(o, 0, 4096, 0, "v2 without a backing file: discarded reads as zeros");
    oracle_close(o);
}
END_TEST

START_TEST(discard_takes_whole_clusters_only_with_or_without_subclusters)
{
    /*
     * 64 KiB clusters (with extended L2 entries, 2 KiB subclusters: QEMU 7.2 still
     * discards whole clusters only), and a partial last cluster of 1 KiB.
     */
    const struct oracle_facts f = { .version = 3, .cluster_size = 64 * KiB };
    const uint64_t size = 256 * KiB + 1024;
    struct oracle *o = make_mem(size, NULL, 0, &f);
    fill_bytes(o, 0, size, 0x11, 1);
    ck_assert_int_eq(oracle_discard(o, 2 * KiB, 2 * KiB, 2), 0);
    expect_bytes(o, 0, size, 0x11, "a subcluster discarded: nothing");
    ck_assert_int_eq(oracle_discard(o, 128 * KiB, 1, 3), 0);
    expect_bytes(o, 0, 64 * KiB, 0x11, "the partial cluster at the head");
    expect_bytes(o, 64 * KiB, 64 * KiB, 0, "the whole cluster inside");
    expect_bytes(o, 128 * KiB, size - 128 * KiB, 0x11, "the partial cluster at the tail");
    expect_authors(o, 128, 256, 3, "the whole cluster inside");
    expect_authors(o, 256, 257, 1, "the partial cluster at the tail");
    ck_assert_int_eq(oracle_discard(o, 64 * KiB, 128 * KiB + 100, 4), 0);
    expect_bytes(o, 128 * KiB, size - 128 * KiB, 0x11, "no whole cluster inside");
    /* Reaching the end of the disk, the partial last cluster counts as whole. */
    ck_assert_int_eq(oracle_discard(o, size - 192 * KiB, 192 * KiB, 5), 0);
    expect_bytes(o, 128 * KiB, 64 * KiB, 0x11, "before the discard at the end");
    expect_bytes(o, 192 * KiB, size - 192 * KiB, 0, "the discard at the end");
    expect_authors(o, 384, size / 512, 5, "the discard at the end");
    ck_assert_int_eq(oracle_discard(o, 1, 0, 6), 0);
    expect_bytes(o, 0, 1, 0x11, "a one-byte discard");
    ck_assert_int_eq(oracle_discard(o, 1, size, 6), -EINVAL);
    oracle_close(o);
}
END_TEST

START_TEST(compressed_writes_cover_whole_clusters)
{
    const struct oracle_facts f = { .version = 3, .cluster_size = 4 * KiB };
    const uint64_t size = 16 * KiB + 1024;
    struct oracle *o = make_mem(size, NULL, 0, &f);
    static const struct { uint64_t len, off; bool whole; } cases[] = {
        { 4 * KiB, 0, true },         { 8 * KiB, 4 * KiB, true },
        { 1024, 16 * KiB, true },     { 5 * KiB, 12 * KiB, true },
        { 4 * KiB, 512, false },      { 2 * KiB, 0, false },
        { 0, 0, false },              { 4 * KiB, 16 * KiB, false },
        { 5 * KiB, 4 * KiB, false },
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(oracle_compressed_whole(o, cases[i].len, cases[i].off) == cases[i].whole,
                      "compressed %llu+%llu: expected %s", (unsigned long long)cases[i].off,
                      (unsigned long long)cases[i].len, cases[i].whole ? "whole" : "refused");
    uint8_t buf[8 * KiB];
    memset(buf, 0x66, sizeof(buf));
    ck_assert_int_eq(oracle_write_compressed(o, buf, 2 * KiB, 0, 1), -EINVAL);
    expect_bytes(o, 0, size, 0, "a refused compressed write");
    ck_assert_int_eq(oracle_write_compressed(o, buf, 8 * KiB, 4 * KiB, 2), 0);
    expect_bytes(o, 4 * KiB, 8 * KiB, 0x66, "a compressed write");
    expect_authors(o, 8, 24, 2, "a compressed write");
    oracle_close(o);
}
END_TEST

/* 8 KiB of 0x11 (4 KiB clusters), shrunk to 5 KiB: the last cluster keeps 0x11 past it. */
static struct oracle *shrunk_into_a_cluster(const struct oracle_facts *f)
{
    struct oracle *o = make_mem(8 * KiB, NULL, 0, f);
    fill_bytes(o, 0, 8 * KiB, 0x11, 1);
    ck_assert_int_eq(oracle_resize(o, 5 * KiB, 2), 0);
    return o;
}

START_TEST(a_grow_shows_what_a_shrink_left_in_the_last_cluster)
{
    const struct oracle_facts f = { .version = 3, .cluster_size = 4 * KiB };
    struct oracle *o = shrunk_into_a_cluster(&f);
    ck_assert_int_eq(oracle_resize(o, 12 * KiB, 3), 0);
    expect_bytes(o, 0, 8 * KiB, 0x11, "the old last cluster, whole again");
    expect_bytes(o, 8 * KiB, 4 * KiB, 0, "a new cluster");
    expect_authors(o, 10, 24, 3, "what the grow exposed");
    oracle_close(o);

    /* A grow inside the cluster shows part of it; the rest stays for a later grow. */
    o = shrunk_into_a_cluster(&f);
    ck_assert_int_eq(oracle_resize(o, 6 * KiB, 3), 0);
    expect_bytes(o, 0, 6 * KiB, 0x11, "grown inside the cluster");
    ck_assert_int_eq(oracle_resize(o, 8 * KiB, 4), 0);
    expect_bytes(o, 0, 8 * KiB, 0x11, "grown to the cluster's end");
    oracle_close(o);

    /* A backing file no longer than the disk changes nothing of that. */
    const struct oracle_facts short_backing = { .version = 3, .cluster_size = 4 * KiB,
                                                .has_backing = true,
                                                .backing_size = 5 * KiB };
    o = shrunk_into_a_cluster(&short_backing);
    ck_assert_int_eq(oracle_resize(o, 8 * KiB, 3), 0);
    expect_bytes(o, 0, 8 * KiB, 0x11, "over a backing file no longer than the disk");
    oracle_close(o);
}
END_TEST

START_TEST(a_grow_over_a_longer_backing_file_shows_zeros)
{
    /* QEMU zeroes the whole new area: no backing data and no stale bytes show. */
    for (uint32_t version = 2; version <= 3; version++) {
        struct oracle *o = over_backing(version == 2 ? "grow-v2" : "grow-v3", 8 * KiB,
                                        6 * KiB, version, 4 * KiB);
        fill_bytes(o, 0, 8 * KiB, 0x11, 1);
        ck_assert_int_eq(oracle_resize(o, 5 * KiB, 2), 0);
        ck_assert_int_eq(oracle_resize(o, 8 * KiB, 3), 0);
        expect_bytes(o, 0, 5 * KiB, 0x11, "kept");
        expect_bytes(o, 5 * KiB, 3 * KiB, 0, "grown over a longer backing file");
        expect_authors(o, 10, 16, 3, "grown over a longer backing file");
        oracle_close(o);
    }
    /* A new disk over a longer backing file: the grown part is zeros, not the rest. */
    struct oracle *o = over_backing("grow-fresh", 8 * KiB, 64 * KiB, 3, 64 * KiB);
    ck_assert_int_eq(oracle_resize(o, 32 * KiB, 1), 0);
    expect_bytes(o, 0, 8 * KiB, 0xbb, "the backing file's data");
    expect_bytes(o, 8 * KiB, 24 * KiB, 0, "grown over a longer backing file");
    oracle_close(o);
}
END_TEST

START_TEST(whole_cluster_operations_rewrite_the_last_cluster_past_the_end)
{
    const struct oracle_facts f = { .version = 3, .cluster_size = 4 * KiB };
    uint8_t buf[1024];
    memset(buf, 0x22, sizeof(buf));
    for (int kind = 0; kind < 3; kind++) {
        /* A zero write, a discard, a compressed write of the whole last cluster [4K, 5K). */
        struct oracle *o = shrunk_into_a_cluster(&f);
        if (kind == 0)
            ck_assert_int_eq(oracle_zero(o, 1024, 4 * KiB, 3), 0);
        else if (kind == 1)
            ck_assert_int_eq(oracle_discard(o, 1024, 4 * KiB, 3), 0);
        else
            ck_assert_int_eq(oracle_write_compressed(o, buf, 1024, 4 * KiB, 3), 0);
        ck_assert_int_eq(oracle_resize(o, 8 * KiB, 4), 0);
        expect_bytes(o, 5 * KiB, 3 * KiB, 0, "past the end of a cluster rewritten whole");
        oracle_close(o);
    }
    /* Part of the cluster only: the bytes past the end stay. */
    struct oracle *o = shrunk_into_a_cluster(&f);
    ck_assert_int_eq(oracle_zero(o, 512, 4 * KiB + 512, 3), 0);
    ck_assert_int_eq(oracle_resize(o, 8 * KiB, 4), 0);
    expect_bytes(o, 4 * KiB + 512, 512, 0, "the zero write");
    expect_bytes(o, 5 * KiB, 3 * KiB, 0x11, "past the end of a cluster zeroed in part");
    oracle_close(o);
    /* v2 over a backing file has no zero flag: a zero write writes the bytes only. */
    const struct oracle_facts v2 = { .version = 2, .cluster_size = 4 * KiB,
                                     .has_backing = true, .backing_size = 4 * KiB };
    o = shrunk_into_a_cluster(&v2);
    ck_assert_int_eq(oracle_zero(o, 1024, 4 * KiB, 3), 0);
    ck_assert_int_eq(oracle_resize(o, 8 * KiB, 4), 0);
    expect_bytes(o, 4 * KiB, 1024, 0, "the zero write");
    expect_bytes(o, 5 * KiB, 3 * KiB, 0x11, "v2 over a backing file: past the end");
    oracle_close(o);
}
END_TEST

START_TEST(an_unknown_tail_ends_the_known_prefix)
{
    /* An existing 5 KiB image of 4 KiB clusters may hold anything past its end. */
    uint8_t initial[5 * KiB];
    memset(initial, 0x33, sizeof(initial));
    const struct oracle_facts f = { .version = 3, .cluster_size = 4 * KiB };
    struct oracle *o = make_mem(5 * KiB, initial, sizeof(initial), &f);
    ck_assert_int_eq(oracle_resize(o, 12 * KiB, 1), 0);
    ck_assert_uint_eq(oracle_size(o), 12 * KiB);
    ck_assert_uint_eq(oracle_known(o), 5 * KiB);
    uint8_t b[1];
    ck_assert_int_eq(oracle_read(o, b, 1, 5 * KiB), -ENODATA);
    oracle_close(o);

    /* Over a longer backing file the grow zeroes it all: known again. */
    const struct oracle_facts backed = { .version = 3, .cluster_size = 4 * KiB,
                                         .has_backing = true, .backing_size = 6 * KiB };
    o = make_mem(5 * KiB, initial, sizeof(initial), &backed);
    ck_assert_int_eq(oracle_resize(o, 12 * KiB, 1), 0);
    ck_assert_uint_eq(oracle_known(o), 12 * KiB);
    expect_bytes(o, 5 * KiB, 7 * KiB, 0, "grown over a longer backing file");
    oracle_close(o);

    /* A whole-cluster operation on the last cluster decides its tail: known again. */
    o = make_mem(5 * KiB, initial, sizeof(initial), &f);
    ck_assert_int_eq(oracle_zero(o, 1024, 4 * KiB, 1), 0);
    ck_assert_int_eq(oracle_resize(o, 8 * KiB, 2), 0);
    ck_assert_uint_eq(oracle_known(o), 8 * KiB);
    expect_bytes(o, 4 * KiB, 4 * KiB, 0, "a zeroed last cluster, grown");
    oracle_close(o);

    /* A disk of whole clusters has no tail to be unknown. */
    o = make_mem(4 * KiB, initial, 4 * KiB, &f);
    ck_assert_int_eq(oracle_resize(o, 8 * KiB, 1), 0);
    ck_assert_uint_eq(oracle_known(o), 8 * KiB);
    oracle_close(o);
}
END_TEST

START_TEST(snapshot_import_records_an_existing_snapshot)
{
    uint8_t bytes[8 * KiB];
    memset(bytes, 0x44, sizeof(bytes));
    for (int in_memory = 0; in_memory < 2; in_memory++) {
        struct oracle *o = in_memory ? make_mem(16 * KiB, NULL, 0, &plain)
                                     : make(fresh_dir("import"), 16 * KiB, NULL);
        ck_assert_int_eq(oracle_snapshot_import(o, "old", 32 * KiB, bytes, sizeof(bytes)), 0);
        ck_assert_uint_eq(oracle_snapshot_size(o, "old"), 32 * KiB);
        ck_assert_msg((oracle_snapshot_path(o, "old") == NULL) == (in_memory != 0),
                      "a snapshot file exists only for a file oracle");
        uint8_t got[8 * KiB];
        ck_assert_int_eq(oracle_snapshot_read(o, "old", got, sizeof(got), 0), 0);
        ck_assert_msg(memcmp(got, bytes, sizeof(got)) == 0, "imported bytes differ");
        ck_assert_int_eq(oracle_snapshot_read(o, "old", got, 1, 8 * KiB), -ENODATA);
        ck_assert_int_eq(oracle_snapshot_apply(o, "old"), 0);
        ck_assert_uint_eq(oracle_size(o), 32 * KiB);
        ck_assert_uint_eq(oracle_known(o), 8 * KiB);
        expect_bytes(o, 0, 8 * KiB, 0x44, "an imported snapshot applied");
        expect_authors(o, 0, 16, ORACLE_NO_OP, "an imported snapshot applied");
        ck_assert_int_eq(oracle_snapshot_import(o, "old", 4096, bytes, 512), -EEXIST);
        ck_assert_int_eq(oracle_snapshot_import(o, "x", 1000, bytes, 512), -EINVAL);
        ck_assert_int_eq(oracle_snapshot_import(o, "x", 4096, bytes, 8192), -EINVAL);
        ck_assert_int_eq(oracle_snapshot_import(o, "x", 4096, NULL, 512), -EINVAL);
        ck_assert_int_eq(oracle_snapshot_import(o, "x", 4096, NULL, 0), 0);
        ck_assert_int_eq(oracle_snapshot_read(o, "x", got, 1, 0), -ENODATA);
        oracle_close(o);
    }
}
END_TEST

/* ---- everything together against an in-memory model ------------------------------- */

static uint32_t rng_state;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

struct model {
    uint8_t *data;
    uint32_t *prov;
    uint64_t size;
};

/* Random writes, zeros, reads, resizes and snapshots on o (a fresh 256 KiB disk). */
static void random_ops_match_a_model(struct oracle *o)
{
    const uint64_t max = 1 * MiB;
    struct model m = {calloc(1, max), calloc(max / 512, 4), 256 * KiB};
    struct model snaps[4];
    bool have[4] = {false};
    for (unsigned i = 0; i < 4; i++) {
        snaps[i].data = malloc(max);
        snaps[i].prov = malloc(max / 512 * 4);
        ck_assert_ptr_nonnull(snaps[i].data);
        ck_assert_ptr_nonnull(snaps[i].prov);
    }
    ck_assert_ptr_nonnull(m.data);
    ck_assert_ptr_nonnull(m.prov);
    uint8_t *buf = malloc(64 * KiB);
    ck_assert_ptr_nonnull(buf);
    rng_state = 0x9e3779b9u;

    for (uint32_t op = 1; op <= 6000; op++) {
        uint32_t kind = rnd() % 100;
        char id[8];
        snprintf(id, sizeof(id), "%u", rnd() % 4);
        unsigned si = (unsigned)(id[0] - '0');
        if (kind < 70) {
            uint64_t len = 1 + rnd() % (64 * KiB);
            if (len > m.size)
                len = m.size;
            uint64_t off = m.size > len ? rnd() % (m.size - len + 1) : 0;
            if (kind < 55) {
                test_fill_random(buf, len, op);
                ck_assert_int_eq(oracle_write(o, buf, len, off, op), 0);
                memcpy(m.data + off, buf, len);
            } else {
                ck_assert_int_eq(oracle_zero(o, len, off, op), 0);
                memset(m.data + off, 0, len);
            }
            for (uint64_t s = off / 512; s <= (off + len - 1) / 512; s++)
                m.prov[s] = op;
        } else if (kind < 80) {
            uint64_t len = 1 + rnd() % (64 * KiB);
            if (len > m.size)
                len = m.size;
            uint64_t off = m.size > len ? rnd() % (m.size - len + 1) : 0;
            ck_assert_int_eq(oracle_read(o, buf, len, off), 0);
            uint64_t sector;
            ck_assert_msg(!oracle_first_mismatch(buf, m.data + off, len, off, &sector),
                          "op %u: read %llu+%llu differs at sector %llu", op,
                          (unsigned long long)off, (unsigned long long)len,
                          (unsigned long long)sector);
            /* The in-place comparison agrees with the model, and sees one flipped byte. */
            ck_assert_int_eq(oracle_compare(o, NULL, m.data + off, len, off, &sector), 0);
            uint64_t flip = rnd() % len;
            buf[flip] ^= 0x40;
            int ret = oracle_compare(o, NULL, buf, len, off, &sector);
            ck_assert_msg(ret == 1 && sector == (off + flip) / 512, "op %u: a byte flipped at "
                          "%llu: expected 1 at sector %llu, got %d at %llu", op,
                          (unsigned long long)(off + flip),
                          (unsigned long long)((off + flip) / 512), ret,
                          (unsigned long long)sector);
        } else if (kind < 85) {
            uint64_t ns = (1 + rnd() % (max / 512)) * 512;
            ck_assert_int_eq(oracle_resize(o, ns, op), 0);
            if (ns > m.size) {
                memset(m.data + m.size, 0, ns - m.size);
                for (uint64_t s = m.size / 512; s < ns / 512; s++)
                    m.prov[s] = op;
            }
            m.size = ns;
        } else if (kind < 92) {
            int ret = oracle_snapshot_create(o, id);
            ck_assert_int_eq(ret, have[si] ? -EEXIST : 0);
            if (!have[si]) {
                memcpy(snaps[si].data, m.data, m.size);
                memcpy(snaps[si].prov, m.prov, m.size / 512 * 4);
                snaps[si].size = m.size;
                have[si] = true;
            }
        } else if (kind < 97) {
            ck_assert_int_eq(oracle_snapshot_apply(o, id), have[si] ? 0 : -ENOENT);
            if (have[si]) {
                memcpy(m.data, snaps[si].data, snaps[si].size);
                memcpy(m.prov, snaps[si].prov, snaps[si].size / 512 * 4);
                m.size = snaps[si].size;
            }
        } else {
            ck_assert_int_eq(oracle_snapshot_delete(o, id), have[si] ? 0 : -ENOENT);
            have[si] = false;
        }
        if (op % 500 == 0 || kind >= 80) {
            char when[64];
            snprintf(when, sizeof(when), "after op %u (kind %u)", op, kind);
            /* The files are read back less often: that is slow under the sanitizers. */
            bool files = op % 250 == 0;
            expect_disk_and_file(o, m.data, m.size, files, when);
            for (uint64_t s = 0; s < m.size / 512; s++)
                if (oracle_sector_author(o, s) != m.prov[s])
                    ck_abort_msg("%s: sector %llu: expected author %u, got %u", when,
                                 (unsigned long long)s, m.prov[s],
                                 oracle_sector_author(o, s));
            for (unsigned i = 0; i < 4; i++) {
                char sid[4];
                snprintf(sid, sizeof(sid), "%u", i);
                uint64_t want = have[i] ? snaps[i].size : 0;
                ck_assert_msg(oracle_snapshot_size(o, sid) == want,
                              "%s: snapshot %u: expected size %llu, got %llu", when, i,
                              (unsigned long long)want,
                              (unsigned long long)oracle_snapshot_size(o, sid));
                if (have[i] && files)
                    expect_snapshot(o, sid, snaps[i].data, snaps[i].size, when);
            }
        }
    }
    free(buf);
    for (unsigned i = 0; i < 4; i++) {
        free(snaps[i].data);
        free(snaps[i].prov);
    }
    free(m.data);
    free(m.prov);
    oracle_close(o);
}

START_TEST(random_ops_match_a_memory_model)
{
    random_ops_match_a_model(make(fresh_dir("model"), 256 * KiB, NULL));
}
END_TEST

START_TEST(random_ops_match_a_memory_model_in_memory)
{
    random_ops_match_a_model(make_mem(256 * KiB, NULL, 0, &plain));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("oracle");

    TCase *tc = tcase_create("io");
    tcase_add_test(tc, round_trips_at_unaligned_offsets);
    tcase_add_test(tc, out_of_range_is_refused);
    tcase_add_test(tc, zero_clears_exactly_the_range);
    tcase_add_test(tc, provenance_per_sector);
    suite_add_tcase(s, tc);

    tc = tcase_create("resize");
    tcase_add_test(tc, resize_grow_reads_zeros_authored_by_the_resize);
    tcase_add_test(tc, resize_shrink_drops_the_tail);
    suite_add_tcase(s, tc);

    tc = tcase_create("create");
    tcase_add_test(tc, initial_raw_shorter_than_the_disk);
    tcase_add_test(tc, initial_raw_longer_than_the_disk);
    tcase_add_test(tc, initial_raw_holes_stay_holes);
    tcase_add_test(tc, create_errors_say_why);
    tcase_add_test(tc, files_stay_after_close);
    suite_add_tcase(s, tc);

    tc = tcase_create("snapshot");
    tcase_add_test(tc, snapshot_apply_restores_contents_and_provenance);
    tcase_add_test(tc, snapshot_apply_restores_the_size);
    tcase_add_test(tc, snapshot_delete_removes_it);
    tcase_add_test(tc, snapshot_keeps_lone_bytes);
    tcase_add_test(tc, snapshot_ids_stay_inside_the_directory);
    tcase_add_test(tc, snapshots_of_a_sparse_disk_stay_sparse);
    tcase_add_test(tc, cow_write_after_snapshot_leaves_it);
    tcase_add_test(tc, cow_apply_then_write);
    tcase_add_test(tc, cow_delete_of_a_shared_chunk);
    tcase_add_test(tc, cow_snapshot_file_is_the_snapshot);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("memory");
    tcase_add_test(tc, memory_mode_keeps_the_same_api);
    tcase_add_test(tc, compare_in_place_finds_the_first_sector_that_differs);
    tcase_add_test(tc, an_existing_image_is_known_as_far_as_given);
    tcase_add_test(tc, facts_are_checked);
    suite_add_tcase(s, tc);

    tc = tcase_create("rules");
    tcase_add_test(tc, zero_writes_read_as_zeros_even_over_a_backing_file);
    tcase_add_test(tc, discard_on_v2_over_a_backing_file_changes_nothing);
    tcase_add_test(tc, discard_takes_whole_clusters_only_with_or_without_subclusters);
    tcase_add_test(tc, compressed_writes_cover_whole_clusters);
    tcase_add_test(tc, a_grow_shows_what_a_shrink_left_in_the_last_cluster);
    tcase_add_test(tc, a_grow_over_a_longer_backing_file_shows_zeros);
    tcase_add_test(tc, whole_cluster_operations_rewrite_the_last_cluster_past_the_end);
    tcase_add_test(tc, an_unknown_tail_ends_the_known_prefix);
    tcase_add_test(tc, snapshot_import_records_an_existing_snapshot);
    suite_add_tcase(s, tc);

    tc = tcase_create("compare");
    tcase_add_test(tc, first_mismatch_by_sector);
    suite_add_tcase(s, tc);

    tc = tcase_create("model");
    tcase_add_test(tc, random_ops_match_a_memory_model);
    tcase_add_test(tc, random_ops_match_a_memory_model_in_memory);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
