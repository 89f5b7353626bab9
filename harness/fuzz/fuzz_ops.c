/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_ops: structure-aware. The input decodes into an image configuration (its first
 * bytes) and a list of operations (six bytes each), run against the engine on an
 * in-memory file and mirrored to an in-memory oracle with the soak's rules. Every read
 * is compared; at the end the whole disk and every snapshot are compared and the
 * engine's checker must find the image consistent. Any difference aborts, so the fuzzer
 * reports a logic bug as a crash.
 *
 *   byte 0: cluster size (512 B .. 64 KiB), version, extended L2
 *   byte 1: refcount width (1..64 bits), compression type, lazy refcounts
 *   byte 2: disk size (16 KiB steps up to 1 MiB), plus 0..3 sectors
 *   then per op: kind, offset (2 bytes, scaled to the disk), length (2 bytes), spare
 */
#include "fuzz_common.h"

#define OPS_MAX 64u
#define OP_BYTES 6u
#define MAX_DISK (2u << 20)         /* grown disks stay below this */
#define MAX_FILE (64u << 20)
#define MAX_SNAPSHOTS 4u

enum kind { K_READ, K_WRITE, K_ZERO, K_ZERO_UNMAP, K_DISCARD, K_COMPRESSED, K_FLUSH,
            K_SNAP_CREATE, K_SNAP_APPLY, K_SNAP_DELETE, K_REOPEN, K_RESIZE, K_KINDS };

struct model {
    uint8_t *disk;                  /* what the guest must see */
    uint64_t size;
    struct {
        char id[32];
        uint8_t *disk;
        uint64_t size;
    } snaps[MAX_SNAPSHOTS];
    unsigned n_snaps;
};

static uint8_t buf[MAX_DISK];
static uint8_t model_disk[MAX_DISK];

static void fill(uint8_t *p, size_t len, uint64_t off, unsigned op)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((off + i) * 131u + op * 29u + 1u);
}

/*
 * A copy of the image file's bytes, on a new in-memory backend. The image owns `file`;
 * it stays valid while the image is open.
 */
static struct qcow2_backend *copy_of(struct qcow2_backend *file)
{
    size_t len;
    const uint8_t *bytes = qcow2_backend_mem_data(file, &len);
    struct qcow2_backend *b;
    if (qcow2_backend_mem_new(bytes, len, MAX_FILE, &b))
        abort();
    return b;
}

static void expect_same(struct qcow2_image *img, const uint8_t *want, uint64_t off, size_t len,
                        const char *what)
{
    struct qcow2_error err;
    if (qcow2_pread(img, buf, len, off, &err))
        fuzz_fail("%s: read %zu bytes at %" PRIu64 " failed: %s", what, len, off, err.message);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != want[i])
            fuzz_fail("%s: guest byte %" PRIu64 " reads 0x%02x, the oracle says 0x%02x", what,
                      off + i, buf[i], want[i]);
}

/* Each snapshot, read through a read-only open of a copy, against its oracle copy. */
static void expect_snapshots(struct qcow2_backend *file, const struct model *m)
{
    for (unsigned s = 0; s < m->n_snaps; s++) {
        struct qcow2_open_options o = { .snapshot = m->snaps[s].id,
                                        .open_backing = fuzz_refuse_backing };
        struct qcow2_image *snap;
        struct qcow2_error err;
        if (qcow2_open_backend(copy_of(file), FUZZ_IMAGE_NAME, &o, &snap, &err))
            fuzz_fail("snapshot %s does not open: %s", m->snaps[s].id, err.message);
        /* A snapshot is read at the current disk size (QEMU's rule): compare the overlap. */
        uint64_t n = m->snaps[s].size < qcow2_virtual_size(snap) ? m->snaps[s].size
                                                                 : qcow2_virtual_size(snap);
        expect_same(snap, m->snaps[s].disk, 0, (size_t)n, "snapshot read");
        qcow2_close(snap);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    struct qcow2_create_options c;
    qcow2_create_options_init(&c);
    static const uint32_t cluster_sizes[] = { 512, 1024, 4096, 16384, 65536 };
    c.cluster_size = cluster_sizes[data[0] % 5];
    c.version = (data[0] >> 3) & 1 ? 2 : 3;
    c.extended_l2 = c.version == 3 && c.cluster_size >= 16384 && ((data[0] >> 4) & 1);
    c.refcount_bits = c.version == 3 ? 1u << (data[1] % 7) : 16;
    c.compression = c.version == 3 && ((data[1] >> 3) & 1) ? QCOW2_COMPRESSION_ZSTD
                                                           : QCOW2_COMPRESSION_ZLIB;
    c.lazy_refcounts = c.version == 3 && ((data[1] >> 4) & 1);
    c.size = ((uint64_t)(data[2] % 64) + 1) * 16384 + ((data[2] >> 6) & 3) * 512;
    c.has_size = true;

    struct qcow2_backend *file;
    struct qcow2_error err;
    if (qcow2_backend_mem_new(NULL, 0, MAX_FILE, &file))
        return 0;
    if (qcow2_create_backend(file, FUZZ_IMAGE_NAME, &c, &err)) {
        qcow2_backend_destroy(file);
        return 0;                       /* a refused combination */
    }
    struct qcow2_open_options o = { .writable = true, .cache_bytes = FUZZ_CACHE_BYTES,
                                    .open_backing = fuzz_refuse_backing };
    struct qcow2_image *img;
    if (qcow2_open_backend(file, FUZZ_IMAGE_NAME, &o, &img, &err))
        fuzz_fail("a freshly created image does not open: %s", err.message);

    struct model m = { .size = c.size, .disk = model_disk };
    memset(model_disk, 0, sizeof(model_disk));
    const uint8_t *p = data + 3;
    size_t n_ops = (size - 3) / OP_BYTES;
    if (n_ops > OPS_MAX)
        n_ops = OPS_MAX;
    uint64_t cs = c.cluster_size;

    for (unsigned i = 0; i < n_ops; i++, p += OP_BYTES) {
        enum kind k = (enum kind)(p[0] % K_KINDS);
        uint64_t off = ((uint64_t)p[1] << 8 | p[2]) * m.size / 65536u;
        uint64_t len = ((uint64_t)p[3] << 8 | p[4]) % (3 * cs) + 1;
        if (len > m.size - off)
            len = m.size - off;
        unsigned op = i + 1;
        int ret = 0;
        fuzz_debug("op %u: kind %d off %" PRIu64 " len %" PRIu64, op, k, off, len);
        switch (k) {
        case K_READ:
            expect_same(img, m.disk + off, off, (size_t)len, "read");
            break;
        case K_WRITE:
            fill(buf, (size_t)len, off, op);
            if ((ret = qcow2_pwrite(img, buf, (size_t)len, off, &err)))
                fuzz_fail("write %" PRIu64 "+%" PRIu64 " failed: %s", off, len, err.message);
            memcpy(m.disk + off, buf, (size_t)len);
            break;
        case K_ZERO:
        case K_ZERO_UNMAP:
            if (qcow2_pwrite_zeroes(img, off, len, k == K_ZERO_UNMAP ? QCOW2_ZERO_MAY_UNMAP : 0,
                                    &err))
                fuzz_fail("zero write %" PRIu64 "+%" PRIu64 " failed: %s", off, len,
                          err.message);
            memset(m.disk + off, 0, (size_t)len);
            break;
        case K_DISCARD: {
            if (qcow2_discard(img, off, len, &err))
                fuzz_fail("discard %" PRIu64 "+%" PRIu64 " failed: %s", off, len, err.message);
            uint64_t start = (off + cs - 1) / cs * cs;
            uint64_t end = off + len == m.size ? m.size : (off + len) / cs * cs;
            if (end > start)
                memset(m.disk + start, 0, (size_t)(end - start));
            break;
        }
        case K_COMPRESSED: {
            off = off / cs * cs;
            len = cs < m.size - off ? cs : m.size - off;
            fill(buf, (size_t)len, off, op);
            ret = qcow2_pwrite_compressed(img, buf, (size_t)len, off, &err);
            if (ret && ret != -EEXIST)
                fuzz_fail("compressed write at %" PRIu64 " failed: %s", off, err.message);
            if (!ret)
                memcpy(m.disk + off, buf, (size_t)len);
            break;
        }
        case K_FLUSH:
            if (qcow2_flush(img, &err))
                fuzz_fail("flush failed: %s", err.message);
            break;
        case K_SNAP_CREATE: {
            if (m.n_snaps == MAX_SNAPSHOTS)
                break;
            char name[16];
            snprintf(name, sizeof(name), "s%u", op);
            ret = qcow2_snapshot_create(img, name, &err);
            if (ret == -ERANGE || ret == -ENOTSUP)
                break;                  /* refused: a refcount at its width's maximum */
            if (ret)
                fuzz_fail("snapshot create failed: %s", err.message);
            struct qcow2_snapshot_info si;
            qcow2_snapshot_get(img, qcow2_snapshot_count(img) - 1, &si);
            unsigned s = m.n_snaps++;
            snprintf(m.snaps[s].id, sizeof(m.snaps[s].id), "%s", si.id);
            m.snaps[s].disk = malloc(m.size);
            if (!m.snaps[s].disk)
                abort();
            memcpy(m.snaps[s].disk, m.disk, m.size);
            m.snaps[s].size = m.size;
            break;
        }
        case K_SNAP_APPLY:
        case K_SNAP_DELETE: {
            if (!m.n_snaps)
                break;
            unsigned s = p[5] % m.n_snaps;
            if (k == K_SNAP_APPLY) {
                ret = qcow2_snapshot_apply(img, m.snaps[s].id, &err);
                if (ret == -ERANGE)
                    break;
                if (ret)
                    fuzz_fail("snapshot apply failed: %s", err.message);
                /* The snapshot's size, and beyond it zeros (for a later grow). */
                memcpy(m.disk, m.snaps[s].disk, m.snaps[s].size);
                memset(m.disk + m.snaps[s].size, 0, MAX_DISK - m.snaps[s].size);
                m.size = m.snaps[s].size;
                break;
            }
            if (qcow2_snapshot_delete(img, m.snaps[s].id, &err))
                fuzz_fail("snapshot delete failed: %s", err.message);
            free(m.snaps[s].disk);
            m.snaps[s] = m.snaps[--m.n_snaps];
            break;
        }
        case K_REOPEN: {
            /* A clean shutdown and a new open: everything must come back from the file. */
            struct qcow2_backend *again = copy_of(file);
            qcow2_close(img);
            file = again;
            if (qcow2_open_backend(file, FUZZ_IMAGE_NAME, &o, &img, &err))
                fuzz_fail("after op %u the image does not open again: %s", op, err.message);
            break;
        }
        case K_RESIZE: {
            uint64_t grown = m.size + cs * (1 + p[5] % 4);
            if (grown > MAX_DISK)
                break;
            ret = qcow2_resize(img, grown, &err);
            if (ret && ret != -ENOTSUP)
                fuzz_fail("resize to %" PRIu64 " failed: %s", grown, err.message);
            if (!ret)
                m.size = grown;       /* the new bytes read as zeros, as in the oracle */
            break;
        }
        default:
            break;
        }
        if (qcow2_virtual_size(img) != m.size)
            fuzz_fail("after op %u the disk is %" PRIu64 " bytes, the oracle's %" PRIu64, op,
                      qcow2_virtual_size(img), m.size);
    }

    expect_same(img, m.disk, 0, (size_t)m.size, "final read");
    if (qcow2_flush(img, &err))
        fuzz_fail("the final flush failed: %s", err.message);
    expect_snapshots(file, &m);
    struct qcow2_check_result r;
    if (qcow2_check(img, QCOW2_REPAIR_NONE, &r, NULL, NULL, &err) || r.corruptions ||
        r.leaks || r.check_errors)
        fuzz_fail("after %zu ops the checker finds %" PRIu64 " corruptions, %" PRIu64
                  " leaks, %" PRIu64 " errors", n_ops, r.corruptions, r.leaks, r.check_errors);
    qcow2_close(img);
    for (unsigned s = 0; s < m.n_snaps; s++)
        free(m.snaps[s].disk);
    return 0;
}
