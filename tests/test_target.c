/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The target seam (harness/target/target.h): the factory makes a target from a spec,
 * refuses what it cannot make with one line, and the qvet target works the same on a
 * file and in memory.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"
#include "target.h"

#define MIB (1u << 20)

static struct target_params file_params(const char *path)
{
    return (struct target_params){ .path = path, .size = 4 * MIB,
                                   .options = "cluster_size=4k" };
}

static void expect_refused(int ret, const char *errbuf, const char *want)
{
    ck_assert_int_eq(ret, -EINVAL);
    ck_assert_msg(strstr(errbuf, want) && !strchr(errbuf, '\n'), "the refusal '%s' does not "
                  "say '%s' on one line", errbuf, want);
}

START_TEST(the_factory_refuses_what_it_cannot_make_and_creates_nothing)
{
    char errbuf[512], path[1100];
    snprintf(path, sizeof(path), "%s", test_path("refused.qcow2"));
    struct target_params p = file_params(path);
    struct target *t = NULL;
    expect_refused(target_create("nosuch", &p, &t, errbuf, sizeof(errbuf)), errbuf,
                   "no target kind 'nosuch' (known: qvet, exec");
    expect_refused(target_create("exec", &p, &t, errbuf, sizeof(errbuf)), errbuf,
                   "target exec needs a command: exec:COMMAND");
    expect_refused(target_create("qvet:extra", &p, &t, errbuf, sizeof(errbuf)), errbuf,
                   "target qvet takes no argument (got 'qvet:extra')");
    p.options = "colour=blue";
    ck_assert_int_ne(target_create("qvet", &p, &t, errbuf, sizeof(errbuf)), 0);
    ck_assert_msg(strstr(errbuf, "image options: ") && strstr(errbuf, "colour"), "%s", errbuf);
    p.options = "cluster_size=3k";
    ck_assert_int_ne(target_create("qvet", &p, &t, errbuf, sizeof(errbuf)), 0);
    ck_assert_msg(strstr(errbuf, "creating the image: ") && strstr(errbuf, "cluster_size"),
                  "%s", errbuf);
    ck_assert_ptr_null(t);
    ck_assert_msg(access(path, F_OK) != 0, "a refused target left %s behind", path);

    ck_assert_int_ne(target_check_options("qvet", "colour=blue", errbuf, sizeof(errbuf)), 0);
    ck_assert_msg(strstr(errbuf, "image options: "), "%s", errbuf);
    ck_assert_int_eq(target_check_options("qvet", "cluster_size=64k,compat=0.10", errbuf,
                                          sizeof(errbuf)), 0);
    ck_assert_int_eq(target_check_options("qvet", "", errbuf, sizeof(errbuf)), 0);
    expect_refused(target_check_options("other", "", errbuf, sizeof(errbuf)), errbuf,
                   "no target kind 'other'");
}
END_TEST

/* Writes a pattern, reopens, reads it back: the same on every target and medium. */
static void write_reopen_read(struct target *t)
{
    uint8_t buf[4096], back[4096];
    memset(buf, 0x6b, sizeof(buf));
    ck_assert_msg(t->ops->write(t, buf, sizeof(buf), 8192) == 0, "%s", t->message);
    ck_assert_msg(t->ops->reopen(t) == 0, "%s", t->message);
    ck_assert_msg(t->ops->read(t, back, sizeof(back), 8192) == 0, "%s", t->message);
    ck_assert(!memcmp(buf, back, sizeof(buf)));
}

START_TEST(an_image_created_by_the_factory_opens_again_through_it)
{
    char errbuf[512], path[1100];
    snprintf(path, sizeof(path), "%s", test_path("made.qcow2"));
    struct target_params p = file_params(path);
    struct target *t;
    ck_assert_msg(target_create("qvet", &p, &t, errbuf, sizeof(errbuf)) == 0, "%s", errbuf);
    ck_assert(target_can(t, TARGET_CAN_WRITE | TARGET_CAN_SNAPSHOT | TARGET_CAN_RESIZE |
                                TARGET_CAN_REOPEN | TARGET_CAN_CHECK));
    struct target_facts f;
    ck_assert_int_eq(t->ops->facts(t, &f), 0);
    ck_assert_uint_eq(f.size, 4 * MIB);
    ck_assert_uint_eq(f.oracle.cluster_size, 4096);
    write_reopen_read(t);
    t->ops->close(t);
    ck_assert_int_eq(test_run("qemu-img check -q '%s'", path), 0);

    ck_assert_msg(target_open("qvet", &(struct target_params){ .path = path }, &t, errbuf,
                              sizeof(errbuf)) == 0, "%s", errbuf);
    uint8_t back[4096];
    ck_assert_int_eq(t->ops->read(t, back, sizeof(back), 8192), 0);
    ck_assert_int_eq(back[4095], 0x6b);
    t->ops->close(t);

    snprintf(path, sizeof(path), "%s", test_path("missing.qcow2"));
    ck_assert_int_ne(target_open("qvet", &(struct target_params){ .path = path }, &t, errbuf,
                                 sizeof(errbuf)), 0);
    ck_assert_msg(strstr(errbuf, "opening the image: ") && strstr(errbuf, path), "%s", errbuf);
}
END_TEST

START_TEST(a_target_in_memory_touches_no_file)
{
    char errbuf[512], path[1100];
    snprintf(path, sizeof(path), "%s", test_path("in-memory.qcow2"));
    struct target_params p = file_params(path);
    p.in_memory = true;
    p.max_file = 16 * MIB;
    struct target *t;
    ck_assert_msg(target_create("qvet", &p, &t, errbuf, sizeof(errbuf)) == 0, "%s", errbuf);
    write_reopen_read(t);
    char id[TARGET_ID_MAX];
    ck_assert_msg(t->ops->snapshot_create(t, "s1", id) == 0, "%s", t->message);
    uint8_t zeros[4096] = { 0 }, buf[4096];
    ck_assert_int_eq(t->ops->zero(t, sizeof(zeros), 8192, false), 0);
    ck_assert_msg(t->ops->snapshot_read(t, id, buf, sizeof(buf), 8192) == 0, "%s", t->message);
    ck_assert_int_eq(buf[0], 0x6b);
    ck_assert_int_eq(t->ops->read(t, buf, sizeof(buf), 8192), 0);
    ck_assert(!memcmp(buf, zeros, sizeof(buf)));
    struct target_check c;
    ck_assert_int_eq(t->ops->check(t, &c), 0);
    ck_assert_uint_eq(c.corruptions + c.leaks + c.check_errors, 0);
    t->ops->close(t);
    ck_assert_msg(access(path, F_OK) != 0, "a target in memory wrote %s", path);

    expect_refused(target_open("qvet", &p, &t, errbuf, sizeof(errbuf)), errbuf,
                   "an image in memory can only be created");
    p.backing = "base.raw";
    p.backing_format = "raw";
    expect_refused(target_create("qvet", &p, &t, errbuf, sizeof(errbuf)), errbuf,
                   "an image in memory has no backing file");
}
END_TEST

/* An exec adapter that breaks the protocol is refused in one line that says how. */
START_TEST(an_exec_adapter_that_breaks_the_protocol_is_refused)
{
    char errbuf[512], path[1100];
    snprintf(path, sizeof(path), "%s", test_path("exec.img"));
    struct target_params p = file_params(path);
    struct target *t = NULL;
    static const struct {
        const char *spec, *says;
    } cases[] = {
        /* "exited" or "closed its stdin or stdout": whichever qvet sees first. */
        { "exec:exit 0", "hello request: the adapter " },
        { "exec:cat >/dev/null & printf 'nonsense-nonsense!'", "does not start with \"QVX1\"" },
        /* A hello answer (status 0) without size or cluster_size. */
        { "exec:head -c 1 >/dev/null; printf 'QVX1\\0\\0\\0\\0\\7\\0\\0\\0\\0\\0\\0\\0"
          "name=x\\n'", "size (a multiple of 512) and cluster_size" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int ret = target_create(cases[i].spec, &p, &t, errbuf, sizeof(errbuf));
        ck_assert_msg(ret < 0, "%s: accepted", cases[i].spec);
        ck_assert_msg(strstr(errbuf, cases[i].says) && !strchr(errbuf, '\n'),
                      "%s: '%s' does not say '%s' on one line", cases[i].spec, errbuf,
                      cases[i].says);
        ck_assert_ptr_null(t);
    }
}
END_TEST

static Suite *target_suite(void)
{
    Suite *s = suite_create("target");
    TCase *f = tcase_create("factory");
    tcase_add_test(f, the_factory_refuses_what_it_cannot_make_and_creates_nothing);
    tcase_add_test(f, an_image_created_by_the_factory_opens_again_through_it);
    tcase_add_test(f, a_target_in_memory_touches_no_file);
    tcase_add_test(f, an_exec_adapter_that_breaks_the_protocol_is_refused);
    suite_add_tcase(s, f);
    return s;
}

int main(void)
{
    return test_run_suite(target_suite());
}
