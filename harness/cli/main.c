/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The subcommand table and dispatch: `qvet CMD ...`, `qvet help [CMD]`, `qvet CMD --help`
 * (or -h), `qvet --version` (or -V). Each command's help text is defined in its own file.
 */
#include <string.h>

#include "cli.h"

#ifndef QVET_VERSION
#error "QVET_VERSION comes from CMake's project version"
#endif

const struct cli_command cli_commands[] = {
    { "info", cmd_info, "info [-f qcow2] [-U] [--output=human|json] IMAGE[@SNAPSHOT]", cmd_info_help },
    { "map", cmd_map, "map [-f qcow2] [-U] [--output=human|json] IMAGE[@SNAPSHOT]", cmd_map_help },
    { "cat", cmd_cat, "cat [-f qcow2] [-s|-l SNAPSHOT] [-U] IMAGE[@SNAPSHOT]", cmd_cat_help },
    { "check", cmd_check, "check [-f qcow2] [-U] [-r leaks|all] [--output=human|json] IMAGE", cmd_check_help },
    { "create", cmd_create,
      "create [-f qcow2] [-q] [-u] [-o OPTIONS] [-b BACKING [-F FMT]] IMAGE [SIZE]",
      cmd_create_help },
    { "io", cmd_io, "io [-r] [-f qcow2] [-c COMMAND]... [IMAGE]   (qemu-io's commands)",
      cmd_io_help },
    { "snapshot", cmd_snapshot, "snapshot [-f qcow2] [-U] -l | -c NAME | -a SNAPSHOT | -d NAME IMAGE",
      cmd_snapshot_help },
    { "resize", cmd_resize, "resize [-f qcow2] [-q] [--shrink] IMAGE [+|-]SIZE",
      cmd_resize_help },
    { "soak", cmd_soak, "soak [--seed S] [--ops N] [--seconds T] [--size SIZE] [-o OPTIONS] "
                        "[--backing none|qcow2|raw|chain] [--check-every K] [--under ROOT | "
                        "--dir DIR] [--trace FILE] [--weights KIND=N,...] [--io-size SIZE] "
                        "[--no-qemu-checks] [--crash-compare whole|slice] [--keep] [--heartbeat T]",
      cmd_soak_help },
    { "replay", cmd_replay, "replay [--dir DIR] [--keep] TRACE", cmd_replay_help },
    { "minimize", cmd_minimize, "minimize TRACE -o OUT", cmd_minimize_help },
    { "triage", cmd_triage, "triage [-o DIR] [--save] [--merge] [--history FILE] DIR...",
      cmd_triage_help },
    { "crashtest", cmd_crashtest, "crashtest [--config NAME] [-o OPTIONS] [--seed N] [--ops N] "
                                  "[--script OPS] [--samples N] [--tears N] [--max-states N] "
                                  "[--state N] [--no-qemu] [--dir DIR]",
      cmd_crashtest_help },
    { "faultinject", cmd_faultinject, "faultinject [--config NAME] [-o OPTIONS] [--seed N] "
                                      "[--ops N] [--script OPS] [--faults LIST] [--max-runs N] "
                                      "[--fail-at N] [--no-qemu] [--dir DIR]",
      cmd_faultinject_help },
};

const size_t cli_command_count = sizeof(cli_commands) / sizeof(cli_commands[0]);

void cli_print_version(void)
{
    printf("qvet version %s\n", QVET_VERSION);
}

static const struct cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < cli_command_count; i++)
        if (!strcmp(name, cli_commands[i].name))
            return &cli_commands[i];
    return NULL;
}

static void print_list(void)
{
    printf("usage: qvet COMMAND [OPTIONS] ...\n\ncommands:\n");
    for (size_t i = 0; i < cli_command_count; i++)
        printf("  qvet %s\n", cli_commands[i].usage);
    printf("\n'qvet help COMMAND' (or 'qvet COMMAND --help') explains a command's options;\n"
           "'qvet --version' prints the version.\n");
}

static bool asks_for_help(const char *arg)
{
    return !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

int cli_main(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("usage", "no command given");
    const char *name = argv[1];
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        cli_print_version();
        return 0;
    }
    if (!strcmp(name, "help") || asks_for_help(name)) {
        if (argc < 3 || asks_for_help(name)) {
            print_list();
            return 0;
        }
        const struct cli_command *c = find_command(argv[2]);
        if (!c)
            return cli_usage("help", "unknown command '%s'", argv[2]);
        fputs(c->help, stdout);
        return 0;
    }
    const struct cli_command *c = find_command(name);
    if (!c)
        return cli_usage("usage", "unknown command '%s'", name);
    if (argc > 2 && asks_for_help(argv[2])) {
        fputs(c->help, stdout);
        return 0;
    }
    return c->run(argc - 1, argv + 1);
}
