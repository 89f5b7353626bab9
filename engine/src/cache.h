/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A bounded LRU write-back cache of one-cluster metadata tables (L2 tables, refcount
 * blocks), keyed by host offset. A hit costs one hash probe and no copy. Changed tables
 * stay in memory, dirty, until cache_writeback (a guest flush, an ordering point) or
 * until their slot is needed (eviction writes back the whole cache, in order).
 *
 * Order: a cache may depend on another (cache_depend_on). Before it writes any table it
 * writes back the other and flushes the file, so that what its tables refer to (raised
 * refcounts, the data of new clusters, anything written through before) is on disk
 * first. All of a cache's state lives in its struct: a lock around the calls that take
 * the same struct is enough to share it.
 */
#ifndef QVET_CACHE_H
#define QVET_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

struct cache;
struct qcow2_image;

/*
 * A cache of `slots` tables of `table_bytes` each, holding `structure` (named in
 * messages); memory is taken on first use.
 */
int cache_new(uint32_t slots, uint32_t table_bytes, const char *structure, struct cache **out);
void cache_free(struct cache *c);

/* Before c writes a table, `first` is written back and the file flushed (NULL: no order). */
void cache_depend_on(struct cache *c, struct cache *first);

/*
 * The table stored at host offset `offset` of img's file, read on a miss (which may
 * first write back the cache to free a slot). The pointer stays valid until the next
 * cache_get, cache_get_mut, cache_install, cache_forget or cache_drop on the same cache.
 */
int cache_get(struct cache *c, struct qcow2_image *img, uint64_t offset, const uint8_t **table,
              struct qcow2_error *err);

/* The same table for a caller that changes it; it then calls cache_mark_dirty. */
int cache_get_mut(struct cache *c, struct qcow2_image *img, uint64_t offset, uint8_t **table,
                  struct qcow2_error *err);

/* Bytes [at, at+len) of the cached table at `offset` changed: write them back later. */
void cache_mark_dirty(struct cache *c, uint64_t offset, uint32_t at, uint32_t len);

/*
 * Caches a copy of `data` as the table at `offset`: dirty (a new table, written back
 * later), or clean when the caller has just written it itself.
 */
int cache_install(struct cache *c, struct qcow2_image *img, uint64_t offset,
                  const uint8_t *data, bool dirty, struct qcow2_error *err);

/* Forgets the table at `offset`, if cached, dirty or not (its cluster was freed). */
void cache_forget(struct cache *c, uint64_t offset);

/* Forgets every table, dirty or not (after the file changed underneath). */
void cache_drop(struct cache *c);

/*
 * Writes every dirty table (after what c depends on; see above). Does not flush after:
 * the caller's next ordering point does. A table whose write fails stays dirty.
 */
int cache_writeback(struct cache *c, struct qcow2_image *img, struct qcow2_error *err);

/* Whether some table waits to be written. */
bool cache_is_dirty(const struct cache *c);

uint32_t cache_slot_count(const struct cache *c);

#endif
