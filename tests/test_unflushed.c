/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The torn power cut, both halves held to one reference: the crash shim (io_fault's TEAR
 * mode, harness/testlib/torn.h) decides what a cut leaves, the soak's record of the
 * unflushed writes (harness/soak/unflushed.h) decides what it accepts, and a false alarm
 * is any state the first can leave and the second refuses. On a raw disk (the file is
 * the guest's disk, a guest sector a file sector) random writes of every shape - single
 * bytes, unaligned spans, whole sectors, zero writes, several to one sector between two
 * flushes - go through the shim and into an oracle; after the cut every sector is held
 * to the reference model, which replays each sector's writes one by one: its states are
 * the flushed one and the one after each write that touched it. The shim must leave one
 * of them, the record must accept every one of them, and it must refuse the state no
 * power loss leaves (a later write's bytes without an earlier one's in the same sector).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "io_fault.h"
#include "oracle.h"
#include "qcow2.h"
#include "soak.h"
#include "support.h"
#include "unflushed.h"

#define SECTOR ORACLE_SECTOR
#define DISK_SECTORS 64u
#define DISK (DISK_SECTORS * SECTOR)
#define MAX_OPS 48u

struct logged {
    uint64_t off;
    size_t len;
    uint8_t data[3 * SECTOR];
};

struct rig {
    struct io_fault f;
    struct qcow2_backend *mem, *shim;
    struct oracle *o;
    struct unflushed *u;
    uint8_t flushed[DISK];          /* the disk at the last flush */
    struct logged ops[MAX_OPS];     /* the writes since then */
    unsigned n_ops;
    uint32_t op;
};

struct tally {
    unsigned torn_states;           /* sectors left between their flushed and latest state */
    unsigned refused_states;        /* unreachable states the record refused */
};

static uint64_t next(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rig_up(struct rig *r, uint64_t seed)
{
    memset(r, 0, sizeof(*r));
    io_fault_init(&r->f);
    r->f.crash = IO_FAULT_CRASH_TEAR;
    r->f.seed = seed;
    ck_assert_int_eq(qcow2_backend_mem_new(NULL, 0, DISK, &r->mem), 0);
    ck_assert_ptr_nonnull(r->shim = io_fault_wrap(r->mem, false, &r->f));
    struct oracle_facts facts = { .version = 3, .cluster_size = 65536 };
    char err[256];
    ck_assert_msg(oracle_create_mem(DISK, NULL, 0, &facts, &r->o, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_ptr_nonnull(r->u = unflushed_new());
}

static void rig_down(struct rig *r)
{
    qcow2_backend_destroy(r->shim);
    qcow2_backend_destroy(r->mem);
    io_fault_fini(&r->f);
    oracle_close(r->o);
    unflushed_free(r->u);
}

static void disk_sector(struct rig *r, uint64_t s, uint8_t *out)
{
    size_t len;
    const uint8_t *p = qcow2_backend_mem_data(r->mem, &len);
    memset(out, 0, SECTOR);
    if (s * SECTOR < len)
        memcpy(out, p + s * SECTOR, len - s * SECTOR < SECTOR ? len - s * SECTOR : SECTOR);
}

static void flush(struct rig *r)
{
    ck_assert_int_eq(r->shim->ops->flush(r->shim), 0);
    for (uint64_t s = 0; s < DISK_SECTORS; s++)
        disk_sector(r, s, r->flushed + s * SECTOR);
    unflushed_flushed(r->u, r->op);
    r->n_ops = 0;
}

/* One guest write (or zero write) as the soak issues it: record, disk, oracle, record. */
static void guest_write(struct rig *r, uint64_t off, size_t len, bool zero)
{
    struct logged *l = &r->ops[r->n_ops++];
    uint32_t op = ++r->op;
    l->off = off;
    l->len = len;
    if (zero)
        memset(l->data, 0, len);
    else
        payload_fill(l->data, off, len, op);
    ck_assert_int_eq(unflushed_before(r->u, r->o, off, len, zero), 0);
    ck_assert_int_eq(r->shim->ops->write(r->shim, l->data, len, off), 0);
    ck_assert_int_eq(zero ? oracle_zero(r->o, len, off, op)
                          : oracle_write(r->o, l->data, len, off, op), 0);
    ck_assert_int_eq(unflushed_after(r->u, r->o, off, len), 0);
}

/* A write of a random shape, in the first few sectors more often than not. */
static void random_write(struct rig *r, uint64_t *rng)
{
    uint64_t hot = next(rng) % 4 ? 4 : DISK_SECTORS - 3;
    uint64_t off = next(rng) % (hot * SECTOR);
    size_t len;
    switch (next(rng) % 4) {
    case 0: len = 1 + next(rng) % 8; break;                             /* a few bytes */
    case 1: len = 1 + next(rng) % (3 * SECTOR); break;                  /* any span */
    case 2: off -= off % SECTOR; len = SECTOR * (1 + next(rng) % 3); break;  /* sectors */
    default: len = 1 + next(rng) % 300; break;
    }
    guest_write(r, off, len, next(rng) % 5 == 0);
}

/* Sector `s` as it is after the first `upto` logged writes (0: as flushed). */
static void reference_state(const struct rig *r, uint64_t s, unsigned upto, uint8_t *out)
{
    memcpy(out, r->flushed + s * SECTOR, SECTOR);
    uint64_t start = s * SECTOR;
    for (unsigned i = 0; i < upto; i++) {
        const struct logged *l = &r->ops[i];
        uint64_t lo = l->off > start ? l->off : start;
        uint64_t hi = l->off + l->len < start + SECTOR ? l->off + l->len : start + SECTOR;
        if (lo < hi)
            memcpy(out + (lo - start), l->data + (lo - l->off), (size_t)(hi - lo));
    }
}

static bool touches(const struct logged *l, uint64_t s)
{
    return l->off < (s + 1) * SECTOR && l->off + l->len > s * SECTOR;
}

static bool acceptable(const struct rig *r, uint64_t s, const uint8_t *state,
                       const uint8_t *latest)
{
    uint32_t author;
    return unflushed_acceptable(r->u, s, state, latest, &author);
}

/* Holds one crashed disk to the reference, sector by sector. */
static void judge(struct rig *r, uint64_t seed, struct tally *t)
{
    for (uint64_t s = 0; s < DISK_SECTORS; s++) {
        uint8_t got[SECTOR], latest[SECTOR], state[SECTOR];
        disk_sector(r, s, got);
        ck_assert_int_eq(oracle_read(r->o, latest, SECTOR, s * SECTOR), 0);
        bool reachable = false;
        unsigned last_toucher = 0, touchers = 0;
        for (unsigned k = 0; k <= r->n_ops; k++) {
            if (k && !touches(&r->ops[k - 1], s))
                continue;
            if (k) {
                last_toucher = k;
                touchers++;
            }
            reference_state(r, s, k, state);
            reachable |= !memcmp(state, got, SECTOR);
            ck_assert_msg(acceptable(r, s, state, latest), "seed %llu: sector %llu after "
                          "write %u of %u is a state a power cut can leave, and the record "
                          "of unflushed writes refuses it (a false alarm)",
                          (unsigned long long)seed, (unsigned long long)s, k, r->n_ops);
        }
        ck_assert_msg(reachable, "seed %llu: the crash shim left sector %llu in a state no "
                      "prefix of its %u writes gives", (unsigned long long)seed,
                      (unsigned long long)s, touchers);
        ck_assert_msg(acceptable(r, s, got, latest), "seed %llu: the record refuses what "
                      "the shim left in sector %llu", (unsigned long long)seed,
                      (unsigned long long)s);
        t->torn_states += memcmp(got, r->flushed + s * SECTOR, SECTOR) &&
                          memcmp(got, latest, SECTOR);
        if (touchers < 2)
            continue;
        /* The last write alone over the flushed sector, without the ones before it. */
        memcpy(state, r->flushed + s * SECTOR, SECTOR);
        const struct logged *l = &r->ops[last_toucher - 1];
        uint64_t lo = l->off > s * SECTOR ? l->off : s * SECTOR;
        uint64_t hi = l->off + l->len < (s + 1) * SECTOR ? l->off + l->len : (s + 1) * SECTOR;
        memcpy(state + (lo - s * SECTOR), l->data + (lo - l->off), (size_t)(hi - lo));
        bool possible = false;
        for (unsigned k = 0; k <= r->n_ops && !possible; k++) {
            uint8_t ref[SECTOR];
            reference_state(r, s, k, ref);
            possible = !memcmp(ref, state, SECTOR);
        }
        if (possible)
            continue;
        ck_assert_msg(!acceptable(r, s, state, latest), "seed %llu: sector %llu with only "
                      "its last write's bytes is no power loss's state, and the record "
                      "accepts it", (unsigned long long)seed, (unsigned long long)s);
        t->refused_states++;
    }
}

START_TEST(a_torn_power_cut_leaves_what_the_soak_accepts_and_nothing_else)
{
    struct tally t = { 0, 0 };
    for (uint64_t seed = 1; seed <= 300; seed++) {
        struct rig *r = malloc(sizeof(*r));
        ck_assert_ptr_nonnull(r);
        rig_up(r, seed);
        uint64_t rng = seed * 7919;
        for (unsigned i = 0; i < 6; i++)
            random_write(r, &rng);
        flush(r);
        unsigned n = 2 + (unsigned)(next(&rng) % (MAX_OPS - 2));
        for (unsigned i = 0; i < n; i++)
            random_write(r, &rng);
        io_fault_crash_now(&r->f);
        judge(r, seed, &t);
        rig_down(r);
        free(r);
    }
    /* The test proves something only if the cuts tore and the refusals were tried. */
    ck_assert_msg(t.torn_states >= 100, "only %u sectors were left between their flushed "
                  "and latest states", t.torn_states);
    ck_assert_msg(t.refused_states >= 100, "only %u unreachable states were put to the record",
                  t.refused_states);
}
END_TEST

/* Two writes of a few bytes into one sector: the second never lands without the first. */
START_TEST(a_later_write_to_a_sector_carries_the_earlier_ones)
{
    bool second_landed = false, first_only = false, neither = false;
    for (uint64_t seed = 0; seed < 64; seed++) {
        struct rig *r = malloc(sizeof(*r));
        ck_assert_ptr_nonnull(r);
        rig_up(r, seed);
        flush(r);
        guest_write(r, 100, 1, false);
        guest_write(r, 200, 1, false);
        ck_assert(r->ops[0].data[0] && r->ops[1].data[0]);  /* both differ from the zeros */
        io_fault_crash_now(&r->f);
        uint8_t got[SECTOR];
        disk_sector(r, 0, got);
        bool first = got[100] == r->ops[0].data[0], second = got[200] == r->ops[1].data[0];
        ck_assert_msg(first || !second, "seed %llu: byte 200 landed without byte 100",
                      (unsigned long long)seed);
        second_landed |= second;
        first_only |= first && !second;
        neither |= !first && !second;
        rig_down(r);
        free(r);
    }
    ck_assert_msg(second_landed && first_only && neither, "64 seeds gave both %d, the first "
                  "only %d, neither %d", second_landed, first_only, neither);
}
END_TEST

static Suite *unflushed_suite(void)
{
    Suite *s = suite_create("unflushed");
    TCase *c = tcase_create("torn");
    tcase_set_timeout(c, 120);
    tcase_add_test(c, a_torn_power_cut_leaves_what_the_soak_accepts_and_nothing_else);
    tcase_add_test(c, a_later_write_to_a_sector_carries_the_earlier_ones);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    return test_run_suite(unflushed_suite());
}
