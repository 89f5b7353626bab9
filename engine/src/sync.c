/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The ordering point of the write-back metadata (docs/crash-safety.md). The L2 cache
 * depends on the refcount block cache (set at open), so writing it back writes the
 * refcount blocks and flushes first; what is left of the refcount blocks (decrements,
 * which wait for nothing once image_sync has run before them) goes next.
 */
#include "sync.h"

#include "cache.h"
#include "image.h"

int image_sync(struct qcow2_image *img, struct qcow2_error *err)
{
    int ret = cache_writeback(img->l2_cache, img, err);
    if (!ret)
        ret = cache_writeback(img->refblock_cache, img, err);
    if (!ret && img->writes_unflushed)
        ret = image_flush(img, err);
    /* Every reference removed so far is on disk: a freed cluster may be reused. */
    if (!ret)
        img->n_freed = 0;
    return ret;
}
