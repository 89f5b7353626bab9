/* SPDX-License-Identifier: BSD-2-Clause */
/* Helpers shared by the Check suites: scratch directories, qemu-img, files. */
#ifndef QVET_TEST_SUPPORT_H
#define QVET_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* A fresh scratch directory for this process, removed at exit. */
const char *test_dir(void);

/* test_dir()/name, in a static rotating buffer (valid for the next 8 calls). */
const char *test_path(const char *name);

/* Runs a shell command (printf-style); returns its exit status, or -1. */
int test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file; the caller frees. Returns NULL on failure. */
uint8_t *test_read_file(const char *path, size_t *len);

int test_write_file(const char *path, const void *data, size_t len);

/* A whole file as a NUL-terminated string (the caller frees); NULL on failure. */
char *test_read_text(const char *path);

/* The qvet command of this build (build/qvet, next to build/tests), or NULL if absent. */
const char *test_qvet_binary(void);

/* ---- Building on-disk structures by hand ------------------------------------------ */

/* Big-endian stores and loads, written independently of the engine's bytes.h. */
void test_put_be16(uint8_t *p, uint16_t v);
void test_put_be32(uint8_t *p, uint32_t v);
void test_put_be64(uint8_t *p, uint64_t v);
uint64_t test_get_be64(const uint8_t *p);

/*
 * Stores `value` as entry `index` of a refcount block whose entries are 2^order bits
 * wide: LSB-first inside a byte below 8 bits, big-endian from 16 bits up.
 */
void test_refcount_put(uint8_t *block, uint32_t order, uint64_t index, uint64_t value);

/* What test_image_build lays out. */
struct test_image_spec {
    uint32_t version;           /* 2 or 3 */
    uint32_t cluster_bits;      /* 9..21 */
    uint64_t size;              /* virtual size, stored as given */
    uint32_t refcount_order;    /* v3 only; a v2 image always gets 4 */
    int extended_l2;            /* v3 only: incompatible bit 4 */
    uint8_t compression_type;   /* v3 only: 1 = zstd also sets incompatible bit 3 */
    uint32_t extra_clusters;    /* zeroed clusters appended after the L1 table */
};

/* Spec for a v2 or v3 image with 16-bit refcounts, standard L2 and zlib. */
struct test_image_spec test_image_spec(uint32_t version, uint32_t cluster_bits,
                                       uint64_t size);

struct test_image {
    uint8_t *data;              /* the whole file; test_image_free releases it */
    size_t len;
    uint32_t cluster_size;
    uint32_t header_length;     /* 72 (v2) or 112 (v3): where header extensions start */
    uint64_t reftable_offset;   /* cluster 1, one cluster long */
    uint64_t refblock_offset;   /* cluster 2, the only refcount block */
    uint64_t l1_offset;         /* cluster 3, l1_size zero entries */
    uint32_t l1_size;           /* exactly the entries the size needs, at least 1 */
    uint64_t extra_offset;      /* the first of spec->extra_clusters, after the L1 */
};

/*
 * A minimal valid qcow2 image in memory: header in cluster 0 (no extensions, the area
 * after it zeroed, which reads as the end marker), reftable, one refcount block giving
 * every cluster of the file refcount 1, an empty L1 table, then the extra clusters.
 * Returns 0, or -1 if the spec cannot be laid out that way.
 */
int test_image_build(const struct test_image_spec *spec, struct test_image *img);

void test_image_free(struct test_image *img);

/*
 * Writes a header extension (type, length, data, zero padding) at byte `off` of cluster
 * 0 and returns the offset just after it, rounded up to 8.
 */
size_t test_image_put_extension(struct test_image *img, size_t off, uint32_t type,
                                const void *data, uint32_t len);

/*
 * Compresses like QEMU's qcow2 zlib writer: raw deflate (no zlib header), window 2^12,
 * memLevel 9. Returns the stream length, or 0 if it does not fit in `cap`.
 */
size_t test_deflate_raw(const void *in, size_t len, void *out, size_t cap);

/* Fills buf with a reproducible pseudo-random byte sequence chosen by `seed`. */
void test_fill_random(void *buf, size_t len, uint32_t seed);

#endif
