/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A fuzz target with a planted bug, for the triage and nightly tests only: an input that
 * starts with the qcow2 magic and then 'X' makes it write one byte past a heap buffer.
 * The test builds it as a replay program (ASan, replay_main.c) and as a libFuzzer
 * program, as harness/fuzz/CMakeLists.txt builds the real targets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };

__attribute__((noinline)) static void planted_copy_header(const uint8_t *data)
{
    uint8_t *volatile copy = malloc(8);
    /* The planted bug: nine bytes into eight. */
    memcpy(copy, data, 9);
    free(copy);
}

__attribute__((noinline)) static void planted_parse(const uint8_t *data, size_t size)
{
    if (size >= 9 && !memcmp(data, qcow2_magic, 4) && data[4] == 'X')
        planted_copy_header(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    planted_parse(data, size);
    return 0;
}
