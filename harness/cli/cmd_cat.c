/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet cat: the guest-visible bytes, as `qemu-img convert -O raw` would write them. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CAT_CHUNK (2u << 20)

int cmd_cat(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "snapshot", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    const char *snapshot = NULL;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "s:f:", longopts, NULL)) != -1) {
        if (c == 's')
            snapshot = optarg;
        else if (c == 'f' && cli_parse_format("cat", optarg))
            return 1;
        else if (c != 'f')
            return cli_usage("cat", "unknown option or missing value: '%s'", argv[optind - 1]);
    }
    if (optind != argc - 1)
        return cli_usage("cat", "expected exactly one IMAGE");

    struct qcow2_image *img;
    if (cli_open_image(argv[optind], snapshot, &img))
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
