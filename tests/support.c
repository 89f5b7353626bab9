/* SPDX-License-Identifier: BSD-2-Clause */
#define _GNU_SOURCE
#include "support.h"

#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static char scratch[256];
static pid_t scratch_owner;

static void remove_scratch(void)
{
    if (scratch[0] && getpid() == scratch_owner && !getenv("KEEP"))
        test_run("rm -rf '%s'", scratch);
}

const char *test_dir(void)
{
    if (!scratch[0]) {
        /* tmpfs when there is one: the suites test logic, not the disk's flush latency. */
        const char *tmp = getenv("TMPDIR");
        if (!tmp)
            tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(scratch, sizeof(scratch), "%s/qvet-test-XXXXXX", tmp);
        if (!mkdtemp(scratch)) {
            perror("mkdtemp");
            exit(2);
        }
        scratch_owner = getpid();
        atexit(remove_scratch);
    }
    return scratch;
}

const char *test_path(const char *name)
{
    static char bufs[8][512];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", test_dir(), name);
    return b;
}

int test_run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int status = system(cmd);
    if (status == -1 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

uint8_t *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *len = (size_t)n;
    return buf;
}

int test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

void test_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void test_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

void test_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint64_t test_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void test_refcount_put(uint8_t *block, uint32_t order, uint64_t index, uint64_t value)
{
    if (order < 3) {
        unsigned bits = 1u << order;
        unsigned per_byte = 8u / bits;
        unsigned shift = bits * (unsigned)(index % per_byte);
        uint8_t mask = (uint8_t)(((1u << bits) - 1u) << shift);
        uint8_t *b = &block[index / per_byte];
        *b = (uint8_t)((*b & ~mask) | (((unsigned)value << shift) & mask));
        return;
    }
    unsigned bytes = 1u << (order - 3);
    uint8_t *p = block + index * bytes;
    for (unsigned i = 0; i < bytes; i++)
        p[i] = (uint8_t)(value >> (8 * (bytes - 1 - i)));
}

char *test_read_text(const char *path)
{
    size_t len = 0;
    uint8_t *t = test_read_file(path, &len);
    char *s = t ? realloc(t, len + 1) : NULL;
    if (!s) {
        free(t);
        return NULL;
    }
    s[len] = '\0';
    return s;
}

const char *test_qvet_binary(void)
{
    static char path[PATH_MAX];
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    snprintf(path, sizeof(path), "%s/../qvet", dirname(self));
    return access(path, X_OK) == 0 ? path : NULL;
}

struct test_image_spec test_image_spec(uint32_t version, uint32_t cluster_bits, uint64_t size)
{
    struct test_image_spec s;
    memset(&s, 0, sizeof(s));
    s.version = version;
    s.cluster_bits = cluster_bits;
    s.size = size;
    s.refcount_order = 4;
    return s;
}

int test_image_build(const struct test_image_spec *spec, struct test_image *img)
{
    memset(img, 0, sizeof(*img));
    uint32_t cb = spec->cluster_bits;
    int v3 = spec->version >= 3;
    uint32_t order = v3 ? spec->refcount_order : 4;
    int ext_l2 = v3 && spec->extended_l2;
    if (cb < 9 || cb > 21 || order > 6)
        return -1;
    uint64_t cs = 1ull << cb;
    uint32_t shift = cb + cb - (ext_l2 ? 4u : 3u);
    uint64_t needed = (spec->size >> shift) + ((spec->size & ((1ull << shift) - 1)) != 0);
    if (needed > (1u << 22))
        return -1;
    uint32_t l1_size = needed ? (uint32_t)needed : 1u;
    uint64_t l1_clusters = ((uint64_t)l1_size * 8 + cs - 1) / cs;
    uint64_t clusters = 3 + l1_clusters + spec->extra_clusters;
    if (clusters > (1ull << (cb + 3 - order)))
        return -1;                      /* one refcount block must cover the file */

    uint8_t *d = calloc(clusters, cs);
    if (!d)
        return -1;
    test_put_be32(d + 0, 0x514649FBu);
    test_put_be32(d + 4, v3 ? 3 : 2);
    test_put_be32(d + 20, cb);
    test_put_be64(d + 24, spec->size);
    test_put_be32(d + 36, l1_size);
    test_put_be64(d + 40, 3 * cs);
    test_put_be64(d + 48, 1 * cs);
    test_put_be32(d + 56, 1);
    if (v3) {
        uint64_t incompat = 0;
        if (ext_l2)
            incompat |= 1ull << 4;
        if (spec->compression_type)
            incompat |= 1ull << 3;
        test_put_be64(d + 72, incompat);
        test_put_be32(d + 96, order);
        test_put_be32(d + 100, 112);
        d[104] = spec->compression_type;
    }
    test_put_be64(d + cs, 2 * cs);      /* reftable entry 0 -> the refcount block */
    for (uint64_t c = 0; c < clusters; c++)
        test_refcount_put(d + 2 * cs, order, c, 1);

    img->data = d;
    img->len = (size_t)(clusters * cs);
    img->cluster_size = (uint32_t)cs;
    img->header_length = v3 ? 112 : 72;
    img->reftable_offset = cs;
    img->refblock_offset = 2 * cs;
    img->l1_offset = 3 * cs;
    img->l1_size = l1_size;
    img->extra_offset = (3 + l1_clusters) * cs;
    return 0;
}

void test_image_free(struct test_image *img)
{
    free(img->data);
    memset(img, 0, sizeof(*img));
}

size_t test_image_put_extension(struct test_image *img, size_t off, uint32_t type,
                                const void *data, uint32_t len)
{
    uint8_t *p = img->data + off;
    test_put_be32(p, type);
    test_put_be32(p + 4, len);
    if (len)
        memcpy(p + 8, data, len);
    size_t padded = ((size_t)len + 7) & ~(size_t)7;
    memset(p + 8 + len, 0, padded - len);
    return off + 8 + padded;
}

size_t test_deflate_raw(const void *in, size_t len, void *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int ret = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return ret == Z_STREAM_END ? n : 0;
}

void test_fill_random(void *buf, size_t len, uint32_t seed)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}
