/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A fault-injecting backend for tests: a shim that forwards every call to another
 * backend (a file, memory) and fails, shortens or loses I/O as a reusable `struct
 * io_fault` says. The Check suites, the soak driver's tests and the fuzz targets all use
 * this one; SQLite's test VFS is the model (a forwarding shim plus a fault description
 * kept outside it, so that one fault outlives the shims of successive opens).
 *
 * A fault counts the I/O of the kinds in `mask` once it is armed, lets `countdown` of
 * them through and fails the next: with `error` (-EIO, -ENOSPC, ...), after storing the
 * first half of a write when `short_write` is set (cut back to one of the file's 512-byte
 * sector boundaries, as storage writes whole sectors: a write that does not cross one
 * then stores nothing). A transient fault fails that one I/O and disarms; a persistent
 * one fails every later I/O of those kinds and every flush (a device that failed does
 * not report a flush as done), as a dead disk would.
 *
 * In a crash mode the shim buffers writes until a flush, as a host page cache does, and
 * reads see the buffered writes. When the fault fires (or io_fault_crash_now is called)
 * the machine stops: the writes since the last flush all land (KEEP), none does (DROP),
 * or each is chosen, from `seed`, to reach the disk whole, not at all or up to one of
 * the file's sector boundaries inside it, and they land sector by sector as torn.h says
 * (TEAR: each file sector ends in its state after some prefix of its writes); from then
 * on every I/O fails with -EIO. A truncate lands at once, with the writes before it.
 */
#ifndef QVET_IO_FAULT_H
#define QVET_IO_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

/* Kinds of I/O, for io_fault.mask. */
#define IO_FAULT_READ 0x1u
#define IO_FAULT_WRITE 0x2u
#define IO_FAULT_FLUSH 0x4u
#define IO_FAULT_TRUNCATE 0x8u

enum io_fault_crash {
    IO_FAULT_NO_CRASH,              /* writes go straight through; a fault fails I/O */
    IO_FAULT_CRASH_KEEP,
    IO_FAULT_CRASH_DROP,
    IO_FAULT_CRASH_TEAR,
};

struct io_fault;

/*
 * A test's own handling of reads or writes (to damage or observe them). It is called
 * instead of the fault's and may pass the I/O on with io_fault_read / io_fault_write.
 */
typedef int (*io_fault_read_fn)(struct io_fault *f, struct qcow2_backend *inner, void *buf,
                                size_t len, uint64_t off);
typedef int (*io_fault_write_fn)(struct io_fault *f, struct qcow2_backend *inner,
                                 const void *buf, size_t len, uint64_t off);

struct io_fault_pending;

struct io_fault {
    /* The fault, as the test sets it (io_fault_init: none, error -EIO). */
    unsigned mask;                  /* IO_FAULT_* kinds that count and fail */
    bool armed;                     /* counting starts once armed */
    uint64_t countdown;             /* matching I/Os let through before the failing one */
    bool persistent;
    int error;                      /* what a failed I/O returns */
    bool short_write;               /* a failing write stores its first half (sectors) */
    enum io_fault_crash crash;
    uint64_t seed;                  /* TEAR's choices */
    uint64_t pad_to;                /* the file reports at least this size (zeros past it) */
    io_fault_read_fn read;          /* NULL: the fault's handling */
    io_fault_write_fn write;
    void *ctx;                      /* the test's, for read and write */

    /* What happened. */
    unsigned fired;                 /* I/Os the fault failed (every one, when persistent) */
    uint64_t seen;                  /* matching I/Os counted while armed */
    bool crashed;
    struct qcow2_backend *inner;    /* the newest shim's inner backend (NULL once gone) */

    /* Crash modes: the writes since the last flush, oldest first. */
    struct io_fault_pending *pending;
    size_t n_pending, pending_cap;
};

void io_fault_init(struct io_fault *f);
/* Frees what the fault holds (its unflushed writes); the shims must be gone. */
void io_fault_fini(struct io_fault *f);

/*
 * A backend that forwards to `inner` through `f` (both must outlive it, and f its every
 * shim). With owns_inner, destroying the shim destroys inner; otherwise inner stays the
 * caller's, so that its contents outlive qcow2_close. NULL when out of memory (inner is
 * then untouched).
 */
struct qcow2_backend *io_fault_wrap(struct qcow2_backend *inner, bool owns_inner,
                                    struct io_fault *f);

/* The fault's own handling of one read or write: what a test's handler passes I/O on to. */
int io_fault_read(struct io_fault *f, struct qcow2_backend *inner, void *buf, size_t len,
                  uint64_t off);
int io_fault_write(struct io_fault *f, struct qcow2_backend *inner, const void *buf,
                   size_t len, uint64_t off);

/*
 * Stops the machine now, as the fault firing in a crash mode would: the unflushed writes
 * land as f->crash says (all of them without a crash mode), and every later I/O fails.
 */
void io_fault_crash_now(struct io_fault *f);

#endif
