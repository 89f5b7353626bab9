/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The oracle: what the guest must see. It is the harness's one model of guest-visible
 * semantics: the soak and every fuzz target predict guest bytes through it and nothing
 * else.
 *
 * It keeps the active disk, one copy per internal snapshot, and for every 512-byte sector
 * the number of the operation that last wrote it (its provenance), so that a divergence
 * report can say who wrote the sector that came back wrong. The contents live either in
 * raw sparse files (oracle_create: what `qemu-img compare` can read) or in memory
 * (oracle_create_mem: for the fuzz targets); the API is the same.
 *
 * It also owns the rules: what each operation does to the guest's bytes, given a few
 * facts about the image (struct oracle_facts). They are QEMU 7.2's rules, which the
 * engine follows; docs/oracle.md explains each, and tests/test_oracle.c holds one test
 * per rule.
 *
 * An oracle may know only a prefix of the disk (oracle_known): an existing image of
 * which the caller could read only a window, or bytes that an operation exposed without
 * the oracle being able to say what they hold. Reads past the known prefix fail with
 * -ENODATA instead of guessing: the oracle never predicts what it does not know.
 */
#ifndef QVET_ORACLE_H
#define QVET_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ORACLE_SECTOR 512u
/* Provenance of a sector nobody has written during the run (initial contents). */
#define ORACLE_NO_OP 0u

/* What the rules need to know about the image; the target reports them. */
struct oracle_facts {
    uint32_t version;               /* qcow2 version: 2 (compat=0.10) or 3 */
    uint32_t cluster_size;          /* a power of two, 512 B .. 2 MiB */
    bool has_backing;
    uint64_t backing_size;          /* the backing file's virtual size (0 without one) */
};

struct oracle;

/*
 * Creates a file oracle in directory `dir` (which must exist) for a new image of `size`
 * bytes (a multiple of 512). When `initial_raw` is not NULL, the disk starts as that raw
 * file's contents (zeros past its end): the guest view of a backing file. On failure
 * returns a negative errno and writes a one-line reason into errbuf.
 */
int oracle_create(const char *dir, uint64_t size, const char *initial_raw,
                  const struct oracle_facts *facts, struct oracle **out, char *errbuf,
                  size_t errlen);

/*
 * Creates an oracle held in memory for a disk of `size` bytes (a multiple of 512).
 * With `initial` NULL (and initial_len 0) it is a new image: all zeros. Otherwise it is
 * an existing image whose first initial_len bytes (a multiple of 512, at most size) read
 * as `initial`; the rest of it, and whatever its last cluster holds past the end of the
 * disk, are unknown.
 */
int oracle_create_mem(uint64_t size, const void *initial, uint64_t initial_len,
                      const struct oracle_facts *facts, struct oracle **out, char *errbuf,
                      size_t errlen);

/*
 * Closes; a file oracle's files stay in `dir` (a failing run keeps them for the report):
 * the active one, always current, and one per snapshot, written now if not before.
 */
void oracle_close(struct oracle *o);

uint64_t oracle_size(const struct oracle *o);

/* How many bytes from guest offset 0 the oracle predicts (the whole disk unless said). */
uint64_t oracle_known(const struct oracle *o);

/* The raw file holding the active state (for `qemu-img compare`); NULL in memory. */
const char *oracle_path(const struct oracle *o);

/* -EINVAL past the end of the disk, -ENODATA past the known prefix. */
int oracle_read(struct oracle *o, void *buf, size_t len, uint64_t off);

/* ---- the rules: each records operation `op` as the author of what it changed ------- */

/* A write: [off, off+len) holds buf. */
int oracle_write(struct oracle *o, const void *buf, size_t len, uint64_t off, uint32_t op);

/* A zero write, with or without unmap (the guest sees zeros either way). */
int oracle_zero(struct oracle *o, uint64_t len, uint64_t off, uint32_t op);

/*
 * A discard: the whole clusters inside [off, off+len) (and the partial last cluster of
 * the disk, when the range reaches the end) read as zeros; a v2 image with a backing
 * file ignores discards.
 */
int oracle_discard(struct oracle *o, uint64_t len, uint64_t off, uint32_t op);

/* Whether a compressed write of [off, off+len) covers whole clusters, as it must. */
bool oracle_compressed_whole(const struct oracle *o, uint64_t len, uint64_t off);

/*
 * A compressed write the target accepted: as a write, and a partial last cluster is
 * padded with zeros. -EINVAL unless oracle_compressed_whole.
 */
int oracle_write_compressed(struct oracle *o, const void *buf, size_t len, uint64_t off,
                            uint32_t op);

/*
 * A resize the target accepted. Growing exposes zeros (over a backing file longer than
 * the disk, too), except that a disk shrunk into the middle of a cluster shows again
 * what that cluster held past the old end. Shrinking drops the bytes past the new end.
 */
int oracle_resize(struct oracle *o, uint64_t new_size, uint32_t op);

/* The operation that last wrote sector `sector`, or ORACLE_NO_OP. */
uint32_t oracle_sector_author(const struct oracle *o, uint64_t sector);

/* ---- snapshots, named by the id the target gave them -------------------------------- */

int oracle_snapshot_create(struct oracle *o, const char *id);
/* The active state becomes the snapshot's (contents, size and provenance). */
int oracle_snapshot_apply(struct oracle *o, const char *id);
int oracle_snapshot_delete(struct oracle *o, const char *id);
/*
 * Records a snapshot the image already had: a disk of `size` bytes whose first
 * `known_len` bytes (a multiple of 512, at most size) read as `bytes`.
 */
int oracle_snapshot_import(struct oracle *o, const char *id, uint64_t size, const void *bytes,
                           uint64_t known_len);
int oracle_snapshot_read(struct oracle *o, const char *id, void *buf, size_t len,
                         uint64_t off);
/* Size of the snapshot's disk, or 0 when there is no such snapshot. */
uint64_t oracle_snapshot_size(const struct oracle *o, const char *id);
/*
 * The raw file holding a snapshot's contents, or NULL (no such snapshot, in memory, or
 * the file could not be written: errno says why). The file is written at the first call
 * (and at oracle_close), not at the snapshot's creation: creating one costs no copy.
 */
const char *oracle_snapshot_path(struct oracle *o, const char *id);
uint32_t oracle_snapshot_count(const struct oracle *o);
/* The id of snapshot i (0 the oldest still there), or NULL past the last. */
const char *oracle_snapshot_id(const struct oracle *o, uint32_t i);

/*
 * Compares `got`, len bytes read at guest offset off of the active disk (id NULL) or of
 * snapshot id, with what the oracle holds, in place (nothing is copied): 0 equal, 1
 * different (*sector the first sector that differs, as oracle_first_mismatch says), or
 * the errors of oracle_read and oracle_snapshot_read.
 */
int oracle_compare(const struct oracle *o, const char *id, const void *got, size_t len,
                   uint64_t off, uint64_t *sector);

/*
 * blkverify's comparison: the first 512-byte sector (absolute sector number, counted
 * from guest offset 0) where `got` (len bytes read at `off`) differs from `want`;
 * returns false when they are equal.
 */
bool oracle_first_mismatch(const uint8_t *got, const uint8_t *want, size_t len, uint64_t off,
                           uint64_t *sector);

#endif
