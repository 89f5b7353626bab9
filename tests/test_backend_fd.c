/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The file-descriptor backend's locks: the bytes QEMU 7.2's file driver locks for each
 * kind of user (docs/locking.md), and the refusals they cause between two processes
 * (a forked child holds the file) and between two opens of one process.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qcow2.h"
#include "support.h"

/* The bytes 100..103 and 200..203 another open file holds, as a bit mask (bit k: 100+k, bit 4+k: 200+k). */
static unsigned held_bytes(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    unsigned mask = 0;
    for (unsigned k = 0; k < 8; k++) {
        struct flock fl;
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = (off_t)((k < 4 ? 100 : 196) + k);
        fl.l_len = 1;
        ck_assert_int_eq(fcntl(fd, F_OFD_GETLK, &fl), 0);
        if (fl.l_type != F_UNLCK)
            mask |= 1u << k;
    }
    close(fd);
    return mask;
}

#define BYTE(n) (1u << ((n) < 200 ? (n) - 100 : (n) - 200 + 4))

static const char *plain_file(const char *name)
{
    const char *path = test_path(name);
    ck_assert_int_eq(test_write_file(path, "0123456789", 10), 0);
    return path;
}

static int open_as(const char *path, enum qcow2_format format, bool writable, bool force_share,
                   struct qcow2_backend **b, struct qcow2_error *err)
{
    struct qcow2_fd_options o = qcow2_fd_options_for(format, writable, force_share);
    memset(err, 0, sizeof(*err));
    return qcow2_backend_fd_open_with(path, &o, b, err);
}

START_TEST(bytes_locked_for_each_kind_of_user)
{
    static const struct {
        enum qcow2_format format;
        bool writable, force_share;
        unsigned want;
    } users[] = {
        /* What qemu-io holds on a qcow2 image read-write, read-only, read-only -U. */
        { QCOW2_FORMAT_QCOW2, true, false, BYTE(100) | BYTE(101) | BYTE(103) | BYTE(201) |
                                           BYTE(203) },
        { QCOW2_FORMAT_QCOW2, false, false, BYTE(100) | BYTE(201) | BYTE(203) },
        { QCOW2_FORMAT_QCOW2, false, true, BYTE(100) },
        /* A raw backing file under a qcow2 image. */
        { QCOW2_FORMAT_RAW, false, false, BYTE(100) },
    };
    const char *path = plain_file("bytes");
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        struct qcow2_backend *b;
        struct qcow2_error err;
        ck_assert_int_eq(open_as(path, users[i].format, users[i].writable, users[i].force_share,
                                 &b, &err), 0);
        unsigned got = held_bytes(path);
        ck_assert_msg(got == users[i].want, "user %zu: bytes held 0x%02x, expected 0x%02x", i,
                      got, users[i].want);
        qcow2_backend_destroy(b);
        ck_assert_uint_eq(held_bytes(path), 0);   /* closing drops them all */
    }
}
END_TEST

/* ---- a forked child holds the file ------------------------------------------------ */

struct holder {
    pid_t pid;
    int release_fd;                 /* closing it lets the child close the file and exit */
};

/* Forks a child that opens `path` as given, reports, and holds it until released. */
static struct holder hold(const char *path, enum qcow2_format format, bool writable,
                          bool force_share)
{
    int ready[2], release[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(release), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        close(release[1]);
        struct qcow2_backend *b;
        struct qcow2_error err;
        char status = open_as(path, format, writable, force_share, &b, &err) ? 'E' : 'K';
        if (write(ready[1], &status, 1) != 1)
            _exit(3);
        char c;
        while (read(release[0], &c, 1) > 0)
            continue;
        if (status == 'K')
            qcow2_backend_destroy(b);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    char status = 0;
    ck_assert_int_eq(read(ready[0], &status, 1), 1);
    close(ready[0]);
    ck_assert_msg(status == 'K', "the child could not open %s", path);
    return (struct holder){ .pid = pid, .release_fd = release[1] };
}

static void release(struct holder *h)
{
    close(h->release_fd);
    int st;
    ck_assert_int_eq(waitpid(h->pid, &st, 0), h->pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Expects an open refused for the lock on `byte`, with a message naming it. */
static void expect_refused(const char *path, bool writable, bool force_share, unsigned byte,
                           const char *perm_name)
{
    struct qcow2_backend *b;
    struct qcow2_error err;
    int ret = open_as(path, QCOW2_FORMAT_QCOW2, writable, force_share, &b, &err);
    ck_assert_msg(ret == -EAGAIN, "%s open: expected -EAGAIN, got %d (%s)",
                  writable ? "read-write" : "read-only", ret, err.message);
    ck_assert_str_eq(err.structure, "file lock");
    ck_assert_uint_eq(err.offset, byte);
    ck_assert_str_eq(err.file, path);
    ck_assert_msg(strstr(err.message, perm_name) && !strchr(err.message, '\n'),
                  "message should name the \"%s\" lock on one line: %s", perm_name,
                  err.message);
}

static void expect_allowed(const char *path, enum qcow2_format format, bool writable,
                           bool force_share)
{
    struct qcow2_backend *b;
    struct qcow2_error err;
    int ret = open_as(path, format, writable, force_share, &b, &err);
    ck_assert_msg(ret == 0, "%s open: expected success, got %d (%s)",
                  writable ? "read-write" : "read-only", ret, err.message);
    qcow2_backend_destroy(b);
}

START_TEST(a_writer_keeps_out_writers_and_plain_readers)
{
    const char *path = plain_file("writer");
    struct holder h = hold(path, QCOW2_FORMAT_QCOW2, true, false);
    expect_refused(path, true, false, 201, "\"write\"");   /* it does not share write */
    expect_refused(path, false, false, 101, "\"write\"");  /* a reader shares no write */
    expect_allowed(path, QCOW2_FORMAT_QCOW2, false, true); /* -U: shares everything */
    expect_allowed(path, QCOW2_FORMAT_RAW, false, false);  /* a raw reader shares too */
    release(&h);
    expect_allowed(path, QCOW2_FORMAT_QCOW2, true, false);
}
END_TEST

START_TEST(a_reader_keeps_out_writers_only)
{
    const char *path = plain_file("reader");
    struct holder h = hold(path, QCOW2_FORMAT_QCOW2, false, false);
    expect_refused(path, true, false, 201, "\"write\"");
    expect_allowed(path, QCOW2_FORMAT_QCOW2, false, false);
    expect_allowed(path, QCOW2_FORMAT_QCOW2, false, true);
    release(&h);
    expect_allowed(path, QCOW2_FORMAT_QCOW2, true, false);
}
END_TEST

START_TEST(a_force_share_reader_keeps_out_nobody)
{
    const char *path = plain_file("shared");
    struct holder h = hold(path, QCOW2_FORMAT_QCOW2, false, true);
    expect_allowed(path, QCOW2_FORMAT_QCOW2, true, false);
    expect_allowed(path, QCOW2_FORMAT_QCOW2, false, false);
    release(&h);
}
END_TEST

START_TEST(refused_message_suggests_force_share_to_readers_only)
{
    const char *path = plain_file("hint");
    struct holder h = hold(path, QCOW2_FORMAT_QCOW2, true, false);
    struct qcow2_backend *b;
    struct qcow2_error err;
    ck_assert_int_eq(open_as(path, QCOW2_FORMAT_QCOW2, false, false, &b, &err), -EAGAIN);
    ck_assert_msg(strstr(err.message, "-U"), "a reader should be told of -U: %s", err.message);
    ck_assert_int_eq(open_as(path, QCOW2_FORMAT_QCOW2, true, false, &b, &err), -EAGAIN);
    ck_assert_msg(!strstr(err.message, "-U"), "-U cannot help a writer: %s", err.message);
    release(&h);
}
END_TEST

/* ---- through the image API -------------------------------------------------------- */

static void make_image(const char *path, const char *options)
{
    struct qcow2_create_options o;
    struct qcow2_error err;
    qcow2_create_options_init(&o);
    char *text = strdup(options);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(qcow2_create_options_parse(&o, text, &err), 0);
    ck_assert_msg(qcow2_create(path, &o, &err) == 0, "create %s: %s", path, err.message);
    free(text);
}

START_TEST(two_opens_in_one_process_conflict_too)
{
    /* The locks belong to the open file, not the process, as QEMU's do. */
    const char *path = test_path("one-process.qcow2");
    make_image(path, "size=1M");
    struct qcow2_open_options rw = { .writable = true }, ro = { 0 }, shared = { .force_share = true };
    struct qcow2_image *a, *b;
    struct qcow2_error err;
    ck_assert_int_eq(qcow2_open(path, &rw, &a, &err), 0);
    ck_assert_int_eq(qcow2_open(path, &ro, &b, &err), -EAGAIN);
    ck_assert_uint_eq(err.offset, 101);
    ck_assert_int_eq(qcow2_open(path, &shared, &b, &err), 0);
    qcow2_close(b);
    struct qcow2_open_options unlocked = { .writable = true, .no_locks = true };
    ck_assert_int_eq(qcow2_open(path, &unlocked, &b, &err), 0);
    qcow2_close(b);
    qcow2_close(a);
    ck_assert_int_eq(qcow2_open(path, &ro, &b, &err), 0);
    qcow2_close(b);
}
END_TEST

START_TEST(force_share_is_for_readers)
{
    const char *path = test_path("force-share-rw.qcow2");
    make_image(path, "size=1M");
    struct qcow2_open_options o = { .writable = true, .force_share = true };
    struct qcow2_image *img;
    struct qcow2_error err;
    ck_assert_int_eq(qcow2_open(path, &o, &img, &err), -EINVAL);
    ck_assert_msg(strstr(err.message, "read-only"), "%s", err.message);
}
END_TEST

START_TEST(backing_files_are_locked_as_read_only)
{
    const char *base = test_path("base.qcow2"), *top = test_path("top.qcow2");
    make_image(base, "size=1M");
    make_image(top, "size=1M,backing_file=base.qcow2,backing_fmt=qcow2");
    struct qcow2_open_options rw = { .writable = true };
    struct qcow2_image *img;
    struct qcow2_error err;
    ck_assert_int_eq(qcow2_open(top, &rw, &img, &err), 0);
    ck_assert_uint_eq(held_bytes(base), BYTE(100) | BYTE(201) | BYTE(203));
    ck_assert_uint_eq(held_bytes(top),
                      BYTE(100) | BYTE(101) | BYTE(103) | BYTE(201) | BYTE(203));
    /* Nobody may write the backing file under the chain; readers are welcome. */
    struct holder h = hold(base, QCOW2_FORMAT_QCOW2, false, false);
    release(&h);
    expect_refused(base, true, false, 201, "\"write\"");
    qcow2_close(img);
    ck_assert_uint_eq(held_bytes(base), 0);
    ck_assert_uint_eq(held_bytes(top), 0);
}
END_TEST

START_TEST(create_refuses_a_held_image_and_leaves_it_alone)
{
    const char *path = test_path("held.qcow2");
    make_image(path, "size=1M");
    size_t before_len, after_len;
    uint8_t *before = test_read_file(path, &before_len);
    ck_assert_ptr_nonnull(before);
    struct holder h = hold(path, QCOW2_FORMAT_QCOW2, false, false);
    struct qcow2_create_options o;
    struct qcow2_error err;
    qcow2_create_options_init(&o);
    o.size = 4u << 20;
    o.has_size = true;
    ck_assert_int_eq(qcow2_create(path, &o, &err), -EAGAIN);
    ck_assert_str_eq(err.structure, "file lock");
    uint8_t *after = test_read_file(path, &after_len);
    ck_assert_ptr_nonnull(after);
    ck_assert_msg(before_len == after_len && !memcmp(before, after, before_len),
                  "a refused create changed the image");
    release(&h);
    ck_assert_int_eq(qcow2_create(path, &o, &err), 0);
    free(before);
    free(after);
}
END_TEST

static Suite *backend_fd_suite(void)
{
    Suite *s = suite_create("backend_fd");
    TCase *tc = tcase_create("locks");
    tcase_add_test(tc, bytes_locked_for_each_kind_of_user);
    tcase_add_test(tc, a_writer_keeps_out_writers_and_plain_readers);
    tcase_add_test(tc, a_reader_keeps_out_writers_only);
    tcase_add_test(tc, a_force_share_reader_keeps_out_nobody);
    tcase_add_test(tc, refused_message_suggests_force_share_to_readers_only);
    tcase_add_test(tc, two_opens_in_one_process_conflict_too);
    tcase_add_test(tc, force_share_is_for_readers);
    tcase_add_test(tc, backing_files_are_locked_as_read_only);
    tcase_add_test(tc, create_refuses_a_held_image_and_leaves_it_alone);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(backend_fd_suite());
}
