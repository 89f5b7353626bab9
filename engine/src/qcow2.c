/* SPDX-License-Identifier: BSD-2-Clause */
/* Opening, closing and reading images: the entry points of the public API. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "bitmap.h"
#include "bytes.h"
#include "cache.h"
#include "compress.h"
#include "error.h"
#include "header_io.h"
#include "image.h"
#include "read.h"
#include "sync.h"

/* Large enough for most tables, small enough not to read much past a short table. */
#define SNAPSHOT_FIRST_READ (64u << 10)

/*
 * Reads `count` big-endian u64 entries at `off` into a host-endian array. Entries past
 * the end of the file (a table opened for check may reach there) are zeros; they are
 * neither read nor touched, which keeps a large table over a small file cheap.
 */
static int read_u64_table(struct qcow2_image *img, uint64_t off, uint32_t count,
                          const char *structure, uint64_t **out, struct qcow2_error *err)
{
    *out = NULL;
    if (count == 0)
        return 0;
    uint64_t *t = calloc(count, 8u);
    if (!t)
        return image_error(img, err, -ENOMEM, structure, off,
                           "out of memory for %" PRIu32 " entries", count);
    uint32_t in_file = off < img->file_size
                           ? (uint32_t)QVET_MIN((uint64_t)count, (img->file_size - off + 7) / 8)
                           : 0;
    int ret = in_file ? image_read(img, t, (size_t)in_file * 8u, off, structure, err) : 0;
    if (ret) {
        free(t);
        return ret;
    }
    const uint32_t run = ZERO_RUN_BYTES / 8u;
    for (uint32_t at = 0; at < in_file; at += run) {
        uint32_t n = QVET_MIN(run, in_file - at);
        if (bytes_zero_run(&t[at], (size_t)n * 8u))
            continue;
        for (uint32_t i = at; i < at + n; i++)
            t[i] = be64_get((const uint8_t *)&t[i]);
    }
    *out = t;
    return 0;
}

/*
 * Cluster 0 is parsed from a buffer on the stack when the file or the cluster is this
 * small: under a sanitizer, a heap block for it (64 KiB, zeroed) was most of an open.
 */
#define CLUSTER0_STACK_BYTES 4096u

static int parse_header(struct qcow2_image *img, const uint8_t *cluster0, size_t len,
                        bool for_check, struct qcow2_error *err)
{
    return header_parse_flags(cluster0, len, img->file_size, img->name,
                              for_check ? HEADER_FOR_CHECK : 0, &img->hdr, err);
}

/* Parses the first `len` bytes of cluster 0, read into a new block (the file holds `in_file`). */
static int read_and_parse_header(struct qcow2_image *img, size_t len, size_t in_file,
                                 bool for_check, struct qcow2_error *err)
{
    uint8_t *buf = len > in_file ? calloc(1, len) : malloc(len);
    if (!buf)
        return image_error(img, err, -ENOMEM, "header", 0, "out of memory");
    int ret = in_file ? image_read(img, buf, in_file, 0, "header", err) : 0;
    if (!ret)
        ret = parse_header(img, buf, len, for_check, err);
    free(buf);
    return ret;
}

static int read_header(struct qcow2_image *img, bool for_check, struct qcow2_error *err)
{
    uint8_t first[CLUSTER0_STACK_BYTES];
    size_t first_in_file = (size_t)QVET_MIN((uint64_t)sizeof(first), img->file_size);
    int ret = first_in_file ? image_read(img, first, first_in_file, 0, "header", err) : 0;
    if (ret)
        return ret;
    memset(first + first_in_file, 0, sizeof(first) - first_in_file);
    /* cluster_bits is validated by header_parse; only bound it to size the read here. */
    uint32_t cb = header_probe_cluster_bits(first);
    size_t cluster0_len = cb >= 9 && cb <= 21 ? (size_t)1 << cb : HEADER_PROBE_BYTES;
    /* Past the end of the file cluster 0 reads as zeros, which the parser knows. */
    size_t in_file = (size_t)QVET_MIN((uint64_t)cluster0_len, img->file_size);
    if (in_file <= sizeof(first))
        ret = parse_header(img, first, QVET_MIN(cluster0_len, sizeof(first)), for_check, err);
    else
        ret = read_and_parse_header(img, in_file, in_file, for_check, err);
    /* An extension runs past the end of the file: the whole cluster, its zeros as data. */
    if (ret == -ENOBUFS)
        ret = read_and_parse_header(img, cluster0_len, in_file, for_check, err);
    return ret;
}

static int read_snapshot_table(struct qcow2_image *img, struct qcow2_error *err)
{
    const struct header *h = &img->hdr;
    if (!h->nb_snapshots)
        return 0;
    uint64_t available = QVET_MIN(img->file_size - h->snapshots_offset,
                                  (uint64_t)SNAPSHOT_MAX_TABLE_BYTES);
    /* The count sizes an allocation: first make sure the file could hold that many. */
    if ((uint64_t)h->nb_snapshots * SNAPSHOT_FIXED_BYTES > available)
        return image_error(img, err, -EINVAL, "header field nb_snapshots", HEADER_OFF_NB_SNAPSHOTS,
                           "%" PRIu32 " snapshots of at least %u bytes each cannot fit in the "
                           "%" PRIu64 " bytes from the table's offset to the end of the file",
                           h->nb_snapshots, SNAPSHOT_FIXED_BYTES, available);
    uint64_t want = QVET_MIN(available, (uint64_t)SNAPSHOT_FIRST_READ);
    for (;;) {
        uint8_t *buf = malloc(want ? want : 1);
        if (!buf)
            return image_error(img, err, -ENOMEM, "snapshot table", h->snapshots_offset,
                               "out of memory");
        int ret = image_read(img, buf, want, h->snapshots_offset, "snapshot table", err);
        if (!ret)
            ret = snapshot_table_parse(buf, want, h->snapshots_offset, h->nb_snapshots,
                                       img->name, &img->snapshots, err);
        free(buf);
        if (ret == -ENOBUFS && want == available) {
            /* Not a short read of ours: the table itself runs past the end of the file. */
            if (err)
                err->code = -EINVAL;
            return -EINVAL;
        }
        if (ret != -ENOBUFS)
            return ret;
        want = QVET_MIN(available, want * 4);
    }
}

static bool wants_snapshot(const struct qcow2_open_options *o)
{
    return o->snapshot || o->snapshot_id || o->snapshot_name;
}

/* Switches reading to a snapshot's L1 table, validated as QEMU does when one is used. */
static int select_snapshot(struct qcow2_image *img, const struct qcow2_open_options *o,
                           struct qcow2_error *err)
{
    int i = o->snapshot ? qcow2_snapshot_find_key(img, o->snapshot, err)
                        : qcow2_snapshot_find(img, o->snapshot_id, o->snapshot_name, err);
    if (i < 0)
        return i;
    const struct snapshot *s = &img->snapshots.entries[i];
    if ((uint64_t)s->l1_size * 8u > QCOW2_MAX_L1_BYTES)
        return image_error(img, err, -EFBIG, "snapshot table entry", s->entry_offset,
                           "snapshot %s (\"%s\") has an L1 table of %" PRIu32 " entries, "
                           "more than %u",
                           s->id, s->name, s->l1_size, QCOW2_MAX_L1_BYTES / 8u);
    if (s->l1_table_offset % img->cluster_size)
        return image_error(img, err, -EINVAL, "snapshot table entry", s->entry_offset,
                           "snapshot %s (\"%s\") L1 table offset 0x%" PRIx64
                           " is not cluster-aligned",
                           s->id, s->name, s->l1_table_offset);
    uint64_t bytes = (uint64_t)s->l1_size * 8u;
    if (bytes && !span_fits(img->file_size, s->l1_table_offset, bytes))
        return image_error(img, err, -EINVAL, "snapshot table entry", s->entry_offset,
                           "snapshot %s (\"%s\") L1 table at 0x%" PRIx64 " (%" PRIu64
                           " bytes) runs past the end of the file (%" PRIu64 " bytes)",
                           s->id, s->name, s->l1_table_offset, bytes, img->file_size);
    uint64_t *l1;
    int ret = read_u64_table(img, s->l1_table_offset, s->l1_size, "snapshot L1 table", &l1,
                             err);
    if (ret)
        return ret;
    free(img->l1);
    img->l1 = l1;
    img->l1_size = s->l1_size;
    img->l1_offset = s->l1_table_offset;
    img->selected_snapshot = i;
    return 0;
}

/*
 * A dirty image (lazy refcounts, not closed cleanly) may have stale refcounts: QEMU's
 * rule is to rebuild them from the tables before anything is allocated, and to refuse
 * the open if the image is still not consistent afterwards.
 */
static int repair_dirty(struct qcow2_image *img, struct qcow2_error *err)
{
    struct qcow2_check_result r;
    int ret = qcow2_check(img, QCOW2_REPAIR_ALL, &r, NULL, NULL, err);
    if (ret)
        return ret;
    if (r.check_errors || r.corruptions)
        return image_error(img, err, -EUCLEAN, "header field incompatible_features",
                           HEADER_OFF_INCOMPAT,
                           "the dirty bit is set and repairing the refcounts left %" PRIu64
                           " corruptions and %" PRIu64 " check errors; the image cannot be "
                           "opened for writing",
                           r.corruptions, r.check_errors);
    return image_mark_clean(img, err);
}

/*
 * Readies an image for writing. QEMU's rules: a corrupt image is not written (except by
 * a repair), and autoclear bits qvet does not implement (all of them: it keeps no
 * bitmaps) are cleared before the first change (image_begin_change), so that QEMU later
 * treats the bitmaps as stale instead of trusting them.
 */
static int prepare_writable(struct qcow2_image *img, const struct qcow2_open_options *opts,
                            struct qcow2_error *err)
{
    struct header *h = &img->hdr;
    if (wants_snapshot(opts))
        return image_error(img, err, -EINVAL, "image", QCOW2_NO_OFFSET,
                           "a snapshot can only be opened read-only; apply it to write "
                           "from it");
    if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && !opts->for_check)
        return image_error(img, err, -EACCES, "header field incompatible_features",
                           HEADER_OFF_INCOMPAT,
                           "the corrupt bit (1) is set: the image may only be opened "
                           "read-only, or repaired with check -r all");
    img->scratch = malloc(img->cluster_size);
    img->refcount_scratch = malloc(img->cluster_size);
    if (!img->scratch || !img->refcount_scratch)
        return image_error(img, err, -ENOMEM, "image", QCOW2_NO_OFFSET, "out of memory");
    img->writable = true;
    img->lazy_refcounts = (h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0;
    /* A repair keeps the bitmaps (and counts their clusters) as qemu-img check -r does. */
    img->autoclear_pending = h->version >= 3 && h->autoclear_features && !opts->for_check;
    img->bitmaps_invalidated = opts->bitmaps_invalidated;
    img->notice_ctx = opts->notice_ctx;
    if (!(h->incompatible_features & QCOW2_INCOMPAT_DIRTY) || opts->for_check)
        return 0;
    int ret = image_begin_change(img, err);
    return ret ? ret : repair_dirty(img, err);
}

/* True when `real` names an image already above img in the chain (or img itself). */
static bool chain_contains(const struct qcow2_image *img, const char *real)
{
    for (; img; img = img->parent)
        if (img->real_path && !strcmp(img->real_path, real))
            return true;
    return false;
}

static int backing_open(struct qcow2_image *img, const struct qcow2_open_options *opts,
                        unsigned depth, struct qcow2_error *err)
{
    const struct header *h = &img->hdr;
    const char *name = h->backing_name;
    if (backing_name_has_protocol(name))
        return image_error(img, err, -ENOTSUP, "backing file name", h->backing_file_offset,
                           "\"%s\" uses a protocol prefix (or json:); only plain file names "
                           "are supported",
                           name);
    if (!h->has_backing_format)
        return image_error(img, err, -ENOTSUP, "backing file name", h->backing_file_offset,
                           "\"%s\" has no recorded format (backing format extension "
                           "0xE2792ACA); qvet does not probe formats",
                           name);
    enum qcow2_format format;
    if (backing_format_parse(h->backing_format, &format))
        return image_error(img, err, -ENOTSUP, "backing format extension", QCOW2_NO_OFFSET,
                           "format \"%s\" of backing file \"%s\" is not supported (qcow2 or "
                           "raw)",
                           h->backing_format, name);
    if (depth + 1 >= QCOW2_MAX_BACKING_DEPTH)
        return image_error(img, err, -ELOOP, "backing file name", h->backing_file_offset,
                           "backing chain deeper than %u images", QCOW2_MAX_BACKING_DEPTH);
    /* Only a loop needs canonical names: an image without a backing file never asks. */
    if (!img->real_path)
        img->real_path = realpath(img->name, NULL);
    char *real = realpath(img->backing_path, NULL);
    if (real && chain_contains(img, real)) {
        free(real);
        return image_error(img, err, -ELOOP, "backing file name", h->backing_file_offset,
                           "backing chain loops: \"%s\" is already in the chain",
                           img->backing_path);
    }
    free(real);

    struct qcow2_backend *backend;
    struct qcow2_error open_err;
    /* Backing files are only read, and locked as QEMU locks them for a reader. */
    struct qcow2_fd_options fo = qcow2_fd_options_for(format, false, opts->force_share);
    fo.no_locks = opts->no_locks;
    int ret = opts->open_backing
                  ? opts->open_backing(opts->opener_ctx, img->backing_path, &backend, &open_err)
                  : qcow2_backend_fd_open_with(img->backing_path, &fo, &backend, &open_err);
    if (ret)
        return image_error(img, err, ret, "backing file name", h->backing_file_offset,
                           "cannot open backing file \"%s\": %s", img->backing_path,
                           open_err.message);
    struct qcow2_open_options child = *opts;
    child.format = format;
    child.snapshot = child.snapshot_id = child.snapshot_name = NULL;
    child.writable = false;
    return image_open(backend, img->backing_path, &child, img, depth + 1, &img->backing,
                      err);
}

static int open_qcow2(struct qcow2_image *img, const struct qcow2_open_options *opts,
                      unsigned depth, struct qcow2_error *err)
{
    img->for_check = opts->for_check;
    int ret = read_header(img, opts->for_check, err);
    if (ret)
        return ret;
    const struct header *h = &img->hdr;
    img->geo = (struct geometry){
        .version = h->version,
        .cluster_bits = h->cluster_bits,
        .extended_l2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0,
    };
    img->cluster_size = 1u << h->cluster_bits;
    /* QEMU drops a size that is not a sector multiple down to the sector. */
    img->virtual_size = h->size & ~(uint64_t)511;
    img->reftable_size = h->refcount_table_clusters << (h->cluster_bits - 3);

    ret = read_u64_table(img, h->refcount_table_offset, img->reftable_size, "refcount table",
                         &img->reftable, err);
    if (!ret)
        ret = read_u64_table(img, h->l1_table_offset, h->l1_size, "active L1 table", &img->l1,
                             err);
    if (ret)
        return ret;
    img->l1_size = h->l1_size;
    img->l1_offset = h->l1_table_offset;

    size_t cache_bytes = opts->cache_bytes ? opts->cache_bytes : QCOW2_DEFAULT_CACHE_BYTES;
    uint32_t l2_slots = (uint32_t)QVET_MAX((size_t)2, QVET_MIN(cache_bytes / img->cluster_size,
                                                               (size_t)65536));
    uint32_t refblock_slots = QVET_MAX(2u, l2_slots / 4u);
    if (cache_new(l2_slots, img->cluster_size, "L2 table", &img->l2_cache) ||
        cache_new(refblock_slots, img->cluster_size, "refcount block", &img->refblock_cache))
        return image_error(img, err, -ENOMEM, "metadata cache", QCOW2_NO_OFFSET,
                           "out of memory");
    /* L2 entries name clusters whose refcounts must be on disk before them. */
    cache_depend_on(img->l2_cache, img->refblock_cache);

    /* A check reads (and may repair) the snapshot table itself, with qemu-img's rules. */
    if (!opts->for_check)
        ret = read_snapshot_table(img, err);
    if (!ret && h->has_bitmaps_ext && (h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
        ret = bitmap_directory_load(img, err);
    if (!ret && wants_snapshot(opts))
        ret = select_snapshot(img, opts, err);
    /* Where the backing file is, even when it is not opened (`info` shows it). */
    if (!ret && h->backing_name && !backing_name_has_protocol(h->backing_name) &&
        backing_resolve(img->name, h->backing_name, &img->backing_path))
        ret = image_error(img, err, -ENOMEM, "backing file name", QCOW2_NO_OFFSET,
                          "out of memory");
    if (!ret && h->backing_name && !opts->no_backing)
        ret = backing_open(img, opts, depth, err);
    if (!ret && opts->writable)
        ret = prepare_writable(img, opts, err);
    return ret;
}

int image_open(struct qcow2_backend *backend, const char *name,
               const struct qcow2_open_options *opts, struct qcow2_image *parent,
               unsigned depth, struct qcow2_image **out, struct qcow2_error *err)
{
    *out = NULL;
    /* The name lives in the image's own block: one allocation fewer per open. */
    size_t name_len = strlen(name);
    struct qcow2_image *img = calloc(1, sizeof(*img) + name_len + 1);
    if (!img) {
        qcow2_backend_destroy(backend);
        return err_set(err, -ENOMEM, name, "image", QCOW2_NO_OFFSET, "out of memory");
    }
    img->backend = backend;
    img->name = memcpy(img + 1, name, name_len + 1);
    img->parent = parent;
    img->format = opts->format;
    img->selected_snapshot = -1;
    img->metadata_preallocation = -1;
    int ret = image_update_file_size(img, err);
    if (!ret && img->format == QCOW2_FORMAT_RAW) {
        if (opts->writable)
            ret = image_error(img, err, -ENOTSUP, "image", QCOW2_NO_OFFSET,
                              "raw images are only read (as backing files)");
        else if (wants_snapshot(opts))
            ret = image_error(img, err, -EINVAL, "image", QCOW2_NO_OFFSET,
                              "a raw image has no snapshots");
        img->virtual_size = round_up_u64(img->file_size, 512);
    } else if (!ret) {
        ret = open_qcow2(img, opts, depth, err);
    }
    if (ret) {
        qcow2_close(img);
        return ret;
    }
    img->parent = NULL;
    *out = img;
    return 0;
}

int qcow2_open_backend(struct qcow2_backend *backend, const char *name,
                       const struct qcow2_open_options *opts, struct qcow2_image **out,
                       struct qcow2_error *err)
{
    static const struct qcow2_open_options defaults;
    return image_open(backend, name, opts ? opts : &defaults, NULL, 0, out, err);
}

int qcow2_open(const char *path, const struct qcow2_open_options *opts,
               struct qcow2_image **out, struct qcow2_error *err)
{
    *out = NULL;
    static const struct qcow2_open_options defaults;
    if (!opts)
        opts = &defaults;
    if (opts->writable && opts->force_share)
        return err_set(err, -EINVAL, path, "open options", QCOW2_NO_OFFSET,
                       "force_share (-U) lets others write meanwhile, so it is only for "
                       "read-only opens (as in qemu-img)");
    struct qcow2_fd_options fo = qcow2_fd_options_for(opts->format, opts->writable,
                                                      opts->force_share);
    fo.no_locks = opts->no_locks;
    struct qcow2_backend *backend;
    int ret = qcow2_backend_fd_open_with(path, &fo, &backend, err);
    if (ret)
        return ret;
    return qcow2_open_backend(backend, path, opts, out, err);
}

void qcow2_close(struct qcow2_image *img)
{
    if (!img)
        return;
    /* Best effort: a caller that must know flushes first (qcow2_flush). */
    if (img->writable && !image_sync(img, NULL) && !img->keep_dirty)
        image_mark_clean(img, NULL);
    qcow2_close(img->backing);
    qcow2_backend_destroy(img->backend);
    header_release(&img->hdr);
    snapshot_table_release(&img->snapshots);
    bitmap_directory_release(&img->bitmaps);
    cache_free(img->l2_cache);
    cache_free(img->refblock_cache);
    compressor_free(img->compressor);
    decompressor_free(img->decompressor);
    free(img->compressed_buf);
    free(img->cluster_buf);
    free(img->scratch);
    free(img->refcount_scratch);
    free(img->freed);
    free(img->drops);
    free(img->zeros);
    free(img->l1);
    free(img->reftable);
    free(img->backing_path);
    free(img->real_path);
    free(img);
}

int qcow2_flush(struct qcow2_image *img, struct qcow2_error *err)
{
    return image_sync(img, err);
}

uint64_t qcow2_virtual_size(const struct qcow2_image *img)
{
    return img->virtual_size;
}

struct qcow2_image *qcow2_backing_image(const struct qcow2_image *img)
{
    return img->backing;
}

int qcow2_pread(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
                struct qcow2_error *err)
{
    return image_pread(img, buf, len, off, err);
}

int qcow2_get_info(const struct qcow2_image *img, struct qcow2_info *info)
{
    memset(info, 0, sizeof(*info));
    info->format = img->format;
    info->filename = img->name;
    info->virtual_size = img->virtual_size;
    info->file_size = img->file_size;
    if (!image_allocated_size(img, &info->allocated_size))
        info->has_allocated_size = true;
    if (img->format != QCOW2_FORMAT_QCOW2)
        return 0;
    const struct header *h = &img->hdr;
    info->version = h->version;
    info->cluster_size = img->cluster_size;
    info->refcount_bits = 1u << h->refcount_order;
    info->incompatible_features = h->incompatible_features;
    info->compatible_features = h->compatible_features;
    info->autoclear_features = h->autoclear_features;
    info->compression = (enum qcow2_compression)h->compression_type;
    info->extended_l2 = img->geo.extended_l2;
    info->snapshot_count = img->snapshots.count;
    info->bitmap_count = img->bitmaps.count;
    info->backing_name = h->backing_name;
    info->backing_path = img->backing_path;
    info->backing_format = h->has_backing_format ? h->backing_format : NULL;
    return 0;
}

int qcow2_bitmap_get(const struct qcow2_image *img, uint32_t i, struct qcow2_bitmap_info *info)
{
    if (i >= img->bitmaps.count)
        return -ENOENT;
    const struct bitmap *b = &img->bitmaps.entries[i];
    *info = (struct qcow2_bitmap_info){
        .name = b->name,
        .granularity = 1ull << b->granularity_bits,
        .flags = b->flags,
    };
    return 0;
}

int qcow2_snapshot_get(const struct qcow2_image *img, uint32_t i,
                       struct qcow2_snapshot_info *info)
{
    if (i >= img->snapshots.count)
        return -ENOENT;
    const struct snapshot *s = &img->snapshots.entries[i];
    *info = (struct qcow2_snapshot_info){
        .id = s->id,
        .name = s->name,
        .vm_state_size = snapshot_vm_state_size(s),
        .date_sec = s->date_sec,
        .date_nsec = s->date_nsec,
        .vm_clock_nsec = s->vm_clock_nsec,
        .disk_size = snapshot_disk_size(s, img->virtual_size),
        .icount = s->icount,
        .has_icount = s->has_icount,
        .l1_size = s->l1_size,
    };
    return 0;
}
