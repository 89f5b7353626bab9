/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet soak, qvet replay TRACE, qvet minimize TRACE -o OUT. */
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rundir.h"
#include "soak.h"

/* Usage, setup and environment failures: nothing was learnt about the target. */
#define EXIT_SETUP 2
#define DEFAULT_ROOT "reports/soak"

/* cli_usage prints the one line; these commands exit 2 for it. */
#define USAGE(command, ...) (cli_usage(command, __VA_ARGS__), EXIT_SETUP)

const char cmd_soak_help[] =
    "usage: qvet soak [OPTIONS]\n"
    "\n"
    "A differential soak: a seeded stream of reads, writes, zero writes, discards,\n"
    "compressed writes, flushes, snapshot create/apply/delete, reopens and resizes on a new\n"
    "qcow2 image, each mirrored to a raw oracle. Every read is compared with the oracle;\n"
    "every --check-every ops and at the end the engine's check, qemu-img check and\n"
    "qemu-img compare (image against oracle), a read of the whole disk, qemu-img map\n"
    "against qvet map, and the snapshot table against the snapshots made (through the\n"
    "engine and qemu-img snapshot -l) run, and every snapshot is compared. A power cut\n"
    "drops every write since the last flush; the image must reopen clean and keep every\n"
    "flushed byte.\n"
    "\n"
    "  --seed N           seed of the generator; the same seed repeats the run (default 1)\n"
    "  --ops N            stop after N operations (default: no limit)\n"
    "  --seconds T        stop after T seconds of operations, cross-checks not counted\n"
    "                     (default 60; no limit when only --ops is given). Given both,\n"
    "                     the run stops at whichever limit it reaches first\n"
    "  --size SIZE        virtual size of the disk, with k/M/G (default 64M)\n"
    "  -o OPTIONS         qvet create options of the image, as qemu-img's, e.g.\n"
    "                     cluster_size=16k,extended_l2=on; may be repeated\n"
    "                     (default: qemu-img's defaults)\n"
    "  --backing KIND     none, qcow2, raw or chain (raw under qcow2): a backing file\n"
    "                     made and filled by qemu-img/qemu-io (default none)\n"
    "  --config NAME      the image settings of one entry of the configuration matrix\n"
    "                     (options, backing, size, cache); `all` runs every entry in turn,\n"
    "                     each for its slice of --seconds (and --ops), each in its own\n"
    "                     subdirectory, stopping at the first failure; `list` prints the\n"
    "                     entries (default: none, the image -o and --backing describe;\n"
    "                     make soak passes --config all unless SOAK_ARGS has -o or --backing)\n"
    "  --cache SIZE       the engine's metadata cache, with k/M (default: its 4M)\n"
    "  --hang-seconds T   an op still running after T seconds (a cross-check after 6 T) is\n"
    "                     a hang: the run stops with the op and the stack it hung in;\n"
    "                     0: no watchdog (default 10)\n"
    "  --check-every N    operations between cross-checks; 0: only at the end (default 2000)\n"
    "  --target KIND[:ARGS]  the implementation under test (default qvet, the engine):\n"
    "                     qemu[:cache=M,aio=M,discard=unmap|ignore,filter=DRIVER] (QEMU\n"
    "                     through qemu-nbd), nbd:URI (any NBD server; -o cluster_size=N,\n"
    "                     trim=on|off), exec:COMMAND (an adapter speaking qvet's protocol\n"
    "                     on stdin/stdout); ops it cannot do are left out (docs/targets.md)\n"
    "  --reader KIND[:ARGS]  a second, read-only implementation (libqcow, exec:COMMAND)\n"
    "                     that reads the whole image at every cross-check, held to the\n"
    "                     oracle as the target is (default: none)\n"
    "  --payload KIND     mixed: each op's data of one of four kinds (random, runs,\n"
    "                     low entropy, repeated sectors); or compressible: every op's\n"
    "                     sectors half one repeated word, for targets that compress\n"
    "                     every write (default mixed)\n"
    "  --weights K=N,...  relative frequency of operation kinds; the rest keep theirs\n"
    "                     (default read=300,write=300,zero=60,zero-unmap=40,discard=80,\n"
    "                     write-compressed=50,flush=30,snapshot-create=12,\n"
    "                     snapshot-apply=8,snapshot-delete=10,reopen=6,resize=10,\n"
    "                     power-cut=3,dirty-reopen=3,torn-power-cut=6)\n"
    "  --io-size SIZE     every read, write, zero and discard exactly SIZE long and\n"
    "                     aligned to it, up to 4M (default: varied lengths and offsets)\n"
    "  --no-qemu-checks   skip qemu-img check and compare (default: run them)\n"
    "  --crash-compare HOW  after a power cut, besides every sector written since the\n"
    "                     last flush: whole compares the whole disk; slice compares one\n"
    "                     eighth of it, the next each cut, so that eight cuts cover it,\n"
    "                     and the whole disk at the first cut and at every cross-check\n"
    "                     (default slice; docs/soak.md says what it gives up)\n"
    "  --under ROOT       run in a new numbered directory ROOT/run-NNNN; ROOT/latest\n"
    "                     points to it (default reports/soak)\n"
    "  --dir DIR          run in DIR instead: created if missing; an existing DIR must be\n"
    "                     empty or hold an earlier run that found no bug (its files are\n"
    "                     replaced). A DIR in use by another run is refused\n"
    "  --trace FILE       write the trace to FILE (default DIR/trace.txt)\n"
    "  --keep             keep the image, backing files and oracle of a run that found no\n"
    "                     bug (default: removed; a failed run always keeps them)\n"
    "  --heartbeat T      when output is not a terminal, a progress line every T seconds;\n"
    "                     0: none (default 10). On a terminal one status line updates\n"
    "  -f FMT             image format; only qcow2 (the default) is accepted\n"
    "  -h, --help         this text\n"
    "\n"
    "The run directory keeps trace.txt (`qvet replay` repeats the run), summary.json (the\n"
    "verdict, settings, counts, first failing op and sector, replay command and files)\n"
    "and, after a failure, the image, the oracle and its snapshot copies.\n"
    "SIGINT (Ctrl-C), SIGTERM or SIGHUP stops the run after its current op, with the\n"
    "summary line and the replay command; a second one stops it at once.\n"
    "\n"
    "Exit status: 0 passed; 1 a bug found (a read or snapshot differing from the oracle, a\n"
    "check failing, the target failing an operation or crashing); 2 usage, setup or\n"
    "environment failure (a full disk, a directory in use, qemu-img missing);\n"
    "128+N when stopped by signal N (130 for Ctrl-C).\n";

const char cmd_replay_help[] =
    "usage: qvet replay [--dir DIR] [--keep] TRACE\n"
    "\n"
    "Runs the operations of TRACE (written by qvet soak or qvet minimize) again, exactly,\n"
    "with its target, reader, seed, size, image options and backing, in a work\n"
    "directory: a new TRACE.replay/run-NNNN (TRACE.replay/latest points to it). A\n"
    "trace with a malformed line, an operation outside the disk or no operations is\n"
    "refused with its line number; one cut short by NUL bytes (its writer was killed)\n"
    "is replayed up to them.\n"
    "\n"
    "  --dir DIR          work in DIR instead, as qvet soak --dir\n"
    "  --keep             keep the work directory after a pass (default: removed;\n"
    "                     after a failure it is always kept)\n"
    "  --heartbeat T      as qvet soak (default 10)\n"
    "  -f FMT             image format; only qcow2 (the default) is accepted\n"
    "  -h, --help         this text\n"
    "\n"
    "Exit status as qvet soak: 0 passed; 1 a bug found; 2 usage, a refused trace, setup\n"
    "or environment; 128+N when stopped by signal N.\n";

const char cmd_minimize_help[] =
    "usage: qvet minimize TRACE -o OUT\n"
    "\n"
    "Shrinks a failing trace by delta debugging: the fewest operations that still fail\n"
    "the same way (the same kind of failure at the same kind of operation) are written to\n"
    "OUT, a trace for qvet replay. The trial runs happen in a work directory, a new\n"
    "OUT.minimize/run-NNNN; in the end it holds a run of OUT (image, oracle, trace), and\n"
    "the report of that run is printed. SIGINT or SIGTERM stops early and writes the\n"
    "smallest trace found so far.\n"
    "\n"
    "  -o OUT             where the minimized trace goes (required)\n"
    "  -f FMT             image format; only qcow2 (the default) is accepted\n"
    "  -h, --help         this text\n"
    "\n"
    "Exit status: 0 OUT written; 2 usage, the trace passes (nothing to minimize), cannot\n"
    "be read or OUT cannot be written; 128+N when stopped by signal N (OUT holds the\n"
    "smallest trace found so far, if the first run finished).\n";

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!*s || *s == '-')
        return false;
    *v = strtoull(s, &end, 10);
    return !*end;
}

static bool parse_seconds(const char *s, double *v, bool zero_allowed)
{
    char *end;
    *v = strtod(s, &end);
    return *s && !*end && (*v > 0 || (zero_allowed && *v == 0));
}

/* The options soak and replay share. */
struct run_options {
    const char *dir;
    bool keep;
    bool heartbeat_given;
    double heartbeat;
};

#define OPTION_TAKEN (-1)
#define OPTION_OTHER (-2)

/*
 * One of the shared options (--dir, --keep, --heartbeat, --help): OPTION_TAKEN, or
 * OPTION_OTHER when `opt` is none of them, or the status to exit with (help, an error).
 */
static int run_option(const char *command, const char *help, int opt, struct run_options *o)
{
    switch (opt) {
    case 'd':
        o->dir = optarg;
        return OPTION_TAKEN;
    case 'K':
        o->keep = true;
        return OPTION_TAKEN;
    case 'H':
        if (!parse_seconds(optarg, &o->heartbeat, true))
            return USAGE(command, "--heartbeat takes a number of seconds, not '%s'", optarg);
        o->heartbeat_given = true;
        return OPTION_TAKEN;
    case 'h':
        fputs(help, stdout);
        return 0;
    case 'f':
        /* The soak's images are qcow2; -f is taken as qemu-img's tools take it. */
        return cli_parse_format(command, optarg) ? EXIT_SETUP : OPTION_TAKEN;
    default:
        return OPTION_OTHER;
    }
}

/* The tools the run needs, then its directory: exact (`dir`) or numbered under `root`. */
static int claim(const char *command, const struct soak_config *c, const char *dir,
                 const char *root, struct rundir *rd)
{
    char err[1200];
    if (!soak_tools_available(c, err, sizeof(err))) {
        fprintf(stderr, "qvet %s: %s\n", command, err);
        return EXIT_SETUP;
    }
    int ret = dir ? rundir_claim(rd, dir, err, sizeof(err))
                  : rundir_claim_numbered(rd, root, err, sizeof(err));
    if (ret) {
        fprintf(stderr, "qvet %s: %s\n", command, err);
        return EXIT_SETUP;
    }
    return 0;
}

/*
 * Runs the soak (or replay) in its claimed directory and leaves the record: the large
 * files go when no bug was found (unless `keep`); a passed replay leaves nothing.
 */
static int run_and_record(const char *command, struct rundir *rd, struct soak_config *c,
                          const struct op *replay, size_t n_replay, bool keep,
                          struct soak_result *result)
{
    snprintf(c->dir, sizeof(c->dir), "%s", rd->path);
    struct soak_result r;
    soak_run_supervised(c, replay, n_replay, &r, stdout);
    if (result)
        *result = r;
    int status = soak_exit_status(r.outcome, r.signal_number);
    if (replay && r.outcome == SOAK_PASSED && !keep) {
        rundir_remove(rd);
        printf("replay: passed; work directory %s removed\n", rd->path);
        return status;
    }
    bool no_bug = r.outcome == SOAK_PASSED || r.outcome == SOAK_INTERRUPTED ||
                  r.outcome == SOAK_SETUP_ERROR;
    if (no_bug && !keep)
        rundir_remove_large_files(rd);
    int ret = soak_summary_write(command, rd->path, c, &r, status, no_bug && !keep, NULL, 0);
    if (ret)
        fprintf(stderr, "qvet %s: %s/%s: cannot write: %s\n", command, rd->path,
                RUNDIR_SUMMARY_NAME, strerror(-ret));
    rundir_release(rd);
    return status;
}

static int list_configs(void)
{
    size_t n;
    const struct soak_matrix_entry *e = soak_matrix(&n);
    for (size_t i = 0; i < n; i++) {
        printf("%-18s -o %s --backing %s --size %" PRIu64, e[i].name,
               e[i].options[0] ? e[i].options : "(defaults)", soak_backing_name(e[i].backing),
               e[i].size);
        if (e[i].cache_bytes)
            printf(" --cache %zu", e[i].cache_bytes);
        printf("\n");
    }
    return 0;
}

/*
 * --config all: every matrix entry in turn, each in DIR/NN-NAME for its share of the
 * limits, until one fails; DIR/summary.json lists the configurations that ran and holds
 * the last one's record (the failing one's, after a failure).
 */
static int run_matrix(struct rundir *rd, const struct soak_config *base, bool keep)
{
    size_t n;
    const struct soak_matrix_entry *e = soak_matrix(&n);
    const char *ran[64];
    struct soak_config c = *base;
    struct soak_result r = { 0 };
    int status = 0;
    uint64_t ops = 0, reads = 0, checks = 0;
    double seconds = 0;
    size_t i;
    for (i = 0; i < n && !status; i++) {
        c = *base;
        soak_matrix_apply(&c, &e[i]);
        if (base->seconds > 0)
            c.seconds = base->seconds / (double)n;
        if (base->ops)
            c.ops = base->ops / n ? base->ops / n : 1;
        char sub[600], err[1200];
        snprintf(sub, sizeof(sub), "%s/%02zu-%s", rd->path, i + 1, e[i].name);
        struct rundir srd;
        if (rundir_claim(&srd, sub, err, sizeof(err))) {
            fprintf(stderr, "qvet soak: %s\n", err);
            rundir_release(rd);
            return EXIT_SETUP;
        }
        printf("soak: config %s (%zu of %zu): %s\n", e[i].name, i + 1, n, sub);
        fflush(stdout);
        ran[i] = e[i].name;
        status = run_and_record("soak", &srd, &c, NULL, 0, keep, &r);
        ops += r.ops_run;
        reads += r.reads_compared;
        checks += r.checks_run;
        seconds += r.seconds;
    }
    if (!status)
        printf("soak: passed: all %zu configurations: %" PRIu64 " ops in %.1f s, %" PRIu64
               " reads compared, %" PRIu64 " checks run; seed %" PRIu64 "\n", n, ops, seconds,
               reads, checks, base->seed);
    else
        printf("soak: FAILED in configuration %s (%zu of %zu): %s\n", ran[i - 1], i, n,
               r.message[0] ? r.message : soak_outcome_name(r.outcome));
    /* the record of the last configuration (c->dir: where it ran, and its trace) */
    int ret = soak_summary_write("soak", rd->path, &c, &r, status, true, ran, i);
    if (ret)
        fprintf(stderr, "qvet soak: %s/%s: cannot write: %s\n", rd->path, RUNDIR_SUMMARY_NAME,
                strerror(-ret));
    rundir_release(rd);
    return status;
}

/* `qvet map` at the soak's cross-checks runs this very program. */
static void set_qvet_command(void)
{
    char self[512];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len > 0) {
        self[len] = '\0';
        soak_set_qvet_command(self);
    }
}

int cmd_soak(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "seed", required_argument, NULL, 'S' },
        { "ops", required_argument, NULL, 'n' },
        { "seconds", required_argument, NULL, 't' },
        { "size", required_argument, NULL, 's' },
        { "backing", required_argument, NULL, 'b' },
        { "check-every", required_argument, NULL, 'k' },
        { "target", required_argument, NULL, 'g' },
        { "reader", required_argument, NULL, 'r' },
        { "payload", required_argument, NULL, 'P' },
        { "dir", required_argument, NULL, 'd' },
        { "under", required_argument, NULL, 'U' },
        { "trace", required_argument, NULL, 'T' },
        { "weights", required_argument, NULL, 'w' },
        { "no-qemu-checks", no_argument, NULL, 'Q' },
        { "crash-compare", required_argument, NULL, 'X' },
        { "io-size", required_argument, NULL, 'I' },
        { "keep", no_argument, NULL, 'K' },
        { "heartbeat", required_argument, NULL, 'H' },
        { "config", required_argument, NULL, 'C' },
        { "cache", required_argument, NULL, 'M' },
        { "hang-seconds", required_argument, NULL, 'W' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    set_qvet_command();
    struct soak_config c;
    soak_config_defaults(&c);
    bool matrix = false;
    uint64_t cache;
    struct run_options ro = { 0 };
    const char *root = DEFAULT_ROOT;
    bool ops_given = false, seconds_given = false, root_given = false;
    int opt, ret;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "o:hf:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'S':
            if (!parse_u64(optarg, &c.seed))
                return USAGE("soak", "--seed takes a number, not '%s'", optarg);
            break;
        case 'n':
            if (!parse_u64(optarg, &c.ops) || !c.ops)
                return USAGE("soak", "--ops takes a positive number, not '%s'", optarg);
            ops_given = true;
            break;
        case 't':
            if (!parse_seconds(optarg, &c.seconds, false))
                return USAGE("soak", "--seconds takes a positive number, not '%s'", optarg);
            seconds_given = true;
            break;
        case 's':
            if (!qcow2_parse_size(optarg, &c.size) || c.size < 4096 || c.size % 512)
                return USAGE("soak", "--size takes a multiple of 512 of at least 4k, not '%s'",
                             optarg);
            break;
        case 'o':
            if (strlen(c.options) + strlen(optarg) + 2 > sizeof(c.options))
                return USAGE("soak", "-o options are too long");
            if (c.options[0])
                strcat(c.options, ",");
            strcat(c.options, optarg);
            break;
        case 'b':
            if (!soak_backing_parse(optarg, &c.backing))
                return USAGE("soak", "--backing takes none, qcow2, raw or chain, not '%s'",
                             optarg);
            break;
        case 'g':
        case 'r':
            if (!*optarg || strlen(optarg) >= sizeof(c.target))
                return USAGE("soak", "--%s takes KIND[:ARGS] of at most %zu bytes",
                             opt == 'g' ? "target" : "reader", sizeof(c.target) - 1);
            snprintf(opt == 'g' ? c.target : c.reader, sizeof(c.target), "%s", optarg);
            break;
        case 'P':
            if (strcmp(optarg, "mixed") && strcmp(optarg, "compressible"))
                return USAGE("soak", "--payload takes mixed or compressible, not '%s'",
                             optarg);
            c.compressible_payload = !strcmp(optarg, "compressible");
            break;
        case 'k':
            if (!parse_u64(optarg, &c.check_every))
                return USAGE("soak", "--check-every takes a number, not '%s'", optarg);
            break;
        case 'U':
            root = optarg;
            root_given = true;
            break;
        case 'T':
            snprintf(c.trace, sizeof(c.trace), "%s", optarg);
            break;
        case 'w':
            if (!soak_weights_parse(&c, optarg))
                return USAGE("soak", "--weights takes KIND=N,... with kinds read, write, "
                             "zero, zero-unmap, discard, write-compressed, flush, "
                             "snapshot-create, snapshot-apply, snapshot-delete, reopen, "
                             "resize, power-cut, dirty-reopen, torn-power-cut; not '%s'",
                             optarg);
            break;
        case 'Q':
            c.qemu_checks = false;
            break;
        case 'X':
            if (strcmp(optarg, "whole") && strcmp(optarg, "slice"))
                return USAGE("soak", "--crash-compare takes whole or slice, not '%s'", optarg);
            c.crash_compare_whole = !strcmp(optarg, "whole");
            break;
        case 'C': {
            if (!strcmp(optarg, "list"))
                return list_configs();
            matrix = !strcmp(optarg, "all");
            const struct soak_matrix_entry *e = soak_matrix_find(optarg);
            if (!matrix && !e)
                return USAGE("soak", "--config takes all, list or an entry of `qvet soak "
                             "--config list`, not '%s'", optarg);
            if (e)
                soak_matrix_apply(&c, e);
            break;
        }
        case 'M':
            if (!qcow2_parse_size(optarg, &cache) || cache > SIZE_MAX)
                return USAGE("soak", "--cache takes a size, not '%s'", optarg);
            c.cache_bytes = (size_t)cache;
            break;
        case 'W':
            if (!parse_seconds(optarg, &c.hang_seconds, true))
                return USAGE("soak", "--hang-seconds takes a number of seconds, not '%s'",
                             optarg);
            break;
        case 'I':
            if (!qcow2_parse_size(optarg, &c.io_size) || !c.io_size || c.io_size > SOAK_MAX_IO)
                return USAGE("soak", "--io-size takes a size from 1 to 4M, not '%s'", optarg);
            break;
        default:
            if ((ret = run_option("soak", cmd_soak_help, opt, &ro)) == OPTION_TAKEN)
                break;
            if (ret != OPTION_OTHER)
                return ret;
            return USAGE("soak", "unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return USAGE("soak", "unexpected argument '%s'", argv[optind]);
    if (ro.dir && root_given)
        return USAGE("soak", "--dir and --under each name the run's directory: give one");
    if (ops_given && !seconds_given)
        c.seconds = 0;
    if (ro.heartbeat_given)
        c.heartbeat = ro.heartbeat;
    struct rundir rd;
    if ((ret = claim("soak", &c, ro.dir, root, &rd)))
        return ret;
    printf("soak: run directory %s\n", rd.path);
    if (matrix)
        return run_matrix(&rd, &c, ro.keep);
    return run_and_record("soak", &rd, &c, NULL, 0, ro.keep, NULL);
}

int cmd_replay(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "keep", no_argument, NULL, 'K' },
        { "heartbeat", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct run_options ro = { 0 };
    int opt, ret;
    set_qvet_command();
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "hf:", longopts, NULL)) != -1) {
        if ((ret = run_option("replay", cmd_replay_help, opt, &ro)) == OPTION_OTHER)
            return USAGE("replay", "unknown option or missing value: '%s'", argv[optind - 1]);
        if (ret != OPTION_TAKEN)
            return ret;
    }
    if (optind != argc - 1)
        return USAGE("replay", "expected one TRACE");
    const char *trace = argv[optind];
    struct soak_config c;
    struct op *ops;
    size_t n, nul_line;
    char errbuf[1200];
    if (soak_trace_load(trace, &c, &ops, &n, &nul_line, errbuf, sizeof(errbuf))) {
        fprintf(stderr, "qvet: %s\n", errbuf);
        return EXIT_SETUP;
    }
    if (nul_line)
        printf("replay: %s: line %zu: NUL bytes from here on (its writer was killed); "
               "replaying the %zu ops before them\n", trace, nul_line, n);
    if (ro.heartbeat_given)
        c.heartbeat = ro.heartbeat;
    char root[1100];
    snprintf(root, sizeof(root), "%s.replay", trace);
    struct rundir rd;
    if (!(ret = claim("replay", &c, ro.dir, root, &rd))) {
        printf("replay: %zu ops of %s, in work directory %s\n", n, trace, rd.path);
        ret = run_and_record("replay", &rd, &c, ops, n, ro.keep, NULL);
    }
    free(ops);
    return ret;
}

int cmd_minimize(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *out = NULL;
    int opt;
    set_qvet_command();
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "o:hf:", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(cmd_minimize_help, stdout);
            return 0;
        }
        if (opt == 'f') {
            if (cli_parse_format("minimize", optarg))
                return EXIT_SETUP;
            continue;
        }
        if (opt != 'o')
            return USAGE("minimize", "unknown option or missing value: '%s'",
                         argv[optind - 1]);
        out = optarg;
    }
    if (optind != argc - 1 || !out)
        return USAGE("minimize", "expected TRACE -o OUT");
    const char *trace = argv[optind];
    /* A trace that cannot be read is refused before a work directory is made for it. */
    struct soak_config c;
    struct op *ops;
    size_t n;
    char errbuf[1200];
    if (soak_trace_load(trace, &c, &ops, &n, NULL, errbuf, sizeof(errbuf))) {
        fprintf(stderr, "qvet: %s\n", errbuf);
        return EXIT_SETUP;
    }
    free(ops);
    char root[1100];
    snprintf(root, sizeof(root), "%s.minimize", out);
    struct rundir rd;
    int ret = claim("minimize", &c, NULL, root, &rd);
    if (ret)
        return ret;
    printf("minimize: work directory %s\n", rd.path);
    const volatile sig_atomic_t *stop = soak_stop_on_signals();
    switch (soak_minimize(trace, out, rd.path, stop, stdout)) {
    case MINIMIZE_DONE:
        rundir_release(&rd);
        return 0;
    case MINIMIZE_INTERRUPTED:
        rundir_remove(&rd);
        return 128 + *stop;
    case MINIMIZE_TRACE_PASSES:
        rundir_remove(&rd);
        printf("minimize: work directory %s removed\n", rd.path);
        return EXIT_SETUP;
    default:
        rundir_release(&rd);
        printf("minimize: work directory %s kept\n", rd.path);
        return EXIT_SETUP;
    }
}
