/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qvet resize: `qemu-img resize` 7.2. The last argument is always the size (so "-1M"
 * needs no "--"), absolute or +/- relative; shrinking needs --shrink and then drops the
 * data past the new end, as qemu-img does.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

const char cmd_resize_help[] =
    "usage: qvet resize [-f qcow2] [-q] [--shrink] [--preallocation=off] IMAGE [+|-]SIZE\n"
    "\n"
    "Sets the virtual size of IMAGE, as qemu-img resize does. SIZE is in bytes or has a\n"
    "suffix (k M G T P E, 0x hex, fractions like 1.5G); +SIZE grows by it, -SIZE shrinks\n"
    "by it. The new size must be a multiple of 512.\n"
    "\n"
    "  --shrink             allow a smaller size (default: refused). Shrinking deletes the\n"
    "                       data past the new end: its clusters are freed, snapshots keep\n"
    "                       theirs, and the file is cut after its last used cluster. As in\n"
    "                       QEMU, the partial last cluster keeps its bytes, and growing\n"
    "                       again shows them; the rest reads as zeros\n"
    "  --preallocation=MODE only off (the default); metadata, falloc and full are not\n"
    "                       supported\n"
    "  -f FMT               image format; only qcow2 (the default) is accepted\n"
    "  -q                   quiet: no \"Image resized.\" line\n"
    "  -h, --help           this help\n"
    "  --object, --image-opts  qemu-img options qvet does not support: refused by name\n"
    "\n"
    "Growing an overlay over a larger backing file makes the new area read as zeros.\n";

/* Parses [+|-]SIZE as qemu-img does; returns 1 (after the message) when it is not one. */
static int parse_size_arg(const char *text, int *sign, uint64_t *size)
{
    *sign = text[0] == '+' ? 1 : text[0] == '-' ? -1 : 0;
    const char *number = text + (*sign != 0);
    bool hex_with_suffix;
    int ret = qemu_parse_size(number, size, &hex_with_suffix);
    if (ret == -ERANGE)
        return cli_usage("resize", "Value '%s' is out of range for parameter 'size'", number);
    if (ret)
        return cli_usage("resize", "Parameter 'size' expects a non-negative number below 2^64 "
                         "(optional suffix k, M, G, T, P or E), not '%s'", number);
    if (hex_with_suffix)
        fprintf(stderr, "qvet: resize: warning: Using a multiplier suffix on hex numbers is "
                "deprecated: %s\n", number);
    return 0;
}

int cmd_resize(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "shrink", no_argument, NULL, 'S' },
        { "preallocation", required_argument, NULL, 'P' },
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 'O' },
        { "image-opts", no_argument, NULL, 'I' },
        { NULL, 0, NULL, 0 },
    };
    if (argc < 3)
        return cli_usage("resize", "expected IMAGE [+|-]SIZE");
    /* The size is taken off first, so that a negative one is not read as options. */
    const char *size_text = argv[--argc];
    bool shrink = false, quiet = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "f:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (cli_parse_format("resize", optarg))
                return 1;
            break;
        case 'q': quiet = true; break;
        case 'S': shrink = true; break;
        case 'h': fputs(cmd_resize_help, stdout); return 0;
        case 'P':
            if (!strcmp(optarg, "off"))
                break;
            if (!strcmp(optarg, "metadata") || !strcmp(optarg, "falloc") ||
                !strcmp(optarg, "full"))
                return cli_usage("resize", "--preallocation=%s is not supported (only off)",
                                 optarg);
            return cli_usage("resize", "Invalid preallocation mode '%s'", optarg);
        case 'O': return cli_usage("resize", "--object is not supported");
        case 'I': return cli_usage("resize", "--image-opts is not supported");
        default:
            return cli_usage("resize", "unknown option or missing value: '%s'",
                             argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage("resize", "expected IMAGE [+|-]SIZE");
    const char *image = argv[optind];
    int sign;
    uint64_t n;
    if (parse_size_arg(size_text, &sign, &n))
        return 1;

    struct qcow2_open_options opts = {
        .writable = true,
        .bitmaps_invalidated = cli_warn_bitmaps_invalidated,
    };
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(image, &opts, &img, &err))
        return cli_fail_engine(&err);
    uint64_t current = qcow2_virtual_size(img);
    /* qemu-img computes in signed 64 bits: anything not above zero is refused. */
    uint64_t target = sign > 0 ? current + n : sign < 0 ? current - n : n;
    int status = 0;
    if ((int64_t)target <= 0)
        status = cli_fail(image, "New image size must be positive (%s from %" PRIu64 " bytes)",
                          size_text, current);
    else if (target < current && !shrink)
        status = cli_fail(image, "Use the --shrink option to perform a shrink operation (it "
                          "deletes all data past the new end: %" PRIu64 " -> %" PRIu64 " bytes)",
                          current, target);
    else if (target % 512)
        status = cli_fail(image, "The new size must be a multiple of 512 (%" PRIu64 ")", target);
    else if (qcow2_resize(img, target, &err))
        status = cli_fail_engine(&err);
    else if (!quiet)
        printf("Image resized.\n");
    qcow2_close(img);
    return status;
}
