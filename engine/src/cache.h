/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A bounded LRU cache of one-cluster metadata tables (L2 tables, refcount blocks),
 * keyed by host offset. A hit costs one hash probe and no copy.
 */
#ifndef QVET_CACHE_H
#define QVET_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

struct cache;

/* A cache of `slots` tables of `table_bytes` each; memory is taken on first use. */
int cache_new(uint32_t slots, uint32_t table_bytes, struct cache **out);
void cache_free(struct cache *c);

/*
 * The table stored at host offset `offset`, read through `backend` on a miss. The
 * pointer stays valid until the next cache_get or cache_drop on the same cache.
 * Returns 0, or the backend's negative error (the slot it would have used is then empty).
 */
int cache_get(struct cache *c, struct qcow2_backend *backend, uint64_t offset,
              const uint8_t **table);

/*
 * The same table for a caller that changes it: the engine writes metadata through, so
 * the caller writes the changed bytes to the file itself and the cached copy stays equal
 * to the file.
 */
int cache_get_mut(struct cache *c, struct qcow2_backend *backend, uint64_t offset,
                  uint8_t **table);

/* Caches a table the caller has just written at `offset` (a copy of `data`). */
int cache_install(struct cache *c, uint64_t offset, const uint8_t *data);

/* Forgets the table at `offset`, if cached (its cluster was freed). */
void cache_forget(struct cache *c, uint64_t offset);

/* Forgets every table (after the file changed underneath). */
void cache_drop(struct cache *c);

uint32_t cache_slot_count(const struct cache *c);

#endif
