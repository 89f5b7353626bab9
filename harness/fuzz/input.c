/* SPDX-License-Identifier: BSD-2-Clause */
/* The fuzz input decoder and the verdicts (input.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"

void fuzz_input_init(struct fuzz_input *in, const uint8_t *data, size_t size)
{
    *in = (struct fuzz_input){ .data = data, .left = size, .whole = data, .size = size };
}

size_t fuzz_input_left(const struct fuzz_input *in)
{
    return in->left;
}

/* The next n (at most 8) bytes as a big-endian number; zeros past the end. */
static uint64_t take(struct fuzz_input *in, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v <<= 8;
        if (in->left) {
            v |= *in->data++;
            in->left--;
        }
    }
    return v;
}

uint8_t fuzz_input_u8(struct fuzz_input *in)
{
    return (uint8_t)take(in, 1);
}

uint16_t fuzz_input_u16(struct fuzz_input *in)
{
    return (uint16_t)take(in, 2);
}

uint32_t fuzz_input_u32(struct fuzz_input *in)
{
    return (uint32_t)take(in, 4);
}

uint64_t fuzz_input_u64(struct fuzz_input *in)
{
    return take(in, 8);
}

bool fuzz_input_bool(struct fuzz_input *in)
{
    return take(in, 1) & 1;
}

uint64_t fuzz_input_range(struct fuzz_input *in, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo;
    unsigned n = 0;
    while (n < 8 && span >> (8 * n))
        n++;
    uint64_t v = take(in, n);
    return span == UINT64_MAX ? v : lo + v % (span + 1);
}

const uint8_t *fuzz_input_bytes(struct fuzz_input *in, size_t n, size_t *got)
{
    const uint8_t *p = in->data;
    *got = n < in->left ? n : in->left;
    in->data += *got;
    in->left -= *got;
    return *got ? p : NULL;
}

const uint8_t *fuzz_input_rest(struct fuzz_input *in, size_t *len)
{
    return fuzz_input_bytes(in, in->left, len);
}

void fuzz_input_tail(const struct fuzz_input *in, uint8_t *out, size_t n)
{
    size_t have = in->size < n ? in->size : n;
    memset(out, 0, n - have);
    if (have)
        memcpy(out + (n - have), in->whole + (in->size - have), have);
}

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qvet fuzz invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void fuzz_debug(const char *fmt, ...)
{
    static int on = -1;
    if (on < 0)
        on = getenv("QVET_FUZZ_DEBUG") != NULL;
    if (!on)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
