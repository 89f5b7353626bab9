/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet map: range by range, merged and printed exactly as `qemu-img map` does. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

const char cmd_map_help[] =
    "usage: qvet map [-f qcow2] [--output=human|json] IMAGE[@SNAPSHOT]\n"
    "\n"
    "Prints the allocation map of IMAGE (through its backing chain), as qemu-img map does.\n"
    "\n"
    "  --output=FMT   human (the default): the ranges backed by data, with their host\n"
    "                 offsets and files; json: every range with depth, present, zero,\n"
    "                 data and offset, byte for byte what qemu-img map --output=json prints\n"
    "  -f FMT         image format; only qcow2 (the default) is accepted\n"
    "\n"
    "IMAGE@SNAPSHOT maps an internal snapshot (by id, then name) when no file of that\n"
    "name exists. The human format cannot show compressed clusters (no host offset):\n"
    "use --output=json for those.\n";

static const char *layer_name(struct qcow2_image *img, uint32_t depth)
{
    while (depth-- && qcow2_backing_image(img))
        img = qcow2_backing_image(img);
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    return info.filename;
}

/* Returns 1 (after printing the error) when the human format cannot show the entry. */
static int print_entry(enum output_format fmt, struct qcow2_image *img,
                       const struct qcow2_map_entry *e, bool more)
{
    if (fmt == OUTPUT_JSON) {
        printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %" PRIu32
               ", \"present\": %s, \"zero\": %s, \"data\": %s",
               e->start, e->length, e->depth, e->present ? "true" : "false",
               e->zero ? "true" : "false", e->data ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        fputs(more ? "},\n" : "}", stdout);
        return 0;
    }
    if (e->data && !e->has_offset) {
        struct qcow2_info info;
        qcow2_get_info(img, &info);
        return cli_fail(info.filename,
                        "compressed clusters have no host offset to show; use "
                        "--output=json");
    }
    if (e->data)
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
               e->offset, layer_name(img, e->depth));
    return 0;
}

int cmd_map(int argc, char **argv)
{
    enum output_format fmt;
    const char *image;
    if (cli_parse_output_and_image("map", argc, argv, &fmt, NULL, &image))
        return 1;
    struct qcow2_image *img;
    if (cli_open_image(image, NULL, &img))
        return 1;
    uint64_t size = qcow2_virtual_size(img);
    struct qcow2_map_entry curr = { 0 }, next;
    int status = 0;
    fputs(fmt == OUTPUT_JSON ? "[" : "Offset          Length          Mapped to       File\n",
          stdout);
    while (!status && curr.start + curr.length < size) {
        uint64_t off = curr.start + curr.length;
        struct qcow2_error err;
        if (qcow2_map_status(img, off, size - off, &next, &err)) {
            status = cli_fail_engine(&err);
            break;
        }
        if (qcow2_map_entries_mergeable(&curr, &next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length > 0)
            status = print_entry(fmt, img, &curr, true);
        curr = next;
    }
    if (!status)
        status = print_entry(fmt, img, &curr, false);
    if (!status && fmt == OUTPUT_JSON)
        fputs("]\n", stdout);
    qcow2_close(img);
    return status;
}
