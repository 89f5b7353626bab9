/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qcow2-edit: reads and changes the header of a qcow2 image by field name, so that test
 * scripts say which field they break instead of which byte (the idea of QEMU's
 * qcow2.py, written anew). Its fields are the header codec's table (header_fields in
 * engine/src/header.c: names, offsets, widths); it does not go through the engine's
 * header decoder, which refuses what breaks a rule, and breaking rules is what this tool
 * is for. Nothing is validated beyond what the edit itself needs.
 *
 *   qcow2-edit IMAGE dump                       every field, then the extensions
 *   qcow2-edit IMAGE get FIELD                  one field, in decimal
 *   qcow2-edit IMAGE set FIELD VALUE            VALUE: decimal, 0x hex, or -N (two's
 *                                               complement in the field's width)
 *   qcow2-edit IMAGE add FIELD DELTA            FIELD += DELTA (DELTA may be negative)
 *   qcow2-edit IMAGE set-feature WORD MASK      WORD: incompatible, compatible or
 *   qcow2-edit IMAGE clear-feature WORD MASK    autoclear; sets or clears MASK's bits
 *   qcow2-edit IMAGE ext TYPE                   offset of extension TYPE's 8-byte header
 *   qcow2-edit IMAGE set-ext-len TYPE LEN       rewrites that extension's length field
 *   qcow2-edit IMAGE add-ext TYPE HEXDATA       appends an extension before the end marker
 *
 * Exit status: 0 done, 1 not possible on this image (no such extension, no room), 2
 * usage. Every failure is one line on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "header.h"

#define V2_HEADER_LENGTH 72u
#define MAX_CLUSTER0 (2u << 20)

static const struct { const char *word, *field; } feature_words[] = {
    { "incompatible", "incompatible_features" },
    { "compatible", "compatible_features" },
    { "autoclear", "autoclear_features" },
};

struct image {
    const char *path;
    FILE *f;
    uint8_t *cluster0;              /* the first min(file, cluster) bytes */
    size_t len;
};

static int complain(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int complain(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qcow2-edit: %s: ", path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static uint64_t get_be(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be(uint8_t *p, unsigned width, uint64_t v)
{
    for (unsigned i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

/* A number as the shell gives it: decimal, 0x hex, or negative decimal. */
static bool parse_number(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (text[0] == '-') {
        long long v = strtoll(text, &end, 0);
        *out = (uint64_t)v;
    } else {
        *out = strtoull(text, &end, 0);
    }
    return *text && !*end && errno == 0;
}

static int load(const char *path, struct image *img)
{
    img->path = path;
    img->f = fopen(path, "r+b");
    if (!img->f)
        return complain(path, "cannot open: %s", strerror(errno));
    img->cluster0 = calloc(1, MAX_CLUSTER0);
    if (!img->cluster0)
        return complain(path, "out of memory");
    img->len = fread(img->cluster0, 1, MAX_CLUSTER0, img->f);
    if (img->len < V2_HEADER_LENGTH)
        return complain(path, "%zu bytes: shorter than a version 2 header", img->len);
    /* Only cluster 0 is the header's; a broken cluster_bits keeps the whole buffer. */
    uint32_t cb = (uint32_t)get_be(img->cluster0 + 20, 4);
    if (cb >= 9 && cb <= 21 && img->len > (size_t)1 << cb)
        img->len = (size_t)1 << cb;
    return 0;
}

static int store(struct image *img, unsigned offset, size_t len)
{
    if (fseek(img->f, offset, SEEK_SET) ||
        fwrite(img->cluster0 + offset, 1, len, img->f) != len || fflush(img->f))
        return complain(img->path, "write of %zu bytes at offset %u failed: %s", len, offset,
                        strerror(errno));
    return 0;
}

static unsigned version_of(const struct image *img)
{
    return (unsigned)get_be(img->cluster0 + 4, 4);
}

static const struct header_field *find_field(const char *name)
{
    for (size_t i = 0; i < header_field_count; i++)
        if (!strcmp(header_fields[i].name, name))
            return &header_fields[i];
    return NULL;
}

/* The field, if the image is long enough to hold it. */
static int field_or_fail(const struct image *img, const char *name,
                         const struct header_field **out)
{
    const struct header_field *f = find_field(name);
    if (!f) {
        fprintf(stderr, "qcow2-edit: no header field \"%s\" (see the field table in "
                "tests/tools/qcow2-edit.c)\n", name);
        return 2;
    }
    if (f->offset + f->width > img->len)
        return complain(img->path, "field %s at offset %u runs past the end of the file", name,
                        f->offset);
    *out = f;
    return 0;
}

static uint64_t mask_of(unsigned width)
{
    return width == 8 ? UINT64_MAX : (1ull << (8 * width)) - 1;
}

static int set_field(struct image *img, const struct header_field *f, uint64_t value)
{
    put_be(img->cluster0 + f->offset, f->width, value & mask_of(f->width));
    return store(img, f->offset, f->width);
}

/* Where the extensions start and where their area ends (docs/format.md §2). */
static void extension_area(const struct image *img, size_t *start, size_t *end)
{
    *start = version_of(img) >= 3 ? (size_t)get_be(img->cluster0 + 100, 4) : V2_HEADER_LENGTH;
    *end = img->len;
    uint64_t backing = get_be(img->cluster0 + 8, 8);
    if (backing && backing < *end)
        *end = (size_t)backing;
}

/* A walk over the extensions, from the start of their area. */
struct extension_walk {
    size_t off, end;
};

static struct extension_walk extensions_of(const struct image *img)
{
    struct extension_walk w;
    extension_area(img, &w.off, &w.end);
    return w;
}

/*
 * The extension at the walk's position (*at, its type and data length), and the walk
 * moved past it; false at the end marker or the end of the area (*at is then where the
 * walk stopped).
 */
static bool next_extension(const struct image *img, struct extension_walk *w, size_t *at,
                           uint32_t *type, uint32_t *len)
{
    *at = w->off;
    if (w->off + 8 > w->end)
        return false;
    *type = (uint32_t)get_be(img->cluster0 + w->off, 4);
    *len = (uint32_t)get_be(img->cluster0 + w->off + 4, 4);
    if (*type == 0)
        return false;
    w->off += 8 + (((uint64_t)*len + 7) & ~7ull);
    return true;
}

/* *at: the header of extension `type`, or with type 0 where a new one would go. */
static bool find_extension(const struct image *img, uint32_t type, size_t *at)
{
    struct extension_walk w = extensions_of(img);
    uint32_t t, len;
    while (next_extension(img, &w, at, &t, &len))
        if (t == type)
            return true;
    return type == 0;
}

static int dump(const struct image *img)
{
    unsigned version = version_of(img);
    for (size_t i = 0; i < header_field_count; i++) {
        const struct header_field *f = &header_fields[i];
        if (f->version > version || f->offset + f->width > img->len)
            continue;
        uint64_t v = get_be(img->cluster0 + f->offset, f->width);
        printf("%-24s %" PRIu64 " (0x%" PRIx64 ")\n", f->name, v, v);
    }
    struct extension_walk w = extensions_of(img);
    size_t at;
    uint32_t t, len;
    while (next_extension(img, &w, &at, &t, &len))
        printf("extension 0x%08" PRIx32 " at %zu, %" PRIu32 " bytes of data\n", t, at, len);
    return 0;
}

static int add_extension(struct image *img, uint32_t type, const char *hex)
{
    size_t n = strlen(hex);
    if (n % 2)
        return complain(img->path, "HEXDATA must have an even number of digits");
    size_t len = n / 2, padded = (len + 7) & ~(size_t)7, at, start, end;
    find_extension(img, 0, &at);
    extension_area(img, &start, &end);
    if (at + 8 + padded + 8 > end)
        return complain(img->path, "no room for %zu more bytes of extensions before offset %zu",
                        8 + padded, end);
    uint8_t *p = img->cluster0 + at;
    memset(p, 0, 8 + padded + 8);
    put_be(p, 4, type);
    put_be(p + 4, 4, len);
    for (size_t i = 0; i < len; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
            return complain(img->path, "HEXDATA: \"%.2s\" is not a hex byte", hex + 2 * i);
        p[8 + i] = (uint8_t)byte;
    }
    return store(img, (unsigned)at, 8 + padded + 8);
}

static int usage(void)
{
    fputs("usage: qcow2-edit IMAGE dump | get FIELD | set FIELD VALUE | add FIELD DELTA | "
          "set-feature WORD MASK | clear-feature WORD MASK | ext TYPE | set-ext-len TYPE LEN | "
          "add-ext TYPE HEXDATA\n", stderr);
    return 2;
}

static int run(struct image *img, int argc, char **argv)
{
    const char *cmd = argv[0];
    const struct header_field *f;
    uint64_t a = 0, b = 0;
    int ret;
    if (!strcmp(cmd, "dump") && argc == 1)
        return dump(img);
    if (!strcmp(cmd, "get") && argc == 2) {
        if ((ret = field_or_fail(img, argv[1], &f)))
            return ret;
        printf("%" PRIu64 "\n", get_be(img->cluster0 + f->offset, f->width));
        return 0;
    }
    if ((!strcmp(cmd, "set") || !strcmp(cmd, "add")) && argc == 3) {
        if (!parse_number(argv[2], &a))
            return usage();
        if ((ret = field_or_fail(img, argv[1], &f)))
            return ret;
        if (!strcmp(cmd, "add"))
            a += get_be(img->cluster0 + f->offset, f->width);
        return set_field(img, f, a);
    }
    if ((!strcmp(cmd, "set-feature") || !strcmp(cmd, "clear-feature")) && argc == 3) {
        const char *name = NULL;
        for (size_t i = 0; i < sizeof(feature_words) / sizeof(feature_words[0]); i++)
            if (!strcmp(argv[1], feature_words[i].word))
                name = feature_words[i].field;
        if (!name || !parse_number(argv[2], &a))
            return usage();
        if (version_of(img) < 3)
            return complain(img->path, "a version %u header has no feature words",
                            version_of(img));
        if ((ret = field_or_fail(img, name, &f)))
            return ret;
        uint64_t v = get_be(img->cluster0 + f->offset, f->width);
        return set_field(img, f, !strcmp(cmd, "set-feature") ? v | a : v & ~a);
    }
    if ((!strcmp(cmd, "ext") && argc == 2) || (!strcmp(cmd, "set-ext-len") && argc == 3)) {
        size_t at;
        if (!parse_number(argv[1], &a) || a > UINT32_MAX ||
            (argc == 3 && !parse_number(argv[2], &b)))
            return usage();
        if (!a || !find_extension(img, (uint32_t)a, &at))
            return complain(img->path, "no header extension 0x%08" PRIx64, a);
        if (argc == 2) {
            printf("%zu\n", at);
            return 0;
        }
        put_be(img->cluster0 + at + 4, 4, b);
        return store(img, (unsigned)at + 4, 4);
    }
    if (!strcmp(cmd, "add-ext") && argc == 3) {
        if (!parse_number(argv[1], &a) || !a || a > UINT32_MAX)
            return usage();
        return add_extension(img, (uint32_t)a, argv[2]);
    }
    return usage();
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    struct image img = { 0 };
    int ret = load(argv[1], &img);
    if (!ret)
        ret = run(&img, argc - 2, argv + 2);
    if (img.f && fclose(img.f) && !ret)
        ret = complain(argv[1], "close failed: %s", strerror(errno));
    free(img.cluster0);
    return ret;
}
