/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qvet io: qemu-io's command language on a qvet image, so that the same script can be
 * applied by both tools and the results compared.
 *   read [-P PATTERN] [-v] [-q] OFF LEN     (-P verifies; a mismatch is an error)
 *   write [-P PATTERN] [-z [-u]] [-c] [-q] OFF LEN
 *   discard [-q] OFF LEN
 *   flush
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define IO_MAX_ARGS 16
#define IO_DEFAULT_PATTERN 0xcd

struct io_args {
    int argc;
    char *argv[IO_MAX_ARGS + 1];
    bool pattern_given, verbose, quiet, zero, unmap, compressed;
    int pattern;
    uint64_t off, len;
};

/* Splits on blanks; qemu-io commands have no quoting worth supporting. */
static int split(char *line, struct io_args *a)
{
    a->argc = 0;
    for (char *tok = strtok(line, " \t"); tok; tok = strtok(NULL, " \t")) {
        if (a->argc == IO_MAX_ARGS)
            return -1;
        a->argv[a->argc++] = tok;
    }
    a->argv[a->argc] = NULL;
    return a->argc ? 0 : -1;
}

static bool parse_pattern(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || end == s || v < 0 || v > 255)
        return false;
    *out = (int)v;
    return true;
}

/* Options of one command (letters allowed in `allowed`), then OFF LEN when `want_range`. */
static int parse_args(const char *image, struct io_args *a, const char *allowed,
                      bool want_range)
{
    int c;
    cli_getopt_reset();
    while ((c = getopt(a->argc, a->argv, allowed)) != -1) {
        switch (c) {
        case 'P':
            if (!parse_pattern(optarg, &a->pattern))
                return cli_fail(image, "%s: -P takes a byte value, not '%s'", a->argv[0],
                                optarg);
            a->pattern_given = true;
            break;
        case 'v': a->verbose = true; break;
        case 'q': a->quiet = true; break;
        case 'z': a->zero = true; break;
        case 'u': a->unmap = true; break;
        case 'c': a->compressed = true; break;
        default:
            return cli_fail(image, "%s: unknown option '%s'", a->argv[0], a->argv[optind - 1]);
        }
    }
    int rest = a->argc - optind;
    if (!want_range)
        return rest ? cli_fail(image, "%s takes no arguments", a->argv[0]) : 0;
    if (rest != 2)
        return cli_fail(image, "%s: expected OFFSET LENGTH", a->argv[0]);
    if (!qcow2_parse_size(a->argv[optind], &a->off) ||
        !qcow2_parse_size(a->argv[optind + 1], &a->len))
        return cli_fail(image, "%s: '%s %s' is not an offset and a length", a->argv[0],
                        a->argv[optind], a->argv[optind + 1]);
    return 0;
}

static void hexdump(const uint8_t *buf, uint64_t len, uint64_t base)
{
    for (uint64_t i = 0; i < len; i += 16) {
        printf("%08" PRIx64 ":  ", base + i);
        for (uint64_t j = i; j < i + 16; j++)
            j < len ? printf("%02x ", buf[j]) : printf("   ");
        printf(" ");
        for (uint64_t j = i; j < i + 16 && j < len; j++)
            putchar(buf[j] >= 0x20 && buf[j] < 0x7f ? buf[j] : '.');
        putchar('\n');
    }
}

static int run_read(struct qcow2_image *img, const char *image, struct io_args *a)
{
    if (parse_args(image, a, "P:vq", true))
        return 1;
    uint8_t *buf = malloc(a->len ? a->len : 1);
    if (!buf)
        return cli_fail(image, "read: out of memory for %" PRIu64 " bytes", a->len);
    struct qcow2_error err;
    int status = 0;
    if (qcow2_pread(img, buf, a->len, a->off, &err)) {
        status = cli_fail_engine(&err);
    } else if (a->pattern_given) {
        for (uint64_t i = 0; i < a->len; i++) {
            if (buf[i] != a->pattern) {
                status = cli_fail(image,
                                  "read: pattern verification failed at offset %" PRIu64
                                  ": expected 0x%02x, found 0x%02x",
                                  a->off + i, a->pattern, buf[i]);
                break;
            }
        }
    }
    if (!status && a->verbose)
        hexdump(buf, a->len, a->off);
    if (!status && !a->quiet)
        printf("read %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", a->len, a->len,
               a->off);
    free(buf);
    return status;
}

static int run_write(struct qcow2_image *img, const char *image, struct io_args *a)
{
    if (parse_args(image, a, "P:zucq", true))
        return 1;
    if (a->zero && (a->pattern_given || a->compressed))
        return cli_fail(image, "write: -z cannot be combined with -P or -c");
    if (a->unmap && !a->zero)
        return cli_fail(image, "write: -u needs -z");
    struct qcow2_error err;
    int ret;
    if (a->zero) {
        ret = qcow2_pwrite_zeroes(img, a->off, a->len, a->unmap ? QCOW2_ZERO_MAY_UNMAP : 0,
                                  &err);
    } else {
        uint8_t *buf = malloc(a->len ? a->len : 1);
        if (!buf)
            return cli_fail(image, "write: out of memory for %" PRIu64 " bytes", a->len);
        memset(buf, a->pattern_given ? a->pattern : IO_DEFAULT_PATTERN, a->len);
        ret = a->compressed ? qcow2_pwrite_compressed(img, buf, a->len, a->off, &err)
                            : qcow2_pwrite(img, buf, a->len, a->off, &err);
        free(buf);
    }
    if (ret)
        return cli_fail_engine(&err);
    if (!a->quiet)
        printf("wrote %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", a->len, a->len,
               a->off);
    return 0;
}

static int run_command(struct qcow2_image *img, const char *image, const char *text)
{
    char *line = strdup(text);
    if (!line)
        return cli_fail(image, "out of memory");
    struct io_args a = { .pattern = IO_DEFAULT_PATTERN };
    int status;
    struct qcow2_error err;
    if (split(line, &a)) {
        status = cli_fail(image, "io: empty or overlong command '%s'", text);
    } else if (!strcmp(a.argv[0], "read")) {
        status = run_read(img, image, &a);
    } else if (!strcmp(a.argv[0], "write")) {
        status = run_write(img, image, &a);
    } else if (!strcmp(a.argv[0], "discard")) {
        status = parse_args(image, &a, "q", true);
        if (!status && qcow2_discard(img, a.off, a.len, &err))
            status = cli_fail_engine(&err);
        if (!status && !a.quiet)
            printf("discard %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", a.len,
                   a.len, a.off);
    } else if (!strcmp(a.argv[0], "flush")) {
        status = parse_args(image, &a, "", false);
        if (!status && qcow2_flush(img, &err))
            status = cli_fail_engine(&err);
    } else {
        status = cli_fail(image, "io: unknown command '%s' (read, write, discard, flush)",
                          a.argv[0]);
    }
    free(line);
    return status;
}

int cmd_io(int argc, char **argv)
{
    const char **cmds = calloc((size_t)argc, sizeof(*cmds));
    if (!cmds)
        return cli_fail("io", "out of memory");
    int ncmds = 0, c;
    bool read_only = false;
    static const struct option longopts[] = {
        { "cmd", required_argument, NULL, 'c' },
        { "read-only", no_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "+c:r", longopts, NULL)) != -1) {
        if (c == 'c') {
            cmds[ncmds++] = optarg;
        } else if (c == 'r') {
            read_only = true;
        } else {
            free(cmds);
            return cli_usage("io", "unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) {
        free(cmds);
        return cli_usage("io", "expected exactly one IMAGE");
    }
    const char *image = argv[optind];
    struct qcow2_image *img;
    struct qcow2_open_options opts = { .writable = !read_only };
    struct qcow2_error err;
    if (qcow2_open(image, &opts, &img, &err)) {
        free(cmds);
        return cli_fail_engine(&err);
    }
    int status = 0;
    for (int i = 0; i < ncmds && !status; i++)
        status = run_command(img, image, cmds[i]);
    if (!read_only && qcow2_flush(img, &err) && !status)
        status = cli_fail_engine(&err);
    qcow2_close(img);
    free(cmds);
    return status;
}
