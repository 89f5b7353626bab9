/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_ops: structure-aware. The input decodes into an image configuration (its first
 * bytes) and a list of operations (six bytes each), run against the engine on an
 * in-memory file and predicted by an in-memory oracle (oracle/: the same rules the soak
 * uses). Every read is compared; at the end the whole disk and every snapshot are
 * compared and the engine's checker must find the image consistent. Any difference
 * aborts, so the fuzzer reports a logic bug as a crash.
 *
 *   byte 0: cluster size (512 B .. 64 KiB), version, extended L2
 *   byte 1: refcount width (1..64 bits), compression type, lazy refcounts
 *   byte 2: disk size (16 KiB steps up to 1 MiB), plus 0..3 sectors
 *   then per op: kind, offset (2 bytes, scaled to the disk), length (2 bytes), spare
 *   (resize: bit 7 shrinks instead of growing, the low bits say by how many clusters)
 */
#include "fuzz_common.h"
#include "oracle.h"

#define OPS_MAX 64u
#define OP_BYTES 6u
#define MAX_DISK (2u << 20)         /* grown disks stay below this */
#define MAX_FILE (64u << 20)
#define MAX_SNAPSHOTS 4u
#define ID_MAX 32u

enum kind { K_READ, K_WRITE, K_ZERO, K_ZERO_UNMAP, K_DISCARD, K_COMPRESSED, K_FLUSH,
            K_SNAP_CREATE, K_SNAP_APPLY, K_SNAP_DELETE, K_REOPEN, K_RESIZE, K_KINDS };

static uint8_t buf[MAX_DISK];
static uint8_t want[MAX_DISK];

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

/* The engine's bytes [off, off+len) against what the oracle (or a snapshot of it) says. */
static void expect_same(struct qcow2_image *img, struct oracle *o, const char *snapshot,
                        uint64_t off, size_t len, const char *what)
{
    struct qcow2_error err;
    if (qcow2_pread(img, buf, len, off, &err))
        fuzz_fail("%s: read %zu bytes at %" PRIu64 " failed: %s", what, len, off, err.message);
    int ret = snapshot ? oracle_snapshot_read(o, snapshot, want, len, off)
                       : oracle_read(o, want, len, off);
    if (ret)
        fuzz_fail("%s: the oracle cannot read %zu bytes at %" PRIu64 ": %d", what, len, off,
                  ret);
    uint64_t sector;
    if (!oracle_first_mismatch(buf, want, len, off, &sector))
        return;
    uint64_t i = sector * ORACLE_SECTOR > off ? sector * ORACLE_SECTOR - off : 0;
    while (buf[i] == want[i])
        i++;
    fuzz_fail("%s: guest byte %" PRIu64 " reads 0x%02x, the oracle says 0x%02x", what, off + i,
              buf[i], want[i]);
}

/* Each snapshot, read through a read-only open of a copy, against its oracle copy. */
static void expect_snapshots(struct qcow2_backend *file, struct oracle *o,
                             char ids[][ID_MAX], unsigned n)
{
    for (unsigned s = 0; s < n; s++) {
        struct qcow2_open_options opts = { .snapshot = ids[s],
                                           .open_backing = fuzz_refuse_backing };
        struct qcow2_image *snap;
        struct qcow2_error err;
        if (qcow2_open_backend(copy_of(file), FUZZ_IMAGE_NAME, &opts, &snap, &err))
            fuzz_fail("snapshot %s does not open: %s", ids[s], err.message);
        /* A snapshot is read at the current disk size (QEMU's rule): compare the overlap. */
        uint64_t size = oracle_snapshot_size(o, ids[s]);
        uint64_t len = size < qcow2_virtual_size(snap) ? size : qcow2_virtual_size(snap);
        expect_same(snap, o, ids[s], 0, (size_t)len, "snapshot read");
        qcow2_close(snap);
    }
}

/* A resize by p[5]: bit 7 shrinks, the low bits say by how many clusters (1..4). */
static uint64_t resize_target(uint64_t size, uint64_t cs, uint8_t spare)
{
    uint64_t delta = cs * (1u + spare % 4u);
    if (spare & 0x80)
        return size > delta ? size - delta : size;
    return size + delta;
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

    const struct oracle_facts facts = { .version = c.version, .cluster_size = c.cluster_size };
    struct oracle *model;
    char why[256];
    if (oracle_create_mem(c.size, NULL, 0, &facts, &model, why, sizeof(why)))
        fuzz_fail("no oracle for the image: %s", why);
    char ids[MAX_SNAPSHOTS][ID_MAX];
    unsigned n_snaps = 0;
    const uint8_t *p = data + 3;
    size_t n_ops = (size - 3) / OP_BYTES;
    if (n_ops > OPS_MAX)
        n_ops = OPS_MAX;
    uint64_t cs = c.cluster_size;

    for (unsigned i = 0; i < n_ops; i++, p += OP_BYTES) {
        enum kind k = (enum kind)(p[0] % K_KINDS);
        uint64_t disk = oracle_size(model);
        uint64_t off = ((uint64_t)p[1] << 8 | p[2]) * disk / 65536u;
        uint64_t len = ((uint64_t)p[3] << 8 | p[4]) % (3 * cs) + 1;
        if (len > disk - off)
            len = disk - off;
        unsigned op = i + 1;
        int ret = 0;
        fuzz_debug("op %u: kind %d off %" PRIu64 " len %" PRIu64, op, k, off, len);
        switch (k) {
        case K_READ:
            if (len)
                expect_same(img, model, NULL, off, (size_t)len, "read");
            break;
        case K_WRITE:
            fill(buf, (size_t)len, off, op);
            if (qcow2_pwrite(img, buf, (size_t)len, off, &err))
                fuzz_fail("write %" PRIu64 "+%" PRIu64 " failed: %s", off, len, err.message);
            ret = oracle_write(model, buf, (size_t)len, off, op);
            break;
        case K_ZERO:
        case K_ZERO_UNMAP:
            if (qcow2_pwrite_zeroes(img, off, len, k == K_ZERO_UNMAP ? QCOW2_ZERO_MAY_UNMAP : 0,
                                    &err))
                fuzz_fail("zero write %" PRIu64 "+%" PRIu64 " failed: %s", off, len,
                          err.message);
            ret = oracle_zero(model, len, off, op);
            break;
        case K_DISCARD:
            if (qcow2_discard(img, off, len, &err))
                fuzz_fail("discard %" PRIu64 "+%" PRIu64 " failed: %s", off, len, err.message);
            ret = oracle_discard(model, len, off, op);
            break;
        case K_COMPRESSED: {
            off = off / cs * cs;
            len = cs < disk - off ? cs : disk - off;
            if (!oracle_compressed_whole(model, len, off))
                break;
            fill(buf, (size_t)len, off, op);
            ret = qcow2_pwrite_compressed(img, buf, (size_t)len, off, &err);
            if (ret && ret != -EEXIST)
                fuzz_fail("compressed write at %" PRIu64 " failed: %s", off, err.message);
            ret = ret ? 0 : oracle_write_compressed(model, buf, (size_t)len, off, op);
            break;
        }
        case K_FLUSH:
            if (qcow2_flush(img, &err))
                fuzz_fail("flush failed: %s", err.message);
            break;
        case K_SNAP_CREATE: {
            if (n_snaps == MAX_SNAPSHOTS)
                break;
            char name[16];
            snprintf(name, sizeof(name), "s%u", op);
            ret = qcow2_snapshot_create(img, name, &err);
            if (ret == -ERANGE || ret == -ENOTSUP) {
                ret = 0;                /* refused: a refcount at its width's maximum */
                break;
            }
            if (ret)
                fuzz_fail("snapshot create failed: %s", err.message);
            struct qcow2_snapshot_info si;
            qcow2_snapshot_get(img, qcow2_snapshot_count(img) - 1, &si);
            snprintf(ids[n_snaps], ID_MAX, "%s", si.id);
            ret = oracle_snapshot_create(model, ids[n_snaps++]);
            break;
        }
        case K_SNAP_APPLY:
        case K_SNAP_DELETE: {
            if (!n_snaps)
                break;
            unsigned s = p[5] % n_snaps;
            if (k == K_SNAP_APPLY) {
                ret = qcow2_snapshot_apply(img, ids[s], &err);
                if (ret == -ERANGE) {
                    ret = 0;
                    break;
                }
                if (ret)
                    fuzz_fail("snapshot apply failed: %s", err.message);
                ret = oracle_snapshot_apply(model, ids[s]);
                break;
            }
            if (qcow2_snapshot_delete(img, ids[s], &err))
                fuzz_fail("snapshot delete failed: %s", err.message);
            ret = oracle_snapshot_delete(model, ids[s]);
            memcpy(ids[s], ids[--n_snaps], ID_MAX);
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
            uint64_t target = resize_target(disk, cs, p[5]);
            if (target > MAX_DISK || target == disk)
                break;
            ret = qcow2_resize(img, target, &err);
            if (ret && ret != -ENOTSUP)
                fuzz_fail("resize to %" PRIu64 " failed: %s", target, err.message);
            /* -ENOTSUP: a shrink over allocated clusters, or v2 with snapshots. */
            ret = ret ? 0 : oracle_resize(model, target, op);
            break;
        }
        default:
            break;
        }
        if (ret)
            fuzz_fail("after op %u the oracle failed: %d", op, ret);
        if (qcow2_virtual_size(img) != oracle_size(model))
            fuzz_fail("after op %u the disk is %" PRIu64 " bytes, the oracle's %" PRIu64, op,
                      qcow2_virtual_size(img), oracle_size(model));
    }

    expect_same(img, model, NULL, 0, (size_t)oracle_size(model), "final read");
    if (qcow2_flush(img, &err))
        fuzz_fail("the final flush failed: %s", err.message);
    expect_snapshots(file, model, ids, n_snaps);
    struct qcow2_check_result r;
    if (qcow2_check(img, QCOW2_REPAIR_NONE, &r, NULL, NULL, &err) || r.corruptions ||
        r.leaks || r.check_errors)
        fuzz_fail("after %zu ops the checker finds %" PRIu64 " corruptions, %" PRIu64
                  " leaks, %" PRIu64 " errors", n_ops, r.corruptions, r.leaks, r.check_errors);
    qcow2_close(img);
    oracle_close(model);
    return 0;
}
