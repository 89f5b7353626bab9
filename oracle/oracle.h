/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The oracle: what the guest must see. A flat raw image (a sparse file) for the active
 * state, one copy per internal snapshot, and for every 512-byte sector the number of the
 * operation that last wrote it (its provenance), so that a divergence report can say who
 * wrote the sector that came back wrong.
 *
 * The oracle is deliberately simple (plain pread/pwrite on a raw file): it is the truth
 * the engine is measured against, so it must be obviously right.
 */
#ifndef QVET_ORACLE_H
#define QVET_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ORACLE_SECTOR 512u
/* Provenance of a sector nobody has written during the run (initial contents). */
#define ORACLE_NO_OP 0u

struct oracle;

/*
 * Creates the oracle in directory `dir` (which must exist) for a disk of `size` bytes
 * (a multiple of 512). When `initial_raw` is not NULL, the disk starts as that raw file's
 * contents (zeros past its end): the guest view of a backing file. On failure returns a
 * negative errno and writes a one-line reason into errbuf.
 */
int oracle_create(const char *dir, uint64_t size, const char *initial_raw, struct oracle **out,
                  char *errbuf, size_t errlen);

/* Closes; the files stay in `dir` (a failing run keeps them for the report). */
void oracle_close(struct oracle *o);

uint64_t oracle_size(const struct oracle *o);

/* The raw file holding the active state (for `qemu-img compare`). */
const char *oracle_path(const struct oracle *o);

int oracle_read(struct oracle *o, void *buf, size_t len, uint64_t off);

/* Records that operation `op` made [off, off+len) hold buf. */
int oracle_write(struct oracle *o, const void *buf, size_t len, uint64_t off, uint32_t op);

/* Records that operation `op` made [off, off+len) read as zeros. */
int oracle_zero(struct oracle *o, uint64_t len, uint64_t off, uint32_t op);

/* Grows (new bytes read as zeros, authored by op) or shrinks the disk. */
int oracle_resize(struct oracle *o, uint64_t new_size, uint32_t op);

/* The operation that last wrote sector `sector`, or ORACLE_NO_OP. */
uint32_t oracle_sector_author(const struct oracle *o, uint64_t sector);

/* Snapshots, named by the id the target gave them. */
int oracle_snapshot_create(struct oracle *o, const char *id);
/* The active state becomes the snapshot's (contents, size and provenance). */
int oracle_snapshot_apply(struct oracle *o, const char *id);
int oracle_snapshot_delete(struct oracle *o, const char *id);
int oracle_snapshot_read(struct oracle *o, const char *id, void *buf, size_t len,
                         uint64_t off);
/* Size of the snapshot's disk, or 0 when there is no such snapshot. */
uint64_t oracle_snapshot_size(const struct oracle *o, const char *id);
/* The raw file holding a snapshot's contents, or NULL. */
const char *oracle_snapshot_path(const struct oracle *o, const char *id);
uint32_t oracle_snapshot_count(const struct oracle *o);

/*
 * blkverify's comparison: the first 512-byte sector (absolute sector number, counted
 * from guest offset 0) where `got` (len bytes read at `off`) differs from `want`;
 * returns false when they are equal.
 */
bool oracle_first_mismatch(const uint8_t *got, const uint8_t *want, size_t len, uint64_t off,
                           uint64_t *sector);

#endif
