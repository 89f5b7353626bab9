/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet info: the facts `qemu-img info` shows, in its human and JSON layouts. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* QEMU's style: three significant digits, switching unit once the number reaches 1000. */
static void format_size(char *buf, size_t cap, uint64_t bytes)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1000.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%0.3g %s", v, units[u]);
}

static const char *compat_of(const struct qcow2_info *info)
{
    return info->version == 2 ? "0.10" : "1.1";
}

static const char *bool_str(bool b)
{
    return b ? "true" : "false";
}

static void print_snapshots_human(struct qcow2_image *img, uint32_t count)
{
    printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
           "VM CLOCK", "ICOUNT");
    for (uint32_t i = 0; i < count; i++) {
        struct qcow2_snapshot_info s;
        qcow2_snapshot_get(img, i, &s);
        char vm_size[32], date[32] = "", clock[32], icount[32] = "";
        format_size(vm_size, sizeof(vm_size), s.vm_state_size);
        time_t t = (time_t)s.date_sec;
        struct tm tm;
        if (localtime_r(&t, &tm))
            strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t ms = s.vm_clock_nsec / 1000000u;
        snprintf(clock, sizeof(clock), "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64,
                 ms / 3600000u, ms / 60000u % 60u, ms / 1000u % 60u, ms % 1000u);
        if (s.has_icount && s.icount != UINT64_MAX)
            snprintf(icount, sizeof(icount), "%" PRIu64, s.icount);
        printf("%-9s %-16s %8s%20s%13s%11s\n", s.id, s.name, vm_size, date, clock, icount);
    }
}

static void print_human(struct qcow2_image *img, const struct qcow2_info *info)
{
    char size[32];
    format_size(size, sizeof(size), info->virtual_size);
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n",
           info->filename, info->format == QCOW2_FORMAT_RAW ? "raw" : "qcow2", size,
           info->virtual_size);
    if (info->has_allocated_size) {
        format_size(size, sizeof(size), info->allocated_size);
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
        print_snapshots_human(img, info->snapshot_count);
    printf("Format specific information:\n    compat: %s\n", compat_of(info));
    printf("    compression type: %s\n",
           info->compression == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (info->version >= 3)
        printf("    lazy refcounts: %s\n",
               bool_str(info->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
    printf("    refcount bits: %" PRIu32 "\n", info->refcount_bits);
    if (info->version >= 3)
        printf("    corrupt: %s\n    extended l2: %s\n",
               bool_str(info->incompatible_features & QCOW2_INCOMPAT_CORRUPT),
               bool_str(info->extended_l2));
}

static void print_snapshots_json(struct qcow2_image *img, uint32_t count)
{
    printf("    \"snapshots\": [\n");
    for (uint32_t i = 0; i < count; i++) {
        struct qcow2_snapshot_info s;
        qcow2_snapshot_get(img, i, &s);
        printf("        {\n");
        if (s.has_icount && s.icount != UINT64_MAX)
            printf("            \"icount\": %" PRIu64 ",\n", s.icount);
        printf("            \"vm-clock-nsec\": %" PRIu64 ",\n            \"name\": ",
               s.vm_clock_nsec % 1000000000u);
        json_put_string(stdout, s.name);
        printf(",\n            \"date-sec\": %" PRIu32 ",\n            \"date-nsec\": %" PRIu32
               ",\n            \"vm-clock-sec\": %" PRIu64 ",\n            \"id\": ",
               s.date_sec, s.date_nsec, s.vm_clock_nsec / 1000000000u);
        json_put_string(stdout, s.id);
        printf(",\n            \"vm-state-size\": %" PRIu64 "\n        }%s\n", s.vm_state_size,
               i + 1 < count ? "," : "");
    }
    printf("    ],\n");
}

static void print_json(struct qcow2_image *img, const struct qcow2_info *info)
{
    bool qcow2 = info->format == QCOW2_FORMAT_QCOW2;
    printf("{\n");
    if (qcow2 && info->backing_format) {
        printf("    \"backing-filename-format\": ");
        json_put_string(stdout, info->backing_format);
        printf(",\n");
    }
    if (qcow2 && info->snapshot_count)
        print_snapshots_json(img, info->snapshot_count);
    printf("    \"virtual-size\": %" PRIu64 ",\n    \"filename\": ", info->virtual_size);
    json_put_string(stdout, info->filename);
    if (qcow2)
        printf(",\n    \"cluster-size\": %" PRIu32, info->cluster_size);
    printf(",\n    \"format\": \"%s\"", qcow2 ? "qcow2" : "raw");
    if (info->has_allocated_size)
        printf(",\n    \"actual-size\": %" PRIu64, info->allocated_size);
    if (!qcow2) {
        printf(",\n    \"dirty-flag\": false\n}\n");
        return;
    }
    printf(",\n    \"format-specific\": {\n        \"type\": \"qcow2\",\n        \"data\": {\n"
           "            \"compat\": \"%s\",\n            \"compression-type\": \"%s\"",
           compat_of(info), info->compression == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (info->version >= 3)
        printf(",\n            \"lazy-refcounts\": %s",
               bool_str(info->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
    printf(",\n            \"refcount-bits\": %" PRIu32, info->refcount_bits);
    if (info->version >= 3)
        printf(",\n            \"corrupt\": %s,\n            \"extended-l2\": %s",
               bool_str(info->incompatible_features & QCOW2_INCOMPAT_CORRUPT),
               bool_str(info->extended_l2));
    printf("\n        }\n    }");
    if (info->backing_name) {
        printf(",\n    \"full-backing-filename\": ");
        json_put_string(stdout, info->backing_path ? info->backing_path : info->backing_name);
        printf(",\n    \"backing-filename\": ");
        json_put_string(stdout, info->backing_name);
    }
    printf(",\n    \"dirty-flag\": %s\n}\n",
           bool_str(info->incompatible_features & QCOW2_INCOMPAT_DIRTY));
}

int cmd_info(int argc, char **argv)
{
    enum output_format fmt;
    const char *image;
    if (cli_parse_output_and_image("info", argc, argv, &fmt, &image))
        return 1;
    struct qcow2_image *img;
    if (cli_open_image(image, NULL, &img))
        return 1;
    struct qcow2_info info;
    qcow2_get_info(img, &info);
    if (fmt == OUTPUT_JSON)
        print_json(img, &info);
    else
        print_human(img, &info);
    qcow2_close(img);
    return 0;
}
