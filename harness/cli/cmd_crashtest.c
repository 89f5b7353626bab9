/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qvet crashtest (power-loss states of a workload) and qvet faultinject (every host I/O
 * failing in turn), both judged by qvet and QEMU; the logic is in harness/crash.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "crash.h"
#include "rundir.h"

#define EXIT_SETUP 2

const char cmd_crashtest_help[] =
    "usage: qvet crashtest [OPTIONS]\n"
    "\n"
    "Runs a seeded workload on a new image through a backend that records every host\n"
    "write, flush and truncate, then rebuilds the files a power loss could leave (a\n"
    "volatile write cache): the file at every flush; between two flushes, a seeded sample\n"
    "of the subsets of the writes issued since the first (never one issued after the\n"
    "second); and torn writes (a prefix, in 512-byte sectors, of one of them). Each such\n"
    "image must open read-write (a dirty image is repaired, as QEMU does), pass qvet's\n"
    "check and qemu-img check without corruption (leaks are counted, not failures), and\n"
    "read back through qvet and through qemu-img convert exactly as the oracle held the\n"
    "disk at the last guest flush that had completed, except that a sector written since\n"
    "may hold its old or its new data, and the size may be one a resize since gave the\n"
    "disk; every snapshot existing at that flush must read as it was. The workload\n"
    "grows and shrinks the disk too. docs/crash-safety.md has the model and the rules\n"
    "the engine follows.\n"
    "\n"
    "  --config NAME      image options, backing file and workload mix (default default);\n"
    "                     --list-configs shows them\n"
    "  -o OPTIONS         more qvet create options (after the config's); may be repeated\n"
    "  --seed N           seed of the workload and the sampling (default 1)\n"
    "  --ops N            length of the generated workload (default 40)\n"
    "  --size SIZE        virtual size (default: the config's)\n"
    "  --script OPS       the workload instead: ops separated by ';', as in a soak trace\n"
    "                     without numbers, e.g. 'write 0 65536; flush; discard 0 65536'\n"
    "  --samples N        random subsets per interval between flushes (default 6;\n"
    "                     intervals of up to 3 writes get every subset)\n"
    "  --tears N          torn writes per interval (default 2)\n"
    "  --max-states N     judge at most N states, shared out over the intervals between\n"
    "                     flushes (at least the state at each flush), 0: no bound\n"
    "                     (default 400)\n"
    "  --state N          judge only state N (what a reproduce line does)\n"
    "  --no-qemu          judge with qvet only (no qemu-img check, no convert)\n"
    "  --dir DIR          work in DIR (default: a new reports/crashtest/run-NNNN)\n"
    "  --list-configs     the configurations, one a line\n"
    "  -h, --help         this text\n"
    "\n"
    "Prints the states explored, how many had leaks, corruptions, lost flushed bytes and\n"
    "bad unflushed sectors. DIR/summary.json holds the verdict and figures; a failure\n"
    "keeps the first failing image (DIR/crashed-N.qcow2) and a reproduce command.\n"
    "\n"
    "Exit status: 0 no state failed; 1 a corruption, lost flushed bytes or a bad\n"
    "unflushed sector; 2 usage or setup failure (the workload itself failed, a tool is\n"
    "missing).\n";

const char cmd_faultinject_help[] =
    "usage: qvet faultinject [OPTIONS]\n"
    "\n"
    "Runs a fixed workload (the crashtest's, with reads, reopens and resizes added) again\n"
    "and again on a new image, with the Nth host I/O of a kind failing, for N = 0, 1, ...\n"
    "until a run completes without reaching it: read errors, write errors, ENOSPC, short\n"
    "writes (the first half stored) and flush errors. The op that meets the fault must\n"
    "report an error (never success), the engine must not crash; after closing and\n"
    "reopening, the\n"
    "image must open read-write, pass qvet's check and qemu-img check without corruption\n"
    "(leaks are counted), every op acknowledged before reads back, and each sector of the\n"
    "failed data op holds its old or its new data (any other op: the whole disk before\n"
    "or after it). Faults are named by the step that broke, in the engine's terms (data\n"
    "write, L2 update, L2 table allocation, refcount block update or allocation, reftable\n"
    "growth, L1 growth, snapshot table write, header update, flush; reads by what they\n"
    "read); the last line names the points not reached.\n"
    "\n"
    "  --config NAME      as qvet crashtest (--list-configs); default default\n"
    "  -o OPTIONS         more qvet create options; may be repeated\n"
    "  --seed N, --ops N, --size SIZE, --script OPS   the workload, as qvet crashtest\n"
    "                     (default 40 generated ops)\n"
    "  --faults LIST      some of read-error,write-error,enospc,short-write,flush-error\n"
    "                     (default all)\n"
    "  --max-runs N       at most N runs per kind of fault, 0: no bound (default 0)\n"
    "  --fail-at N        only the run where I/O N fails (what a reproduce line does)\n"
    "  --armed-from-op K  count (and fail) only the I/Os of op K and later: a long start\n"
    "                     runs untouched, so that a late step (reftable growth) is cheap\n"
    "  --list-configs     the configurations, one a line\n"
    "  --no-qemu          judge with qvet only\n"
    "  --dir DIR          work in DIR (default: a new reports/faultinject/run-NNNN)\n"
    "  -h, --help         this text\n"
    "\n"
    "Prints, per kind of fault, the runs, faults reached, errors returned, misreports,\n"
    "corruptions, lost acknowledged bytes and bad failed-write sectors, and where the\n"
    "faults struck. DIR/summary.json holds them (kind fault-misreport, crash-state-\n"
    "corruption, lost-acknowledged-bytes, bad-failed-write-sector on failure) and the\n"
    "first failing image is kept.\n"
    "\n"
    "Exit status: 0 every run passed; 1 a misreport, corruption or wrong data; 2 usage or\n"
    "setup failure.\n";

static bool parse_count(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return *s && *s != '-' && !*end && !errno;
}

/* The command line again, without --dir and the option naming one case, then that case. */
static void put_reproduce(FILE *f, const char *tool, int argc, char **argv, const char *option,
                          int64_t at)
{
    size_t olen = strlen(option);
    json_put_key(f, "reproduce");
    fputs("[\"qvet\", ", f);
    json_put_string(f, tool);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") || !strcmp(argv[i], option)) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--dir=", 6) || (!strncmp(argv[i], option, olen) &&
                                               argv[i][olen] == '='))
            continue;
        fputs(", ", f);
        json_put_string(f, argv[i]);
    }
    if (at >= 0)
        fprintf(f, ", \"%s\", \"%" PRId64 "\"", option, at);
    fputs("]", f);
}

/* What summary.json says of a run, around each command's own figures. */
struct summary {
    const char *tool;
    const struct crash_config *c;
    int status, argc;
    char **argv;
    const struct crash_findings *found;
    const char *repro_option;
};

/* The shared fields (PREAMBLE's convention); NULL when the file cannot be written. */
static FILE *summary_begin(const char *dir, const struct summary *sm)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, RUNDIR_SUMMARY_NAME);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    const struct crash_config *c = sm->c;
    const struct crash_findings *found = sm->found;
    const struct crash_failure *first = found->n_failures ? &found->failures[0] : NULL;
    fputs("{\n  \"tool\": ", f);
    json_put_string(f, sm->tool);
    json_put_member_string(f, "verdict", sm->status == 0 ? "ok" : "failed");
    json_put_key(f, "kind");
    if (first)
        json_put_string(f, first->kind);
    else
        fputs(sm->status == EXIT_SETUP ? "\"setup-error\"" : "null", f);
    json_put_member_string(f, "reason", first ? first->reason : found->setup_error);
    json_put_member_string(f, "target", "qvet");
    json_put_member_string(f, "config", c->options);
    json_put_member_string(f, "preset", c->preset);
    json_put_key(f, "backing");
    fputs(c->backing ? "\"raw\"" : "null", f);
    json_put_member_u64(f, "seed", c->seed);
    json_put_member_u64(f, "size", c->size);
    json_put_member_string(f, "script", c->script);
    put_reproduce(f, sm->tool, sm->argc, sm->argv, sm->repro_option,
                  first ? (int64_t)first->state : c->only_state);
    json_put_member_u64(f, "exit_status", (uint64_t)sm->status);
    json_put_member_string(f, "kept_image", found->kept_image);
    json_put_key(f, "failures");
    fputs("[", f);
    for (size_t i = 0; i < found->n_failures; i++) {
        const struct crash_failure *x = &found->failures[i];
        fprintf(f, "%s{\"at\": %" PRIu64 ", \"kind\": ", i ? ", " : "", x->state);
        json_put_string(f, x->kind);
        fputs(", \"reason\": ", f);
        json_put_string(f, x->reason);
        fputs("}", f);
    }
    fputs("]", f);
    return f;
}

static void summary_end(FILE *f, const char *dir, const struct summary *sm)
{
    if (f) {
        fputs("\n}\n", f);
        if (!fclose(f))
            return;
    }
    fprintf(stderr, "qvet: %s: %s: cannot write %s\n", sm->tool, dir, RUNDIR_SUMMARY_NAME);
}

static int list_configs(void)
{
    for (size_t i = 0; i < crash_preset_count; i++) {
        const struct crash_preset *p = &crash_presets[i];
        printf("%-18s %s%s%s%s\n", p->name, p->what, p->options[0] ? " (-o " : "",
               p->options, p->options[0] ? ")" : "");
    }
    return 0;
}

#define USAGE(cmd, ...) (cli_usage(cmd, __VA_ARGS__), EXIT_SETUP)

/* What the two commands take (each its own option table). */
struct args {
    struct crash_config c;
    const char *dir;
    unsigned fault_kinds;
};

static bool parse_fault_kinds(const char *text, unsigned *kinds)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", text);
    *kinds = 0;
    char *save = NULL;
    for (char *k = strtok_r(copy, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < FAULT_KINDS; i++)
            if (!strcmp(k, fault_kind_name((enum fault_kind)i)))
                found = i;
        if (found < 0)
            return false;
        *kinds |= 1u << found;
    }
    return *kinds != 0;
}

/* Returns -1 when parsed, else the exit status (help, a usage error). */
static int parse_args(const char *cmd, bool crash, int argc, char **argv, struct args *a)
{
    static const struct option crash_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "seed", required_argument, NULL, 'S' },
        { "ops", required_argument, NULL, 'n' },
        { "size", required_argument, NULL, 's' },
        { "script", required_argument, NULL, 'x' },
        { "samples", required_argument, NULL, 'm' },
        { "tears", required_argument, NULL, 't' },
        { "max-states", required_argument, NULL, 'M' },
        { "state", required_argument, NULL, 'N' },
        { "no-qemu", no_argument, NULL, 'Q' },
        { "dir", required_argument, NULL, 'd' },
        { "list-configs", no_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const struct option fault_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "seed", required_argument, NULL, 'S' },
        { "ops", required_argument, NULL, 'n' },
        { "size", required_argument, NULL, 's' },
        { "script", required_argument, NULL, 'x' },
        { "faults", required_argument, NULL, 'F' },
        { "max-runs", required_argument, NULL, 'R' },
        { "fail-at", required_argument, NULL, 'A' },
        { "armed-from-op", required_argument, NULL, 'O' },
        { "no-qemu", no_argument, NULL, 'Q' },
        { "dir", required_argument, NULL, 'd' },
        { "list-configs", no_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct crash_config *c = &a->c;
    crash_config_defaults(c);
    a->dir = NULL;
    a->fault_kinds = (1u << FAULT_KINDS) - 1;
    if (!crash)
        c->max_states = 0;
    const char *preset = "default";
    char extra[512] = "";
    uint64_t v, size = 0;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "o:h", crash ? crash_options : fault_options,
                              NULL)) != -1) {
        switch (opt) {
        case 'c': preset = optarg; break;
        case 'o':
            if (strlen(extra) + strlen(optarg) + 2 > sizeof(extra))
                return USAGE(cmd, "-o options are too long");
            if (extra[0])
                strcat(extra, ",");
            strcat(extra, optarg);
            break;
        case 'S':
            if (!parse_count(optarg, &c->seed))
                return USAGE(cmd, "--seed takes a number, not '%s'", optarg);
            break;
        case 'n':
            if (!parse_count(optarg, &v) || !v || v > 100000)
                return USAGE(cmd, "--ops takes a number from 1 to 100000, not '%s'", optarg);
            c->ops = (uint32_t)v;
            break;
        case 's':
            if (!qcow2_parse_size(optarg, &size) || size < 65536 || size % 65536 ||
                size > (64u << 20))
                return USAGE(cmd, "--size takes a multiple of 64k from 64k to 64M, not '%s'",
                             optarg);
            break;
        case 'x':
            if (strlen(optarg) >= sizeof(c->script))
                return USAGE(cmd, "--script is too long");
            strcpy(c->script, optarg);
            break;
        case 'm':
            if (!parse_count(optarg, &v) || v > 10000)
                return USAGE(cmd, "--samples takes a number up to 10000, not '%s'", optarg);
            c->samples = (unsigned)v;
            break;
        case 't':
            if (!parse_count(optarg, &v) || v > 10000)
                return USAGE(cmd, "--tears takes a number up to 10000, not '%s'", optarg);
            c->tears = (unsigned)v;
            break;
        case 'M':
        case 'R':
            if (!parse_count(optarg, &c->max_states))
                return USAGE(cmd, "%s takes a number, not '%s'", argv[optind - 2], optarg);
            break;
        case 'N':
        case 'A':
            if (!parse_count(optarg, &v) || v > INT64_MAX)
                return USAGE(cmd, "%s takes a number, not '%s'", argv[optind - 2], optarg);
            c->only_state = (int64_t)v;
            break;
        case 'O':
            if (!parse_count(optarg, &v) || !v || v > 100000)
                return USAGE(cmd, "--armed-from-op takes an op number from 1 to 100000, not "
                             "'%s'", optarg);
            c->armed_from_op = (uint32_t)v;
            break;
        case 'F':
            if (!parse_fault_kinds(optarg, &a->fault_kinds))
                return USAGE(cmd, "--faults takes a list of read-error, write-error, enospc, "
                             "short-write, flush-error, not '%s'", optarg);
            break;
        case 'Q': c->qemu = false; break;
        case 'd': a->dir = optarg; break;
        case 'L': return list_configs();
        case 'h': fputs(crash ? cmd_crashtest_help : cmd_faultinject_help, stdout); return 0;
        default:
            return USAGE(cmd, "unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return USAGE(cmd, "unexpected argument '%s'", argv[optind]);
    if (!crash_config_preset(c, preset))
        return USAGE(cmd, "no configuration '%s' (qvet %s --list-configs lists them)", preset,
                     cmd);
    if (size)
        c->size = size;
    if (extra[0]) {
        if (strlen(c->options) + strlen(extra) + 2 > sizeof(c->options))
            return USAGE(cmd, "-o options are too long");
        if (c->options[0])
            strcat(c->options, ",");
        strcat(c->options, extra);
    }
    return -1;
}

static int claim_dir(const char *cmd, const char *dir, struct rundir *rd)
{
    char errbuf[700];
    char root[64];
    snprintf(root, sizeof(root), "reports/%s", cmd);
    int ret = dir ? rundir_claim(rd, dir, errbuf, sizeof(errbuf))
                  : rundir_claim_numbered(rd, root, errbuf, sizeof(errbuf));
    if (ret)
        fprintf(stderr, "qvet: %s: %s\n", cmd, errbuf);
    return ret;
}

int cmd_crashtest(int argc, char **argv)
{
    struct args a;
    int status = parse_args("crashtest", true, argc, argv, &a);
    if (status >= 0)
        return status;
    struct crash_config c = a.c;
    struct rundir rd;
    if (claim_dir("crashtest", a.dir, &rd))
        return EXIT_SETUP;
    snprintf(c.dir, sizeof(c.dir), "%s", rd.path);
    struct crash_result *r = malloc(sizeof(*r));
    if (!r) {
        rundir_release(&rd);
        return cli_fail(rd.path, "out of memory");
    }
    int ret = crashtest_run(&c, r, stdout);
    status = ret < 0 ? EXIT_SETUP : ret;
    if (ret < 0)
        fprintf(stderr, "qvet: crashtest: %s: %s\n", rd.path, r->found.setup_error);
    printf("qvet crashtest: config %s%s%s%s, seed %" PRIu64 ": %" PRIu64 " ops, %" PRIu64
           " host writes, %" PRIu64 " flushes, %" PRIu64 " intervals\n",
           c.preset, c.options[0] ? " (-o " : "", c.options, c.options[0] ? ")" : "", c.seed,
           r->ops, r->writes, r->flushes, r->intervals);
    printf("states explored %" PRIu64 " (%" PRIu64 " built%s), with leaks %" PRIu64
           ", corruptions %" PRIu64 ", lost flushed bytes %" PRIu64
           ", bad unflushed sectors %" PRIu64 "\n",
           r->states, r->states_built, r->bounded ? ", bounded by --max-states" : "",
           r->leaky_states, r->corruptions, r->lost_bytes, r->bad_sectors);
    struct summary sm = {
        .tool = "crashtest", .c = &c, .status = status, .argc = argc, .argv = argv,
        .found = &r->found,
        .repro_option = "--state",
    };
    FILE *f = summary_begin(rd.path, &sm);
    if (f) {
        json_put_member_u64(f, "ops", r->ops);
        json_put_member_u64(f, "host_writes", r->writes);
        json_put_member_u64(f, "host_flushes", r->flushes);
        json_put_member_u64(f, "intervals", r->intervals);
        json_put_member_u64(f, "states_built", r->states_built);
        json_put_member_u64(f, "states_explored", r->states);
        json_put_key(f, "bounded");
        fputs(r->bounded ? "true" : "false", f);
        json_put_member_u64(f, "states_with_leaks", r->leaky_states);
        json_put_member_u64(f, "corruptions", r->corruptions);
        json_put_member_u64(f, "lost_flushed_bytes", r->lost_bytes);
        json_put_member_u64(f, "bad_unflushed_sectors", r->bad_sectors);
    }
    summary_end(f, rd.path, &sm);
    if (status == 1)
        printf("qvet crashtest: FAILED; evidence in %s (summary.json%s%s)\n", rd.path,
               r->found.kept_image[0] ? ", " : "", r->found.kept_image);
    free(r);
    rundir_release(&rd);
    return status;
}

int cmd_faultinject(int argc, char **argv)
{
    struct args a;
    int status = parse_args("faultinject", false, argc, argv, &a);
    if (status >= 0)
        return status;
    struct crash_config c = a.c;
    struct rundir rd;
    if (claim_dir("faultinject", a.dir, &rd))
        return EXIT_SETUP;
    snprintf(c.dir, sizeof(c.dir), "%s", rd.path);
    struct fault_result *r = malloc(sizeof(*r));
    if (!r) {
        rundir_release(&rd);
        return cli_fail(rd.path, "out of memory");
    }
    int ret = faultinject_run(&c, a.fault_kinds, r, stdout);
    status = ret < 0 ? EXIT_SETUP : ret;
    if (ret < 0)
        fprintf(stderr, "qvet: faultinject: %s: %s\n", rd.path, r->found.setup_error);
    printf("qvet faultinject: config %s%s%s%s, seed %" PRIu64 ": %" PRIu64 " ops\n", c.preset,
           c.options[0] ? " (-o " : "", c.options, c.options[0] ? ")" : "", c.seed, r->ops);
    for (int k = 0; k < FAULT_KINDS; k++) {
        const struct fault_figures *g = &r->kinds[k];
        if (!(a.fault_kinds & (1u << k)))
            continue;
        printf("%-12s runs %" PRIu64 ", faults reached %" PRIu64 ", errors returned %" PRIu64
               ", misreports %" PRIu64 ", corruptions %" PRIu64 ", lost acknowledged bytes %"
               PRIu64 ", bad failed-write sectors %" PRIu64 "\n", fault_kind_name(k), g->runs,
               g->fired, g->errors, g->misreports, g->corruptions, g->lost_bytes,
               g->bad_sectors);
    }
    printf("fault points:");
    for (size_t i = 0; i < r->n_points; i++)
        printf("%s %s %" PRIu64, i ? "," : "", r->points[i].name, r->points[i].count);
    printf("\nfault points not reached:");
    size_t missed = 0;
    for (size_t i = 0; fault_named_point(i); i++)
        if (!fault_point_count(r, fault_named_point(i)))
            printf("%s %s", missed++ ? "," : "", fault_named_point(i));
    printf("%s\n", missed ? "" : " none");
    struct summary sm = {
        .tool = "faultinject", .c = &c, .status = status, .argc = argc, .argv = argv,
        .found = &r->found,
        .repro_option = "--fail-at",
    };
    FILE *f = summary_begin(rd.path, &sm);
    if (f) {
        json_put_member_u64(f, "ops", r->ops);
        json_put_key(f, "faults");
        fputs("{", f);
        bool first = true;
        for (int k = 0; k < FAULT_KINDS; k++) {
            const struct fault_figures *g = &r->kinds[k];
            if (!(a.fault_kinds & (1u << k)))
                continue;
            fprintf(f, "%s\"%s\": {\"runs\": %" PRIu64 ", \"reached\": %" PRIu64
                    ", \"errors\": %" PRIu64 ", \"misreports\": %" PRIu64 ", \"corruptions\": %"
                    PRIu64 ", \"lost_acknowledged_bytes\": %" PRIu64
                    ", \"bad_failed_write_sectors\": %" PRIu64 "}", first ? "" : ", ",
                    fault_kind_name(k), g->runs, g->fired, g->errors, g->misreports,
                    g->corruptions, g->lost_bytes, g->bad_sectors);
            first = false;
        }
        fputs("}", f);
        json_put_key(f, "fault_points");
        fputs("{", f);
        for (size_t i = 0; i < r->n_points; i++) {
            fputs(i ? ", " : "", f);
            json_put_string(f, r->points[i].name);
            fprintf(f, ": %" PRIu64, r->points[i].count);
        }
        fputs("}", f);
    }
    summary_end(f, rd.path, &sm);
    if (status == 1)
        printf("qvet faultinject: FAILED; evidence in %s (summary.json%s%s)\n", rd.path,
               r->found.kept_image[0] ? ", " : "", r->found.kept_image);
    free(r);
    rundir_release(&rd);
    return status;
}
