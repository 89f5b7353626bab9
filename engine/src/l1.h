/* SPDX-License-Identifier: BSD-2-Clause */
/* The active L1 table of a writable image (l1.c). */
#ifndef QVET_L1_H
#define QVET_L1_H

#include <stdint.h>

#include "qcow2.h"

struct qcow2_image;

/*
 * Writes L1 entry `index` through, after an image_sync when it names an L2 table, and
 * into img->l1 once it is written.
 */
int image_write_l1_entry(struct qcow2_image *img, uint64_t index, uint64_t value,
                         struct qcow2_error *err);

/* Grows the active L1 table to `entries` (a new copy, header switched last). */
int image_grow_l1(struct qcow2_image *img, uint32_t entries, struct qcow2_error *err);

/* L1 entries needed to map a virtual size of `size` bytes. */
uint64_t image_l1_entries_for(const struct qcow2_image *img, uint64_t size);

/* Grows the L1 table to map a virtual size of `size` bytes; the size stays as it is. */
int image_reserve_size(struct qcow2_image *img, uint64_t size, struct qcow2_error *err);

/* Sets the virtual size in the header (growing the L1 table first if needed). */
int image_set_size(struct qcow2_image *img, uint64_t size, struct qcow2_error *err);

#endif
