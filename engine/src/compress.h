/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Compressed clusters: raw deflate (window 2^12) and zstd frames. A compressor and a
 * decompressor each belong to one open image: their streams are set up once and reset
 * per cluster (a deflate stream's setup costs more than compressing a small cluster).
 */
#ifndef QVET_COMPRESS_H
#define QVET_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

struct compressor;
struct decompressor;

/* A compressor for clusters of at most cluster_size bytes. */
int compressor_new(enum qcow2_compression type, size_t cluster_size, struct compressor **out);
void compressor_free(struct compressor *c);

/*
 * Compresses src (len <= the compressor's cluster size) into the compressor's own buffer
 * (*dst, valid until the next call). Returns the compressed length, or 0 when that does
 * not fit in cap bytes (cap <= the cluster size) or the library failed: the cluster is
 * then stored plain.
 */
size_t compress_cluster(struct compressor *c, const uint8_t *src, size_t len, size_t cap,
                        const uint8_t **dst);

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
