/* SPDX-License-Identifier: BSD-2-Clause */
/* The ordering point of an open image's metadata (sync.c). */
#ifndef QVET_SYNC_H
#define QVET_SYNC_H

#include "qcow2.h"

struct qcow2_image;

/*
 * Puts everything issued so far on disk, dependencies first: dirty refcount blocks, a
 * flush (with them the data of new clusters), dirty L2 tables, a flush. Called by a
 * guest flush, before a reference that is written through (an L1 entry, a header field
 * switching tables), before a refcount drops (once for all the drops of one op that
 * releases clusters: refcount_batch_begin), and on close. Afterwards the clusters
 * freed before it may be handed out again.
 */
int image_sync(struct qcow2_image *img, struct qcow2_error *err);

#endif
