/* SPDX-License-Identifier: BSD-2-Clause */
/* Refcount table and refcount blocks, at every width from 1 to 64 bits. */
#ifndef QVET_REFCOUNT_H
#define QVET_REFCOUNT_H

#include <stdint.h>

#include "qcow2.h"

#define REFTABLE_ENTRY_OFFSET_MASK 0xFFFFFFFFFFFFFE00ull
#define REFTABLE_ENTRY_RESERVED_MASK 0x1FFull

/* Entry `index` of a refcount block with entries 2^order bits wide. */
uint64_t refcount_block_entry(const uint8_t *block, uint32_t order, uint64_t index);

/* log2 of the number of entries in one refcount block. */
static inline uint32_t refcount_block_bits(uint32_t cluster_bits, uint32_t order)
{
    return cluster_bits + 3u - order;
}

struct qcow2_image;

/* The stored refcount of host cluster `cluster_index` (0 when no block covers it). */
int refcount_get(struct qcow2_image *img, uint64_t cluster_index, uint64_t *refcount,
                 struct qcow2_error *err);

#endif
