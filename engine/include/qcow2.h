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

enum qcow2_format { QCOW2_FORMAT_QCOW2 = 0, QCOW2_FORMAT_RAW = 1 };

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

/*
 * File locks. The file-descriptor backend takes the byte-range locks QEMU 7.2's file
 * driver takes, so that qvet and QEMU keep out of each other's way (docs/locking.md):
 * for each of QEMU's block permissions (bit i below) a user holds a shared lock on byte
 * 100+i while it has that permission, and on byte 200+i while it does not let others
 * have it. An open fails if another open file already holds, as a permission, what this
 * one will not share, or does not share a permission this one wants.
 */
#define QCOW2_PERM_CONSISTENT_READ 0x1u     /* bytes 100 and 200 */
#define QCOW2_PERM_WRITE 0x2u               /* bytes 101 and 201 */
#define QCOW2_PERM_WRITE_UNCHANGED 0x4u     /* bytes 102 and 202 */
#define QCOW2_PERM_RESIZE 0x8u              /* bytes 103 and 203 */
#define QCOW2_PERM_ALL 0xfu

struct qcow2_fd_options {
    bool writable;                  /* O_RDWR instead of O_RDONLY */
    bool create;                    /* create the file (mode 0644) if it does not exist */
    bool no_locks;                  /* take and test no lock (QEMU's locking=off) */
    unsigned perm;                  /* QCOW2_PERM_* this user takes */
    unsigned shared;                /* QCOW2_PERM_* it lets other users take */
};

/*
 * The locks QEMU 7.2 takes on a file it opens as `format`: a qcow2 image opened
 * read-write takes read, write and resize and shares neither write nor resize; read-only,
 * it takes read and still shares neither (nobody may change an image under a reader);
 * with force_share (qemu-img -U, read-only only) it shares everything. A raw file read as
 * a backing file takes read and shares everything.
 */
QCOW2_API struct qcow2_fd_options qcow2_fd_options_for(enum qcow2_format format,
                                                       bool writable, bool force_share);

/* Opens a file through a file-descriptor backend, locking it as `o` says. */
QCOW2_API int qcow2_backend_fd_open_with(const char *path, const struct qcow2_fd_options *o,
                                         struct qcow2_backend **out, struct qcow2_error *err);

/* The same with the locks of a qcow2 image opened read-only or read-write. */
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

enum qcow2_compression { QCOW2_COMPRESSION_ZLIB = 0, QCOW2_COMPRESSION_ZSTD = 1 };

struct qcow2_open_options {
    enum qcow2_format format;       /* of the image itself; backing formats come from it */
    size_t cache_bytes;             /* metadata cache (L2 tables, refcount blocks); 0 = default */
    /*
     * Read a snapshot instead of the active state. `snapshot` is a key looked up by id
     * first, then by name (qemu-img convert -l KEY). Otherwise `snapshot_id` and/or
     * `snapshot_name` select the first snapshot that has all those given (convert -l
     * snapshot.id=ID,snapshot.name=NAME). All NULL: the active state.
     */
    const char *snapshot;
    const char *snapshot_id;
    const char *snapshot_name;
    qcow2_backing_opener open_backing; /* NULL = file-descriptor backend */
    void *opener_ctx;
    bool no_backing;                /* ignore the backing file: unallocated reads as zeros */
    bool writable;                  /* open read-write (backing files stay read-only) */
    /*
     * Locks on the image and its backing files (see qcow2_fd_options_for); they apply
     * when qvet opens the files itself (qcow2_open, no open_backing). force_share: read
     * while others may write (qemu-img -U; refused with writable). no_locks: take and
     * test none (QEMU's locking=off), for a caller that knowingly shares an open image.
     */
    bool force_share;
    bool no_locks;
    /*
     * Open for `qcow2_check`: like `qemu-img check`, tolerate what check itself reports
     * (a missing refcount table, a broken snapshot table, tables cut off by the end of the
     * file, whose missing part reads as zeros), keep the bitmaps, and do not
     * repair a dirty image on open. (Without it, a writable open of a dirty image first
     * rebuilds its refcounts, as QEMU does.)
     */
    bool for_check;
    /*
     * Called at most once per image, just before the first change to an image that has
     * persistent bitmaps: qvet does not maintain them, so that change first clears
     * autoclear bit 0 (as the format asks of such a program), and QEMU then drops the
     * bitmaps as inconsistent. `names` lists the `count` bitmaps. NULL: no notice.
     */
    void (*bitmaps_invalidated)(void *ctx, const char *file, const char *const *names,
                                uint32_t count);
    void *notice_ctx;
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
/* Writing (images opened with .writable)                                                */

/* Writes guest bytes; any size and alignment inside the virtual size. */
QCOW2_API int qcow2_pwrite(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                           struct qcow2_error *err);

/*
 * Makes [off, off+len) read as zeros: zero flags (v3) where whole clusters or
 * subclusters are covered, written zeros elsewhere and on v2 images. With
 * QCOW2_ZERO_MAY_UNMAP, clusters it covers wholly may be freed.
 */
#define QCOW2_ZERO_MAY_UNMAP 0x1u
QCOW2_API int qcow2_pwrite_zeroes(struct qcow2_image *img, uint64_t off, uint64_t len,
                                  unsigned flags, struct qcow2_error *err);

/*
 * Frees the clusters wholly inside [off, off+len) as `qemu-io discard` does: they then
 * read as zeros. Like QEMU, a v2 image with a backing file ignores discards (it has no
 * zero flag, so the backing file's data would show through).
 */
QCOW2_API int qcow2_discard(struct qcow2_image *img, uint64_t off, uint64_t len,
                            struct qcow2_error *err);

/*
 * Writes one whole cluster compressed (off cluster-aligned, len the cluster size, or the
 * tail up to the virtual size). Where compression does not save space the cluster is
 * written uncompressed, as QEMU does. Like QEMU, only unallocated clusters (or ones that
 * merely read as zeros without a host cluster) may be targeted: otherwise -EEXIST.
 */
QCOW2_API int qcow2_pwrite_compressed(struct qcow2_image *img, const void *buf, size_t len,
                                      uint64_t off, struct qcow2_error *err);

QCOW2_API int qcow2_flush(struct qcow2_image *img, struct qcow2_error *err);

/*
 * Sets the virtual size (a multiple of 512). Shrinking works as QEMU's does: clusters
 * wholly past the new end are freed (snapshots keep what they share), empty refcount
 * blocks are dropped and the file is cut after its last used cluster; the partial last
 * cluster keeps its bytes, so growing again shows them, as in QEMU. Growing over a longer
 * backing file zeroes the new area, which a v2 image can do only inside its last cluster
 * (past it: -ENOTSUP, nothing changed). A refused resize leaves the old size. An I/O error
 * leaves the old size too, unless it came after the new size was written to the header
 * (in the flush that ends the resize): then the new one, as a failed write leaves the old
 * or the new data. qcow2_virtual_size tells which.
 */
QCOW2_API int qcow2_resize(struct qcow2_image *img, uint64_t new_size, struct qcow2_error *err);

/* ------------------------------------------------------------------------------------ */
/* Creating images (the options of `qemu-img create -f qcow2`)                           */

/*
 * falloc and full lay the image out alike (the data clusters in one run after the
 * metadata, as qemu-img does); qvet writes the run's zeros in both, since a backend
 * has no fallocate.
 */
enum qcow2_preallocation {
    QCOW2_PREALLOC_OFF = 0,
    QCOW2_PREALLOC_METADATA = 1,
    QCOW2_PREALLOC_FALLOC = 2,
    QCOW2_PREALLOC_FULL = 3,
};

/* The options qvet takes, indexing qcow2_create_options.given. */
enum qcow2_create_key {
    QCOW2_OPT_SIZE,
    QCOW2_OPT_CLUSTER_SIZE,
    QCOW2_OPT_COMPAT,
    QCOW2_OPT_REFCOUNT_BITS,
    QCOW2_OPT_LAZY_REFCOUNTS,
    QCOW2_OPT_EXTENDED_L2,
    QCOW2_OPT_COMPRESSION_TYPE,
    QCOW2_OPT_PREALLOCATION,
    QCOW2_OPT_BACKING_FILE,
    QCOW2_OPT_BACKING_FMT,
    QCOW2_OPT_COUNT
};

struct qcow2_create_options {
    uint64_t size;                  /* 0 with a backing file: the backing file's size */
    bool has_size;
    uint32_t cluster_size;          /* default 65536 */
    uint32_t version;               /* 2 (compat=0.10) or 3 (compat=1.1, default) */
    uint32_t refcount_bits;         /* default 16 */
    bool lazy_refcounts;
    bool extended_l2;
    enum qcow2_compression compression;
    enum qcow2_preallocation preallocation;
    const char *backing_file;       /* stored as given */
    const char *backing_format;     /* "qcow2" or "raw"; required with backing_file */
    /*
     * qemu-img create -u: do not open the backing file (it may not exist yet), so the
     * size must be given. Without it the backing chain is opened, as qemu-img does, and
     * creation fails if that fails.
     */
    bool no_backing_check;
    /*
     * Filled by qcow2_create_options_parse: each option's value as last written in the
     * text (a bare key as "on"), NULL if not given. qemu-img echoes booleans and names
     * in its "Formatting" line as they were written.
     */
    const char *given[QCOW2_OPT_COUNT];
};

/* The defaults of qemu-img 7.2. */
QCOW2_API void qcow2_create_options_init(struct qcow2_create_options *o);

/*
 * Applies a qemu-img style option string ("cluster_size=4k,compat=0.10,...") on top of
 * *o. Strings in *o point into `text`, which must outlive it.
 */
QCOW2_API int qcow2_create_options_parse(struct qcow2_create_options *o, char *text,
                                         struct qcow2_error *err);

/*
 * The steps qemu-img create takes before it prints its "Formatting" line: refuses an
 * image that would be its own backing file (qemu-img's rule, the same name, and also any
 * name that resolves to the same file), requires a backing format, opens the backing
 * chain (unless no_backing_check) and sets the size from it when none was given.
 * qcow2_create does all this itself; call this first to learn the size it will use.
 */
QCOW2_API int qcow2_create_resolve(const char *path, struct qcow2_create_options *o,
                                   struct qcow2_error *err);

/*
 * Creates (or truncates) `path` and writes an empty image as qemu-img create would. The
 * file is opened with a writer's locks before it is truncated: one that another program
 * holds open is refused and left as it was.
 */
QCOW2_API int qcow2_create(const char *path, const struct qcow2_create_options *o,
                           struct qcow2_error *err);

/* The same on a backend (which stays the caller's). `name` is used in messages. */
QCOW2_API int qcow2_create_backend(struct qcow2_backend *b, const char *name,
                                   const struct qcow2_create_options *o,
                                   struct qcow2_error *err);

/* Parses "64k", "1M", "512", "2G" ... (binary units); false if malformed or > INT64_MAX. */
QCOW2_API bool qcow2_parse_size(const char *text, uint64_t *out);

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
    uint32_t bitmap_count;          /* persistent bitmaps (qcow2_bitmap_get) */
    const char *backing_name;       /* as stored in the image, or NULL */
    const char *backing_path;       /* resolved, or NULL */
    const char *backing_format;     /* from the extension, or NULL */
};

QCOW2_API int qcow2_get_info(const struct qcow2_image *img, struct qcow2_info *info);

#define QCOW2_BITMAP_IN_USE 0x1u
#define QCOW2_BITMAP_AUTO 0x2u

struct qcow2_bitmap_info {
    const char *name;
    uint64_t granularity;           /* bytes per bit */
    uint32_t flags;                 /* QCOW2_BITMAP_* (other bits as stored) */
};

/*
 * Persistent bitmap i (0-based, i < qcow2_info.bitmap_count) as the directory records
 * it; strings are owned by img. The bitmaps are listed only while autoclear bit 0 is set.
 */
QCOW2_API int qcow2_bitmap_get(const struct qcow2_image *img, uint32_t i,
                               struct qcow2_bitmap_info *info);

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

/*
 * Selecting a snapshot. QEMU 7.2 uses different rules in different commands (see
 * docs/snapshots.md): `qemu-img snapshot -a KEY` and `convert -l KEY` take the snapshot
 * whose id is KEY, else the first whose name is (qcow2_snapshot_find_key);
 * `snapshot -d KEY` takes the first whose name is KEY, never an id (find with id NULL);
 * `convert -l snapshot.id=I,snapshot.name=N` takes the first that has both.
 */
/*
 * Index of the first snapshot with id `id` and name `name` (NULL: any); else -ENOENT,
 * with err (which may be NULL) saying what was asked for.
 */
QCOW2_API int qcow2_snapshot_find(const struct qcow2_image *img, const char *id,
                                  const char *name, struct qcow2_error *err);
/* Index of the snapshot whose id is `key`, else of the first named `key`; else -ENOENT. */
QCOW2_API int qcow2_snapshot_find_key(const struct qcow2_image *img, const char *key,
                                      struct qcow2_error *err);

/* Internal snapshots of an image opened writable. Duplicate names are allowed, as in QEMU. */
QCOW2_API int qcow2_snapshot_create(struct qcow2_image *img, const char *name,
                                    struct qcow2_error *err);
/* Apply or delete snapshot `index` (0-based, as qcow2_snapshot_get counts). */
QCOW2_API int qcow2_snapshot_apply_at(struct qcow2_image *img, uint32_t index,
                                      struct qcow2_error *err);
QCOW2_API int qcow2_snapshot_delete_at(struct qcow2_image *img, uint32_t index,
                                       struct qcow2_error *err);
/* The same for the snapshot qcow2_snapshot_find_key selects (-ENOENT if none). */
QCOW2_API int qcow2_snapshot_apply(struct qcow2_image *img, const char *id_or_name,
                                   struct qcow2_error *err);
QCOW2_API int qcow2_snapshot_delete(struct qcow2_image *img, const char *id_or_name,
                                    struct qcow2_error *err);
QCOW2_API uint32_t qcow2_snapshot_count(const struct qcow2_image *img);

/* ------------------------------------------------------------------------------------ */
/* Consistency check and repair (what `qemu-img check` reports, with the same meaning)   */

enum qcow2_repair { QCOW2_REPAIR_NONE = 0, QCOW2_REPAIR_LEAKS = 1, QCOW2_REPAIR_ALL = 2 };

struct qcow2_check_result {
    uint64_t check_errors;          /* the check could not complete a part */
    uint64_t corruptions;           /* stored refcount < references, bad entries, COPIED */
    uint64_t leaks;                 /* stored refcount > references */
    uint64_t corruptions_fixed;
    uint64_t leaks_fixed;
    uint64_t image_end_offset;
    uint64_t total_clusters;        /* guest clusters */
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
};

/* Receives each finding as one line ("Leaked cluster 5 refcount=1 reference=0"). */
typedef void (*qcow2_check_report)(void *ctx, const char *line);

/*
 * Recomputes every refcount from the image's tables and compares. With a repair mode
 * the image must be open writable (and for_check). Returns 0 when the check ran to the
 * end (the result says what it found); negative when it stopped part-way, where
 * `qemu-img check` says "Check failed" (an I/O error, a repair that needs a refcount
 * rebuild under REPAIR_LEAKS, an unreadable snapshot table): *result then holds what it
 * saw, with check_errors at least 1.
 */
QCOW2_API int qcow2_check(struct qcow2_image *img, enum qcow2_repair repair,
                          struct qcow2_check_result *result, qcow2_check_report report,
                          void *report_ctx, struct qcow2_error *err);

/* The exit status `qemu-img check` would give: 0 clean, 1 errors, 2 corrupt, 3 leaks. */
QCOW2_API int qcow2_check_exit_status(const struct qcow2_check_result *r);

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
