/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What a power cut leaves of the writes issued since the last flush, as a file behind a
 * page cache and a disk that reorders its writes leaves them. The page cache holds each
 * file sector (512 bytes) as the writes so far made it; a write-back sends a whole sector
 * as it is at that moment; the disk keeps any of those sends, in any order. So after the
 * cut each file sector holds its state after some prefix of the writes that touched it:
 * the state right after the last of them that reached the disk for that sector, or its
 * flushed state when none did. A later write that lands carries every earlier write's
 * bytes in that sector: a sector is never left with a later write's bytes but not an
 * earlier one's.
 *
 * Which writes reach the disk is the caller's choice, one `keep` per write: its whole
 * length, 0, or a torn prefix. A torn write keeps the file sectors that its first `keep`
 * bytes touch, each whole (storage tears at its sectors, not at the write's bytes).
 * The fault backend's crash modes (io_fault.h) and the crash explorer (harness/crash)
 * both land their crashes through this one model.
 */
#ifndef QVET_TORN_H
#define QVET_TORN_H

#include <stddef.h>
#include <stdint.h>

#define TORN_SECTOR 512u

struct torn_write {
    uint64_t off;
    size_t len;
    const uint8_t *data;
    size_t keep;                    /* bytes from its start whose sectors land (0: none) */
};

/* The file the writes land on; reads past its end give zeros. */
struct torn_file {
    int (*read)(void *ctx, void *buf, size_t len, uint64_t off);
    int (*write)(void *ctx, const void *buf, size_t len, uint64_t off);
    uint64_t size;                  /* its length before the writes */
    void *ctx;
};

/* Lands writes w[0..n) (oldest first) on `file` as the model says. 0 or a negative errno. */
int torn_land(const struct torn_write *w, size_t n, const struct torn_file *file);

#endif
