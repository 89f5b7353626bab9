/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Creating images: the options of `qemu-img create -f qcow2`, checked with the rules
 * qemu-img 7.2 applies, and the image built the way qemu-img 7.2 builds it, so that the
 * same options give the same bytes.
 *
 * QEMU writes a minimal image (cluster 0, a one-cluster refcount table at cluster 1 and
 * an empty refcount block at cluster 2), opens it, counts those three clusters, grows
 * the L1 table to the virtual size and preallocates if asked, every cluster placed by
 * its refcount allocator. qvet does the same: it writes the minimal image, opens it and
 * lets the engine's own allocator, refcount updates (new blocks, the refcount table's
 * growth), L1 growth and header field writes do the rest; refcount.c places clusters
 * as QEMU's allocator does, which is what keeps the layout identical.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing.h"
#include "bytes.h"
#include "cluster.h"
#include "error.h"
#include "header.h"
#include "image.h"
#include "l1.h"
#include "qcow2.h"
#include "refcount.h"

#define CREATE_OPTION "create option"
#define CREATE_DEFAULT_CLUSTER_SIZE 65536u
#define CREATE_MIN_CLUSTER_SIZE (1u << QCOW2_MIN_CLUSTER_BITS)
#define CREATE_MAX_CLUSTER_SIZE (1u << QCOW2_MAX_CLUSTER_BITS)
/* Extended L2 splits a cluster in 32 subclusters of at least 512 bytes. */
#define CREATE_MIN_EXTL2_CLUSTER_SIZE (512u * SUBCLUSTERS_PER_CLUSTER)
#define CREATE_MAX_L1_ENTRIES (QCOW2_MAX_L1_BYTES / 8u)
#define CREATE_V3_HEADER_LENGTH 112u
#define CREATE_CACHE_BYTES (64u << 10)
#define CREATE_EXT_HEADER_BYTES 8u
#define CREATE_FEATURE_ENTRY_BYTES 48u
#define CREATE_FEATURE_NAME_BYTES 46u
/* qemu-img leaves the feature name table out for clusters of 4 KiB and less. */
#define CREATE_FEATURE_TABLE_MIN_CLUSTER 8192u
#define CREATE_NONE UINT64_MAX
/*
 * Preallocation works in requests of at most INT_MAX bytes, cluster-aligned: QEMU's
 * request limit (and so the largest run of data clusters allocated at once).
 */
#define CREATE_MAX_REQUEST_BYTES 0x7FFFFFFFull
/* falloc and full write their zeros in pieces of this size. */
#define CREATE_ZERO_CHUNK (1u << 20)

/* ------------------------------------------------------------------------------------ */
/* Sizes                                                                                 */

static int create_suffix_shift(char c)
{
    switch (c) {
    case 'b': case 'B': return 0;
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    case 'p': case 'P': return 50;
    case 'e': case 'E': return 60;
    default: return -1;
    }
}

bool qcow2_parse_size(const char *text, uint64_t *out)
{
    if (!text || *text < '0' || *text > '9')
        return false;
    const char *p = text;
    unsigned __int128 whole = 0;
    while (*p >= '0' && *p <= '9') {
        whole = whole * 10 + (unsigned)(*p++ - '0');
        if (whole > UINT64_MAX)
            return false;
    }
    /* A fraction ("1.5M") counts in units of the suffix, truncated to whole bytes. */
    unsigned __int128 frac_num = 0, frac_den = 1;
    bool frac_nonzero = false;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            /* 19 digits resolve far below a byte even for the E suffix. */
            if (frac_den < 10000000000000000000ull) {
                frac_num = frac_num * 10 + (unsigned)(*p - '0');
                frac_den *= 10;
            }
            if (*p != '0')
                frac_nonzero = true;
            p++;
        }
    }
    int shift = 0;
    if (*p) {
        shift = create_suffix_shift(*p);
        if (shift < 0 || p[1])
            return false;
    }
    /* Like QEMU, a fraction of a byte is refused when the unit is bytes. */
    if (frac_nonzero && shift == 0)
        return false;
    unsigned __int128 value = (whole << shift) + ((frac_num << shift) / frac_den);
    if (value > INT64_MAX)
        return false;
    *out = (uint64_t)value;
    return true;
}

/* ------------------------------------------------------------------------------------ */
/* Options                                                                               */

void qcow2_create_options_init(struct qcow2_create_options *o)
{
    memset(o, 0, sizeof(*o));
    o->cluster_size = CREATE_DEFAULT_CLUSTER_SIZE;
    o->version = 3;
    o->refcount_bits = 16;
    o->lazy_refcounts = false;
    o->extended_l2 = false;
    o->compression = QCOW2_COMPRESSION_ZLIB;
    o->preallocation = QCOW2_PREALLOC_OFF;
}

static int create_error_about(struct qcow2_error *err, int code, const char *name,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An option error; `name` is the image being created, when known. */
static int create_error_about(struct qcow2_error *err, int code, const char *name,
                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = err_vset(err, code, name, CREATE_OPTION, QCOW2_NO_OFFSET, fmt, ap);
    va_end(ap);
    return ret;
}

#define create_option_error(err, code, ...) create_error_about(err, code, NULL, __VA_ARGS__)

/* qemu-img's booleans: on/off and their synonyms; a bare key means on. */
static int create_parse_bool(const char *key, const char *value, bool *out,
                             struct qcow2_error *err)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };
    if (!value) {
        *out = true;
        return 0;
    }
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcmp(value, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(value, no[i])) {
            *out = false;
            return 0;
        }
    }
    return create_option_error(err, -EINVAL, "%s=%s: expected on or off", key, value);
}

static int create_parse_size_option(const char *key, const char *value, uint64_t *out,
                                    struct qcow2_error *err)
{
    if (!value || !qcow2_parse_size(value, out))
        return create_option_error(err, -EINVAL,
                                   "%s=%s: not a size (bytes, or a number with a k, M, G, "
                                   "T, P or E suffix, at most 2^63-1)",
                                   key, value ? value : "");
    return 0;
}

static int create_parse_number(const char *key, const char *value, uint32_t *out,
                               struct qcow2_error *err)
{
    uint64_t v = 0;
    const char *p = value;
    if (!p || !*p)
        return create_option_error(err, -EINVAL, "%s needs a value", key);
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > UINT32_MAX)
            return create_option_error(err, -EINVAL, "%s=%s: not a number", key, value);
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > UINT32_MAX)
        return create_option_error(err, -EINVAL, "%s=%s: not a number", key, value);
    *out = (uint32_t)v;
    return 0;
}

/* Applies one key=value (value NULL for a bare key). */
static int create_set_option(struct qcow2_create_options *o, const char *key,
                             const char *value, struct qcow2_error *err)
{
    if (!strcmp(key, "size")) {
        int ret = create_parse_size_option(key, value, &o->size, err);
        if (!ret)
            o->has_size = true;
        return ret;
    }
    if (!strcmp(key, "cluster_size")) {
        uint64_t v;
        int ret = create_parse_size_option(key, value, &v, err);
        if (ret)
            return ret;
        if (v > UINT32_MAX)
            return create_option_error(err, -EINVAL,
                                       "cluster_size=%s: must be a power of two between "
                                       "512 and 2048k",
                                       value);
        o->cluster_size = (uint32_t)v;
        return 0;
    }
    if (!strcmp(key, "compat")) {
        if (value && (!strcmp(value, "0.10") || !strcmp(value, "v2")))
            o->version = 2;
        else if (value && (!strcmp(value, "1.1") || !strcmp(value, "v3")))
            o->version = 3;
        else
            return create_option_error(err, -EINVAL,
                                       "compat=%s: expected 0.10 or v2, 1.1 or v3",
                                       value ? value : "");
        return 0;
    }
    if (!strcmp(key, "refcount_bits"))
        return create_parse_number(key, value, &o->refcount_bits, err);
    if (!strcmp(key, "lazy_refcounts"))
        return create_parse_bool(key, value, &o->lazy_refcounts, err);
    if (!strcmp(key, "extended_l2"))
        return create_parse_bool(key, value, &o->extended_l2, err);
    if (!strcmp(key, "compression_type")) {
        if (value && !strcmp(value, "zlib"))
            o->compression = QCOW2_COMPRESSION_ZLIB;
        else if (value && !strcmp(value, "zstd"))
            o->compression = QCOW2_COMPRESSION_ZSTD;
        else
            return create_option_error(err, -EINVAL,
                                       "compression_type=%s: expected zlib or zstd",
                                       value ? value : "");
        return 0;
    }
    if (!strcmp(key, "preallocation")) {
        if (value && !strcmp(value, "off"))
            o->preallocation = QCOW2_PREALLOC_OFF;
        else if (value && !strcmp(value, "metadata"))
            o->preallocation = QCOW2_PREALLOC_METADATA;
        else if (value && !strcmp(value, "falloc"))
            o->preallocation = QCOW2_PREALLOC_FALLOC;
        else if (value && !strcmp(value, "full"))
            o->preallocation = QCOW2_PREALLOC_FULL;
        else
            return create_option_error(err, -EINVAL,
                                       "preallocation=%s: expected off, metadata, falloc "
                                       "or full",
                                       value ? value : "");
        return 0;
    }
    if (!strcmp(key, "backing_file") || !strcmp(key, "backing_fmt")) {
        if (!value || !*value)
            return create_option_error(err, -EINVAL, "%s needs a value", key);
        if (!strcmp(key, "backing_file"))
            o->backing_file = value;
        else
            o->backing_format = value;
        return 0;
    }
    static const char *const unsupported[] = {
        "data_file", "data_file_raw", "encryption", "encrypt.format", "encrypt.key-secret",
        "encrypt.cipher-alg", "encrypt.cipher-mode", "encrypt.ivgen-alg",
        "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.iter-time", "nocow",
        "extent_size_hint",
    };
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++)
        if (!strcmp(key, unsupported[i]))
            return create_option_error(err, -ENOTSUP,
                                       "qemu-img option \"%s\" is not supported by qvet",
                                       key);
    return create_option_error(err, -EINVAL,
                               "unknown option \"%s\" (known: size, cluster_size, compat, "
                               "refcount_bits, lazy_refcounts, extended_l2, "
                               "compression_type, preallocation, backing_file, backing_fmt)",
                               key);
}

/* The option names, indexed by enum qcow2_create_key. */
static const char *const create_keys[QCOW2_OPT_COUNT] = {
    [QCOW2_OPT_SIZE] = "size",
    [QCOW2_OPT_CLUSTER_SIZE] = "cluster_size",
    [QCOW2_OPT_COMPAT] = "compat",
    [QCOW2_OPT_REFCOUNT_BITS] = "refcount_bits",
    [QCOW2_OPT_LAZY_REFCOUNTS] = "lazy_refcounts",
    [QCOW2_OPT_EXTENDED_L2] = "extended_l2",
    [QCOW2_OPT_COMPRESSION_TYPE] = "compression_type",
    [QCOW2_OPT_PREALLOCATION] = "preallocation",
    [QCOW2_OPT_BACKING_FILE] = "backing_file",
    [QCOW2_OPT_BACKING_FMT] = "backing_fmt",
};

/* Applies one option and remembers how it was spelled (a bare key means "on"). */
static int create_apply_option(struct qcow2_create_options *o, const char *key,
                               const char *value, struct qcow2_error *err)
{
    int ret = create_set_option(o, key, value, err);
    for (int i = 0; i < QCOW2_OPT_COUNT && !ret; i++)
        if (!strcmp(key, create_keys[i]))
            o->given[i] = value ? value : "on";
    return ret;
}

int qcow2_create_options_parse(struct qcow2_create_options *o, char *text,
                               struct qcow2_error *err)
{
    if (!text)
        return create_option_error(err, -EINVAL, "no option list given");
    char *p = text;
    for (;;) {
        /* One item runs to the next single comma; ",," stands for a literal comma. */
        char *item = p, *w = p;
        char *eq = NULL;
        while (*p && !(*p == ',' && p[1] != ',')) {
            if (*p == ',')
                p++;
            else if (*p == '=' && !eq)
                eq = w;
            *w++ = *p++;
        }
        bool more = *p == ',';
        *w = '\0';
        if (more)
            p++;
        if (!*item)
            return create_option_error(err, -EINVAL,
                                       "empty item in the option list (a stray comma?)");
        const char *value = NULL;
        if (eq) {
            *eq = '\0';
            value = eq + 1;
        }
        if (!*item)
            return create_option_error(err, -EINVAL, "option with an empty name (=%s)",
                                       value);
        int ret = create_apply_option(o, item, value, err);
        if (ret)
            return ret;
        if (!more)
            return 0;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Validation: everything qemu-img 7.2 checks before it writes anything                  */

/* What the writer needs, with every option checked and the size resolved. */
struct create_plan {
    uint32_t version;
    uint32_t cluster_bits;
    uint32_t refcount_order;
    bool lazy_refcounts;
    bool extended_l2;
    enum qcow2_compression compression;
    enum qcow2_preallocation preallocation;
    uint64_t size;                  /* rounded up to 512 */
    uint32_t l1_size;
    const char *backing_file;
    const char *backing_format;
};

static bool create_is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static uint32_t create_log2(uint64_t v)
{
    return (uint32_t)__builtin_ctzll(v);
}

/* Bytes of cluster 0 in use: header, extensions, end marker and backing name. */
static uint64_t create_cluster0_bytes(const struct qcow2_create_options *o)
{
    uint64_t n = o->version >= 3 ? CREATE_V3_HEADER_LENGTH : QCOW2_V2_HEADER_LENGTH;
    if (o->backing_format)
        n += CREATE_EXT_HEADER_BYTES + round_up_u64(strlen(o->backing_format), 8);
    if (o->version >= 3 && o->cluster_size >= CREATE_FEATURE_TABLE_MIN_CLUSTER)
        n += CREATE_EXT_HEADER_BYTES + 8u * CREATE_FEATURE_ENTRY_BYTES;
    n += CREATE_EXT_HEADER_BYTES;   /* end marker */
    if (o->backing_file)
        n += strlen(o->backing_file);
    return n;
}

static int create_check_size(const struct qcow2_create_options *o, uint64_t size,
                             const char *name, struct qcow2_error *err)
{
    if (size > (uint64_t)INT64_MAX - 511)
        return create_error_about(err, -EINVAL, name,
                                  "size %" PRIu64 " cannot be rounded up to a multiple of "
                                  "512 within 2^63-1",
                                  size);
    uint64_t rounded = round_up_u64(size, 512);
    uint32_t cb = create_log2(o->cluster_size);
    uint32_t l2_bits = cb - (o->extended_l2 ? 4u : 3u);
    uint32_t shift = cb + l2_bits;
    uint64_t entries = (rounded >> shift) + ((rounded & ((1ull << shift) - 1)) != 0);
    if (entries > CREATE_MAX_L1_ENTRIES)
        return create_error_about(err, -EFBIG, name,
                                  "size %" PRIu64 " needs %" PRIu64 " L1 entries with "
                                  "cluster_size %" PRIu32 "%s, more than the %u a 32 MiB "
                                  "L1 table holds (try a larger cluster size)",
                                  rounded, entries, o->cluster_size,
                                  o->extended_l2 ? " and extended L2" : "",
                                  CREATE_MAX_L1_ENTRIES);
    return 0;
}

/*
 * The option rules of qemu-img 7.2 (its messages name the same constraints), plus what
 * qvet itself cannot do. The size limit is checked here when the size is known, and
 * again once a size taken from the backing file is known.
 */
static int create_validate(const struct qcow2_create_options *o, const char *name,
                           struct qcow2_error *err)
{
    uint32_t cs = o->cluster_size;
    if (!create_is_pow2(cs) || cs < CREATE_MIN_CLUSTER_SIZE || cs > CREATE_MAX_CLUSTER_SIZE)
        return create_error_about(err, -EINVAL, name,
                                  "cluster_size %" PRIu32 " must be a power of two between "
                                  "512 and 2048k",
                                  cs);
    if (o->version != 2 && o->version != 3)
        return create_error_about(err, -EINVAL, name,
                                  "version %" PRIu32 " does not exist (compat=0.10 is 2, "
                                  "compat=1.1 is 3)",
                                  o->version);
    if (!create_is_pow2(o->refcount_bits) || o->refcount_bits > 64)
        return create_error_about(err, -EINVAL, name,
                                  "refcount_bits %" PRIu32 " must be a power of two and "
                                  "at most 64",
                                  o->refcount_bits);
    if (o->version < 3 && o->refcount_bits != 16)
        return create_error_about(err, -EINVAL, name,
                                  "refcount_bits %" PRIu32 " needs compat=1.1 (v3): "
                                  "compat=0.10 images have 16-bit refcounts",
                                  o->refcount_bits);
    if (o->version < 3 && o->lazy_refcounts)
        return create_error_about(err, -EINVAL, name,
                                  "lazy_refcounts=on needs compat=1.1 (v3)");
    if (o->extended_l2 && o->version < 3)
        return create_error_about(err, -EINVAL, name, "extended_l2=on needs compat=1.1 (v3)");
    if (o->extended_l2 && cs < CREATE_MIN_EXTL2_CLUSTER_SIZE)
        return create_error_about(err, -EINVAL, name,
                                  "extended_l2=on needs cluster_size of at least %u (512-"
                                  "byte subclusters), not %" PRIu32,
                                  CREATE_MIN_EXTL2_CLUSTER_SIZE, cs);
    if (o->compression != QCOW2_COMPRESSION_ZLIB && o->compression != QCOW2_COMPRESSION_ZSTD)
        return create_error_about(err, -EINVAL, name,
                                  "compression type %d is neither zlib (0) nor zstd (1)",
                                  (int)o->compression);
    if (o->compression == QCOW2_COMPRESSION_ZSTD && o->version < 3)
        return create_error_about(err, -EINVAL, name,
                                  "compression_type=zstd needs compat=1.1 (v3)");
    if ((unsigned)o->preallocation > QCOW2_PREALLOC_FULL)
        return create_error_about(err, -EINVAL, name,
                                  "preallocation mode %d does not exist (off, metadata, "
                                  "falloc or full)",
                                  (int)o->preallocation);
    if (o->backing_format && !o->backing_file)
        return create_error_about(err, -EINVAL, name,
                                  "backing_fmt=%s needs backing_file", o->backing_format);
    if (o->backing_file && !o->backing_format)
        return create_error_about(err, -EINVAL, name,
                                  "backing_file=%s needs backing_fmt (qemu-img 7.2 refuses "
                                  "a backing file without a format)",
                                  o->backing_file);
    if (o->backing_file) {
        enum qcow2_format f;
        if (!*o->backing_file)
            return create_error_about(err, -EINVAL, name, "backing_file is empty");
        if (strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME)
            return create_error_about(err, -EINVAL, name,
                                      "backing_file name is %zu bytes, more than the %u "
                                      "QEMU accepts",
                                      strlen(o->backing_file), QCOW2_MAX_BACKING_NAME);
        if (backing_format_parse(o->backing_format, &f))
            return create_error_about(err, -ENOTSUP, name,
                                      "backing_fmt=%s is not supported (qcow2 or raw)",
                                      o->backing_format);
        uint64_t need = create_cluster0_bytes(o);
        if (need > cs)
            return create_error_about(err, -ENOSPC, name,
                                      "header, extensions and backing_file name need %" PRIu64
                                      " bytes, more than cluster 0 (%" PRIu32 " bytes)",
                                      need, cs);
    }
    static const char *const prealloc_names[] = { "off", "metadata", "falloc", "full" };
    if (o->preallocation != QCOW2_PREALLOC_OFF && o->backing_file && !o->extended_l2)
        return create_error_about(err, -EINVAL, name,
                                  "preallocation=%s with a backing file needs "
                                  "extended_l2=on",
                                  prealloc_names[o->preallocation]);
    bool has_size = o->has_size || o->size;
    if (!has_size && !o->backing_file)
        return create_error_about(err, -EINVAL, name,
                                  "size is missing (give one, or a backing file to take "
                                  "it from)");
    if (!has_size && o->no_backing_check)
        return create_error_about(err, -EINVAL, name,
                                  "size is missing: with -u the backing file is not opened, "
                                  "so it cannot give the size");
    return has_size ? create_check_size(o, o->size, name, err) : 0;
}

/*
 * The virtual size of the backing file, opened the way the new image will name it. Like
 * qemu-img, this opens its whole chain, read-only and sharing it with any writer.
 */
static int create_backing_size(const struct qcow2_create_options *o, const char *name,
                               uint64_t *size, struct qcow2_error *err)
{
    char *path = NULL;
    struct qcow2_open_options oo;
    memset(&oo, 0, sizeof(oo));
    oo.force_share = true;
    if (backing_format_parse(o->backing_format, &oo.format))
        return create_error_about(err, -ENOTSUP, name, "backing_fmt=%s is not supported",
                                  o->backing_format);
    if (backing_resolve(name ? name : "", o->backing_file, &path))
        return create_error_about(err, -ENOMEM, name, "out of memory");
    struct qcow2_image *img;
    struct qcow2_error inner;
    memset(&inner, 0, sizeof(inner));
    int ret = qcow2_open(path, &oo, &img, &inner);
    if (ret) {
        ret = err_set(err, ret, name, "backing file", QCOW2_NO_OFFSET,
                      "cannot open \"%s\" (%s), which qemu-img opens to check it (-u skips "
                      "that): %s", path,
                      o->backing_format, inner.message);
        free(path);
        return ret;
    }
    *size = qcow2_virtual_size(img);
    qcow2_close(img);
    free(path);
    return 0;
}

/*
 * Checks every option (qemu-img's rules), then, as qemu-img does before its
 * "Formatting" line, opens the backing file (unless no_backing_check) and takes the size
 * from it when none was given. qvet checks the options first, so that a bad option is
 * refused without touching the backing file.
 */
static int create_resolve(struct qcow2_create_options *o, const char *name,
                          struct qcow2_error *err)
{
    int ret = create_validate(o, name, err);
    if (ret)
        return ret;
    bool has_size = o->has_size || o->size;
    /* qemu-img opens the backing file even when the size is given: a missing one fails. */
    if (o->backing_file && !o->no_backing_check) {
        uint64_t backing_size;
        ret = create_backing_size(o, name, &backing_size, err);
        if (!ret && !has_size) {
            ret = create_check_size(o, backing_size, name, err);
            o->size = backing_size;
            o->has_size = true;
        }
    }
    return ret;
}

/* Plans the image from resolved options: the common step of both entry points. */
static void create_plan_from(const struct qcow2_create_options *o, struct create_plan *p)
{
    uint64_t size = o->size;
    memset(p, 0, sizeof(*p));
    p->version = o->version;
    p->cluster_bits = create_log2(o->cluster_size);
    p->refcount_order = create_log2(o->refcount_bits);
    p->lazy_refcounts = o->lazy_refcounts;
    p->extended_l2 = o->extended_l2;
    p->compression = o->compression;
    p->preallocation = o->preallocation;
    p->size = round_up_u64(size, 512);
    uint32_t shift = p->cluster_bits + p->cluster_bits - (p->extended_l2 ? 4u : 3u);
    p->l1_size = (uint32_t)((p->size >> shift) + ((p->size & ((1ull << shift) - 1)) != 0));
    p->backing_file = o->backing_file;
    p->backing_format = o->backing_format;
}

/* ------------------------------------------------------------------------------------ */
/* The build: a minimal image, then the engine                                           */

/* The feature name table qemu-img 7.2 writes (type, bit, name). */
static const struct {
    uint8_t type;
    uint8_t bit;
    const char *name;
} create_feature_names[] = {
    { FEATURE_INCOMPAT, 0, "dirty bit" },
    { FEATURE_INCOMPAT, 1, "corrupt bit" },
    { FEATURE_INCOMPAT, 2, "external data file" },
    { FEATURE_INCOMPAT, 3, "compression type" },
    { FEATURE_INCOMPAT, 4, "extended L2 entries" },
    { FEATURE_COMPAT, 0, "lazy refcounts" },
    { FEATURE_AUTOCLEAR, 0, "bitmaps" },
    { FEATURE_AUTOCLEAR, 1, "raw external data" },
};

/*
 * Cluster 0 as qemu-img leaves it, but for the fields the engine sets afterwards (the
 * size, the L1 table; the refcount table when it moves): it names a one-cluster refcount
 * table at cluster 1 and has neither a size nor an L1 table yet.
 */
static void create_build_cluster0(const struct create_plan *p, uint8_t *buf)
{
    uint64_t cs = 1ull << p->cluster_bits;
    memset(buf, 0, cs);
    size_t pos = p->version >= 3 ? CREATE_V3_HEADER_LENGTH : QCOW2_V2_HEADER_LENGTH;
    if (p->backing_format) {
        size_t len = strlen(p->backing_format);
        pos = header_put_extension(buf, pos, HEADER_EXT_BACKING_FORMAT, (uint32_t)len);
        memcpy(buf + pos, p->backing_format, len);
        pos += round_up_u64(len, 8);
    }
    if (p->version >= 3 && cs >= CREATE_FEATURE_TABLE_MIN_CLUSTER) {
        size_t n = sizeof(create_feature_names) / sizeof(create_feature_names[0]);
        pos = header_put_extension(buf, pos, HEADER_EXT_FEATURE_TABLE,
                                   (uint32_t)(n * CREATE_FEATURE_ENTRY_BYTES));
        for (size_t i = 0; i < n; i++) {
            uint8_t *e = buf + pos + i * CREATE_FEATURE_ENTRY_BYTES;
            e[0] = create_feature_names[i].type;
            e[1] = create_feature_names[i].bit;
            memcpy(e + 2, create_feature_names[i].name,
                   QVET_MIN(strlen(create_feature_names[i].name),
                            (size_t)CREATE_FEATURE_NAME_BYTES));
        }
        pos += n * CREATE_FEATURE_ENTRY_BYTES;
    }
    pos = header_put_extension(buf, pos, HEADER_EXT_END, 0);

    struct header h;
    memset(&h, 0, sizeof(h));
    h.version = p->version;
    if (p->backing_file) {
        size_t len = strlen(p->backing_file);
        memcpy(buf + pos, p->backing_file, len);
        h.backing_file_offset = pos;
        h.backing_file_size = (uint32_t)len;
    }
    h.cluster_bits = p->cluster_bits;
    h.refcount_table_offset = cs;
    h.refcount_table_clusters = 1;
    if (p->version >= 3) {
        if (p->compression == QCOW2_COMPRESSION_ZSTD)
            h.incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
        if (p->extended_l2)
            h.incompatible_features |= QCOW2_INCOMPAT_EXTL2;
        if (p->lazy_refcounts)
            h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        h.refcount_order = p->refcount_order;
        h.header_length = CREATE_V3_HEADER_LENGTH;
        h.compression_type = (uint8_t)p->compression;
    }
    header_encode_fixed(&h, buf);
}

static int create_write(struct qcow2_backend *b, const char *name, const void *buf, size_t len,
                        uint64_t off, const char *what, struct qcow2_error *err)
{
    int ret = b->ops->write(b, buf, len, off);
    return ret ? err_set(err, ret, name, what, off, "write of %zu bytes failed: %s", len,
                         strerror(-ret))
               : 0;
}

/*
 * The image QEMU's create writes before it opens it: cluster 0, then a one-cluster
 * refcount table naming an empty refcount block at cluster 2. Nothing is counted yet.
 */
static int create_minimal_image(struct qcow2_backend *b, const char *name,
                                const struct create_plan *p, struct qcow2_error *err)
{
    uint64_t cs = 1ull << p->cluster_bits;
    int ret = b->ops->truncate(b, 0);
    if (ret)
        return err_set(err, ret, name, "file", QCOW2_NO_OFFSET,
                       "cannot truncate it to 0 bytes: %s", strerror(-ret));
    uint8_t *buf = calloc(3, cs);
    if (!buf)
        return err_set(err, -ENOMEM, name, "header", 0, "out of memory");
    create_build_cluster0(p, buf);
    be64_put(buf + cs, 2 * cs);
    ret = create_write(b, name, buf, cs, 0, "header", err);
    if (!ret)
        ret = create_write(b, name, buf + cs, 2 * cs, cs, "refcount table", err);
    free(buf);
    return ret;
}

/* The caller's backend, lent to the image being built: closing that leaves it open. */
struct create_lent_backend {
    struct qcow2_backend base;
    struct qcow2_backend *owner;
};

static struct qcow2_backend *create_owner(struct qcow2_backend *b)
{
    return ((struct create_lent_backend *)b)->owner;
}

static int create_lent_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    return create_owner(b)->ops->read(create_owner(b), buf, len, off);
}

static int create_lent_write(struct qcow2_backend *b, const void *buf, size_t len,
                             uint64_t off)
{
    return create_owner(b)->ops->write(create_owner(b), buf, len, off);
}

static int create_lent_flush(struct qcow2_backend *b)
{
    return create_owner(b)->ops->flush(create_owner(b));
}

static int create_lent_truncate(struct qcow2_backend *b, uint64_t size)
{
    return create_owner(b)->ops->truncate(create_owner(b), size);
}

static int create_lent_size(struct qcow2_backend *b, uint64_t *size)
{
    return create_owner(b)->ops->size(create_owner(b), size);
}

static void create_lent_destroy(struct qcow2_backend *b)
{
    (void)b;
}

static const struct qcow2_backend_ops create_lent_ops = {
    .read = create_lent_read, .write = create_lent_write, .flush = create_lent_flush,
    .truncate = create_lent_truncate, .size = create_lent_size, .destroy = create_lent_destroy,
};

static uint64_t create_div_round_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/*
 * Maps `n` guest clusters from entry `l2_index` of L1 entry `l1_index` to the host run
 * from `host`, through the L2 table the write path uses (which the cache writes back).
 */
static int create_map_run(struct qcow2_image *img, uint64_t l1_index, uint64_t l2_index,
                          uint64_t host, uint64_t n, struct qcow2_error *err)
{
    struct l2_ref l2;
    int ret = cluster_l2_for_write(img, l1_index, &l2, err);
    for (uint64_t k = 0; !ret && k < n; k++) {
        struct l2_entry e = { .word = host + (k << img->geo.cluster_bits), .bitmap = 0 };
        cluster_put_l2_entry(img, &l2, (uint32_t)(l2_index + k), l2_entry_with_copied(e, true));
    }
    return ret;
}

/*
 * One preallocation request (QEMU's cluster allocation for a write): walks L2 ranges
 * from `start`, the first run of data clusters wherever the allocator puts it, each
 * later run only if it can continue the previous one on the host. *bytes shrinks to what
 * was mapped; *host is where that starts.
 */
static int create_prealloc_request(struct qcow2_image *img, uint64_t start, uint64_t *bytes,
                                   uint64_t *host, struct qcow2_error *err)
{
    uint32_t cb = img->geo.cluster_bits, l2_bits = geometry_l2_bits(&img->geo);
    uint64_t cs = img->cluster_size, l2_entries = 1ull << l2_bits;
    uint64_t max_clusters = (CREATE_MAX_REQUEST_BYTES & ~(cs - 1)) >> cb;
    uint64_t remaining = *bytes;
    uint64_t hint = CREATE_NONE;
    *host = CREATE_NONE;
    while (remaining) {
        uint64_t l1_index = start >> (cb + l2_bits);
        uint64_t l2_index = (start >> cb) & (l2_entries - 1);
        uint64_t in_cluster = start & (cs - 1);
        uint64_t n = create_div_round_up(in_cluster + remaining, cs);
        n = QVET_MIN(n, l2_entries - l2_index);
        n = QVET_MIN(n, max_clusters);
        /*
         * QEMU's order: the L2 table, then the data clusters it maps (create_map_run
         * finds the table again in the cache, where the allocation left it).
         */
        struct l2_ref l2;
        int ret = cluster_l2_for_write(img, l1_index, &l2, err);
        if (ret)
            return ret;
        uint64_t first;
        if (hint == CREATE_NONE) {
            ret = refcount_alloc(img, n, &first, err);
        } else {
            first = hint & ~(cs - 1);
            ret = refcount_alloc_at(img, first, n, &n, err);
        }
        if (ret)
            return ret;
        if (n == 0)
            break;
        ret = create_map_run(img, l1_index, l2_index, first, n, err);
        if (ret)
            return ret;
        uint64_t done = QVET_MIN(remaining, n * cs - in_cluster);
        if (*host == CREATE_NONE)
            *host = first + in_cluster;
        hint = first + in_cluster + done;
        start += done;
        remaining -= done;
    }
    *bytes -= remaining;
    return 0;
}

/*
 * preallocation=metadata: every guest cluster gets a data cluster (not written, so the
 * file stays sparse) and an L2 entry offset|COPIED (with extended L2 an empty subcluster
 * bitmap), in QEMU's order: each L2 table just before the data clusters it maps. The
 * file then reaches the last data cluster.
 */
static int create_preallocate(struct qcow2_image *img, uint64_t size, struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size;
    uint64_t offset = 0, bytes = size;
    uint64_t last_host = CREATE_NONE, last_len = 0;
    uint64_t request_max = CREATE_MAX_REQUEST_BYTES & ~(cs - 1);
    while (bytes) {
        uint64_t cur = QVET_MIN(bytes, request_max), host;
        int ret = create_prealloc_request(img, offset, &cur, &host, err);
        if (ret)
            return ret;
        if (cur == 0)
            return image_error(img, err, -EIO, "L2 table", QCOW2_NO_OFFSET,
                               "internal: preallocation made no progress at guest offset "
                               "%" PRIu64, offset);
        last_host = host;
        last_len = cur;
        bytes -= cur;
        offset += cur;
    }
    if (last_host == CREATE_NONE)
        return 0;
    /*
     * The last cluster (subcluster with extended L2) may be mapped only in part: QEMU
     * completes it with a copy-on-write of zeros (nothing lies behind the virtual size),
     * which writes its tail. Otherwise it only extends the file to the last data byte.
     */
    uint64_t end = last_host + last_len;
    uint64_t unit = img->geo.extended_l2 ? cs / SUBCLUSTERS_PER_CLUSTER : cs;
    uint64_t tail = round_up_u64(end, unit) - end;
    if (tail) {
        uint8_t *zeros = calloc(1, tail);
        if (!zeros)
            return image_error(img, err, -ENOMEM, "data cluster", end, "out of memory");
        int ret = image_write(img, zeros, tail, end, "data cluster", err);
        free(zeros);
        if (ret)
            return ret;
    }
    return end > img->file_size ? image_truncate(img, end, err) : 0;
}

/* Writes zeros over the `bytes` from `off` (falloc and full preallocation). */
static int create_write_zeros(struct qcow2_image *img, uint64_t off, uint64_t bytes,
                              struct qcow2_error *err)
{
    size_t chunk = (size_t)QVET_MIN(bytes, (uint64_t)CREATE_ZERO_CHUNK);
    uint8_t *zeros = chunk ? calloc(1, chunk) : NULL;
    if (chunk && !zeros)
        return image_error(img, err, -ENOMEM, "data cluster", off, "out of memory");
    int ret = 0;
    for (uint64_t done = 0; done < bytes && !ret; done += chunk) {
        size_t len = (size_t)QVET_MIN((uint64_t)chunk, bytes - done);
        ret = image_write(img, zeros, len, off + done, "data cluster", err);
    }
    free(zeros);
    return ret;
}

/*
 * preallocation=falloc and full, as QEMU's truncate does them: refcount structures that
 * cover the data clusters and their L2 tables go past the last cluster in use (a new
 * refcount table of exactly the size needed), the data clusters follow them in one run,
 * which is written, and then the run is mapped, the L2 tables taken as it goes.
 */
static int create_preallocate_data(struct qcow2_image *img, uint64_t size,
                                   struct qcow2_error *err)
{
    uint32_t cb = img->geo.cluster_bits, l2_bits = geometry_l2_bits(&img->geo);
    uint64_t cs = img->cluster_size, per_l2 = 1ull << l2_bits;
    uint64_t used, start, got;
    int ret = refcount_used_length(img, &used, err);
    if (ret)
        return ret;
    uint64_t data = round_up_u64(size, cs) >> cb;
    /* One L2 table more, for a head or tail not aligned to one (QEMU's estimate). */
    uint64_t l2_tables = create_div_round_up(data, per_l2) + 1;
    ret = refcount_area(img, used >> cb, data + l2_tables, true, 0, 0, &start, err);
    if (!ret)
        ret = refcount_alloc_at(img, start << cb, data, &got, err);
    if (!ret && got != data)
        ret = image_error(img, err, -EIO, "data cluster", start << cb,
                          "internal: only %" PRIu64 " of the %" PRIu64 " clusters after the "
                          "new refcount structures are free", got, data);
    if (!ret)
        ret = create_write_zeros(img, start << cb, data << cb, err);
    uint64_t guest = 0, host = start << cb;
    while (!ret && data) {
        uint64_t index = (guest >> cb) & (per_l2 - 1);
        uint64_t n = QVET_MIN(data, per_l2 - index);
        ret = create_map_run(img, guest >> (cb + l2_bits), index, host, n, err);
        guest += n << cb;
        host += n << cb;
        data -= n;
    }
    return ret;
}

/*
 * As QEMU's create: the minimal image is opened, its three clusters are counted, the
 * disk is grown to its size (the L1 table) and preallocated, all by the engine's own
 * refcount, L1 and header code.
 */
static int create_image(struct qcow2_backend *b, const char *name, const struct create_plan *p,
                        struct qcow2_error *err)
{
    int ret = create_minimal_image(b, name, p, err);
    if (ret)
        return ret;
    struct create_lent_backend lent = { .base.ops = &create_lent_ops, .owner = b };
    struct qcow2_open_options oo;
    memset(&oo, 0, sizeof(oo));
    oo.format = QCOW2_FORMAT_QCOW2;
    oo.writable = true;
    oo.no_backing = true;
    /*
     * Without preallocation the image is a few tables (the first refcount block, the L1
     * table): a small cache, not the default, which sanitizer builds pay for in full.
     */
    if (p->preallocation == QCOW2_PREALLOC_OFF)
        oo.cache_bytes = CREATE_CACHE_BYTES;
    struct qcow2_image *img;
    ret = qcow2_open_backend(&lent.base, name, &oo, &img, err);
    if (ret)
        return ret;
    ret = refcount_add_range(img, 0, 3ull << p->cluster_bits, 1, err);
    if (!ret)
        ret = image_set_size(img, p->size, err);
    if (!ret && p->preallocation == QCOW2_PREALLOC_METADATA)
        ret = create_preallocate(img, p->size, err);
    else if (!ret && p->preallocation != QCOW2_PREALLOC_OFF)
        ret = create_preallocate_data(img, p->size, err);
    if (!ret)
        ret = image_flush(img, err);
    qcow2_close(img);
    return ret;
}

int qcow2_create_backend(struct qcow2_backend *b, const char *name,
                         const struct qcow2_create_options *o, struct qcow2_error *err)
{
    struct qcow2_create_options resolved = *o;
    int ret = create_resolve(&resolved, name, err);
    if (ret)
        return ret;
    struct create_plan p;
    create_plan_from(&resolved, &p);
    return create_image(b, name, &p, err);
}

/* `path` with its directory made absolute and free of links; the file need not exist. */
static int create_canonical_path(const char *path, char **out)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
    char *real = dir ? realpath(dir, NULL) : NULL;
    free(dir);
    if (!real)
        return -errno;
    if (asprintf(out, "%s/%s", real, base) < 0) {
        free(real);
        return -ENOMEM;
    }
    free(real);
    return 0;
}

/*
 * True when `a` and `b` name one file: the same inode if both exist, else the same
 * path once their directories are resolved (a file about to be created).
 */
static bool create_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char *ca = NULL, *cb = NULL;
    bool same = false;
    if (!create_canonical_path(a, &ca) && !create_canonical_path(b, &cb))
        same = !strcmp(ca, cb);
    free(ca);
    free(cb);
    return same;
}

/*
 * An image must not be its own backing file: writing it would destroy the data it is
 * meant to be backed by. qemu-img 7.2 refuses only the same spelling; qvet also refuses
 * any name that resolves to the image itself (./x, a symlink, an absolute path).
 */
static int create_check_not_self_backed(const char *path, const struct qcow2_create_options *o,
                                        struct qcow2_error *err)
{
    if (!o->backing_file)
        return 0;
    if (!strcmp(path, o->backing_file))
        return create_error_about(err, -EINVAL, path,
                                  "backing_file \"%s\" is the image being created (an "
                                  "image cannot be its own backing file; qemu-img refuses "
                                  "the same filename too)",
                                  o->backing_file);
    char *resolved;
    if (backing_resolve(path, o->backing_file, &resolved))
        return create_error_about(err, -ENOMEM, path, "out of memory");
    bool same = create_same_file(path, resolved);
    int ret = same ? create_error_about(err, -EINVAL, path,
                                        "backing_file \"%s\" (\"%s\" from the image's "
                                        "directory) is the image being created itself (an "
                                        "image cannot be its own backing file)",
                                        o->backing_file, resolved)
                   : 0;
    free(resolved);
    return ret;
}

/*
 * Opens (creating it if need be) the file at `path` with a writer's locks, before it is
 * truncated: an image that another program holds open is refused and left as it was.
 */
static int create_open_file(const char *path, struct qcow2_backend **b, struct qcow2_error *err)
{
    struct qcow2_fd_options fo = qcow2_fd_options_for(QCOW2_FORMAT_QCOW2, true, false);
    fo.create = true;
    return qcow2_backend_fd_open_with(path, &fo, b, err);
}

int qcow2_create_resolve(const char *path, struct qcow2_create_options *o,
                         struct qcow2_error *err)
{
    int ret = create_check_not_self_backed(path, o, err);
    return ret ? ret : create_resolve(o, path, err);
}

int qcow2_create(const char *path, const struct qcow2_create_options *o,
                 struct qcow2_error *err)
{
    struct qcow2_create_options resolved = *o;
    int ret = qcow2_create_resolve(path, &resolved, err);
    if (ret)
        return ret;
    struct create_plan p;
    create_plan_from(&resolved, &p);
    struct qcow2_backend *b;
    ret = create_open_file(path, &b, err);
    if (ret)
        return ret;
    ret = create_image(b, path, &p, err);
    qcow2_backend_destroy(b);
    return ret;
}
