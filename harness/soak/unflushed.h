/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the guest changed since the last flush: what a power cut may take back. For each
 * sector changed since then it keeps the content it had at the flush (from the oracle)
 * and the partly written versions in between; after a power cut a sector must read as
 * one of its versions (the flushed one, a later op's payload for it, zeros after a zero
 * write, one of the kept partial versions, or the latest), and every sector not changed
 * since the flush exactly as before. A snapshot operation or a resize since the flush is
 * not modelled: a power cut then is skipped.
 */
#ifndef QVET_UNFLUSHED_H
#define QVET_UNFLUSHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oracle.h"

struct unflushed;

struct unflushed *unflushed_new(void);
void unflushed_free(struct unflushed *u);

/* Everything up to op `op` is on disk (an explicit flush, a reopen, a check's flush). */
void unflushed_flushed(struct unflushed *u, uint32_t op);
/* The op number of the last flush. */
uint32_t unflushed_flush_op(const struct unflushed *u);

/* Before op `op` changes guest bytes [off, off+len): their flushed content, if new. */
int unflushed_before(struct unflushed *u, struct oracle *o, uint64_t off, uint64_t len,
                     bool zeroing);
/* After it: the partly changed sectors at either end, as versions a crash may leave. */
int unflushed_after(struct unflushed *u, struct oracle *o, uint64_t off, uint64_t len);
/* A snapshot operation or a resize since the flush. */
void unflushed_metadata_changed(struct unflushed *u);

/* Whether a power cut can be judged now; otherwise why not. */
bool unflushed_modelled(const struct unflushed *u, const char **why);

/* The sectors changed since the flush, in ascending order (valid until the next change). */
size_t unflushed_sectors(struct unflushed *u, const uint64_t **sectors);

/*
 * Whether `got` is a content sector `sector` may have after a power cut, `latest` being
 * what the oracle holds now. *author: the op that wrote it, the author of the flushed
 * content, or UNFLUSHED_BY_CRASH when no single op did (zeros, a partial version).
 */
#define UNFLUSHED_BY_CRASH UINT32_MAX
bool unflushed_acceptable(const struct unflushed *u, uint64_t sector, const uint8_t *got,
                          const uint8_t *latest, uint32_t *author);

#endif
