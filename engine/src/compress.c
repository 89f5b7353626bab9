/* SPDX-License-Identifier: BSD-2-Clause */
#include "compress.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* QEMU writes raw deflate streams with a 4 KiB window. */
#define DEFLATE_WINDOW_BITS (-12)

/* QEMU's choices for the clusters it compresses: default level, 4 KiB window, memLevel 9. */
#define DEFLATE_MEM_LEVEL 9

struct compressor {
    enum qcow2_compression type;
    z_stream zs;
    bool zs_ready;
    ZSTD_CCtx *zstd;
    uint8_t *out;                   /* cluster_size bytes */
};

int compressor_new(enum qcow2_compression type, size_t cluster_size, struct compressor **out)
{
    struct compressor *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->type = type;
    c->out = malloc(cluster_size);
    int ret = c->out ? 0 : -ENOMEM;
    if (!ret && type == QCOW2_COMPRESSION_ZSTD) {
        c->zstd = ZSTD_createCCtx();
        ret = c->zstd ? 0 : -ENOMEM;
    } else if (!ret) {
        c->zs_ready = deflateInit2(&c->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                                   DEFLATE_WINDOW_BITS, DEFLATE_MEM_LEVEL,
                                   Z_DEFAULT_STRATEGY) == Z_OK;
        ret = c->zs_ready ? 0 : -ENOMEM;
    }
    if (ret) {
        compressor_free(c);
        return ret;
    }
    *out = c;
    return 0;
}

void compressor_free(struct compressor *c)
{
    if (!c)
        return;
    if (c->zs_ready)
        deflateEnd(&c->zs);
    ZSTD_freeCCtx(c->zstd);
    free(c->out);
    free(c);
}

size_t compress_cluster(struct compressor *c, const uint8_t *src, size_t len, size_t cap,
                        const uint8_t **dst)
{
    *dst = c->out;
    if (c->type == QCOW2_COMPRESSION_ZSTD) {
        size_t n = ZSTD_compressCCtx(c->zstd, c->out, cap, src, len, ZSTD_CLEVEL_DEFAULT);
        return ZSTD_isError(n) ? 0 : n;
    }
    if (deflateReset(&c->zs) != Z_OK)
        return 0;
    c->zs.next_in = (Bytef *)src;
    c->zs.avail_in = (uInt)len;
    c->zs.next_out = c->out;
    c->zs.avail_out = (uInt)cap;
    return deflate(&c->zs, Z_FINISH) == Z_STREAM_END ? cap - c->zs.avail_out : 0;
}

struct decompressor {
    enum qcow2_compression type;
    z_stream zs;
    bool zs_ready;
    ZSTD_DCtx *zstd;
};

int decompressor_new(enum qcow2_compression type, struct decompressor **out)
{
    struct decompressor *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->type = type;
    if (type == QCOW2_COMPRESSION_ZSTD) {
        d->zstd = ZSTD_createDCtx();
        if (!d->zstd) {
            free(d);
            return -ENOMEM;
        }
    } else {
        if (inflateInit2(&d->zs, DEFLATE_WINDOW_BITS) != Z_OK) {
            free(d);
            return -ENOMEM;
        }
        d->zs_ready = true;
    }
    *out = d;
    return 0;
}

void decompressor_free(struct decompressor *d)
{
    if (!d)
        return;
    if (d->zs_ready)
        inflateEnd(&d->zs);
    ZSTD_freeDCtx(d->zstd);
    free(d);
}

static int inflate_cluster(struct decompressor *d, const uint8_t *src, size_t src_len,
                           uint8_t *dst, size_t dst_len)
{
    if (inflateReset(&d->zs) != Z_OK)
        return -EIO;
    d->zs.next_in = (Bytef *)src;
    d->zs.avail_in = (uInt)src_len;
    d->zs.next_out = dst;
    d->zs.avail_out = (uInt)dst_len;
    int ret = inflate(&d->zs, Z_FINISH);
    /*
     * The stored length is only known to a sector, so the input may hold bytes past the
     * stream's end (Z_STREAM_END) or the stream may not be finished when the output is
     * (Z_BUF_ERROR). Either is fine as long as a whole cluster came out.
     */
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && d->zs.avail_out == 0)
        return 0;
    return -EIO;
}

static int zstd_cluster(struct decompressor *d, const uint8_t *src, size_t src_len,
                        uint8_t *dst, size_t dst_len)
{
    ZSTD_DCtx_reset(d->zstd, ZSTD_reset_session_only);
    ZSTD_inBuffer in = { .src = src, .size = src_len, .pos = 0 };
    ZSTD_outBuffer out = { .dst = dst, .size = dst_len, .pos = 0 };
    size_t pending = 0;
    /* Several frames may follow one another; decode until the cluster is full. */
    while (out.pos < out.size) {
        size_t in_before = in.pos, out_before = out.pos;
        pending = ZSTD_decompressStream(d->zstd, &out, &in);
        if (ZSTD_isError(pending))
            return -EIO;
        if (in.pos == in_before && out.pos == out_before)
            return -EIO;                /* no progress: the input is exhausted */
    }
    /* A frame still open once the cluster is full holds more than a cluster. */
    return pending == 0 ? 0 : -EIO;
}

int decompress_cluster(struct decompressor *d, const uint8_t *src, size_t src_len,
                       uint8_t *dst, size_t dst_len)
{
    if (d->type == QCOW2_COMPRESSION_ZSTD)
        return zstd_cluster(d, src, src_len, dst, dst_len);
    return inflate_cluster(d, src, src_len, dst, dst_len);
}
