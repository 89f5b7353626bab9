/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet snapshot: list, create, apply and delete internal snapshots (qemu-img's syntax). */
#include <getopt.h>
#include <stdbool.h>
#include <string.h>

#include "cli.h"

const char cmd_snapshot_help[] =
    "usage: qvet snapshot [-f qcow2] [-q] [-U] -l | -c NAME | -a SNAPSHOT | -d NAME IMAGE\n"
    "\n"
    "Lists, creates, applies or deletes the internal snapshots of a qcow2 image, as\n"
    "'qemu-img snapshot' does, and selects them by its rules (docs/snapshots.md).\n"
    "Exactly one action is required (no default).\n"
    "\n"
    "  -l           print the snapshot table exactly as 'qemu-img snapshot -l' does\n"
    "               (nothing for an image without snapshots); the image is opened\n"
    "               read-only\n"
    "  -c NAME      take a snapshot of the active state named NAME; its id is one more\n"
    "               than the largest numeric id in the table. Names need not be unique\n"
    "  -a SNAPSHOT  revert the active state to a snapshot: the one whose id is\n"
    "               SNAPSHOT, else the first in the table whose name is SNAPSHOT\n"
    "  -d NAME      delete the first snapshot in the table named NAME; ids are not\n"
    "               matched ('-d 1' deletes the snapshot named \"1\", not id 1)\n"
    "  -q           quiet (accepted for qemu-img's syntax; snapshot prints nothing\n"
    "               but the table and errors anyway)\n"
    "  -U           with -l: read the table even while another program holds the\n"
    "               image open for writing (default: refuse, as qemu-img does); -c,\n"
    "               -a and -d write and refuse -U\n"
    "  -f FMT       image format; only qcow2 (the default) is accepted\n"
    "\n"
    "-c, -a and -d open IMAGE read-write and are refused while a VM or another\n"
    "program has it open.\n";

static int usage_one_action(void)
{
    return cli_usage("snapshot", "give exactly one of -l, -c NAME, -a SNAPSHOT, -d NAME");
}

static int list_snapshots(const char *image, bool force_share)
{
    struct qcow2_open_options opts = { .force_share = force_share };
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(image, &opts, &img, &err))
        return cli_fail_engine(&err);
    cli_print_snapshot_table(img);
    qcow2_close(img);
    return 0;
}

/* The index -a or -d selects, or -ENOENT with the error printed. */
static int select_snapshot(struct qcow2_image *img, char action, const char *key)
{
    struct qcow2_error err;
    int i = action == 'a' ? qcow2_snapshot_find_key(img, key, &err)
                          : qcow2_snapshot_find(img, NULL, key, &err);
    if (i >= 0)
        return i;
    if (action == 'a')
        cli_fail_engine(&err);
    else
        cli_fail(err.file, "%s; -d takes a name, never an id (as qemu-img does)", err.message);
    return i;
}

int cmd_snapshot(int argc, char **argv)
{
    char action = 0;
    const char *name = NULL;
    bool force_share = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt(argc, argv, "lc:a:d:qUf:")) != -1) {
        if (c == 'q')
            continue;
        if (c == 'f') {
            if (cli_parse_format("snapshot", optarg))
                return 1;
            continue;
        }
        if (c == 'U') {
            force_share = true;
            continue;
        }
        if (c == '?' || action)
            return usage_one_action();
        action = (char)c;
        name = optarg;
    }
    if (!action)
        return usage_one_action();
    if (optind != argc - 1)
        return cli_usage("snapshot", "expected exactly one IMAGE");
    const char *image = argv[optind];
    if (action == 'l')
        return list_snapshots(image, force_share);

    struct qcow2_open_options opts = { .writable = true, .force_share = force_share };
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(image, &opts, &img, &err))
        return cli_fail_engine(&err);
    int ret = 0, status = 0;
    if (action == 'c') {
        ret = qcow2_snapshot_create(img, name, &err);
    } else {
        int i = select_snapshot(img, action, name);
        if (i < 0)
            status = 1;
        else if (action == 'a')
            ret = qcow2_snapshot_apply_at(img, (uint32_t)i, &err);
        else
            ret = qcow2_snapshot_delete_at(img, (uint32_t)i, &err);
    }
    if (!status && !ret)
        ret = qcow2_flush(img, &err);
    if (!status && ret)
        status = cli_fail_engine(&err);
    qcow2_close(img);
    return status;
}
