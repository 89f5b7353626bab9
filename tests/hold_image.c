/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hold_image [-w] [-U] IMAGE: opens IMAGE through libqvet (read-only, or read-write with
 * -w; -U shares it as qemu-img -U does), prints "held" once it is open and keeps it open
 * until its standard input ends. For tests that need qvet to hold an image while QEMU's
 * tools try to open it (tests/interop/locks.sh).
 */
#include <stdio.h>
#include <string.h>

#include "qcow2.h"

int main(int argc, char **argv)
{
    struct qcow2_open_options opts = { 0 };
    int i = 1;
    for (; i < argc - 1; i++) {
        if (!strcmp(argv[i], "-w"))
            opts.writable = true;
        else if (!strcmp(argv[i], "-U"))
            opts.force_share = true;
        else
            break;
    }
    if (i != argc - 1) {
        fprintf(stderr, "usage: hold_image [-w] [-U] IMAGE\n");
        return 2;
    }
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(argv[i], &opts, &img, &err)) {
        fprintf(stderr, "hold_image: %s: %s\n", err.file, err.message);
        return 1;
    }
    printf("held\n");
    fflush(stdout);
    while (getchar() != EOF)
        continue;
    qcow2_close(img);
    return 0;
}
