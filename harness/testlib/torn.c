/* SPDX-License-Identifier: BSD-2-Clause */
/* The power-cut model of torn.h: per file sector, the state after a prefix of its writes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "torn.h"

#define SECTOR TORN_SECTOR

/* One file sector touched by one write. */
struct touch {
    uint64_t sector;
    size_t write;
};

static int by_sector_then_write(const void *a, const void *b)
{
    const struct touch *x = a, *y = b;
    if (x->sector != y->sector)
        return x->sector < y->sector ? -1 : 1;
    return x->write < y->write ? -1 : x->write > y->write;
}

static uint64_t first_sector(const struct torn_write *w)
{
    return w->off / SECTOR;
}

/* One past the last file sector of the write's first `bytes` bytes. */
static uint64_t end_sector(const struct torn_write *w, size_t bytes)
{
    return bytes ? (w->off + bytes + SECTOR - 1) / SECTOR : first_sector(w);
}

static size_t count_touches(const struct torn_write *w, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (size_t)(end_sector(&w[i], w[i].len) - first_sector(&w[i]));
    return total;
}

/*
 * Sector `s` as it is right after writes t[0..upto] (all of which touch it): its flushed
 * bytes with theirs laid over in order, written back up to the end of the file then.
 */
static int land_sector(const struct torn_write *w, const struct touch *t, size_t upto,
                       const struct torn_file *file)
{
    uint8_t bytes[SECTOR];
    uint64_t s = t[0].sector, start = s * SECTOR;
    int ret = file->read(file->ctx, bytes, SECTOR, start);
    uint64_t end = file->size > start ? file->size : start;
    for (size_t k = 0; k <= upto && !ret; k++) {
        const struct torn_write *x = &w[t[k].write];
        uint64_t lo = x->off > start ? x->off : start;
        uint64_t hi = x->off + x->len < start + SECTOR ? x->off + x->len : start + SECTOR;
        memcpy(bytes + (lo - start), x->data + (lo - x->off), (size_t)(hi - lo));
        if (hi > end)
            end = hi;
    }
    if (end > start + SECTOR)
        end = start + SECTOR;
    return ret ? ret : file->write(file->ctx, bytes, (size_t)(end - start), start);
}

int torn_land(const struct torn_write *w, size_t n, const struct torn_file *file)
{
    size_t total = count_touches(w, n);
    if (!total)
        return 0;
    struct touch *t = malloc(total * sizeof(*t));
    if (!t)
        return -ENOMEM;
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t s = first_sector(&w[i]); s < end_sector(&w[i], w[i].len); s++)
            t[used++] = (struct touch){ s, i };
    qsort(t, total, sizeof(*t), by_sector_then_write);
    int ret = 0;
    for (size_t i = 0; i < total && !ret;) {
        size_t group = 1;
        while (i + group < total && t[i + group].sector == t[i].sector)
            group++;
        /* The last write whose kept part reaches this sector decides what it holds. */
        size_t winner = group;
        for (size_t k = 0; k < group; k++)
            if (t[i + k].sector < end_sector(&w[t[i + k].write], w[t[i + k].write].keep))
                winner = k;
        if (winner < group)
            ret = land_sector(w, t + i, winner, file);
        i += group;
    }
    free(t);
    return ret;
}
