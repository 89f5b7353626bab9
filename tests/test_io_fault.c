/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The fault-injecting backend (harness/testlib/io_fault.h) that the other suites, the
 * soak tests and the fuzz targets rely on: each knob does what it says, on a memory
 * backend whose bytes the test reads behind the shim's back.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io_fault.h"
#include "qcow2.h"
#include "support.h"

#define FILE_MAX (1u << 20)

struct rig {
    struct io_fault f;
    struct qcow2_backend *mem;      /* the "disk" */
    struct qcow2_backend *shim;
};

static void rig_up(struct rig *r)
{
    io_fault_init(&r->f);
    ck_assert_int_eq(qcow2_backend_mem_new(NULL, 0, FILE_MAX, &r->mem), 0);
    r->shim = io_fault_wrap(r->mem, false, &r->f);
    ck_assert_ptr_nonnull(r->shim);
}

static void rig_down(struct rig *r)
{
    if (r->shim)
        qcow2_backend_destroy(r->shim);
    qcow2_backend_destroy(r->mem);
    io_fault_fini(&r->f);
}

static int put(struct rig *r, uint64_t off, size_t len, int byte)
{
    uint8_t buf[4096];
    ck_assert_uint_le(len, sizeof(buf));
    memset(buf, byte, len);
    return r->shim->ops->write(r->shim, buf, len, off);
}

/* The disk's byte at `off`, as the medium holds it (not through the shim). */
static int on_disk(struct rig *r, uint64_t off)
{
    size_t len;
    const uint8_t *p = qcow2_backend_mem_data(r->mem, &len);
    return off < len ? p[off] : 0;
}

START_TEST(an_unarmed_fault_passes_everything_through)
{
    struct rig r;
    rig_up(&r);
    r.f.mask = IO_FAULT_READ | IO_FAULT_WRITE | IO_FAULT_FLUSH | IO_FAULT_TRUNCATE;
    ck_assert_int_eq(put(&r, 0, 100, 0x11), 0);
    uint8_t b[100];
    ck_assert_int_eq(r.shim->ops->read(r.shim, b, sizeof(b), 0), 0);
    ck_assert_int_eq(b[99], 0x11);
    ck_assert_int_eq(r.shim->ops->flush(r.shim), 0);
    ck_assert_int_eq(r.shim->ops->truncate(r.shim, 50), 0);
    uint64_t size;
    ck_assert_int_eq(r.shim->ops->size(r.shim, &size), 0);
    ck_assert_uint_eq(size, 50);
    ck_assert_uint_eq(r.f.fired, 0);
    ck_assert_uint_eq(r.f.seen, 0);
    rig_down(&r);
}
END_TEST

START_TEST(a_countdown_fails_the_nth_matching_io_once)
{
    struct rig r;
    rig_up(&r);
    r.f.mask = IO_FAULT_WRITE;
    r.f.armed = true;
    r.f.countdown = 2;
    ck_assert_int_eq(put(&r, 0, 10, 1), 0);
    ck_assert_int_eq(r.shim->ops->flush(r.shim), 0);       /* not in the mask: not counted */
    ck_assert_int_eq(put(&r, 10, 10, 2), 0);
    ck_assert_int_eq(put(&r, 20, 10, 3), -EIO);            /* the third write */
    ck_assert_int_eq(on_disk(&r, 20), 0);
    ck_assert_int_eq(put(&r, 30, 10, 4), 0);               /* transient: the next one passes */
    ck_assert_int_eq(r.shim->ops->flush(r.shim), 0);
    ck_assert_uint_eq(r.f.fired, 1);
    ck_assert_uint_eq(r.f.seen, 3);
    ck_assert(!r.f.armed);
    rig_down(&r);
}
END_TEST

START_TEST(a_persistent_fault_fails_every_later_io_and_flush)
{
    struct rig r;
    rig_up(&r);
    r.f.mask = IO_FAULT_WRITE | IO_FAULT_TRUNCATE;
    r.f.armed = true;
    r.f.persistent = true;
    r.f.error = -ENOSPC;
    ck_assert_int_eq(put(&r, 0, 10, 1), -ENOSPC);
    ck_assert_int_eq(put(&r, 0, 10, 1), -ENOSPC);
    ck_assert_int_eq(r.shim->ops->truncate(r.shim, 4096), -ENOSPC);
    ck_assert_int_eq(r.shim->ops->flush(r.shim), -ENOSPC);
    uint8_t b[10];
    ck_assert_int_eq(r.shim->ops->read(r.shim, b, sizeof(b), 0), 0);   /* reads: not masked */
    ck_assert_uint_eq(r.f.fired, 4);
    rig_down(&r);
}
END_TEST

START_TEST(the_mask_picks_which_kind_fails)
{
    struct rig r;
    rig_up(&r);
    ck_assert_int_eq(put(&r, 0, 10, 7), 0);
    r.f.mask = IO_FAULT_READ;
    r.f.armed = true;
    ck_assert_int_eq(put(&r, 10, 10, 8), 0);
    uint8_t b[10];
    ck_assert_int_eq(r.shim->ops->read(r.shim, b, sizeof(b), 0), -EIO);
    ck_assert_int_eq(r.shim->ops->read(r.shim, b, sizeof(b), 0), 0);
    ck_assert_int_eq(b[0], 7);

    r.f.mask = IO_FAULT_FLUSH;
    r.f.armed = true;
    ck_assert_int_eq(r.shim->ops->flush(r.shim), -EIO);
    r.f.mask = IO_FAULT_TRUNCATE;
    r.f.armed = true;
    ck_assert_int_eq(r.shim->ops->flush(r.shim), 0);
    ck_assert_int_eq(r.shim->ops->truncate(r.shim, 0), -EIO);
    ck_assert_uint_eq(r.f.fired, 3);
    rig_down(&r);
}
END_TEST

START_TEST(a_short_write_stores_its_first_half_and_fails)
{
    struct rig r;
    rig_up(&r);
    r.f.mask = IO_FAULT_WRITE;
    r.f.armed = true;
    r.f.short_write = true;
    ck_assert_int_eq(put(&r, 0, 1024, 0x5a), -EIO);
    ck_assert_int_eq(on_disk(&r, 0), 0x5a);
    ck_assert_int_eq(on_disk(&r, 511), 0x5a);
    ck_assert_int_eq(on_disk(&r, 512), 0);
    ck_assert_uint_eq(r.f.fired, 1);
    rig_down(&r);
}
END_TEST

START_TEST(a_short_write_stores_whole_sectors_only)
{
    struct rig r;
    rig_up(&r);
    r.f.mask = IO_FAULT_WRITE;
    r.f.armed = true;
    r.f.short_write = true;
    ck_assert_int_eq(put(&r, 0, 8, 0x5a), -EIO);
    ck_assert_int_eq(on_disk(&r, 0), 0);
    r.f.armed = true;
    ck_assert_int_eq(put(&r, 0, 1536, 0x6b), -EIO);
    ck_assert_int_eq(on_disk(&r, 511), 0x6b);
    ck_assert_int_eq(on_disk(&r, 512), 0);
    rig_down(&r);
}
END_TEST

START_TEST(pad_to_makes_the_file_look_longer)
{
    struct rig r;
    rig_up(&r);
    ck_assert_int_eq(put(&r, 0, 100, 1), 0);
    r.f.pad_to = 8192;
    uint64_t size;
    ck_assert_int_eq(r.shim->ops->size(r.shim, &size), 0);
    ck_assert_uint_eq(size, 8192);
    rig_down(&r);
}
END_TEST

/* A test's own write handler sees every write and can pass it on to the fault. */
static int count_and_pass(struct io_fault *f, struct qcow2_backend *inner, const void *buf,
                          size_t len, uint64_t off)
{
    (*(unsigned *)f->ctx)++;
    if (((const uint8_t *)buf)[0] == 0xee)
        f->armed = true;                /* armed by what is written, before it is judged */
    return io_fault_write(f, inner, buf, len, off);
}

START_TEST(a_handler_can_arm_the_fault_it_passes_writes_to)
{
    struct rig r;
    rig_up(&r);
    unsigned calls = 0;
    r.f.write = count_and_pass;
    r.f.ctx = &calls;
    r.f.mask = IO_FAULT_WRITE;
    ck_assert_int_eq(put(&r, 0, 10, 1), 0);
    ck_assert_int_eq(put(&r, 0, 10, 0xee), -EIO);
    ck_assert_uint_eq(calls, 2);
    ck_assert_ptr_eq(r.f.inner, r.mem);
    qcow2_backend_destroy(r.shim);
    r.shim = NULL;
    ck_assert_ptr_null(r.f.inner);
    rig_down(&r);
}
END_TEST

/* Writes wait for a flush; reads and the size already see them. */
START_TEST(a_crash_mode_holds_writes_until_a_flush)
{
    struct rig r;
    rig_up(&r);
    r.f.crash = IO_FAULT_CRASH_DROP;
    ck_assert_int_eq(put(&r, 0, 512, 0x21), 0);
    ck_assert_int_eq(on_disk(&r, 0), 0);
    uint8_t b[600];
    ck_assert_int_eq(r.shim->ops->read(r.shim, b, sizeof(b), 0), 0);
    ck_assert_int_eq(b[511], 0x21);
    ck_assert_int_eq(b[512], 0);
    uint64_t size;
    ck_assert_int_eq(r.shim->ops->size(r.shim, &size), 0);
    ck_assert_uint_eq(size, 512);
    ck_assert_int_eq(r.shim->ops->flush(r.shim), 0);
    ck_assert_int_eq(on_disk(&r, 0), 0x21);
    rig_down(&r);
}
END_TEST

static void crash_after_two_writes(struct rig *r, enum io_fault_crash how, uint64_t seed)
{
    rig_up(r);
    r->f.crash = how;
    r->f.seed = seed;
    ck_assert_int_eq(put(r, 0, 512, 0x01), 0);
    ck_assert_int_eq(r->shim->ops->flush(r->shim), 0);
    ck_assert_int_eq(put(r, 512, 2048, 0x02), 0);
    ck_assert_int_eq(put(r, 4096, 512, 0x03), 0);
    r->f.mask = IO_FAULT_FLUSH;
    r->f.armed = true;
    /* The machine stops at the flush: it fails, and so does everything after it. */
    ck_assert_int_eq(r->shim->ops->flush(r->shim), -EIO);
    ck_assert(r->f.crashed);
    ck_assert_int_eq(put(r, 0, 512, 0x04), -EIO);
    uint8_t b[16];
    ck_assert_int_eq(r->shim->ops->read(r->shim, b, sizeof(b), 0), -EIO);
    ck_assert_int_eq(on_disk(r, 0), 0x01);          /* flushed before: always there */
}

START_TEST(a_crash_keeps_or_drops_the_unflushed_writes)
{
    struct rig r;
    crash_after_two_writes(&r, IO_FAULT_CRASH_KEEP, 0);
    ck_assert_int_eq(on_disk(&r, 512), 0x02);
    ck_assert_int_eq(on_disk(&r, 2559), 0x02);
    ck_assert_int_eq(on_disk(&r, 4096), 0x03);
    rig_down(&r);

    crash_after_two_writes(&r, IO_FAULT_CRASH_DROP, 0);
    ck_assert_int_eq(on_disk(&r, 512), 0);
    ck_assert_int_eq(on_disk(&r, 4096), 0);
    rig_down(&r);
}
END_TEST

/* Tearing: over many seeds every outcome of a 4-sector write shows, on sector bounds only. */
START_TEST(a_torn_crash_lands_whole_writes_none_or_leading_sectors)
{
    bool whole = false, none = false, partial = false;
    for (uint64_t seed = 0; seed < 64; seed++) {
        struct rig r;
        crash_after_two_writes(&r, IO_FAULT_CRASH_TEAR, seed);
        unsigned landed = 0;
        for (unsigned s = 0; s < 4; s++) {
            int first = on_disk(&r, 512 + 512u * s), last = on_disk(&r, 1023 + 512u * s);
            ck_assert_msg(first == last, "seed %llu: sector %u is torn inside",
                          (unsigned long long)seed, s);
            ck_assert_msg(first == 0x02 ? landed == s : true, "seed %llu: sector %u landed "
                          "after a gap", (unsigned long long)seed, s);
            landed += first == 0x02;
        }
        whole |= landed == 4;
        none |= landed == 0;
        partial |= landed > 0 && landed < 4;
        rig_down(&r);
    }
    ck_assert_msg(whole && none && partial, "64 seeds gave whole %d, none %d, partial %d",
                  whole, none, partial);
}
END_TEST

/*
 * A write that starts inside a sector tears at the file's sector boundaries, never inside
 * a sector of the file: each sector it covers ends up all old or all new.
 */
START_TEST(an_unaligned_torn_write_tears_at_the_files_sectors)
{
    bool partial = false;
    for (uint64_t seed = 0; seed < 64; seed++) {
        struct rig r;
        rig_up(&r);
        r.f.crash = IO_FAULT_CRASH_TEAR;
        r.f.seed = seed;
        ck_assert_int_eq(put(&r, 300, 2000, 0x07), 0);
        io_fault_crash_now(&r.f);
        unsigned landed = 0;
        for (unsigned sec = 1; sec < 4; sec++) {    /* sectors 1..3 lie wholly inside */
            int first = on_disk(&r, 512u * sec), last = on_disk(&r, 512u * sec + 511);
            ck_assert_msg(first == last, "seed %llu: file sector %u is torn inside (0x%02x "
                          "then 0x%02x)", (unsigned long long)seed, sec, first, last);
            landed += first == 0x07;
        }
        partial |= landed > 0 && landed < 3;
        rig_down(&r);
    }
    ck_assert_msg(partial, "64 seeds never tore the write between two sectors");
}
END_TEST

START_TEST(an_unaligned_short_write_stops_at_a_files_sector_boundary)
{
    struct rig r;
    rig_up(&r);
    r.f.mask = IO_FAULT_WRITE;
    r.f.armed = true;
    r.f.short_write = true;
    ck_assert_int_eq(put(&r, 300, 2000, 0x5a), -EIO);
    /* half of it ends at 1300: cut back to 1024, the boundary before */
    ck_assert_int_eq(on_disk(&r, 300), 0x5a);
    ck_assert_int_eq(on_disk(&r, 1023), 0x5a);
    ck_assert_int_eq(on_disk(&r, 1024), 0);
    rig_down(&r);
}
END_TEST

START_TEST(a_crash_can_be_called_at_any_point)
{
    struct rig r;
    rig_up(&r);
    r.f.crash = IO_FAULT_CRASH_KEEP;
    ck_assert_int_eq(put(&r, 0, 512, 0x31), 0);
    io_fault_crash_now(&r.f);
    ck_assert_int_eq(on_disk(&r, 0), 0x31);
    ck_assert_int_eq(r.shim->ops->flush(r.shim), -EIO);
    ck_assert_uint_eq(r.f.fired, 0);
    rig_down(&r);
}
END_TEST

/* The same fault serves successive opens: its counts go on across them. */
START_TEST(one_fault_outlives_the_shims_of_successive_opens)
{
    struct io_fault f;
    io_fault_init(&f);
    f.mask = IO_FAULT_WRITE;
    f.armed = true;
    f.countdown = 1;
    struct qcow2_backend *mem;
    ck_assert_int_eq(qcow2_backend_mem_new(NULL, 0, FILE_MAX, &mem), 0);
    uint8_t b[8] = { 1 };
    struct qcow2_backend *first = io_fault_wrap(mem, false, &f);
    ck_assert_int_eq(first->ops->write(first, b, sizeof(b), 0), 0);
    qcow2_backend_destroy(first);
    struct qcow2_backend *second = io_fault_wrap(mem, true, &f);
    ck_assert_int_eq(second->ops->write(second, b, sizeof(b), 0), -EIO);
    ck_assert_uint_eq(f.seen, 2);
    qcow2_backend_destroy(second);              /* owns mem now */
    io_fault_fini(&f);
}
END_TEST

static Suite *io_fault_suite(void)
{
    Suite *s = suite_create("io_fault");
    TCase *t = tcase_create("faults");
    tcase_add_test(t, an_unarmed_fault_passes_everything_through);
    tcase_add_test(t, a_countdown_fails_the_nth_matching_io_once);
    tcase_add_test(t, a_persistent_fault_fails_every_later_io_and_flush);
    tcase_add_test(t, the_mask_picks_which_kind_fails);
    tcase_add_test(t, a_short_write_stores_its_first_half_and_fails);
    tcase_add_test(t, a_short_write_stores_whole_sectors_only);
    tcase_add_test(t, an_unaligned_short_write_stops_at_a_files_sector_boundary);
    tcase_add_test(t, pad_to_makes_the_file_look_longer);
    tcase_add_test(t, a_handler_can_arm_the_fault_it_passes_writes_to);
    tcase_add_test(t, one_fault_outlives_the_shims_of_successive_opens);
    suite_add_tcase(s, t);
    TCase *c = tcase_create("crashes");
    tcase_add_test(c, a_crash_mode_holds_writes_until_a_flush);
    tcase_add_test(c, a_crash_keeps_or_drops_the_unflushed_writes);
    tcase_add_test(c, a_torn_crash_lands_whole_writes_none_or_leading_sectors);
    tcase_add_test(c, an_unaligned_torn_write_tears_at_the_files_sectors);
    tcase_add_test(c, a_crash_can_be_called_at_any_point);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    return test_run_suite(io_fault_suite());
}
