/* SPDX-License-Identifier: BSD-2-Clause */
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
};

static const struct command commands[] = {
    { "info", cmd_info, "info [--output=human|json] IMAGE[@SNAPSHOT]" },
    { "map", cmd_map, "map [--output=human|json] IMAGE[@SNAPSHOT]" },
    { "cat", cmd_cat, "cat [-s SNAPSHOT] IMAGE[@SNAPSHOT]" },
    { "check", cmd_check, "check [-r leaks|all] [--output=human|json] IMAGE" },
    { "create", cmd_create, "create [-o OPTIONS] [-b BACKING [-F FMT]] IMAGE [SIZE]" },
    { "io", cmd_io, "io [-r] [-c 'read|write|discard|flush ...']... IMAGE" },
    { "snapshot", cmd_snapshot, "snapshot -l | -c NAME | -a NAME | -d NAME IMAGE" },
    { "resize", cmd_resize, "resize IMAGE [+|-]SIZE" },
    { "soak", cmd_soak, "soak [--seed S] [--ops N | --seconds T] [--size SIZE] [-o OPTIONS] "
                        "[--backing none|qcow2|raw|chain] [--check-every K] [--dir DIR] "
                        "[--trace FILE] [--weights KIND=N,...] [--io-size SIZE] [--no-qemu-checks]" },
    { "replay", cmd_replay, "replay TRACE" },
    { "minimize", cmd_minimize, "minimize TRACE -o OUT" },
};

static void print_help(FILE *f)
{
    fprintf(f, "usage: qvet COMMAND [OPTIONS] ...\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  qvet %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("usage", "no command given");
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        print_help(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(name, commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    return cli_usage("usage", "unknown command '%s'", name);
}
