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
 * Gives a new entry the extra data QEMU 7.2 writes: 24 bytes holding the large VM-state
 * size, the disk size and the instruction count. Returns -ENOMEM or 0.
 */
int snapshot_set_extra(struct snapshot *s, uint64_t vm_state_size, uint64_t disk_size,
                       uint64_t icount);

/* Bytes the table takes once encoded (entries 8-aligned). */
uint64_t snapshot_table_size(const struct snapshot_table *t);

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
