/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet cat: the guest-visible bytes, as `qemu-img convert -O raw` would write them. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CAT_CHUNK (2u << 20)

const char cmd_cat_help[] =
    "usage: qvet cat [-f qcow2] [-s SNAPSHOT | -l SNAPSHOT] [-U] IMAGE[@SNAPSHOT]\n"
    "\n"
    "Writes the guest-visible bytes of IMAGE to standard output, as\n"
    "'qemu-img convert -O raw' writes them: the whole virtual size, unallocated\n"
    "ranges read through the backing chain or as zeros.\n"
    "\n"
    "  -s, --snapshot SNAPSHOT  read a snapshot instead of the active state\n"
    "                           (default: the active state). SNAPSHOT is taken as\n"
    "                           'qemu-img convert -l' takes it: a KEY selects the\n"
    "                           snapshot whose id is KEY, else the first whose name\n"
    "                           is KEY; 'snapshot.id=ID', 'snapshot.name=NAME' or\n"
    "                           both, comma-separated, select the first snapshot\n"
    "                           that has all of them.\n"
    "  -l SNAPSHOT              the same as -s (qemu-img convert's letter)\n"
    "  IMAGE@SNAPSHOT           the same as -s, when no file of that literal name\n"
    "                           exists; -s wins over it\n"
    "  -U, --force-share        read even while another program (a VM, qemu-io)\n"
    "                           holds the image open for writing (default: refuse,\n"
    "                           as qemu-img does without -U; what is read may then be\n"
    "                           inconsistent)\n"
    "  -f FMT                   image format; only qcow2 (the default) is accepted\n";

int cmd_cat(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "snapshot", required_argument, NULL, 's' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *snapshot = NULL;
    bool force_share = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "s:l:Uf:", longopts, NULL)) != -1) {
        if (c == 's' || c == 'l')
            snapshot = optarg;
        else if (c == 'U')
            force_share = true;
        else if (c == 'f' && cli_parse_format("cat", optarg))
            return 1;
        else if (c != 'f')
            return cli_usage("cat", "unknown option or missing value: '%s'", argv[optind - 1]);
    }
    if (optind != argc - 1)
        return cli_usage("cat", "expected exactly one IMAGE");

    struct qcow2_image *img;
    if (cli_open_image_shared(argv[optind], snapshot, force_share, &img))
        return 1;
    uint8_t *buf = malloc(CAT_CHUNK);
    if (!buf) {
        qcow2_close(img);
        return cli_fail(argv[optind], "out of memory");
    }
    int status = 0;
    uint64_t size = qcow2_virtual_size(img);
    for (uint64_t off = 0; off < size && !status;) {
        size_t n = size - off < CAT_CHUNK ? (size_t)(size - off) : CAT_CHUNK;
        struct qcow2_error err;
        if (qcow2_pread(img, buf, n, off, &err))
            status = cli_fail_engine(&err);
        else if (fwrite(buf, 1, n, stdout) != n)
            status = cli_fail("<stdout>", "write failed: %s", strerror(errno));
        off += n;
    }
    if (!status && fflush(stdout))
        status = cli_fail("<stdout>", "write failed: %s", strerror(errno));
    free(buf);
    qcow2_close(img);
    return status;
}
