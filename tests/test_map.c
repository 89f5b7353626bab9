/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Block status (engine/src/map.c) through the public API: qcow2_map_status walked over
 * the whole disk and merged with qcow2_map_entries_mergeable, as `qvet map` does, must
 * give exactly the ranges `qemu-img map --output=json` (QEMU 7.2) prints for the same
 * image: start, length, depth, present, zero, data and host offset. The images are made
 * by qemu-img and qemu-io so that every kind of L2 entry and every kind of layer appears.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "support.h"

#define MAX_RANGES 256

struct map {
    struct qcow2_map_entry e[MAX_RANGES];
    size_t n;
};

static void run_ok(const char *what, int status)
{
    ck_assert_msg(status == 0, "%s: expected exit 0, got %d", what, status);
}

static struct qcow2_image *open_image(const char *path, const struct qcow2_open_options *o)
{
    struct qcow2_image *img;
    struct qcow2_error err;
    int ret = qcow2_open(path, o, &img, &err);
    ck_assert_msg(ret == 0, "open %s: expected success, got %d: %s", path, ret, err.message);
    return img;
}

static void add_range(struct map *m, const struct qcow2_map_entry *e)
{
    ck_assert_msg(m->n < MAX_RANGES, "more than %d ranges", MAX_RANGES);
    m->e[m->n++] = *e;
}

/* The merged map of the state `o` opens, as `qvet map` builds it. */
static void qvet_map(const char *path, const struct qcow2_open_options *o, struct map *m)
{
    struct qcow2_image *img = open_image(path, o);
    uint64_t size = qcow2_virtual_size(img);
    struct qcow2_map_entry curr = { 0 }, next;
    m->n = 0;
    while (curr.start + curr.length < size) {
        uint64_t off = curr.start + curr.length;
        struct qcow2_error err;
        int ret = qcow2_map_status(img, off, size - off, &next, &err);
        ck_assert_msg(ret == 0, "%s: map at %" PRIu64 ": expected success, got %d: %s", path,
                      off, ret, err.message);
        ck_assert_msg(next.start == off && next.length > 0 && next.length <= size - off,
                      "%s: map at %" PRIu64 ": expected a run inside [%" PRIu64 ", %" PRIu64
                      "), got start %" PRIu64 " length %" PRIu64,
                      path, off, off, size, next.start, next.length);
        if (qcow2_map_entries_mergeable(&curr, &next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length)
            add_range(m, &curr);
        curr = next;
    }
    add_range(m, &curr);
    qcow2_close(img);
}

static bool json_bool(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    ck_assert_msg(p, "qemu-img map line without %s: %s", key, line);
    return !strncmp(p + strlen(key), " true", 5);
}

static uint64_t json_u64(const char *line, const char *key, bool *found)
{
    const char *p = strstr(line, key);
    *found = p != NULL;
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* What `qemu-img map --output=json` prints for the image, one range a line. */
static void qemu_map(const char *path, struct map *m)
{
    const char *out = test_path("qemu-map.json");
    run_ok("qemu-img map",
           test_run("qemu-img map -f qcow2 --output=json '%s' >'%s'", path, out));
    FILE *f = fopen(out, "r");
    ck_assert_msg(f != NULL, "cannot read %s", out);
    char line[512];
    m->n = 0;
    while (fgets(line, sizeof(line), f)) {
        bool found;
        struct qcow2_map_entry e = {
            .start = json_u64(line, "\"start\":", &found),
            .length = json_u64(line, "\"length\":", &found),
            .depth = (uint32_t)json_u64(line, "\"depth\":", &found),
            .present = json_bool(line, "\"present\":"),
            .zero = json_bool(line, "\"zero\":"),
            .data = json_bool(line, "\"data\":"),
        };
        e.offset = json_u64(line, "\"offset\":", &e.has_offset);
        add_range(m, &e);
    }
    fclose(f);
}

static void describe(const struct qcow2_map_entry *e, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "start %" PRIu64 " length %" PRIu64 " depth %" PRIu32
                     " present %d zero %d data %d", e->start, e->length, e->depth, e->present,
                     e->zero, e->data);
    if (e->has_offset && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " offset %" PRIu64, e->offset);
}

static bool same_range(const struct qcow2_map_entry *a, const struct qcow2_map_entry *b)
{
    return a->start == b->start && a->length == b->length && a->depth == b->depth &&
           a->present == b->present && a->zero == b->zero && a->data == b->data &&
           a->has_offset == b->has_offset && (!a->has_offset || a->offset == b->offset);
}

static void expect_same_maps(const char *label, const struct map *want, const struct map *got)
{
    for (size_t i = 0; i < want->n || i < got->n; i++) {
        char w[200] = "(none)", g[200] = "(none)";
        if (i < want->n)
            describe(&want->e[i], w, sizeof(w));
        if (i < got->n)
            describe(&got->e[i], g, sizeof(g));
        ck_assert_msg(i < want->n && i < got->n && same_range(&want->e[i], &got->e[i]),
                      "%s: range %zu: expected (qemu-img map) %s, got (qvet) %s", label, i, w,
                      g);
    }
}

/* qvet's map of the active state must be qemu-img's. */
static void expect_map_as_qemu(const char *label, const char *path)
{
    struct map want, got;
    qemu_map(path, &want);
    qvet_map(path, NULL, &got);
    expect_same_maps(label, &want, &got);
}

/* The merged range that holds guest offset `off`. */
static const struct qcow2_map_entry *range_at(const struct map *m, uint64_t off)
{
    for (size_t i = 0; i < m->n; i++)
        if (off >= m->e[i].start && off - m->e[i].start < m->e[i].length)
            return &m->e[i];
    ck_abort_msg("no range holds guest offset %" PRIu64, off);
    return NULL;
}

/* What QEMU 7.2 reports for one kind of entry, written down so the meaning is pinned. */
struct kind {
    const char *what;
    uint64_t cluster;               /* guest cluster index */
    uint32_t depth;
    bool present, zero, data, has_offset;
};

static void expect_kind(const char *label, const struct map *m, uint64_t cs,
                        const struct kind *k)
{
    const struct qcow2_map_entry *e = range_at(m, k->cluster * cs);
    char got[200];
    describe(e, got, sizeof(got));
    ck_assert_msg(e->depth == k->depth && e->present == k->present && e->zero == k->zero &&
                      e->data == k->data && e->has_offset == k->has_offset,
                  "%s: %s (guest cluster %" PRIu64 "): expected depth %" PRIu32
                  " present %d zero %d data %d %s, got %s",
                  label, k->what, k->cluster, k->depth, k->present, k->zero, k->data,
                  k->has_offset ? "with an offset" : "without an offset", got);
}

/* ---- every kind of entry, at every cluster size --------------------------------- */

static const uint32_t cluster_sizes[] = { 512, 4096, 65536, 2u << 20 };

/*
 * Base (16 clusters): data in cluster 0. Overlay (32 clusters): data in 2, a compressed
 * cluster in 4, a zero flag without a cluster in 6, a zero flag on an allocated cluster
 * in 8 (written, then zeroed without unmap), a discarded cluster in 10; the rest reads
 * through to the base (1, 3, ...) or, past the base's end, is the overlay's own zeros.
 */
START_TEST(each_kind_of_entry_maps_as_qemu_img_map_shows_it)
{
    uint64_t cs = cluster_sizes[_i];
    char label[64], base[64], top[64];
    snprintf(label, sizeof(label), "cluster size %" PRIu64, cs);
    snprintf(base, sizeof(base), "kinds-base-%" PRIu64 ".qcow2", cs);
    snprintf(top, sizeof(top), "kinds-top-%" PRIu64 ".qcow2", cs);
    const char *b = test_path(base), *t = test_path(top);
    run_ok("make the base",
           test_run("qemu-img create -q -f qcow2 -o cluster_size=%" PRIu64 " '%s' %" PRIu64
                    " && qemu-io -c 'write -P 1 0 %" PRIu64 "' '%s' >/dev/null",
                    cs, b, 16 * cs, cs, b));
    run_ok("make the overlay",
           test_run("qemu-img create -q -f qcow2 -o cluster_size=%" PRIu64 " -b '%s' -F qcow2 "
                    "'%s' %" PRIu64 " && qemu-io -c 'write -P 2 %" PRIu64 " %" PRIu64 "' "
                    "-c 'write -c -P 3 %" PRIu64 " %" PRIu64 "' "
                    "-c 'write -z -u %" PRIu64 " %" PRIu64 "' "
                    "-c 'write -P 4 %" PRIu64 " %" PRIu64 "' -c 'write -z %" PRIu64 " %" PRIu64 "' "
                    "-c 'write -P 5 %" PRIu64 " %" PRIu64 "' -c 'discard %" PRIu64 " %" PRIu64 "' "
                    "'%s' >/dev/null",
                    cs, b, t, 32 * cs, 2 * cs, cs, 4 * cs, cs, 6 * cs, cs, 8 * cs, cs, 8 * cs,
                    cs, 10 * cs, cs, 10 * cs, cs, t));
    expect_map_as_qemu(label, t);

    struct map m;
    qvet_map(t, NULL, &m);
    static const struct kind kinds[] = {
        { "the base's data", 0, 1, true, false, true, true },
        { "unallocated in both", 1, 1, false, true, false, false },
        { "the overlay's data", 2, 0, true, false, true, true },
        { "a compressed cluster", 4, 0, true, false, true, false },
        { "a zero flag without a cluster", 6, 0, true, true, false, false },
        { "a zero flag on an allocated cluster", 8, 0, true, true, false, true },
        { "a discarded cluster over a backing file", 10, 0, true, true, false, false },
        { "past the end of the base", 20, 0, false, true, false, false },
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        expect_kind(label, &m, cs, &kinds[i]);
}
END_TEST

START_TEST(extended_l2_subclusters_map_one_by_one)
{
    const char *path = test_path("xl2.qcow2");
    /* 64 KiB clusters, 2 KiB subclusters. */
    run_ok("make the image",
           test_run("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=64k '%s' 1M && "
                    "qemu-io -c 'write -P 1 0 2k' -c 'write -P 2 4k 4k' -c 'write -z 8k 2k' "
                    "-c 'write -P 3 64k 64k' -c 'write -z -u 128k 64k' '%s' >/dev/null",
                    path, path));
    expect_map_as_qemu("extended L2", path);
    struct map m;
    qvet_map(path, NULL, &m);
    static const struct kind kinds[] = {
        /* 2 KiB "clusters" here: index x is guest offset x * 2048. */
        { "an allocated subcluster", 0, 0, true, false, true, true },
        { "an unallocated subcluster of an allocated cluster", 1, 0, false, true, false, true },
        { "a zero subcluster of an allocated cluster", 4, 0, true, true, false, true },
        { "a whole cluster of zero subclusters without a cluster", 64, 0, true, true, false,
          false },
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        expect_kind("extended L2", &m, 2048, &kinds[i]);
}
END_TEST

START_TEST(a_raw_backing_file_shows_its_holes)
{
    const char *raw = test_path("holes.raw"), *top = test_path("over-raw.qcow2");
    run_ok("make the raw file",
           test_run("truncate -s 2M '%s' && printf abc | dd of='%s' bs=1 seek=1048576 "
                    "conv=notrunc 2>/dev/null", raw, raw));
    run_ok("make the overlay",
           test_run("qemu-img create -q -f qcow2 -b '%s' -F raw '%s' && "
                    "qemu-io -c 'write -P 9 0 4k' '%s' >/dev/null", raw, top, top));
    expect_map_as_qemu("over a sparse raw file", top);
    struct map m;
    qvet_map(top, NULL, &m);
    static const struct kind kinds[] = {
        { "a hole of the raw file", 1, 1, true, true, false, true },
        { "data in the raw file", 16, 1, true, false, true, true },
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        expect_kind("over a sparse raw file", &m, 65536, &kinds[i]);
}
END_TEST

START_TEST(a_three_level_chain_reports_the_layer_that_defines_each_range)
{
    const char *raw = test_path("chain.raw"), *mid = test_path("chain-mid.qcow2"),
               *top = test_path("chain-top.qcow2");
    run_ok("make the chain",
           test_run("qemu-img create -q -f raw '%s' 4M && "
                    "qemu-io -f raw -c 'write -P 1 0 1M' '%s' >/dev/null && "
                    "qemu-img create -q -f qcow2 -b '%s' -F raw '%s' && "
                    "qemu-io -c 'write -P 2 512k 512k' '%s' >/dev/null && "
                    "qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s' && "
                    "qemu-io -c 'write -P 3 768k 64k' -c 'write -z 2M 64k' '%s' >/dev/null",
                    raw, raw, raw, mid, mid, mid, top, top));
    expect_map_as_qemu("three levels", top);
    struct map m;
    qvet_map(top, NULL, &m);
    static const struct kind kinds[] = {
        { "the raw file's data", 0, 2, true, false, true, true },
        { "the middle image's data", 8, 1, true, false, true, true },
        { "the top image's data", 12, 0, true, false, true, true },
        { "the top image's zero flag", 32, 0, true, true, false, false },
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        expect_kind("three levels", &m, 65536, &kinds[i]);
}
END_TEST

/*
 * QEMU guesses metadata preallocation from the refcounts and then asks the host file
 * for holes inside allocated clusters: such ranges are both zero and data
 * (docs/format.md §13.11).
 */
START_TEST(metadata_preallocation_asks_the_host_for_holes)
{
    const char *path = test_path("prealloc.qcow2");
    run_ok("make the image",
           test_run("qemu-img create -q -f qcow2 -o preallocation=metadata '%s' 1M && "
                    "qemu-io -c 'write -P 4 64k 4k' '%s' >/dev/null", path, path));
    expect_map_as_qemu("metadata preallocation", path);
    struct map m;
    qvet_map(path, NULL, &m);
    static const struct kind kinds[] = {
        { "a preallocated cluster never written", 0, 0, true, true, true, true },
        { "the written bytes", 16, 0, true, false, true, true },
        { "the unwritten rest of that cluster", 17, 0, true, true, true, true },
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        expect_kind("metadata preallocation", &m, 4096, &kinds[i]);
}
END_TEST

START_TEST(a_v2_zero_write_without_backing_deallocates)
{
    const char *path = test_path("v2.qcow2");
    run_ok("make the image",
           test_run("qemu-img create -q -f qcow2 -o compat=0.10 '%s' 1M && "
                    "qemu-io -c 'write -P 4 0 128k' -c 'write -z 0 64k' '%s' >/dev/null",
                    path, path));
    expect_map_as_qemu("version 2", path);
    struct map m;
    qvet_map(path, NULL, &m);
    static const struct kind kind = { "a zeroed cluster", 0, 0, false, true, false, false };
    expect_kind("version 2", &m, 65536, &kind);
}
END_TEST

/* Opened at a snapshot, the map is the one the image had when the snapshot was taken. */
START_TEST(a_snapshot_maps_as_the_image_did_when_it_was_taken)
{
    const char *path = test_path("snap.qcow2"), *then = test_path("snap-then.qcow2");
    run_ok("make the image",
           test_run("qemu-img create -q -f qcow2 '%s' 1M && "
                    "qemu-io -c 'write -P 1 0 128k' -c 'write -z 256k 64k' '%s' >/dev/null && "
                    "qemu-img snapshot -c before '%s' && cp --sparse=always '%s' '%s' && "
                    "qemu-io -c 'write -P 2 64k 128k' -c 'discard 0 64k' '%s' >/dev/null",
                    path, path, path, path, then, path));
    struct map want, got;
    qemu_map(then, &want);
    struct qcow2_open_options at_snapshot = { .snapshot = "before" };
    qvet_map(path, &at_snapshot, &got);
    expect_same_maps("snapshot \"before\"", &want, &got);
    expect_map_as_qemu("the active state after the snapshot", path);
}
END_TEST

/* ---- the request and the merge rule ---------------------------------------------- */

START_TEST(a_request_outside_the_disk_is_refused)
{
    const char *path = test_path("small.qcow2");
    run_ok("qemu-img create", test_run("qemu-img create -q -f qcow2 '%s' 1M", path));
    struct qcow2_image *img = open_image(path, NULL);
    struct qcow2_map_entry e;
    struct qcow2_error err;
    static const struct { uint64_t off, len; } bad[] = {
        { 1u << 20, 512 }, { (1u << 20) + 4096, 1 }, { UINT64_MAX - 1, 1 }, { 0, 0 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int ret = qcow2_map_status(img, bad[i].off, bad[i].len, &e, &err);
        ck_assert_msg(ret == -EINVAL, "map %" PRIu64 "+%" PRIu64 " of a 1 MiB disk: expected "
                      "-EINVAL, got %d", bad[i].off, bad[i].len, ret);
        ck_assert_msg(!strcmp(err.structure, "map request") && !strchr(err.message, '\n') &&
                          !strcmp(err.file, path),
                      "map %" PRIu64 "+%" PRIu64 ": expected a one-line \"map request\" error "
                      "naming %s, got \"%s\" in %s: %s", bad[i].off, bad[i].len, path,
                      err.structure, err.file, err.message);
    }
    /* A length past the end is cut at the end. */
    int ret = qcow2_map_status(img, (1u << 20) - 512, 1u << 20, &e, &err);
    ck_assert_msg(ret == 0 && e.start == (1u << 20) - 512 && e.length == 512,
                  "map of the last sector with a long length: expected 512 bytes at %u, got "
                  "%d, %" PRIu64 " bytes at %" PRIu64, (1u << 20) - 512, ret, e.length,
                  e.start);
    qcow2_close(img);
}
END_TEST

START_TEST(merging_needs_equal_flags_and_contiguous_offsets)
{
    const struct qcow2_map_entry data = { .start = 0, .length = 4096, .present = true,
                                          .data = true, .has_offset = true, .offset = 65536 };
    struct qcow2_map_entry next = data;
    next.start = 4096;
    next.offset = 65536 + 4096;
    struct {
        const char *what;
        struct qcow2_map_entry a, b;
        bool mergeable;
    } cases[] = {
        { "contiguous data", data, next, true },
        { "data with a gap in the host file", data, next, false },
        { "an empty first range", data, next, false },
        { "another depth", data, next, false },
        { "zero next to data", data, next, false },
        { "no offsets, same flags", data, next, true },
        { "one with an offset, one without", data, next, false },
    };
    cases[1].b.offset += 512;
    cases[2].a.length = 0;
    cases[3].b.depth = 1;
    cases[4].b.zero = true;
    cases[5].a.has_offset = cases[5].b.has_offset = false;
    cases[5].b.offset = 7;
    cases[6].b.has_offset = false;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = qcow2_map_entries_mergeable(&cases[i].a, &cases[i].b);
        ck_assert_msg(got == cases[i].mergeable, "%s: expected %s, got %s", cases[i].what,
                      cases[i].mergeable ? "mergeable" : "not mergeable",
                      got ? "mergeable" : "not mergeable");
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("map");
    TCase *images = tcase_create("images");
    tcase_set_timeout(images, 120);
    tcase_add_loop_test(images, each_kind_of_entry_maps_as_qemu_img_map_shows_it, 0,
                        sizeof(cluster_sizes) / sizeof(cluster_sizes[0]));
    tcase_add_test(images, extended_l2_subclusters_map_one_by_one);
    tcase_add_test(images, a_raw_backing_file_shows_its_holes);
    tcase_add_test(images, a_three_level_chain_reports_the_layer_that_defines_each_range);
    tcase_add_test(images, metadata_preallocation_asks_the_host_for_holes);
    tcase_add_test(images, a_v2_zero_write_without_backing_deallocates);
    tcase_add_test(images, a_snapshot_maps_as_the_image_did_when_it_was_taken);
    suite_add_tcase(s, images);
    TCase *api = tcase_create("api");
    tcase_add_test(api, a_request_outside_the_disk_is_refused);
    tcase_add_test(api, merging_needs_equal_flags_and_contiguous_offsets);
    suite_add_tcase(s, api);
    return test_run_suite(s);
}
