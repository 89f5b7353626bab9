/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What fuzz_snapshot runs over (snapshots.h): valid small images with internal snapshots,
 * one per layout, built once through the engine's own create, write and snapshot calls
 * on a memory backend; an input laid over one of them; and the snapshot operations with
 * the oracle's prediction of each.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshots.h"

/* The oracle's name for the snapshot an input applies (no engine id has a space). */
#define APPLIED "applied snapshot"

struct layout {
    const char *options;            /* qemu-img style create options */
    uint64_t size;
    unsigned snapshots;
};

static const struct layout layouts[FUZZ_SNAPSHOT_LAYOUTS] = {
    { "cluster_size=512", 128u << 10, 2 },
    { "compat=0.10,cluster_size=4k", 512u << 10, 2 },
    { "cluster_size=16k,extended_l2=on", 128u << 10, 3 },
    { "cluster_size=4k,refcount_bits=4,lazy_refcounts=on,compression_type=zstd", 256u << 10,
      2 },
};

struct base {
    uint8_t *bytes;
    size_t len;
    uint64_t table_offset;
    uint32_t nb;
    size_t table_len;               /* bytes of the valid table */
};

static struct base bases[FUZZ_SNAPSHOT_LAYOUTS];
static uint8_t window[FUZZ_SNAPSHOT_WINDOW];
static uint8_t buf[2 * FUZZ_READ_CHUNK];

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * Length of a valid snapshot table of nb entries (each padded to 8 bytes). It also
 * fixes each entry's date, so that a base (and so every input's meaning) is the same
 * from run to run.
 */
static size_t table_length(uint8_t *t, size_t avail, uint32_t nb)
{
    size_t off = 0;
    for (uint32_t i = 0; i < nb; i++) {
        if (avail - off < 40)
            fuzz_fail("base snapshot table runs past the file");
        uint8_t *e = t + off;
        put_be32(e + 16, 0x60000000u + i);  /* date_sec */
        put_be32(e + 20, 0);                /* date_nsec */
        size_t id_len = (size_t)e[12] << 8 | e[13];
        size_t name_len = (size_t)e[14] << 8 | e[15];
        size_t extra = get_be32(e + 36);
        off += (40 + extra + id_len + name_len + 7) & ~(size_t)7;
        if (off > avail)
            fuzz_fail("base snapshot table runs past the file");
    }
    return off;
}

static void build_base(unsigned i)
{
    const struct layout *l = &layouts[i];
    struct base *b = &bases[i];
    struct qcow2_error err;
    struct qcow2_backend *mem = fuzz_create_mem(l->options, l->size, 64u << 20);
    struct qcow2_open_options opts = { .writable = true };
    struct qcow2_image *img;
    if (fuzz_open_over(mem, &opts, NULL, &img))
        fuzz_fail("layout %u: cannot open the new image", i);
    uint32_t cs = 0;
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    cs = info.cluster_size;
    /* Every state differs: a few clusters of a pattern per snapshot, one compressed. */
    for (unsigned s = 0; s <= l->snapshots; s++) {
        for (unsigned k = 0; k < 3; k++) {
            uint64_t off = ((uint64_t)(s * 5u + k * 3u) * cs) % l->size;
            size_t len = cs + 1000u;
            if (off + len > l->size)
                len = (size_t)(l->size - off);
            fuzz_fill(buf, len, s * 16u + k);
            if (qcow2_pwrite(img, buf, len, off, &err))
                fuzz_fail("layout %u: write: %s", i, err.message);
        }
        uint64_t coff = (uint64_t)(s * 7u + 11u) * cs % l->size;
        fuzz_fill(buf, cs, 99u + s);
        memset(buf + cs / 2, 0, cs / 2);
        int ret = qcow2_pwrite_compressed(img, buf, cs, coff, &err);
        if (ret && ret != -EEXIST)
            fuzz_fail("layout %u: compressed write: %s", i, err.message);
        if (qcow2_pwrite_zeroes(img, (uint64_t)s * cs, cs / 2, 0, &err))
            fuzz_fail("layout %u: zero write: %s", i, err.message);
        if (s < l->snapshots) {
            char name[16];
            snprintf(name, sizeof(name), "snap%u", s);
            if (qcow2_snapshot_create(img, name, &err))
                fuzz_fail("layout %u: snapshot: %s", i, err.message);
        }
    }
    qcow2_close(img);

    b->bytes = fuzz_bytes_of(mem, &b->len);
    qcow2_backend_destroy(mem);
    b->nb = get_be32(b->bytes + 60);
    b->table_offset = get_be64(b->bytes + 64);
    if (b->nb != l->snapshots || b->table_offset == 0 || b->table_offset >= b->len)
        fuzz_fail("layout %u: %" PRIu32 " snapshots at 0x%" PRIx64, i, b->nb, b->table_offset);
    b->table_len = table_length(b->bytes + b->table_offset,
                                b->len - (size_t)b->table_offset, b->nb);
}

/* One seed per layout and operation mix, each with the layout's own valid table. */
static void write_seeds(const char *dir)
{
    static const uint8_t mixes[] = { 0x00, 0x13, 0x2a, 0x3d };
    for (unsigned i = 0; i < FUZZ_SNAPSHOT_LAYOUTS; i++) {
        for (unsigned m = 0; m < sizeof(mixes); m++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/layout%u-ops%02x", dir, i, mixes[m]);
            FILE *f = fopen(path, "wb");
            if (!f)
                fuzz_fail("cannot write %s", path);
            uint8_t head[2] = { (uint8_t)(i | mixes[m] << 2), (uint8_t)bases[i].nb };
            fwrite(head, 1, 2, f);
            fwrite(bases[i].bytes + bases[i].table_offset, 1, bases[i].table_len, f);
            fclose(f);
        }
    }
}

void fuzz_snapshot_bases_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    for (unsigned i = 0; i < FUZZ_SNAPSHOT_LAYOUTS; i++)
        build_base(i);
    const char *dir = getenv("QVET_FUZZ_SNAPSHOT_SEEDS");
    if (dir && *dir)
        write_seeds(dir);
}

/* How many snapshots have `key` as their id or their name (the last one in *out). */
static uint32_t matches(const struct qcow2_image *img, const char *key,
                        struct qcow2_snapshot_info *out)
{
    uint32_t n = qcow2_snapshot_count(img), found = 0;
    struct qcow2_snapshot_info s;
    for (uint32_t i = 0; i < n; i++)
        if (qcow2_snapshot_get(img, i, &s) == 0 && (!strcmp(s.id, key) || !strcmp(s.name, key))) {
            *out = s;
            found++;
        }
    return found;
}

/*
 * The id of the snapshot just created (named "fz"), when neither its name nor its id
 * could be mistaken for another snapshot's; NULL otherwise.
 */
static char *unique_new_id(const struct qcow2_image *img)
{
    struct qcow2_snapshot_info s, t;
    uint32_t n = matches(img, "fz", &s);
    if (n == 0)
        fuzz_fail("the snapshot just created is not listed");
    if (n > 1 || matches(img, s.id, &t) != 1)
        return NULL;
    return strdup(s.id);
}

/* Reads the first FUZZ_SNAPSHOT_WINDOW bytes of the state `snapshot` names (NULL: active). */
static int read_state(const uint8_t *img_bytes, size_t len, const char *snapshot,
                      uint64_t *vsize)
{
    struct qcow2_open_options opts = {
        .cache_bytes = FUZZ_CACHE_BYTES,
        .snapshot = snapshot,
        .open_backing = fuzz_refuse_backing,
    };
    struct qcow2_image *img;
    struct qcow2_error err;
    int ret = fuzz_open_mem(img_bytes, len, len, &opts, &img);
    if (ret)
        return ret;
    *vsize = qcow2_virtual_size(img);
    uint64_t n = *vsize < FUZZ_SNAPSHOT_WINDOW ? *vsize : FUZZ_SNAPSHOT_WINDOW;
    ret = qcow2_pread(img, window, (size_t)n, 0, &err);
    qcow2_close(img);
    return ret;
}

/*
 * The oracle's prediction of an apply: the snapshot, as its read-only view showed it
 * (`window`, view_size bytes; such a view keeps the active virtual size, an apply takes
 * the snapshot's disk_size), imported and applied. NULL if that size is not a disk's.
 */
static struct oracle *model_of_apply(const struct qcow2_image *img, uint64_t disk_size,
                                     uint64_t view_size)
{
    struct oracle *o = fuzz_oracle(img, 0, NULL, 0);
    uint64_t known = view_size < FUZZ_SNAPSHOT_WINDOW ? view_size : FUZZ_SNAPSHOT_WINDOW;
    if (known > disk_size)
        known = disk_size / ORACLE_SECTOR * ORACLE_SECTOR;
    if (oracle_snapshot_import(o, APPLIED, disk_size, window, known) ||
        oracle_snapshot_apply(o, APPLIED)) {
        oracle_close(o);
        return NULL;
    }
    return o;
}

const uint8_t *fuzz_snapshot_patched_image(struct fuzz_input *in, unsigned layout,
                                           size_t *len)
{
    const struct base *base = &bases[layout];
    uint8_t nb = fuzz_input_u8(in);
    size_t table_len;
    const uint8_t *table = fuzz_input_rest(in, &table_len);
    *len = (size_t)base->table_offset + table_len;
    if (*len < base->len)
        *len = base->len;
    /* One buffer for every run, grown as needed: a fresh large allocation per run would
     * cost more than the run (page faults). It stays reachable, so it is no leak. */
    static uint8_t *image;
    static size_t image_cap;
    if (*len > image_cap) {
        uint8_t *p = realloc(image, *len);
        if (!p)
            return NULL;
        image = p;
        image_cap = *len;
    }
    memcpy(image, base->bytes, base->len);
    if (*len > base->len)
        memset(image + base->len, 0, *len - base->len);
    if (table_len)
        memcpy(image + base->table_offset, table, table_len);
    put_be32(image + 60, nb);
    /* For triage: QVET_FUZZ_DUMP=<file> saves the image this input makes. */
    const char *dump = getenv("QVET_FUZZ_DUMP");
    FILE *f = dump && *dump ? fopen(dump, "wb") : NULL;
    if (f) {
        fwrite(image, 1, *len, f);
        fclose(f);
    }
    return image;
}

struct oracle *fuzz_snapshot_apply_one(struct qcow2_image *img, const uint8_t *image,
                                       size_t len, uint8_t ops, bool repaired, bool *all_ok)
{
    struct qcow2_error err;
    struct qcow2_snapshot_info s, named;
    qcow2_snapshot_get(img, (ops >> 1) % qcow2_snapshot_count(img), &s);
    char *key = strdup((ops & 0x20) ? s.name : s.id);
    uint64_t view_size = 0;
    struct oracle *model = NULL;
    if (key && !repaired && read_state(image, len, key, &view_size) == 0 &&
        matches(img, key, &named) == 1)
        model = model_of_apply(img, named.disk_size, view_size);
    if (!key || qcow2_snapshot_apply(img, key, &err)) {
        *all_ok = false;
        oracle_close(model);
        free(key);
        return NULL;
    }
    free(key);
    if (model)
        fuzz_expect_oracle(img, model, NULL, FUZZ_SNAPSHOT_WINDOW, "apply");
    else
        model = fuzz_oracle_now(img, FUZZ_SNAPSHOT_WINDOW); /* nothing predicted it: start here */
    uint64_t vs = qcow2_virtual_size(img);
    size_t n = vs < 4096 ? (size_t)vs : 4096;
    fuzz_fill(buf, n, ops);
    if (n && qcow2_pwrite(img, buf, n, 0, &err))
        *all_ok = false;
    else if (model && oracle_write(model, buf, n, 0, 1))
        fuzz_fail("the oracle cannot record a write of %zu bytes", n);
    return model;
}

void fuzz_snapshot_delete_one(struct qcow2_image *img, uint8_t ops, bool *all_ok)
{
    struct qcow2_error err;
    struct qcow2_snapshot_info s;
    uint32_t count = qcow2_snapshot_count(img);
    if (!count || qcow2_snapshot_get(img, (ops >> 3) % count, &s))
        return;
    char *id = strdup(s.id);
    if (id && qcow2_snapshot_delete(img, id, &err))
        *all_ok = false;
    else if (id && qcow2_snapshot_count(img) != count - 1)
        fuzz_fail("delete \"%s\": %" PRIu32 " snapshots left of %" PRIu32, id,
                  qcow2_snapshot_count(img), count);
    free(id);
}

char *fuzz_snapshot_create_one(struct qcow2_image *img, struct oracle *model, bool *all_ok)
{
    struct qcow2_error err;
    uint32_t before = qcow2_snapshot_count(img);
    char *new_id = NULL;
    if (qcow2_snapshot_create(img, "fz", &err))
        *all_ok = false;
    else if (qcow2_snapshot_count(img) != before + 1)
        fuzz_fail("create: %" PRIu32 " snapshots after, %" PRIu32 " before",
                  qcow2_snapshot_count(img), before);
    else
        new_id = unique_new_id(img);
    if (new_id && model && oracle_snapshot_create(model, new_id))
        fuzz_fail("the oracle cannot take snapshot %s", new_id);
    return new_id;
}
