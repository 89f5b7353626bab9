/* SPDX-License-Identifier: BSD-2-Clause */
/* The internal snapshot table. */
#ifndef QVET_SNAPSHOT_H
#define QVET_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2.h"

#define SNAPSHOT_FIXED_BYTES 40u
#define SNAPSHOT_MAX_EXTRA_DATA 1024u
#define SNAPSHOT_MAX_TABLE_BYTES (64u << 20)
#define SNAPSHOT_V3_MIN_EXTRA_DATA 16u

struct snapshot {
    uint64_t entry_offset;          /* host offset of this entry */
    uint64_t l1_table_offset;
    uint32_t l1_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint32_t vm_state_size;         /* the 32-bit field */
    uint64_t vm_state_size_large;   /* from extra data, when present */
    uint64_t disk_size;
    uint64_t icount;
    bool has_vm_state_size_large;
    bool has_disk_size;
    bool has_icount;
    uint32_t extra_data_size;
    uint8_t *extra_data;            /* kept verbatim, so a rewrite preserves unknown bytes */
    char *id;
    char *name;
    uint16_t id_size;               /* as stored (a tolerant parse keeps NUL bytes in them) */
    uint16_t name_size;
};

struct snapshot_table {
    struct snapshot *entries;
    uint32_t count;
    uint64_t bytes;                 /* length of the table on disk */
};

/*
 * Decodes `count` entries from buf[0..len), the bytes at host offset `table_offset`.
 * Enforces QEMU's limits (extra data <= 1024 per entry, table <= 64 MiB). An entry that
 * runs past `len` fails with -ENOBUFS, so a caller that read only part of the file can
 * read more and try again; t->bytes then says how far the parse got.
 */
int snapshot_table_parse(const uint8_t *buf, uint64_t len, uint64_t table_offset,
                         uint32_t count, const char *file, struct snapshot_table *t,
                         struct qcow2_error *err);

void snapshot_table_release(struct snapshot_table *t);

/*
 * How strictly one entry is decoded. STRICT is what open needs (every QEMU limit is
 * fatal, no NUL inside an id or a name). TOLERANT is how QEMU's check reads a table it
 * may repair: extra data past the 1024-byte limit is cut off (the rest is skipped) and
 * ids and names are taken as they are.
 */
enum snapshot_parse_mode { SNAPSHOT_STRICT, SNAPSHOT_TOLERANT };

/* Where one entry's variable parts lie, decoded from its fixed part. */
struct snapshot_entry_layout {
    uint32_t stored_extra;          /* the extra data size the entry states */
    uint32_t kept_extra;            /* what the parse keeps: at most 1024 when TOLERANT */
    uint16_t id_size;
    uint16_t name_size;
};

/* Offset, inside an entry, of its id (its name follows the id). */
static inline uint64_t snapshot_entry_id_pos(const struct snapshot_entry_layout *l)
{
    return SNAPSHOT_FIXED_BYTES + (uint64_t)l->stored_extra;
}

/* The entry's length on disk without the padding to 8 (what QEMU sums up). */
static inline uint64_t snapshot_entry_kept_bytes(const struct snapshot_entry_layout *l)
{
    return SNAPSHOT_FIXED_BYTES + (uint64_t)l->kept_extra + l->id_size + l->name_size;
}

/*
 * Decodes the SNAPSHOT_FIXED_BYTES fixed bytes of an entry into *s and *l. STRICT
 * refuses extra data over 1024 bytes (-EINVAL); TOLERANT keeps 1024 of them.
 */
int snapshot_entry_decode_fixed(const uint8_t *fixed, enum snapshot_parse_mode mode,
                                struct snapshot *s, struct snapshot_entry_layout *l);

/*
 * Takes the kept extra data (l->kept_extra bytes), id and name of an entry whose fixed
 * part is decoded. STRICT refuses a NUL inside the id or name (-EINVAL). -ENOMEM or 0.
 */
int snapshot_entry_take(struct snapshot *s, const struct snapshot_entry_layout *l,
                        enum snapshot_parse_mode mode, const uint8_t *extra, const uint8_t *id,
                        const uint8_t *name);

void snapshot_entry_release(struct snapshot *s);

/*
 * Makes an entry carry at least the 24 bytes of extra data QEMU 7.2 writes, as QEMU
 * does when it rewrites a table: the large VM-state size, the disk size (`disk_size`
 * when the entry has none) and the instruction count (-1 when none); bytes past them
 * are kept. The 32-bit VM-state field becomes 0 when the size does not fit it.
 */
int snapshot_complete_extra(struct snapshot *s, uint64_t disk_size);

/*
 * Gives a new entry the extra data QEMU 7.2 writes: 24 bytes holding the large VM-state
 * size, the disk size and the instruction count. Returns -ENOMEM or 0.
 */
int snapshot_set_extra(struct snapshot *s, uint64_t vm_state_size, uint64_t disk_size,
                       uint64_t icount);

/* Bytes the table takes once encoded (entries 8-aligned). */
uint64_t snapshot_table_size(const struct snapshot_table *t);

/* The same without the last entry's padding: the length QEMU writes. */
uint64_t snapshot_table_unpadded_size(const struct snapshot_table *t);

/* Encodes the table into buf (snapshot_table_size bytes); the inverse of parse. */
void snapshot_table_encode(const struct snapshot_table *t, uint8_t *buf);

/*
 * Index of the first snapshot whose id is `id` (unless NULL) and whose name is `name`
 * (unless NULL): both must match when both are given, as in QEMU's lookup by id and
 * name. -ENOENT when none does, or when both are NULL.
 */
int snapshot_find_by(const struct snapshot_table *t, const char *id, const char *name);

/* Index of the snapshot whose id is `key`, else of the first whose name is; or -ENOENT. */
int snapshot_find(const struct snapshot_table *t, const char *key);

/* The virtual size the snapshot recorded, or `fallback` when it recorded none. */
uint64_t snapshot_disk_size(const struct snapshot *s, uint64_t fallback);

uint64_t snapshot_vm_state_size(const struct snapshot *s);

#endif
