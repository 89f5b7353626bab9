/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet resize IMAGE SIZE: as `qemu-img resize`, with +SIZE / -SIZE relative forms. */
#include <inttypes.h>

#include "cli.h"

int cmd_resize(int argc, char **argv)
{
    if (argc != 3)
        return cli_usage("resize", "expected IMAGE SIZE");
    const char *image = argv[1];
    const char *text = argv[2];
    int sign = text[0] == '+' ? 1 : text[0] == '-' ? -1 : 0;
    uint64_t size;
    if (!qcow2_parse_size(text + (sign != 0), &size))
        return cli_usage("resize", "'%s' is not a size", text);
    struct qcow2_open_options opts = {
        .writable = true,
        .bitmaps_invalidated = cli_warn_bitmaps_invalidated,
    };
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(image, &opts, &img, &err))
        return cli_fail_engine(&err);
    uint64_t current = qcow2_virtual_size(img);
    uint64_t target = sign > 0 ? current + size : sign < 0 ? current - size : size;
    int status = 0;
    if (sign < 0 && size > current)
        status = cli_fail(image, "cannot shrink by %" PRIu64 " bytes: the image has %" PRIu64,
                          size, current);
    else if (qcow2_resize(img, target, &err))
        status = cli_fail_engine(&err);
    else
        printf("Image resized.\n");
    qcow2_close(img);
    return status;
}
