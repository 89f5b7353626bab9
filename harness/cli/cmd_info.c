/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet info: the facts `qemu-img info` shows, in its human and JSON layouts. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "cli.h"

const char cmd_info_help[] =
    "usage: qvet info [-f qcow2] [-U] [--output=human|json] [--backing-chain] IMAGE[@SNAPSHOT]\n"
    "\n"
    "Shows what `qemu-img info` shows, in the same layout: format, virtual and disk size,\n"
    "cluster size, backing file and its format, internal snapshots, persistent bitmaps\n"
    "(name, granularity, flags) and the qcow2 details (compat, compression type, lazy\n"
    "refcounts, refcount bits, corrupt and dirty bits, extended L2).\n"
    "\n"
    "  --output=json    the JSON qemu-img info --output=json prints\n"
    "  --backing-chain  every image of the backing chain, top first (a JSON array);\n"
    "                   fails, like qemu-img, when a backing file is missing or the\n"
    "                   chain loops\n"
    "  -f FMT           image format; only qcow2 (the default) is accepted\n"
    "  -U, --force-share  read even while another program (a VM) holds the image open\n"
    "                   for writing (default: refuse, as qemu-img does without -U)\n"
    "\n"
    "Without --backing-chain the backing file is not opened, so an image whose backing\n"
    "file is missing (or whose chain loops) is still shown, as qemu-img does.\n"
    "Exit status: 0, or 1 with one line 'qvet: FILE: <structure> at offset <n>: <rule>'.\n";

static const char *compat_of(const struct qcow2_info *info)
{
    return info->version == 2 ? "0.10" : "1.1";
}

static const char *bool_str(bool b)
{
    return b ? "true" : "false";
}

/* The bitmap flags QEMU names, in its order. */
static const struct {
    uint32_t bit;
    const char *name;
} bitmap_flags[] = {
    { QCOW2_BITMAP_IN_USE, "in-use" },
    { QCOW2_BITMAP_AUTO, "auto" },
};
#define BITMAP_FLAG_NAMES (sizeof(bitmap_flags) / sizeof(bitmap_flags[0]))

/* ---- human ---------------------------------------------------------------------- */

static void print_bitmaps_human(struct qcow2_image *img, uint32_t count)
{
    printf("    bitmaps:\n");
    for (uint32_t i = 0; i < count; i++) {
        struct qcow2_bitmap_info b;
        qcow2_bitmap_get(img, i, &b);
        printf("        [%" PRIu32 "]:\n            flags:\n", i);
        unsigned n = 0;
        for (size_t f = 0; f < BITMAP_FLAG_NAMES; f++)
            if (b.flags & bitmap_flags[f].bit)
                printf("                [%u]: %s\n", n++, bitmap_flags[f].name);
        printf("            name: %s\n            granularity: %" PRIu64 "\n", b.name,
               b.granularity);
    }
}

static void print_human(struct qcow2_image *img, const struct qcow2_info *info)
{
    char size[32];
    cli_format_size(size, sizeof(size), info->virtual_size);
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n",
           info->filename, info->format == QCOW2_FORMAT_RAW ? "raw" : "qcow2", size,
           info->virtual_size);
    if (info->has_allocated_size) {
        cli_format_size(size, sizeof(size), info->allocated_size);
        printf("disk size: %s\n", size);
    }
    if (info->format == QCOW2_FORMAT_RAW)
        return;
    printf("cluster_size: %" PRIu32 "\n", info->cluster_size);
    if (info->backing_name) {
        printf("backing file: %s", info->backing_name);
        if (info->backing_path && strcmp(info->backing_path, info->backing_name))
            printf(" (actual path: %s)", info->backing_path);
        printf("\n");
    }
    if (info->backing_format)
        printf("backing file format: %s\n", info->backing_format);
    if (info->snapshot_count)
        cli_print_snapshot_table(img);
    printf("Format specific information:\n    compat: %s\n", compat_of(info));
    printf("    compression type: %s\n",
           info->compression == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (info->version >= 3)
        printf("    lazy refcounts: %s\n",
               bool_str(info->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
    if (info->bitmap_count)
        print_bitmaps_human(img, info->bitmap_count);
    printf("    refcount bits: %" PRIu32 "\n", info->refcount_bits);
    if (info->version >= 3)
        printf("    corrupt: %s\n    extended l2: %s\n",
               bool_str(info->incompatible_features & QCOW2_INCOMPAT_CORRUPT),
               bool_str(info->extended_l2));
}

/* ---- JSON, laid out as QEMU's pretty printer does (4 spaces a level) --------------- */

struct json {
    int depth;
    bool first;                     /* nothing printed yet at this level */
};

/* Starts the next member or element: separator, line break, indentation. */
static void j_next(struct json *j)
{
    printf("%s%*s", j->first ? "\n" : ",\n", 4 * j->depth, "");
    j->first = false;
}

static void j_key(struct json *j, const char *key)
{
    j_next(j);
    printf("\"%s\": ", key);
}

static void j_open(struct json *j, char bracket)
{
    putchar(bracket);
    j->depth++;
    j->first = true;
}

/* "key": { or "key": [ inside an object. */
static void j_open_member(struct json *j, const char *key, char bracket)
{
    j_key(j, key);
    j_open(j, bracket);
}

/* The next element of an array, itself an object or an array. */
static void j_open_element(struct json *j, char bracket)
{
    j_next(j);
    j_open(j, bracket);
}

static void j_close(struct json *j, char bracket)
{
    j->depth--;
    printf("\n%*s%c", 4 * j->depth, "", bracket);
    j->first = false;
}

static void j_u64(struct json *j, const char *key, uint64_t v)
{
    j_key(j, key);
    printf("%" PRIu64, v);
}

static void j_bool(struct json *j, const char *key, bool v)
{
    j_key(j, key);
    fputs(bool_str(v), stdout);
}

static void j_str(struct json *j, const char *key, const char *s)
{
    j_key(j, key);
    json_put_string(stdout, s);
}

static void print_snapshots_json(struct json *j, struct qcow2_image *img, uint32_t count)
{
    j_open_member(j, "snapshots", '[');
    for (uint32_t i = 0; i < count; i++) {
        struct qcow2_snapshot_info s;
        qcow2_snapshot_get(img, i, &s);
        j_open_element(j, '{');
        if (s.has_icount && s.icount != UINT64_MAX)
            j_u64(j, "icount", s.icount);
        j_u64(j, "vm-clock-nsec", s.vm_clock_nsec % 1000000000u);
        j_str(j, "name", s.name);
        j_u64(j, "date-sec", s.date_sec);
        j_u64(j, "date-nsec", s.date_nsec);
        j_u64(j, "vm-clock-sec", s.vm_clock_nsec / 1000000000u);
        j_str(j, "id", s.id);
        j_u64(j, "vm-state-size", s.vm_state_size);
        j_close(j, '}');
    }
    j_close(j, ']');
}

static void print_bitmaps_json(struct json *j, struct qcow2_image *img, uint32_t count)
{
    j_open_member(j, "bitmaps", '[');
    for (uint32_t i = 0; i < count; i++) {
        struct qcow2_bitmap_info b;
        qcow2_bitmap_get(img, i, &b);
        j_open_element(j, '{');
        j_open_member(j, "flags", '[');
        for (size_t f = 0; f < BITMAP_FLAG_NAMES; f++) {
            if (b.flags & bitmap_flags[f].bit) {
                j_next(j);
                json_put_string(stdout, bitmap_flags[f].name);
            }
        }
        j_close(j, ']');
        j_str(j, "name", b.name);
        j_u64(j, "granularity", b.granularity);
        j_close(j, '}');
    }
    j_close(j, ']');
}

static void print_format_specific_json(struct json *j, struct qcow2_image *img,
                                       const struct qcow2_info *info)
{
    j_open_member(j, "format-specific", '{');
    j_str(j, "type", "qcow2");
    j_open_member(j, "data", '{');
    j_str(j, "compat", compat_of(info));
    j_str(j, "compression-type",
          info->compression == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (info->version >= 3)
        j_bool(j, "lazy-refcounts", info->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
    if (info->bitmap_count)
        print_bitmaps_json(j, img, info->bitmap_count);
    j_u64(j, "refcount-bits", info->refcount_bits);
    if (info->version >= 3) {
        j_bool(j, "corrupt", info->incompatible_features & QCOW2_INCOMPAT_CORRUPT);
        j_bool(j, "extended-l2", info->extended_l2);
    }
    j_close(j, '}');
    j_close(j, '}');
}

static void print_json(struct json *j, struct qcow2_image *img, const struct qcow2_info *info)
{
    bool qcow2 = info->format == QCOW2_FORMAT_QCOW2;
    j_open(j, '{');
    if (qcow2 && info->backing_format)
        j_str(j, "backing-filename-format", info->backing_format);
    if (qcow2 && info->snapshot_count)
        print_snapshots_json(j, img, info->snapshot_count);
    j_u64(j, "virtual-size", info->virtual_size);
    j_str(j, "filename", info->filename);
    if (qcow2)
        j_u64(j, "cluster-size", info->cluster_size);
    j_str(j, "format", qcow2 ? "qcow2" : "raw");
    if (info->has_allocated_size)
        j_u64(j, "actual-size", info->allocated_size);
    if (qcow2)
        print_format_specific_json(j, img, info);
    if (qcow2 && info->backing_name) {
        j_str(j, "full-backing-filename",
              info->backing_path ? info->backing_path : info->backing_name);
        j_str(j, "backing-filename", info->backing_name);
    }
    j_bool(j, "dirty-flag", qcow2 && (info->incompatible_features & QCOW2_INCOMPAT_DIRTY));
    j_close(j, '}');
}

/* ---- the command ------------------------------------------------------------------- */

/* One image of the output (the top one, or one of its chain). */
static void print_image(enum output_format fmt, struct json *j, struct qcow2_image *img)
{
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    if (fmt == OUTPUT_JSON)
        print_json(j, img, &info);
    else
        print_human(img, &info);
}

int cmd_info(int argc, char **argv)
{
    enum output_format fmt;
    bool chain, force_share;
    const char *image;
    if (cli_parse_output_and_image("info", argc, argv, &fmt, &chain, &force_share, &image))
        return 1;
    /*
     * As qemu-img: without --backing-chain the backing file is only named, not opened;
     * with it, the whole chain is opened first (a missing file or a loop fails before
     * anything is printed).
     */
    struct qcow2_open_options opts = { .no_backing = !chain, .force_share = force_share };
    struct qcow2_image *img;
    if (cli_open_image_with(image, &opts, &img))
        return 1;
    struct json j = { .depth = 0, .first = true };
    if (!chain) {
        print_image(fmt, &j, img);
    } else if (fmt == OUTPUT_JSON) {
        j_open(&j, '[');
        for (struct qcow2_image *layer = img; layer; layer = qcow2_backing_image(layer)) {
            j_next(&j);
            print_image(fmt, &j, layer);
        }
        j_close(&j, ']');
    } else {
        for (struct qcow2_image *layer = img; layer; layer = qcow2_backing_image(layer)) {
            if (layer != img)
                putchar('\n');
            print_image(fmt, &j, layer);
        }
    }
    if (fmt == OUTPUT_JSON)
        putchar('\n');
    qcow2_close(img);
    return 0;
}
