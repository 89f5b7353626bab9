/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The header: the only place its fields are decoded. Validation follows the order in
 * which QEMU 7.2 checks an image on open, plus qvet's stricter rules (docs/format.md §3)
 * (tables inside the file, header_length a multiple of 8, zero padding, extensions at
 * most once), so that qvet refuses everything QEMU refuses and says which rule broke.
 */
#include "header.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "error.h"

const struct header_field header_fields[] = {
    { "magic", 0, 4, 2 },
    { "version", 4, 4, 2 },
    { "backing_file_offset", 8, 8, 2 },
    { "backing_file_size", 16, 4, 2 },
    { "cluster_bits", 20, 4, 2 },
    { "size", HEADER_OFF_SIZE, 8, 2 },
    { "crypt_method", 32, 4, 2 },
    { "l1_size", HEADER_OFF_L1_SIZE, 4, 2 },
    { "l1_table_offset", HEADER_OFF_L1_SIZE + 4, 8, 2 },
    { "refcount_table_offset", HEADER_OFF_REFTABLE_OFFSET, 8, 2 },
    { "refcount_table_clusters", HEADER_OFF_REFTABLE_OFFSET + 8, 4, 2 },
    { "nb_snapshots", HEADER_OFF_NB_SNAPSHOTS, 4, 2 },
    { "snapshots_offset", HEADER_OFF_NB_SNAPSHOTS + 4, 8, 2 },
    { "incompatible_features", HEADER_OFF_INCOMPAT, 8, 3 },
    { "compatible_features", 80, 8, 3 },
    { "autoclear_features", HEADER_OFF_AUTOCLEAR, 8, 3 },
    { "refcount_order", HEADER_OFF_REFCOUNT_ORDER, 4, 3 },
    { "header_length", 100, 4, 3 },
    { "compression_type", 104, 1, 3 },
    { "padding", 105, 7, 3 },
};
const size_t header_field_count = sizeof(header_fields) / sizeof(header_fields[0]);

/* Byte offsets of the header fields. */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 4,
    OFF_BACKING_OFFSET = 8,
    OFF_BACKING_SIZE = 16,
    OFF_CLUSTER_BITS = 20,
    OFF_SIZE = 24,
    OFF_CRYPT_METHOD = 32,
    OFF_L1_SIZE = 36,
    OFF_L1_OFFSET = 40,
    OFF_REFTABLE_OFFSET = 48,
    OFF_REFTABLE_CLUSTERS = 56,
    OFF_NB_SNAPSHOTS = 60,
    OFF_SNAPSHOTS_OFFSET = 64,
    OFF_INCOMPAT = 72,
    OFF_COMPAT = 80,
    OFF_AUTOCLEAR = 88,
    OFF_REFCOUNT_ORDER = 96,
    OFF_HEADER_LENGTH = 100,
    OFF_COMPRESSION_TYPE = 104,
    OFF_PADDING_END = 112,
};

#define FEATURE_ENTRY_BYTES 48u
#define FEATURE_NAME_BYTES 46u
#define BITMAPS_EXT_BYTES 24u
#define FDE_EXT_BYTES 16u
#define CRYPT_NONE 0u
#define CRYPT_AES 1u
#define CRYPT_LUKS 2u

struct parse_ctx {
    const uint8_t *buf;
    size_t len;                     /* bytes of cluster 0 in buf; the file ends before the
                                       rest of the cluster, which reads as zeros */
    uint64_t file_size;
    const char *file;
    unsigned flags;
    struct header *h;
    struct qcow2_error *err;
};

static int fail(struct parse_ctx *c, uint64_t offset, const char *structure,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct parse_ctx *c, uint64_t offset, const char *structure,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = err_vset(c->err, -EINVAL, c->file, structure, offset, fmt, ap);
    va_end(ap);
    return ret;
}

/*
 * An extension that the file holds part of lies partly past the bytes given: the caller
 * gives the whole cluster and parses again (its zeros past the file are data then).
 */
static int short_buffer(struct parse_ctx *c, uint64_t offset)
{
    return err_set(c->err, -ENOBUFS, c->file, "header extension", offset,
                   "internal: extension past the %zu bytes given", c->len);
}

static void decode_fixed_fields(const uint8_t *b, struct header *h)
{
    h->version = be32_get(b + OFF_VERSION);
    h->backing_file_offset = be64_get(b + OFF_BACKING_OFFSET);
    h->backing_file_size = be32_get(b + OFF_BACKING_SIZE);
    h->cluster_bits = be32_get(b + OFF_CLUSTER_BITS);
    h->size = be64_get(b + OFF_SIZE);
    h->crypt_method = be32_get(b + OFF_CRYPT_METHOD);
    h->l1_size = be32_get(b + OFF_L1_SIZE);
    h->l1_table_offset = be64_get(b + OFF_L1_OFFSET);
    h->refcount_table_offset = be64_get(b + OFF_REFTABLE_OFFSET);
    h->refcount_table_clusters = be32_get(b + OFF_REFTABLE_CLUSTERS);
    h->nb_snapshots = be32_get(b + OFF_NB_SNAPSHOTS);
    h->snapshots_offset = be64_get(b + OFF_SNAPSHOTS_OFFSET);
    if (h->version >= 3) {
        h->incompatible_features = be64_get(b + OFF_INCOMPAT);
        h->compatible_features = be64_get(b + OFF_COMPAT);
        h->autoclear_features = be64_get(b + OFF_AUTOCLEAR);
        h->refcount_order = be32_get(b + OFF_REFCOUNT_ORDER);
        h->header_length = be32_get(b + OFF_HEADER_LENGTH);
        h->compression_type = h->header_length > OFF_COMPRESSION_TYPE
                                  ? b[OFF_COMPRESSION_TYPE] : 0;
    } else {
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_LENGTH;
    }
}

static int check_identity(struct parse_ctx *c)
{
    if (c->file_size < 8 || be32_get(c->buf + OFF_MAGIC) != QCOW2_MAGIC)
        return fail(c, OFF_MAGIC, "header field magic",
                    "not a qcow2 image: the file does not start with QFI\\xfb");
    uint32_t version = c->h->version;
    if (version == 1)
        return fail(c, OFF_VERSION, "header field version",
                    "version 1 is the old qcow format, not qcow2 (only 2 and 3 are "
                    "supported)");
    if (version != 2 && version != 3)
        return fail(c, OFF_VERSION, "header field version",
                    "unsupported qcow2 version %" PRIu32 " (only 2 and 3 exist)", version);
    uint32_t fixed = version == 2 ? QCOW2_V2_HEADER_LENGTH : QCOW2_V3_MIN_HEADER_LENGTH;
    if (c->file_size < fixed)
        return fail(c, 0, "header",
                    "file is %" PRIu64 " bytes, shorter than the %" PRIu32
                    "-byte v%" PRIu32 " header",
                    c->file_size, fixed, version);
    return 0;
}

static int check_cluster_bits(struct parse_ctx *c)
{
    uint32_t cb = c->h->cluster_bits;
    if (cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS)
        return fail(c, OFF_CLUSTER_BITS, "header field cluster_bits",
                    "value %" PRIu32 " outside %u..%u (cluster sizes 512 B to 2 MiB)", cb,
                    QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
    return 0;
}

static int check_header_length(struct parse_ctx *c)
{
    const struct header *h = c->h;
    uint64_t cs = 1ull << h->cluster_bits;
    if (h->version == 2)
        return 0;
    if (h->header_length < QCOW2_V3_MIN_HEADER_LENGTH)
        return fail(c, OFF_HEADER_LENGTH, "header field header_length",
                    "value %" PRIu32 " is shorter than the %u bytes a v3 header needs",
                    h->header_length, QCOW2_V3_MIN_HEADER_LENGTH);
    if (h->header_length > cs)
        return fail(c, OFF_HEADER_LENGTH, "header field header_length",
                    "value %" PRIu32 " exceeds the cluster size %" PRIu64, h->header_length,
                    cs);
    if (h->header_length % 8)
        return fail(c, OFF_HEADER_LENGTH, "header field header_length",
                    "value %" PRIu32 " is not a multiple of 8", h->header_length);
    if (h->header_length > c->file_size)
        return fail(c, OFF_HEADER_LENGTH, "header field header_length",
                    "value %" PRIu32 " runs past the end of the file (%" PRIu64 " bytes)",
                    h->header_length, c->file_size);
    uint32_t pad_end = QVET_MIN(h->header_length, (uint32_t)OFF_PADDING_END);
    for (uint32_t i = OFF_COMPRESSION_TYPE + 1; i < pad_end; i++) {
        if (c->buf[i])
            return fail(c, i, "header padding",
                        "byte is 0x%02x; the padding after compression_type must be zero",
                        c->buf[i]);
    }
    return 0;
}

/* Appends one feature-table entry set, refusing a second table. */
static int parse_feature_table(struct parse_ctx *c, uint64_t off, uint32_t len)
{
    struct header *h = c->h;
    if (len % FEATURE_ENTRY_BYTES)
        return fail(c, off, "feature name table extension",
                    "length %" PRIu32 " is not a multiple of the %u-byte entry", len,
                    FEATURE_ENTRY_BYTES);
    uint32_t n = len / FEATURE_ENTRY_BYTES;
    if (n == 0)
        return 0;
    h->feature_names = calloc(n, sizeof(*h->feature_names));
    if (!h->feature_names)
        return err_set(c->err, -ENOMEM, c->file, "feature name table extension", off,
                       "out of memory for %" PRIu32 " entries", n);
    h->feature_name_count = n;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = c->buf + off + (uint64_t)i * FEATURE_ENTRY_BYTES;
        h->feature_names[i].type = e[0];
        h->feature_names[i].bit = e[1];
        memcpy(h->feature_names[i].name, e + 2, FEATURE_NAME_BYTES);
        h->feature_names[i].name[FEATURE_NAME_BYTES] = '\0';
    }
    return 0;
}

static int parse_backing_format(struct parse_ctx *c, uint64_t off, uint32_t len)
{
    struct header *h = c->h;
    if (len > QCOW2_MAX_BACKING_FORMAT)
        return fail(c, off, "backing format extension",
                    "length %" PRIu32 " exceeds the %u-byte limit for a format name", len,
                    QCOW2_MAX_BACKING_FORMAT);
    if (memchr(c->buf + off, 0, len))
        return fail(c, off, "backing format extension", "format name contains a NUL byte");
    memcpy(h->backing_format, c->buf + off, len);
    h->backing_format[len] = '\0';
    h->has_backing_format = true;
    return 0;
}

static int parse_bitmaps_ext(struct parse_ctx *c, uint64_t off, uint32_t len)
{
    struct header *h = c->h;
    if (len != BITMAPS_EXT_BYTES)
        return fail(c, off, "bitmaps extension",
                    "length %" PRIu32 " is not the required %u", len, BITMAPS_EXT_BYTES);
    h->has_bitmaps_ext = true;
    /* Without the autoclear bit, the bitmaps are stale and their contents are ignored. */
    if (!(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
        return 0;
    const uint8_t *e = c->buf + off;
    h->nb_bitmaps = be32_get(e);
    uint32_t reserved = be32_get(e + 4);
    h->bitmap_directory_size = be64_get(e + 8);
    h->bitmap_directory_offset = be64_get(e + 16);
    uint64_t cs = 1ull << h->cluster_bits;
    if (reserved)
        return fail(c, off + 4, "bitmaps extension",
                    "reserved field is 0x%" PRIx32 ", must be zero", reserved);
    if (h->nb_bitmaps == 0)
        return fail(c, off, "bitmaps extension", "nb_bitmaps is 0, must be at least 1");
    if (h->nb_bitmaps > 65535)
        return fail(c, off, "bitmaps extension",
                    "nb_bitmaps %" PRIu32 " exceeds the limit of 65535", h->nb_bitmaps);
    if (h->bitmap_directory_offset % cs)
        return fail(c, off + 16, "bitmaps extension",
                    "directory offset 0x%" PRIx64 " is not cluster-aligned",
                    h->bitmap_directory_offset);
    if (h->bitmap_directory_size > 65535ull * 1024)
        return fail(c, off + 8, "bitmaps extension",
                    "directory size %" PRIu64 " exceeds the limit of %u",
                    h->bitmap_directory_size, 65535u * 1024u);
    return 0;
}

static int parse_one_extension(struct parse_ctx *c, uint32_t type, uint64_t data_off,
                               uint32_t len, uint32_t *seen)
{
    struct header *h = c->h;
    int bit;
    switch (type) {
    case HEADER_EXT_BACKING_FORMAT: bit = 0; break;
    case HEADER_EXT_FEATURE_TABLE: bit = 1; break;
    case HEADER_EXT_BITMAPS: bit = 2; break;
    case HEADER_EXT_FDE: bit = 3; break;
    case HEADER_EXT_DATA_FILE: bit = 4; break;
    default: return 0;  /* unknown extensions are skipped (and kept by writers) */
    }
    if (*seen & (1u << bit))
        return fail(c, data_off - 8, "header extension",
                    "type 0x%08" PRIx32 " appears more than once", type);
    *seen |= 1u << bit;

    switch (type) {
    case HEADER_EXT_BACKING_FORMAT:
        return parse_backing_format(c, data_off, len);
    case HEADER_EXT_FEATURE_TABLE:
        return parse_feature_table(c, data_off, len);
    case HEADER_EXT_BITMAPS:
        return parse_bitmaps_ext(c, data_off, len);
    case HEADER_EXT_FDE:
        if (len != FDE_EXT_BYTES)
            return fail(c, data_off, "encryption header extension",
                        "length %" PRIu32 " is not the required %u", len, FDE_EXT_BYTES);
        if (h->crypt_method != CRYPT_LUKS)
            return fail(c, data_off, "encryption header extension",
                        "present but crypt_method is %" PRIu32 ", not 2 (LUKS)",
                        h->crypt_method);
        h->has_fde_ext = true;
        return 0;
    default:
        h->has_data_file_ext = true;
        return 0;
    }
}

static int parse_extensions(struct parse_ctx *c)
{
    const struct header *h = c->h;
    uint64_t cs = 1ull << h->cluster_bits;
    /* check_backing_name has kept the name's offset inside cluster 0. */
    uint64_t end = h->backing_file_offset ? h->backing_file_offset : cs;
    uint64_t off = h->header_length;
    uint32_t seen = 0;
    while (off < end) {
        if (!span_fits(end, off, 8))
            return fail(c, off, "header extension",
                        "8-byte extension header runs past the end of the extension area "
                        "(%" PRIu64 ")", end);
        /* Past the end of the file the area is zeros: an end marker. */
        if (off >= c->len)
            return 0;
        if (!span_fits(c->len, off, 8))
            return short_buffer(c, off);
        uint32_t type = be32_get(c->buf + off);
        uint32_t len = be32_get(c->buf + off + 4);
        uint64_t data = off + 8;
        if (!span_fits(end, data, len))
            return fail(c, off, "header extension",
                        "type 0x%08" PRIx32 " with length %" PRIu32
                        " runs past the end of the extension area (%" PRIu64 ")",
                        type, len, end);
        if (type == HEADER_EXT_END)
            return 0;
        if (!span_fits(c->len, data, len))
            return short_buffer(c, off);
        int ret = parse_one_extension(c, type, data, len, &seen);
        if (ret)
            return ret;
        off = data + round_up_u64(len, 8);
    }
    return 0;
}

static int check_backing_name(struct parse_ctx *c)
{
    struct header *h = c->h;
    uint64_t cs = 1ull << h->cluster_bits;
    if (h->backing_file_offset > cs)
        return fail(c, OFF_BACKING_OFFSET, "header field backing_file_offset",
                    "value %" PRIu64 " lies past the end of cluster 0 (%" PRIu64 ")",
                    h->backing_file_offset, cs);
    if (!h->backing_file_offset || !h->backing_file_size)
        return 0;
    if (h->backing_file_offset < h->header_length)
        return fail(c, OFF_BACKING_OFFSET, "header field backing_file_offset",
                    "value %" PRIu64 " overlaps the %" PRIu32 "-byte header",
                    h->backing_file_offset, h->header_length);
    uint64_t limit = QVET_MIN((uint64_t)QCOW2_MAX_BACKING_NAME, cs - h->backing_file_offset);
    if (h->backing_file_size > limit)
        return fail(c, OFF_BACKING_SIZE, "header field backing_file_size",
                    "backing file name length %" PRIu32 " exceeds %" PRIu64
                    " (1023 and the end of cluster 0)",
                    h->backing_file_size, limit);
    if (h->backing_file_offset + h->backing_file_size > c->file_size)
        return fail(c, h->backing_file_offset, "backing file name",
                    "%" PRIu32 " bytes run past the end of the file (%" PRIu64 " bytes)",
                    h->backing_file_size, c->file_size);
    const uint8_t *name = c->buf + h->backing_file_offset;
    if (memchr(name, 0, h->backing_file_size))
        return fail(c, h->backing_file_offset, "backing file name", "contains a NUL byte");
    h->backing_name = malloc(h->backing_file_size + 1u);
    if (!h->backing_name)
        return err_set(c->err, -ENOMEM, c->file, "backing file name", h->backing_file_offset,
                       "out of memory");
    memcpy(h->backing_name, name, h->backing_file_size);
    h->backing_name[h->backing_file_size] = '\0';
    return 0;
}

static int check_features(struct parse_ctx *c)
{
    const struct header *h = c->h;
    uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
        unsigned bit = (unsigned)__builtin_ctzll(unknown);
        const char *name = header_feature_name(h, FEATURE_INCOMPAT, bit);
        return fail(c, OFF_INCOMPAT, "header field incompatible_features",
                    "unknown incompatible feature bit %u%s%s%s (mask 0x%" PRIx64
                    "); the image must not be opened",
                    bit, name ? " \"" : "", name ? name : "", name ? "\"" : "", unknown);
    }
    if (h->compression_type > QCOW2_COMPRESSION_ZSTD)
        return fail(c, OFF_COMPRESSION_TYPE, "header field compression_type",
                    "unknown compression type %u (0 = zlib, 1 = zstd)", h->compression_type);
    bool bit3 = (h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) != 0;
    if (h->compression_type == QCOW2_COMPRESSION_ZLIB && bit3)
        return fail(c, OFF_INCOMPAT, "header field incompatible_features",
                    "compression-type bit 3 is set but compression_type is 0 (zlib)");
    if (h->compression_type != QCOW2_COMPRESSION_ZLIB && !bit3)
        return fail(c, OFF_INCOMPAT, "header field incompatible_features",
                    "compression_type is %u but compression-type bit 3 is clear",
                    h->compression_type);
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
        return err_set(c->err, -ENOTSUP, c->file, "header field incompatible_features",
                       OFF_INCOMPAT,
                       "external data file (bit 2) is not supported by qvet yet");
    if ((h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
        return fail(c, OFF_AUTOCLEAR, "header field autoclear_features",
                    "raw external data (bit 1) requires an external data file (incompatible "
                    "bit 2)");
    if ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2) && h->cluster_bits < 14)
        return fail(c, OFF_INCOMPAT, "header field incompatible_features",
                    "extended L2 with %u-byte clusters gives %u-byte subclusters; the "
                    "minimum is 512",
                    1u << h->cluster_bits, (1u << h->cluster_bits) / 32u);
    if (h->refcount_order > QCOW2_MAX_REFCOUNT_ORDER)
        return fail(c, OFF_REFCOUNT_ORDER, "header field refcount_order",
                    "value %" PRIu32 " exceeds %u (refcounts of at most 64 bits)",
                    h->refcount_order, QCOW2_MAX_REFCOUNT_ORDER);
    return 0;
}

static int check_encryption(struct parse_ctx *c)
{
    const struct header *h = c->h;
    if (h->crypt_method > CRYPT_LUKS)
        return fail(c, OFF_CRYPT_METHOD, "header field crypt_method",
                    "unsupported encryption method %" PRIu32 " (0 none, 1 AES, 2 LUKS)",
                    h->crypt_method);
    if (h->crypt_method == CRYPT_LUKS && !h->has_fde_ext)
        return fail(c, OFF_CRYPT_METHOD, "header field crypt_method",
                    "LUKS encryption (2) without the encryption header extension");
    if (h->crypt_method != CRYPT_NONE)
        return err_set(c->err, -ENOTSUP, c->file, "header field crypt_method",
                       OFF_CRYPT_METHOD,
                       "encrypted images (%s) are not supported by qvet yet",
                       h->crypt_method == CRYPT_AES ? "AES" : "LUKS");
    return 0;
}

/* Where a table's location and length live in the header, for messages. */
struct table_fields {
    const char *table;              /* "refcount table", "active L1 table" */
    const char *offset_name;
    uint32_t offset_field;
    const char *count_name;
    uint32_t count_field;
};

/*
 * A table of `entries` entries of `entry_bytes` at `offset`, inside the file. For a check
 * only QEMU's own rules apply (alignment, size, no overflow): a table that runs past the
 * end of the file reads as zeros there, and the check reports what that breaks.
 */
static int check_table(struct parse_ctx *c, const struct table_fields *f, uint64_t offset,
                       uint64_t entries, uint64_t entry_bytes, uint64_t max_bytes)
{
    char where[64];
    uint64_t cs = 1ull << c->h->cluster_bits;
    snprintf(where, sizeof(where), "header field %s", f->count_name);
    if (entries > max_bytes / entry_bytes)
        return fail(c, f->count_field, where,
                    "the %s would have %" PRIu64 " entries, more than the limit of %" PRIu64
                    " bytes holds",
                    f->table, entries, max_bytes);
    snprintf(where, sizeof(where), "header field %s", f->offset_name);
    if (offset % cs)
        return fail(c, f->offset_field, where,
                    "%s offset 0x%" PRIx64 " is not cluster-aligned", f->table, offset);
    uint64_t bytes = entries * entry_bytes;
    if (offset > INT64_MAX - bytes)
        return fail(c, f->offset_field, where,
                    "%s offset 0x%" PRIx64 " + %" PRIu64 " bytes overflows", f->table, offset,
                    bytes);
    if (bytes && offset + bytes > c->file_size && !(c->flags & HEADER_FOR_CHECK))
        return fail(c, f->offset_field, where,
                    "%s at 0x%" PRIx64 " (%" PRIu64 " bytes) runs past the end of the file "
                    "(%" PRIu64 " bytes)",
                    f->table, offset, bytes, c->file_size);
    if (bytes && offset == 0)
        return fail(c, f->offset_field, where, "%s at offset 0 would overlap the header",
                    f->table);
    return 0;
}

static int check_snapshot_fields(struct parse_ctx *c)
{
    const struct header *h = c->h;
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
        return fail(c, OFF_NB_SNAPSHOTS, "header field nb_snapshots",
                    "value %" PRIu32 " exceeds the limit of %u", h->nb_snapshots,
                    QCOW2_MAX_SNAPSHOTS);
    if (h->snapshots_offset % (1ull << h->cluster_bits))
        return fail(c, OFF_SNAPSHOTS_OFFSET, "header field snapshots_offset",
                    "offset 0x%" PRIx64 " is not cluster-aligned", h->snapshots_offset);
    if (h->nb_snapshots && (h->snapshots_offset == 0 || h->snapshots_offset >= c->file_size))
        return fail(c, OFF_SNAPSHOTS_OFFSET, "header field snapshots_offset",
                    "snapshot table at 0x%" PRIx64 " lies outside the file (%" PRIu64
                    " bytes)",
                    h->snapshots_offset, c->file_size);
    return 0;
}

static int check_tables(struct parse_ctx *c)
{
    const struct header *h = c->h;
    uint32_t cb = h->cluster_bits;
    if (h->refcount_table_clusters == 0 && !(c->flags & HEADER_FOR_CHECK))
        return fail(c, OFF_REFTABLE_CLUSTERS, "header field refcount_table_clusters",
                    "value 0: the image has no refcount table");
    static const struct table_fields reftable = {
        "refcount table", "refcount_table_offset", OFF_REFTABLE_OFFSET,
        "refcount_table_clusters", OFF_REFTABLE_CLUSTERS,
    };
    static const struct table_fields l1 = {
        "active L1 table", "l1_table_offset", OFF_L1_OFFSET, "l1_size", OFF_L1_SIZE,
    };
    int ret = check_table(c, &reftable, h->refcount_table_offset,
                          (uint64_t)h->refcount_table_clusters << (cb - 3), 8,
                          QCOW2_MAX_REFTABLE_BYTES);
    /* A check reads the snapshot table itself and reports (or repairs) what is wrong. */
    if (!ret && !(c->flags & HEADER_FOR_CHECK))
        ret = check_snapshot_fields(c);
    if (ret)
        return ret;
    ret = check_table(c, &l1, h->l1_table_offset, h->l1_size, 8, QCOW2_MAX_L1_BYTES);
    if (ret)
        return ret;

    /* The L1 table must be able to map every byte of the virtual size. */
    uint32_t l2_bits = cb - ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 4u : 3u);
    uint32_t shift = cb + l2_bits;
    uint64_t needed = (h->size >> shift) + ((h->size & ((1ull << shift) - 1)) != 0);
    if (needed > INT_MAX)
        return fail(c, OFF_SIZE, "header field size",
                    "virtual size %" PRIu64 " is too big (needs %" PRIu64 " L1 entries)",
                    h->size, needed);
    if (h->l1_size < needed)
        return fail(c, OFF_L1_SIZE, "header field l1_size",
                    "%" PRIu32 " entries cannot map the virtual size %" PRIu64
                    " (needs %" PRIu64 ")",
                    h->l1_size, h->size, needed);
    return 0;
}

size_t header_put_extension(uint8_t *buf, size_t pos, uint32_t type, uint32_t len)
{
    be32_put(buf + pos, type);
    be32_put(buf + pos + 4, len);
    return pos + 8;
}

size_t header_encode_fixed(const struct header *h, uint8_t *b)
{
    be32_put(b + OFF_MAGIC, QCOW2_MAGIC);
    be32_put(b + OFF_VERSION, h->version);
    be64_put(b + OFF_BACKING_OFFSET, h->backing_file_offset);
    be32_put(b + OFF_BACKING_SIZE, h->backing_file_size);
    be32_put(b + OFF_CLUSTER_BITS, h->cluster_bits);
    be64_put(b + OFF_SIZE, h->size);
    be32_put(b + OFF_CRYPT_METHOD, h->crypt_method);
    be32_put(b + OFF_L1_SIZE, h->l1_size);
    be64_put(b + OFF_L1_OFFSET, h->l1_table_offset);
    be64_put(b + OFF_REFTABLE_OFFSET, h->refcount_table_offset);
    be32_put(b + OFF_REFTABLE_CLUSTERS, h->refcount_table_clusters);
    be32_put(b + OFF_NB_SNAPSHOTS, h->nb_snapshots);
    be64_put(b + OFF_SNAPSHOTS_OFFSET, h->snapshots_offset);
    if (h->version < 3)
        return QCOW2_V2_HEADER_LENGTH;
    be64_put(b + OFF_INCOMPAT, h->incompatible_features);
    be64_put(b + OFF_COMPAT, h->compatible_features);
    be64_put(b + OFF_AUTOCLEAR, h->autoclear_features);
    be32_put(b + OFF_REFCOUNT_ORDER, h->refcount_order);
    be32_put(b + OFF_HEADER_LENGTH, h->header_length);
    if (h->header_length <= OFF_COMPRESSION_TYPE)
        return OFF_COMPRESSION_TYPE;
    b[OFF_COMPRESSION_TYPE] = h->compression_type;
    memset(b + OFF_COMPRESSION_TYPE + 1, 0, OFF_PADDING_END - OFF_COMPRESSION_TYPE - 1);
    return OFF_PADDING_END;
}

uint32_t header_probe_cluster_bits(const uint8_t *probe)
{
    return be32_get(probe + OFF_CLUSTER_BITS);
}

int header_parse(const uint8_t *cluster0, size_t len, uint64_t file_size, const char *file,
                 struct header *h, struct qcow2_error *err)
{
    return header_parse_flags(cluster0, len, file_size, file, 0, h, err);
}

int header_parse_flags(const uint8_t *cluster0, size_t len, uint64_t file_size,
                       const char *file, unsigned flags, struct header *h,
                       struct qcow2_error *err)
{
    memset(h, 0, sizeof(*h));
    struct parse_ctx c = {
        .buf = cluster0, .len = len, .file_size = file_size, .file = file, .flags = flags,
        .h = h, .err = err,
    };
    if (len < HEADER_PROBE_BYTES)
        return fail(&c, 0, "header", "internal: %zu bytes given, %u needed", len,
                    HEADER_PROBE_BYTES);
    decode_fixed_fields(cluster0, h);
    int ret = check_identity(&c);
    if (!ret)
        ret = check_cluster_bits(&c);
    if (!ret && len < QVET_MIN(1ull << h->cluster_bits, file_size))
        ret = fail(&c, 0, "header",
                   "internal: %zu bytes given, cluster 0 needs %u or the whole file", len,
                   1u << h->cluster_bits);
    if (!ret)
        ret = check_header_length(&c);
    if (!ret)
        ret = check_backing_name(&c);
    if (!ret)
        ret = parse_extensions(&c);
    if (!ret)
        ret = check_features(&c);
    if (!ret)
        ret = check_encryption(&c);
    if (!ret)
        ret = check_tables(&c);
    if (ret)
        header_release(h);
    return ret;
}

void header_release(struct header *h)
{
    free(h->backing_name);
    free(h->feature_names);
    h->backing_name = NULL;
    h->feature_names = NULL;
    h->feature_name_count = 0;
}

const char *header_feature_name(const struct header *h, enum feature_type type, unsigned bit)
{
    for (uint32_t i = 0; i < h->feature_name_count; i++) {
        const struct feature_name *f = &h->feature_names[i];
        if (f->type == type && f->bit == bit && f->name[0])
            return f->name;
    }
    return NULL;
}
