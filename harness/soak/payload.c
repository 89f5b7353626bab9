/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Payloads are computed from (op, sector), never stored: any sector's expected content
 * and its author can be rebuilt from the trace alone, and data that turns up in the
 * wrong place says where it came from. Each 512-byte sector starts with a tag (magic,
 * op, sector), followed by a body of one of four kinds, chosen by the op's number so that
 * compressed clusters come in every size: a pseudo-random stream seeded from op and
 * sector (incompressible), runs of a few bytes, a low-entropy stream (four symbols), and
 * a body shared by every sector of the op (repeated sectors). Only the tag tells one
 * sector of a compressible op from another, and it is enough to identify it.
 */
#include <string.h>

#include "soak.h"

#define PAYLOAD_MAGIC "qvet"
#define SECTOR 512u

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/*
 * The body kinds. A run picks one per op from the op's number; `--payload compressible`
 * (for targets that compress every write, such as QEMU's compress filter) gives every op
 * a half-word body instead: the first half of each sector one 8-byte word repeated, the
 * rest random, so that a compressed cluster takes about half of one and pieces of two or
 * three writes share a host cluster.
 */
enum body_kind { BODY_RANDOM, BODY_RUNS, BODY_LOW_ENTROPY, BODY_REPEATED, BODY_KINDS,
                 BODY_HALF_WORD = BODY_KINDS };

static bool every_op_half_word;

void payload_set_compressible(bool on)
{
    every_op_half_word = on;
}

static enum body_kind body_of(uint32_t op)
{
    if (every_op_half_word)
        return BODY_HALF_WORD;
    uint64_t x = op;
    return (enum body_kind)(splitmix(&x) % BODY_KINDS);
}

static void sector_content(uint8_t *s, uint32_t op, uint64_t sector)
{
    memcpy(s, PAYLOAD_MAGIC, 4);
    for (int i = 0; i < 4; i++)
        s[4 + i] = (uint8_t)(op >> (8 * i));
    for (int i = 0; i < 8; i++)
        s[8 + i] = (uint8_t)(sector >> (8 * i));
    enum body_kind kind = body_of(op);
    uint64_t state = ((uint64_t)op << 40) ^ (kind == BODY_REPEATED ? 0 : sector);
    uint64_t v = 0;
    for (unsigned i = 16; i < SECTOR; i += 8) {
        if (kind != BODY_HALF_WORD || i == 16 || i > SECTOR / 2)
            v = splitmix(&state);
        if (kind == BODY_RUNS) {
            /* 62-byte runs of one byte each: a run costs the compressor a few bits */
            memset(s + i, (int)(uint8_t)(op + sector + i / 62), 8);
            continue;
        }
        if (kind == BODY_LOW_ENTROPY)
            v &= 0x0303030303030303ull;
        memcpy(s + i, &v, 8);
    }
}

void payload_fill(uint8_t *buf, uint64_t off, size_t len, uint32_t op)
{
    uint8_t s[SECTOR];
    while (len) {
        uint64_t sector = off / SECTOR;
        size_t in = (size_t)(off % SECTOR);
        size_t n = SECTOR - in < len ? SECTOR - in : len;
        /* A whole sector is built in place; only the partial ones at the ends are copied. */
        if (n == SECTOR) {
            sector_content(buf, op, sector);
        } else {
            sector_content(s, op, sector);
            memcpy(buf, s + in, n);
        }
        buf += n;
        off += n;
        len -= n;
    }
}

bool payload_identify(const uint8_t *sector, uint32_t *op, uint64_t *sector_no)
{
    if (memcmp(sector, PAYLOAD_MAGIC, 4))
        return false;
    uint32_t o = 0;
    uint64_t n = 0;
    for (int i = 0; i < 4; i++)
        o |= (uint32_t)sector[4 + i] << (8 * i);
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)sector[8 + i] << (8 * i);
    uint8_t expect[SECTOR];
    sector_content(expect, o, n);
    if (memcmp(expect, sector, SECTOR))
        return false;
    *op = o;
    *sector_no = n;
    return true;
}
