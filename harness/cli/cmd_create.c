/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet create [-o OPTIONS] [-b BACKING [-F FMT]] IMAGE [SIZE]: as `qemu-img create -f qcow2`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_create(int argc, char **argv)
{
    struct qcow2_create_options o;
    qcow2_create_options_init(&o);
    /* Several -o are joined, as qemu-img does; strings in `o` point into these copies. */
    char *option_texts[16];
    int n_options = 0, c, status = 0;
    const char *backing = NULL, *backing_fmt = NULL;
    cli_getopt_reset();
    while ((c = getopt(argc, argv, "o:b:F:f:q")) != -1) {
        switch (c) {
        case 'o':
            if (n_options == (int)(sizeof(option_texts) / sizeof(option_texts[0])))
                return cli_usage("create", "too many -o options");
            option_texts[n_options++] = optarg;
            break;
        case 'b': backing = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'q': break;
        case 'f':
            if (strcmp(optarg, "qcow2"))
                return cli_usage("create", "only -f qcow2 is supported, not '%s'", optarg);
            break;
        default:
            return cli_usage("create", "unknown option or missing value: '%s'",
                             argv[optind - 1]);
        }
    }
    if (optind != argc - 1 && optind != argc - 2)
        return cli_usage("create", "expected IMAGE [SIZE]");
    const char *image = argv[optind];
    struct qcow2_error err;
    char *copies[16] = { 0 };
    for (int i = 0; i < n_options && !status; i++) {
        copies[i] = strdup(option_texts[i]);
        if (!copies[i])
            status = cli_fail(image, "out of memory");
        else if (qcow2_create_options_parse(&o, copies[i], &err))
            status = cli_fail(image, "%s", err.message);
    }
    if (!status && backing)
        o.backing_file = backing;
    if (!status && backing_fmt)
        o.backing_format = backing_fmt;
    if (!status && optind == argc - 2) {
        if (!qcow2_parse_size(argv[optind + 1], &o.size))
            status = cli_usage("create", "'%s' is not a size", argv[optind + 1]);
        o.has_size = true;
    }
    if (!status && qcow2_create(image, &o, &err))
        status = err.file[0] ? cli_fail_engine(&err) : cli_fail(image, "%s", err.message);
    for (int i = 0; i < n_options; i++)
        free(copies[i]);
    return status;
}
