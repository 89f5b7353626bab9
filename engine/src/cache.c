/* SPDX-License-Identifier: BSD-2-Clause */
#include "cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NO_SLOT UINT32_MAX

struct cache_slot {
    uint64_t offset;
    uint64_t last_use;
    uint32_t next;                  /* next slot in the same hash bucket */
    bool valid;
};

struct cache {
    uint32_t slot_count;
    uint32_t table_bytes;
    uint32_t bucket_mask;
    uint64_t clock;
    uint32_t last_hit;              /* most reads hit the same table as the one before */
    struct cache_slot *slots;
    uint32_t *buckets;
    uint8_t *memory;                /* slot_count * table_bytes, taken on first use */
};

static uint32_t bucket_of(const struct cache *c, uint64_t offset)
{
    /* Tables are cluster-aligned: mix the high bits down before masking. */
    uint64_t h = offset * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & c->bucket_mask;
}

int cache_new(uint32_t slots, uint32_t table_bytes, struct cache **out)
{
    if (slots == 0)
        slots = 1;
    uint32_t buckets = 1;
    while (buckets < slots * 2u)
        buckets <<= 1;
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->slots = calloc(slots, sizeof(*c->slots));
    c->buckets = malloc(buckets * sizeof(*c->buckets));
    if (!c->slots || !c->buckets) {
        cache_free(c);
        return -ENOMEM;
    }
    memset(c->buckets, 0xff, buckets * sizeof(*c->buckets));
    c->slot_count = slots;
    c->table_bytes = table_bytes;
    c->bucket_mask = buckets - 1;
    c->last_hit = NO_SLOT;
    *out = c;
    return 0;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    free(c->slots);
    free(c->buckets);
    free(c->memory);
    free(c);
}

static uint8_t *slot_data(struct cache *c, uint32_t i)
{
    return c->memory + (size_t)i * c->table_bytes;
}

static void unlink_slot(struct cache *c, uint32_t i)
{
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

/* The slot holding `offset`, refreshed as most recently used, or NO_SLOT. */
static uint32_t lookup(struct cache *c, uint64_t offset)
{
    uint32_t i = c->last_hit;
    if (i == NO_SLOT || !c->slots[i].valid || c->slots[i].offset != offset) {
        for (i = c->buckets[bucket_of(c, offset)]; i != NO_SLOT; i = c->slots[i].next)
            if (c->slots[i].offset == offset)
                break;
        if (i == NO_SLOT)
            return NO_SLOT;
    }
    c->slots[i].last_use = ++c->clock;
    c->last_hit = i;
    return i;
}

/* Takes a slot for `offset` (evicting the least recently used), not yet filled. */
static int claim(struct cache *c, uint32_t *slot)
{
    if (!c->memory) {
        c->memory = malloc((size_t)c->slot_count * c->table_bytes);
        if (!c->memory)
            return -ENOMEM;
    }
    uint32_t i = victim(c);
    if (c->slots[i].valid)
        unlink_slot(c, i);
    *slot = i;
    return 0;
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

int cache_get_mut(struct cache *c, struct qcow2_backend *backend, uint64_t offset,
                  uint8_t **table)
{
    uint32_t i = lookup(c, offset);
    if (i == NO_SLOT) {
        int ret = claim(c, &i);
        if (ret)
            return ret;
        ret = backend->ops->read(backend, slot_data(c, i), c->table_bytes, offset);
        if (ret)
            return ret;
        publish(c, i, offset);
    }
    *table = slot_data(c, i);
    return 0;
}

int cache_get(struct cache *c, struct qcow2_backend *backend, uint64_t offset,
              const uint8_t **table)
{
    uint8_t *t;
    int ret = cache_get_mut(c, backend, offset, &t);
    *table = t;
    return ret;
}

int cache_install(struct cache *c, uint64_t offset, const uint8_t *data)
{
    uint32_t i = lookup(c, offset);
    if (i == NO_SLOT) {
        int ret = claim(c, &i);
        if (ret)
            return ret;
        publish(c, i, offset);
    }
    memcpy(slot_data(c, i), data, c->table_bytes);
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
    for (uint32_t i = 0; i < c->slot_count; i++)
        c->slots[i].valid = false;
    memset(c->buckets, 0xff, (c->bucket_mask + 1u) * sizeof(*c->buckets));
    c->last_hit = NO_SLOT;
}

uint32_t cache_slot_count(const struct cache *c)
{
    return c->slot_count;
}
