/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The write path: data, zero writes, discard, compressed writes, flush, resize.
 *
 * Guest data is written at once; the L2 entries and refcounts it needs change in the
 * write-back metadata cache, whose image_sync (sync.h) orders them: refcounts, then data
 * and L2 tables, then L1 entries; a refcount drops only after the reference to it is
 * gone from the disk (refcount.c). Copy-on-write reads the
 * guest-visible bytes a write leaves untouched through the ordinary read path, so the
 * source (backing file, zeros, compressed data, a cluster shared with a snapshot, an
 * unallocated subcluster) never needs a case of its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "cache.h"
#include "cluster.h"
#include "compress.h"
#include "header_io.h"
#include "image.h"
#include "l1.h"
#include "read.h"
#include "refcount.h"
#include "sync.h"

/* The range must be in the disk of an image opened for writing. */
static int require_writable(struct qcow2_image *img, uint64_t off, uint64_t len,
                            struct qcow2_error *err)
{
    if (!img->writable)
        return image_error(img, err, -EROFS, "image", QCOW2_NO_OFFSET,
                           "opened read-only (or a snapshot is selected); cannot write");
    if (off > img->virtual_size || len > img->virtual_size - off)
        return image_error(img, err, -EINVAL, "write request", QCOW2_NO_OFFSET,
                           "guest range %" PRIu64 "+%" PRIu64 " lies past the virtual size %"
                           PRIu64, off, len, img->virtual_size);
    return 0;
}

/* Right before the first byte changes: autoclear bits cleared, lazy refcounts marked. */
static int begin_write(struct qcow2_image *img, struct qcow2_error *err)
{
    int ret = image_begin_change(img, err);
    return ret ? ret : image_mark_dirty(img, err);
}

/* Every write starts here. */
static int check_writable(struct qcow2_image *img, uint64_t off, uint64_t len,
                          struct qcow2_error *err)
{
    int ret = require_writable(img, off, len, err);
    return ret ? ret : begin_write(img, err);
}

/*
 * Gives back clusters allocated for a change that then failed, so that a failed write
 * leaks nothing. Best effort: if the storage refuses this too, the clusters leak (a
 * check reports and reclaims them), which is still safe.
 */
static void undo_alloc(struct qcow2_image *img, uint64_t offset, uint64_t bytes)
{
    refcount_add_range(img, offset, bytes, -1, NULL);
}

/* Ends an op's batch of releases (refcount_batch_begin); the op's own error comes first. */
static int end_releases(struct qcow2_image *img, int ret, struct qcow2_error *err)
{
    int ended = refcount_batch_end(img, ret ? NULL : err);
    return ret ? ret : ended;
}

/* ------------------------------------------------------------------------------------ */
/* L2 tables                                                                             */

/* Drops one reference to a cluster (a table freed leaves the cache: refcount_set). */
static int release_cluster(struct qcow2_image *img, uint64_t host_offset,
                           struct qcow2_error *err)
{
    return refcount_release(img, host_offset, 1, err);
}

/* Drops what an entry that is being replaced held: its cluster or compressed range. */
static int release_entry(struct qcow2_image *img, struct l2_entry e, struct qcow2_error *err)
{
    if (l2_entry_is_compressed(e)) {
        struct compressed_desc d = compressed_desc_decode(&img->geo, e.word);
        uint64_t start = d.host_offset & ~(uint64_t)511;
        return refcount_release(img, start, d.max_bytes + (d.host_offset & 511), err);
    }
    uint64_t host = l2_entry_host_offset(e);
    return host ? release_cluster(img, host, err) : 0;
}

/* ------------------------------------------------------------------------------------ */
/* Data                                                                                  */

static const uint8_t zero_sector[512];

static bool all_zero(const uint8_t *p, uint64_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* Whether host bytes [off, off+len) read as zeros already: past the file's end, or a hole. */
static bool host_reads_zeros(struct qcow2_image *img, uint64_t off, uint64_t len)
{
    if (off >= img->file_size)
        return true;
    uint64_t inside = QVET_MIN(len, img->file_size - off);
    uint64_t pnum;
    bool hole;
    return !image_block_status(img, off, inside, &pnum, &hole) && hole && pnum >= inside;
}

/*
 * A new cluster's copy-on-write span [*lo, *hi) (buf holds it, with the guest's n bytes
 * at in_cluster) shrinks to the guest's bytes on each side where the copied bytes are
 * zeros and the host cluster reads as zeros already: the file's end or a hole needs no
 * zeros written. Nothing refers to the cluster yet, and no write can reach those bytes
 * before the L2 entry does, so they stay zeros after a crash too.
 */
static void skip_zero_fill(struct qcow2_image *img, const uint8_t *buf, uint64_t target,
                           uint64_t in_cluster, uint64_t n, uint64_t *lo, uint64_t *hi)
{
    uint64_t start = *lo, end = in_cluster + n;
    if (*hi > end && all_zero(buf + (end - start), *hi - end) &&
        host_reads_zeros(img, target + end, *hi - end))
        *hi = end;
    if (in_cluster > start && all_zero(buf, in_cluster - start) &&
        host_reads_zeros(img, target + start, in_cluster - start))
        *lo = in_cluster;
}

/* An L2 entry a write will switch, once its data is on the host. */
struct pending {
    uint32_t index;
    struct l2_entry old;
    struct l2_entry fresh;
    uint64_t allocated;             /* host cluster allocated for it, or 0 */
};

/* Enough for one flush to cover many clusters, small enough to live on the stack. */
#define PENDING_MAX 64

/*
 * Writes the data of `n` bytes at `in_cluster` inside the guest cluster starting at
 * `cluster_start` (entry l2->table[index]): in place when the cluster is this image's
 * alone, otherwise into a new cluster with the untouched bytes copied. The L2 entry is
 * not changed yet: when it must be, *p says how and *staged is set.
 */
static int stage_cluster(struct qcow2_image *img, struct l2_ref *l2, uint32_t index,
                         uint64_t cluster_start, uint64_t in_cluster, const uint8_t *data,
                         uint64_t n, struct pending *p, bool *staged, struct qcow2_error *err)
{
    const struct geometry *g = &img->geo;
    uint64_t cs = img->cluster_size;
    struct l2_entry e = l2_entry_at(g, l2->table, index);
    uint64_t host = l2_entry_host_offset(e);
    bool compressed = l2_entry_is_compressed(e);
    bool owned = host && !compressed && l2_entry_is_copied(e);
    enum subcluster_type t = l2_entry_subcluster_type(g, e, 0);
    *staged = false;

    if (!g->extended_l2 && owned && t == SUBCLUSTER_NORMAL)
        return image_write(img, data, n, host + in_cluster, "data cluster", err);

    /* The span of the cluster this write has to (re)write on the host. */
    uint64_t lo = 0, hi = cs;
    uint64_t new_bitmap = 0;
    if (g->extended_l2 && !compressed) {
        uint32_t shift = g->cluster_bits - 5;
        uint64_t first = in_cluster >> shift, last = (in_cluster + n - 1) >> shift;
        uint64_t touched = ((2ull << last) - 1) & ~((1ull << first) - 1);
        new_bitmap = (e.bitmap | touched) & ~(touched << 32);
        if (owned || !host) {           /* otherwise copy every subcluster to the new one */
            lo = first << shift;
            hi = (last + 1) << shift;
        }
    } else if (g->extended_l2) {
        new_bitmap = l2_bitmap_all_allocated();
    }

    uint64_t target = host;
    int ret;
    if (!owned) {
        ret = refcount_alloc(img, 1, &target, err);
        if (ret)
            return ret;
    }
    const uint8_t *src = data;
    if (lo != in_cluster || hi != in_cluster + n) {
        /* Past the end of the disk too: the copy keeps what the old cluster held there. */
        ret = image_pread_clusters(img, img->scratch, (size_t)(hi - lo), cluster_start + lo,
                                   err);
        if (!ret) {
            memcpy(img->scratch + (in_cluster - lo), data, n);
            uint64_t read_from = lo;
            if (!owned)
                skip_zero_fill(img, img->scratch, target, in_cluster, n, &lo, &hi);
            src = img->scratch + (lo - read_from);
        }
    } else {
        ret = 0;
    }
    if (!ret)
        ret = image_write(img, src, hi - lo, target + lo, "data cluster", err);
    /*
     * A new cluster at the end of the file ends inside the file, as QEMU's do: readers
     * that take a short read for an error would fail on it otherwise.
     */
    if (!ret && !owned && img->file_size < target + cs) {
        uint64_t from = QVET_MAX(img->file_size, target + cs - sizeof(zero_sector));
        ret = image_write(img, zero_sector, target + cs - from, from, "data cluster", err);
    }
    if (ret) {
        if (!owned)
            undo_alloc(img, target, 1);
        return ret;
    }
    *p = (struct pending){
        .index = index,
        .old = e,
        .fresh = l2_entry_data(target, new_bitmap),
        .allocated = owned ? 0 : target,
    };
    *staged = true;
    return 0;
}

/*
 * Switches the staged L2 entries in the cached table (image_sync writes them only after
 * their data and raised refcounts are on disk) and releases what each one replaced,
 * which waits in turn for the switch to reach the disk (refcount_set).
 */
static int commit_pending(struct qcow2_image *img, struct l2_ref *l2, struct pending *p,
                          size_t n, struct qcow2_error *err)
{
    int ret = 0;
    for (size_t i = 0; i < n; i++) {
        cluster_put_l2_entry(img, l2, p[i].index, p[i].fresh);
        int r = p[i].allocated ? release_entry(img, p[i].old, err) : 0;
        if (r)
            ret = r;
    }
    return ret;
}

/* Applies `fn` to each cluster-sized piece of [off, off+len), with its L2 table ready. */
typedef int (*cluster_fn)(struct qcow2_image *img, struct l2_ref *l2, uint32_t index,
                          uint64_t cluster_start, uint64_t in_cluster, uint64_t n,
                          const uint8_t *data, unsigned flags, struct qcow2_error *err);

static int for_each_cluster(struct qcow2_image *img, uint64_t off, uint64_t len,
                            const uint8_t *data, unsigned flags, cluster_fn fn,
                            struct qcow2_error *err)
{
    const struct geometry *g = &img->geo;
    uint32_t l2_bits = geometry_l2_bits(g);
    uint64_t cs = img->cluster_size;
    while (len) {
        uint64_t cluster_start = off & ~(cs - 1);
        uint64_t in_cluster = off - cluster_start;
        uint64_t n = QVET_MIN(len, cs - in_cluster);
        uint64_t l1_index = off >> (g->cluster_bits + l2_bits);
        uint32_t index = (uint32_t)((off >> g->cluster_bits) & ((1ull << l2_bits) - 1));
        if (l1_index >= img->l1_size)
            return image_error(img, err, -EIO, "active L1 table", img->l1_offset,
                               "%" PRIu32 " entries do not reach guest offset %" PRIu64,
                               img->l1_size, off);
        struct l2_ref l2;
        int ret = cluster_l2_for_write(img, l1_index, &l2, err);
        if (!ret)
            ret = fn(img, &l2, index, cluster_start, in_cluster, n, data, flags, err);
        if (ret)
            return ret;
        off += n;
        len -= n;
        if (data)
            data += n;
    }
    return 0;
}

/*
 * Writes the clusters of [off, off+len) that share the L2 table l2 (the caller keeps
 * the range inside it), flushing once per batch instead of once per cluster.
 */
static int write_in_table(struct qcow2_image *img, struct l2_ref *l2, uint64_t off,
                          uint64_t len, const uint8_t *data, struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size;
    uint32_t l2_mask = (1u << geometry_l2_bits(&img->geo)) - 1;
    struct pending pending[PENDING_MAX];
    size_t n = 0;
    int ret = 0;
    while (len && !ret) {
        uint64_t cluster_start = off & ~(cs - 1);
        uint64_t in_cluster = off - cluster_start;
        uint64_t piece = QVET_MIN(len, cs - in_cluster);
        uint32_t index = (uint32_t)(off >> img->geo.cluster_bits) & l2_mask;
        /* The entry must be valid before it is rewritten (and COW reads through it). */
        struct host_range r;
        bool staged = false;
        ret = cluster_get_host_range(img, off, piece, &r, err);
        if (!ret)
            ret = stage_cluster(img, l2, index, cluster_start, in_cluster, data, piece,
                                &pending[n], &staged, err);
        n += staged;
        if (!ret && n == PENDING_MAX) {
            ret = commit_pending(img, l2, pending, n, err);
            n = 0;
        }
        off += piece;
        len -= piece;
        data += piece;
    }
    /* What was staged before a failure is still committed: its data is on the host. */
    int committed = commit_pending(img, l2, pending, n, err);
    return ret ? ret : committed;
}

static int data_piece(struct qcow2_image *img, struct l2_ref *l2, uint32_t index,
                      uint64_t cluster_start, uint64_t in_cluster, uint64_t n,
                      const uint8_t *data, unsigned flags, struct qcow2_error *err)
{
    (void)index;
    (void)flags;
    return write_in_table(img, l2, cluster_start + in_cluster, n, data, err);
}

int qcow2_pwrite(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                 struct qcow2_error *err)
{
    int ret = check_writable(img, off, len, err);
    if (ret || !len)
        return ret;
    const struct geometry *g = &img->geo;
    uint64_t table_span = (uint64_t)img->cluster_size << geometry_l2_bits(g);
    const uint8_t *data = buf;
    /* What the write replaces (compressed or shared clusters) is released once, at the end. */
    refcount_batch_begin(img);
    while (len && !ret) {
        uint64_t l1_index = off >> (g->cluster_bits + geometry_l2_bits(g));
        uint64_t n = QVET_MIN((uint64_t)len, table_span - (off & (table_span - 1)));
        struct l2_ref l2;
        if (l1_index >= img->l1_size)
            ret = image_error(img, err, -EIO, "active L1 table", img->l1_offset,
                              "%" PRIu32 " entries do not reach guest offset %" PRIu64,
                              img->l1_size, off);
        else
            ret = cluster_l2_for_write(img, l1_index, &l2, err);
        if (!ret)
            ret = write_in_table(img, &l2, off, n, data, err);
        off += n;
        len -= n;
        data += n;
    }
    return end_releases(img, ret, err);
}

/* ------------------------------------------------------------------------------------ */
/* Zero writes and discard                                                               */

static int write_zero_bytes(struct qcow2_image *img, struct l2_ref *l2, uint32_t index,
                            uint64_t cluster_start, uint64_t in_cluster, uint64_t n,
                            struct qcow2_error *err)
{
    memset(img->zeros, 0, img->cluster_size);
    return data_piece(img, l2, index, cluster_start, in_cluster, n, img->zeros, 0, err);
}

/* Rewrites an entry so that the whole cluster reads as zeros (or, for discard, `e`). */
static int replace_entry(struct qcow2_image *img, struct l2_ref *l2, uint32_t index,
                         struct l2_entry old, struct l2_entry fresh, struct qcow2_error *err)
{
    if (old.word == fresh.word && old.bitmap == fresh.bitmap)
        return 0;
    cluster_put_l2_entry(img, l2, index, fresh);
    bool keeps_cluster = l2_entry_host_offset(fresh) &&
                         l2_entry_host_offset(fresh) == l2_entry_host_offset(old) &&
                         !l2_entry_is_compressed(old);
    return keeps_cluster ? 0 : release_entry(img, old, err);
}

static int zero_piece(struct qcow2_image *img, struct l2_ref *l2, uint32_t index,
                      uint64_t cluster_start, uint64_t in_cluster, uint64_t n,
                      const uint8_t *data, unsigned flags, struct qcow2_error *err)
{
    (void)data;
    const struct geometry *g = &img->geo;
    uint64_t cs = img->cluster_size;
    struct l2_entry e = l2_entry_at(g, l2->table, index);
    struct host_range r;
    int ret = cluster_get_host_range(img, cluster_start + in_cluster, n, &r, err);
    if (ret)
        return ret;
    bool whole = in_cluster == 0 && (n == cs || cluster_start + n == img->virtual_size);
    bool compressed = l2_entry_is_compressed(e);
    uint64_t host = l2_entry_host_offset(e);

    if (g->extended_l2) {
        uint32_t shift = g->cluster_bits - 5;
        uint64_t sc = 1ull << shift;
        uint64_t first = (in_cluster + sc - 1) >> shift;        /* wholly covered */
        uint64_t end = (in_cluster + n) >> shift;
        if (whole)
            end = 32;
        if (whole || (compressed && first < end)) {
            if (!whole)
                return write_zero_bytes(img, l2, index, cluster_start, in_cluster, n, err);
            return replace_entry(img, l2, index, e, l2_entry_zero(g, 0), err);
        }
        /* Bytes outside whole subclusters are written as zeros. */
        uint64_t head_end = QVET_MIN(first << shift, in_cluster + n);
        if (first >= end)
            return write_zero_bytes(img, l2, index, cluster_start, in_cluster, n, err);
        if (head_end > in_cluster)
            ret = write_zero_bytes(img, l2, index, cluster_start, in_cluster,
                                   head_end - in_cluster, err);
        if (!ret && in_cluster + n > (end << shift))
            ret = write_zero_bytes(img, l2, index, cluster_start, end << shift,
                                   in_cluster + n - (end << shift), err);
        if (ret)
            return ret;
        e = l2_entry_at(g, l2->table, index);
        uint64_t covered = ((1ull << end) - 1) & ~((1ull << first) - 1);
        struct l2_entry z = { .word = e.word, .bitmap = (e.bitmap & ~covered) | (covered << 32) };
        return replace_entry(img, l2, index, e, z, err);
    }

    if (!whole)
        return write_zero_bytes(img, l2, index, cluster_start, in_cluster, n, err);
    if (g->version < 3) {
        /* No zero flag: without a backing file, an unallocated cluster reads as zeros. */
        if (img->backing)
            return write_zero_bytes(img, l2, index, cluster_start, in_cluster, n, err);
        return replace_entry(img, l2, index, e, (struct l2_entry){ 0 }, err);
    }
    bool keep = host && !compressed && l2_entry_is_copied(e) &&
                !(flags & QCOW2_ZERO_MAY_UNMAP);
    return replace_entry(img, l2, index, e, l2_entry_zero(g, keep ? host : 0), err);
}

int qcow2_pwrite_zeroes(struct qcow2_image *img, uint64_t off, uint64_t len, unsigned flags,
                        struct qcow2_error *err)
{
    int ret = check_writable(img, off, len, err);
    if (ret || !len)
        return ret;
    if (!img->zeros && !(img->zeros = calloc(1, img->cluster_size)))
        return image_error(img, err, -ENOMEM, "image", QCOW2_NO_OFFSET, "out of memory");
    refcount_batch_begin(img);
    ret = for_each_cluster(img, off, len, NULL, flags, zero_piece, err);
    return end_releases(img, ret, err);
}

static int discard_piece(struct qcow2_image *img, struct l2_ref *l2, uint32_t index,
                         uint64_t cluster_start, uint64_t in_cluster, uint64_t n,
                         const uint8_t *data, unsigned flags, struct qcow2_error *err)
{
    (void)data;
    (void)flags;
    /* Only a valid entry may have its clusters released. */
    struct host_range r;
    int ret = cluster_get_host_range(img, cluster_start + in_cluster, n, &r, err);
    if (ret)
        return ret;
    const struct geometry *g = &img->geo;
    struct l2_entry e = l2_entry_at(g, l2->table, index);
    bool allocated = l2_entry_host_offset(e) || l2_entry_is_compressed(e);
    if (!img->backing && !allocated)
        return 0;
    return replace_entry(img, l2, index, e, l2_entry_zero(g, 0), err);
}

int qcow2_discard(struct qcow2_image *img, uint64_t off, uint64_t len, struct qcow2_error *err)
{
    int ret = check_writable(img, off, len, err);
    if (ret)
        return ret;
    /*
     * Without zero flags (v2), a discarded cluster would show the backing file's stale
     * data: QEMU then ignores the discard, and so does qvet.
     */
    if (img->geo.version < 3 && img->backing)
        return 0;
    /* Only whole clusters are discarded (and the partial last one of the disk). */
    uint64_t cs = img->cluster_size;
    uint64_t start = round_up_u64(off, cs);
    uint64_t end = off + len == img->virtual_size ? off + len : (off + len) & ~(cs - 1);
    if (end <= start)
        return 0;
    refcount_batch_begin(img);
    for (uint64_t c = start; c < end && !ret; c += cs)
        ret = for_each_cluster(img, c, QVET_MIN(cs, end - c), NULL, 0, discard_piece, err);
    return end_releases(img, ret, err);
}

/* ------------------------------------------------------------------------------------ */
/* Compressed writes                                                                     */

/* Room for `len` compressed bytes: packed after the previous ones when they fit. */
static int alloc_compressed_bytes(struct qcow2_image *img, uint64_t len, uint64_t *at,
                                  struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size;
    uint64_t next = img->compressed_next;
    if (next % cs && len <= cs - next % cs && img->hdr.refcount_order > 0) {
        uint64_t rc;
        int ret = refcount_get(img, next >> img->geo.cluster_bits, &rc, err);
        if (ret)
            return ret;
        if (rc > 0 && rc < refcount_max(img->hdr.refcount_order)) {
            ret = refcount_add_range(img, next, 1, 1, err);
            if (ret)
                return ret;
            *at = next;
            img->compressed_next = next + len;
            return 0;
        }
    }
    int ret = refcount_alloc(img, (len + cs - 1) / cs, at, err);
    if (!ret)
        img->compressed_next = *at + len;
    return ret;
}

static int write_compressed_cluster(struct qcow2_image *img, const uint8_t *buf, size_t len,
                                    uint64_t off, struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size;
    int ret;
    const struct geometry *g = &img->geo;
    uint32_t l2_bits = geometry_l2_bits(g);
    uint64_t l1_index = off >> (g->cluster_bits + l2_bits);
    uint32_t index = (uint32_t)((off >> g->cluster_bits) & ((1ull << l2_bits) - 1));
    struct l2_ref l2;
    ret = cluster_l2_for_write(img, l1_index, &l2, err);
    if (ret)
        return ret;
    struct l2_entry e = l2_entry_at(g, l2.table, index);
    if (l2_entry_host_offset(e) || l2_entry_is_compressed(e))
        return image_error(img, err, -EEXIST, "L2 table entry",
                           l2.offset + (uint64_t)index * geometry_l2_entry_bytes(g),
                           "compressed writes may only target an unallocated cluster (as in "
                           "QEMU); guest cluster 0x%" PRIx64 " is allocated",
                           off);

    if (!img->compressor &&
        compressor_new((enum qcow2_compression)img->hdr.compression_type, cs, &img->compressor))
        return image_error(img, err, -ENOMEM, "compressor", QCOW2_NO_OFFSET, "out of memory");
    uint8_t *plain = img->scratch;
    memcpy(plain, buf, len);
    memset(plain + len, 0, cs - len);
    const uint8_t *packed;
    size_t clen = compress_cluster(img->compressor, plain, cs, cs - 1, &packed);
    if (!clen)
        return qcow2_pwrite(img, buf, len, off, err);
    uint64_t at;
    /* The same descriptor may now name new bytes: the decompressed copy is stale. */
    img->cluster_buf_word = 0;
    ret = alloc_compressed_bytes(img, clen, &at, err);
    if (ret)
        return ret;
    ret = image_write(img, packed, clen, at, "compressed cluster", err);
    if (!ret)
        ret = replace_entry(img, &l2, index, e, l2_entry_compressed(g, at, clen), err);
    if (ret) {
        img->compressed_next = 0;
        undo_alloc(img, at, clen);
    }
    return ret;
}

int qcow2_pwrite_compressed(struct qcow2_image *img, const void *buf, size_t len, uint64_t off,
                            struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size;
    int ret = check_writable(img, off, len, err);
    if (ret)
        return ret;
    if (off % cs || (len % cs && off + len != img->virtual_size))
        return image_error(img, err, -EINVAL, "write request", QCOW2_NO_OFFSET,
                           "a compressed write must cover whole clusters (offset %" PRIu64
                           ", %zu bytes, cluster size %" PRIu64 ")",
                           off, len, cs);
    /* A refusal must change nothing: every cluster is checked before any is written. */
    const struct geometry *g = &img->geo;
    uint32_t l2_bits = geometry_l2_bits(g);
    for (uint64_t c = off; c < off + len && !ret; c += cs) {
        const uint8_t *table;
        ret = cluster_l2_table(img, c >> (g->cluster_bits + l2_bits), &table, err);
        if (ret || !table)
            continue;
        uint32_t index = (uint32_t)((c >> g->cluster_bits) & ((1ull << l2_bits) - 1));
        struct l2_entry e = l2_entry_at(g, table, index);
        if (l2_entry_host_offset(e) || l2_entry_is_compressed(e))
            ret = image_error(img, err, -EEXIST, "L2 table entry", QCOW2_NO_OFFSET,
                              "compressed writes may only target unallocated clusters (as in "
                              "QEMU); guest cluster 0x%" PRIx64 " is allocated", c);
    }
    if (ret)
        return ret;
    /* A copied L2 table's old cluster (after a snapshot) is released once, at the end. */
    refcount_batch_begin(img);
    const uint8_t *p = buf;
    for (uint64_t done = 0; done < len && !ret; done += cs)
        ret = write_compressed_cluster(img, p + done, (size_t)QVET_MIN(cs, len - done),
                                       off + done, err);
    return end_releases(img, ret, err);
}

/* ------------------------------------------------------------------------------------ */
/* Resize                                                                                */

/* Validates every entry of guest range [off, end) (before anything is changed). */
static int validate_range(struct qcow2_image *img, uint64_t off, uint64_t end,
                          struct qcow2_error *err)
{
    while (off < end) {
        struct host_range r;
        int ret = cluster_get_host_range(img, off, end - off, &r, err);
        if (ret)
            return ret;
        off += r.bytes;
    }
    return 0;
}

/* Releases everything an unhooked L2 table points to, then the table itself. */
static int release_table(struct qcow2_image *img, uint64_t l2_offset, struct qcow2_error *err)
{
    const uint8_t *table;
    int ret = cache_get(img->l2_cache, img, l2_offset, &table, err);
    if (ret)
        return ret;
    /* Releasing goes through the caches: keep a copy of the entries. */
    memcpy(img->scratch, table, img->cluster_size);
    uint32_t entries = 1u << geometry_l2_bits(&img->geo);
    for (uint32_t i = 0; i < entries && !ret; i++)
        ret = release_entry(img, l2_entry_at(&img->geo, img->scratch, i), err);
    return ret ? ret : release_cluster(img, l2_offset, err);
}

/*
 * Drops the active state's references to guest clusters [start, end) (start
 * cluster-aligned), as QEMU's shrink does: entries in the table that keeps part of the
 * disk become unallocated (the table is copied first if a snapshot shares it); tables
 * wholly past the end are unhooked from the L1 table, which keeps its size, and then
 * released with everything they point to (a shared table's clusters carry one reference
 * per L1 table that reaches them).
 */
static int drop_clusters(struct qcow2_image *img, uint64_t start, uint64_t end,
                         struct qcow2_error *err)
{
    const struct geometry *g = &img->geo;
    uint32_t l2_bits = geometry_l2_bits(g);
    uint64_t span = (uint64_t)img->cluster_size << l2_bits;
    uint64_t kept_tables = image_l1_entries_for(img, start);
    uint64_t tables = QVET_MIN(image_l1_entries_for(img, end), img->l1_size);
    int ret = 0;
    if (start % span && kept_tables <= tables) {
        uint64_t l1_index = kept_tables - 1;
        const uint8_t *table;
        ret = cluster_l2_table(img, l1_index, &table, err);
        bool present = !ret && table;
        struct l2_ref l2;
        if (present)
            ret = cluster_l2_for_write(img, l1_index, &l2, err);
        uint64_t stop = QVET_MIN(end, kept_tables * span);
        for (uint64_t c = start; present && !ret && c < stop; c += img->cluster_size) {
            uint32_t i = (uint32_t)((c >> g->cluster_bits) & ((1u << l2_bits) - 1));
            ret = replace_entry(img, &l2, i, l2_entry_at(g, l2.table, i), (struct l2_entry){ 0 },
                                err);
        }
    }
    uint64_t *unhooked = calloc(tables > kept_tables ? tables - kept_tables : 1, 8);
    if (!unhooked)
        return image_error(img, err, -ENOMEM, "active L1 table", QCOW2_NO_OFFSET,
                           "out of memory");
    size_t n = 0;
    for (uint64_t i = kept_tables; i < tables && !ret; i++) {
        uint64_t l2_offset = l1_entry_l2_offset(img->l1[i]);
        if (l2_offset && !(ret = image_write_l1_entry(img, i, 0, err)))
            unhooked[n++] = l2_offset;
    }
    /* References go first (flushed), refcounts after: a crash can only leak. */
    if (n && !ret)
        ret = image_flush(img, err);
    for (size_t i = 0; i < n && !ret; i++)
        ret = release_table(img, unhooked[i], err);
    free(unhooked);
    return ret;
}

/*
 * Shrinks in QEMU's order: the clusters wholly past the new end are dropped (references
 * first, so a crash midway only leaks), empty refcount blocks unhooked, the file cut
 * after its last used cluster, and the new size stored last, so that a failure leaves
 * the size as it was (what was dropped by then reads as zeros). The tables are validated
 * before anything changes. Like QEMU, the partial last cluster keeps its bytes past the
 * new end: growing again shows them.
 */
static int shrink(struct qcow2_image *img, uint64_t new_size, struct qcow2_error *err)
{
    uint64_t old_size = img->virtual_size;
    uint64_t start = round_up_u64(new_size, img->cluster_size);
    int ret = validate_range(img, start, old_size, err);
    if (!ret && start < old_size) {
        refcount_batch_begin(img);
        ret = end_releases(img, drop_clusters(img, start, old_size, err), err);
    }
    if (!ret)
        ret = refcount_drop_empty_blocks(img, err);
    uint64_t used;
    if (!ret)
        ret = refcount_used_length(img, &used, err);
    /*
     * A file that cannot be cut is only longer than it needs to be (QEMU warns). The
     * removal of every reference into the cut goes to disk first (lazy refcounts drop a
     * refcount before it): else a crash leaves a reference past the end of the file.
     */
    if (!ret && used && used < img->file_size)
        ret = image_sync(img, err);
    if (!ret && used && used < img->file_size)
        image_truncate(img, used, NULL);
    return ret ? ret : image_set_size(img, new_size, err);
}

int qcow2_resize(struct qcow2_image *img, uint64_t new_size, struct qcow2_error *err)
{
    int ret = require_writable(img, 0, 0, err);
    if (ret)
        return ret;
    if (new_size % 512)
        return image_error(img, err, -EINVAL, "resize request", QCOW2_NO_OFFSET,
                           "the new size %" PRIu64 " is not a multiple of 512", new_size);
    if (img->snapshots.count && img->geo.version < 3)
        return image_error(img, err, -ENOTSUP, "resize request", QCOW2_NO_OFFSET,
                           "a version 2 image with snapshots cannot be resized (as in QEMU)");
    uint64_t old_size = img->virtual_size;
    ret = begin_write(img, err);
    if (ret)
        return ret;
    if (new_size < old_size) {
        ret = shrink(img, new_size, err);
        return ret ? ret : image_sync(img, err);
    }
    /*
     * Over a backing file longer than the disk, QEMU zeroes the whole grown area, up to
     * the new end (its map then shows zero clusters there), so that neither the backing
     * file's data nor what the old last cluster held past the old end shows. A v2 image
     * has no zero flag for the clusters past the old last one: QEMU 7.2 then fails the
     * resize, and qvet refuses it before changing anything.
     */
    uint64_t cluster_end = round_up_u64(old_size, img->cluster_size);
    bool hide = img->backing && new_size > old_size && img->backing->virtual_size > old_size;
    if (hide && img->geo.version < 3 && new_size > cluster_end)
        return image_error(img, err, -ENOTSUP, "resize request", QCOW2_NO_OFFSET,
                           "a version 2 image cannot grow past its last cluster over a "
                           "longer backing file (as in QEMU: no zero flag to hide its data)");
    if (hide) {
        /*
         * The zeros reach the disk before the size that shows them: a crash in between
         * leaves the old size, never the new one over the backing file's data. A failure
         * leaves the size as it was (the larger L1 table, the zero entries past the end
         * are harmless).
         */
        ret = image_reserve_size(img, new_size, err);
        if (!ret) {
            img->virtual_size = new_size;   /* only for the zero write's range check */
            ret = qcow2_pwrite_zeroes(img, old_size, new_size - old_size, 0, err);
            if (!ret)
                ret = image_sync(img, err);
            img->virtual_size = old_size;
        }
    }
    if (!ret)
        ret = image_set_size(img, new_size, err);
    if (!ret)
        ret = image_sync(img, err);
    return ret;
}
