/* SPDX-License-Identifier: BSD-2-Clause */
#include "cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "image.h"

#define NO_SLOT UINT32_MAX
#define SECTOR 512u

/*
 * Table memory is taken a chunk of this many bytes (or one table, if larger) at a time,
 * when a slot in it is first claimed: an open that reads few tables takes one small
 * block, not the whole cache (under a sanitizer a large block is a fresh mapping, faulted
 * in page by page, on every open).
 */
#define CHUNK_BYTES (64u << 10)

struct cache_slot {
    uint64_t offset;
    uint64_t last_use;
    uint32_t next;                  /* next slot in the same hash bucket */
    uint32_t dirty_start;           /* bytes [dirty_start, dirty_end) await writing; */
    uint32_t dirty_end;             /* dirty_end == 0: clean */
    bool valid;
    bool fresh;                     /* installed dirty: a new table, never written yet */
};

struct cache {
    uint32_t slot_count;
    uint32_t table_bytes;
    uint32_t bucket_mask;
    uint32_t dirty_count;           /* slots with dirty bytes */
    uint64_t clock;
    uint32_t last_hit;              /* most reads hit the same table as the one before */
    const char *structure;
    char update_structure[48];      /* a write of changed entries of a table on disk */
    struct cache *depends_on;       /* written back (and flushed) before this cache writes */
    uint32_t chunk_slots;           /* tables per chunk of memory */
    uint32_t chunk_count;
    /*
     * One block, taken on the first claim (most read-only opens read no table: then the
     * cache costs one small block):
     */
    struct cache_slot *slots;       /* NULL until then: nothing cached */
    uint8_t **chunks;               /* chunk_slots tables each (the last may hold fewer),
                                       NULL until one of their slots is first claimed */
    uint32_t *buckets;
};

static uint32_t bucket_of(const struct cache *c, uint64_t offset)
{
    /* Tables are cluster-aligned: mix the high bits down before masking. */
    uint64_t h = offset * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & c->bucket_mask;
}

int cache_new(uint32_t slots, uint32_t table_bytes, const char *structure, struct cache **out)
{
    if (slots == 0)
        slots = 1;
    uint32_t buckets = 1;
    while (buckets < slots * 2u)
        buckets <<= 1;
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->chunk_slots = table_bytes < CHUNK_BYTES ? CHUNK_BYTES / table_bytes : 1u;
    c->chunk_count = (slots + c->chunk_slots - 1) / c->chunk_slots;
    c->slot_count = slots;
    c->table_bytes = table_bytes;
    c->structure = structure;
    snprintf(c->update_structure, sizeof(c->update_structure), "%s entry", structure);
    c->bucket_mask = buckets - 1;
    c->last_hit = NO_SLOT;
    *out = c;
    return 0;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; c->slots && i < c->chunk_count; i++)
        free(c->chunks[i]);
    free(c->slots);
    free(c);
}

/* The slots, chunk pointers and buckets, in one block. */
static int take_bookkeeping(struct cache *c)
{
    uint32_t buckets = c->bucket_mask + 1u;
    void *block = calloc(1, (size_t)c->slot_count * sizeof(*c->slots) +
                                (size_t)c->chunk_count * sizeof(*c->chunks) +
                                (size_t)buckets * sizeof(*c->buckets));
    if (!block)
        return -ENOMEM;
    c->slots = block;
    c->chunks = (uint8_t **)(c->slots + c->slot_count);
    c->buckets = (uint32_t *)(c->chunks + c->chunk_count);
    memset(c->buckets, 0xff, buckets * sizeof(*c->buckets));
    return 0;
}

void cache_depend_on(struct cache *c, struct cache *first)
{
    c->depends_on = first;
}

static uint8_t *slot_data(struct cache *c, uint32_t i)
{
    return c->chunks[i / c->chunk_slots] + (size_t)(i % c->chunk_slots) * c->table_bytes;
}

static void mark_clean(struct cache *c, uint32_t i)
{
    if (c->slots[i].dirty_end) {
        c->slots[i].dirty_start = c->slots[i].dirty_end = 0;
        c->dirty_count--;
    }
    c->slots[i].fresh = false;
}

/*
 * Writes slot i's dirty bytes, whole sectors of them, named (for errors and fault points)
 * as a new table or as an update of entries.
 */
static int write_slot(struct cache *c, struct qcow2_image *img, uint32_t i,
                      struct qcow2_error *err)
{
    const struct cache_slot *s = &c->slots[i];
    uint32_t start = s->dirty_start & ~(SECTOR - 1);
    uint32_t end = (uint32_t)QVET_MIN(round_up_u64(s->dirty_end, SECTOR), c->table_bytes);
    int ret = image_write(img, slot_data(c, i) + start, end - start, s->offset + start,
                          s->fresh ? c->structure : c->update_structure, err);
    if (!ret)
        mark_clean(c, i);
    return ret;
}

int cache_writeback(struct cache *c, struct qcow2_image *img, struct qcow2_error *err)
{
    if (!c->dirty_count)
        return 0;
    if (c->depends_on) {
        int ret = cache_writeback(c->depends_on, img, err);
        if (!ret && img->writes_unflushed)
            ret = image_flush(img, err);
        if (ret)
            return ret;
    }
    for (uint32_t i = 0; i < c->slot_count && c->dirty_count; i++) {
        if (!c->slots[i].valid || !c->slots[i].dirty_end)
            continue;
        int ret = write_slot(c, img, i, err);
        if (ret)
            return ret;
    }
    return 0;
}

bool cache_is_dirty(const struct cache *c)
{
    return c->dirty_count != 0;
}

static void unlink_slot(struct cache *c, uint32_t i)
{
    mark_clean(c, i);
    uint32_t *link = &c->buckets[bucket_of(c, c->slots[i].offset)];
    while (*link != i)
        link = &c->slots[*link].next;
    *link = c->slots[i].next;
    c->slots[i].valid = false;
}

static uint32_t victim(struct cache *c)
{
    uint32_t best = 0;
    for (uint32_t i = 0; i < c->slot_count; i++) {
        if (!c->slots[i].valid)
            return i;
        if (c->slots[i].last_use < c->slots[best].last_use)
            best = i;
    }
    return best;
}

/* The slot holding `offset`, or NO_SLOT. */
static uint32_t find_slot(const struct cache *c, uint64_t offset)
{
    if (!c->slots)
        return NO_SLOT;
    uint32_t i = c->last_hit;
    if (i != NO_SLOT && c->slots[i].valid && c->slots[i].offset == offset)
        return i;
    for (i = c->buckets[bucket_of(c, offset)]; i != NO_SLOT; i = c->slots[i].next)
        if (c->slots[i].offset == offset)
            return i;
    return NO_SLOT;
}

/* The slot holding `offset`, refreshed as most recently used, or NO_SLOT. */
static uint32_t lookup(struct cache *c, uint64_t offset)
{
    uint32_t i = find_slot(c, offset);
    if (i == NO_SLOT)
        return NO_SLOT;
    c->slots[i].last_use = ++c->clock;
    c->last_hit = i;
    return i;
}

/*
 * Takes a slot for `offset` (evicting the least recently used), not yet filled. A dirty
 * victim has the whole cache written back first: one ordering point for all its tables.
 */
static int claim(struct cache *c, struct qcow2_image *img, uint64_t offset, uint32_t *slot,
                 struct qcow2_error *err)
{
    if (!c->slots && take_bookkeeping(c))
        return image_error(img, err, -ENOMEM, c->structure, offset, "out of memory");
    uint32_t i = victim(c);
    uint32_t chunk = i / c->chunk_slots;
    if (!c->chunks[chunk]) {
        uint32_t tables = QVET_MIN(c->chunk_slots, c->slot_count - chunk * c->chunk_slots);
        c->chunks[chunk] = malloc((size_t)tables * c->table_bytes);
        if (!c->chunks[chunk])
            return image_error(img, err, -ENOMEM, c->structure, offset, "out of memory");
    }
    if (c->slots[i].valid && c->slots[i].dirty_end) {
        int ret = cache_writeback(c, img, err);
        if (ret)
            return ret;
    }
    if (c->slots[i].valid)
        unlink_slot(c, i);
    *slot = i;
    return 0;
}

void cache_mark_dirty(struct cache *c, uint64_t offset, uint32_t at, uint32_t len)
{
    uint32_t i = find_slot(c, offset);
    if (i == NO_SLOT)
        return;
    struct cache_slot *s = &c->slots[i];
    if (!s->dirty_end) {
        c->dirty_count++;
        s->dirty_start = at;
        s->dirty_end = at + len;
        return;
    }
    s->dirty_start = QVET_MIN(s->dirty_start, at);
    s->dirty_end = QVET_MAX(s->dirty_end, at + len);
}

static void publish(struct cache *c, uint32_t i, uint64_t offset)
{
    uint32_t b = bucket_of(c, offset);
    c->slots[i] = (struct cache_slot){
        .offset = offset, .last_use = ++c->clock, .next = c->buckets[b], .valid = true,
    };
    c->buckets[b] = i;
    c->last_hit = i;
}

int cache_get_mut(struct cache *c, struct qcow2_image *img, uint64_t offset, uint8_t **table,
                  struct qcow2_error *err)
{
    uint32_t i = lookup(c, offset);
    if (i == NO_SLOT) {
        int ret = claim(c, img, offset, &i, err);
        if (ret)
            return ret;
        ret = image_read(img, slot_data(c, i), c->table_bytes, offset, c->structure, err);
        if (ret)
            return ret;
        publish(c, i, offset);
    }
    *table = slot_data(c, i);
    return 0;
}

int cache_get(struct cache *c, struct qcow2_image *img, uint64_t offset, const uint8_t **table,
              struct qcow2_error *err)
{
    uint8_t *t = NULL;
    int ret = cache_get_mut(c, img, offset, &t, err);
    *table = t;
    return ret;
}

int cache_install(struct cache *c, struct qcow2_image *img, uint64_t offset,
                  const uint8_t *data, bool dirty, struct qcow2_error *err)
{
    uint32_t i = lookup(c, offset);
    if (i == NO_SLOT) {
        int ret = claim(c, img, offset, &i, err);
        if (ret)
            return ret;
        publish(c, i, offset);
    }
    memcpy(slot_data(c, i), data, c->table_bytes);
    if (dirty) {
        cache_mark_dirty(c, offset, 0, c->table_bytes);
        c->slots[i].fresh = true;
    } else {
        mark_clean(c, i);
    }
    return 0;
}

void cache_forget(struct cache *c, uint64_t offset)
{
    uint32_t i = lookup(c, offset);
    if (i != NO_SLOT) {
        unlink_slot(c, i);
        c->last_hit = NO_SLOT;
    }
}

void cache_drop(struct cache *c)
{
    if (!c->slots)
        return;
    for (uint32_t i = 0; i < c->slot_count; i++) {
        mark_clean(c, i);
        c->slots[i].valid = false;
    }
    memset(c->buckets, 0xff, (c->bucket_mask + 1u) * sizeof(*c->buckets));
    c->last_hit = NO_SLOT;
}

uint32_t cache_slot_count(const struct cache *c)
{
    return c->slot_count;
}
