/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qvet create [-q] [-u] [-o OPTIONS] [-b BACKING -F FMT] IMAGE [SIZE]: as
 * `qemu-img create -f qcow2`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char cmd_create_help[] =
    "usage: qvet create [-f qcow2] [-q] [-u] [-o OPTIONS] [-b BACKING -F FMT] IMAGE [SIZE]\n"
    "\n"
    "Creates IMAGE (or truncates the file of that name) as an empty qcow2 image, byte for\n"
    "byte as 'qemu-img create -f qcow2' writes it, and prints qemu-img's line\n"
    "\"Formatting 'IMAGE', fmt=qcow2 ...\".\n"
    "\n"
    "  SIZE            the virtual size: bytes, or a number with k, M, G, T, P or E\n"
    "                  (binary units); rounded up to 512. Default: the backing file's\n"
    "                  size; required without a backing file, and with -u\n"
    "  -b BACKING      a backing file, stored as written; a relative name is relative\n"
    "                  to IMAGE's directory. It is opened (with its own chain) to check\n"
    "                  it and to take the size from it; creation fails if it cannot be.\n"
    "                  Refused when it names IMAGE itself (the same name, as qemu-img\n"
    "                  refuses, or any name of the same file). Default: none\n"
    "  -F FMT          the backing file's format, qcow2 or raw; required with -b\n"
    "  -u              do not open the backing file (it need not exist yet); SIZE is\n"
    "                  then required. Default: open it\n"
    "  -q              do not print the Formatting line\n"
    "  -f qcow2        the format (the only one; the default)\n"
    "  -o OPTIONS      comma-separated KEY=VALUE (',,' is a comma in a value); several\n"
    "                  -o are joined. '-o help' (or '-o ?') lists the keys qemu-img lists:\n"
    "    size=SIZE             as the SIZE argument (give only one of the two)\n"
    "    cluster_size=SIZE     512 to 2M, a power of two (default 64k)\n"
    "    compat=0.10|1.1       image version 2 or 3; also v2, v3 (default 1.1)\n"
    "    refcount_bits=N       1, 2, 4, 8, 16, 32 or 64; compat=0.10 only 16 (default 16)\n"
    "    lazy_refcounts=on|off refcount updates deferred, dirty bit (v3; default off)\n"
    "    extended_l2=on|off    32 subclusters per cluster (v3, cluster_size >= 16k;\n"
    "                          default off)\n"
    "    compression_type=zlib|zstd  for compressed clusters (zstd needs v3; default\n"
    "                          zlib)\n"
    "    preallocation=off|metadata|falloc|full  map every cluster up front (metadata:\n"
    "                          the file stays sparse; falloc, full: the data clusters\n"
    "                          follow the metadata in one run, written as zeros;\n"
    "                          default off)\n"
    "    backing_file=NAME     as -b\n"
    "    backing_fmt=FMT       as -F\n"
    "  qemu-img's data_file, data_file_raw, encryption, encrypt.*, nocow and\n"
    "  extent_size_hint are listed by -o help but refused.\n"
    "\n"
    "The file is locked as QEMU locks an image it writes before it is truncated: an image\n"
    "that a VM or another program has open is refused and left as it was.\n";

/* One line of qemu-img's option list: name, value type, description. */
struct option_help {
    const char *name, *type, *text;
    bool file_level;                /* listed only when a file name is given */
};

/*
 * The options qemu-img 7.2 lists for qcow2 and the file protocol, by the same names and
 * value types and in its (alphabetical) order, so scripts that read the list find the same
 * keys; the descriptions are qvet's own.
 */
static const struct option_help option_helps[] = {
    { "backing_file", "str", "image that supplies unallocated clusters", false },
    { "backing_fmt", "str", "format of backing_file (qcow2 or raw)", false },
    { "cluster_size", "size", "cluster size, a power of two from 512 to 2M (64k)", false },
    { "compat", "str", "0.10 for a version 2 image, 1.1 for version 3 (1.1)", false },
    { "compression_type", "str", "zlib or zstd, for compressed clusters (zlib)", false },
    { "data_file", "str", "external data file (refused by qvet)", false },
    { "data_file_raw", "bool (on/off)", "external data file kept raw (refused by qvet)",
      false },
    { "encrypt.cipher-alg", "str", "encryption setting (refused by qvet)", false },
    { "encrypt.cipher-mode", "str", "encryption setting (refused by qvet)", false },
    { "encrypt.format", "str", "encryption: aes or luks (refused by qvet)", false },
    { "encrypt.hash-alg", "str", "encryption setting (refused by qvet)", false },
    { "encrypt.iter-time", "num", "encryption setting (refused by qvet)", false },
    { "encrypt.ivgen-alg", "str", "encryption setting (refused by qvet)", false },
    { "encrypt.ivgen-hash-alg", "str", "encryption setting (refused by qvet)", false },
    { "encrypt.key-secret", "str", "encryption setting (refused by qvet)", false },
    { "encryption", "bool (on/off)", "legacy AES encryption (refused by qvet)", false },
    { "extended_l2", "bool (on/off)", "128-bit L2 entries with 32 subclusters (off)", false },
    { "extent_size_hint", "size", "host file setting (refused by qvet)", true },
    { "lazy_refcounts", "bool (on/off)", "defer refcount updates under a dirty bit (off)",
      false },
    { "nocow", "bool (on/off)", "host file setting (refused by qvet)", true },
    { "preallocation", "str", "off, metadata, falloc or full (off)", false },
    { "refcount_bits", "num", "refcount width: 1, 2, 4, 8, 16, 32 or 64 (16)", false },
    { "size", "size", "virtual disk size", false },
};

/*
 * qemu-img's test for a help request in an option list: an item that is a bare "help"
 * or "?". As in QEMU, a bare item's name ends at the first ',' or '=', and a value runs
 * to the next single comma.
 */
static bool wants_help(const char *p)
{
    while (*p) {
        size_t len = strcspn(p, "=,");
        bool bare = p[len] != '=';
        if (bare && ((len == 4 && !strncmp(p, "help", 4)) || (len == 1 && *p == '?')))
            return true;
        p += len;
        if (!bare)
            for (p++; *p && !(*p == ',' && p[1] != ','); p++)
                if (*p == ',')
                    p++;
        if (*p == ',')
            p++;
    }
    return false;
}

static void print_option_help(bool with_file)
{
    printf(with_file ? "Supported options:\n" : "Supported qcow2 options:\n");
    for (size_t i = 0; i < sizeof(option_helps) / sizeof(option_helps[0]); i++) {
        const struct option_help *h = &option_helps[i];
        if (h->file_level && !with_file)
            continue;
        char left[64];
        snprintf(left, sizeof(left), "%s=<%s>", h->name, h->type);
        printf("  %-22s - %s\n", left, h->text);
    }
    if (!with_file)
        printf("\nHost file options are listed too when a file name is given.\n");
}

/* A string option's value as qemu-img prints it: commas doubled, as it parses them. */
static void print_escaped(const char *s)
{
    for (; *s; s++) {
        if (*s == ',')
            putchar(',');
        putchar(*s);
    }
}

static const char *given_or(const struct qcow2_create_options *o, enum qcow2_create_key k,
                            const char *fallback)
{
    return o->given[k] ? o->given[k] : fallback;
}

/*
 * qemu-img's "Formatting" line: the options in the order of its option list, each as
 * set (numbers as parsed, booleans and names as written) or as its default; options
 * without a default appear only when given.
 */
static void print_formatting_line(const char *image, const struct qcow2_create_options *o)
{
    printf("Formatting '%s', fmt=qcow2 cluster_size=%" PRIu32 " extended_l2=%s", image,
           o->cluster_size, given_or(o, QCOW2_OPT_EXTENDED_L2, "off"));
    if (o->given[QCOW2_OPT_PREALLOCATION])
        printf(" preallocation=%s", o->given[QCOW2_OPT_PREALLOCATION]);
    printf(" compression_type=%s size=%" PRIu64,
           given_or(o, QCOW2_OPT_COMPRESSION_TYPE, "zlib"), o->size);
    if (o->given[QCOW2_OPT_COMPAT])
        printf(" compat=%s", o->given[QCOW2_OPT_COMPAT]);
    if (o->backing_file) {
        printf(" backing_file=");
        print_escaped(o->backing_file);
    }
    if (o->backing_format) {
        printf(" backing_fmt=");
        print_escaped(o->backing_format);
    }
    printf(" lazy_refcounts=%s refcount_bits=%" PRIu32 "\n",
           given_or(o, QCOW2_OPT_LAZY_REFCOUNTS, "off"), o->refcount_bits);
    fflush(stdout);
}

#define MAX_OPTION_TEXTS 16

struct create_args {
    const char *texts[MAX_OPTION_TEXTS];
    int n_texts;
    const char *backing, *backing_fmt, *image, *size;
    bool quiet, unchecked;
    bool extra_arguments;           /* more than IMAGE and SIZE */
};

static int parse_args(int argc, char **argv, struct create_args *a)
{
    memset(a, 0, sizeof(*a));
    int c;
    cli_getopt_reset();
    while ((c = getopt(argc, argv, "o:b:F:f:qu")) != -1) {
        switch (c) {
        case 'o':
            if (a->n_texts == MAX_OPTION_TEXTS)
                return cli_usage("create", "too many -o options");
            a->texts[a->n_texts++] = optarg;
            break;
        case 'b': a->backing = optarg; break;
        case 'F': a->backing_fmt = optarg; break;
        case 'q': a->quiet = true; break;
        case 'u': a->unchecked = true; break;
        case 'f':
            if (strcmp(optarg, "qcow2"))
                return cli_usage("create", "only -f qcow2 is supported, not '%s'", optarg);
            break;
        default:
            return cli_usage("create", "unknown option or missing value: '%s'",
                             argv[optind - 1]);
        }
    }
    if (optind < argc)
        a->image = argv[optind];
    if (optind + 1 < argc)
        a->size = argv[optind + 1];
    a->extra_arguments = optind + 2 < argc;
    return 0;
}

/* Fills *o from the arguments; `copies` keeps the option texts *o points into. */
static int build_options(const struct create_args *a, struct qcow2_create_options *o,
                         char **copies)
{
    struct qcow2_error err;
    uint64_t size = 0;
    if (a->size && !qcow2_parse_size(a->size, &size))
        return cli_usage("create", "'%s' is not a size", a->size);
    for (int i = 0; i < a->n_texts; i++) {
        copies[i] = strdup(a->texts[i]);
        if (!copies[i])
            return cli_fail(a->image, "out of memory");
        if (qcow2_create_options_parse(o, copies[i], &err))
            return cli_fail(a->image, "%s", err.message);
    }
    if (a->size && o->given[QCOW2_OPT_SIZE])
        return cli_fail(a->image, "create option: the size is given twice, as -o size=%s and "
                        "as the SIZE argument %s (qemu-img refuses this too)",
                        o->given[QCOW2_OPT_SIZE], a->size);
    if (a->size) {
        o->size = size;
        o->has_size = true;
    }
    if (a->backing)
        o->backing_file = a->backing;
    if (a->backing_fmt)
        o->backing_format = a->backing_fmt;
    o->no_backing_check = a->unchecked;
    return 0;
}

int cmd_create(int argc, char **argv)
{
    struct create_args a;
    if (parse_args(argc, argv, &a))
        return 1;
    for (int i = 0; i < a.n_texts; i++) {
        if (wants_help(a.texts[i])) {
            print_option_help(a.image != NULL);
            return 0;
        }
    }
    if (!a.image || a.extra_arguments)
        return cli_usage("create", "expected IMAGE [SIZE]");

    struct qcow2_create_options o;
    qcow2_create_options_init(&o);
    char *copies[MAX_OPTION_TEXTS] = { 0 };
    struct qcow2_error err;
    int status = build_options(&a, &o, copies);
    if (!status && qcow2_create_resolve(a.image, &o, &err))
        status = cli_fail_engine(&err);
    if (!status && !a.quiet)
        print_formatting_line(a.image, &o);
    if (!status && qcow2_create(a.image, &o, &err))
        status = err.file[0] ? cli_fail_engine(&err) : cli_fail(a.image, "%s", err.message);
    for (int i = 0; i < a.n_texts; i++)
        free(copies[i]);
    return status;
}
