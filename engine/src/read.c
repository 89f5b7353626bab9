/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest reads: every cluster type, compressed clusters decompressed once, unallocated
 * bytes from the backing file. The write path's copy-on-write reads through here too.
 */
#include "read.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "cluster.h"
#include "compress.h"
#include "image.h"

/* Unallocated bytes: the backing file's, zeros past its end, or zeros without one. */
static int read_from_backing(struct qcow2_image *img, uint8_t *buf, size_t len, uint64_t off,
                             struct qcow2_error *err)
{
    size_t from_backing = 0;
    if (img->backing && off < img->backing->virtual_size) {
        from_backing = (size_t)QVET_MIN((uint64_t)len, img->backing->virtual_size - off);
        int ret = image_pread(img->backing, buf, from_backing, off, err);
        if (ret)
            return ret;
    }
    memset(buf + from_backing, 0, len - from_backing);
    return 0;
}

/* Decompresses the cluster of L2 word `word` (guest cluster of guest_off) into dst. */
static int decompress_into(struct qcow2_image *img, uint64_t word, uint64_t guest_off,
                           uint8_t *dst, struct qcow2_error *err)
{
    size_t cs = img->cluster_size;
    if (!img->decompressor) {
        if (decompressor_new((enum qcow2_compression)img->hdr.compression_type,
                             &img->decompressor))
            return image_error(img, err, -ENOMEM, "decompressor", QCOW2_NO_OFFSET,
                               "out of memory");
        img->compressed_buf = malloc(2 * cs);
        if (!img->compressed_buf)
            return image_error(img, err, -ENOMEM, "decompressor", QCOW2_NO_OFFSET,
                               "out of memory");
    }
    struct compressed_desc d = compressed_desc_decode(&img->geo, word);
    size_t len = (size_t)QVET_MIN(d.max_bytes, (uint64_t)2 * cs);
    int ret = image_read(img, img->compressed_buf, len, d.host_offset, "compressed cluster",
                         err);
    if (ret)
        return ret;
    if (decompress_cluster(img->decompressor, img->compressed_buf, len, dst, cs))
        return image_error(img, err, -EIO, "compressed cluster", d.host_offset,
                           "%s stream of guest cluster 0x%" PRIx64
                           " is damaged or does not fill the %zu-byte cluster",
                           img->hdr.compression_type ? "zstd" : "deflate",
                           guest_off & ~(uint64_t)(cs - 1), cs);
    return 0;
}

/*
 * Reads the guest bytes [off, off+n) of a compressed cluster into p. A read of the
 * whole cluster decompresses straight into p; a part of one goes through the image's
 * copy of the last cluster decompressed, so that small reads of one cluster inflate it
 * once.
 */
static int read_compressed(struct qcow2_image *img, uint8_t *p, size_t n, uint64_t off,
                           uint64_t word, struct qcow2_error *err)
{
    size_t cs = img->cluster_size;
    if (n == cs && img->cluster_buf_word != word)
        return decompress_into(img, word, off, p, err);
    if (img->cluster_buf_word != word) {
        if (!img->cluster_buf && !(img->cluster_buf = malloc(cs)))
            return image_error(img, err, -ENOMEM, "decompressor", QCOW2_NO_OFFSET,
                               "out of memory");
        img->cluster_buf_word = 0;
        int ret = decompress_into(img, word, off, img->cluster_buf, err);
        if (ret)
            return ret;
        img->cluster_buf_word = word;
    }
    memcpy(p, img->cluster_buf + (off & (cs - 1)), n);
    return 0;
}

/* Guest bytes [off, off+len) of a qcow2 image as its clusters map them. */
static int read_mapped(struct qcow2_image *img, uint8_t *p, size_t len, uint64_t off,
                       struct qcow2_error *err)
{
    while (len) {
        struct host_range r;
        int ret = cluster_get_host_range(img, off, len, &r, err);
        if (ret)
            return ret;
        size_t n = (size_t)r.bytes;
        switch (r.type) {
        case SUBCLUSTER_NORMAL:
            ret = image_read(img, p, n, r.host_offset, "data cluster", err);
            break;
        case SUBCLUSTER_ZERO_PLAIN:
        case SUBCLUSTER_ZERO_ALLOC:
            memset(p, 0, n);
            break;
        case SUBCLUSTER_COMPRESSED:
            ret = read_compressed(img, p, n, off, r.compressed_word, err);
            break;
        default:
            ret = read_from_backing(img, p, n, off, err);
            break;
        }
        if (ret)
            return ret;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int image_pread(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
                struct qcow2_error *err)
{
    if (off > img->virtual_size || len > img->virtual_size - off)
        return image_error(img, err, -EINVAL, "read request", QCOW2_NO_OFFSET,
                           "guest range %" PRIu64 "+%zu lies past the virtual size %" PRIu64,
                           off, len, img->virtual_size);
    if (img->format == QCOW2_FORMAT_RAW)
        return image_read(img, buf, len, off, "raw image", err);
    return read_mapped(img, buf, len, off, err);
}

int image_pread_clusters(struct qcow2_image *img, void *buf, size_t len, uint64_t off,
                         struct qcow2_error *err)
{
    uint64_t cs = img->cluster_size;
    uint64_t end = round_up_u64(img->virtual_size, cs);
    if (img->format == QCOW2_FORMAT_RAW || off > end || len > end - off)
        return image_error(img, err, -EINVAL, "read request", QCOW2_NO_OFFSET,
                           "guest range %" PRIu64 "+%zu lies past the last cluster of the "
                           "virtual size %" PRIu64, off, len, img->virtual_size);
    return read_mapped(img, buf, len, off, err);
}
