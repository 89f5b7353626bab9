/* SPDX-License-Identifier: BSD-2-Clause */
/* Guest reads of an open image (read.c), below the public qcow2_pread and the write path. */
#ifndef QVET_READ_H
#define QVET_READ_H

#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

/* Reads guest bytes [off, off + len) of img (qcow2_pread's contract). */
int image_pread(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
                struct qcow2_error *err);

/*
 * Reads guest bytes [off, off + len) of a qcow2 image as its clusters hold them, up to the
 * end of the cluster that holds the virtual size's last byte: the bytes a shrink into the
 * middle of a cluster left past the end of the disk, which a copy-on-write of that
 * cluster keeps (as QEMU's does) so that a later grow shows them again.
 */
int image_pread_clusters(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
                         struct qcow2_error *err);

#endif
