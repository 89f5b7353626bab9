/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Backing files (docs/format.md §9): resolving stored names, refusing protocol names, and
 * opening real chains made with qemu-img.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backing.h"
#include "qcow2.h"
#include "support.h"

/* ---- name resolution ------------------------------------------------------------- */

static void expect_resolved(const char *image, const char *name, const char *want)
{
    char *out = NULL;
    ck_assert_int_eq(backing_resolve(image, name, &out), 0);
    ck_assert_msg(out && !strcmp(out, want), "image \"%s\", name \"%s\": expected \"%s\", got \"%s\"",
                  image, name, want, out ? out : "(null)");
    free(out);
}

START_TEST(resolve_absolute_name)
{
    expect_resolved("dir/img.qcow2", "/abs/base.qcow2", "/abs/base.qcow2");
    expect_resolved("/x/y/img.qcow2", "/base", "/base");
    expect_resolved("img.qcow2", "/abs/base", "/abs/base");
}
END_TEST

START_TEST(resolve_relative_name_against_image_directory)
{
    expect_resolved("dir/img", "base", "dir/base");
    expect_resolved("dir/img", "sub/base.qcow2", "dir/sub/base.qcow2");
    expect_resolved("dir/img", "../other/base", "dir/../other/base");
    expect_resolved("/x/y.qcow2", "z.qcow2", "/x/z.qcow2");
    expect_resolved("/y.qcow2", "z.qcow2", "/z.qcow2");
    expect_resolved("./img", "base", "./base");
}
END_TEST

START_TEST(resolve_image_without_directory)
{
    expect_resolved("img.qcow2", "base.qcow2", "base.qcow2");
    expect_resolved("img.qcow2", "sub/base.qcow2", "sub/base.qcow2");
}
END_TEST

START_TEST(resolve_nested_image)
{
    expect_resolved("a/b/c.qcow2", "d.qcow2", "a/b/d.qcow2");
    expect_resolved("a/b/c.qcow2", "e/f.qcow2", "a/b/e/f.qcow2");
}
END_TEST

START_TEST(protocol_names)
{
    static const struct { const char *name; bool protocol; } cases[] = {
        { "nbd:x", true },
        { "json:{\"driver\":\"qcow2\",\"file\":{\"filename\":\"a\"}}", true },
        { "file:x", true },
        { "a:b", true },
        { "nbd://host:10809/export", true },
        { "./a:b", false },
        { "a/b:c", false },
        { "/abs/a:b", false },
        { "base.qcow2", false },
        { "", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = backing_name_has_protocol(cases[i].name);
        ck_assert_msg(got == cases[i].protocol, "\"%s\": expected %s, got %s", cases[i].name,
                      cases[i].protocol ? "protocol" : "plain name",
                      got ? "protocol" : "plain name");
    }
}
END_TEST

START_TEST(format_names)
{
    enum qcow2_format f = (enum qcow2_format)-1;
    ck_assert_int_eq(backing_format_parse("qcow2", &f), 0);
    ck_assert_int_eq(f, QCOW2_FORMAT_QCOW2);
    ck_assert_int_eq(backing_format_parse("raw", &f), 0);
    ck_assert_int_eq(f, QCOW2_FORMAT_RAW);
    static const char *const bad[] = { "vmdk", "", "QCOW2", "qcow", "qcow2 ", "raw\n", "file" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(backing_format_parse(bad[i], &f) == -ENOTSUP,
                      "format \"%s\" should be refused with -ENOTSUP", bad[i]);
}
END_TEST

/* ---- real chains made by qemu-img ------------------------------------------------ */

#define MIB (1u << 20)

static void run_ok(const char *what, int status)
{
    ck_assert_msg(status == 0, "%s failed (exit %d)", what, status);
}

/* A fresh directory under test_dir() per test (tests may share a process). */
static const char *fresh_dir(const char *name)
{
    static char dir[600];
    snprintf(dir, sizeof(dir), "%s/%s", test_dir(), name);
    run_ok("mkdir", test_run("rm -rf '%s' && mkdir -p '%s/sub'", dir, dir));
    return dir;
}

static void write_pattern_file(const char *path, size_t len, uint32_t seed, uint8_t **data)
{
    uint8_t *d = malloc(len);
    ck_assert_ptr_nonnull(d);
    test_fill_random(d, len, seed);
    ck_assert_int_eq(test_write_file(path, d, len), 0);
    *data = d;
}

static struct qcow2_image *open_ok(const char *path)
{
    struct qcow2_image *img = NULL;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = qcow2_open(path, NULL, &img, &err);
    ck_assert_msg(ret == 0, "open \"%s\": %d %s", path, ret, err.message);
    return img;
}

static void expect_read(struct qcow2_image *img, uint64_t off, size_t len, const uint8_t *want,
                        const char *what)
{
    uint8_t *buf = malloc(len);
    struct qcow2_error err;
    memset(buf, 0xEE, len);
    int ret = qcow2_pread(img, buf, len, off, &err);
    ck_assert_msg(ret == 0, "%s: read %" PRIu64 "+%zu failed: %s", what, off, len, err.message);
    size_t i = 0;
    while (i < len && buf[i] == want[i])
        i++;
    uint8_t got = i < len ? buf[i] : 0, expected = i < len ? want[i] : 0;
    free(buf);
    ck_assert_msg(i == len, "%s: byte %" PRIu64 " is 0x%02x, expected 0x%02x", what, off + i,
                  got, expected);
}

/* The current directory, restored after each test that changes it. */
static char saved_cwd[PATH_MAX];

static void save_cwd(void)
{
    ck_assert_ptr_nonnull(getcwd(saved_cwd, sizeof(saved_cwd)));
}

static void restore_cwd(void)
{
    ck_assert_int_eq(chdir(saved_cwd), 0);
}

START_TEST(relative_name_resolved_from_another_cwd)
{
    const char *dir = fresh_dir("relative");
    char path[700];
    uint8_t *base;
    snprintf(path, sizeof(path), "%s/sub/base.raw", dir);
    write_pattern_file(path, MIB, 1, &base);
    run_ok("qemu-img convert",
           test_run("cd '%s/sub' && qemu-img convert -q -f raw -O qcow2 base.raw base.qcow2", dir));
    run_ok("qemu-img create",
           test_run("cd '%s/sub' && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2",
                    dir));
    run_ok("qemu-io write",
           test_run("cd '%s/sub' && qemu-io -f qcow2 -c 'write -q -P 0xab 65536 4096' ov.qcow2"
                    " >/dev/null", dir));
    uint8_t *want = malloc(MIB);
    memcpy(want, base, MIB);
    memset(want + 65536, 0xAB, 4096);

    save_cwd();
    /* From the parent directory: "base.qcow2" must resolve to sub/base.qcow2. */
    ck_assert_int_eq(chdir(dir), 0);
    struct qcow2_image *img = open_ok("sub/ov.qcow2");
    struct qcow2_info info;
    ck_assert_int_eq(qcow2_get_info(img, &info), 0);
    ck_assert_str_eq(info.backing_name, "base.qcow2");
    ck_assert_str_eq(info.backing_format, "qcow2");
    ck_assert_str_eq(info.backing_path, "sub/base.qcow2");
    ck_assert_ptr_nonnull(qcow2_backing_image(img));
    expect_read(img, 0, MIB, want, "sub/ov.qcow2 from its parent directory");
    qcow2_close(img);

    /* From "/" with an absolute path. */
    ck_assert_int_eq(chdir("/"), 0);
    snprintf(path, sizeof(path), "%s/sub/ov.qcow2", dir);
    img = open_ok(path);
    expect_read(img, 60000, 20000, want + 60000, "absolute path from /");
    qcow2_close(img);
    restore_cwd();
    free(want);
    free(base);
}
END_TEST

START_TEST(each_level_resolves_against_its_own_directory)
{
    /* top.qcow2 -> sub/mid.qcow2 -> "base.raw", which is sub/base.raw; a decoy
       base.raw next to top.qcow2 must not be used. */
    const char *dir = fresh_dir("levels");
    char path[700];
    uint8_t *base, *decoy;
    snprintf(path, sizeof(path), "%s/sub/base.raw", dir);
    write_pattern_file(path, MIB, 2, &base);
    snprintf(path, sizeof(path), "%s/base.raw", dir);
    write_pattern_file(path, MIB, 3, &decoy);
    run_ok("create mid",
           test_run("cd '%s/sub' && qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 &&"
                    " qemu-io -f qcow2 -c 'write -q -P 0x22 0 4096' mid.qcow2 >/dev/null", dir));
    run_ok("create top",
           test_run("cd '%s' && qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 top.qcow2"
                    " && qemu-io -f qcow2 -c 'write -q -P 0x33 8192 4096' top.qcow2 >/dev/null",
                    dir));
    uint8_t *want = malloc(MIB);
    memcpy(want, base, MIB);
    memset(want, 0x22, 4096);
    memset(want + 8192, 0x33, 4096);

    save_cwd();
    /* An image name without a directory. */
    ck_assert_int_eq(chdir(dir), 0);
    struct qcow2_image *img = open_ok("top.qcow2");
    struct qcow2_image *mid = qcow2_backing_image(img);
    ck_assert_ptr_nonnull(mid);
    struct qcow2_info info;
    ck_assert_int_eq(qcow2_get_info(mid, &info), 0);
    ck_assert_str_eq(info.backing_path, "sub/base.raw");
    ck_assert_ptr_nonnull(qcow2_backing_image(mid));
    ck_assert_ptr_null(qcow2_backing_image(qcow2_backing_image(mid)));
    expect_read(img, 0, MIB, want, "three-level chain");
    qcow2_close(img);
    restore_cwd();
    free(want);
    free(base);
    free(decoy);
}
END_TEST

static uint64_t stored_backing_offset(const char *path)
{
    size_t len;
    uint8_t *d = test_read_file(path, &len);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_ge(len, 16);
    uint64_t off = test_get_be64(d + 8);
    free(d);
    return off;
}

START_TEST(missing_backing_file_named)
{
    const char *dir = fresh_dir("missing");
    char ov[700];
    snprintf(ov, sizeof(ov), "%s/sub/ov.qcow2", dir);
    run_ok("create",
           test_run("cd '%s/sub' && qemu-img create -q -f qcow2 base-gone.qcow2 1M &&"
                    " qemu-img create -q -f qcow2 -b base-gone.qcow2 -F qcow2 ov.qcow2 &&"
                    " rm base-gone.qcow2", dir));
    struct qcow2_image *img = NULL;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = qcow2_open(ov, NULL, &img, &err);
    ck_assert_int_eq(ret, -ENOENT);
    ck_assert_ptr_null(img);
    ck_assert_str_eq(err.file, ov);                         /* the overlay ... */
    ck_assert_msg(strstr(err.message, "sub/base-gone.qcow2"),  /* ... and the backing file */
                  "message \"%s\" does not name the backing file", err.message);
    ck_assert_str_eq(err.structure, "backing file name");
    ck_assert_uint_eq(err.offset, stored_backing_offset(ov));

    /* With no_backing the overlay itself opens, and still says where its backing file is
     * (qemu-img info's full-backing-filename, shown even when the file is gone). */
    struct qcow2_open_options o = { .no_backing = true };
    ret = qcow2_open(ov, &o, &img, &err);
    ck_assert_msg(ret == 0, "open without backing: %s", err.message);
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    ck_assert_str_eq(info.backing_name, "base-gone.qcow2");
    char want[800];
    snprintf(want, sizeof(want), "%s/sub/base-gone.qcow2", dir);
    ck_assert_ptr_nonnull(info.backing_path);
    ck_assert_str_eq(info.backing_path, want);
    ck_assert_ptr_null(qcow2_backing_image(img));
    qcow2_close(img);
}
END_TEST

START_TEST(self_looping_chain_refused)
{
    const char *dir = fresh_dir("loop");
    char path[700];
    snprintf(path, sizeof(path), "%s/loop.qcow2", dir);
    run_ok("create",
           test_run("cd '%s' && qemu-img create -q -f qcow2 loop.qcow2 1M &&"
                    " qemu-img rebase -u -b loop.qcow2 -F qcow2 loop.qcow2", dir));
    struct qcow2_image *img = NULL;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = qcow2_open(path, NULL, &img, &err);
    ck_assert_int_eq(ret, -ELOOP);
    ck_assert_ptr_null(img);
    ck_assert_msg(strstr(err.message, "loop"), "message \"%s\" does not say the chain loops",
                  err.message);
    ck_assert_str_eq(err.file, path);
}
END_TEST

START_TEST(two_image_loop_refused)
{
    const char *dir = fresh_dir("loop2");
    char path[700];
    snprintf(path, sizeof(path), "%s/a.qcow2", dir);
    run_ok("create",
           test_run("cd '%s' && qemu-img create -q -f qcow2 a.qcow2 1M &&"
                    " qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2 &&"
                    " qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2", dir));
    struct qcow2_image *img = NULL;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = qcow2_open(path, NULL, &img, &err);
    ck_assert_int_eq(ret, -ELOOP);
    ck_assert_ptr_null(img);
    ck_assert_msg(strstr(err.message, "loop"), "message \"%s\"", err.message);
}
END_TEST

START_TEST(protocol_backing_name_refused)
{
    const char *dir = fresh_dir("protocol");
    char path[700];
    snprintf(path, sizeof(path), "%s/p.qcow2", dir);
    run_ok("create",
           test_run("cd '%s' && qemu-img create -q -f qcow2 -u -b 'nbd:localhost:10809' -F raw"
                    " p.qcow2 1M", dir));
    struct qcow2_image *img = NULL;
    struct qcow2_error err;
    memset(&err, 0, sizeof(err));
    int ret = qcow2_open(path, NULL, &img, &err);
    ck_assert_int_eq(ret, -ENOTSUP);
    ck_assert_msg(strstr(err.message, "nbd:localhost:10809") && strstr(err.message, "protocol"),
                  "message \"%s\"", err.message);
    ck_assert_str_eq(err.file, path);
}
END_TEST

START_TEST(raw_backing_shorter_than_overlay)
{
    const char *dir = fresh_dir("short-raw");
    char path[700];
    const size_t base_len = MIB + 100;      /* not even a whole sector */
    uint8_t *base;
    snprintf(path, sizeof(path), "%s/base.raw", dir);
    write_pattern_file(path, base_len, 4, &base);
    run_ok("create",
           test_run("cd '%s' && qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2 4M",
                    dir));
    snprintf(path, sizeof(path), "%s/ov.qcow2", dir);
    uint8_t *want = calloc(1, 4 * MIB);
    memcpy(want, base, base_len);
    struct qcow2_image *img = open_ok(path);
    ck_assert_uint_eq(qcow2_virtual_size(img), 4 * MIB);
    expect_read(img, 0, 4 * MIB, want, "whole overlay");
    expect_read(img, MIB - 1000, 3000, want + MIB - 1000, "across the backing file's end");
    expect_read(img, 2 * MIB, 4096, want + 2 * MIB, "past the backing file");
    qcow2_close(img);
    free(want);
    free(base);
}
END_TEST

START_TEST(qcow2_backing_shorter_than_overlay)
{
    const char *dir = fresh_dir("short-qcow2");
    char path[700];
    uint8_t *base;
    snprintf(path, sizeof(path), "%s/base.raw", dir);
    write_pattern_file(path, MIB, 5, &base);
    run_ok("create",
           test_run("cd '%s' && qemu-img convert -q -f raw -O qcow2 base.raw base.qcow2 &&"
                    " qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 3M", dir));
    snprintf(path, sizeof(path), "%s/ov.qcow2", dir);
    uint8_t *want = calloc(1, 3 * MIB);
    memcpy(want, base, MIB);
    struct qcow2_image *img = open_ok(path);
    expect_read(img, 0, 3 * MIB, want, "qcow2 backing shorter than its overlay");
    qcow2_close(img);
    free(want);
    free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backing");

    TCase *tc = tcase_create("names");
    tcase_add_test(tc, resolve_absolute_name);
    tcase_add_test(tc, resolve_relative_name_against_image_directory);
    tcase_add_test(tc, resolve_image_without_directory);
    tcase_add_test(tc, resolve_nested_image);
    tcase_add_test(tc, protocol_names);
    tcase_add_test(tc, format_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("chains");
    tcase_add_test(tc, relative_name_resolved_from_another_cwd);
    tcase_add_test(tc, each_level_resolves_against_its_own_directory);
    tcase_add_test(tc, missing_backing_file_named);
    tcase_add_test(tc, self_looping_chain_refused);
    tcase_add_test(tc, two_image_loop_refused);
    tcase_add_test(tc, protocol_backing_name_refused);
    tcase_add_test(tc, raw_backing_shorter_than_overlay);
    tcase_add_test(tc, qcow2_backing_shorter_than_overlay);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
