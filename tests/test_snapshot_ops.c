/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Internal snapshot operations (engine/src/snapshot_ops.c) through the public API:
 * create, apply and delete on images made by qemu-img/qemu-io, judged by what QEMU 7.2
 * reads back (qemu-img check, compare, snapshot -l) and by the refcounts and COPIED flags
 * read straight from the file (docs/format.md §5, §6). Every refusal must leave the
 * image byte for byte as it was and say why in one line.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "support.h"

#define COPIED (1ull << 63)
#define HOST_OFFSET_MASK 0x00FFFFFFFFFFFE00ull
#define CS 65536u

static void run_ok(const char *what, int status)
{
    ck_assert_msg(status == 0, "%s: expected exit 0, got %d", what, status);
}

static struct qcow2_image *open_image(const char *path, bool writable)
{
    struct qcow2_open_options o = { .writable = writable };
    struct qcow2_image *img;
    struct qcow2_error err;
    int ret = qcow2_open(path, &o, &img, &err);
    ck_assert_msg(ret == 0, "open %s: expected success, got %d: %s", path, ret, err.message);
    return img;
}

/* A 1 MiB image (64 KiB clusters) with `clusters` clusters of data, cluster k = byte k+1. */
static void make_image(const char *path, const char *opts, unsigned clusters)
{
    run_ok("qemu-img create",
           test_run("qemu-img create -q -f qcow2 -o '%s' '%s' 1M", opts, path));
    for (unsigned k = 0; k < clusters; k++)
        run_ok("qemu-io write", test_run("qemu-io -c 'write -q -P %u %u %u' '%s'", k + 1,
                                         k * CS, CS, path));
}

static void expect_qemu_check_clean(const char *path, const char *when)
{
    int rc = test_run("qemu-img check -q '%s' >/dev/null 2>&1", path);
    if (rc)
        test_run("qemu-img check '%s' | head -20 >&2", path);
    ck_assert_msg(rc == 0, "%s: qemu-img check %s: expected exit 0 (clean), got %d", when, path,
                  rc);
}

/* QEMU reads guest bytes [off, off+len) of the active state as all `byte`. */
static void expect_qemu_reads(const char *path, uint64_t off, uint64_t len, unsigned byte,
                              const char *when)
{
    int rc = test_run("qemu-io -r -c 'read -q -P %u %" PRIu64 " %" PRIu64 "' '%s' | "
                      "grep -q 'Pattern verification failed'", byte, off, len, path);
    ck_assert_msg(rc != 0, "%s: expected qemu-io to read 0x%02x at %" PRIu64 "+%" PRIu64
                  ", it read something else", when, byte, off, len);
}

static void expect_ok(int ret, const struct qcow2_error *err, const char *what)
{
    ck_assert_msg(ret == 0, "%s: expected success, got %d: %s", what, ret, err->message);
}

static void expect_snapshot(struct qcow2_image *img, uint32_t i, const char *id,
                            const char *name)
{
    struct qcow2_snapshot_info info;
    ck_assert_msg(qcow2_snapshot_get(img, i, &info) == 0, "no snapshot at index %u", i);
    ck_assert_msg(!strcmp(info.id, id) && !strcmp(info.name, name),
                  "snapshot %u: expected id \"%s\" name \"%s\", got id \"%s\" name \"%s\"", i,
                  id, name, info.id, info.name);
}

/* ---- refcounts and COPIED, read from the file ------------------------------------ */

/* The active L1 entry and the L2 entry word of guest cluster `k` (1 MiB: one L2 table). */
static uint64_t l1_entry(struct qimg *q)
{
    return qimg_get64(q, q->l1);
}

static uint64_t l2_word(struct qimg *q, unsigned k)
{
    return qimg_get64(q, qimg_l2_entry(q, 0, k));
}

/*
 * Guest clusters [0, clusters) must have data clusters with refcount `want` and COPIED
 * exactly when that is 1, and so must the L2 table.
 */
static void expect_sharing(const char *path, unsigned clusters, uint64_t want, const char *when)
{
    struct qimg q = qimg_load(path);
    uint64_t l1 = l1_entry(&q), l2 = l1 & HOST_OFFSET_MASK;
    uint64_t rc = qimg_refcount(&q, l2 / q.cs);
    ck_assert_msg(rc == want && !!(l1 & COPIED) == (want == 1),
                  "%s: L2 table: expected refcount %" PRIu64 " and COPIED %d, got refcount %"
                  PRIu64 " and COPIED %d", when, want, want == 1, rc, !!(l1 & COPIED));
    for (unsigned k = 0; k < clusters; k++) {
        uint64_t w = l2_word(&q, k), host = w & HOST_OFFSET_MASK;
        ck_assert_msg(host, "%s: guest cluster %u: expected a data cluster, got none", when, k);
        rc = qimg_refcount(&q, host / q.cs);
        ck_assert_msg(rc == want && !!(w & COPIED) == (want == 1),
                      "%s: guest cluster %u: expected refcount %" PRIu64 " and COPIED %d, got "
                      "refcount %" PRIu64 " and COPIED %d", when, k, want, want == 1, rc,
                      !!(w & COPIED));
    }
    free(q.d);
}

/* ---- create, apply, delete -------------------------------------------------------- */

START_TEST(create_shares_every_cluster_and_clears_copied)
{
    const char *path = test_path("create.qcow2");
    make_image(path, "cluster_size=64k", 3);
    expect_sharing(path, 3, 1, "before the snapshot");
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_ok(qcow2_snapshot_create(img, "first", &err), &err, "create \"first\"");
    ck_assert_uint_eq(qcow2_snapshot_count(img), 1);
    expect_snapshot(img, 0, "1", "first");
    struct qcow2_snapshot_info info;
    ck_assert_int_eq(qcow2_snapshot_get(img, 0, &info), 0);
    ck_assert_msg(info.disk_size == 1u << 20 && info.l1_size == 1,
                  "snapshot: expected disk size 1048576 and 1 L1 entry, got %" PRIu64 " and %"
                  PRIu32, info.disk_size, info.l1_size);
    qcow2_close(img);
    expect_sharing(path, 3, 2, "after create");
    expect_qemu_check_clean(path, "after create");
    run_ok("qemu-img snapshot -l lists it",
           test_run("qemu-img snapshot -l '%s' | grep -Eq '^1 +first '", path));
}
END_TEST

/* A write after create copies the shared L2 table and data; the copies get COPIED. */
START_TEST(a_write_after_create_unshares_only_what_it_touches)
{
    const char *path = test_path("unshare.qcow2");
    make_image(path, "cluster_size=64k", 3);
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_ok(qcow2_snapshot_create(img, "s", &err), &err, "create");
    uint8_t buf[4096];
    memset(buf, 0x77, sizeof(buf));
    expect_ok(qcow2_pwrite(img, buf, sizeof(buf), CS, &err), &err, "write into cluster 1");
    qcow2_close(img);
    struct qimg q = qimg_load(path);
    uint64_t l1 = l1_entry(&q);
    ck_assert_msg(l1 & COPIED, "the active L2 table: expected a private copy with COPIED, got "
                  "entry 0x%" PRIx64, l1);
    static const struct { unsigned k; uint64_t refcount; } want[] = {
        { 0, 2 }, { 1, 1 }, { 2, 2 },
    };
    for (size_t i = 0; i < 3; i++) {
        uint64_t w = l2_word(&q, want[i].k);
        uint64_t rc = qimg_refcount(&q, (w & HOST_OFFSET_MASK) / q.cs);
        ck_assert_msg(rc == want[i].refcount && !!(w & COPIED) == (rc == 1),
                      "guest cluster %u: expected refcount %" PRIu64 " and COPIED %d, got %"
                      PRIu64 " and %d", want[i].k, want[i].refcount, want[i].refcount == 1, rc,
                      !!(w & COPIED));
    }
    free(q.d);
    expect_qemu_check_clean(path, "after the write");
    expect_qemu_reads(path, CS, 4096, 0x77, "the new bytes");
    expect_qemu_reads(path, CS + 4096, CS - 4096, 2, "the rest of the copied cluster");
    const char *raw = test_path("unshare-s.raw");
    run_ok("qemu-img convert -l s", test_run("qemu-img convert -l s -O raw '%s' '%s'", path, raw));
    size_t len;
    uint8_t *snap = test_read_file(raw, &len);
    ck_assert_msg(snap && len == 1u << 20, "snapshot s as raw: expected 1048576 bytes, got %zu",
                  snap ? len : 0);
    size_t i = CS;
    while (i < 2 * CS && snap[i] == 2)
        i++;
    ck_assert_msg(i == 2 * CS, "snapshot s, guest byte %zu: expected 0x02 (before the write), "
                  "got 0x%02x", i, snap[i]);
    free(snap);
}
END_TEST

START_TEST(apply_restores_contents_and_size_and_frees_the_old_state)
{
    const char *path = test_path("apply.qcow2"), *then = test_path("apply-then.qcow2");
    make_image(path, "cluster_size=64k", 2);
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_ok(qcow2_snapshot_create(img, "then", &err), &err, "create");
    qcow2_close(img);
    run_ok("copy", test_run("cp '%s' '%s'", path, then));
    /* Change everything after the snapshot: overwrite, add, grow. */
    img = open_image(path, true);
    uint8_t *buf = malloc(2 * CS);
    memset(buf, 0x99, 2 * CS);
    expect_ok(qcow2_pwrite(img, buf, 2 * CS, CS, &err), &err, "overwrite");
    expect_ok(qcow2_resize(img, 2u << 20, &err), &err, "grow to 2 MiB");
    expect_ok(qcow2_pwrite(img, buf, CS, 1u << 20, &err), &err, "write past the old end");
    free(buf);
    expect_ok(qcow2_snapshot_apply(img, "then", &err), &err, "apply");
    ck_assert_msg(qcow2_virtual_size(img) == 1u << 20,
                  "after apply: expected the snapshot's size 1048576, got %" PRIu64,
                  qcow2_virtual_size(img));
    qcow2_close(img);
    expect_qemu_check_clean(path, "after apply");
    run_ok("qemu-img compare with the copy taken at the snapshot",
           test_run("qemu-img compare -q '%s' '%s'", then, path));
    /* The snapshot still shares the two clusters with the restored state. */
    expect_sharing(path, 2, 2, "after apply");
}
END_TEST

START_TEST(delete_frees_what_only_the_snapshot_held)
{
    const char *path = test_path("delete.qcow2");
    make_image(path, "cluster_size=64k", 2);
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_ok(qcow2_snapshot_create(img, "old", &err), &err, "create");
    qcow2_close(img);
    struct qimg q = qimg_load(path);
    uint64_t snapshot_only = l2_word(&q, 0) & HOST_OFFSET_MASK;
    free(q.d);
    img = open_image(path, true);
    uint8_t buf[CS];
    memset(buf, 0x42, sizeof(buf));
    expect_ok(qcow2_pwrite(img, buf, CS, 0, &err), &err, "overwrite cluster 0");
    expect_ok(qcow2_snapshot_delete(img, "old", &err), &err, "delete");
    ck_assert_uint_eq(qcow2_snapshot_count(img), 0);
    qcow2_close(img);
    q = qimg_load(path);
    uint64_t rc = qimg_refcount(&q, snapshot_only / q.cs);
    ck_assert_msg(rc == 0, "the cluster only the snapshot held (0x%" PRIx64 "): expected "
                  "refcount 0, got %" PRIu64, snapshot_only, rc);
    ck_assert_msg(test_get_be32(q.d + 60) == 0, "nb_snapshots: expected 0, got %" PRIu32,
                  test_get_be32(q.d + 60));
    free(q.d);
    expect_sharing(path, 2, 1, "after delete");
    expect_qemu_check_clean(path, "after delete");
    expect_qemu_reads(path, 0, CS, 0x42, "cluster 0");
    expect_qemu_reads(path, CS, CS, 2, "cluster 1");
}
END_TEST

/*
 * Ids: the largest numeric id plus one; names may repeat. The same steps through
 * qemu-img on a twin must give the same table.
 */
START_TEST(ids_and_names_as_qemu_img_gives_them)
{
    const char *ours = test_path("ids-qvet.qcow2"), *theirs = test_path("ids-qemu.qcow2");
    make_image(ours, "cluster_size=64k", 1);
    make_image(theirs, "cluster_size=64k", 1);
    run_ok("qemu-img snapshot steps",
           test_run("qemu-img snapshot -c a '%s' && qemu-img snapshot -c b '%s' && "
                    "qemu-img snapshot -d a '%s' && qemu-img snapshot -c a '%s' && "
                    "qemu-img snapshot -c b '%s'", theirs, theirs, theirs, theirs, theirs));
    struct qcow2_image *img = open_image(ours, true);
    struct qcow2_error err;
    expect_ok(qcow2_snapshot_create(img, "a", &err), &err, "create a");
    expect_ok(qcow2_snapshot_create(img, "b", &err), &err, "create b");
    expect_ok(qcow2_snapshot_delete_at(img, 0, &err), &err, "delete a");
    expect_ok(qcow2_snapshot_create(img, "a", &err), &err, "create a again");
    expect_ok(qcow2_snapshot_create(img, "b", &err), &err, "create a second b");
    qcow2_close(img);
    struct qcow2_image *q = open_image(theirs, false);
    img = open_image(ours, false);
    ck_assert_msg(qcow2_snapshot_count(img) == qcow2_snapshot_count(q),
                  "snapshots: expected %u (qemu-img), got %u (qvet)", qcow2_snapshot_count(q),
                  qcow2_snapshot_count(img));
    for (uint32_t i = 0; i < qcow2_snapshot_count(q); i++) {
        struct qcow2_snapshot_info want;
        ck_assert_int_eq(qcow2_snapshot_get(q, i, &want), 0);
        expect_snapshot(img, i, want.id, want.name);
    }
    expect_snapshot(img, 2, "4", "b");
    qcow2_close(q);
    qcow2_close(img);
    expect_qemu_check_clean(ours, "after the steps");
}
END_TEST

/* A snapshot qvet made is applied by qemu-img, and one qemu-img made is applied by qvet. */
START_TEST(snapshots_cross_between_qvet_and_qemu_img)
{
    const char *path = test_path("cross.qcow2");
    make_image(path, "cluster_size=64k", 1);
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_ok(qcow2_snapshot_create(img, "by-qvet", &err), &err, "create");
    qcow2_close(img);
    run_ok("qemu writes, snapshots, writes, applies qvet's snapshot",
           test_run("qemu-io -c 'write -q -P 0x20 0 64k' '%s' && "
                    "qemu-img snapshot -c by-qemu '%s' && "
                    "qemu-io -c 'write -q -P 0x30 0 64k' '%s' && "
                    "qemu-img snapshot -a by-qvet '%s'", path, path, path, path));
    expect_qemu_reads(path, 0, CS, 1, "after qemu-img applied qvet's snapshot");
    img = open_image(path, true);
    expect_ok(qcow2_snapshot_apply(img, "by-qemu", &err), &err, "apply qemu-img's snapshot");
    qcow2_close(img);
    expect_qemu_reads(path, 0, CS, 0x20, "after qvet applied qemu-img's snapshot");
    expect_qemu_check_clean(path, "after both");
}
END_TEST

/* ---- refusals: one line, nothing changed ----------------------------------------- */

static void expect_refused(const char *what, const char *path, int ret, int want,
                           const struct qcow2_error *err, const char *says)
{
    ck_assert_msg(ret == want, "%s: expected %d, got %d (%s)", what, want, ret,
                  ret ? err->message : "success");
    ck_assert_msg(!strchr(err->message, '\n') && strstr(err->message, says) &&
                      !strcmp(err->file, path),
                  "%s: expected one line naming %s and saying \"%s\", got \"%s\" about %s",
                  what, path, says, err->message, err->file);
}

/*
 * The same, except in clusters whose refcount was 0 before: free space the refused
 * operation may have written to without any table pointing there.
 */
static void expect_referenced_unchanged(const char *path, struct test_file_copy *b,
                                        const char *what)
{
    struct qimg then = { 0 }, now = qimg_load(path);
    then.d = b->bytes;
    then.len = b->len;
    ck_assert_msg(now.len == then.len, "%s: expected the file to stay %zu bytes, got %zu", what,
                  then.len, now.len);
    for (uint64_t k = 0; k < qimg_clusters(&now); k++) {
        if (qimg_refcount(&now, k) != 0)
            continue;
        uint64_t len = k == qimg_clusters(&now) - 1 ? now.len - k * now.cs : now.cs;
        memset(qimg_at(&now, k * now.cs, len), 0, len);
        memset(qimg_at(&then, k * now.cs, len), 0, len);
    }
    size_t i = 0;
    while (i < now.len && now.d[i] == then.d[i])
        i++;
    ck_assert_msg(i == now.len, "%s: expected every referenced byte unchanged, byte %zu went "
                  "from 0x%02x to 0x%02x", what, i, then.d[i], now.d[i]);
    free(now.d);
    free(b->bytes);
}

START_TEST(a_read_only_image_is_refused)
{
    const char *path = test_path("ro.qcow2");
    make_image(path, "cluster_size=64k", 1);
    run_ok("qemu-img snapshot -c", test_run("qemu-img snapshot -c s '%s'", path));
    struct test_file_copy b = test_file_remember(path);
    struct qcow2_image *img = open_image(path, false);
    struct qcow2_error err;
    expect_refused("create on a read-only open", path, qcow2_snapshot_create(img, "x", &err),
                   -EROFS, &err, "read-write");
    expect_refused("apply on a read-only open", path, qcow2_snapshot_apply_at(img, 0, &err),
                   -EROFS, &err, "read-write");
    expect_refused("delete on a read-only open", path, qcow2_snapshot_delete_at(img, 0, &err),
                   -EROFS, &err, "read-write");
    qcow2_close(img);
    test_file_expect_unchanged(path, &b, "read-only");
}
END_TEST

/* QEMU refuses snapshots with 1-bit refcounts too ("Invalid argument"). */
START_TEST(one_bit_refcounts_are_refused)
{
    const char *path = test_path("rc1.qcow2");
    make_image(path, "refcount_bits=1", 1);
    struct test_file_copy b = test_file_remember(path);
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_refused("create with 1-bit refcounts", path, qcow2_snapshot_create(img, "x", &err),
                   -ENOTSUP, &err, "1-bit refcounts");
    qcow2_close(img);
    test_file_expect_unchanged(path, &b, "1-bit refcounts");
    ck_assert_msg(test_run("qemu-img snapshot -c x '%s' 2>/dev/null", path) != 0,
                  "expected qemu-img to refuse the snapshot as well");
}
END_TEST

/*
 * With 2-bit refcounts a cluster counts at most 3 references: the active state and two
 * snapshots. The third create is refused; qemu-img refuses it too but leaks a cluster,
 * qvet leaves every referenced byte as it was and leaks nothing. (Today it writes the
 * new snapshot's L1 copy into a free cluster before it finds the overflow, so only the
 * referenced bytes are compared.)
 */
START_TEST(a_refcount_that_would_overflow_is_refused)
{
    const char *path = test_path("rc2.qcow2");
    make_image(path, "refcount_bits=2", 1);
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_ok(qcow2_snapshot_create(img, "a", &err), &err, "create a");
    expect_ok(qcow2_snapshot_create(img, "b", &err), &err, "create b");
    qcow2_close(img);
    struct test_file_copy b = test_file_remember(path);
    img = open_image(path, true);
    expect_refused("a third snapshot with 2-bit refcounts", path,
                   qcow2_snapshot_create(img, "c", &err), -ERANGE, &err, "maximum");
    ck_assert_uint_eq(qcow2_snapshot_count(img), 2);
    qcow2_close(img);
    expect_referenced_unchanged(path, &b, "refcount overflow");
    expect_qemu_check_clean(path, "after the refused create");
}
END_TEST

START_TEST(an_unknown_snapshot_is_refused)
{
    const char *path = test_path("unknown.qcow2");
    make_image(path, "cluster_size=64k", 1);
    run_ok("qemu-img snapshot -c", test_run("qemu-img snapshot -c s '%s'", path));
    struct test_file_copy b = test_file_remember(path);
    struct qcow2_image *img = open_image(path, true);
    struct qcow2_error err;
    expect_refused("apply of an unknown name", path, qcow2_snapshot_apply(img, "nope", &err),
                   -ENOENT, &err, "\"nope\"");
    expect_refused("delete of an unknown name", path, qcow2_snapshot_delete(img, "nope", &err),
                   -ENOENT, &err, "\"nope\"");
    expect_refused("apply past the table", path, qcow2_snapshot_apply_at(img, 1, &err),
                   -ENOENT, &err, "index 1");
    expect_refused("delete past the table", path, qcow2_snapshot_delete_at(img, 1, &err),
                   -ENOENT, &err, "index 1");
    qcow2_close(img);
    test_file_expect_unchanged(path, &b, "unknown snapshot");
}
END_TEST

/* Offset of snapshot 0's table entry, from the header. */
static uint64_t first_entry(struct qimg *q)
{
    return test_get_be64(q->d + 64);
}

/*
 * A snapshot whose L1 table is unaligned, or whose recorded disk size is not a multiple
 * of 512, is refused by apply (and the unaligned one by delete) before anything changes.
 */
START_TEST(a_damaged_snapshot_entry_is_refused)
{
    const char *good = test_path("damaged-good.qcow2"), *path = test_path("damaged.qcow2");
    make_image(good, "cluster_size=64k", 1);
    run_ok("qemu-img snapshot -c", test_run("qemu-img snapshot -c s '%s'", good));
    static const struct {
        const char *what;
        unsigned field;
        uint64_t delta;
        const char *says;
        bool delete_too;
    } damage[] = {
        { "an unaligned snapshot L1 table", 0, 512, "invalid L1 table", true },
        /* extra data: VM state size at 40, disk size at 48 */
        { "a disk size that is not a multiple of 512", 48, 100, "disk size", false },
    };
    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        struct qimg q = qimg_load(good);
        uint64_t at = first_entry(&q) + damage[i].field;
        qimg_put64(&q, at, qimg_get64(&q, at) + damage[i].delta);
        qimg_save(&q, path);
        struct test_file_copy b = test_file_remember(path);
        struct qcow2_image *img = open_image(path, true);
        struct qcow2_error err;
        int ret = qcow2_snapshot_apply_at(img, 0, &err);
        expect_refused(damage[i].what, path, ret, -EINVAL, &err, damage[i].says);
        ck_assert_msg(!strcmp(err.structure, "snapshot table entry"),
                      "%s: expected the structure \"snapshot table entry\", got \"%s\"",
                      damage[i].what, err.structure);
        if (damage[i].delete_too)
            expect_refused(damage[i].what, path, qcow2_snapshot_delete_at(img, 0, &err),
                           -EINVAL, &err, damage[i].says);
        qcow2_close(img);
        test_file_expect_unchanged(path, &b, damage[i].what);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("snapshot_ops");
    TCase *ops = tcase_create("operations");
    tcase_set_timeout(ops, 120);
    tcase_add_test(ops, create_shares_every_cluster_and_clears_copied);
    tcase_add_test(ops, a_write_after_create_unshares_only_what_it_touches);
    tcase_add_test(ops, apply_restores_contents_and_size_and_frees_the_old_state);
    tcase_add_test(ops, delete_frees_what_only_the_snapshot_held);
    tcase_add_test(ops, ids_and_names_as_qemu_img_gives_them);
    tcase_add_test(ops, snapshots_cross_between_qvet_and_qemu_img);
    suite_add_tcase(s, ops);
    TCase *refusals = tcase_create("refusals");
    tcase_set_timeout(refusals, 120);
    tcase_add_test(refusals, a_read_only_image_is_refused);
    tcase_add_test(refusals, one_bit_refcounts_are_refused);
    tcase_add_test(refusals, a_refcount_that_would_overflow_is_refused);
    tcase_add_test(refusals, an_unknown_snapshot_is_refused);
    tcase_add_test(refusals, a_damaged_snapshot_entry_is_refused);
    suite_add_tcase(s, refusals);
    return test_run_suite(s);
}
