/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet check: consistency check and repair, reported the way `qemu-img check` does. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

const char cmd_check_help[] =
    "usage: qvet check [-f qcow2] [-r leaks|all] [--output=human|json] IMAGE\n"
    "\n"
    "Recomputes every refcount from the image's own tables (L1/L2 trees of the active\n"
    "state and of every snapshot, the snapshot table, the refcount structure, bitmaps)\n"
    "and compares, as `qemu-img check` does: the same findings on stderr, the same\n"
    "report (or JSON) on stdout, the same exit status. Damaged and truncated images are\n"
    "checked, not refused: tables cut off by the end of the file read as zeros there.\n"
    "Where qemu-img refuses to open an image, qvet refuses too, with one line.\n"
    "\n"
    "  -r, --repair leaks   reclaim leaked clusters (refcounts that are too high)\n"
    "  -r, --repair all     also fix refcounts that are too low, COPIED flags, refcount blocks\n"
    "                       past the end of the file, the snapshot table; rebuild the refcount\n"
    "                       structure when it cannot be trusted\n"
    "  --output=json        the JSON qemu-img check --output=json prints\n"
    "  -f FMT               image format; only qcow2 (the default) is accepted\n"
    "\n"
    "Exit status: 0 clean, 1 the check could not be completed (or the image not opened),\n"
    "2 corruptions remain, 3 only leaked clusters remain.\n";

/* Each finding goes to stderr as it is found, like qemu-img's. */
static void print_finding(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

static void print_human(const struct qcow2_check_result *r)
{
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRIu64 " errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        if (r->leaks)
            printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n",
                   r->leaks);
        if (r->check_errors)
            printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n",
               r->allocated_clusters, r->total_clusters,
               (double)r->allocated_clusters * 100.0 / (double)r->total_clusters,
               (double)r->fragmented_clusters * 100.0 / (double)r->allocated_clusters,
               (double)r->compressed_clusters * 100.0 / (double)r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

/*
 * qemu-img 7.2 prints the QAPI ImageCheck through a QDict, so the keys come out in the
 * dictionary's hash order, and optional keys only when they are non-zero.
 */
static void print_json(const char *filename, const struct qcow2_check_result *r)
{
    enum { OPTIONAL, ALWAYS, FILENAME, FORMAT };
    const struct {
        const char *key;
        uint64_t value;
        int kind;
    } fields[] = {
        { "image-end-offset", r->image_end_offset, OPTIONAL },
        { "compressed-clusters", r->compressed_clusters, OPTIONAL },
        { "total-clusters", r->total_clusters, OPTIONAL },
        { "corruptions", r->corruptions, OPTIONAL },
        { "corruptions-fixed", r->corruptions_fixed, OPTIONAL },
        { "check-errors", r->check_errors, ALWAYS },
        { "leaks", r->leaks, OPTIONAL },
        { "leaks-fixed", r->leaks_fixed, OPTIONAL },
        { "allocated-clusters", r->allocated_clusters, OPTIONAL },
        { "filename", 0, FILENAME },
        { "format", 0, FORMAT },
        { "fragmented-clusters", r->fragmented_clusters, OPTIONAL },
    };
    const char *sep = "{\n";
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].kind == OPTIONAL && !fields[i].value)
            continue;
        printf("%s    \"%s\": ", sep, fields[i].key);
        sep = ",\n";
        if (fields[i].kind == FILENAME)
            json_put_string(stdout, filename);
        else if (fields[i].kind == FORMAT)
            printf("\"qcow2\"");
        else
            printf("%" PRIu64, fields[i].value);
    }
    printf("\n}\n");
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, 'O' },
        { "repair", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    enum output_format fmt = OUTPUT_HUMAN;
    enum qcow2_repair repair = QCOW2_REPAIR_NONE;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "r:f:", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (cli_parse_format("check", optarg))
                return 1;
            break;
        case 'O':
            if (!cli_parse_output(optarg, &fmt))
                return cli_usage("check", "--output must be human or json, not '%s'", optarg);
            break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                repair = QCOW2_REPAIR_LEAKS;
            else if (!strcmp(optarg, "all"))
                repair = QCOW2_REPAIR_ALL;
            else
                return cli_usage("check", "-r must be 'leaks' or 'all', not '%s'", optarg);
            break;
        default:
            return cli_usage("check", "unknown option or missing value: '%s'",
                             argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage("check", "expected exactly one IMAGE");
    const char *path = argv[optind];

    struct qcow2_open_options opts = {
        .for_check = true,
        .writable = repair != QCOW2_REPAIR_NONE,
    };
    struct qcow2_image *img;
    struct qcow2_error err;
    if (qcow2_open(path, &opts, &img, &err))
        return cli_fail_engine(&err);

    struct qcow2_check_result r;
    int ret = qcow2_check(img, repair, &r, print_finding, NULL, &err);
    if (ret) {
        qcow2_close(img);
        return cli_fail_engine(&err);
    }
    if (fmt == OUTPUT_JSON) {
        print_json(path, &r);
    } else {
        if (r.corruptions_fixed || r.leaks_fixed)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   r.leaks_fixed, r.corruptions_fixed);
        print_human(&r);
    }
    fflush(stdout);
    qcow2_close(img);
    if (r.check_errors)
        return cli_fail(path, "check failed: %" PRIu64 " internal errors", r.check_errors);
    return qcow2_check_exit_status(&r);
}
