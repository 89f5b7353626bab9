/* SPDX-License-Identifier: BSD-2-Clause */
/* The open image: shared by every engine module, never seen outside the engine. */
#ifndef QVET_IMAGE_H
#define QVET_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "bitmap.h"
#include "cluster.h"
#include "header.h"
#include "qcow2.h"
#include "snapshot.h"

struct cache;
struct compressor;
struct decompressor;

struct qcow2_image {
    struct qcow2_backend *backend;
    char *name;                     /* as given (after the struct, in its block); used in
                                       messages and to resolve backing */
    enum qcow2_format format;
    uint64_t file_size;
    uint64_t virtual_size;

    /* qcow2 only below */
    struct header hdr;
    struct geometry geo;
    uint32_t cluster_size;
    uint64_t l1_offset;             /* of the selected state: active or a snapshot */
    uint32_t l1_size;
    uint64_t *l1;                   /* host-endian */
    uint64_t *reftable;             /* host-endian */
    uint32_t reftable_size;
    struct cache *l2_cache;
    struct cache *refblock_cache;
    struct snapshot_table snapshots;
    struct bitmap_directory bitmaps; /* loaded while autoclear bit 0 is set */
    int selected_snapshot;          /* -1 = active state */
    bool for_check;                 /* opened for qcow2_check (see qcow2_open_options) */

    struct compressor *compressor;  /* taken on the first compressed write */
    struct decompressor *decompressor;
    uint8_t *compressed_buf;        /* 2 clusters: the largest stored compressed range */
    uint8_t *cluster_buf;           /* the last decompressed cluster */
    uint64_t cluster_buf_word;      /* its L2 word, 0 when empty */

    int metadata_preallocation;     /* -1 not yet probed, else 0/1 (QEMU's heuristic) */

    /* Writable images only. */
    bool writable;
    bool autoclear_pending;         /* autoclear bits to clear before the first change */
    void (*bitmaps_invalidated)(void *ctx, const char *file, const char *const *names,
                                uint32_t count);
    void *notice_ctx;
    bool lazy_refcounts;            /* refcount writes need no ordering (dirty bit set) */
    uint64_t writes_total;          /* host writes since the image was opened */
    bool overlap_stopped;           /* the overlap guard refused a write: no more writes */
    bool keep_dirty;                /* a failed operation left the dirty bit for the next open
                                       to repair: closing must not clear it */
    uint64_t writes_unflushed;      /* host writes since the last flush */
    uint64_t *freed;                /* clusters freed since the last image_sync, sorted: */
    size_t n_freed, freed_cap;      /* the allocator keeps off them until the next one */
    struct refcount_drop *drops;    /* references an op removed, their refcounts to drop */
    size_t n_drops, drops_cap;      /* at its end (refcount_batch_end) */
    unsigned drops_depth;           /* refcount_batch_begin calls not yet ended */
    bool drops_applying;            /* ... which is dropping them: */
    bool drops_ordered;             /* the first drop's image_sync ordered them all */
    uint64_t free_cluster_hint;     /* no free cluster below this index */
    uint64_t compressed_next;       /* byte where packed compressed data may continue, 0 none */
    uint8_t *scratch;               /* one cluster, for copy-on-write and new tables */
    uint8_t *refcount_scratch;      /* one cluster, for new refcount blocks */
    uint8_t *zeros;                 /* one cluster of zeros, taken on the first zero write */

    struct qcow2_image *backing;
    char *backing_path;
    struct qcow2_image *parent;     /* the image this one backs, while opening the chain */
    char *real_path;                /* canonical name, to refuse a chain that loops (set by
                                       the backing open: only a chain needs it) */
};

/* The image's file (io.c): every use of the backend by an open image goes through these. */

/* Reads host bytes, turning a backend failure into a message about `structure`. */
int image_read(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
               const char *structure, struct qcow2_error *err);

/*
 * The fixed metadata the overlap guard keeps writes off: cluster 0, the active L1 table,
 * the refcount table, the snapshot table and the snapshots' L1 tables. A write names the
 * one it changes in place (IMAGE_META_NONE for data, L2 tables, refcount blocks and new
 * tables, which go to fresh clusters); it may land there and nowhere else of them.
 */
enum image_meta {
    IMAGE_META_NONE,
    IMAGE_META_HEADER,
    IMAGE_META_ACTIVE_L1,
    IMAGE_META_REFTABLE,
};

/*
 * Writes host bytes (the file grows as needed), with a message about `structure`, after
 * the overlap guard: a write whose clusters meet fixed metadata other than `own` is refused
 * with -EIO, nothing written, and the image is marked corrupt (the incompatible bit 1 on a
 * version 3 image) and takes no more writes, as QEMU does.
 */
int image_write_meta(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                     enum image_meta own, const char *structure, struct qcow2_error *err);

/* image_write_meta of data, an L2 table or a refcount block (own = IMAGE_META_NONE). */
int image_write(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                const char *structure, struct qcow2_error *err);

/*
 * The name of the fixed metadata other than `own` that host clusters [first, first+count)
 * meet ("the active L1 table"...), or NULL when they meet none.
 */
const char *image_meta_at(const struct qcow2_image *img, uint64_t first, uint64_t count,
                          enum image_meta own);

/* Flushes the file to stable storage (the metadata cache is image_sync's: sync.h). */
int image_flush(struct qcow2_image *img, struct qcow2_error *err);

/* Reads the file's length into img->file_size. */
int image_update_file_size(struct qcow2_image *img, struct qcow2_error *err);

/* Sets the file's length (-ENOTSUP when the storage cannot), then rereads it. */
int image_truncate(struct qcow2_image *img, uint64_t size, struct qcow2_error *err);

/* Bytes the file really stores, or -ENOTSUP when the storage cannot say. */
int image_allocated_size(const struct qcow2_image *img, uint64_t *bytes);

/*
 * Whether the file's bytes from `off` are a hole, for *pnum bytes (at most len); storage
 * that cannot say reports all of them as data.
 */
int image_block_status(struct qcow2_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                       bool *is_hole);

/* Fills err about img's file (a shorthand for err_set with img->name). */
int image_error(const struct qcow2_image *img, struct qcow2_error *err, int code,
                const char *structure, uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/*
 * Opens an image `depth` levels below the top of a chain (0 = the image asked for);
 * `parent` is the image it backs, or NULL.
 */
int image_open(struct qcow2_backend *backend, const char *name,
               const struct qcow2_open_options *opts, struct qcow2_image *parent,
               unsigned depth, struct qcow2_image **out, struct qcow2_error *err);

#endif
