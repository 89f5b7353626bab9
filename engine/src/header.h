/* SPDX-License-Identifier: BSD-2-Clause */
/* The image header (cluster 0): fixed fields, v3 fields, header extensions. */
#ifndef QVET_HEADER_H
#define QVET_HEADER_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2.h"

#define QCOW2_MAGIC 0x514649FBu
#define QCOW2_V2_HEADER_LENGTH 72u
#define QCOW2_V3_MIN_HEADER_LENGTH 104u
#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u
#define QCOW2_MAX_REFCOUNT_ORDER 6u
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MAX_BACKING_FORMAT 15u

/* Byte offsets of the header fields the engine rewrites or names in messages. */
#define HEADER_OFF_SIZE 24u
#define HEADER_OFF_L1_SIZE 36u             /* u32, followed by the u64 l1_table_offset */
#define HEADER_OFF_REFTABLE_OFFSET 48u     /* u64, followed by the u32 cluster count */
#define HEADER_OFF_NB_SNAPSHOTS 60u        /* u32, followed by the u64 snapshots_offset */
#define HEADER_OFF_INCOMPAT 72u
#define HEADER_OFF_AUTOCLEAR 88u
#define HEADER_OFF_REFCOUNT_ORDER 96u

/* A field of the fixed header: where it is, how wide (bytes), the first version with it. */
struct header_field {
    const char *name;               /* as the specification names it */
    uint32_t offset, width, version;
};

/* Every field of the fixed header, in order (the table tools edit images by). */
extern const struct header_field header_fields[];
extern const size_t header_field_count;

#define HEADER_EXT_END 0x00000000u
#define HEADER_EXT_BACKING_FORMAT 0xE2792ACAu
#define HEADER_EXT_FEATURE_TABLE 0x6803F857u
#define HEADER_EXT_BITMAPS 0x23852875u
#define HEADER_EXT_FDE 0x0537BE77u
#define HEADER_EXT_DATA_FILE 0x44415441u

#define QCOW2_INCOMPAT_KNOWN \
    (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE | \
     QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2)

enum feature_type { FEATURE_INCOMPAT = 0, FEATURE_COMPAT = 1, FEATURE_AUTOCLEAR = 2 };

struct feature_name {
    uint8_t type;
    uint8_t bit;
    char name[47];
};

/* Every header field decoded, in host byte order. */
struct header {
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;

    /* From the extensions and the backing name. */
    char *backing_name;             /* NUL-terminated copy, or NULL */
    char backing_format[QCOW2_MAX_BACKING_FORMAT + 1];
    bool has_backing_format;
    struct feature_name *feature_names;
    uint32_t feature_name_count;
    bool has_bitmaps_ext;
    uint32_t nb_bitmaps;
    uint64_t bitmap_directory_size;
    uint64_t bitmap_directory_offset;
    bool has_fde_ext;
    bool has_data_file_ext;
};

/*
 * Decodes and validates the header in `cluster0`: the first `len` bytes of the file (at
 * least HEADER_PROBE_BYTES, bytes past the end of the file zeros), len >= the cluster
 * size the header declares or >= the file's size. When len is less than the cluster the
 * rest of it is past the end of the file and reads as zeros, except that an extension
 * partly inside `len` and partly past it fails with -ENOBUFS: call again with the whole
 * cluster. `file_size` bounds every table. On success the caller owns the allocations in
 * *h (header_release). Refuses, with the rule named, anything QEMU 7.2 refuses to open
 * plus qvet's stricter rules (docs/format.md §3).
 */
int header_parse(const uint8_t *cluster0, size_t len, uint64_t file_size, const char *file,
                 struct header *h, struct qcow2_error *err);

/*
 * header_parse with options. HEADER_FOR_CHECK accepts what `qemu-img check` tolerates so
 * that it can report and repair it: an image without a refcount table, a refcount or L1
 * table that runs past the end of the file (the rest reads as zeros), and any snapshot
 * count and offset (the check reads that table itself, with QEMU's rules).
 */
#define HEADER_FOR_CHECK 0x1u
int header_parse_flags(const uint8_t *cluster0, size_t len, uint64_t file_size,
                       const char *file, unsigned flags, struct header *h,
                       struct qcow2_error *err);

/* Bytes of cluster 0 needed to decode the fixed fields, before cluster_bits is known. */
#define HEADER_PROBE_BYTES 112u

/* The raw cluster_bits field of a header's first HEADER_PROBE_BYTES (not validated). */
uint32_t header_probe_cluster_bits(const uint8_t *probe);

void header_release(struct header *h);

/*
 * Encodes the fixed fields of *h (72 bytes for v2; 104, plus compression_type and its
 * padding up to 112 when header_length says so, for v3) into buf, the inverse of what
 * header_parse decodes. Returns the number of bytes written. Nothing after them (unknown
 * header fields, extensions, the backing name) is touched, so rewriting these bytes in
 * place preserves all of it.
 */
size_t header_encode_fixed(const struct header *h, uint8_t *buf);

/* Writes an extension's 8-byte header (type, length) at buf + pos; returns where its data goes. */
size_t header_put_extension(uint8_t *buf, size_t pos, uint32_t type, uint32_t len);

/* The name the feature table gives to a bit, or NULL. */
const char *header_feature_name(const struct header *h, enum feature_type type, unsigned bit);

#endif
