/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libqvet: a qcow2 disk-image engine.
 *
 * This is the only header the rest of the tree (and any embedding program) includes.
 * Every function returns 0 (or a non-negative count where documented) on success and a
 * negative errno-style code on failure; failures fill the caller's struct qcow2_error
 * with a one-line message. Nothing here ever exits or aborts on what it read from disk.
 */
#ifndef QVET_QCOW2_H
#define QVET_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define QCOW2_API __attribute__((visibility("default")))
#else
#define QCOW2_API
#endif

/* ------------------------------------------------------------------------------------ */
/* Errors                                                                                */

#define QCOW2_NO_OFFSET UINT64_MAX

/*
 * Filled on failure. `message` is complete on its own and reads
 * "<structure> at offset <n>: <rule broken> (<values>)"; `file` names the image it is
 * about (which, in a backing chain, may not be the image the caller opened).
 */
struct qcow2_error {
    int code;                /* negative errno, as returned */
    uint64_t offset;         /* host byte offset of the structure, or QCOW2_NO_OFFSET */
    char structure[48];      /* "header", "L2 table", "snapshot table", ... */
    char file[1024];
    char message[1024];
};

/* ------------------------------------------------------------------------------------ */
/* Host I/O backend: the engine's only way to touch storage                              */

struct qcow2_backend;

struct qcow2_backend_ops {
    /* Reads len bytes at off. Bytes past the end of the file read as zeros. */
    int (*read)(struct qcow2_backend *b, void *buf, size_t len, uint64_t off);
    int (*write)(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off);
    int (*flush)(struct qcow2_backend *b);
    int (*truncate)(struct qcow2_backend *b, uint64_t size);
    int (*size)(struct qcow2_backend *b, uint64_t *size);
    /*
     * Optional (NULL means "all data, fully allocated"). block_status sets *pnum to the
     * length (> 0, <= len) of the run at off that is all hole (*is_hole = true) or all
     * data; at or past the end of the file it reports a hole covering len.
     * allocated_size is the storage the file really occupies (st_blocks for a file).
     */
    int (*block_status)(struct qcow2_backend *b, uint64_t off, uint64_t len,
                        uint64_t *pnum, bool *is_hole);
    int (*allocated_size)(struct qcow2_backend *b, uint64_t *bytes);
    void (*destroy)(struct qcow2_backend *b);
};

/* Backends embed this as their first member. */
struct qcow2_backend {
    const struct qcow2_backend_ops *ops;
};

/* Opens a file through a file-descriptor backend (O_RDONLY unless writable). */
QCOW2_API int qcow2_backend_fd_open(const char *path, bool writable, struct qcow2_backend **out,
                          struct qcow2_error *err);

/*
 * An in-memory file: starts as a copy of data[0..len), may grow to max_len bytes
 * (writes past that fail with -ENOSPC). For fuzzing and tests.
 */
QCOW2_API int qcow2_backend_mem_new(const void *data, size_t len, size_t max_len,
                          struct qcow2_backend **out);
/* The current contents of an in-memory backend (valid until the next write). */
QCOW2_API const uint8_t *qcow2_backend_mem_data(struct qcow2_backend *b, size_t *len);

QCOW2_API void qcow2_backend_destroy(struct qcow2_backend *b);

/*
 * How a backing file named inside an image becomes a backend. `path` is already
 * resolved against the directory of the image that names it.
 */
typedef int (*qcow2_backing_opener)(void *ctx, const char *path,
                                    struct qcow2_backend **out, struct qcow2_error *err);

/* ------------------------------------------------------------------------------------ */
/* Images                                                                                */

struct qcow2_image;

enum qcow2_format { QCOW2_FORMAT_QCOW2 = 0, QCOW2_FORMAT_RAW = 1 };

struct qcow2_open_options {
    enum qcow2_format format;       /* of the image itself; backing formats come from it */
    size_t cache_bytes;             /* metadata cache (L2 tables, refcount blocks); 0 = default */
    const char *snapshot;           /* read a snapshot (id first, then name); NULL = active */
    qcow2_backing_opener open_backing; /* NULL = file-descriptor backend */
    void *opener_ctx;
    bool no_backing;                /* ignore the backing file: unallocated reads as zeros */
};

#define QCOW2_DEFAULT_CACHE_BYTES (4u << 20)
/* Deeper chains than this are refused, which also stops a chain that loops. */
#define QCOW2_MAX_BACKING_DEPTH 256

/* Opens `path`. `opts` may be NULL for the defaults. */
QCOW2_API int qcow2_open(const char *path, const struct qcow2_open_options *opts,
               struct qcow2_image **out, struct qcow2_error *err);

/*
 * Opens an image on a backend; the image owns the backend from then on (also on
 * failure). `name` is used in messages and to resolve relative backing names.
 */
QCOW2_API int qcow2_open_backend(struct qcow2_backend *backend, const char *name,
                       const struct qcow2_open_options *opts, struct qcow2_image **out,
                       struct qcow2_error *err);

QCOW2_API void qcow2_close(struct qcow2_image *img);

/* Reads guest bytes [off, off+len) of the opened state; the range must lie in the disk. */
QCOW2_API int qcow2_pread(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
                struct qcow2_error *err);

QCOW2_API uint64_t qcow2_virtual_size(const struct qcow2_image *img);

/* ------------------------------------------------------------------------------------ */
/* Facts about an image (what `qemu-img info` shows)                                     */

#define QCOW2_INCOMPAT_DIRTY         (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT       (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE     (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION   (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2         (1ull << 4)
#define QCOW2_COMPAT_LAZY_REFCOUNTS  (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS      (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

enum qcow2_compression { QCOW2_COMPRESSION_ZLIB = 0, QCOW2_COMPRESSION_ZSTD = 1 };

struct qcow2_info {
    enum qcow2_format format;
    const char *filename;
    uint64_t virtual_size;
    uint64_t file_size;             /* length of the host file */
    uint64_t allocated_size;        /* storage it occupies, when the backend knows */
    bool has_allocated_size;
    /* qcow2 only below */
    uint32_t version;               /* 2 or 3 */
    uint32_t cluster_size;
    uint32_t refcount_bits;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    enum qcow2_compression compression;
    bool extended_l2;
    uint32_t snapshot_count;
    uint32_t bitmap_count;
    const char *backing_name;       /* as stored in the image, or NULL */
    const char *backing_path;       /* resolved, or NULL */
    const char *backing_format;     /* from the extension, or NULL */
};

QCOW2_API int qcow2_get_info(const struct qcow2_image *img, struct qcow2_info *info);

/* The image's backing file, or NULL. Owned by img. */
QCOW2_API struct qcow2_image *qcow2_backing_image(const struct qcow2_image *img);

struct qcow2_snapshot_info {
    const char *id;
    const char *name;
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t disk_size;             /* virtual size when taken */
    uint64_t icount;
    bool has_icount;
    uint32_t l1_size;
};

/* Snapshot i (0-based) of the table; strings are owned by img. */
QCOW2_API int qcow2_snapshot_get(const struct qcow2_image *img, uint32_t i,
                       struct qcow2_snapshot_info *info);

/* ------------------------------------------------------------------------------------ */
/* Allocation status (what `qemu-img map` reports, range by range)                       */

struct qcow2_map_entry {
    uint64_t start;
    uint64_t length;
    uint32_t depth;                 /* 0 = this image, 1 = its backing file, ... */
    bool present;                   /* some layer of the chain defines these bytes */
    bool zero;                      /* known to read as zeros */
    bool data;                      /* backed by data in the layer at `depth` */
    bool has_offset;
    uint64_t offset;                /* host offset in that layer's file */
};

/*
 * Status of the run starting at guest offset `off` (at most `len` bytes), with the same
 * meaning QEMU's block status gives it through the whole backing chain. Callers merge
 * adjacent runs exactly as `qemu-img map` does (see qcow2_map_entries_mergeable).
 */
QCOW2_API int qcow2_map_status(struct qcow2_image *img, uint64_t off, uint64_t len,
                     struct qcow2_map_entry *entry, struct qcow2_error *err);

QCOW2_API bool qcow2_map_entries_mergeable(const struct qcow2_map_entry *a,
                                 const struct qcow2_map_entry *b);

#ifdef __cplusplus
}
#endif

#endif
