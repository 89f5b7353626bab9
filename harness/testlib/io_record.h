/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A recording backend: a shim that forwards every call to another backend and logs each
 * write (with its bytes), flush and truncate, in order, together with the file's bytes
 * as they were when the first shim was made. From the log, `qvet crashtest` rebuilds the
 * file as a power loss could have left it at any moment (harness/crash). Reads are not
 * logged: they change nothing a crash could keep.
 *
 * The log outlives the shims, so that a workload that reopens its image keeps one log.
 */
#ifndef QVET_IO_RECORD_H
#define QVET_IO_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

enum io_record_kind { IO_RECORD_WRITE, IO_RECORD_FLUSH, IO_RECORD_TRUNCATE };

struct io_record_event {
    enum io_record_kind kind;
    uint64_t off;                   /* write: where; truncate: the new length */
    size_t len;                     /* write: how many bytes */
    uint8_t *data;                  /* write: a copy of them */
};

struct io_record {
    struct io_record_event *events;
    size_t count, cap;
    uint8_t *initial;               /* the file when the first shim was made */
    size_t initial_len;
    bool started;
    int error;                      /* the first failure to record (-ENOMEM), else 0 */
};

void io_record_init(struct io_record *r);
/* Frees the log; the shims must be gone. */
void io_record_fini(struct io_record *r);

/*
 * A backend forwarding to `inner` (which it owns from then on) that logs into `r`. The
 * first one made for `r` reads the whole file first (its initial contents). NULL when
 * out of memory or when that read fails; inner is then destroyed.
 */
struct qcow2_backend *io_record_wrap(struct qcow2_backend *inner, struct io_record *r);

/*
 * The file after the first `n` events: initial contents, every write and truncate
 * among them applied in order. *out is malloc'd (the caller frees it).
 */
int io_record_replay(const struct io_record *r, size_t n, uint8_t **out, size_t *len);

/* Applies one write or truncate to a file held in *buf (grown or cut as it needs). */
int io_record_apply(const struct io_record_event *e, size_t keep, uint8_t **buf, size_t *len);

#endif
