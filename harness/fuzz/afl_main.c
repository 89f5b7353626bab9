/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The AFL++ driver: persistent mode with the test case in shared memory (afl-clang-fast
 * defines the __AFL_* macros). Outside afl-fuzz the same binary reads one input from
 * standard input, which is how afl-cmin and afl-showmap run it; given file or directory
 * arguments it would be simpler to use the replay build.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#ifndef __AFL_FUZZ_TESTCASE_LEN
#error "afl_main.c is built with afl-clang-fast (or afl-clang-lto)"
#endif

__AFL_FUZZ_INIT();

/* Iterations per forked process before AFL++ starts a fresh one. */
#define PERSISTENT_ITERATIONS 10000

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    /* Warm up once before the fork server starts, so each child inherits the state a
     * target builds lazily (the snapshot target's base images). */
    static const uint8_t empty[1];
    LLVMFuzzerTestOneInput(empty, 0);
#ifdef __AFL_HAVE_MANUAL_CONTROL
    __AFL_INIT();
#endif
    unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
    while (__AFL_LOOP(PERSISTENT_ITERATIONS)) {
        size_t len = (size_t)__AFL_FUZZ_TESTCASE_LEN;
        /* An exactly sized copy, so that a read past the input is an ASan report. */
        uint8_t *copy = malloc(len ? len : 1);
        if (!copy)
            abort();
        memcpy(copy, buf, len);
        LLVMFuzzerTestOneInput(copy, len);
        free(copy);
    }
    return 0;
}
