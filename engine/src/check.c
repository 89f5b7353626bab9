/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Consistency check and repair, with the meaning `qemu-img check` (QEMU 7.2) gives
 * them; docs/format.md §12.
 *
 * One pass recomputes every refcount in memory from the image's own tables (header,
 * L1/L2 trees of the active state and of every snapshot, the snapshot table, the
 * refcount structure itself, bitmaps), compares that with the stored refcounts, then
 * checks the COPIED flags of the active tree. With a repair mode the same pass fixes
 * what it may (leaked refcounts, refcounts that are too low, COPIED flags, refcount
 * blocks that lie past the end of the file, preallocated zero clusters that are not
 * aligned), rebuilding the whole refcount structure when it cannot be trusted. After a
 * repair a second pass reports what remains, as qemu-img does.
 *
 * Hostile images: everything sized by the file is bounded. Tables are read only as
 * far as the file reaches (bytes past the end read as zeros, and zeros reference
 * nothing); an L2 table or bitmap table referenced many times is walked once and its
 * references are counted with their multiplicity, which gives the same counts as
 * walking it each time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "bytes.h"
#include "cache.h"
#include "cluster.h"
#include "header.h"
#include "header_io.h"
#include "image.h"
#include "refcount.h"
#include "snapshot.h"

#define CHECK_FIX_LEAKS 0x1u
#define CHECK_FIX_ERRORS 0x2u

/* QEMU refuses to check a file of more clusters than an int holds. */
#define CHECK_MAX_CLUSTERS 0x7FFFFFFFull
/* The in-memory refcounts may grow (a refblock past the end, the rebuild) up to this. */
#define CHECK_MAX_ARRAY_BYTES (1ull << 30)
#define CHECK_MAX_L1_ENTRIES (QCOW2_MAX_L1_BYTES / 8u)
#define CHECK_SNAPSHOT_KNOWN_EXTRA 24u
#define CHECK_SNAPSHOT_MAX_SPAN 0x7FFFFFFFull
#define CHECK_READ_WINDOW (64u << 10)

/* Bitmap directory entry layout (docs/format.md §8). */
#define CHECK_BME_FIXED 24u
#define CHECK_BME_MAX_TABLE_ENTRIES 0x8000000u

/* The whole-cluster classification `check` uses (not the subcluster one). */
enum check_type {
    CHECK_UNALLOCATED,
    CHECK_NORMAL,
    CHECK_COMPRESSED,
    CHECK_ZERO_PLAIN,
    CHECK_ZERO_ALLOC,
};

/* A table offset and how many times it is referenced. */
struct check_ref {
    uint64_t offset;
    uint64_t size;
    uint64_t count;
    uint64_t active;                /* references from the active L1 */
};

/* Insertion-ordered set of check_ref keyed by (offset, size). */
struct check_refs {
    struct check_ref *items;
    uint32_t n, cap;
    uint32_t *index;                /* item number + 1, 0 = empty */
    uint32_t mask;
};

/* One snapshot table entry as check reads it (positions, to re-read on a rewrite). */
struct check_snap {
    uint64_t l1_offset;
    uint32_t l1_size;
    uint32_t extra_size;            /* after truncation to 1024 */
    uint64_t entry_pos;
    uint64_t unknown_pos;           /* extra data past the known 24 bytes */
    uint64_t id_pos, name_pos;
    uint16_t id_size, name_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock;
    uint64_t vm_state;
    uint64_t disk_size;
    uint64_t icount;
};

struct check_reader {
    struct qcow2_image *img;
    uint8_t *win;
    uint64_t start;
    size_t len;
};

struct check_ctx {
    struct qcow2_image *img;
    qcow2_check_report report;
    void *report_ctx;
    unsigned fix;
    char last[256];                 /* the last finding, for the message of a failed run */

    uint32_t cb;
    uint64_t cs;
    uint32_t order;
    uint32_t rb_bits;               /* log2 of refcount entries per refblock */
    uint64_t rc_max;
    uint32_t l2_entries;
    uint32_t l2_entry_bytes;

    uint8_t *refs;                  /* computed refcounts, packed like a refblock */
    uint64_t nb;                    /* clusters covered (QEMU's nb_clusters) */
    uint64_t refs_cap;              /* a whole number of refblocks' worth */

    uint8_t *buf;                   /* one cluster */
    struct check_refs l2s;

    struct check_snap *snaps;
    uint32_t nb_snaps;
    uint64_t snaps_offset;
    uint64_t snaps_size;

    /* What repair writes must not overlap (per cluster), built on first use. */
    bool overlap_ready;
    uint64_t overlap_nb;
    uint8_t *meta;                  /* header, reftable, refblocks, snapshot table, L1s */
    uint8_t *active_l1;
    uint8_t *active_l2;
};

static void check_say(struct check_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void check_say(struct check_ctx *c, const char *fmt, ...)
{
    char line[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    size_t n = strnlen(line, sizeof(c->last) - 1);
    memcpy(c->last, line, n);
    c->last[n] = '\0';
    if (c->report)
        c->report(c->report_ctx, line);
}

static uint64_t check_div_up(uint64_t v, uint64_t d)
{
    return v / d + (v % d != 0);
}

/* ------------------------------------------------------------------------------------ */
/* Reference sets                                                                        */

static uint32_t check_hash(uint64_t offset, uint64_t size, uint32_t mask)
{
    uint64_t h = ((offset >> 9) ^ (size * 0xC2B2AE3D27D4EB4Full)) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & mask;
}

static void check_refs_free(struct check_refs *m)
{
    free(m->items);
    free(m->index);
    memset(m, 0, sizeof(*m));
}

static int check_refs_add(struct check_refs *m, uint64_t offset, uint64_t size, uint64_t count,
                          uint64_t active)
{
    if (m->index) {
        for (uint32_t h = check_hash(offset, size, m->mask); m->index[h];
             h = (h + 1) & m->mask) {
            struct check_ref *r = &m->items[m->index[h] - 1];
            if (r->offset == offset && r->size == size) {
                r->count += count;
                r->active += active;
                return 0;
            }
        }
    }
    if (m->n == m->cap) {
        if (m->cap >= (1u << 30))
            return -ENOMEM;
        uint32_t cap = m->cap ? m->cap * 2 : 64;
        struct check_ref *items = realloc(m->items, (size_t)cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        m->items = items;
        m->cap = cap;
    }
    if (!m->index || (uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) {
        uint32_t size_slots = m->index ? (m->mask + 1) * 2 : 256;
        uint32_t *index = calloc(size_slots, sizeof(*index));
        if (!index)
            return -ENOMEM;
        uint32_t mask = size_slots - 1;
        for (uint32_t i = 0; i < m->n; i++) {
            uint32_t h = check_hash(m->items[i].offset, m->items[i].size, mask);
            while (index[h])
                h = (h + 1) & mask;
            index[h] = i + 1;
        }
        free(m->index);
        m->index = index;
        m->mask = mask;
    }
    m->items[m->n] = (struct check_ref){
        .offset = offset, .size = size, .count = count, .active = active,
    };
    uint32_t h = check_hash(offset, size, m->mask);
    while (m->index[h])
        h = (h + 1) & m->mask;
    m->index[h] = ++m->n;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Host I/O                                                                              */

/* Reads bytes of the file; past its end they are zeros (as QEMU reads them). */
static int check_read(struct check_ctx *c, void *buf, uint64_t len, uint64_t off)
{
    struct qcow2_image *img = c->img;
    uint64_t have = off < img->file_size ? QVET_MIN(len, img->file_size - off) : 0;
    if (have) {
        struct qcow2_error e;
        int ret = image_read(img, buf, (size_t)have, off, "image", &e);
        if (ret) {
            check_say(c, "ERROR: %s", e.message);
            return ret;
        }
    }
    memset((uint8_t *)buf + have, 0, (size_t)(len - have));
    return 0;
}

static int check_reader_get(struct check_ctx *c, struct check_reader *r, void *dst, size_t n,
                            uint64_t off)
{
    if (n > CHECK_READ_WINDOW)
        return check_read(c, dst, n, off);
    if (!r->win || off < r->start || !span_fits(r->len, off - r->start, n)) {
        if (!r->win) {
            r->win = malloc(CHECK_READ_WINDOW);
            if (!r->win)
                return -ENOMEM;
        }
        int ret = check_read(c, r->win, CHECK_READ_WINDOW, off);
        if (ret)
            return ret;
        r->start = off;
        r->len = CHECK_READ_WINDOW;
    }
    memcpy(dst, r->win + (off - r->start), n);
    return 0;
}

/*
 * The clusters [*first, *last] of a per-cluster map of nb entries that [off, off+len)
 * touches; false when none. A range reaching past 2^64 is cut there, not wrapped.
 */
static bool check_map_span(uint64_t nb, uint32_t cb, uint64_t off, uint64_t len,
                           uint64_t *first, uint64_t *last)
{
    if (!len || off >> cb >= nb)
        return false;
    uint64_t end = len - 1 > UINT64_MAX - off ? UINT64_MAX : off + len - 1;
    *first = off >> cb;
    *last = QVET_MIN(end >> cb, nb - 1);
    return true;
}

/* Marks every cluster touched by [off, off+len) in a per-cluster map of nb bits. */
static void check_mark(uint8_t *map, uint64_t nb, uint32_t cb, uint64_t off, uint64_t len)
{
    uint64_t first, last;
    if (check_map_span(nb, cb, off, len, &first, &last))
        for (uint64_t k = first; k <= last; k++)
            map[k / 8] |= (uint8_t)(1u << (k % 8));
}

static bool check_marked(const uint8_t *map, uint64_t nb, uint32_t cb, uint64_t off,
                         uint64_t len)
{
    uint64_t first, last;
    if (!check_map_span(nb, cb, off, len, &first, &last))
        return false;
    for (uint64_t k = first; k <= last; k++)
        if (map[k / 8] & (1u << (k % 8)))
            return true;
    return false;
}

static void check_overlap_reset(struct check_ctx *c)
{
    free(c->meta);
    free(c->active_l1);
    free(c->active_l2);
    c->meta = c->active_l1 = c->active_l2 = NULL;
    c->overlap_ready = false;
}

/* The metadata a repair write must not land on (what QEMU's overlap check guards). */
static int check_overlap_build(struct check_ctx *c)
{
    struct qcow2_image *img = c->img;
    const struct header *h = &img->hdr;
    uint64_t nb = check_div_up(img->file_size, c->cs) + 2;
    size_t bytes = (size_t)check_div_up(nb, 8);
    c->meta = calloc(bytes, 1);
    c->active_l1 = calloc(bytes, 1);
    c->active_l2 = calloc(bytes, 1);
    if (!c->meta || !c->active_l1 || !c->active_l2) {
        check_overlap_reset(c);
        return -ENOMEM;
    }
    c->overlap_nb = nb;
    check_mark(c->meta, nb, c->cb, 0, c->cs);
    check_mark(c->meta, nb, c->cb, h->refcount_table_offset,
               (uint64_t)img->reftable_size * 8u);
    for (uint32_t i = 0; i < img->reftable_size; i++) {
        uint64_t block = img->reftable[i] & REFTABLE_ENTRY_OFFSET_MASK;
        if (block && !(block % c->cs))
            check_mark(c->meta, nb, c->cb, block, c->cs);
    }
    check_mark(c->meta, nb, c->cb, c->snaps_offset, c->snaps_size);
    for (uint32_t i = 0; i < c->nb_snaps; i++)
        if (!(c->snaps[i].l1_offset % c->cs) && c->snaps[i].l1_size <= CHECK_MAX_L1_ENTRIES)
            check_mark(c->meta, nb, c->cb, c->snaps[i].l1_offset,
                       (uint64_t)c->snaps[i].l1_size * 8u);
    if ((h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) && h->has_bitmaps_ext)
        check_mark(c->meta, nb, c->cb, h->bitmap_directory_offset, h->bitmap_directory_size);
    check_mark(c->active_l1, nb, c->cb, h->l1_table_offset, (uint64_t)h->l1_size * 8u);
    for (uint32_t i = 0; i < c->l2s.n; i++)
        if (c->l2s.items[i].active)
            check_mark(c->active_l2, nb, c->cb, c->l2s.items[i].offset, c->cs);
    c->overlap_ready = true;
    return 0;
}

enum { CHECK_WRITE_L1 = 1, CHECK_WRITE_L2 = 2 };

/*
 * Writes repair data after the overlap check; `kind` names the class it may overlap.
 * -EEXIST when it would overwrite other metadata (a sign to stop), else the write's code.
 */
static int check_write(struct check_ctx *c, struct qcow2_check_result *res, const void *buf,
                       uint64_t len, uint64_t off, int kind, const char *what)
{
    if (!c->overlap_ready) {
        int ret = check_overlap_build(c);
        if (ret) {
            res->check_errors++;
            check_say(c, "ERROR: out of memory for the overlap check");
            return ret;
        }
    }
    bool hit = check_marked(c->meta, c->overlap_nb, c->cb, off, len) ||
               (kind != CHECK_WRITE_L1 &&
                check_marked(c->active_l1, c->overlap_nb, c->cb, off, len)) ||
               (kind != CHECK_WRITE_L2 &&
                check_marked(c->active_l2, c->overlap_nb, c->cb, off, len));
    if (hit) {
        res->check_errors++;
        check_say(c, "ERROR: writing the %s at 0x%" PRIx64 " would overwrite other metadata; "
                  "overlap check failed", what, off);
        return -EEXIST;
    }
    struct qcow2_error e;
    int ret = image_write(c->img, buf, (size_t)len, off, what, &e);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: could not write the %s: %s", what, e.message);
    }
    return ret;
}

/* ------------------------------------------------------------------------------------ */
/* Refcounts: computed (in memory) and stored (on disk)                                  */

static uint64_t check_ref_get(const struct check_ctx *c, uint64_t k)
{
    return k < c->nb ? refcount_block_entry(c->refs, c->order, k) : 0;
}

static void check_ref_put(struct check_ctx *c, uint64_t k, uint64_t v)
{
    refcount_block_set_entry(c->refs, c->order, k, v);
}

/* Covers clusters [0, want) in memory (new ones at 0). */
static int check_refs_cover(struct check_ctx *c, uint64_t want)
{
    if (want <= c->nb)
        return 0;
    if (want > c->refs_cap) {
        uint64_t per_block = 1ull << c->rb_bits;
        uint64_t blocks = check_div_up(want, per_block);
        if (blocks > CHECK_MAX_ARRAY_BYTES / c->cs)
            return -EFBIG;
        uint64_t bytes = blocks * c->cs;
        uint64_t old_bytes = (c->refs_cap >> c->rb_bits) * c->cs;
        uint8_t *p = realloc(c->refs, (size_t)bytes);
        if (!p)
            return -ENOMEM;
        memset(p + old_bytes, 0, (size_t)(bytes - old_bytes));
        c->refs = p;
        c->refs_cap = blocks * per_block;
    }
    c->nb = want;
    return 0;
}

/*
 * Counts `times` references to every cluster touched by [offset, offset+size). A
 * region reaching one cluster or more past the end of the file is a corruption and is
 * not counted; a count that would pass the refcount width's maximum is one too.
 */
static int check_inc(struct check_ctx *c, struct qcow2_check_result *res, uint64_t offset,
                     uint64_t size, uint64_t times)
{
    if (!size || !times)
        return 0;
    uint64_t file_len = c->img->file_size;
    if (offset > (uint64_t)INT64_MAX - size ||
        (offset + size > file_len && offset + size - file_len >= c->cs)) {
        check_say(c, "ERROR: counting reference for region exceeding the end of the file by one "
                  "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64, offset, size);
        res->corruptions += times;
        return 0;
    }
    uint64_t first = offset >> c->cb, last = (offset + size - 1) >> c->cb;
    int ret = check_refs_cover(c, last + 1);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: cannot track refcounts up to cluster %" PRIu64 ": %s", last,
                  strerror(-ret));
        return ret;
    }
    for (uint64_t k = first; k <= last; k++) {
        uint64_t rc = check_ref_get(c, k);
        uint64_t room = c->rc_max - rc;
        if (times <= room) {
            check_ref_put(c, k, rc + times);
            continue;
        }
        check_ref_put(c, k, c->rc_max);
        res->corruptions += times - room;
        check_say(c, "ERROR: overflow cluster offset=0x%" PRIx64 " (%" PRIu64
                  " references past the %u-bit maximum)",
                  k << c->cb, times - room, 1u << c->order);
    }
    return 0;
}

/*
 * The refcount block holding cluster k's stored refcount, or NULL (no block: refcount
 * 0). A block that is not cluster-aligned cannot be used (-EIO).
 */
static int check_stored_block(struct check_ctx *c, uint64_t k, uint64_t *block_offset)
{
    struct qcow2_image *img = c->img;
    uint64_t index = k >> c->rb_bits;
    *block_offset = 0;
    if (index >= img->reftable_size)
        return 0;
    uint64_t block = img->reftable[index] & REFTABLE_ENTRY_OFFSET_MASK;
    if (block % c->cs)
        return -EIO;
    *block_offset = block;
    return 0;
}

static int check_stored(struct check_ctx *c, uint64_t k, uint64_t *rc)
{
    uint64_t block;
    *rc = 0;
    int ret = check_stored_block(c, k, &block);
    if (ret || !block || block >= c->img->file_size)
        return ret;                 /* past the end of the file a block reads as zeros */
    const uint8_t *t;
    ret = cache_get(c->img->refblock_cache, c->img->backend, block, &t);
    if (ret)
        return ret;
    *rc = refcount_block_entry(t, c->order, k & ((1ull << c->rb_bits) - 1));
    return 0;
}

/* Stores a refcount in its existing block (written through). */
static int check_store(struct check_ctx *c, uint64_t k, uint64_t value)
{
    struct qcow2_image *img = c->img;
    uint64_t block;
    int ret = check_stored_block(c, k, &block);
    if (ret)
        return ret;
    if (!block || block >= img->file_size)
        return -EIO;
    uint8_t *t;
    ret = cache_get_mut(img->refblock_cache, img->backend, block, &t);
    if (ret)
        return ret;
    uint64_t index = k & ((1ull << c->rb_bits) - 1);
    uint64_t old = refcount_block_entry(t, c->order, index);
    refcount_block_set_entry(t, c->order, index, value);
    uint64_t at;
    size_t len;
    if (c->order < 3) {
        at = index / (8u >> c->order);
        len = 1;
    } else {
        len = (size_t)1 << (c->order - 3);
        at = index * len;
    }
    struct qcow2_error e;
    ret = image_write(img, t + at, len, block + at, "refcount block", &e);
    if (ret) {
        refcount_block_set_entry(t, c->order, index, old);
        return ret;
    }
    if (value > old)
        img->refcounts_unflushed = true;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The snapshot table, read the way check reads it                                      */

static void check_snaps_free(struct check_ctx *c)
{
    free(c->snaps);
    c->snaps = NULL;
    c->nb_snaps = 0;
    c->snaps_offset = 0;
    c->snaps_size = 0;
}

/* "id (name)" of snapshot i for messages, printable characters only. */
static void check_snap_label(struct check_ctx *c, uint32_t i, char *out, size_t cap)
{
    const struct check_snap *s = &c->snaps[i];
    char id[33] = "", name[33] = "";
    uint8_t raw[32];
    size_t n = QVET_MIN((size_t)s->id_size, sizeof(raw));
    if (!check_read(c, raw, n, s->id_pos))
        for (size_t j = 0; j < n; j++)
            id[j] = raw[j] >= 0x20 && raw[j] < 0x7F ? (char)raw[j] : '?';
    n = QVET_MIN((size_t)s->name_size, sizeof(raw));
    if (!check_read(c, raw, n, s->name_pos))
        for (size_t j = 0; j < n; j++)
            name[j] = raw[j] >= 0x20 && raw[j] < 0x7F ? (char)raw[j] : '?';
    snprintf(out, cap, "%s (%s)", id, name);
}

/*
 * Decodes the entries (QEMU's layout rules: each entry starts 8-aligned, the table's
 * size ends after the last name). With `repair`, extra data over 1024 bytes is cut
 * and a table over 64 MiB loses its trailing entries; otherwise either is fatal.
 */
static int check_parse_snaps(struct check_ctx *c, uint32_t count, bool repair,
                             uint32_t *reduced, uint32_t *dropped)
{
    struct check_reader r = { .img = c->img };
    c->snaps = calloc(count ? count : 1, sizeof(*c->snaps));
    if (!c->snaps)
        return -ENOMEM;
    uint64_t start = c->snaps_offset, offset = start, table_length = 0;
    int ret = 0;
    uint32_t i;
    for (i = 0; i < count; i++) {
        struct check_snap *s = &c->snaps[i];
        uint64_t pre = offset;
        table_length = round_up_u64(table_length, 8);
        offset = round_up_u64(offset, 8);
        uint8_t h[SNAPSHOT_FIXED_BYTES];
        ret = check_reader_get(c, &r, h, sizeof(h), offset);
        if (ret)
            break;
        s->entry_pos = offset;
        offset += SNAPSHOT_FIXED_BYTES;
        s->l1_offset = be64_get(h);
        s->l1_size = be32_get(h + 8);
        s->id_size = be16_get(h + 12);
        s->name_size = be16_get(h + 14);
        s->date_sec = be32_get(h + 16);
        s->date_nsec = be32_get(h + 20);
        s->vm_clock = be64_get(h + 24);
        s->vm_state = be32_get(h + 32);
        uint32_t extra = be32_get(h + 36);
        bool truncate = false;
        if (extra > SNAPSHOT_MAX_EXTRA_DATA) {
            if (!repair) {
                check_say(c, "ERROR failed to read the snapshot table: Too much extra metadata "
                          "in snapshot table entry %" PRIu32 " (repair with -r all)", i);
                ret = -EFBIG;
                break;
            }
            check_say(c, "Discarding too much extra metadata in snapshot table entry %" PRIu32
                      " (%" PRIu32 " > %u)", i, extra, SNAPSHOT_MAX_EXTRA_DATA);
            (*dropped)++;
            truncate = true;
        }
        uint8_t known[CHECK_SNAPSHOT_KNOWN_EXTRA];
        uint32_t known_len = QVET_MIN(extra, CHECK_SNAPSHOT_KNOWN_EXTRA);
        ret = check_reader_get(c, &r, known, known_len, offset);
        if (ret)
            break;
        offset += known_len;
        if (extra >= 8)
            s->vm_state = be64_get(known);
        s->disk_size = extra >= 16 ? be64_get(known + 8) : c->img->virtual_size;
        s->icount = extra >= 24 ? be64_get(known + 16) : UINT64_MAX;
        s->extra_size = truncate ? SNAPSHOT_MAX_EXTRA_DATA : extra;
        s->unknown_pos = offset;
        if (extra > CHECK_SNAPSHOT_KNOWN_EXTRA)
            offset += extra - CHECK_SNAPSHOT_KNOWN_EXTRA;
        s->id_pos = offset;
        offset += s->id_size;
        s->name_pos = offset;
        offset += s->name_size;
        table_length += SNAPSHOT_FIXED_BYTES + (uint64_t)s->extra_size + s->id_size +
                        s->name_size;
        if (table_length > SNAPSHOT_MAX_TABLE_BYTES || offset - start > CHECK_SNAPSHOT_MAX_SPAN) {
            if (!repair) {
                check_say(c, "ERROR failed to read the snapshot table: Snapshot table is too "
                          "big (%" PRIu32 " overhanging snapshots; repair with -r all)",
                          count - i);
                ret = -EFBIG;
                break;
            }
            check_say(c, "Discarding %" PRIu32 " overhanging snapshots (snapshot table is too "
                      "big)", count - i);
            *reduced += count - i;
            offset = pre;
            break;
        }
    }
    free(r.win);
    if (ret) {
        check_snaps_free(c);
        return ret;
    }
    c->nb_snaps = i;
    c->snaps_size = offset - start;
    return 0;
}

/* QEMU's qcow2_check_read_snapshot_table. */
static int check_read_snapshots(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    uint8_t ptr[12];
    check_snaps_free(c);
    int ret = check_read(c, ptr, sizeof(ptr), HEADER_OFF_NB_SNAPSHOTS);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR failed to read the snapshot table pointer from the image header");
        return ret;
    }
    uint32_t count = be32_get(ptr);
    uint64_t offset = be64_get(ptr + 4);
    uint32_t reduced = 0, dropped = 0;
    if (count > QCOW2_MAX_SNAPSHOTS && (c->fix & CHECK_FIX_ERRORS)) {
        check_say(c, "Discarding %" PRIu32 " overhanging snapshots", count - QCOW2_MAX_SNAPSHOTS);
        reduced += count - QCOW2_MAX_SNAPSHOTS;
        count = QCOW2_MAX_SNAPSHOTS;
    }
    if (count > QCOW2_MAX_SNAPSHOTS ||
        (uint64_t)INT64_MAX - (uint64_t)count * SNAPSHOT_FIXED_BYTES < offset ||
        offset % c->cs) {
        res->check_errors++;
        check_say(c, "ERROR snapshot table %s", count > QCOW2_MAX_SNAPSHOTS ? "too large"
                                                                              : "offset invalid");
        if (count > QCOW2_MAX_SNAPSHOTS)
            check_say(c, "You can force-remove all %" PRIu32 " overhanging snapshots with "
                      "check -r all", count - QCOW2_MAX_SNAPSHOTS);
        return count > QCOW2_MAX_SNAPSHOTS ? -EFBIG : -EINVAL;
    }
    c->snaps_offset = offset;
    ret = check_parse_snaps(c, count, (c->fix & CHECK_FIX_ERRORS) != 0, &reduced, &dropped);
    if (ret) {
        res->check_errors++;
        if (ret != -EFBIG)
            check_say(c, "ERROR failed to read the snapshot table: %s", strerror(-ret));
        return ret;
    }
    res->corruptions += (uint64_t)reduced + dropped;
    if (reduced) {
        struct qcow2_error e;
        ret = header_write_snapshot_count(img, c->nb_snaps, &e);
        if (ret) {
            res->check_errors++;
            check_say(c, "ERROR failed to update the snapshot count in the image header: %s",
                      e.message);
            return ret;
        }
        res->corruptions_fixed += reduced;
        res->corruptions -= reduced;
    }
    if (img->hdr.version >= 3) {
        for (uint32_t i = 0; i < c->nb_snaps; i++) {
            if (c->snaps[i].extra_size < SNAPSHOT_V3_MIN_EXTRA_DATA) {
                res->corruptions++;
                check_say(c, "%s snapshot table entry %" PRIu32 " is incomplete",
                          (c->fix & CHECK_FIX_ERRORS) ? "Repairing" : "ERROR", i);
            }
        }
    }
    return 0;
}

/* Writes the table anew (QEMU's layout: at least the 24 known bytes of extra data). */
static int check_write_snapshots(struct check_ctx *c, struct qcow2_error *err)
{
    struct qcow2_image *img = c->img;
    uint64_t size = 0;
    for (uint32_t i = 0; i < c->nb_snaps; i++) {
        const struct check_snap *s = &c->snaps[i];
        size = round_up_u64(size, 8) + SNAPSHOT_FIXED_BYTES +
               QVET_MAX(s->extra_size, CHECK_SNAPSHOT_KNOWN_EXTRA) + s->id_size + s->name_size;
        if (size > SNAPSHOT_MAX_TABLE_BYTES)
            return image_error(img, err, -EFBIG, "snapshot table", c->snaps_offset,
                               "the rewritten table would pass %u bytes",
                               SNAPSHOT_MAX_TABLE_BYTES);
    }
    uint8_t *buf = calloc(1, (size_t)round_up_u64(size, 8) + 8);
    if (!buf)
        return image_error(img, err, -ENOMEM, "snapshot table", QCOW2_NO_OFFSET,
                           "out of memory");
    uint64_t pos = 0;
    int ret = 0;
    for (uint32_t i = 0; i < c->nb_snaps && !ret; i++) {
        const struct check_snap *s = &c->snaps[i];
        uint32_t extra = QVET_MAX(s->extra_size, CHECK_SNAPSHOT_KNOWN_EXTRA);
        pos = round_up_u64(pos, 8);
        uint8_t *e = buf + pos;
        be64_put(e, s->l1_offset);
        be32_put(e + 8, s->l1_size);
        be16_put(e + 12, s->id_size);
        be16_put(e + 14, s->name_size);
        be32_put(e + 16, s->date_sec);
        be32_put(e + 20, s->date_nsec);
        be64_put(e + 24, s->vm_clock);
        be32_put(e + 32, s->vm_state <= UINT32_MAX ? (uint32_t)s->vm_state : 0);
        be32_put(e + 36, extra);
        be64_put(e + 40, s->vm_state);
        be64_put(e + 48, s->disk_size);
        be64_put(e + 56, s->icount);
        pos += SNAPSHOT_FIXED_BYTES + CHECK_SNAPSHOT_KNOWN_EXTRA;
        if (extra > CHECK_SNAPSHOT_KNOWN_EXTRA) {
            ret = check_read(c, buf + pos, extra - CHECK_SNAPSHOT_KNOWN_EXTRA, s->unknown_pos);
            pos += extra - CHECK_SNAPSHOT_KNOWN_EXTRA;
        }
        if (!ret)
            ret = check_read(c, buf + pos, s->id_size, s->id_pos);
        pos += s->id_size;
        if (!ret)
            ret = check_read(c, buf + pos, s->name_size, s->name_pos);
        pos += s->name_size;
    }
    if (ret) {
        free(buf);
        return image_error(img, err, ret, "snapshot table", c->snaps_offset, "read failed");
    }
    uint64_t new_offset = 0;
    img->free_cluster_hint = 0;
    img->compressed_next = 0;
    if (size)
        ret = refcount_alloc(img, check_div_up(size, c->cs), &new_offset, err);
    if (!ret)
        ret = header_switch_table(img, HEADER_TABLE_SNAPSHOTS, buf, (size_t)size, new_offset,
                                  c->nb_snaps, "snapshot table", err);
    if (ret) {
        free(buf);
        return ret;
    }
    uint64_t old_offset = c->snaps_offset, old_size = c->snaps_size;
    c->snaps_offset = new_offset;
    c->snaps_size = size;
    if (old_size) {
        struct qcow2_error e;
        if (refcount_add_range(img, old_offset, old_size, -1, &e))
            check_say(c, "ERROR could not free the old snapshot table: %s", e.message);
    }
    /* The engine's copy of the table follows the new one. */
    struct snapshot_table t;
    struct qcow2_error e;
    if (snapshot_table_parse(buf, size, new_offset, c->nb_snaps, img->name, &t, &e)) {
        check_say(c, "ERROR the rewritten snapshot table cannot be loaded: %s", e.message);
        memset(&t, 0, sizeof(t));
    }
    snapshot_table_release(&img->snapshots);
    img->snapshots = t;
    free(buf);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Counting references                                                                   */

static enum check_type check_type_of(const struct check_ctx *c, uint64_t word)
{
    if (word & L2_ENTRY_COMPRESSED)
        return CHECK_COMPRESSED;
    if ((word & L2_ENTRY_ZERO) && !c->img->geo.extended_l2)
        return (word & L2_ENTRY_OFFSET_MASK) ? CHECK_ZERO_ALLOC : CHECK_ZERO_PLAIN;
    return (word & L2_ENTRY_OFFSET_MASK) ? CHECK_NORMAL : CHECK_UNALLOCATED;
}

/* Entries of a table at `offset` that lie (at least partly) inside the file. */
static uint64_t check_entries_in_file(const struct check_ctx *c, uint64_t offset,
                                      uint64_t entries, uint32_t entry_bytes)
{
    if (offset >= c->img->file_size)
        return 0;
    return QVET_MIN(entries, check_div_up(c->img->file_size - offset, entry_bytes));
}

/*
 * Reads an L1 table (the part inside the file) and counts it, and the L2 tables its
 * entries name, `times` times. The L2 tables are queued in c->l2s.
 */
static int check_l1(struct check_ctx *c, struct qcow2_check_result *res, uint64_t l1_offset,
                    uint32_t l1_size, uint64_t times, bool active)
{
    if (!l1_size)
        return 0;
    int ret = check_inc(c, res, l1_offset, (uint64_t)l1_size * 8u, times);
    if (ret)
        return ret;
    uint64_t n = check_entries_in_file(c, l1_offset, l1_size, 8);
    if (!n)
        return 0;
    uint8_t *raw = malloc((size_t)n * 8u);
    if (!raw) {
        res->check_errors++;
        check_say(c, "ERROR: out of memory for an L1 table of %" PRIu64 " entries", n);
        return -ENOMEM;
    }
    ret = check_read(c, raw, n * 8u, l1_offset);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: I/O error reading the L1 table at 0x%" PRIx64, l1_offset);
    }
    for (uint64_t i = 0; i < n && !ret; i++) {
        uint64_t entry = be64_get(raw + 8 * i);
        if (!entry)
            continue;
        if (entry & L1_ENTRY_RESERVED_MASK) {
            check_say(c, "ERROR found L1 entry with reserved bits set: %" PRIx64, entry);
            res->corruptions += times;
        }
        uint64_t l2 = entry & L1_ENTRY_OFFSET_MASK;
        ret = check_inc(c, res, l2, c->cs, times);
        if (ret)
            break;
        if (l2 % c->cs) {
            check_say(c, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                      "corrupted", l2);
            res->corruptions += times;
        }
        if (check_refs_add(&c->l2s, l2, c->cs, times, active ? times : 0)) {
            res->check_errors++;
            check_say(c, "ERROR: out of memory");
            ret = -ENOMEM;
        }
    }
    free(raw);
    return ret;
}

/* QEMU's fix for a preallocated zero cluster whose offset is not aligned. */
static int check_zero_entry(struct check_ctx *c, struct qcow2_check_result *res,
                            uint64_t l2_offset, uint32_t index, struct l2_entry e)
{
    const struct geometry *g = &c->img->geo;
    struct l2_entry fixed;
    if (g->extended_l2)
        fixed = (struct l2_entry){ .word = 0,
                                   .bitmap = (e.bitmap | (e.bitmap << 32)) & SUBCLUSTER_ZERO_MASK };
    else
        fixed = (struct l2_entry){ .word = L2_ENTRY_ZERO, .bitmap = 0 };
    l2_entry_put(g, c->buf, index, fixed);
    uint64_t at = l2_offset + (uint64_t)index * c->l2_entry_bytes;
    int ret = check_write(c, res, c->buf + (size_t)index * c->l2_entry_bytes, c->l2_entry_bytes,
                          at, CHECK_WRITE_L2, "L2 table entry");
    if (ret) {
        l2_entry_put(g, c->buf, index, e);
        return ret;
    }
    cache_forget(c->img->l2_cache, l2_offset);
    return 0;
}

/*
 * Counts the references of one L2 table referenced `times` times (`active` of them
 * from the active L1, which also feed the allocation statistics).
 */
static int check_l2(struct check_ctx *c, struct qcow2_check_result *res, uint64_t l2_offset,
                    uint64_t times, uint64_t active)
{
    const struct geometry *g = &c->img->geo;
    uint64_t n = check_entries_in_file(c, l2_offset, c->l2_entries, c->l2_entry_bytes);
    if (!n)
        return 0;
    int ret = check_read(c, c->buf, c->cs, l2_offset);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: I/O error reading the L2 table at 0x%" PRIx64, l2_offset);
        return ret;
    }
    uint64_t next_contiguous = 0, allocated = 0, fragmented = 0, compressed = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct l2_entry e = l2_entry_at(g, c->buf, i);
        enum check_type type = check_type_of(c, e.word);
        uint64_t found = 0;         /* corruptions one walk of this entry finds */
        if (type != CHECK_COMPRESSED && (e.word & L2_ENTRY_RESERVED_MASK)) {
            check_say(c, "ERROR found l2 entry with reserved bits set: %" PRIx64, e.word);
            found++;
        }
        switch (type) {
        case CHECK_COMPRESSED: {
            uint32_t shift = 70u - c->cb;
            uint64_t coffset = e.word & ((1ull << shift) - 1);
            uint64_t sectors = ((e.word >> shift) & ((1ull << (c->cb - 8u)) - 1)) + 1;
            uint64_t csize = sectors * 512u - (coffset & 511u);
            if (e.word & ENTRY_COPIED) {
                check_say(c, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
                          "compressed clusters", coffset);
                found++;
            }
            if (e.bitmap) {
                check_say(c, "ERROR compressed cluster %" PRIu32 " with non-zero subcluster "
                          "allocation bitmap, entry=0x%" PRIx64, i, e.word);
                found++;
                break;
            }
            ret = check_inc(c, res, coffset, csize, times);
            allocated++;
            compressed++;
            fragmented++;
            break;
        }
        case CHECK_ZERO_ALLOC:
        case CHECK_NORMAL: {
            uint64_t offset = e.word & L2_ENTRY_OFFSET_MASK;
            if ((e.bitmap >> 32) & e.bitmap) {
                check_say(c, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
                          "subcluster allocation bitmap", offset);
                found++;
            }
            if (offset % c->cs) {
                bool has_data = g->extended_l2 ? (e.bitmap & SUBCLUSTER_ALLOC_MASK) != 0
                                               : !(e.word & L2_ENTRY_ZERO);
                found++;
                if (!has_data) {
                    bool repair = (c->fix & CHECK_FIX_ERRORS) != 0;
                    check_say(c, "%s offset=%" PRIx64 ": Preallocated cluster is not properly "
                              "aligned; L2 entry corrupted.", repair ? "Repairing" : "ERROR",
                              offset);
                    int fixed = repair ? check_zero_entry(c, res, l2_offset, i, e) : 1;
                    if (!fixed) {
                        /* Fixed on the first walk: the others see a plain zero entry. */
                        res->corruptions += found - 1;
                        res->corruptions_fixed++;
                        continue;
                    }
                    /* Metadata in the way stops the check; a failed write does not. */
                    if (fixed == -EEXIST || fixed == -ENOMEM)
                        return fixed;
                } else {
                    check_say(c, "ERROR offset=%" PRIx64 ": Data cluster is not properly "
                              "aligned; L2 entry corrupted.", offset);
                }
            }
            allocated++;
            if (next_contiguous && offset != next_contiguous)
                fragmented++;
            next_contiguous = offset + c->cs;
            ret = check_inc(c, res, offset, c->cs, times);
            break;
        }
        case CHECK_ZERO_PLAIN:
            break;
        case CHECK_UNALLOCATED:
            if (e.bitmap & SUBCLUSTER_ALLOC_MASK) {
                check_say(c, "ERROR: Unallocated cluster has non-zero subcluster allocation map");
                found++;
            }
            break;
        }
        res->corruptions += found * times;
        if (ret)
            return ret;
    }
    res->allocated_clusters += allocated * active;
    res->fragmented_clusters += fragmented * active;
    res->compressed_clusters += compressed * active;
    return 0;
}

static int check_bme_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Bitmap directory, tables and data clusters (only while autoclear bit 0 is set). */
static int check_bitmaps(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    const struct header *h = &img->hdr;
    if (!(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) || !h->has_bitmaps_ext ||
        !h->nb_bitmaps)
        return 0;
    uint64_t dir_offset = h->bitmap_directory_offset, dir_size = h->bitmap_directory_size;
    int ret = check_inc(c, res, dir_offset, dir_size, 1);
    if (ret)
        return ret;
    if (!span_fits(img->file_size, dir_offset, dir_size) ||
        dir_size > (uint64_t)h->nb_bitmaps * (CHECK_BME_FIXED + 2048u)) {
        res->corruptions++;
        res->check_errors++;
        check_say(c, "ERROR bitmap directory at 0x%" PRIx64 " (%" PRIu64 " bytes) cannot be "
                  "loaded", dir_offset, dir_size);
        return -EINVAL;
    }
    uint8_t *dir = malloc(dir_size ? (size_t)dir_size : 1);
    uint64_t *tables = malloc((size_t)h->nb_bitmaps * 2u * sizeof(uint64_t));
    if (!dir || !tables) {
        free(dir);
        free(tables);
        res->check_errors++;
        return -ENOMEM;
    }
    ret = check_read(c, dir, dir_size, dir_offset);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < h->nb_bitmaps && !ret; i++) {
        const uint8_t *e = dir + pos;
        uint64_t len = !span_fits(dir_size, pos, CHECK_BME_FIXED) ? 0
                       : round_up_u64(CHECK_BME_FIXED + (uint64_t)be32_get(e + 20) +
                                          be16_get(e + 18), 8);
        uint64_t table_offset = len ? be64_get(e) : 0;
        uint32_t table_size = len ? be32_get(e + 8) : 0;
        if (!len || !span_fits(dir_size, pos, len) || !table_size ||
            table_size > CHECK_BME_MAX_TABLE_ENTRIES || !table_offset ||
            table_offset % c->cs) {
            res->corruptions++;
            res->check_errors++;
            check_say(c, "ERROR bitmap directory entry %" PRIu32 " is invalid", i);
            ret = -EINVAL;
            break;
        }
        tables[2 * i] = table_offset;
        tables[2 * i + 1] = table_size;
        pos += len;
    }
    free(dir);
    if (ret) {
        free(tables);
        return ret;
    }
    /* The same table named by several bitmaps is read once. */
    qsort(tables, h->nb_bitmaps, 2 * sizeof(uint64_t), check_bme_cmp);
    for (uint32_t i = 0; i < h->nb_bitmaps && !ret;) {
        uint32_t j = i + 1;
        while (j < h->nb_bitmaps && tables[2 * j] == tables[2 * i] &&
               tables[2 * j + 1] == tables[2 * i + 1])
            j++;
        uint64_t times = j - i, offset = tables[2 * i], size = tables[2 * i + 1];
        i = j;
        ret = check_inc(c, res, offset, size * 8u, times);
        uint64_t n = ret ? 0 : check_entries_in_file(c, offset, size, 8);
        uint8_t *raw = n ? malloc((size_t)n * 8u) : NULL;
        if (n && !raw) {
            res->check_errors++;
            ret = -ENOMEM;
            break;
        }
        if (n)
            ret = check_read(c, raw, n * 8u, offset);
        for (uint64_t k = 0; k < n && !ret; k++) {
            uint64_t entry = be64_get(raw + 8 * k);
            uint64_t data = entry & BITMAP_TABLE_OFFSET_MASK;
            if (bitmap_table_entry_problem(entry, c->cs)) {
                res->corruptions++;
                res->check_errors++;
                check_say(c, "ERROR bitmap table at 0x%" PRIx64 " has an invalid entry "
                          "0x%016" PRIx64, offset, entry);
                ret = -EINVAL;
                break;
            }
            if (data)
                ret = check_inc(c, res, data, c->cs, times);
        }
        free(raw);
    }
    free(tables);
    return ret;
}

/* QEMU's check_refblocks: the refcount blocks themselves. */
static int check_refblocks(struct check_ctx *c, struct qcow2_check_result *res, bool *rebuild)
{
    struct qcow2_image *img = c->img;
    for (uint32_t i = 0; i < img->reftable_size; i++) {
        uint64_t entry = img->reftable[i];
        uint64_t offset = entry & REFTABLE_ENTRY_OFFSET_MASK;
        uint64_t cluster = offset >> c->cb;
        if (entry & REFTABLE_ENTRY_RESERVED_MASK) {
            check_say(c, "ERROR refcount table entry %" PRIu32 " has reserved bits set", i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (offset % c->cs) {
            check_say(c, "ERROR refcount block %" PRIu32 " is not cluster aligned; refcount "
                      "table entry corrupted", i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (cluster >= c->nb) {
            bool repair = (c->fix & CHECK_FIX_ERRORS) != 0;
            res->corruptions++;
            check_say(c, "%s refcount block %" PRIu32 " is outside image",
                      repair ? "Repairing" : "ERROR", i);
            if (!repair)
                continue;
            /* Grow the file to hold it (bounded: the refcounts must still fit in memory). */
            int ret = -EFBIG;
            uint64_t want = cluster + 1;
            if (offset <= (uint64_t)INT64_MAX - c->cs &&
                check_div_up(want, 1ull << c->rb_bits) <= CHECK_MAX_ARRAY_BYTES / c->cs)
                ret = image_truncate(img, offset + c->cs, NULL);
            uint64_t size = img->file_size;
            if (!ret && check_div_up(size, c->cs) < want)
                ret = -EINVAL;
            if (!ret) {
                ret = check_refs_cover(c, check_div_up(size, c->cs));
                if (ret) {
                    res->check_errors++;
                    return ret;
                }
                res->corruptions--;
                res->corruptions_fixed++;
                ret = check_inc(c, res, offset, c->cs, 1);
                if (ret)
                    return ret;
                continue;
            }
            *rebuild = true;
            check_say(c, "ERROR could not resize image: %s", strerror(-ret));
            continue;
        }
        if (offset) {
            int ret = check_inc(c, res, offset, c->cs, 1);
            if (ret)
                return ret;
            uint64_t rc = check_ref_get(c, cluster);
            if (rc != 1) {
                check_say(c, "ERROR refcount block %" PRIu32 " refcount=%" PRIu64, i, rc);
                res->corruptions++;
                *rebuild = true;
            }
        }
    }
    return 0;
}

/* QEMU's calculate_refcounts: every reference the image's tables make. */
static int check_calculate(struct check_ctx *c, struct qcow2_check_result *res, bool *rebuild)
{
    struct qcow2_image *img = c->img;
    const struct header *h = &img->hdr;
    int ret = check_inc(c, res, 0, c->cs, 1);
    if (ret)
        return ret;

    check_refs_free(&c->l2s);
    ret = check_l1(c, res, h->l1_table_offset, h->l1_size, 1, true);
    if (ret)
        return ret;

    /* Snapshot L1 tables; identical ones are walked once. */
    struct check_refs l1s = { 0 };
    char label[160];
    for (uint32_t i = 0; i < c->nb_snaps && !ret; i++) {
        const struct check_snap *s = &c->snaps[i];
        if (s->l1_offset % c->cs) {
            check_snap_label(c, i, label, sizeof(label));
            check_say(c, "ERROR snapshot %s l1_offset=%#" PRIx64 ": L1 table is not cluster "
                      "aligned; snapshot table entry corrupted", label, s->l1_offset);
            res->corruptions++;
            continue;
        }
        if (s->l1_size > CHECK_MAX_L1_ENTRIES) {
            check_snap_label(c, i, label, sizeof(label));
            check_say(c, "ERROR snapshot %s l1_size=%#" PRIx32 ": L1 table is too large; "
                      "snapshot table entry corrupted", label, s->l1_size);
            res->corruptions++;
            continue;
        }
        if (check_refs_add(&l1s, s->l1_offset, s->l1_size, 1, 0)) {
            res->check_errors++;
            ret = -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < l1s.n && !ret; i++)
        ret = check_l1(c, res, l1s.items[i].offset, (uint32_t)l1s.items[i].size,
                       l1s.items[i].count, false);
    check_refs_free(&l1s);
    for (uint32_t i = 0; i < c->l2s.n && !ret; i++)
        ret = check_l2(c, res, c->l2s.items[i].offset, c->l2s.items[i].count,
                       c->l2s.items[i].active);
    if (!ret)
        ret = check_inc(c, res, c->snaps_offset, c->snaps_size, 1);
    if (!ret)
        ret = check_inc(c, res, h->refcount_table_offset, (uint64_t)img->reftable_size * 8u, 1);
    if (!ret)
        ret = check_bitmaps(c, res);
    if (!ret)
        ret = check_refblocks(c, res, rebuild);
    return ret;
}

/* QEMU's compare_refcounts: stored against computed, fixing what `fix` allows. */
static void check_compare(struct check_ctx *c, struct qcow2_check_result *res, unsigned fix,
                          bool *rebuild, uint64_t *highest)
{
    *highest = 0;
    for (uint64_t i = 0; i < c->nb; i++) {
        uint64_t stored, computed = check_ref_get(c, i);
        int ret = check_stored(c, i, &stored);
        if (ret) {
            check_say(c, "Can't get refcount for cluster %" PRIu64 ": %s", i, strerror(-ret));
            res->check_errors++;
            continue;
        }
        if (stored || computed)
            *highest = i;
        if (stored == computed)
            continue;
        uint64_t *fixed = NULL;
        if (stored == 0)
            *rebuild = true;
        else if (stored > computed && (fix & CHECK_FIX_LEAKS))
            fixed = &res->leaks_fixed;
        else if (stored < computed && (fix & CHECK_FIX_ERRORS))
            fixed = &res->corruptions_fixed;
        check_say(c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
                  fixed ? "Repairing" : stored < computed ? "ERROR" : "Leaked", i, stored,
                  computed);
        if (fixed) {
            ret = check_store(c, i, computed);
            if (!ret) {
                (*fixed)++;
                continue;
            }
            check_say(c, "ERROR could not update the refcount of cluster %" PRIu64 ": %s", i,
                      strerror(-ret));
        }
        if (stored < computed)
            res->corruptions++;
        else
            res->leaks++;
    }
}

/*
 * Takes `count` contiguous clusters that are free in the computed refcounts, the
 * first such run at or after *first_free (the in-memory refcounts grow when the run
 * has to extend past their end), and counts them as used.
 */
static int check_alloc(struct check_ctx *c, uint64_t count, uint64_t *first_free,
                       uint64_t *cluster_out)
{
    uint64_t k = *first_free, run = 0;
    bool first_gap = true;
    for (; k < c->nb && run < count; k++) {
        if (!check_ref_get(c, k)) {
            if (first_gap) {
                *first_free = k;
                first_gap = false;
            }
            run++;
        } else {
            run = 0;
        }
    }
    if (run < count) {
        int ret = check_refs_cover(c, k + count - run);
        if (ret)
            return ret;
    }
    k -= run;
    for (uint64_t i = 0; i < count; i++)
        check_ref_put(c, k + i, 1);
    *cluster_out = k;
    return 0;
}

struct check_new_reftable {
    uint64_t *entries;              /* host-endian refblock offsets */
    uint64_t size;                  /* a whole number of clusters' worth */
};

/*
 * Writes a refcount block, straight from the computed refcounts, for every range that
 * has a non-zero refcount among clusters [first, end), allocating it first where the
 * new table has none. Returns 1 when the new table had to grow, 0, or negative.
 */
static int check_write_refblocks(struct check_ctx *c, uint64_t first, uint64_t end,
                                 struct check_new_reftable *t)
{
    uint64_t per_block = 1ull << c->rb_bits;
    uint64_t first_free = 0;
    int grown = 0;
    for (uint64_t k = first; k < end; k++) {
        if (!check_ref_get(c, k))
            continue;
        uint64_t r = k >> c->rb_bits, range_start = r << c->rb_bits;
        uint64_t offset;
        if (r < t->size && t->entries[r]) {
            offset = t->entries[r];
        } else {
            /* Never inside a range whose block is already written. */
            first_free = QVET_MAX(first_free, range_start);
            uint64_t cluster;
            int ret = check_alloc(c, 1, &first_free, &cluster);
            if (ret)
                return ret;
            if (cluster >= end)
                end = cluster + 1;  /* its own refcount needs writing too */
            if (r >= t->size) {
                uint64_t size = round_up_u64((r + 1) * 8u, c->cs) / 8u;
                if (size * 8u > QCOW2_MAX_REFTABLE_BYTES)
                    return -EFBIG;
                uint64_t *p = realloc(t->entries, (size_t)size * sizeof(*p));
                if (!p)
                    return -ENOMEM;
                memset(p + t->size, 0, (size_t)(size - t->size) * sizeof(*p));
                t->entries = p;
                t->size = size;
                grown = 1;
            }
            offset = cluster << c->cb;
            t->entries[r] = offset;
        }
        struct qcow2_error e;
        int ret = image_write(c->img, c->refs + r * c->cs, (size_t)c->cs, offset,
                              "refcount block", &e);
        if (ret)
            return ret;
        k = range_start + per_block - 1;
    }
    return grown;
}

/*
 * A new refcount structure from the computed refcounts (QEMU's placement: refcount
 * blocks and then the table go to the first clusters nothing references, so they never
 * overwrite anything in use). The header is switched to it last; the old structure is
 * then unreferenced, and the caller reclaims it as leaks.
 */
static int check_rebuild(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    struct check_new_reftable t = { 0 };
    uint64_t table_cluster = 0, table_clusters = 0;
    int ret = check_write_refblocks(c, 0, c->nb, &t);
    while (ret > 0) {
        table_clusters = t.size * 8u / c->cs;
        uint64_t first_free = 0;
        ret = check_alloc(c, table_clusters, &first_free, &table_cluster);
        if (!ret)
            ret = check_write_refblocks(c, table_cluster, table_cluster + table_clusters, &t);
    }
    uint8_t *raw = ret ? NULL : malloc((size_t)(t.size * 8u));
    if (!ret && !raw)
        ret = -ENOMEM;
    struct qcow2_error e = { .message = "" };
    if (!ret) {
        for (uint64_t i = 0; i < t.size; i++)
            be64_put(raw + 8 * i, t.entries[i]);
        ret = header_switch_table(img, HEADER_TABLE_REFCOUNT, raw, (size_t)(t.size * 8u),
                                  table_cluster << c->cb, table_clusters, "refcount table",
                                  &e);
    }
    free(raw);
    if (ret) {
        free(t.entries);
        res->check_errors++;
        check_say(c, "ERROR rebuilding the refcount structure: %s",
                  e.message[0] ? e.message : strerror(-ret));
        return ret;
    }
    free(img->reftable);
    img->reftable = t.entries;
    img->reftable_size = (uint32_t)t.size;
    cache_drop(img->refblock_cache);
    img->free_cluster_hint = 0;
    img->compressed_next = 0;
    img->refcounts_unflushed = false;
    return 0;
}

/* Starts the in-memory refcounts over for the current file size. */
static int check_refs_reset(struct check_ctx *c, struct qcow2_check_result *res)
{
    free(c->refs);
    c->refs = NULL;
    c->nb = c->refs_cap = 0;
    uint64_t nb = check_div_up(c->img->file_size, c->cs);
    if (nb > CHECK_MAX_CLUSTERS) {
        res->check_errors++;
        check_say(c, "ERROR the image file has %" PRIu64 " clusters, too many to check", nb);
        return -EFBIG;
    }
    int ret = check_refs_cover(c, nb ? nb : 1);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR cannot hold the refcounts of %" PRIu64 " clusters in memory", nb);
    }
    return ret;
}

/* QEMU's check_oflag_copied, over the active L1 and its L2 tables. */
static int check_copied(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    const struct header *h = &img->hdr;
    const struct geometry *g = &img->geo;
    bool repair = (c->fix & CHECK_FIX_ERRORS) ||
                  ((c->fix & CHECK_FIX_LEAKS) && !res->check_errors && !res->corruptions &&
                   !res->leaks);
    uint64_t n = check_entries_in_file(c, h->l1_table_offset, h->l1_size, 8);
    if (!n)
        return 0;
    uint8_t *l1 = malloc((size_t)n * 8u);
    if (!l1) {
        res->check_errors++;
        return -ENOMEM;
    }
    int ret = check_read(c, l1, n * 8u, h->l1_table_offset);
    if (ret)
        res->check_errors++;
    struct check_refs tables = { 0 };
    for (uint64_t i = 0; i < n && !ret; i++) {
        uint64_t entry = be64_get(l1 + 8 * i);
        uint64_t l2 = entry & L1_ENTRY_OFFSET_MASK;
        if (!l2)
            continue;
        if (check_refs_add(&tables, l2, 0, 1, 0)) {
            res->check_errors++;
            ret = -ENOMEM;
            break;
        }
        uint64_t rc;
        if (check_stored(c, l2 >> c->cb, &rc))
            continue;
        if ((rc == 1) == ((entry & ENTRY_COPIED) != 0))
            continue;
        res->corruptions++;
        check_say(c, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64 " l1_entry=%" PRIx64
                  " refcount=%" PRIu64, repair ? "Repairing" : "ERROR", i, entry, rc);
        if (!repair)
            continue;
        uint64_t fixed = rc == 1 ? entry | ENTRY_COPIED : entry & ~ENTRY_COPIED;
        uint8_t raw[8];
        be64_put(raw, fixed);
        ret = check_write(c, res, raw, 8, h->l1_table_offset + 8 * i, CHECK_WRITE_L1,
                          "L1 table entry");
        if (ret)
            break;
        be64_put(l1 + 8 * i, fixed);
        if (img->selected_snapshot < 0 && i < img->l1_size)
            img->l1[i] = fixed;
        res->corruptions--;
        res->corruptions_fixed++;
    }
    free(l1);

    for (uint32_t t = 0; t < tables.n && !ret; t++) {
        uint64_t l2 = tables.items[t].offset, times = tables.items[t].count;
        uint64_t entries = check_entries_in_file(c, l2, c->l2_entries, c->l2_entry_bytes);
        if (!entries)
            continue;
        ret = check_read(c, c->buf, c->cs, l2);
        if (ret) {
            res->check_errors++;
            check_say(c, "ERROR: Could not read L2 table at 0x%" PRIx64, l2);
            break;
        }
        uint64_t errors = 0;
        for (uint32_t j = 0; j < entries; j++) {
            struct l2_entry e = l2_entry_at(g, c->buf, j);
            enum check_type type = check_type_of(c, e.word);
            if (type != CHECK_NORMAL && type != CHECK_ZERO_ALLOC)
                continue;
            uint64_t rc;
            if (check_stored(c, (e.word & L2_ENTRY_OFFSET_MASK) >> c->cb, &rc))
                continue;
            if ((rc == 1) == ((e.word & ENTRY_COPIED) != 0))
                continue;
            errors++;
            check_say(c, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64,
                      repair ? "Repairing" : "ERROR", e.word, rc);
            if (repair) {
                e.word = rc == 1 ? e.word | ENTRY_COPIED : e.word & ~ENTRY_COPIED;
                l2_entry_put(g, c->buf, j, e);
            }
        }
        if (!errors)
            continue;
        if (!repair) {
            res->corruptions += errors * times;
            continue;
        }
        /* Fixed on the first walk; QEMU's later walks of the same table find nothing. */
        res->corruptions += errors;
        ret = check_write(c, res, c->buf, c->cs, l2, CHECK_WRITE_L2, "L2 table");
        if (ret)
            break;
        cache_forget(img->l2_cache, l2);
        res->corruptions -= errors;
        res->corruptions_fixed += errors;
    }
    check_refs_free(&tables);
    return ret;
}

/* QEMU's qcow2_check_refcounts. */
static int check_refcounts(struct check_ctx *c, struct qcow2_check_result *res)
{
    struct qcow2_image *img = c->img;
    bool rebuild = false;
    uint64_t highest = 0;
    res->total_clusters = check_div_up(img->virtual_size, c->cs);
    int ret = check_refs_reset(c, res);
    if (!ret)
        ret = check_calculate(c, res, &rebuild);
    if (ret)
        return ret;

    struct qcow2_check_result before = *res;
    check_compare(c, res, 0, &rebuild, &highest);

    if (rebuild && (c->fix & CHECK_FIX_ERRORS)) {
        struct qcow2_check_result old = *res;
        uint64_t fresh_leaks = 0;
        check_say(c, "Rebuilding refcount structure");
        ret = check_rebuild(c, res);
        if (ret)
            return ret;
        res->corruptions = 0;
        res->leaks = 0;
        rebuild = false;
        check_overlap_reset(c);
        ret = check_refs_reset(c, res);
        if (!ret) {
            unsigned fix = c->fix;
            c->fix = 0;
            ret = check_calculate(c, res, &rebuild);
            c->fix = fix;
        }
        if (ret)
            return ret;
        if (c->fix & CHECK_FIX_LEAKS) {
            /* The old structure is unreferenced now: reclaim it (not counted as a fix). */
            struct qcow2_check_result saved = *res;
            memset(res, 0, sizeof(*res));
            check_compare(c, res, CHECK_FIX_LEAKS, &rebuild, &highest);
            if (rebuild)
                check_say(c, "ERROR rebuilt refcount structure is still broken");
            fresh_leaks = res->leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions)
            res->corruptions_fixed += old.corruptions - res->corruptions;
        if (res->leaks < old.leaks)
            res->leaks_fixed += old.leaks - res->leaks;
        res->leaks += fresh_leaks;
    } else if (c->fix) {
        if (rebuild) {
            check_say(c, "ERROR need to rebuild refcount structures");
            res->check_errors++;
            return -EIO;
        }
        if (res->leaks || res->corruptions) {
            *res = before;
            check_compare(c, res, c->fix, &rebuild, &highest);
        }
    }
    check_overlap_reset(c);
    ret = check_copied(c, res);
    if (ret)
        return ret;
    res->image_end_offset = (highest + 1) << c->cb;
    return 0;
}

static void check_add(struct qcow2_check_result *out, const struct qcow2_check_result *in,
                      bool allocation)
{
    out->corruptions += in->corruptions;
    out->leaks += in->leaks;
    out->check_errors += in->check_errors;
    out->corruptions_fixed += in->corruptions_fixed;
    out->leaks_fixed += in->leaks_fixed;
    if (allocation) {
        out->image_end_offset = in->image_end_offset;
        out->total_clusters = in->total_clusters;
        out->allocated_clusters = in->allocated_clusters;
        out->fragmented_clusters = in->fragmented_clusters;
        out->compressed_clusters = in->compressed_clusters;
    }
}

/* One run of QEMU's qcow2_co_check_locked; negative when the run had to stop. */
static int check_pass(struct check_ctx *c, struct qcow2_check_result *result)
{
    struct qcow2_check_result snap = { 0 }, refs = { 0 };
    memset(result, 0, sizeof(*result));
    int ret = check_read_snapshots(c, &snap);
    if (ret) {
        check_add(result, &snap, false);
        return ret;
    }
    ret = check_refcounts(c, &refs);
    check_add(result, &refs, true);
    if (ret) {
        check_add(result, &snap, false);
        return ret;
    }
    if (snap.corruptions && (c->fix & CHECK_FIX_ERRORS)) {
        struct qcow2_error e;
        if (check_write_snapshots(c, &e)) {
            snap.check_errors++;
            check_say(c, "ERROR failed to update snapshot table: %s", e.message);
        } else {
            snap.corruptions_fixed += snap.corruptions;
            snap.corruptions = 0;
        }
    }
    check_add(result, &snap, false);
    if (c->fix) {
        struct qcow2_error e;
        int r = image_flush(c->img, &e);
        if (!r && !result->check_errors && !result->corruptions) {
            r = image_mark_clean(c->img, &e);
            if (!r)
                r = header_clear_incompat(c->img, QCOW2_INCOMPAT_CORRUPT, &e);
        }
        if (r) {
            result->check_errors++;
            check_say(c, "ERROR: %s", e.message);
        }
    }
    return 0;
}

static void check_ctx_release(struct check_ctx *c)
{
    free(c->refs);
    free(c->buf);
    check_refs_free(&c->l2s);
    check_snaps_free(c);
    check_overlap_reset(c);
}

int qcow2_check(struct qcow2_image *img, enum qcow2_repair repair,
                struct qcow2_check_result *result, qcow2_check_report report,
                void *report_ctx, struct qcow2_error *err)
{
    memset(result, 0, sizeof(*result));
    if (img->format != QCOW2_FORMAT_QCOW2)
        return image_error(img, err, -ENOTSUP, "image", QCOW2_NO_OFFSET,
                           "only qcow2 images can be checked");
    if (repair != QCOW2_REPAIR_NONE && !img->writable)
        return image_error(img, err, -EROFS, "image", QCOW2_NO_OFFSET,
                           "repair needs the image opened writable (and for check)");
    struct check_ctx c = {
        .img = img,
        .report = report,
        .report_ctx = report_ctx,
        .fix = repair == QCOW2_REPAIR_ALL ? CHECK_FIX_LEAKS | CHECK_FIX_ERRORS
               : repair == QCOW2_REPAIR_LEAKS ? CHECK_FIX_LEAKS : 0,
        .cb = img->geo.cluster_bits,
        .cs = img->cluster_size,
        .order = img->hdr.refcount_order,
        .rb_bits = refcount_block_bits(img->geo.cluster_bits, img->hdr.refcount_order),
        .rc_max = refcount_max(img->hdr.refcount_order),
        .l2_entries = 1u << geometry_l2_bits(&img->geo),
        .l2_entry_bytes = geometry_l2_entry_bytes(&img->geo),
    };
    c.buf = malloc(c.cs);
    if (!c.buf)
        return image_error(img, err, -ENOMEM, "image", QCOW2_NO_OFFSET, "out of memory");

    int ret = check_pass(&c, result);
    if (!ret && c.fix && (result->corruptions_fixed || result->leaks_fixed)) {
        /* Report what is left, as qemu-img does after a repair. */
        struct qcow2_check_result first = *result;
        c.fix = 0;
        ret = check_pass(&c, result);
        result->corruptions_fixed = first.corruptions_fixed;
        result->leaks_fixed = first.leaks_fixed;
    }
    if (ret) {
        /* The run stopped part-way (qemu-img: "Check failed"); *result has what it saw. */
        if (!result->check_errors)
            result->check_errors = 1;
        image_error(img, err, ret, "image", QCOW2_NO_OFFSET, "check failed: %s",
                    c.last[0] ? c.last : strerror(-ret));
    }
    check_ctx_release(&c);
    return ret;
}

int qcow2_check_exit_status(const struct qcow2_check_result *r)
{
    if (r->check_errors)
        return 1;
    if (r->corruptions)
        return 2;
    if (r->leaks)
        return 3;
    return 0;
}
