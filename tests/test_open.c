/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Opening an image (engine/src/qcow2.c) through the public API: a backing chain whose
 * lower levels stay read-only, snapshot selection, what a read-write open does first
 * (dirty repair) and does not do (write before the first change), a read-only open
 * that changes nothing, and the refusals, each one line naming the file, with the
 * image left as it was.
 * Reference images come from qemu-img and qemu-io 7.2.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "support.h"

static void run_ok(const char *what, int status)
{
    ck_assert_msg(status == 0, "%s: expected exit 0, got %d", what, status);
}

static struct qcow2_image *open_with(const char *path, const struct qcow2_open_options *o)
{
    struct qcow2_image *img;
    struct qcow2_error err;
    int ret = qcow2_open(path, o, &img, &err);
    ck_assert_msg(ret == 0, "open %s: expected success, got %d: %s", path, ret, err.message);
    return img;
}

/* Guest bytes [off, off+len) all equal `byte`. */
static void expect_bytes(struct qcow2_image *img, uint64_t off, size_t len, int byte,
                         const char *what)
{
    uint8_t *buf = malloc(len);
    struct qcow2_error err;
    int ret = qcow2_pread(img, buf, len, off, &err);
    ck_assert_msg(ret == 0, "%s: read %" PRIu64 "+%zu: expected success, got %d: %s", what, off,
                  len, ret, err.message);
    size_t i = 0;
    while (i < len && buf[i] == byte)
        i++;
    ck_assert_msg(i == len, "%s: guest byte %" PRIu64 ": expected 0x%02x, got 0x%02x", what,
                  off + i, byte, i < len ? buf[i] : byte);
    free(buf);
}

static uint64_t header_u64(const char *path, uint64_t off)
{
    struct qimg q = qimg_load(path);
    uint64_t v = qimg_get64(&q, off);
    free(q.d);
    return v;
}

#define INCOMPATIBLE 72u
#define AUTOCLEAR 88u

/* ---- the backing chain ----------------------------------------------------------- */

/*
 * top (qcow2) -> mid (qcow2) -> base (raw). A read-write open of the top writes only
 * the top: the backing files keep every byte, and each level reports what it is.
 */
START_TEST(a_writable_top_leaves_its_backing_files_alone)
{
    const char *base = test_path("chain-base.raw"), *mid = test_path("chain-mid.qcow2"),
               *top = test_path("chain-top.qcow2");
    run_ok("make the chain",
           test_run("qemu-img create -q -f raw '%s' 1M && "
                    "qemu-io -f raw -c 'write -q -P 1 0 1M' '%s' && "
                    "qemu-img create -q -f qcow2 -b '%s' -F raw '%s' && "
                    "qemu-io -c 'write -q -P 2 256k 256k' '%s' && "
                    "qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'",
                    base, base, base, mid, mid, mid, top));
    struct test_file_copy base_then = test_file_remember(base), mid_then = test_file_remember(mid);
    struct qcow2_open_options rw = { .writable = true };
    struct qcow2_image *img = open_with(top, &rw);
    struct qcow2_image *m = qcow2_backing_image(img);
    ck_assert_msg(m != NULL, "top: expected a backing image, got none");
    struct qcow2_image *b = qcow2_backing_image(m);
    ck_assert_msg(b != NULL && qcow2_backing_image(b) == NULL,
                  "mid: expected one more level (the raw base) and no further");
    struct qcow2_info info;
    ck_assert_int_eq(qcow2_get_info(img, &info), 0);
    ck_assert_msg(info.backing_path && !strcmp(info.backing_path, mid) && info.backing_format &&
                      !strcmp(info.backing_format, "qcow2"),
                  "top: expected backing %s (qcow2), got %s (%s)", mid,
                  info.backing_path ? info.backing_path : "none",
                  info.backing_format ? info.backing_format : "no format");
    ck_assert_int_eq(qcow2_get_info(b, &info), 0);
    ck_assert_msg(info.format == QCOW2_FORMAT_RAW && info.virtual_size == 1u << 20,
                  "base: expected a raw 1 MiB layer, got format %d size %" PRIu64, info.format,
                  info.virtual_size);
    expect_bytes(img, 0, 256u << 10, 1, "through to the base");
    expect_bytes(img, 256u << 10, 256u << 10, 2, "through to mid");
    uint8_t buf[65536];
    memset(buf, 3, sizeof(buf));
    struct qcow2_error err;
    int ret = qcow2_pwrite(img, buf, sizeof(buf), 300u << 10, &err);
    ck_assert_msg(ret == 0, "write to the top: expected success, got %d: %s", ret, err.message);
    /* A write into a backing level through the public API is refused: it is read-only. */
    ret = qcow2_pwrite(m, buf, 512, 0, &err);
    ck_assert_msg(ret != 0, "a write into the backing image: expected a refusal, got success");
    qcow2_close(img);
    test_file_expect_unchanged(base, &base_then, "after writing the top");
    test_file_expect_unchanged(mid, &mid_then, "after writing the top");
    run_ok("qemu-img check of the top", test_run("qemu-img check -q '%s'", top));
    ck_assert_msg(test_run("qemu-io -r -c 'read -P 3 300k 64k' '%s' | "
                           "grep -q 'Pattern verification failed'", top) != 0,
                  "qemu-io: expected to read the top's new bytes 0x03 at 300k, it did not");
}
END_TEST

START_TEST(no_backing_reads_unallocated_clusters_as_zeros)
{
    const char *base = test_path("nb-base.qcow2"), *top = test_path("nb-top.qcow2");
    run_ok("make the pair",
           test_run("qemu-img create -q -f qcow2 '%s' 1M && "
                    "qemu-io -c 'write -q -P 7 0 1M' '%s' && "
                    "qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s' && "
                    "qemu-io -c 'write -q -P 8 64k 64k' '%s'", base, base, base, top, top));
    struct qcow2_open_options alone = { .no_backing = true };
    struct qcow2_image *img = open_with(top, &alone);
    ck_assert_msg(qcow2_backing_image(img) == NULL,
                  "no_backing: expected no backing image to be opened");
    expect_bytes(img, 0, 65536, 0, "unallocated, no backing");
    expect_bytes(img, 65536, 65536, 8, "the overlay's own data");
    qcow2_close(img);
}
END_TEST

/* ---- snapshot selection ------------------------------------------------------------ */

/*
 * Opened at a snapshot, the image reads what `qemu-img convert -l` writes for it: the
 * snapshot's data at the image's current size (docs/format.md §13.14).
 */
START_TEST(a_snapshot_reads_as_qemu_img_convert_l_writes_it)
{
    const char *path = test_path("snap.qcow2"), *want = test_path("snap-want.raw");
    run_ok("make the image",
           test_run("qemu-img create -q -f qcow2 '%s' 1M && "
                    "qemu-io -c 'write -q -P 1 0 512k' '%s' && "
                    "qemu-img snapshot -c one '%s' && "
                    "qemu-io -c 'write -q -P 2 0 1M' '%s' && qemu-img resize -q '%s' 2M && "
                    "qemu-img convert -l snapshot.name=one -O raw '%s' '%s'",
                    path, path, path, path, path, path, want));
    size_t len;
    uint8_t *expected = test_read_file(want, &len);
    ck_assert_msg(expected != NULL, "cannot read %s", want);
    static const struct qcow2_open_options by[] = {
        { .snapshot = "1" }, { .snapshot = "one" }, { .snapshot_name = "one" },
        { .snapshot_id = "1", .snapshot_name = "one" },
    };
    for (size_t k = 0; k < sizeof(by) / sizeof(by[0]); k++) {
        struct qcow2_image *img = open_with(path, &by[k]);
        ck_assert_msg(qcow2_virtual_size(img) == len,
                      "selection %zu: expected the current size %zu, got %" PRIu64, k, len,
                      qcow2_virtual_size(img));
        uint8_t *got = malloc(len);
        struct qcow2_error err;
        ck_assert_int_eq(qcow2_pread(img, got, len, 0, &err), 0);
        size_t i = 0;
        while (i < len && got[i] == expected[i])
            i++;
        ck_assert_msg(i == len, "selection %zu: guest byte %zu: expected 0x%02x (qemu-img "
                      "convert -l), got 0x%02x", k, i, expected[i], got[i]);
        free(got);
        qcow2_close(img);
    }
    free(expected);
}
END_TEST

/* ---- what a read-write open does first ------------------------------------------------ */

/* qemu-io aborts after writing under lazy refcounts: the dirty bit stays set on disk. */
static void make_dirty(const char *path)
{
    run_ok("make the image",
           test_run("qemu-img create -q -f qcow2 -o lazy_refcounts=on '%s' 1M && "
                    "qemu-io -c 'write -q -P 5 0 64k' '%s'", path, path));
    test_run("qemu-io -c 'write -q -P 6 128k 128k' -c abort '%s' >/dev/null 2>&1", path);
    ck_assert_msg(header_u64(path, INCOMPATIBLE) & QCOW2_INCOMPAT_DIRTY,
                  "expected qemu-io's abort to leave the dirty bit set");
    ck_assert_msg(test_run("qemu-img check -q '%s' >/dev/null 2>&1", path) != 0,
                  "expected qemu-img check to find the stale refcounts of the dirty image");
}

START_TEST(a_read_write_open_repairs_a_dirty_image_first)
{
    const char *path = test_path("dirty-rw.qcow2");
    make_dirty(path);
    struct qcow2_open_options rw = { .writable = true };
    struct qcow2_image *img = open_with(path, &rw);
    ck_assert_msg(!(header_u64(path, INCOMPATIBLE) & QCOW2_INCOMPAT_DIRTY),
                  "after the read-write open: expected the dirty bit cleared on disk, it is "
                  "still set");
    run_ok("qemu-img check right after the open (refcounts rebuilt)",
           test_run("qemu-img check -U -q '%s'", path));
    expect_bytes(img, 0, 65536, 5, "data from before the crash");
    expect_bytes(img, 128u << 10, 128u << 10, 6, "data written just before the crash");
    qcow2_close(img);
    run_ok("qemu-img check after close", test_run("qemu-img check -q '%s'", path));
}
END_TEST

START_TEST(a_read_only_open_of_a_dirty_image_reads_and_changes_nothing)
{
    const char *path = test_path("dirty-ro.qcow2");
    make_dirty(path);
    struct test_file_copy then = test_file_remember(path);
    struct qcow2_image *img = open_with(path, NULL);
    expect_bytes(img, 0, 65536, 5, "data from before the crash");
    expect_bytes(img, 128u << 10, 128u << 10, 6, "data written just before the crash");
    qcow2_close(img);
    test_file_expect_unchanged(path, &then, "a read-only open of a dirty image");
}
END_TEST

/*
 * qvet keeps no bitmaps, so it clears the autoclear bits (docs/format.md §8), but only
 * right before its first change: neither a read-only open nor a read-write open that
 * changes nothing writes a byte; the first write clears them (test_bitmap holds the
 * notice that comes with it).
 */
START_TEST(a_read_write_open_writes_nothing_before_the_first_change)
{
    const char *path = test_path("bitmap.qcow2");
    run_ok("make the image",
           test_run("qemu-img create -q -f qcow2 '%s' 1M && qemu-img bitmap --add '%s' b0",
                    path, path));
    ck_assert_msg(header_u64(path, AUTOCLEAR) == QCOW2_AUTOCLEAR_BITMAPS,
                  "qemu-img bitmap --add: expected autoclear 0x1, got 0x%" PRIx64,
                  header_u64(path, AUTOCLEAR));
    struct test_file_copy then = test_file_remember(path);
    qcow2_close(open_with(path, NULL));
    test_file_expect_unchanged(path, &then, "a read-only open");
    then = test_file_remember(path);
    struct qcow2_open_options rw = { .writable = true };
    qcow2_close(open_with(path, &rw));
    test_file_expect_unchanged(path, &then, "a read-write open without a change");
    struct qcow2_image *img = open_with(path, &rw);
    uint8_t byte = 0x5a;
    struct qcow2_error err;
    int ret = qcow2_pwrite(img, &byte, 1, 0, &err);
    ck_assert_msg(ret == 0, "write: expected success, got %d: %s", ret, err.message);
    qcow2_close(img);
    ck_assert_msg(header_u64(path, AUTOCLEAR) == 0,
                  "after the first write: expected autoclear 0, got 0x%" PRIx64,
                  header_u64(path, AUTOCLEAR));
}
END_TEST

/* ---- refusals ---------------------------------------------------------------------- */

static void expect_open_refused(const char *what, const char *path,
                                const struct qcow2_open_options *o, int want, const char *says)
{
    struct test_file_copy then = test_file_remember(path);
    struct qcow2_image *img = NULL;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = qcow2_open(path, o, &img, &err);
    ck_assert_msg(ret == want && img == NULL, "%s: expected %d and no image, got %d (%s)", what,
                  want, ret, ret ? err.message : "opened");
    ck_assert_msg(!strchr(err.message, '\n') && strstr(err.message, says) &&
                      !strcmp(err.file, path),
                  "%s: expected one line about %s saying \"%s\", got \"%s\" about %s", what,
                  path, says, err.message, err.file);
    test_file_expect_unchanged(path, &then, what);
}

static void patch_u64(const char *from, const char *to, uint64_t off, uint64_t value)
{
    struct qimg q = qimg_load(from);
    qimg_put64(&q, off, value);
    qimg_save(&q, to);
}

START_TEST(refusals_are_one_line_and_change_nothing)
{
    const char *good = test_path("good.qcow2"), *raw = test_path("plain.raw"),
               *bad = test_path("bad.qcow2"), *corrupt = test_path("corrupt.qcow2"),
               *unknown = test_path("unknown-bit.qcow2");
    run_ok("make the images",
           test_run("qemu-img create -q -f qcow2 '%s' 1M && qemu-img snapshot -c s '%s' && "
                    "qemu-img create -q -f raw '%s' 1M && printf 'QFI\\373' >'%s' && "
                    "truncate -s 64k '%s'", good, good, raw, bad, bad));
    patch_u64(good, corrupt, INCOMPATIBLE, QCOW2_INCOMPAT_CORRUPT);
    patch_u64(good, unknown, INCOMPATIBLE, 1ull << 20);

    const struct qcow2_open_options rw = { .writable = true },
                                    rw_shared = { .writable = true, .force_share = true },
                                    rw_snapshot = { .writable = true, .snapshot = "s" },
                                    missing = { .snapshot = "none" },
                                    raw_rw = { .format = QCOW2_FORMAT_RAW, .writable = true },
                                    raw_snapshot = { .format = QCOW2_FORMAT_RAW,
                                                     .snapshot = "s" };
    expect_open_refused("force_share with writable", good, &rw_shared, -EINVAL, "read-only");
    expect_open_refused("a snapshot opened writable", good, &rw_snapshot, -EINVAL,
                        "read-only");
    expect_open_refused("a snapshot that is not there", good, &missing, -ENOENT, "\"none\"");
    expect_open_refused("a raw image opened writable", raw, &raw_rw, -ENOTSUP, "raw");
    expect_open_refused("a raw image asked for a snapshot", raw, &raw_snapshot, -EINVAL,
                        "no snapshots");
    expect_open_refused("the corrupt bit, read-write", corrupt, &rw, -EACCES, "corrupt bit");
    expect_open_refused("an unknown incompatible bit", unknown, NULL, -EINVAL, "bit 20");
    expect_open_refused("a header of version 0", bad, NULL, -EINVAL, "version 0");

    /* The corrupt bit still allows reading. */
    struct qcow2_image *img = open_with(corrupt, NULL);
    expect_bytes(img, 0, 4096, 0, "a corrupt-flagged image, read-only");
    qcow2_close(img);

    struct qcow2_error err;
    const char *gone = test_path("does-not-exist.qcow2");
    int ret = qcow2_open(gone, NULL, &img, &err);
    ck_assert_msg(ret == -ENOENT && !strcmp(err.file, gone) && !strchr(err.message, '\n'),
                  "a missing file: expected -ENOENT in one line naming it, got %d: %s (%s)",
                  ret, err.message, err.file);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("open");
    TCase *chain = tcase_create("chain");
    tcase_set_timeout(chain, 120);
    tcase_add_test(chain, a_writable_top_leaves_its_backing_files_alone);
    tcase_add_test(chain, no_backing_reads_unallocated_clusters_as_zeros);
    tcase_add_test(chain, a_snapshot_reads_as_qemu_img_convert_l_writes_it);
    suite_add_tcase(s, chain);
    TCase *first = tcase_create("read-write");
    tcase_set_timeout(first, 120);
    tcase_add_test(first, a_read_write_open_repairs_a_dirty_image_first);
    tcase_add_test(first, a_read_only_open_of_a_dirty_image_reads_and_changes_nothing);
    tcase_add_test(first, a_read_write_open_writes_nothing_before_the_first_change);
    suite_add_tcase(s, first);
    TCase *refusals = tcase_create("refusals");
    tcase_add_test(refusals, refusals_are_one_line_and_change_nothing);
    suite_add_tcase(s, refusals);
    return test_run_suite(s);
}
