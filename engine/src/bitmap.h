/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Persistent dirty bitmaps. qvet keeps them as they are; it only validates the
 * directory the way QEMU does on open, so it refuses what QEMU refuses.
 */
#ifndef QVET_BITMAP_H
#define QVET_BITMAP_H

#include "qcow2.h"

#define BITMAP_MAX_COUNT 65535u
#define BITMAP_MAX_DIRECTORY_BYTES (65535u * 1024u)

struct qcow2_image;

int bitmap_directory_check(struct qcow2_image *img, struct qcow2_error *err);

#endif
