/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Persistent bitmaps (docs/format.md §8): the directory as qemu-img writes it, listed
 * through qcow2_bitmap_get; the tables QEMU checks on open; and the notice a caller gets
 * before the first change invalidates the bitmaps (qvet does not maintain them).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "support.h"

#define LOCAL_PATH(var, name)                                                               \
    char var[512];                                                                          \
    snprintf(var, sizeof(var), "%s", test_path(name))

#define BITMAPS_EXT 0x23852875u
#define AUTOCLEAR_AT 88u

static void sh(const char *what, int status)
{
    ck_assert_msg(status == 0, "%s failed (exit %d)", what, status);
}

/* An 8 MiB image with 4 KiB clusters, some data, and bitmaps b0 (auto) and b1 (disabled, 64k). */
static void make_bitmap_image(const char *p)
{
    sh("qemu-img create", test_run("qemu-img create -q -f qcow2 -o cluster_size=4k '%s' 8M", p));
    sh("qemu-io", test_run("qemu-io -c 'write -P 1 0 64k' '%s' >/dev/null", p));
    sh("bitmap b0", test_run("qemu-img bitmap --add '%s' b0", p));
    sh("bitmap b1", test_run("qemu-img bitmap --add -g 64k --disable '%s' b1", p));
    sh("qemu-io", test_run("qemu-io -c 'write -P 2 1M 64k' '%s' >/dev/null", p));
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t file_u64(const char *path, uint64_t off)
{
    size_t len;
    uint8_t *d = test_read_file(path, &len);
    ck_assert_msg(d && off + 8 <= len, "cannot read 8 bytes at %" PRIu64 " of %s", off, path);
    uint64_t v = test_get_be64(d + off);
    free(d);
    return v;
}

static void file_put64(const char *path, uint64_t off, uint64_t v)
{
    size_t len;
    uint8_t *d = test_read_file(path, &len);
    ck_assert(d && off + 8 <= len);
    test_put_be64(d + off, v);
    ck_assert_int_eq(test_write_file(path, d, len), 0);
    free(d);
}

/* Byte offset of bitmap directory entry `index` (walking the extensions and entries). */
static uint64_t directory_entry(const char *path, uint32_t index)
{
    size_t len;
    uint8_t *d = test_read_file(path, &len);
    ck_assert(d);
    uint64_t off = be32(d + 100);
    while (be32(d + off) != BITMAPS_EXT) {
        ck_assert_msg(be32(d + off), "no bitmaps extension in %s", path);
        off += 8 + ((be32(d + off + 4) + 7u) & ~7u);
    }
    uint64_t entry = test_get_be64(d + off + 8 + 16);
    for (uint32_t i = 0; i < index; i++)
        entry += (24u + be32(d + entry + 20) + ((uint32_t)d[entry + 18] << 8 | d[entry + 19]) +
                  7u) & ~7u;
    free(d);
    return entry;
}

static struct qcow2_image *open_ok(const char *path, const struct qcow2_open_options *opts)
{
    struct qcow2_image *img;
    struct qcow2_error err;
    int ret = qcow2_open(path, opts, &img, &err);
    ck_assert_msg(ret == 0, "%s: expected it to open, got %d: %s", path, ret, err.message);
    return img;
}

START_TEST(directory_listed_as_qemu_img_wrote_it)
{
    LOCAL_PATH(p, "two.qcow2");
    make_bitmap_image(p);
    struct qcow2_image *img = open_ok(p, NULL);
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    ck_assert_uint_eq(info.bitmap_count, 2);
    struct qcow2_bitmap_info b;
    ck_assert_int_eq(qcow2_bitmap_get(img, 0, &b), 0);
    ck_assert_str_eq(b.name, "b0");
    ck_assert_uint_eq(b.granularity, 4096);         /* the cluster size, qemu-img's default */
    ck_assert_uint_eq(b.flags, QCOW2_BITMAP_AUTO);
    ck_assert_int_eq(qcow2_bitmap_get(img, 1, &b), 0);
    ck_assert_str_eq(b.name, "b1");
    ck_assert_uint_eq(b.granularity, 65536);
    ck_assert_uint_eq(b.flags, 0);
    ck_assert_int_eq(qcow2_bitmap_get(img, 2, &b), -ENOENT);
    qcow2_close(img);

    /* With autoclear bit 0 clear the extension is stale: nothing is listed. */
    file_put64(p, AUTOCLEAR_AT, 0);
    img = open_ok(p, NULL);
    qcow2_get_info(img, &info);
    ck_assert_uint_eq(info.bitmap_count, 0);
    ck_assert_int_eq(qcow2_bitmap_get(img, 0, &b), -ENOENT);
    qcow2_close(img);
}
END_TEST

/*
 * QEMU reads the table of every bitmap that is not in use when it opens an image, and
 * refuses one with a broken entry; a bitmap in use is not read. So does qvet.
 */
START_TEST(table_entries_checked_unless_in_use)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(p, "broken.qcow2");
    make_bitmap_image(orig);
    uint64_t entry = directory_entry(orig, 0);
    uint64_t table = file_u64(orig, entry);
    static const struct {
        uint64_t value;
        const char *rule;
    } bad[] = {
        { 0x1000 | 0x2, "reserved bits" },
        { 0x1200, "not cluster-aligned" },
        { 0x3000 | 0x1, "all-ones flag" },
        { 0x1ull << 60, "reserved bits" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        test_run("cp '%s' '%s'", orig, p);
        file_put64(p, table, bad[i].value);
        struct qcow2_image *img;
        struct qcow2_error err;
        int ret = qcow2_open(p, NULL, &img, &err);
        ck_assert_msg(ret == -EINVAL, "entry 0x%016" PRIx64 ": expected -EINVAL, got %d (%s)",
                      bad[i].value, ret, ret ? err.message : "opened");
        ck_assert_str_eq(err.structure, "bitmap table entry");
        ck_assert_uint_eq(err.offset, table);
        ck_assert_msg(strstr(err.message, bad[i].rule) && strstr(err.message, "\"b0\""),
                      "message \"%s\" lacks \"%s\" or the bitmap's name", err.message,
                      bad[i].rule);
        int qemu = test_run("qemu-img info '%s' >/dev/null 2>&1", p);
        ck_assert_msg(qemu != 0, "entry 0x%016" PRIx64 ": expected qemu-img to refuse it too",
                      bad[i].value);

        /* In use (as after a crash): QEMU does not load the table, and opens the image. */
        uint64_t flags_word = file_u64(p, entry + 8);
        file_put64(p, entry + 8, flags_word | 1);     /* flags: the low word */
        struct qcow2_image *ok = open_ok(p, NULL);
        struct qcow2_bitmap_info b;
        ck_assert_int_eq(qcow2_bitmap_get(ok, 0, &b), 0);
        ck_assert_uint_eq(b.flags, QCOW2_BITMAP_IN_USE | QCOW2_BITMAP_AUTO);
        qcow2_close(ok);
        ck_assert_int_eq(test_run("qemu-img info '%s' >/dev/null 2>&1", p), 0);
    }
    /* A well-formed entry naming a cluster past the end of the file is QEMU's business
     * at check time, not a reason to refuse the open. */
    test_run("cp '%s' '%s'", orig, p);
    file_put64(p, table, 1ull << 40);
    qcow2_close(open_ok(p, NULL));
}
END_TEST

/* ---- the notice before bitmaps are invalidated -------------------------------------- */

struct notices {
    int calls;
    char file[512];
    char names[256];
    uint32_t count;
    uint64_t autoclear_seen;        /* on disk, when the notice came */
};

static void record_notice(void *ctx, const char *file, const char *const *names,
                          uint32_t count)
{
    struct notices *n = ctx;
    n->calls++;
    snprintf(n->file, sizeof(n->file), "%s", file);
    n->names[0] = '\0';
    for (uint32_t i = 0; i < count; i++) {
        strncat(n->names, i ? "," : "", sizeof(n->names) - strlen(n->names) - 1);
        strncat(n->names, names[i], sizeof(n->names) - strlen(n->names) - 1);
    }
    n->count = count;
    n->autoclear_seen = file_u64(file, AUTOCLEAR_AT);
}

static struct qcow2_image *open_noticed(const char *p, struct notices *n)
{
    memset(n, 0, sizeof(*n));
    struct qcow2_open_options opts = {
        .writable = true, .bitmaps_invalidated = record_notice, .notice_ctx = n,
    };
    return open_ok(p, &opts);
}

START_TEST(notice_once_before_the_first_change)
{
    LOCAL_PATH(p, "notice.qcow2");
    make_bitmap_image(p);
    struct notices n;
    struct qcow2_error err;
    char buf[4096];
    memset(buf, 0x5a, sizeof(buf));

    /* Opened writable, only read: the bitmaps stay valid. */
    struct qcow2_image *img = open_noticed(p, &n);
    ck_assert_int_eq(qcow2_pread(img, buf, sizeof(buf), 0, &err), 0);
    qcow2_close(img);
    ck_assert_int_eq(n.calls, 0);
    ck_assert_uint_eq(file_u64(p, AUTOCLEAR_AT), QCOW2_AUTOCLEAR_BITMAPS);

    /* A refused resize changes nothing: no notice either. */
    img = open_noticed(p, &n);
    ck_assert_int_ne(qcow2_resize(img, 1000, &err), 0);
    qcow2_close(img);
    ck_assert_int_eq(n.calls, 0);
    ck_assert_uint_eq(file_u64(p, AUTOCLEAR_AT), QCOW2_AUTOCLEAR_BITMAPS);

    /* The first write: one notice naming both, while the bit is still set; then cleared. */
    img = open_noticed(p, &n);
    ck_assert_int_eq(qcow2_pwrite(img, buf, sizeof(buf), 0, &err), 0);
    ck_assert_int_eq(n.calls, 1);
    ck_assert_uint_eq(n.count, 2);
    ck_assert_str_eq(n.names, "b0,b1");
    ck_assert_str_eq(n.file, p);
    ck_assert_uint_eq(n.autoclear_seen, QCOW2_AUTOCLEAR_BITMAPS);
    ck_assert_uint_eq(file_u64(p, AUTOCLEAR_AT), 0);
    ck_assert_int_eq(qcow2_pwrite(img, buf, sizeof(buf), 8192, &err), 0);
    ck_assert_int_eq(qcow2_discard(img, 0, 65536, &err), 0);
    ck_assert_int_eq(n.calls, 1);
    qcow2_close(img);

    /* QEMU now drops them as inconsistent. */
    ck_assert_int_ne(test_run("qemu-img info '%s' 2>/dev/null | grep -q b0", p), 0);
}
END_TEST

START_TEST(notice_before_snapshot_and_resize_changes)
{
    LOCAL_PATH(p, "ops.qcow2");
    struct notices n;
    struct qcow2_error err;

    make_bitmap_image(p);
    struct qcow2_image *img = open_noticed(p, &n);
    ck_assert_int_eq(qcow2_snapshot_delete(img, "no-such-snapshot", &err), -ENOENT);
    ck_assert_int_eq(n.calls, 0);
    ck_assert_int_eq(qcow2_snapshot_create(img, "s", &err), 0);
    ck_assert_int_eq(n.calls, 1);
    ck_assert_str_eq(n.names, "b0,b1");
    qcow2_close(img);

    make_bitmap_image(p);
    img = open_noticed(p, &n);
    ck_assert_int_eq(qcow2_resize(img, 16u << 20, &err), 0);
    ck_assert_int_eq(n.calls, 1);
    qcow2_close(img);
    ck_assert_uint_eq(file_u64(p, AUTOCLEAR_AT), 0);

    /* Without bitmaps there is nothing to say (unknown autoclear bits are still cleared). */
    sh("qemu-img create", test_run("qemu-img create -q -f qcow2 '%s' 8M", p));
    file_put64(p, AUTOCLEAR_AT, 1ull << 40);
    img = open_noticed(p, &n);
    ck_assert_int_eq(qcow2_pwrite_zeroes(img, 0, 65536, 0, &err), 0);
    qcow2_close(img);
    ck_assert_int_eq(n.calls, 0);
    ck_assert_uint_eq(file_u64(p, AUTOCLEAR_AT), 0);

    /* A repair keeps the bitmaps, as qemu-img check -r does. */
    make_bitmap_image(p);
    memset(&n, 0, sizeof(n));
    struct qcow2_open_options check = {
        .writable = true, .for_check = true,
        .bitmaps_invalidated = record_notice, .notice_ctx = &n,
    };
    img = open_ok(p, &check);
    struct qcow2_check_result r;
    ck_assert_int_eq(qcow2_check(img, QCOW2_REPAIR_ALL, &r, NULL, NULL, &err), 0);
    qcow2_close(img);
    ck_assert_int_eq(n.calls, 0);
    ck_assert_uint_eq(file_u64(p, AUTOCLEAR_AT), QCOW2_AUTOCLEAR_BITMAPS);
}
END_TEST

/* The command prints the notice: one warning line on stderr, naming the bitmaps. */
START_TEST(cli_warns_once_on_stderr)
{
    const char *qvet = test_qvet_binary();
    if (!qvet)
        return;                     /* the command is not built next to this suite */
    LOCAL_PATH(p, "cli.qcow2");
    LOCAL_PATH(out, "cli.out");
    LOCAL_PATH(errs, "cli.err");
    make_bitmap_image(p);
    sh("qvet resize", test_run("'%s' resize '%s' 16M >'%s' 2>'%s'", qvet, p, out, errs));
    char *s = test_read_text(errs);
    ck_assert_msg(s, "cannot read %s", errs);
    char want[1024];
    snprintf(want, sizeof(want),
             "qvet: %s: warning: persistent bitmaps b0, b1 will be invalidated (qvet does not "
             "maintain bitmaps)\n", p);
    ck_assert_str_eq(s, want);
    free(s);
    /* Again, now that they are gone: silence. */
    sh("qvet resize", test_run("'%s' resize '%s' 32M >'%s' 2>'%s'", qvet, p, out, errs));
    s = test_read_text(errs);
    ck_assert_msg(s, "cannot read %s", errs);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bitmap");
    TCase *tc = tcase_create("directory");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, directory_listed_as_qemu_img_wrote_it);
    tcase_add_test(tc, table_entries_checked_unless_in_use);
    suite_add_tcase(s, tc);

    tc = tcase_create("notice");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, notice_once_before_the_first_change);
    tcase_add_test(tc, notice_before_snapshot_and_resize_changes);
    tcase_add_test(tc, cli_warns_once_on_stderr);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
