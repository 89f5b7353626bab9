/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_header: the input is cluster 0 (or a whole small image). It is opened read-only
 * the way `qvet info` opens it (the backing file only named, not opened), then the way
 * `qvet info --backing-chain` does (the backing file asked for, and refused, so nothing
 * outside memory is touched), then tolerating what a check tolerates, and every fact
 * qcow2_get_info gives is consumed: feature bits by name, backing name and format, the
 * snapshot list, the bitmaps.
 */
#include "fuzz_common.h"

struct feature_name {
    int kind;                       /* 0 incompatible, 1 compatible, 2 autoclear */
    uint64_t bit;
    const char *name;
};

static const struct feature_name feature_names[] = {
    { 0, QCOW2_INCOMPAT_DIRTY, "dirty bit" },
    { 0, QCOW2_INCOMPAT_CORRUPT, "corrupt bit" },
    { 0, QCOW2_INCOMPAT_DATA_FILE, "external data file" },
    { 0, QCOW2_INCOMPAT_COMPRESSION, "compression type" },
    { 0, QCOW2_INCOMPAT_EXTL2, "extended L2 entries" },
    { 1, QCOW2_COMPAT_LAZY_REFCOUNTS, "lazy refcounts" },
    { 2, QCOW2_AUTOCLEAR_BITMAPS, "bitmaps" },
    { 2, QCOW2_AUTOCLEAR_DATA_FILE_RAW, "raw external data" },
};

/* Names the feature bits as `qemu-img info` would; unknown bits are named by number. */
static size_t name_features(const struct qcow2_info *info)
{
    const uint64_t words[3] = { info->incompatible_features, info->compatible_features,
                                info->autoclear_features };
    char line[128];
    size_t total = 0;
    for (int kind = 0; kind < 3; kind++) {
        for (unsigned bit = 0; bit < 64; bit++) {
            uint64_t mask = 1ull << bit;
            if (!(words[kind] & mask))
                continue;
            const char *name = NULL;
            for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
                if (feature_names[i].kind == kind && feature_names[i].bit == mask)
                    name = feature_names[i].name;
            int n = name ? snprintf(line, sizeof(line), "%s", name)
                         : snprintf(line, sizeof(line), "unknown %d bit %u", kind, bit);
            total += n > 0 ? (size_t)n : 0;
        }
    }
    return total;
}

static void inspect(const struct qcow2_image *img)
{
    size_t sum = fuzz_touch_info(img);
    struct qcow2_info info;
    if (qcow2_get_info(img, &info))
        return;
    sum += name_features(&info);
    if (info.snapshot_count != qcow2_snapshot_count(img))
        fuzz_fail("info counts %" PRIu32 " snapshots, qcow2_snapshot_count %" PRIu32,
                  info.snapshot_count, qcow2_snapshot_count(img));
    fuzz_list_snapshots(img, &sum);
    fuzz_list_bitmaps(img, &sum);
    /* Keep the compiler from dropping the reads. */
    volatile size_t sink = sum;
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (4u << 20))
        return 0;
    struct qcow2_image *img;

    /* As `qvet info` opens it: the backing file is named, not opened. */
    struct qcow2_open_options opts = {
        .format = QCOW2_FORMAT_QCOW2,
        .cache_bytes = FUZZ_CACHE_BYTES,
        .open_backing = fuzz_refuse_backing,
        .no_backing = true,
    };
    if (fuzz_open_mem(data, size, size, &opts, &img) == 0) {
        struct qcow2_info info;
        qcow2_get_info(img, &info);
        bool has_backing = info.backing_name != NULL;
        inspect(img);
        qcow2_close(img);
        /* As `--backing-chain` opens it: the backing file is asked for, and refused. */
        opts.no_backing = false;
        if (has_backing && fuzz_open_mem(data, size, size, &opts, &img) == 0) {
            inspect(img);
            qcow2_close(img);
        }
    }

    /* Ignoring the backing file and tolerating what a check tolerates. */
    opts.no_backing = true;
    opts.for_check = true;
    if (fuzz_open_mem(data, size, size, &opts, &img) == 0) {
        inspect(img);
        qcow2_close(img);
    }

    /* The same bytes as a raw image: the other format the engine opens. */
    struct qcow2_open_options raw = { .format = QCOW2_FORMAT_RAW };
    if (fuzz_open_mem(data, size, size, &raw, &img) == 0) {
        uint8_t buf[512];
        struct qcow2_error err;
        uint64_t vsize = qcow2_virtual_size(img);
        if (vsize < size)
            fuzz_fail("raw image of %zu bytes has virtual size %" PRIu64, size, vsize);
        if (vsize >= sizeof(buf)) {
            if (qcow2_pread(img, buf, sizeof(buf), vsize - sizeof(buf), &err))
                fuzz_fail("raw read failed: %s", err.message);
        }
        inspect(img);
        qcow2_close(img);
    }
    return 0;
}
