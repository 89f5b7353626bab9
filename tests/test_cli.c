/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The qvet command's own logic: QEMU 7.2's number syntax and size display (the expected
 * values are what qemu-io 7.2 printed for the same input), -f, and the rule that every
 * subcommand's help explains each option its getopt call accepts. The options are not
 * copied here: getopt and getopt_long are wrapped at link time (-Wl,--wrap) and each
 * command is run once to record what it asks getopt for.
 */
#include <check.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "support.h"

/* ---- recording what the commands hand to getopt ------------------------------------ */

int __real_getopt(int argc, char *const argv[], const char *optstring);
int __real_getopt_long(int argc, char *const argv[], const char *optstring,
                       const struct option *longopts, int *longindex);
int __wrap_getopt(int argc, char *const argv[], const char *optstring);
int __wrap_getopt_long(int argc, char *const argv[], const char *optstring,
                       const struct option *longopts, int *longindex);

static bool probing;
static const char *seen_optstring;
static const struct option *seen_longopts;
static int getopt_calls;

/* While probing, the first call is recorded and parsing ends at once (optind stays 0,
 * so every command then refuses the probe's arguments as misplaced and does nothing). */
static int record(const char *optstring, const struct option *longopts)
{
    if (!getopt_calls++) {
        seen_optstring = optstring;
        seen_longopts = longopts;
    }
    return -1;
}

int __wrap_getopt(int argc, char *const argv[], const char *optstring)
{
    return probing ? record(optstring, NULL) : __real_getopt(argc, argv, optstring);
}

int __wrap_getopt_long(int argc, char *const argv[], const char *optstring,
                       const struct option *longopts, int *longindex)
{
    return probing ? record(optstring, longopts)
                   : __real_getopt_long(argc, argv, optstring, longopts, longindex);
}

/* True when `help` shows `flag` ("-f", "--shrink") as a word of its own. */
static bool mentions(const char *help, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = strstr(help, flag); p; p = strstr(p + 1, flag)) {
        char before = p == help ? ' ' : p[-1];
        char after = p[n];
        bool starts = strchr(" [,|(\n", before) != NULL;
        bool ends = !(after == '-' || after == '_' || (after >= 'a' && after <= 'z') ||
                      (after >= 'A' && after <= 'Z') || (after >= '0' && after <= '9'));
        if (starts && ends)
            return true;
    }
    return false;
}

static void expect_short_options_explained(const char *where, const char *optstring,
                                           const char *help)
{
    for (const char *p = optstring; p && *p; p++) {
        if (*p == ':' || *p == '+' || *p == '-')
            continue;
        char flag[3] = { '-', *p, '\0' };
        ck_assert_msg(mentions(help, flag), "%s: the help does not explain option %s", where,
                      flag);
    }
}

START_TEST(every_command_has_a_help_text_explaining_each_of_its_options)
{
    ck_assert_uint_ge(cli_command_count, 11);
    for (size_t i = 0; i < cli_command_count; i++) {
        const struct cli_command *c = &cli_commands[i];
        char usage[64];
        snprintf(usage, sizeof(usage), "usage: qvet %s", c->name);
        ck_assert_msg(c->help && !strncmp(c->help, usage, strlen(usage)),
                      "qvet %s: the help does not start with '%s'", c->name, usage);
        char *argv[] = { (char *)c->name, "probe-a", "probe-b", "probe-c", NULL };
        getopt_calls = 0;
        seen_optstring = NULL;
        seen_longopts = NULL;
        probing = true;
        FILE *saved = stderr;
        stderr = fopen("/dev/null", "w");
        c->run(4, argv);
        fclose(stderr);
        stderr = saved;
        probing = false;
        /* Explained below the usage line, not merely listed in it. */
        const char *body = strchr(c->help, '\n');
        ck_assert_ptr_nonnull(body);
        expect_short_options_explained(c->name, seen_optstring, body);
        for (const struct option *o = seen_longopts; o && o->name; o++) {
            char flag[64];
            snprintf(flag, sizeof(flag), "--%s", o->name);
            ck_assert_msg(mentions(body, flag), "qvet %s: the help does not explain %s",
                          c->name, flag);
        }
    }
}
END_TEST

START_TEST(the_option_check_itself_catches_an_unexplained_option)
{
    ck_assert(mentions("  -f FMT  the format\n", "-f"));
    ck_assert(mentions("usage: [--shrink] x", "--shrink"));
    ck_assert(!mentions("  --shrinkage  no\n", "--shrink"));
    ck_assert(!mentions("  -fx\n", "-f"));
    ck_assert(!mentions("a-f b", "-f"));
}
END_TEST

START_TEST(every_io_command_explains_its_options)
{
    const char *name, *options, *help;
    size_t n = 0;
    for (size_t i = 0; io_command_help(i, &name, &options, &help); i++, n++) {
        char where[64];
        snprintf(where, sizeof(where), "qvet io command %s", name);
        expect_short_options_explained(where, options, help);
    }
    ck_assert_uint_ge(n, 13);
}
END_TEST

/* ---- QEMU's number syntax ----------------------------------------------------------- */

struct size_case {
    const char *text;
    int ret;
    uint64_t value;
};

/* Each line is what qemu-io 7.2 made of the text (its alloc/write commands echo it). */
static const struct size_case size_cases[] = {
    { "0", 0, 0 }, { "00", 0, 0 }, { "010", 0, 10 }, { "512", 0, 512 },
    { "0x200", 0, 512 }, { "0X200", 0, 512 }, { "0x10B", 0, 267 }, { "0xb", 0, 11 },
    { "1b", 0, 1 }, { "1B", 0, 1 }, { "1K", 0, 1024 }, { "1k", 0, 1024 },
    { "1.5k", 0, 1536 }, { "1.25k", 0, 1280 }, { "1.3k", 0, 1331 }, { "0.1k", 0, 102 },
    { "0.5k", 0, 512 }, { "5.", 0, 5 }, { "5.k", 0, 5120 }, { "1.0", 0, 1 }, { "1.0b", 0, 1 },
    { "0.00048828125k", 0, 1 }, { "0.000488281k", 0, 0 }, { "0.0009765625k", 0, 1 },
    { "1.9999999999999999k", 0, 2048 }, { "1.99999999999999999k", 0, 1024 },
    { "1.2345678901234567890123k", 0, 1264 }, { "+1", 0, 1 }, { " 1", 0, 1 },
    { "+0x10", 0, 16 }, { "1E", 0, 1ull << 60 }, { "9223372036854775807", 0, INT64_MAX },
    { "1.5M", 0, 1572864 }, { "1T", 0, 1ull << 40 },
    { "1.1", -EINVAL, 0 }, { "1.5", -EINVAL, 0 }, { "1.5b", -EINVAL, 0 }, { "0.5b", -EINVAL, 0 },
    { "1e3", -EINVAL, 0 }, { "1E0", -EINVAL, 0 }, { "1kb", -EINVAL, 0 }, { "0x", -EINVAL, 0 },
    { "00x1", -EINVAL, 0 }, { ".5k", -EINVAL, 0 }, { "1k5", -EINVAL, 0 }, { "-1", -EINVAL, 0 },
    { "0x1.5k", -EINVAL, 0 }, { "0x10.0", -EINVAL, 0 }, { "1..5k", -EINVAL, 0 },
    { "", -EINVAL, 0 }, { "k", -EINVAL, 0 }, { "1x", -EINVAL, 0 },
    { "18446744073709551616", -ERANGE, 0 }, { "16E", -ERANGE, 0 },
};

START_TEST(sizes_parse_as_qemu_strtosz_does)
{
    for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
        const struct size_case *c = &size_cases[i];
        uint64_t v = 12345;
        bool hex_suffix;
        int ret = qemu_parse_size(c->text, &v, &hex_suffix);
        ck_assert_msg(ret == c->ret, "'%s': expected return %d, got %d", c->text, c->ret, ret);
        if (!ret)
            ck_assert_msg(v == c->value, "'%s': expected %llu, got %llu", c->text,
                          (unsigned long long)c->value, (unsigned long long)v);
    }
}
END_TEST

START_TEST(hex_with_a_suffix_is_accepted_with_qemus_deprecation_flag)
{
    uint64_t v;
    bool hex_suffix;
    ck_assert_int_eq(qemu_parse_size("0x1k", &v, &hex_suffix), 0);
    ck_assert_uint_eq(v, 1024);
    ck_assert(hex_suffix);
    ck_assert_int_eq(qemu_parse_size("0x1M", &v, &hex_suffix), 0);
    ck_assert_uint_eq(v, 1u << 20);
    ck_assert(hex_suffix);
    ck_assert_int_eq(qemu_parse_size("1k", &v, &hex_suffix), 0);
    ck_assert(!hex_suffix);
}
END_TEST

START_TEST(qemu_io_numbers_stop_at_int64_max)
{
    uint64_t v;
    ck_assert_int_eq(qemu_cvtnum("test", "9223372036854775807", &v), 0);
    ck_assert_int_eq(qemu_cvtnum("test", "9223372036854775808", &v), -ERANGE);
    ck_assert_int_eq(qemu_cvtnum("test", "8E", &v), -ERANGE);
    ck_assert_int_eq(qemu_cvtnum("test", "18446744073709551615", &v), -ERANGE);
}
END_TEST

START_TEST(sizes_print_as_qemu_io_prints_them)
{
    static const struct {
        double value;
        const char *text;
    } cases[] = {
        { 0, "0 bytes" }, { 1, "1 bytes" }, { 512, "512 bytes" }, { 1000, "1000 bytes" },
        { 1024, "1 KiB" }, { 1536, "1.500 KiB" }, { 94208, "92 KiB" }, { 1024000, "1000 KiB" },
        { 1572864, "1.500 MiB" }, { 3221225472.0, "3 GiB" }, { 1099511627776.0, "1 TiB" },
        { 1152921504606846976.0, "1 EiB" }, { 0.3 * 1152921504606846976.0, "307.200 PiB" },
        { 500.5, "500.500000 bytes" }, { 55.574803, "55.574803 bytes" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        qemu_format_size(cases[i].value, buf, sizeof(buf));
        ck_assert_msg(!strcmp(buf, cases[i].text), "%f: expected '%s', got '%s'",
                      cases[i].value, cases[i].text, buf);
    }
    char buf[64];
    qemu_format_size(INFINITY, buf, sizeof(buf));
    ck_assert_str_eq(buf, "inf EiB");
}
END_TEST

START_TEST(format_option_takes_qcow2_only)
{
    ck_assert_int_eq(cli_parse_format("test", "qcow2"), 0);
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    int raw = cli_parse_format("test", "raw");
    int other = cli_parse_format("test", "QCOW2");
    fclose(stderr);
    stderr = saved;
    ck_assert_int_eq(raw, 1);
    ck_assert_int_eq(other, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli");
    TCase *help = tcase_create("help");
    tcase_add_test(help, every_command_has_a_help_text_explaining_each_of_its_options);
    tcase_add_test(help, the_option_check_itself_catches_an_unexplained_option);
    tcase_add_test(help, every_io_command_explains_its_options);
    suite_add_tcase(s, help);
    TCase *numbers = tcase_create("qemu-syntax");
    tcase_add_test(numbers, sizes_parse_as_qemu_strtosz_does);
    tcase_add_test(numbers, hex_with_a_suffix_is_accepted_with_qemus_deprecation_flag);
    tcase_add_test(numbers, qemu_io_numbers_stop_at_int64_max);
    tcase_add_test(numbers, sizes_print_as_qemu_io_prints_them);
    tcase_add_test(numbers, format_option_takes_qcow2_only);
    suite_add_tcase(s, numbers);
    return test_run_suite(s);
}
