/* SPDX-License-Identifier: BSD-2-Clause */
/* qvet soak, qvet replay TRACE, qvet minimize TRACE -o OUT. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "soak.h"

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!*s || *s == '-')
        return false;
    *v = strtoull(s, &end, 10);
    return !*end;
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
        { "dir", required_argument, NULL, 'd' },
        { "trace", required_argument, NULL, 'T' },
        { "weights", required_argument, NULL, 'w' },
        { "no-qemu-checks", no_argument, NULL, 'Q' },
        { "io-size", required_argument, NULL, 'I' },
        { NULL, 0, NULL, 0 },
    };
    struct soak_config c;
    soak_config_defaults(&c);
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'S':
            if (!parse_u64(optarg, &c.seed))
                return cli_usage("soak", "--seed takes a number, not '%s'", optarg);
            break;
        case 'n':
            if (!parse_u64(optarg, &c.ops) || !c.ops)
                return cli_usage("soak", "--ops takes a positive number, not '%s'", optarg);
            c.seconds = 0;
            break;
        case 't':
            c.seconds = strtod(optarg, &end);
            if (*end || c.seconds <= 0)
                return cli_usage("soak", "--seconds takes a positive number, not '%s'", optarg);
            c.ops = 0;
            break;
        case 's':
            if (!qcow2_parse_size(optarg, &c.size) || c.size < 4096 || c.size % 512)
                return cli_usage("soak", "--size takes a multiple of 512 of at least 4k, "
                                 "not '%s'", optarg);
            break;
        case 'o':
            if (strlen(c.options) + strlen(optarg) + 2 > sizeof(c.options))
                return cli_usage("soak", "-o options are too long");
            if (c.options[0])
                strcat(c.options, ",");
            strcat(c.options, optarg);
            break;
        case 'b':
            if (!soak_backing_parse(optarg, &c.backing))
                return cli_usage("soak", "--backing takes none, qcow2, raw or chain, not '%s'",
                                 optarg);
            break;
        case 'k':
            if (!parse_u64(optarg, &c.check_every))
                return cli_usage("soak", "--check-every takes a number, not '%s'", optarg);
            break;
        case 'd':
            snprintf(c.dir, sizeof(c.dir), "%s", optarg);
            break;
        case 'T':
            snprintf(c.trace, sizeof(c.trace), "%s", optarg);
            break;
        case 'w':
            if (!soak_weights_parse(&c, optarg))
                return cli_usage("soak", "--weights takes KIND=N,... with kinds read, write, "
                                 "zero, zero-unmap, discard, write-compressed, flush, "
                                 "snapshot-create, snapshot-apply, snapshot-delete, reopen, "
                                 "resize; not '%s'", optarg);
            break;
        case 'Q':
            c.qemu_checks = false;
            break;
        case 'I':
            if (!qcow2_parse_size(optarg, &c.io_size) || !c.io_size || c.io_size > (4u << 20))
                return cli_usage("soak", "--io-size takes a size from 1 to 4M, not '%s'", optarg);
            break;
        default:
            return cli_usage("soak", "unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage("soak", "unexpected argument '%s'", argv[optind]);
    struct soak_result r;
    int ret = soak_run(&c, NULL, 0, &r, stdout);
    return ret == 0 ? 0 : 1;
}

int cmd_replay(int argc, char **argv)
{
    if (argc != 2)
        return cli_usage("replay", "expected TRACE");
    struct soak_config c;
    struct op *ops;
    size_t n;
    char errbuf[512];
    if (soak_trace_load(argv[1], &c, &ops, &n, errbuf, sizeof(errbuf)))
        return cli_fail(argv[1], "%s", strchr(errbuf, ':') ? strchr(errbuf, ':') + 2 : errbuf);
    snprintf(c.dir, sizeof(c.dir), "%s.replay", argv[1]);
    snprintf(c.trace, sizeof(c.trace), "%s/trace.txt", c.dir);
    struct soak_result r;
    int ret = soak_run(&c, ops, n, &r, stdout);
    free(ops);
    return ret == 0 ? 0 : 1;
}

int cmd_minimize(int argc, char **argv)
{
    const char *out = NULL;
    int opt;
    cli_getopt_reset();
    while ((opt = getopt(argc, argv, "o:")) != -1) {
        if (opt != 'o')
            return cli_usage("minimize", "unknown option or missing value: '%s'",
                             argv[optind - 1]);
        out = optarg;
    }
    if (optind != argc - 1 || !out)
        return cli_usage("minimize", "expected TRACE -o OUT");
    return soak_minimize(argv[optind], out, stdout) ? 1 : 0;
}
