/* SPDX-License-Identifier: BSD-2-Clause */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cli_fail(const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qvet: %s: ", file);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* Writes s to stderr with line breaks shown as '?', so that a message stays one line. */
static void put_one_line(const char *s)
{
    for (const char *p = s; *p; p++)
        fputc(*p == '\n' || *p == '\r' ? '?' : *p, stderr);
}

int cli_fail_engine(const struct qcow2_error *err)
{
    /* An engine message is one line by construction; keep it so even if a name isn't. */
    fprintf(stderr, "qvet: ");
    put_one_line(err->file);
    fprintf(stderr, ": ");
    put_one_line(err->message);
    fputc('\n', stderr);
    return 1;
}

int cli_usage(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qvet: %s: ", command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'qvet help')\n");
    va_end(ap);
    return 1;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/*
 * Reads one item of a QEMU option list at *p: "name=value" (",," in the value is a
 * comma) or a bare "name" (value "on"; "noname" means "off"). Advances past one comma.
 */
static void next_option_item(const char **p, char *name, size_t name_cap, char *value,
                             size_t value_cap)
{
    const char *s = *p;
    size_t len = strcspn(s, "=,");
    snprintf(name, name_cap, "%.*s", (int)len, s);
    s += len;
    if (*s == '=') {
        size_t n = 0;
        for (s++; *s && !(*s == ',' && s[1] != ','); s++) {
            if (*s == ',')
                s++;
            if (n + 1 < value_cap)
                value[n++] = *s;
        }
        value[n] = '\0';
    } else if (!strncmp(name, "no", 2)) {
        memmove(name, name + 2, strlen(name + 2) + 1);
        snprintf(value, value_cap, "off");
    } else {
        snprintf(value, value_cap, "on");
    }
    if (*s == ',')
        s++;
    *p = s;
}

/*
 * A snapshot selector as qemu-img convert -l reads it: "snapshot.id=ID,snapshot.name=NAME"
 * (either or both; all given must match) when it starts with "snapshot.", else a key
 * matched against ids first, then names. The strings go to `id` and `name`
 * (SELECTOR_MAX bytes each) and into *o.
 */
#define SELECTOR_MAX 1024
static int parse_snapshot_selector(const char *image, const char *text,
                                   struct qcow2_open_options *o, char *id, char *name)
{
    if (strncmp(text, "snapshot.", 9)) {
        o->snapshot = text;
        return 0;
    }
    for (const char *p = text; *p;) {
        char key[SELECTOR_MAX], value[SELECTOR_MAX];
        next_option_item(&p, key, sizeof(key), value, sizeof(value));
        if (!strcmp(key, "snapshot.id")) {
            snprintf(id, SELECTOR_MAX, "%s", value);
            o->snapshot_id = id;
        } else if (!strcmp(key, "snapshot.name")) {
            snprintf(name, SELECTOR_MAX, "%s", value);
            o->snapshot_name = name;
        } else {
            return cli_fail(image, "snapshot selector \"%s\": invalid parameter '%s' (it "
                            "takes snapshot.id and snapshot.name, as qemu-img convert -l "
                            "does)", text, key);
        }
    }
    return 0;
}

int cli_open_image(const char *arg, const char *snapshot, struct qcow2_image **img)
{
    return cli_open_image_shared(arg, snapshot, false, img);
}

int cli_open_image_shared(const char *arg, const char *snapshot, bool force_share,
                          struct qcow2_image **img)
{
    struct qcow2_open_options opts = { .snapshot = snapshot, .force_share = force_share };
    return cli_open_image_with(arg, &opts, img);
}

int cli_open_image_with(const char *arg, const struct qcow2_open_options *base,
                        struct qcow2_image **img)
{
    const char *snapshot = base->snapshot;
    char *path = strdup(arg);
    if (!path)
        return cli_fail(arg, "out of memory");
    char *at = strrchr(path, '@');
    if (!file_exists(path) && at && at != path) {
        *at = '\0';
        if (file_exists(path)) {
            if (!snapshot)
                snapshot = at + 1;
        } else {
            *at = '@';
        }
    }
    struct qcow2_open_options opts = *base;
    opts.snapshot = NULL;
    char id[SELECTOR_MAX], name[SELECTOR_MAX];
    int ret = snapshot ? parse_snapshot_selector(path, snapshot, &opts, id, name) : 0;
    struct qcow2_error err;
    if (!ret && qcow2_open(path, &opts, img, &err))
        ret = cli_fail_engine(&err);
    free(path);
    return ret;
}

int cli_parse_output_and_image(const char *command, int argc, char **argv,
                               enum output_format *fmt, bool *backing_chain,
                               bool *force_share, const char **image)
{
    /* --backing-chain only for the commands that take it (the first entry is skipped). */
    static const struct option longopts[] = {
        { "backing-chain", no_argument, NULL, 'B' },
        { "output", required_argument, NULL, 'O' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const struct option *taken = backing_chain ? longopts : longopts + 1;
    *fmt = OUTPUT_HUMAN;
    *force_share = false;
    if (backing_chain)
        *backing_chain = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "f:U", taken, NULL)) != -1) {
        if (c == 'U') {
            *force_share = true;
            continue;
        }
        if (c == 'f' && cli_parse_format(command, optarg))
            return 1;
        if (c == 'f')
            continue;
        if (c == 'B') {
            *backing_chain = true;
            continue;
        }
        if (c != 'O')
            return cli_usage(command, "unknown option or missing value: '%s'",
                             argv[optind - 1]);
        if (!cli_parse_output(optarg, fmt))
            return cli_usage(command, "--output must be human or json, not '%s'", optarg);
    }
    if (optind != argc - 1)
        return cli_usage(command, "expected exactly one IMAGE");
    *image = argv[optind];
    return 0;
}

void cli_warn_bitmaps_invalidated(void *ctx, const char *file, const char *const *names,
                                  uint32_t count)
{
    (void)ctx;
    fprintf(stderr, "qvet: ");
    put_one_line(file);
    fprintf(stderr, ": warning: persistent bitmap%s ", count == 1 ? "" : "s");
    for (uint32_t i = 0; i < count; i++) {
        fprintf(stderr, "%s", i ? ", " : "");
        put_one_line(names[i]);
    }
    fprintf(stderr, " will be invalidated (qvet does not maintain bitmaps)\n");
}

void cli_getopt_reset(void)
{
    opterr = 0;
    optind = 0;
}

bool cli_parse_output(const char *value, enum output_format *out)
{
    if (!strcmp(value, "human"))
        *out = OUTPUT_HUMAN;
    else if (!strcmp(value, "json"))
        *out = OUTPUT_JSON;
    else
        return false;
    return true;
}

void json_put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void json_put_key(FILE *f, const char *key)
{
    fputs(",\n  ", f);
    json_put_string(f, key);
    fputs(": ", f);
}

void json_put_member_string(FILE *f, const char *key, const char *value)
{
    json_put_key(f, key);
    json_put_string(f, value);
}

void json_put_member_u64(FILE *f, const char *key, uint64_t value)
{
    json_put_key(f, key);
    fprintf(f, "%" PRIu64, value);
}

int cli_parse_format(const char *command, const char *value)
{
    if (!strcmp(value, "qcow2"))
        return 0;
    fprintf(stderr, "qvet: %s: -f %s is not supported: qvet reads and writes qcow2 images "
            "only (-f qcow2)\n", command, value);
    return 1;
}
