/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qvet triage DIR...: the options and directories are checked here; the collecting,
 * reproducing, classifying, minimizing and the reports are scripts/triage.py (Python
 * standard library only; docs/triage.md says why), run by /usr/bin/python3 with this
 * program's own path in QVET so that it reruns and maps with the same qvet.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#ifndef QVET_SOURCE_DIR
#error "QVET_SOURCE_DIR comes from CMake: where scripts/triage.py is"
#endif

#define EXIT_SETUP 2
#define MAX_TRIAGE_ARGS 256

const char cmd_triage_help[] =
    "usage: qvet triage [OPTIONS] DIR...\n"
    "\n"
    "Collects the failures under each DIR (libFuzzer crash-, leak-, timeout- and oom-\n"
    "files, AFL++ crashes/ and hangs/, and every directory whose summary.json has the\n"
    "verdict failed or a soak failure verdict), reproduces each under the sanitizer\n"
    "build, classifies it, groups them by signature (kind and the top three project\n"
    "frames; for a divergence the op kind, the metadata structure and the image\n"
    "configuration class), minimizes one input per signature and writes the report:\n"
    "index.html, summary.json and one page per signature.\n"
    "\n"
    "  -o DIR             the report directory (default reports/triage/DATE-TIME; an\n"
    "                     existing non-empty DIR is refused, earlier reports are never\n"
    "                     touched)\n"
    "  --history FILE     the signature history, read and updated (default\n"
    "                     reports/triage/history.json)\n"
    "  --save             copy each new signature's minimized fuzz input into\n"
    "                     CORPUS/regressions/TARGET/ (default: do not)\n"
    "  --corpus DIR       the corpus --save adds to (default: the source tree's corpus/)\n"
    "  --merge            each DIR is a nightly shard's directory: take what its own\n"
    "                     triage found, its totals and its statistics, and make one\n"
    "                     report with the plots and the nightly's verdict line (default:\n"
    "                     DIRs are searched for failures)\n"
    "  --asan-build DIR   the sanitizer build whose fuzz replay programs and qvet\n"
    "                     reproduce the failures (default build-asan)\n"
    "  --fuzz-build DIR   the libFuzzer build for -minimize_crash, built on demand\n"
    "                     (default build-fuzz)\n"
    "  --replay-dir DIR   where the replay programs fuzz_TARGET are (default\n"
    "                     ASAN-BUILD/fuzz)\n"
    "  --libfuzzer-dir DIR  where the libFuzzer programs fuzz_TARGET are (default\n"
    "                     FUZZ-BUILD/fuzz)\n"
    "  --no-minimize      skip minimization (default: minimize)\n"
    "  -h, --help         this text\n"
    "\n"
    "Exit status: 0 no new signature; 1 a new signature (or one that came back); 2 usage\n"
    "or setup failure.\n";

static bool is_directory(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

/* Runs the script with `args` (NULL-terminated) and returns its exit status. */
static int run_script(char **args)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        fprintf(stderr, "qvet triage: /proc/self/exe: %s\n", strerror(errno));
        return EXIT_SETUP;
    }
    self[n] = '\0';
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "qvet triage: fork: %s\n", strerror(errno));
        return EXIT_SETUP;
    }
    if (pid == 0) {
        setenv("QVET", self, 1);
        execv(args[0], args);
        fprintf(stderr, "qvet triage: %s: %s\n", args[0], strerror(errno));
        _exit(EXIT_SETUP);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return EXIT_SETUP;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

int cmd_triage(int argc, char **argv)
{
    /* Every option but -o and -h goes to the script under its own long name. */
    static const struct option longopts[] = {
        { "history", required_argument, NULL, 'H' },
        { "save", no_argument, NULL, 's' },
        { "corpus", required_argument, NULL, 'c' },
        { "merge", no_argument, NULL, 'm' },
        { "asan-build", required_argument, NULL, 'a' },
        { "fuzz-build", required_argument, NULL, 'z' },
        { "replay-dir", required_argument, NULL, 'r' },
        { "libfuzzer-dir", required_argument, NULL, 'l' },
        { "no-minimize", no_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char *args[MAX_TRIAGE_ARGS];
    size_t n = 0;
    args[n++] = "/usr/bin/python3";
    args[n++] = QVET_SOURCE_DIR "/scripts/triage.py";
    int opt, index = -1;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, "o:h", longopts, &index)) != -1) {
        if (n + 3 >= MAX_TRIAGE_ARGS)
            return cli_usage("triage", "too many arguments"), EXIT_SETUP;
        if (opt == 'h') {
            fputs(cmd_triage_help, stdout);
            return 0;
        }
        if (opt == '?' || opt == ':')
            return cli_usage("triage", "unknown option or missing value: '%s'",
                             argv[optind - 1]), EXIT_SETUP;
        if ((opt == 'a' || opt == 'r' || opt == 'l' || opt == 'c') && !is_directory(optarg))
            return cli_usage("triage", "--%s %s: not a directory", longopts[index].name,
                             optarg), EXIT_SETUP;
        if (opt == 'o') {
            args[n++] = "--out";
            args[n++] = optarg;
            continue;
        }
        static char names[MAX_TRIAGE_ARGS][32];
        snprintf(names[n], sizeof(names[n]), "--%s", longopts[index].name);
        args[n] = names[n];
        n++;
        if (longopts[index].has_arg)
            args[n++] = optarg;
        index = -1;
    }
    if (optind == argc)
        return cli_usage("triage", "expected at least one DIR"), EXIT_SETUP;
    args[n++] = "--";
    for (int i = optind; i < argc; i++) {
        if (!is_directory(argv[i]))
            return cli_usage("triage", "%s: not a directory", argv[i]), EXIT_SETUP;
        if (n + 2 >= MAX_TRIAGE_ARGS)
            return cli_usage("triage", "too many directories"), EXIT_SETUP;
        args[n++] = argv[i];
    }
    args[n] = NULL;
    return run_script(args);
}
