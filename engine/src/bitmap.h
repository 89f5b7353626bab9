/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Persistent dirty bitmaps. qvet keeps them as they are: it validates the directory and
 * the tables of the bitmaps QEMU would load the way QEMU does on open (so it refuses
 * what QEMU refuses), keeps the directory for `info`, and never writes it.
 */
#ifndef QVET_BITMAP_H
#define QVET_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2.h"

#define BITMAP_MAX_COUNT 65535u
#define BITMAP_MAX_DIRECTORY_BYTES (65535u * 1024u)

struct bitmap {
    char *name;                     /* up to its first NUL, as QEMU shows it */
    uint64_t table_offset;
    uint32_t table_size;            /* entries */
    uint32_t flags;                 /* BME flags: bit 0 in use, bit 1 auto */
    uint8_t granularity_bits;
};

struct bitmap_directory {
    struct bitmap *entries;
    uint32_t count;
};

/* Bitmap table entries (docs/format.md §8). */
#define BITMAP_TABLE_OFFSET_MASK 0x00FFFFFFFFFFFE00ull
#define BITMAP_TABLE_RESERVED_MASK 0xFF000000000001FEull
#define BITMAP_TABLE_ALL_ONES 0x1ull

/*
 * QEMU's rules for one bitmap table entry: no reserved bits, an aligned cluster, and the
 * all-ones flag only on an entry without a cluster. Returns the rule it breaks, or NULL.
 */
static inline const char *bitmap_table_entry_problem(uint64_t entry, uint64_t cluster_size)
{
    uint64_t data = entry & BITMAP_TABLE_OFFSET_MASK;
    if (entry & BITMAP_TABLE_RESERVED_MASK)
        return "reserved bits are set";
    if (data % cluster_size)
        return "the data cluster offset is not cluster-aligned";
    if (data && (entry & BITMAP_TABLE_ALL_ONES))
        return "the all-ones flag is set on an entry that has a data cluster";
    return NULL;
}

/* Directory entries (docs/format.md §8). */
#define BITMAP_ENTRY_FIXED_BYTES 24u
#define BITMAP_MAX_TABLE_ENTRIES 0x8000000u

/* One directory entry's fields, decoded without judging them. */
struct bitmap_entry_fields {
    uint64_t table_offset;
    uint32_t table_size;            /* entries */
    uint32_t flags;
    uint8_t type;
    uint8_t granularity_bits;
    uint16_t name_size;
    uint32_t extra_size;
    uint64_t length;                /* of the whole entry, padded to 8 */
};

/*
 * Decodes the entry at dir[pos..] of a directory of `size` bytes; false when not even
 * its fixed part fits (whether the whole entry does is f->length's to tell).
 */
bool bitmap_entry_decode(const uint8_t *dir, uint64_t size, uint64_t pos,
                         struct bitmap_entry_fields *f);

struct qcow2_image;

/*
 * Reads and validates the directory of an image whose autoclear bit 0 is set, into
 * img->bitmaps. A bitmap that is not in use also has its table checked, entry by entry.
 */
int bitmap_directory_load(struct qcow2_image *img, struct qcow2_error *err);

void bitmap_directory_release(struct bitmap_directory *d);

#endif
