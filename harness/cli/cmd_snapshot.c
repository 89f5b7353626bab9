/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet snapshot: list, create, apply and delete internal snapshots (qemu-img's syntax). */
#include <getopt.h>
#include <string.h>

#include "cli.h"

int cmd_snapshot(int argc, char **argv)
{
    char action = 0;
    const char *name = NULL;
    int c;
    cli_getopt_reset();
    while ((c = getopt(argc, argv, "lc:a:d:")) != -1) {
        if (c == '?' || action)
            return cli_usage("snapshot", "give exactly one of -l, -c NAME, -a NAME, -d NAME");
        action = (char)c;
        name = optarg;
    }
    if (!action)
        return cli_usage("snapshot", "give exactly one of -l, -c NAME, -a NAME, -d NAME");
    if (optind != argc - 1)
        return cli_usage("snapshot", "expected exactly one IMAGE");
    const char *image = argv[optind];
    if (action == 'l') {
        char *info_argv[] = { "info", (char *)image, NULL };
        return cmd_info(2, info_argv);
    }
    struct qcow2_open_options opts = { .writable = true };
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(image, &opts, &img, &err))
        return cli_fail_engine(&err);
    int ret = action == 'c'   ? qcow2_snapshot_create(img, name, &err)
              : action == 'a' ? qcow2_snapshot_apply(img, name, &err)
                              : qcow2_snapshot_delete(img, name, &err);
    if (!ret)
        ret = qcow2_flush(img, &err);
    int status = ret ? cli_fail_engine(&err) : 0;
    qcow2_close(img);
    return status;
}
