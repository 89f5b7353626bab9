/* SPDX-License-Identifier: BSD-2-Clause */
/* Compressed clusters: raw deflate (window 2^12) and zstd frames. */
#ifndef QVET_COMPRESS_H
#define QVET_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

struct decompressor;

int decompressor_new(enum qcow2_compression type, struct decompressor **out);
void decompressor_free(struct decompressor *d);

/*
 * Decodes src (the stored sectors, which may hold trailing bytes of the next cluster)
 * until dst is exactly full. Returns 0, -EIO if the stream is damaged, ends before dst
 * is full, or (zstd) leaves a frame unfinished once dst is full.
 */
int decompress_cluster(struct decompressor *d, const uint8_t *src, size_t src_len,
                       uint8_t *dst, size_t dst_len);

#endif
