/* SPDX-License-Identifier: BSD-2-Clause */
/* The writes since the last flush, for judging a power cut (unflushed.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "soak.h"
#include "unflushed.h"

#define SECTOR ORACLE_SECTOR
/* 32 MiB of kept sectors; past that a power cut is not judged (until the next flush). */
#define MAX_KEPT (1u << 16)

struct entry {
    uint64_t sector;
    uint32_t author;                /* of the flushed content */
    bool zeroed;                    /* a zero write or discard reached it since the flush */
    uint32_t versions;              /* first partial version + 1 (0: none) */
};

struct version {
    uint32_t next;                  /* next version of the same sector + 1 (0: none) */
};

struct unflushed {
    uint32_t flush_op;
    bool metadata, overflow;
    struct entry *entries;
    uint8_t *flushed;               /* SECTOR bytes per entry */
    size_t n, cap;
    uint32_t *slots;                /* open addressing: entry index + 1 (0: empty) */
    size_t n_slots;
    struct version *versions;
    uint8_t *version_data;
    size_t n_versions, versions_cap;
    uint64_t *sorted;               /* the entries' sectors, ascending */
    bool sorted_valid;
};

struct unflushed *unflushed_new(void)
{
    return calloc(1, sizeof(struct unflushed));
}

void unflushed_free(struct unflushed *u)
{
    if (!u)
        return;
    free(u->entries);
    free(u->flushed);
    free(u->slots);
    free(u->versions);
    free(u->version_data);
    free(u->sorted);
    free(u);
}

void unflushed_flushed(struct unflushed *u, uint32_t op)
{
    u->flush_op = op;
    u->metadata = u->overflow = false;
    u->n = u->n_versions = 0;
    if (u->slots)
        memset(u->slots, 0, u->n_slots * sizeof(*u->slots));
    u->sorted_valid = false;
}

uint32_t unflushed_flush_op(const struct unflushed *u)
{
    return u->flush_op;
}

void unflushed_metadata_changed(struct unflushed *u)
{
    u->metadata = true;
}

bool unflushed_modelled(const struct unflushed *u, const char **why)
{
    if (u->metadata)
        *why = "a snapshot operation or a resize since the last flush";
    else if (u->overflow)
        *why = "more unflushed sectors than the soak keeps";
    return !u->metadata && !u->overflow;
}

static size_t slot_of(const struct unflushed *u, uint64_t sector)
{
    return (size_t)((sector * 0x9E3779B97F4A7C15ull) >> 20) & (u->n_slots - 1);
}

static struct entry *find(const struct unflushed *u, uint64_t sector)
{
    if (!u->n_slots)
        return NULL;
    for (size_t i = slot_of(u, sector);; i = (i + 1) & (u->n_slots - 1)) {
        if (!u->slots[i])
            return NULL;
        if (u->entries[u->slots[i] - 1].sector == sector)
            return &u->entries[u->slots[i] - 1];
    }
}

static void insert_slot(struct unflushed *u, size_t index)
{
    size_t i = slot_of(u, u->entries[index].sector);
    while (u->slots[i])
        i = (i + 1) & (u->n_slots - 1);
    u->slots[i] = (uint32_t)index + 1;
}

/* Room for one more entry: the arrays and a hash table at most half full. */
static int grow(struct unflushed *u)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 1024;
        struct entry *e = realloc(u->entries, cap * sizeof(*e));
        if (e)
            u->entries = e;
        uint8_t *f = e ? realloc(u->flushed, cap * SECTOR) : NULL;
        if (!f)
            return -ENOMEM;
        u->flushed = f;
        u->cap = cap;
    }
    if (2 * (u->n + 1) > u->n_slots) {
        size_t n_slots = u->n_slots ? u->n_slots * 2 : 4096;
        uint32_t *slots = calloc(n_slots, sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        free(u->slots);
        u->slots = slots;
        u->n_slots = n_slots;
        for (size_t i = 0; i < u->n; i++)
            insert_slot(u, i);
    }
    return 0;
}

int unflushed_before(struct unflushed *u, struct oracle *o, uint64_t off, uint64_t len,
                     bool zeroing)
{
    uint64_t first = off / SECTOR, end = (off + len + SECTOR - 1) / SECTOR;
    for (uint64_t s = first; s < end && !u->overflow; s++) {
        /* Zeros are a version of a sector the op covers whole; a partial one's is kept. */
        bool whole = s * SECTOR >= off && (s + 1) * SECTOR <= off + len;
        struct entry *e = find(u, s);
        if (e) {
            e->zeroed |= zeroing && whole;
            continue;
        }
        if (u->n == MAX_KEPT) {
            u->overflow = true;
            break;
        }
        int ret = grow(u);
        if (ret)
            return ret;
        e = &u->entries[u->n];
        *e = (struct entry){ .sector = s, .author = oracle_sector_author(o, s),
                             .zeroed = zeroing && whole };
        if ((ret = oracle_read(o, u->flushed + u->n * SECTOR, SECTOR, s * SECTOR)))
            return ret;
        insert_slot(u, u->n++);
        u->sorted_valid = false;
    }
    return 0;
}

static int keep_version(struct unflushed *u, struct oracle *o, uint64_t sector)
{
    struct entry *e = find(u, sector);
    if (!e)
        return 0;
    if (u->n_versions == u->versions_cap) {
        size_t cap = u->versions_cap ? u->versions_cap * 2 : 64;
        struct version *v = realloc(u->versions, cap * sizeof(*v));
        if (v)
            u->versions = v;
        uint8_t *d = v ? realloc(u->version_data, cap * SECTOR) : NULL;
        if (!d)
            return -ENOMEM;
        u->version_data = d;
        u->versions_cap = cap;
    }
    int ret = oracle_read(o, u->version_data + u->n_versions * SECTOR, SECTOR, sector * SECTOR);
    if (ret)
        return ret;
    u->versions[u->n_versions] = (struct version){ .next = e->versions };
    e->versions = (uint32_t)++u->n_versions;
    return 0;
}

int unflushed_after(struct unflushed *u, struct oracle *o, uint64_t off, uint64_t len)
{
    if (u->overflow || !len)
        return 0;
    int ret = 0;
    uint64_t first = off / SECTOR, last = (off + len - 1) / SECTOR;
    if (off % SECTOR)
        ret = keep_version(u, o, first);
    if (!ret && (off + len) % SECTOR && (last != first || !(off % SECTOR)))
        ret = keep_version(u, o, last);
    return ret;
}

static int by_sector(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t unflushed_sectors(struct unflushed *u, const uint64_t **sectors)
{
    if (!u->sorted_valid) {
        uint64_t *s = realloc(u->sorted, (u->n ? u->n : 1) * sizeof(*s));
        if (!s) {
            *sectors = NULL;
            return 0;
        }
        u->sorted = s;
        for (size_t i = 0; i < u->n; i++)
            s[i] = u->entries[i].sector;
        qsort(s, u->n, sizeof(*s), by_sector);
        u->sorted_valid = true;
    }
    *sectors = u->sorted;
    return u->n;
}

bool unflushed_acceptable(const struct unflushed *u, uint64_t sector, const uint8_t *got,
                          const uint8_t *latest, uint32_t *author)
{
    static const uint8_t zeros[SECTOR];
    const struct entry *e = find(u, sector);
    if (!e)
        return !memcmp(got, latest, SECTOR);
    size_t index = (size_t)(e - u->entries);
    *author = UNFLUSHED_BY_CRASH;
    if (!memcmp(got, u->flushed + index * SECTOR, SECTOR)) {
        *author = e->author;
        return true;
    }
    uint32_t op;
    uint64_t from;
    if (payload_identify(got, &op, &from) && from == sector && op > u->flush_op) {
        *author = op;
        return true;
    }
    if ((e->zeroed && !memcmp(got, zeros, SECTOR)) || !memcmp(got, latest, SECTOR))
        return true;
    for (uint32_t v = e->versions; v; v = u->versions[v - 1].next)
        if (!memcmp(got, u->version_data + (size_t)(v - 1) * SECTOR, SECTOR))
            return true;
    return false;
}
