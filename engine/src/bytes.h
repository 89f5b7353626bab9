/* SPDX-License-Identifier: BSD-2-Clause */
/* Big-endian field access: every on-disk integer in qcow2 is big-endian. */
#ifndef QVET_BYTES_H
#define QVET_BYTES_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t be16_get(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t be32_get(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t be64_get(const uint8_t *p)
{
    return ((uint64_t)be32_get(p) << 32) | be32_get(p + 4);
}

static inline void be16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void be64_put(uint8_t *p, uint64_t v)
{
    be32_put(p, (uint32_t)(v >> 32));
    be32_put(p + 4, (uint32_t)v);
}

static inline uint64_t round_up_u64(uint64_t v, uint64_t align)
{
    return (v + align - 1) & ~(align - 1);
}

/*
 * True when n bytes starting at pos lie inside a buffer (or file) of len bytes. The only
 * safe form of the bounds test: `len - pos` alone wraps around when pos > len.
 */
static inline bool span_fits(uint64_t len, uint64_t pos, uint64_t n)
{
    return pos <= len && n <= len - pos;
}

/*
 * Whether `len` bytes (at most ZERO_RUN_BYTES) are all zero. Tables are mostly unused
 * entries: the loops over them skip ZERO_RUN_BYTES of zeros in one libc call, where one
 * iteration per entry costs much in sanitizer and coverage builds (the fuzzers').
 */
#define ZERO_RUN_BYTES 512u

static inline bool bytes_zero_run(const void *p, size_t len)
{
    static const uint8_t zeros[ZERO_RUN_BYTES];
    return memcmp(p, zeros, len) == 0;
}

#define QVET_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QVET_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
