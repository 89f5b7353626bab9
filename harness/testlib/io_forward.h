/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The base of the test shims that sit between the engine and its file (io_fault,
 * io_record): a backend that hands every call to an inner backend. A shim embeds
 * `struct io_forward` as its first member, is made by io_forward_new, and then replaces in
 * `ops` only the calls it changes; a replaced destroy ends in io_forward_destroy. The
 * optional calls (block_status, allocated_size) are forwarded only when the inner
 * backend has them, as the engine reads NULL as "all data, fully allocated".
 */
#ifndef QVET_IO_FORWARD_H
#define QVET_IO_FORWARD_H

#include <stdbool.h>

#include "qcow2.h"

struct io_forward {
    struct qcow2_backend base;
    struct qcow2_backend_ops ops;
    struct qcow2_backend *inner;
    bool owns_inner;                /* destroying the shim destroys inner */
};

/*
 * A zeroed, malloc'd shim of `size` bytes (its own struct, an io_forward first) whose
 * ops all forward to inner; NULL when out of memory.
 */
void *io_forward_new(size_t size, struct qcow2_backend *inner, bool owns_inner);

static inline struct io_forward *io_forward_of(struct qcow2_backend *b)
{
    return (struct io_forward *)b;
}

/* Destroys inner if the shim owns it, and frees the shim. */
void io_forward_destroy(struct qcow2_backend *b);

#endif
