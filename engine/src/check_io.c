/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The checker's floor (see checker.h): reads where bytes past the end of the file are
 * zeros, repair writes behind an overlap guard like QEMU's, sets of referenced tables,
 * and the findings it reports.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "checker.h"
#include "header.h"
#include "refcount.h"

#define CHECK_READ_WINDOW (64u << 10)

void check_say(struct check_ctx *c, const char *fmt, ...)
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

static uint32_t check_hash(uint64_t offset, uint64_t size, uint32_t mask)
{
    uint64_t h = ((offset >> 9) ^ (size * 0xC2B2AE3D27D4EB4Full)) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & mask;
}

void check_refs_free(struct check_refs *m)
{
    free(m->items);
    free(m->index);
    memset(m, 0, sizeof(*m));
}

int check_refs_add(struct check_refs *m, uint64_t offset, uint64_t size, uint64_t count,
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

int check_read(struct check_ctx *c, void *buf, uint64_t len, uint64_t off)
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

int check_reader_get(struct check_ctx *c, struct check_reader *r, void *dst, size_t n,
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

void check_overlap_reset(struct check_ctx *c)
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
        uint64_t block = reftable_entry_block(img->reftable[i]);
        if (block && !(block % c->cs))
            check_mark(c->meta, nb, c->cb, block, c->cs);
    }
    check_mark(c->meta, nb, c->cb, c->snaps_offset, c->snaps_size);
    for (uint32_t i = 0; i < c->snaps.count; i++) {
        const struct snapshot *s = &c->snaps.entries[i];
        if (!(s->l1_table_offset % c->cs) && s->l1_size <= CHECK_MAX_L1_ENTRIES)
            check_mark(c->meta, nb, c->cb, s->l1_table_offset, (uint64_t)s->l1_size * 8u);
    }
    if ((h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) && h->has_bitmaps_ext)
        check_mark(c->meta, nb, c->cb, h->bitmap_directory_offset, h->bitmap_directory_size);
    check_mark(c->active_l1, nb, c->cb, h->l1_table_offset, (uint64_t)h->l1_size * 8u);
    for (uint32_t i = 0; i < c->l2s.n; i++)
        if (c->l2s.items[i].active)
            check_mark(c->active_l2, nb, c->cb, c->l2s.items[i].offset, c->cs);
    c->overlap_ready = true;
    return 0;
}

int check_write(struct check_ctx *c, struct qcow2_check_result *res, const void *buf,
                uint64_t len, uint64_t off, enum check_write_kind kind, const char *what)
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
    enum image_meta own = kind == CHECK_WRITE_L1 ? IMAGE_META_ACTIVE_L1 : IMAGE_META_NONE;
    int ret = image_write_meta(c->img, buf, (size_t)len, off, own, what, &e);
    if (ret) {
        res->check_errors++;
        check_say(c, "ERROR: could not write the %s: %s", what, e.message);
    }
    return ret;
}
