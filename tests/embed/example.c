/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A program that embeds libqvet the way a tool would: only <qvet/qcow2.h> and
 * `pkg-config qvet`. Copies an image's guest bytes to a file.
 */
#include <qvet/qcow2.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s IMAGE OUT\n", argv[0]);
        return 2;
    }
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(argv[1], NULL, &img, &err)) {
        fprintf(stderr, "%s: %s\n", err.file, err.message);
        return 1;
    }
    FILE *out = fopen(argv[2], "wb");
    static char buf[65536];
    int status = out ? 0 : 1;
    uint64_t size = qcow2_virtual_size(img);
    for (uint64_t off = 0; off < size && !status; off += sizeof(buf)) {
        size_t n = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
        if (qcow2_pread(img, buf, n, off, &err)) {
            fprintf(stderr, "%s: %s\n", err.file, err.message);
            status = 1;
        } else if (fwrite(buf, 1, n, out) != n) {
            status = 1;
        }
    }
    if (out && fclose(out))
        status = 1;
    qcow2_close(img);
    return status;
}
