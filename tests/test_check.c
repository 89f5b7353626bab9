/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The consistency checker against `qemu-img check` (docs/format.md §12): images made by
 * qemu-img/qemu-io, clean and damaged on purpose by patching bytes. For every image the
 * counts qvet finds must equal the ones qemu-img prints in its JSON, field by field, and
 * so must the outcome of `-r leaks` and `-r all`; a qvet-repaired image must then pass
 * `qemu-img check` and read like the original.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qcow2.h"
#include "support.h"

#define COPIED (1ull << 63)
#define COMPRESSED (1ull << 62)
#define OFFSET_MASK 0x00FFFFFFFFFFFE00ull

/* test_path() rotates through a few buffers: keep a path for longer in a local copy. */
#define LOCAL_PATH(var, name)                                                               \
    char var[512];                                                                          \
    snprintf(var, sizeof(var), "%s", test_path(name))

/* ---- running both checkers ------------------------------------------------------- */

struct outcome {
    int status;                     /* the exit status qemu-img check gives (or would) */
    bool has_result;                /* false when the check failed (qemu-img: no JSON) */
    struct qcow2_check_result r;
};

static uint64_t json_u64(const char *json, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\": ", key);
    const char *p = strstr(json, pattern);
    return p ? strtoull(p + strlen(pattern), NULL, 10) : 0;
}

static struct outcome qemu_check(const char *path, const char *repair)
{
    LOCAL_PATH(json, "qemu-check.json");
    struct outcome o;
    memset(&o, 0, sizeof(o));
    o.status = test_run("qemu-img check %s%s --output=json '%s' >'%s' 2>/dev/null",
                        repair ? "-r " : "", repair ? repair : "", path, json);
    size_t len = 0;
    uint8_t *text = test_read_file(json, &len);
    ck_assert_msg(text, "cannot read %s", json);
    char *s = realloc(text, len + 1);
    ck_assert(s);
    s[len] = '\0';
    if (strchr(s, '{')) {
        o.has_result = true;
        o.r.check_errors = json_u64(s, "check-errors");
        o.r.corruptions = json_u64(s, "corruptions");
        o.r.leaks = json_u64(s, "leaks");
        o.r.corruptions_fixed = json_u64(s, "corruptions-fixed");
        o.r.leaks_fixed = json_u64(s, "leaks-fixed");
        o.r.image_end_offset = json_u64(s, "image-end-offset");
        o.r.total_clusters = json_u64(s, "total-clusters");
        o.r.allocated_clusters = json_u64(s, "allocated-clusters");
        o.r.fragmented_clusters = json_u64(s, "fragmented-clusters");
        o.r.compressed_clusters = json_u64(s, "compressed-clusters");
    }
    free(s);
    return o;
}

static struct outcome qvet_check(const char *path, enum qcow2_repair repair)
{
    struct qcow2_open_options opts = { .for_check = true, .writable = repair != QCOW2_REPAIR_NONE };
    struct qcow2_image *img;
    struct qcow2_error err;
    int ret = qcow2_open(path, &opts, &img, &err);
    ck_assert_msg(ret == 0, "%s: expected qvet to open it for check, got %d: %s", path, ret,
                  err.message);
    struct outcome o;
    memset(&o, 0, sizeof(o));
    ret = qcow2_check(img, repair, &o.r, NULL, NULL, &err);
    qcow2_close(img);
    o.has_result = ret == 0;
    o.status = ret < 0 ? 1 : qcow2_check_exit_status(&o.r);
    return o;
}

#define SAME_FIELD(field)                                                                   \
    ck_assert_msg(q->r.field == v->r.field,                                                 \
                  "%s: " #field ": expected %" PRIu64 " (qemu-img), got %" PRIu64 " (qvet)", \
                  label, (uint64_t)q->r.field, (uint64_t)v->r.field)

static void expect_same(const char *label, const struct outcome *q, const struct outcome *v)
{
    ck_assert_msg(q->status == v->status,
                  "%s: exit status: expected %d (qemu-img), got %d (qvet)", label, q->status,
                  v->status);
    ck_assert_msg(q->has_result == v->has_result,
                  "%s: expected the check to %s (as qemu-img's), but qvet's %s", label,
                  q->has_result ? "complete" : "fail", v->has_result ? "completed" : "failed");
    if (!q->has_result)
        return;
    SAME_FIELD(check_errors);
    SAME_FIELD(corruptions);
    SAME_FIELD(leaks);
    SAME_FIELD(corruptions_fixed);
    SAME_FIELD(leaks_fixed);
    SAME_FIELD(image_end_offset);
    SAME_FIELD(total_clusters);
    SAME_FIELD(allocated_clusters);
    SAME_FIELD(fragmented_clusters);
    SAME_FIELD(compressed_clusters);
}

/* Both checkers on one image, read-only; returns the shared outcome. */
static struct outcome expect_check_agrees(const char *label, const char *path)
{
    struct outcome q = qemu_check(path, NULL);
    struct outcome v = qvet_check(path, QCOW2_REPAIR_NONE);
    expect_same(label, &q, &v);
    return q;
}

static void copy_file(const char *from, const char *to)
{
    ck_assert_msg(test_run("cp '%s' '%s'", from, to) == 0, "cp %s %s failed", from, to);
}

static void make_image(const char *path, const char *opts, const char *size, const char *io)
{
    int st = test_run("qemu-img create -q -f qcow2 %s%s '%s' %s", opts ? "-o " : "",
                      opts ? opts : "", path, size);
    ck_assert_msg(st == 0, "qemu-img create -o %s %s failed (%d)", opts ? opts : "", path, st);
    if (io) {
        st = test_run("qemu-io %s '%s' >/dev/null 2>&1", io, path);
        ck_assert_msg(st == 0, "qemu-io %s %s failed (%d)", io, path, st);
    }
}

static void snapshot(const char *path, const char *name)
{
    int st = test_run("qemu-img snapshot -c '%s' '%s'", name, path);
    ck_assert_msg(st == 0, "qemu-img snapshot -c %s %s failed (%d)", name, path, st);
}

static void qemu_io(const char *path, const char *io)
{
    int st = test_run("qemu-io %s '%s' >/dev/null 2>&1", io, path);
    ck_assert_msg(st == 0, "qemu-io %s %s failed (%d)", io, path, st);
}

/* ---- patching images --------------------------------------------------------------- */

static uint64_t header_incompat(const char *path)
{
    struct qimg q = qimg_load(path);
    uint64_t v = q.version >= 3 ? qimg_get64(&q, 72) : 0;
    free(q.d);
    return v;
}

/* ---- the protocol for a damaged image ------------------------------------------------ */

enum {
    DATA_INTACT = 1,            /* the repaired image reads like the undamaged one */
    QEMU_REPAIR_FAILS = 2,      /* qemu-img -r all gives up (a QEMU quirk); qvet repairs */
    REPAIR_LEAVES_ERRORS = 4,   /* nothing can fix it: -r all leaves corruptions */
    REPAIR_LEAVES_LEAKS = 8,    /* -r all leaves leaks (qemu-img's repair does too) */
};

/*
 * `damaged` (made from `orig`) must: be judged alike by both checkers; behave alike
 * under -r leaks and -r all; and after qvet's -r all pass `qemu-img check` (unless the
 * damage cannot be repaired) and read like `orig` (when the damage kept the data).
 */
static void damaged_case(const char *label, const char *orig, const char *damaged,
                         unsigned flags)
{
    char what[256];
    struct outcome ro = expect_check_agrees(label, damaged);
    ck_assert_msg(ro.status != 0, "%s: expected the damage to be found, but qemu-img check "
                  "says the image is clean", label);

    LOCAL_PATH(a, "repair-qvet.qcow2");
    LOCAL_PATH(b, "repair-qemu.qcow2");
    copy_file(damaged, a);
    copy_file(damaged, b);
    struct outcome q = qemu_check(b, "leaks");
    struct outcome v = qvet_check(a, QCOW2_REPAIR_LEAKS);
    snprintf(what, sizeof(what), "%s, -r leaks", label);
    expect_same(what, &q, &v);

    copy_file(damaged, a);
    copy_file(damaged, b);
    q = qemu_check(b, "all");
    v = qvet_check(a, QCOW2_REPAIR_ALL);
    snprintf(what, sizeof(what), "%s, -r all", label);
    if (flags & QEMU_REPAIR_FAILS) {
        ck_assert_msg(q.status == 1, "%s: expected qemu-img to fail (exit 1), got %d", what,
                      q.status);
        ck_assert_msg(v.status == 0 && v.has_result,
                      "%s: expected qvet to repair the image (exit 0), got %d", what, v.status);
    } else {
        expect_same(what, &q, &v);
    }
    int st = test_run("qemu-img check '%s' >/dev/null 2>&1", a);
    if (flags & (REPAIR_LEAVES_ERRORS | REPAIR_LEAVES_LEAKS)) {
        int want = (flags & REPAIR_LEAVES_ERRORS) ? 2 : 3;
        ck_assert_msg(st == want, "%s: expected qemu-img check to still find %s after the "
                      "repair (exit %d), got %d", what, want == 2 ? "corruption" : "leaks",
                      want, st);
    } else {
        ck_assert_msg(st == 0, "%s: expected qemu-img check to pass on the repaired image, got "
                      "exit %d", what, st);
        uint64_t incompat = header_incompat(a);
        ck_assert_msg(!(incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)),
                      "%s: expected the dirty and corrupt bits cleared, got incompatible "
                      "features 0x%" PRIx64, what, incompat);
    }
    snprintf(what, sizeof(what), "%s, after qvet's repair", label);
    expect_check_agrees(what, a);
    if (flags & DATA_INTACT) {
        st = test_run("qemu-img compare -q '%s' '%s' 2>/dev/null", orig, a);
        ck_assert_msg(st == 0, "%s: expected the repaired image to read like the original "
                      "(qemu-img compare exit 0), got %d", what, st);
    }
}

/* ---- clean images ------------------------------------------------------------------- */

static const char *const widths[] = { "1", "2", "4", "8", "16", "32", "64" };
static const char *const cluster_sizes[] = { "512", "4096", "65536" };

static const char *write_mix =
    "-c 'write -P 1 0 100k' -c 'write -c -P 2 1M 64k' -c 'write -P 3 3M 4k' "
    "-c 'write -z 4M 64k' -c 'discard 0 8k' -c 'write -P 4 5M 130k'";

START_TEST(clean_images_every_width_and_cluster_size)
{
    for (size_t c = 0; c < 3; c++) {
        for (size_t w = 0; w < 7; w++) {
            for (int v = 2; v <= 3; v++) {
                if (v == 2 && strcmp(widths[w], "16"))
                    continue;
                char opts[128], label[256];
                snprintf(opts, sizeof(opts), "cluster_size=%s,refcount_bits=%s,compat=%s",
                         cluster_sizes[c], widths[w], v == 2 ? "0.10" : "1.1");
                LOCAL_PATH(p, "clean.qcow2");
                make_image(p, opts, "8M", write_mix);
                /* Packed compressed clusters need wide refcounts to be shared. */
                if (w >= 3 || (c == 2 && w >= 1)) {
                    snapshot(p, "one");
                    qemu_io(p, "-c 'write -P 5 0 200k' -c 'write -c -P 6 2M 64k'");
                    snapshot(p, "two");
                    qemu_io(p, "-c 'write -P 7 50k 10k'");
                }
                snprintf(label, sizeof(label), "clean image %s", opts);
                struct outcome o = expect_check_agrees(label, p);
                ck_assert_msg(o.status == 0, "%s: expected a clean image, qemu-img says %d",
                              label, o.status);
            }
        }
    }
}
END_TEST

START_TEST(clean_images_of_every_kind)
{
    LOCAL_PATH(p, "kind.qcow2");
    make_image(p, "extended_l2=on,cluster_size=64k", "16M",
               "-c 'write -P 1 0 2k' -c 'write -P 1 4k 4k' -c 'write -c -P 2 1M 64k' "
               "-c 'write -z 2M 64k' -c 'write -P 3 3M 128k' -c 'write -z 3M 4k'");
    snapshot(p, "s");
    qemu_io(p, "-c 'write -P 9 0 64k'");
    expect_check_agrees("extended L2 with a snapshot", p);

    make_image(p, "extended_l2=on,cluster_size=32k,refcount_bits=4", "16M",
               "-c 'write -P 1 1k 3k' -c 'write -c -P 2 1M 32k' -c 'write -z 64k 1k'");
    expect_check_agrees("extended L2, 32k clusters, 4-bit refcounts", p);

    make_image(p, "compression_type=zstd", "16M",
               "-c 'write -c -P 2 0 64k' -c 'write -c -P 3 64k 64k' -c 'write -c -P 4 1M 64k'");
    expect_check_agrees("zstd compressed clusters", p);

    make_image(p, "cluster_size=4096", "16M",
               "-c 'write -c -P 2 0 4k' -c 'write -c -P 3 4k 4k' -c 'write -c -P 5 8k 4k' "
               "-c 'write -P 6 12k 4k'");
    expect_check_agrees("compressed clusters packed into shared host clusters", p);

    make_image(p, "preallocation=metadata", "64M", NULL);
    expect_check_agrees("preallocation=metadata", p);

    make_image(p, "preallocation=falloc", "16M", NULL);
    expect_check_agrees("preallocation=falloc (reftable moved)", p);

    make_image(p, "cluster_size=2M", "1G", "-c 'write -P 1 0 5M' -c 'write -c -P 1 100M 2M'");
    expect_check_agrees("2 MiB clusters", p);

    make_image(p, "cluster_size=512", "300M",
               "-c 'write -P 1 0 20M' -c 'write -P 2 100M 1M' -c 'write -P 2 299M 1M'");
    expect_check_agrees("512-byte clusters, several refcount blocks", p);

    make_image(p, "lazy_refcounts=on", "16M", "-c 'write -P 1 0 1M'");
    expect_check_agrees("lazy refcounts, cleanly closed", p);

    LOCAL_PATH(base, "base.qcow2");
    make_image(base, NULL, "16M", "-c 'write -P 1 0 4M'");
    int st = test_run("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'", base, p);
    ck_assert_int_eq(st, 0);
    qemu_io(p, "-c 'write -P 2 1M 100k' -c 'discard 0 64k' -c 'write -z 2M 64k'");
    expect_check_agrees("overlay on a backing file", p);

    make_image(p, NULL, "16M", "-c 'write -P 1 0 1M'");
    st = test_run("qemu-img bitmap --add '%s' b0 && qemu-img bitmap --add '%s' b1", p, p);
    ck_assert_int_eq(st, 0);
    qemu_io(p, "-c 'write -P 2 2M 3M'");
    expect_check_agrees("persistent bitmaps (counted while autoclear bit 0 is set)", p);
}
END_TEST

START_TEST(repair_of_a_clean_image_changes_nothing)
{
    LOCAL_PATH(p, "untouched.qcow2");
    make_image(p, "cluster_size=4096,refcount_bits=8", "8M", write_mix);
    snapshot(p, "s");
    size_t before_len, after_len;
    uint8_t *before = test_read_file(p, &before_len);
    struct outcome v = qvet_check(p, QCOW2_REPAIR_ALL);
    ck_assert_msg(v.status == 0 && !v.r.corruptions_fixed && !v.r.leaks_fixed,
                  "expected a clean result, got exit %d, %" PRIu64 " corruptions fixed, %" PRIu64
                  " leaks fixed", v.status, v.r.corruptions_fixed, v.r.leaks_fixed);
    uint8_t *after = test_read_file(p, &after_len);
    ck_assert_msg(before_len == after_len && !memcmp(before, after, before_len),
                  "expected -r all to leave a clean image byte-for-byte unchanged");
    free(before);
    free(after);
}
END_TEST

/* ---- damaged images ----------------------------------------------------------------- */

/* Data, a free (discarded) cluster inside the file, a compressed cluster. */
static const char *damage_io =
    "-c 'write -P 1 0 192k' -c 'write -c -P 2 1M 64k' -c 'write -P 3 2M 64k' "
    "-c 'discard 64k 64k'";

START_TEST(leaked_cluster_every_width)
{
    for (size_t c = 0; c < 3; c++) {
        for (size_t w = 0; w < 7; w++) {
            char opts[128], label[256];
            snprintf(opts, sizeof(opts), "cluster_size=%s,refcount_bits=%s", cluster_sizes[c],
                     widths[w]);
            LOCAL_PATH(orig, "orig.qcow2");
            LOCAL_PATH(bad, "leak.qcow2");
            make_image(orig, opts, "8M", damage_io);
            struct qimg q = qimg_load(orig);
            uint64_t free_cluster = qimg_find_refcount(&q, 0, 1);
            qimg_set_refcount(&q, free_cluster, 1);
            qimg_save(&q, bad);
            snprintf(label, sizeof(label), "leaked cluster %" PRIu64 " (%s)", free_cluster, opts);
            damaged_case(label, orig, bad, DATA_INTACT);
            struct outcome o = qemu_check(bad, NULL);
            ck_assert_msg(o.r.leaks == 1 && o.status == 3,
                          "%s: expected 1 leak (exit 3), qemu-img says %" PRIu64 " (exit %d)",
                          label, o.r.leaks, o.status);
        }
    }
    /* v2 (16-bit refcounts only), and a leak on a metadata cluster. */
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "leak.qcow2");
    make_image(orig, "compat=0.10", "8M", damage_io);
    struct qimg q = qimg_load(orig);
    qimg_set_refcount(&q, q.l1 / q.cs, 2);
    qimg_save(&q, bad);
    damaged_case("v2, L1 table cluster refcount 2", orig, bad, DATA_INTACT);
}
END_TEST

START_TEST(refcount_too_low)
{
    static const char *const w[] = { "8", "16", "64" };
    for (size_t c = 0; c < 3; c++) {
        for (size_t i = 0; i < 3; i++) {
            char opts[128], label[256];
            snprintf(opts, sizeof(opts), "cluster_size=%s,refcount_bits=%s", cluster_sizes[c],
                     w[i]);
            LOCAL_PATH(orig, "orig.qcow2");
            LOCAL_PATH(bad, "low.qcow2");
            make_image(orig, opts, "8M", damage_io);
            snapshot(orig, "s");
            struct qimg q = qimg_load(orig);
            uint64_t shared = qimg_find_refcount(&q, 2, 1);
            qimg_set_refcount(&q, shared, 1);
            qimg_save(&q, bad);
            snprintf(label, sizeof(label), "shared cluster %" PRIu64 " refcount 2 -> 1 (%s)",
                     shared, opts);
            damaged_case(label, orig, bad, DATA_INTACT);
        }
    }
}
END_TEST

START_TEST(missing_refcount_block)
{
    static const char *const w[] = { "1", "16", "64" };
    for (size_t c = 0; c < 3; c++) {
        for (size_t i = 0; i < 3; i++) {
            char opts[128], label[256];
            snprintf(opts, sizeof(opts), "cluster_size=%s,refcount_bits=%s", cluster_sizes[c],
                     w[i]);
            LOCAL_PATH(orig, "orig.qcow2");
            LOCAL_PATH(bad, "norefblock.qcow2");
            make_image(orig, opts, "8M", damage_io);
            if (strcmp(w[i], "1"))
                snapshot(orig, "s");
            struct qimg q = qimg_load(orig);
            qimg_put64(&q, q.reftable, 0);
            qimg_save(&q, bad);
            snprintf(label, sizeof(label), "refcount table entry 0 zeroed (%s)", opts);
            damaged_case(label, orig, bad, DATA_INTACT);
        }
    }
}
END_TEST

START_TEST(wrong_copied_flags)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "copied.qcow2");
    make_image(orig, "cluster_size=4096", "8M", damage_io);
    struct qimg q = qimg_load(orig);
    uint64_t at = qimg_l2_entry(&q, 0, 0);
    qimg_put64(&q, at, qimg_get64(&q, at) & ~COPIED);
    qimg_save(&q, bad);
    damaged_case("COPIED cleared on a data cluster with refcount 1", orig, bad, DATA_INTACT);

    q = qimg_load(orig);
    qimg_put64(&q, q.l1, qimg_get64(&q, q.l1) & ~COPIED);
    qimg_save(&q, bad);
    damaged_case("COPIED cleared on an L1 entry", orig, bad, DATA_INTACT);

    snapshot(orig, "s");
    q = qimg_load(orig);
    at = qimg_l2_entry(&q, 0, 1);
    qimg_put64(&q, at, qimg_get64(&q, at) | COPIED);
    qimg_put64(&q, q.l1, qimg_get64(&q, q.l1) | COPIED);
    qimg_save(&q, bad);
    damaged_case("COPIED set on a shared L2 table and a shared data cluster", orig, bad,
                 DATA_INTACT);
}
END_TEST

START_TEST(reference_past_end_of_file)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "pasteof.qcow2");
    make_image(orig, NULL, "8M", damage_io);
    struct qimg q = qimg_load(orig);
    uint64_t at = qimg_l2_entry(&q, 0, 40);
    qimg_put64(&q, at, COPIED | (1ull << 32));
    qimg_save(&q, bad);
    damaged_case("data cluster 4 GiB past the end of the file", orig, bad,
                 REPAIR_LEAVES_ERRORS);

    q = qimg_load(orig);
    qimg_put64(&q, q.l1, COPIED | (1ull << 40));
    qimg_save(&q, bad);
    damaged_case("L2 table past the end of the file", orig, bad, REPAIR_LEAVES_ERRORS);
}
END_TEST

START_TEST(dirty_lazy_refcount_image)
{
    for (size_t c = 1; c < 3; c++) {
        char opts[128], label[256];
        snprintf(opts, sizeof(opts), "lazy_refcounts=on,cluster_size=%s", cluster_sizes[c]);
        LOCAL_PATH(orig, "orig.qcow2");
        LOCAL_PATH(bad, "dirty.qcow2");
        make_image(orig, opts, "8M", "-c 'write -P 7 0 64k'");
        copy_file(orig, bad);
        /* qemu-io aborts on purpose: refcounts stay stale, the dirty bit stays set. */
        test_run("qemu-io -c 'write -P 1 64k 128k' -c 'write -P 2 1M 64k' -c abort '%s' "
                 ">/dev/null 2>&1", bad);
        ck_assert_msg(header_incompat(bad) & QCOW2_INCOMPAT_DIRTY,
                      "expected qemu-io's abort to leave the dirty bit set");
        snprintf(label, sizeof(label), "dirty after abort (%s)", opts);
        damaged_case(label, bad, bad, DATA_INTACT);
        /* The data written before the abort is all there after the repair. */
        LOCAL_PATH(a, "repair-qvet.qcow2");
        int st = test_run("qemu-io -c 'read -P 1 64k 128k' -c 'read -P 2 1M 64k' "
                          "-c 'read -P 7 0 64k' '%s' | grep -q 'Pattern verification failed'",
                          a);
        ck_assert_msg(st != 0, "%s: expected the written data to survive the repair", label);
    }
}
END_TEST

START_TEST(entry_corruptions)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "entries.qcow2");
    make_image(orig, NULL, "8M", damage_io);

    struct qimg q = qimg_load(orig);
    qimg_put64(&q, q.l1, qimg_get64(&q, q.l1) | (1ull << 57));
    qimg_save(&q, bad);
    damaged_case("reserved bits in an L1 entry", orig, bad, REPAIR_LEAVES_ERRORS);

    q = qimg_load(orig);
    uint64_t at = qimg_l2_entry(&q, 0, 2);
    qimg_put64(&q, at, qimg_get64(&q, at) | 0x2);
    qimg_save(&q, bad);
    damaged_case("reserved bits in an L2 entry", orig, bad, REPAIR_LEAVES_ERRORS);

    q = qimg_load(orig);
    qimg_put64(&q, q.l1, qimg_get64(&q, q.l1) + 0x200);
    qimg_save(&q, bad);
    damaged_case("L2 table offset not cluster-aligned", orig, bad, REPAIR_LEAVES_ERRORS);

    q = qimg_load(orig);
    at = qimg_l2_entry(&q, 0, 0);
    qimg_put64(&q, at, qimg_get64(&q, at) + 0x200);
    qimg_save(&q, bad);
    damaged_case("data cluster offset not cluster-aligned", orig, bad, REPAIR_LEAVES_ERRORS);

    q = qimg_load(orig);
    at = qimg_l2_entry(&q, 0, 16);
    ck_assert_msg(qimg_get64(&q, at) & COMPRESSED, "expected guest 1M to be compressed");
    qimg_put64(&q, at, qimg_get64(&q, at) | COPIED);
    qimg_save(&q, bad);
    damaged_case("COPIED on a compressed cluster", orig, bad, REPAIR_LEAVES_ERRORS);

    /* A preallocated zero cluster at an unaligned offset: -r all turns it to plain zero. */
    q = qimg_load(orig);
    at = qimg_l2_entry(&q, 0, 5);
    qimg_put64(&q, at, COPIED | (qimg_get64(&q, qimg_l2_entry(&q, 0, 0)) & OFFSET_MASK) |
                           0x200 | 0x1);
    qimg_save(&q, bad);
    damaged_case("unaligned preallocated zero cluster", orig, bad, DATA_INTACT);
}
END_TEST

START_TEST(extended_l2_bitmap_corruptions)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "extl2.qcow2");
    make_image(orig, "extended_l2=on", "8M",
               "-c 'write -P 1 0 128k' -c 'write -c -P 2 1M 64k' -c 'write -P 3 2M 4k'");
    struct qimg q = qimg_load(orig);
    uint64_t at = qimg_l2_entry(&q, 0, 0);
    qimg_put64(&q, at + 8, 0x0000000100000001ull);
    qimg_save(&q, bad);
    damaged_case("subcluster both allocated and zero", orig, bad, REPAIR_LEAVES_ERRORS);

    q = qimg_load(orig);
    at = qimg_l2_entry(&q, 0, 7);
    qimg_put64(&q, at + 8, 0x3);
    qimg_save(&q, bad);
    damaged_case("unallocated cluster with allocation bits", orig, bad, REPAIR_LEAVES_ERRORS);

    q = qimg_load(orig);
    at = qimg_l2_entry(&q, 0, 16);
    ck_assert_msg(qimg_get64(&q, at) & COMPRESSED, "expected guest 1M to be compressed");
    qimg_put64(&q, at + 8, 0x1);
    qimg_save(&q, bad);
    damaged_case("compressed cluster with a subcluster bitmap", orig, bad,
                 REPAIR_LEAVES_ERRORS);
}
END_TEST

/* Rewrites the only snapshot entry of a v3 image to carry just 8 bytes of extra data. */
static void shorten_snapshot_extra(struct qimg *q)
{
    uint64_t table = qimg_get64(q, 64);
    uint8_t *e = qimg_at(q, table, 40 + 24);
    uint32_t extra = test_get_be32(e + 36);
    uint32_t id = ((uint32_t)e[12] << 8) | e[13], name = ((uint32_t)e[14] << 8) | e[15];
    uint8_t *body = qimg_at(q, table + 40, extra + id + name);
    memmove(body + 8, body + extra, id + name);
    memset(body + 8 + id + name, 0, extra - 8);
    test_put_be32(e + 36, 8);
}

START_TEST(snapshot_table_corruptions)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "snaps.qcow2");
    make_image(orig, NULL, "8M", damage_io);
    snapshot(orig, "first");
    qemu_io(orig, "-c 'write -P 8 0 64k'");
    snapshot(orig, "second");

    struct qimg q = qimg_load(orig);
    uint64_t table = qimg_get64(&q, 64);
    qimg_put64(&q, table, qimg_get64(&q, table) + 0x200);
    qimg_save(&q, bad);
    damaged_case("snapshot L1 table not cluster-aligned", orig, bad, REPAIR_LEAVES_ERRORS);

    make_image(orig, NULL, "8M", damage_io);
    snapshot(orig, "first");
    qemu_io(orig, "-c 'write -P 8 0 64k'");
    q = qimg_load(orig);
    shorten_snapshot_extra(&q);
    qimg_save(&q, bad);
    damaged_case("v3 snapshot entry with 8 bytes of extra data", orig, bad, DATA_INTACT);
    LOCAL_PATH(a, "repair-qvet.qcow2");
    ck_assert_msg(test_run("qemu-img snapshot -l '%s' | grep -q first", a) == 0,
                  "expected the repaired snapshot table to keep snapshot 'first'");

    /* A second entry naming the same L1 table: every shared refcount is one too low. */
    q = qimg_load(orig);
    uint64_t table0 = qimg_get64(&q, 64);
    uint8_t *e = qimg_at(&q, table0, 40);
    size_t len = 40 + test_get_be32(e + 36) + (((size_t)e[12] << 8) | e[13]) +
                 (((size_t)e[14] << 8) | e[15]);
    size_t next = (len + 7) & ~(size_t)7;
    uint8_t *copy = qimg_at(&q, table0 + next, len);
    memcpy(copy, e, len);
    copy[40 + test_get_be32(e + 36)] = '9';          /* a different id */
    test_put_be32(qimg_at(&q, 60, 4), 2);
    qimg_save(&q, bad);
    damaged_case("two snapshot entries naming one L1 table", orig, bad, DATA_INTACT);
}
END_TEST

START_TEST(refcount_structure_corruptions)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "refs.qcow2");
    make_image(orig, NULL, "8M", damage_io);

    /* An L2 entry naming the refcount block: refblock refcount 2. */
    struct qimg q = qimg_load(orig);
    uint64_t block = qimg_get64(&q, q.reftable);
    qimg_put64(&q, qimg_l2_entry(&q, 0, 40), COPIED | block);
    qimg_save(&q, bad);
    damaged_case("data cluster on top of the refcount block", orig, bad, 0);

    q = qimg_load(orig);
    qimg_put64(&q, q.reftable + 8, 0x7F0000);
    qimg_save(&q, bad);
    damaged_case("refcount block outside the image", orig, bad, DATA_INTACT);

    /* QEMU's own repair trips over its overlap check or its corrupt flag on these two. */
    q = qimg_load(orig);
    qimg_put64(&q, q.reftable, qimg_get64(&q, q.reftable) | 0x1);
    qimg_save(&q, bad);
    damaged_case("reserved bits in a refcount table entry", orig, bad,
                 DATA_INTACT | QEMU_REPAIR_FAILS);

    q = qimg_load(orig);
    qimg_put64(&q, q.reftable, qimg_get64(&q, q.reftable) + 0x200);
    qimg_save(&q, bad);
    damaged_case("refcount block not cluster-aligned", orig, bad,
                 DATA_INTACT | QEMU_REPAIR_FAILS);
}
END_TEST

/*
 * Tables cut off by the end of the file, by truncation or by a header field: QEMU opens
 * such an image for check (the missing part reads as zeros) and reports what that breaks;
 * so must qvet, instead of refusing it as `info` does.
 */
START_TEST(tables_past_end_of_file)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "cut.qcow2");
    make_image(orig, "cluster_size=4096", "8M", damage_io);
    snapshot(orig, "first");
    qemu_io(orig, "-c 'write -P 4 0 16k' -c 'write -P 5 3M 8k'");
    struct qimg q = qimg_load(orig);
    uint64_t refblock = qimg_get64(&q, q.reftable) & OFFSET_MASK;
    uint64_t l2 = qimg_get64(&q, q.l1) & OFFSET_MASK;
    uint64_t snapshots = qimg_get64(&q, 64);
    uint64_t reftable = q.reftable, l1 = q.l1;
    free(q.d);

    q = qimg_load(orig);
    qimg_put64(&q, 48, 1ull << 24);
    qimg_save(&q, bad);
    damaged_case("refcount table offset past the end of the file", orig, bad, DATA_INTACT);

    q = qimg_load(orig);
    qimg_put64(&q, 64, 1ull << 24);
    qimg_save(&q, bad);
    damaged_case("snapshot table offset past the end of the file", orig, bad, DATA_INTACT);

    q = qimg_load(orig);
    qimg_put64(&q, 40, 1ull << 24);
    qimg_save(&q, bad);
    damaged_case("active L1 table past the end of the file", orig, bad, REPAIR_LEAVES_ERRORS);

    struct {
        const char *label;
        uint64_t length;
        unsigned flags;
    } cuts[] = {
        { "file cut inside the refcount table", reftable + 4, REPAIR_LEAVES_ERRORS },
        /* The repair allocates from a block that is half past the end of the file. */
        { "file cut inside the refcount block", refblock + 100, REPAIR_LEAVES_LEAKS },
        { "file cut inside the L1 table", l1 + 8, REPAIR_LEAVES_LEAKS },
        { "file cut inside an L2 table", l2 + 2048, REPAIR_LEAVES_ERRORS },
        { "file cut inside the snapshot table", snapshots + 20, REPAIR_LEAVES_ERRORS },
    };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        copy_file(orig, bad);
        ck_assert_int_eq(truncate(bad, (off_t)cuts[i].length), 0);
        damaged_case(cuts[i].label, orig, bad, cuts[i].flags);
    }
}
END_TEST

START_TEST(refcount_overflow)
{
    LOCAL_PATH(orig, "orig.qcow2");
    LOCAL_PATH(bad, "overflow.qcow2");
    make_image(orig, "refcount_bits=1", "8M", damage_io);
    struct qimg q = qimg_load(orig);
    uint64_t first = qimg_get64(&q, qimg_l2_entry(&q, 0, 0));
    qimg_put64(&q, qimg_l2_entry(&q, 0, 40), first);
    qimg_save(&q, bad);
    damaged_case("two references with 1-bit refcounts", orig, bad, REPAIR_LEAVES_ERRORS);
}
END_TEST

START_TEST(corrupt_bit_cleared_by_repair)
{
    LOCAL_PATH(p, "corruptbit.qcow2");
    make_image(p, NULL, "8M", damage_io);
    struct qimg q = qimg_load(p);
    qimg_put64(&q, 72, qimg_get64(&q, 72) | QCOW2_INCOMPAT_CORRUPT);
    qimg_save(&q, p);
    struct outcome o = expect_check_agrees("corrupt bit on a consistent image", p);
    ck_assert_int_eq(o.status, 0);
    ck_assert_msg(header_incompat(p) & QCOW2_INCOMPAT_CORRUPT,
                  "expected a plain check to leave the corrupt bit");
    struct outcome v = qvet_check(p, QCOW2_REPAIR_LEAKS);
    ck_assert_int_eq(v.status, 0);
    ck_assert_msg(!(header_incompat(p) & QCOW2_INCOMPAT_CORRUPT),
                  "expected -r leaks on a consistent image to clear the corrupt bit, got 0x%"
                  PRIx64, header_incompat(p));
}
END_TEST

/*
 * Every L1 entry naming one L2 table whose entries all name one data cluster: far more
 * references than a 16-bit refcount holds. Both the counts (with overflow) and the time
 * it takes must stay sane: the table is walked once, counted as often as it is named.
 */
START_TEST(one_table_referenced_many_times)
{
    LOCAL_PATH(p, "shared.qcow2");
    make_image(p, "cluster_size=512", "1G", "-c 'write -P 1 0 512'");
    struct qimg q = qimg_load(p);
    uint64_t l1_entry = qimg_get64(&q, q.l1);
    uint64_t data = qimg_get64(&q, qimg_l2_entry(&q, 0, 0));
    uint64_t l2 = l1_entry & OFFSET_MASK;
    for (uint32_t j = 0; j < q.cs / 8; j++)
        qimg_put64(&q, l2 + 8ull * j, data);
    for (uint32_t i = 0; i < q.l1_size; i++)
        qimg_put64(&q, q.l1 + 8ull * i, l1_entry);
    qimg_save(&q, p);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct outcome v = qvet_check(p, QCOW2_REPAIR_NONE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(seconds < 5.0, "expected the check to take well under 5 s, took %.1f s",
                  seconds);
    struct outcome o = qemu_check(p, NULL);
    expect_same("one L2 table named by every L1 entry", &o, &v);
}
END_TEST

/* ---- hostile bytes through the in-memory backend ----------------------------------- */

START_TEST(mutated_images_never_crash)
{
    LOCAL_PATH(p, "fuzzbase.qcow2");
    make_image(p, "cluster_size=4096", "4M",
               "-c 'write -P 1 0 40k' -c 'write -c -P 2 1M 4k' -c 'write -z 2M 8k'");
    snapshot(p, "s");
    qemu_io(p, "-c 'write -P 3 0 8k'");
    size_t len;
    uint8_t *orig = test_read_file(p, &len);
    ck_assert(orig);
    uint8_t *buf = malloc(len);
    ck_assert(buf);
    uint32_t seed = 12345;
    for (int round = 0; round < 300; round++) {
        memcpy(buf, orig, len);
        int flips = 1 + round % 8;
        for (int f = 0; f < flips; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            /* Aim at metadata most of the time: the first clusters and the tables. */
            if (round % 3)
                at %= 8 * 4096;
            seed = seed * 1103515245u + 12345u;
            buf[at] ^= (uint8_t)(1u << ((seed >> 16) % 8));
        }
        for (int mode = 0; mode < 3; mode++) {
            struct qcow2_backend *b;
            ck_assert_int_eq(qcow2_backend_mem_new(buf, len, len + (1u << 20), &b), 0);
            struct qcow2_open_options opts = { .for_check = true, .writable = mode != 0 };
            struct qcow2_image *img;
            struct qcow2_error err;
            if (qcow2_open_backend(b, "mutant", &opts, &img, &err))
                continue;
            struct qcow2_check_result r;
            enum qcow2_repair repair = mode == 0 ? QCOW2_REPAIR_NONE
                                       : mode == 1 ? QCOW2_REPAIR_LEAKS : QCOW2_REPAIR_ALL;
            int ret = qcow2_check(img, repair, &r, NULL, NULL, &err);
            ck_assert_msg(ret <= 0, "round %d: expected 0 or a negative code, got %d", round,
                          ret);
            int status = qcow2_check_exit_status(&r);
            ck_assert_msg(status >= 0 && status <= 3, "round %d: exit status %d", round, status);
            qcow2_close(img);
        }
    }
    free(buf);
    free(orig);
}
END_TEST

/* ---- the qvet check command --------------------------------------------------------- */

/*
 * `qvet check ARGS NAME` run in dir_a and `qemu-img check ARGS NAME` in dir_b (each on
 * its own copy, so that repairs do not meet) print the same stdout and exit alike.
 */
static void expect_cli_matches(const char *qvet, const char *args, const char *dir_a,
                               const char *dir_b, const char *name)
{
    LOCAL_PATH(a, "cli-qvet.out");
    LOCAL_PATH(b, "cli-qemu.out");
    int sa = test_run("cd '%s' && '%s' check %s '%s' >'%s' 2>/dev/null", dir_a, qvet, args,
                      name, a);
    int sb = test_run("cd '%s' && qemu-img check %s '%s' >'%s' 2>/dev/null", dir_b, args, name,
                      b);
    char *ta = test_read_text(a), *tb = test_read_text(b);
    ck_assert_msg(ta && tb, "cannot read %s or %s", a, b);
    ck_assert_msg(sa == sb, "check %s %s: exit status: expected %d (qemu-img), got %d (qvet)",
                  args, name, sb, sa);
    ck_assert_msg(!strcmp(ta, tb), "check %s %s: expected qemu-img's output\n%s\ngot\n%s", args,
                  name, tb, ta);
    free(ta);
    free(tb);
}

START_TEST(cli_output_matches_qemu_img)
{
    const char *qvet = test_qvet_binary();
    if (!qvet)
        return;                     /* the command is not built next to this suite */
    LOCAL_PATH(da, "cli-a");
    LOCAL_PATH(db, "cli-b");
    ck_assert_int_eq(test_run("mkdir -p '%s' '%s'", da, db), 0);
    char pa[600], pb[600];
    snprintf(pa, sizeof(pa), "%s/cli.qcow2", da);
    snprintf(pb, sizeof(pb), "%s/cli.qcow2", db);
    make_image(pa, NULL, "8M", damage_io);
    expect_cli_matches(qvet, "--output=json", da, da, "cli.qcow2");
    expect_cli_matches(qvet, "", da, da, "cli.qcow2");

    struct qimg q = qimg_load(pa);
    qimg_set_refcount(&q, qimg_find_refcount(&q, 0, 1), 1);
    uint64_t at = qimg_l2_entry(&q, 0, 2);
    qimg_put64(&q, at, qimg_get64(&q, at) | 0x2);
    qimg_save(&q, pa);
    copy_file(pa, pb);
    expect_cli_matches(qvet, "--output=json", da, da, "cli.qcow2");
    expect_cli_matches(qvet, "", da, da, "cli.qcow2");
    expect_cli_matches(qvet, "-r leaks", da, db, "cli.qcow2");
    expect_cli_matches(qvet, "--output=json", da, db, "cli.qcow2");

    /* A leak only: -r all repairs it, and the human report says so. */
    make_image(pa, "compat=0.10", "8M", damage_io);
    q = qimg_load(pa);
    qimg_set_refcount(&q, q.l1 / q.cs, 3);
    qimg_save(&q, pa);
    copy_file(pa, pb);
    expect_cli_matches(qvet, "-r all", da, db, "cli.qcow2");
    expect_cli_matches(qvet, "--output=json", da, db, "cli.qcow2");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("check");
    TCase *clean = tcase_create("clean");
    tcase_set_timeout(clean, 280);
    tcase_add_test(clean, clean_images_every_width_and_cluster_size);
    tcase_add_test(clean, clean_images_of_every_kind);
    tcase_add_test(clean, repair_of_a_clean_image_changes_nothing);
    tcase_add_test(clean, cli_output_matches_qemu_img);
    suite_add_tcase(s, clean);

    TCase *damaged = tcase_create("damaged");
    tcase_set_timeout(damaged, 280);
    tcase_add_test(damaged, leaked_cluster_every_width);
    tcase_add_test(damaged, refcount_too_low);
    tcase_add_test(damaged, missing_refcount_block);
    tcase_add_test(damaged, wrong_copied_flags);
    tcase_add_test(damaged, reference_past_end_of_file);
    tcase_add_test(damaged, dirty_lazy_refcount_image);
    tcase_add_test(damaged, entry_corruptions);
    tcase_add_test(damaged, extended_l2_bitmap_corruptions);
    tcase_add_test(damaged, snapshot_table_corruptions);
    tcase_add_test(damaged, refcount_structure_corruptions);
    tcase_add_test(damaged, refcount_overflow);
    tcase_add_test(damaged, tables_past_end_of_file);
    tcase_add_test(damaged, corrupt_bit_cleared_by_repair);
    tcase_add_test(damaged, one_table_referenced_many_times);
    suite_add_tcase(s, damaged);

    TCase *hostile = tcase_create("hostile");
    tcase_set_timeout(hostile, 280);
    tcase_add_test(hostile, mutated_images_never_crash);
    suite_add_tcase(s, hostile);

    return test_run_suite(s);
}
