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

#endif
