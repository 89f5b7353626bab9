/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet crashtest: power-loss states of a workload, judged by qvet and QEMU. */
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
#define DEFAULT_ROOT "reports/crash"

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
    "may hold its old or its new data; every snapshot existing at that flush must read\n"
    "as it was. docs/crash-safety.md has the model and the rules the engine follows.\n"
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
    "  --max-states N     judge at most N states, 0: no bound (default 400)\n"
    "  --state N          judge only state N (what a reproduce line does)\n"
    "  --no-qemu          judge with qvet only (no qemu-img check, no convert)\n"
    "  --dir DIR          work in DIR (default: a new reports/crash/run-NNNN)\n"
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

static bool parse_count(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return *s && *s != '-' && !*end && !errno;
}

static void put_field(FILE *f, const char *key)
{
    fputs(",\n  ", f);
    json_put_string(f, key);
    fputs(": ", f);
}

static void put_text(FILE *f, const char *key, const char *value)
{
    put_field(f, key);
    json_put_string(f, value);
}

static void put_number(FILE *f, const char *key, uint64_t value)
{
    put_field(f, key);
    fprintf(f, "%" PRIu64, value);
}

/* The command line again, without --dir and --state, then --state N. */
static void put_reproduce(FILE *f, int argc, char **argv, int64_t state)
{
    put_field(f, "reproduce");
    fputs("[\"qvet\", \"crashtest\"", f);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") || !strcmp(argv[i], "--state")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--dir=", 6) || !strncmp(argv[i], "--state=", 8))
            continue;
        fputs(", ", f);
        json_put_string(f, argv[i]);
    }
    if (state >= 0)
        fprintf(f, ", \"--state\", \"%" PRId64 "\"", state);
    fputs("]", f);
}

static int write_summary(const char *dir, const struct crash_config *c,
                         const struct crash_result *r, int status, int argc, char **argv)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, RUNDIR_SUMMARY_NAME);
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    const struct crash_failure *first = r->n_failures ? &r->failures[0] : NULL;
    fputs("{\n  \"tool\": \"crashtest\"", f);
    put_text(f, "verdict", status == 0 ? "ok" : "failed");
    put_field(f, "kind");
    if (first)
        json_put_string(f, first->kind);
    else
        fputs(status == EXIT_SETUP ? "\"setup-error\"" : "null", f);
    put_text(f, "reason", first ? first->reason : r->setup_error);
    put_text(f, "target", "qvet");
    put_text(f, "config", c->options);
    put_text(f, "preset", c->preset);
    put_field(f, "backing");
    fputs(c->backing ? "\"raw\"" : "null", f);
    put_number(f, "seed", c->seed);
    put_number(f, "size", c->size);
    put_text(f, "script", c->script);
    put_reproduce(f, argc, argv, first ? (int64_t)first->state : c->only_state);
    put_number(f, "exit_status", (uint64_t)status);
    put_number(f, "ops", r->ops);
    put_number(f, "host_writes", r->writes);
    put_number(f, "host_flushes", r->flushes);
    put_number(f, "intervals", r->intervals);
    put_number(f, "states_built", r->states_built);
    put_number(f, "states_explored", r->states);
    put_field(f, "bounded");
    fputs(r->bounded ? "true" : "false", f);
    put_number(f, "states_with_leaks", r->leaky_states);
    put_number(f, "corruptions", r->corruptions);
    put_number(f, "lost_flushed_bytes", r->lost_bytes);
    put_number(f, "bad_unflushed_sectors", r->bad_sectors);
    put_text(f, "crashed_image", r->kept_image);
    put_field(f, "failures");
    fputs("[", f);
    for (size_t i = 0; i < r->n_failures; i++) {
        fprintf(f, "%s{\"state\": %" PRIu64 ", \"kind\": ", i ? ", " : "", r->failures[i].state);
        json_put_string(f, r->failures[i].kind);
        fputs(", \"reason\": ", f);
        json_put_string(f, r->failures[i].reason);
        fputs("}", f);
    }
    fputs("]\n}\n", f);
    return fclose(f) ? -errno : 0;
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

#define USAGE(...) (cli_usage("crashtest", __VA_ARGS__), EXIT_SETUP)

int cmd_crashtest(int argc, char **argv)
{
    static const struct option longopts[] = {
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
    struct crash_config c;
    crash_config_defaults(&c);
    const char *preset = "default", *dir = NULL;
    char extra[512] = "";
    uint64_t v, size = 0;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': preset = optarg; break;
        case 'o':
            if (strlen(extra) + strlen(optarg) + 2 > sizeof(extra))
                return USAGE("-o options are too long");
            if (extra[0])
                strcat(extra, ",");
            strcat(extra, optarg);
            break;
        case 'S':
            if (!parse_count(optarg, &c.seed))
                return USAGE("--seed takes a number, not '%s'", optarg);
            break;
        case 'n':
            if (!parse_count(optarg, &v) || !v || v > 100000)
                return USAGE("--ops takes a number from 1 to 100000, not '%s'", optarg);
            c.ops = (uint32_t)v;
            break;
        case 's':
            if (!qcow2_parse_size(optarg, &size) || size < 65536 || size % 65536 ||
                size > (64u << 20))
                return USAGE("--size takes a multiple of 64k from 64k to 64M, not '%s'",
                             optarg);
            break;
        case 'x':
            if (strlen(optarg) >= sizeof(c.script))
                return USAGE("--script is too long");
            strcpy(c.script, optarg);
            break;
        case 'm':
            if (!parse_count(optarg, &v) || v > 10000)
                return USAGE("--samples takes a number up to 10000, not '%s'", optarg);
            c.samples = (unsigned)v;
            break;
        case 't':
            if (!parse_count(optarg, &v) || v > 10000)
                return USAGE("--tears takes a number up to 10000, not '%s'", optarg);
            c.tears = (unsigned)v;
            break;
        case 'M':
            if (!parse_count(optarg, &c.max_states))
                return USAGE("--max-states takes a number, not '%s'", optarg);
            break;
        case 'N':
            if (!parse_count(optarg, &v) || v > INT64_MAX)
                return USAGE("--state takes a state number, not '%s'", optarg);
            c.only_state = (int64_t)v;
            break;
        case 'Q': c.qemu = false; break;
        case 'd': dir = optarg; break;
        case 'L': return list_configs();
        case 'h': fputs(cmd_crashtest_help, stdout); return 0;
        default:
            return USAGE("unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return USAGE("unexpected argument '%s'", argv[optind]);
    if (!crash_config_preset(&c, preset))
        return USAGE("no configuration '%s' (qvet crashtest --list-configs lists them)", preset);
    if (size)
        c.size = size;
    if (extra[0]) {
        if (strlen(c.options) + strlen(extra) + 2 > sizeof(c.options))
            return USAGE("-o options are too long");
        if (c.options[0])
            strcat(c.options, ",");
        strcat(c.options, extra);
    }
    struct rundir rd;
    char errbuf[700];
    int ret = dir ? rundir_claim(&rd, dir, errbuf, sizeof(errbuf))
                  : rundir_claim_numbered(&rd, DEFAULT_ROOT, errbuf, sizeof(errbuf));
    if (ret) {
        fprintf(stderr, "qvet: crashtest: %s\n", errbuf);
        return EXIT_SETUP;
    }
    snprintf(c.dir, sizeof(c.dir), "%s", rd.path);
    struct crash_result *r = malloc(sizeof(*r));
    if (!r) {
        rundir_release(&rd);
        return cli_fail(rd.path, "out of memory");
    }
    ret = crashtest_run(&c, r, stdout);
    int status = ret < 0 ? EXIT_SETUP : ret;
    if (ret < 0)
        fprintf(stderr, "qvet: crashtest: %s: %s\n", rd.path, r->setup_error);
    printf("qvet crashtest: config %s%s%s%s, seed %" PRIu64 ": %" PRIu64 " ops, %" PRIu64
           " host writes, %" PRIu64 " flushes, %" PRIu64 " intervals\n",
           c.preset, c.options[0] ? " (-o " : "", c.options, c.options[0] ? ")" : "", c.seed,
           r->ops, r->writes, r->flushes, r->intervals);
    printf("states explored %" PRIu64 " (%" PRIu64 " built%s), with leaks %" PRIu64
           ", corruptions %" PRIu64 ", lost flushed bytes %" PRIu64
           ", bad unflushed sectors %" PRIu64 "\n",
           r->states, r->states_built, r->bounded ? ", bounded by --max-states" : "",
           r->leaky_states, r->corruptions, r->lost_bytes, r->bad_sectors);
    if (write_summary(rd.path, &c, r, status, argc, argv))
        fprintf(stderr, "qvet: crashtest: %s: cannot write %s\n", rd.path, RUNDIR_SUMMARY_NAME);
    if (status == 1)
        printf("qvet crashtest: FAILED; evidence in %s (summary.json%s%s)\n", rd.path,
               r->kept_image[0] ? ", " : "", r->kept_image);
    free(r);
    rundir_release(&rd);
    return status;
}
