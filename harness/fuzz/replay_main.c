/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The replay driver: runs LLVMFuzzerTestOneInput over every file named on the command
 * line, and over every regular file inside every directory named there (recursively,
 * in name order). The normal and sanitizer builds link each fuzz target with it, so a
 * corpus or a saved crasher replays without libFuzzer or AFL++ (`make test` does this).
 *
 * Arguments starting with '-' are ignored, so a libFuzzer command line (-runs=0 ...)
 * works unchanged. Exit status: 0 when every input ran, 1 when one could not be read.
 * A crash or a sanitizer report ends the process, as it would under a fuzzer.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static unsigned long ran;
static int status;
static int verbose;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "replay: %s: out of memory\n", path);
            fclose(f);
            return -1;
        }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        uint8_t *p = realloc(buf, cap);
        if (!p)
            free(buf);
        buf = p;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(buf);
        return -1;
    }
    /* An exactly sized copy, so that ASan sees a read one byte past the input. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    if (verbose)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    ran++;
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st)) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        status = 1;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (run_file(path))
            status = 1;
        return;
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, by_name);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        status = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        /* Skip ".", "..", hidden files and the README of a regression directory. */
        if (name[0] != '.' && strcmp(name, "README.md") != 0) {
            char *child;
            if (asprintf(&child, "%s/%s", path, name) < 0) {
                status = 1;
            } else {
                run_path(child);
                free(child);
            }
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    verbose = getenv("QVET_REPLAY_VERBOSE") != NULL;
    int paths = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        paths++;
        run_path(argv[i]);
    }
    if (!paths) {
        fprintf(stderr, "usage: %s FILE|DIR...  (runs each input once)\n", argv[0]);
        return 2;
    }
    fprintf(stderr, "replay: %lu inputs ran%s\n", ran,
            status ? " (some could not be read)" : "");
    return status;
}
