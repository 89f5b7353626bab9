/* SPDX-License-Identifier: BSD-2-Clause */
/* The snapshot table (docs/format.md §6), parsed from hand-built bytes. */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qcow2.h"
#include "snapshot.h"
#include "support.h"

#define FILE_NAME "snap.qcow2"
#define TABLE_AT 0x30000u

struct sn {
    uint64_t l1_offset;
    uint32_t l1_size;
    const char *id;
    size_t id_len;
    const char *name;
    size_t name_len;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock;
    uint32_t vm_state;
    const uint8_t *extra;
    uint32_t extra_len;
};

static struct sn sn(const char *id, const char *name)
{
    struct sn s;
    memset(&s, 0, sizeof(s));
    s.id = id;
    s.id_len = strlen(id);
    s.name = name;
    s.name_len = strlen(name);
    return s;
}

/* Writes one entry at pos; returns where the next one starts (8-aligned). */
static size_t put_entry(uint8_t *buf, size_t pos, const struct sn *s)
{
    uint8_t *e = buf + pos;
    memset(e, 0, 40);
    test_put_be64(e, s->l1_offset);
    test_put_be32(e + 8, s->l1_size);
    test_put_be16(e + 12, (uint16_t)s->id_len);
    test_put_be16(e + 14, (uint16_t)s->name_len);
    test_put_be32(e + 16, s->date_sec);
    test_put_be32(e + 20, s->date_nsec);
    test_put_be64(e + 24, s->vm_clock);
    test_put_be32(e + 32, s->vm_state);
    test_put_be32(e + 36, s->extra_len);
    size_t p = pos + 40;
    if (s->extra_len)
        memcpy(buf + p, s->extra, s->extra_len);
    p += s->extra_len;
    memcpy(buf + p, s->id, s->id_len);
    p += s->id_len;
    memcpy(buf + p, s->name, s->name_len);
    p += s->name_len;
    size_t next = (p + 7) & ~(size_t)7;
    memset(buf + p, 0, next - p);
    return next;
}

static void extra_fields(uint8_t *x, uint64_t vm_large, uint64_t disk, uint64_t icount)
{
    test_put_be64(x, vm_large);
    test_put_be64(x + 8, disk);
    test_put_be64(x + 16, icount);
}

static int parse(const uint8_t *buf, uint64_t len, uint32_t count, struct snapshot_table *t,
                 struct qcow2_error *err)
{
    memset(err, 0, sizeof(*err));
    return snapshot_table_parse(buf, len, TABLE_AT, count, FILE_NAME, t, err);
}

static void expect_parse_ok(const uint8_t *buf, uint64_t len, uint32_t count,
                            struct snapshot_table *t)
{
    struct qcow2_error err;
    int ret = parse(buf, len, count, t, &err);
    ck_assert_msg(ret == 0, "expected the table to parse, got %d: %s", ret, err.message);
    ck_assert_uint_eq(t->count, count);
}

static void expect_parse_error(const uint8_t *buf, uint64_t len, uint32_t count, int code,
                               const char *structure, uint64_t where, const char *needle)
{
    struct snapshot_table t;
    struct qcow2_error err;
    int ret = parse(buf, len, count, &t, &err);
    ck_assert_msg(ret == code, "expected %d, got %d (%s)", code, ret, err.message);
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.structure, structure);
    ck_assert_msg(err.offset == where, "expected error offset 0x%" PRIx64 ", got 0x%" PRIx64
                  " (%s)", where, err.offset, err.message);
    ck_assert_msg(strstr(err.message, needle), "message \"%s\" lacks \"%s\"", err.message,
                  needle);
    ck_assert_str_eq(err.file, FILE_NAME);
    /* A failed parse leaves nothing behind. */
    ck_assert_ptr_null(t.entries);
    ck_assert_uint_eq(t.count, 0);
}

/* ---- layout and fields ----------------------------------------------------------- */

START_TEST(entries_are_8_aligned_and_decoded)
{
    uint8_t buf[512];
    memset(buf, 0xCC, sizeof(buf));
    uint8_t x0[24], x1[24];
    extra_fields(x0, 0x100000000ull, 1ull << 30, 77);
    extra_fields(x1, 0, 2ull << 30, 0);     /* only the first 16 bytes are used */

    struct sn a = sn("1", "first");
    a.l1_offset = 0x50000;
    a.l1_size = 2;
    a.date_sec = 1700000000;
    a.date_nsec = 123456789;
    a.vm_clock = 999;
    a.vm_state = 0;
    a.extra = x0;
    a.extra_len = 24;
    struct sn b = sn("2", "second-snap");
    b.l1_offset = 0x70000;
    b.l1_size = 16;
    b.vm_state = 1234;
    b.extra = x1;
    b.extra_len = 16;

    size_t p = put_entry(buf, 0, &a);
    ck_assert_uint_eq(p, 72);               /* 40 + 24 + 1 + 5 = 70, padded */
    p = put_entry(buf, p, &b);
    ck_assert_uint_eq(p, 144);              /* 72 + (40 + 16 + 1 + 11 = 68, padded) */

    struct snapshot_table t;
    expect_parse_ok(buf, p, 2, &t);
    ck_assert_uint_eq(t.bytes, 144);
    const struct snapshot *s0 = &t.entries[0], *s1 = &t.entries[1];
    ck_assert_uint_eq(s0->entry_offset, TABLE_AT);
    ck_assert_uint_eq(s1->entry_offset, TABLE_AT + 72);
    ck_assert_uint_eq(s0->l1_table_offset, 0x50000);
    ck_assert_uint_eq(s0->l1_size, 2);
    ck_assert_uint_eq(s0->date_sec, 1700000000);
    ck_assert_uint_eq(s0->date_nsec, 123456789);
    ck_assert_uint_eq(s0->vm_clock_nsec, 999);
    ck_assert_uint_eq(s0->vm_state_size, 0);
    ck_assert_str_eq(s0->id, "1");
    ck_assert_str_eq(s0->name, "first");
    ck_assert_uint_eq(s0->extra_data_size, 24);
    ck_assert_mem_eq(s0->extra_data, x0, 24);
    ck_assert(s0->has_vm_state_size_large && s0->has_disk_size && s0->has_icount);
    ck_assert_uint_eq(s0->vm_state_size_large, 0x100000000ull);
    ck_assert_uint_eq(s0->disk_size, 1ull << 30);
    ck_assert_uint_eq(s0->icount, 77);
    ck_assert_uint_eq(snapshot_vm_state_size(s0), 0x100000000ull);

    ck_assert_uint_eq(s1->l1_table_offset, 0x70000);
    ck_assert_uint_eq(s1->l1_size, 16);
    ck_assert_str_eq(s1->id, "2");
    ck_assert_str_eq(s1->name, "second-snap");
    ck_assert(s1->has_vm_state_size_large && s1->has_disk_size && !s1->has_icount);
    ck_assert_uint_eq(s1->disk_size, 2ull << 30);
    /* The 64-bit field from the extra data overrides the 32-bit one. */
    ck_assert_uint_eq(s1->vm_state_size, 1234);
    ck_assert_uint_eq(snapshot_vm_state_size(s1), 0);
    snapshot_table_release(&t);
    ck_assert_ptr_null(t.entries);
}
END_TEST

START_TEST(extra_data_sizes)
{
    /* extra_data_size -> which known fields are present */
    static const struct { uint32_t len; int large, disk, icount; } cases[] = {
        { 0, 0, 0, 0 }, { 7, 0, 0, 0 }, { 8, 1, 0, 0 }, { 12, 1, 0, 0 }, { 15, 1, 0, 0 },
        { 16, 1, 1, 0 }, { 20, 1, 1, 0 }, { 23, 1, 1, 0 }, { 24, 1, 1, 1 }, { 40, 1, 1, 1 },
        { 1024, 1, 1, 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        static uint8_t buf[2048], extra[1024];
        test_fill_random(extra, sizeof(extra), (uint32_t)i);
        extra_fields(extra, 0x1111, 0x2222, 0x3333);
        struct sn a = sn("7", "x");
        a.vm_state = 0x4444;
        a.extra = extra;
        a.extra_len = cases[i].len;
        size_t end = put_entry(buf, 0, &a);
        struct snapshot_table t;
        expect_parse_ok(buf, end, 1, &t);
        const struct snapshot *s = &t.entries[0];
        ck_assert_msg(s->has_vm_state_size_large == cases[i].large &&
                          s->has_disk_size == cases[i].disk && s->has_icount == cases[i].icount,
                      "extra %u bytes: expected large/disk/icount %d%d%d, got %d%d%d",
                      cases[i].len, cases[i].large, cases[i].disk, cases[i].icount,
                      s->has_vm_state_size_large, s->has_disk_size, s->has_icount);
        ck_assert_uint_eq(snapshot_vm_state_size(s), cases[i].large ? 0x1111 : 0x4444);
        ck_assert_uint_eq(snapshot_disk_size(s, 99), cases[i].disk ? 0x2222 : 99);
        if (cases[i].icount)
            ck_assert_uint_eq(s->icount, 0x3333);
        ck_assert_uint_eq(s->extra_data_size, cases[i].len);
        if (cases[i].len)
            ck_assert_mem_eq(s->extra_data, extra, cases[i].len);    /* kept verbatim */
        ck_assert_str_eq(s->id, "7");
        ck_assert_str_eq(s->name, "x");
        ck_assert_uint_eq(t.bytes, end);
        snapshot_table_release(&t);
    }
}
END_TEST

START_TEST(extra_data_over_1024_refused)
{
    static uint8_t buf[4096], extra[1025];
    memset(extra, 0, sizeof(extra));
    struct sn a = sn("1", "a");
    size_t p = put_entry(buf, 0, &a);
    struct sn b = sn("2", "b");
    b.extra = extra;
    b.extra_len = 1025;
    size_t end = put_entry(buf, p, &b);
    expect_parse_error(buf, end, 2, -EINVAL, "snapshot table entry", TABLE_AT + p, "1025");
    expect_parse_error(buf, end, 2, -EINVAL, "snapshot table entry", TABLE_AT + p,
                       "extra data");
    /* The first entry alone is fine. */
    struct snapshot_table t;
    expect_parse_ok(buf, end, 1, &t);
    snapshot_table_release(&t);
}
END_TEST

START_TEST(entry_past_buffer_wants_more)
{
    uint8_t buf[256];
    struct sn a = sn("1", "first");
    size_t p = put_entry(buf, 0, &a);      /* 40 + 1 + 5 = 46 -> 48 */
    ck_assert_uint_eq(p, 48);
    struct sn b = sn("2", "second");
    size_t end = put_entry(buf, p, &b);     /* 48 + (40 + 1 + 6 = 47 -> 48) */
    ck_assert_uint_eq(end, 96);

    /* Not even the fixed part of the first entry. */
    expect_parse_error(buf, 39, 1, -ENOBUFS, "snapshot table entry", TABLE_AT, "past the end");
    /* The name cut short. */
    expect_parse_error(buf, 44, 1, -ENOBUFS, "snapshot table entry", TABLE_AT, "past the end");
    /* Ends exactly after the name: the padding is not needed. */
    struct snapshot_table t;
    expect_parse_ok(buf, 46, 1, &t);
    snapshot_table_release(&t);
    /* The second entry cut inside its fixed part, then inside its name. */
    expect_parse_error(buf, p + 20, 2, -ENOBUFS, "snapshot table entry", TABLE_AT + p,
                       "entry 1");
    expect_parse_error(buf, p + 46, 2, -ENOBUFS, "snapshot table entry", TABLE_AT + p,
                       "entry 1");
    /* t->bytes says where the parse stopped, so a caller can read more and retry. */
    struct qcow2_error err;
    ck_assert_int_eq(parse(buf, p + 46, 2, &t, &err), -ENOBUFS);
    ck_assert_uint_eq(t.bytes, p);
    expect_parse_ok(buf, p + 47, 2, &t);
    ck_assert_str_eq(t.entries[1].name, "second");
    snapshot_table_release(&t);
    /* Asking for more entries than the buffer holds. */
    expect_parse_error(buf, end, 3, -ENOBUFS, "snapshot table entry", TABLE_AT + end,
                       "entry 2");
}
END_TEST

/*
 * `len` bytes that end exactly where a PROT_NONE page begins, so that reading even one
 * byte past them faults, with or without the sanitizers.
 */
static uint8_t *bytes_before_guard_page(size_t len, void **map, size_t *map_len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;
    *map_len = (data_pages + 1) * page;
    uint8_t *base = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
    ck_assert_ptr_ne(base, MAP_FAILED);
    ck_assert_int_eq(mprotect(base + data_pages * page, page, PROT_NONE), 0);
    *map = base;
    return base + data_pages * page - len;
}

/*
 * The bug the header fuzzer found: an entry whose padding reaches past the end of the
 * buffer puts the next entry's start past it, and a bounds test written as `len - pos`
 * wrapped around instead of failing. The next entry must be refused without a read.
 */
START_TEST(entry_starting_past_buffer_end_is_not_read)
{
    uint8_t table[256];
    struct sn a = sn("1", "first");
    size_t p = put_entry(table, 0, &a);     /* 46 bytes of entry, padded to 48 */
    ck_assert_uint_eq(p, 48);
    for (size_t len = 41; len <= 47; len++) {
        void *map;
        size_t map_len;
        uint8_t *buf = bytes_before_guard_page(len, &map, &map_len);
        memcpy(buf, table, len);
        if (len >= 46) {
            /* The first entry fits; the second would start at byte 48, past the end. */
            expect_parse_error(buf, len, 2, -ENOBUFS, "snapshot table entry", TABLE_AT + 48,
                               "entry 1");
            expect_parse_error(buf, len, 9, -ENOBUFS, "snapshot table entry", TABLE_AT + 48,
                               "past the end of the file");
        } else {
            expect_parse_error(buf, len, 2, -ENOBUFS, "snapshot table entry", TABLE_AT,
                               "entry 0");
        }
        munmap(map, map_len);
    }
}
END_TEST

/*
 * The same through qcow2_open: a snapshot table at the very end of the file whose last
 * entry ends unpadded, and a header that announces one snapshot more. QEMU reads the
 * missing bytes as zeros; qvet refuses tables that run past the end of the file, with
 * the one-line message naming the entry.
 */
START_TEST(open_refuses_snapshot_table_past_end_of_file)
{
    struct test_image_spec spec = test_image_spec(3, 9, 64 * 1024);
    spec.extra_clusters = 2;
    struct test_image im;
    ck_assert_int_eq(test_image_build(&spec, &im), 0);
    size_t table_at = im.extra_offset;
    size_t p = 0;
    char name[3][80];
    for (int i = 0; i < 3; i++) {
        snprintf(name[i], sizeof(name[i]), "snapshot-%d-with-a-long-name-%0*d", i, 40, i);
        char id[4];
        snprintf(id, sizeof(id), "%d", i + 1);
        struct sn s = sn(id, name[i]);
        s.l1_offset = im.l1_offset;
        s.l1_size = im.l1_size;
        uint8_t extra[24];
        extra_fields(extra, 0, spec.size, 0);
        s.extra = extra;
        s.extra_len = 24;
        size_t start = p;
        p = put_entry(im.data + table_at, p, &s);
        if (i == 2)
            p = start + 40 + 24 + strlen(id) + strlen(name[i]);     /* no padding */
    }
    ck_assert_msg(p % 8, "the last entry must end unaligned (at %zu)", p);
    size_t file_len = table_at + p;
    for (uint32_t count = 3; count <= 5; count++) {
        test_put_be32(im.data + 60, count);
        test_put_be64(im.data + 64, table_at);
        struct qcow2_backend *b;
        ck_assert_int_eq(qcow2_backend_mem_new(im.data, file_len, file_len, &b), 0);
        struct qcow2_image *img = NULL;
        struct qcow2_error err;
        memset(&err, 0, sizeof(err));
        int ret = qcow2_open_backend(b, FILE_NAME, NULL, &img, &err);
        if (count == 3) {
            ck_assert_msg(ret == 0, "expected the 3-entry table to open: %s", err.message);
            ck_assert_uint_eq(qcow2_snapshot_count(img), 3);
            qcow2_close(img);
            continue;
        }
        ck_assert_msg(ret < 0, "expected %u snapshots to be refused, got %d", count, ret);
        ck_assert_ptr_null(img);
        ck_assert_str_eq(err.structure, "snapshot table entry");
        ck_assert_str_eq(err.file, FILE_NAME);
        ck_assert_uint_eq(err.offset, table_at + ((p + 7) & ~(size_t)7));
        ck_assert_msg(strstr(err.message, "entry 3") && strstr(err.message, "past the end"),
                      "unexpected message: %s", err.message);
        ck_assert_msg(!strchr(err.message, '\n'), "message is not one line: %s", err.message);
    }
    test_image_free(&im);
}
END_TEST

START_TEST(nul_in_name_or_id_refused)
{
    uint8_t buf[256];
    struct sn a = sn("1", "ok");
    size_t p = put_entry(buf, 0, &a);
    struct sn b = sn("2", "");
    b.name = "bad\0name";
    b.name_len = 8;
    size_t end = put_entry(buf, p, &b);
    expect_parse_error(buf, end, 2, -EINVAL, "snapshot table entry", TABLE_AT + p, "NUL");

    struct sn c = sn("", "name");
    c.id = "1\0";
    c.id_len = 2;
    end = put_entry(buf, 0, &c);
    expect_parse_error(buf, end, 1, -EINVAL, "snapshot table entry", TABLE_AT, "NUL");
}
END_TEST

START_TEST(empty_and_oversized_counts)
{
    uint8_t buf[64] = { 0 };
    struct snapshot_table t;
    expect_parse_ok(buf, 0, 0, &t);
    ck_assert_ptr_null(t.entries);
    ck_assert_uint_eq(t.bytes, 0);
    snapshot_table_release(&t);
    expect_parse_error(buf, sizeof(buf), 65537, -EINVAL, "snapshot table", TABLE_AT, "65536");
}
END_TEST

/*
 * The 64 MiB limit without 64 MiB of distinct memory: one 128 KiB entry (long id and
 * name, no NUL) in a memfd, mapped again and again into one contiguous range.
 */
#define BIG_ENTRY (128u << 10)

static uint8_t *map_repeated_entry(uint32_t copies, int *fd_out)
{
    int fd = memfd_create("qvet-snapshot-entry", 0);
    ck_assert_msg(fd >= 0, "memfd_create failed");
    ck_assert_int_eq(ftruncate(fd, BIG_ENTRY), 0);
    uint8_t *one = mmap(NULL, BIG_ENTRY, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(one, MAP_FAILED);
    memset(one, 'n', BIG_ENTRY);
    memset(one, 0, 40);
    test_put_be16(one + 12, 65535);                         /* id */
    test_put_be16(one + 14, BIG_ENTRY - 40 - 65535);        /* name: fills the rest */
    munmap(one, BIG_ENTRY);

    size_t total = (size_t)copies * BIG_ENTRY;
    uint8_t *base = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(base, MAP_FAILED);
    for (uint32_t i = 0; i < copies; i++) {
        void *p = mmap(base + (size_t)i * BIG_ENTRY, BIG_ENTRY, PROT_READ,
                       MAP_SHARED | MAP_FIXED, fd, 0);
        ck_assert_ptr_eq(p, base + (size_t)i * BIG_ENTRY);
    }
    *fd_out = fd;
    return base;
}

START_TEST(table_over_64_mib_refused)
{
    const uint32_t copies = 513;
    int fd;
    uint8_t *base = map_repeated_entry(copies, &fd);
    uint64_t len = (uint64_t)copies * BIG_ENTRY;

    /* 512 entries of 128 KiB: exactly 64 MiB, allowed. */
    struct snapshot_table t;
    expect_parse_ok(base, len, 512, &t);
    ck_assert_uint_eq(t.bytes, 64u << 20);
    ck_assert_uint_eq(strlen(t.entries[511].id), 65535);
    ck_assert_uint_eq(t.entries[511].entry_offset, TABLE_AT + 511ull * BIG_ENTRY);
    snapshot_table_release(&t);

    /* One more entry crosses the limit. */
    expect_parse_error(base, len, 513, -EFBIG, "snapshot table", TABLE_AT, "67108864");

    munmap(base, (size_t)len);
    close(fd);
}
END_TEST

/* ---- lookups --------------------------------------------------------------------- */

static void build_named_table(struct snapshot_table *t)
{
    static const char *const ids[] = { "1", "2", "3", "10" };
    static const char *const names[] = { "2", "x", "x", "daily" };
    static uint8_t buf[1024];
    uint8_t extra[24];
    extra_fields(extra, 0, 5ull << 20, 0);
    size_t p = 0;
    for (int i = 0; i < 4; i++) {
        struct sn s = sn(ids[i], names[i]);
        if (i == 3) {
            s.extra = extra;
            s.extra_len = 16;
        }
        p = put_entry(buf, p, &s);
    }
    expect_parse_ok(buf, p, 4, t);
}

/* One entry's fixed part: STRICT refuses extra data over 1024 bytes, TOLERANT keeps 1024. */
START_TEST(entry_decode_strict_and_tolerant)
{
    static uint8_t buf[4096], extra[2000];
    memset(extra, 0xAB, sizeof(extra));
    struct sn a = sn("7", "big");
    a.l1_offset = 0x50000;
    a.l1_size = 3;
    a.extra = extra;
    a.extra_len = 2000;
    put_entry(buf, 0, &a);
    struct snapshot s;
    struct snapshot_entry_layout l;
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(snapshot_entry_decode_fixed(buf, SNAPSHOT_STRICT, &s, &l), -EINVAL);
    ck_assert_int_eq(snapshot_entry_decode_fixed(buf, SNAPSHOT_TOLERANT, &s, &l), 0);
    ck_assert_uint_eq(s.l1_table_offset, 0x50000);
    ck_assert_uint_eq(s.l1_size, 3);
    ck_assert_uint_eq(l.stored_extra, 2000);
    ck_assert_uint_eq(l.kept_extra, 1024);
    ck_assert_uint_eq(l.id_size, 1);
    ck_assert_uint_eq(l.name_size, 3);
    /* The id follows all of the stored extra data, not the part kept. */
    ck_assert_uint_eq(snapshot_entry_id_pos(&l), 40 + 2000);
    ck_assert_uint_eq(snapshot_entry_kept_bytes(&l), 40 + 1024 + 1 + 3);
    const uint8_t *id = buf + snapshot_entry_id_pos(&l);
    ck_assert_int_eq(snapshot_entry_take(&s, &l, SNAPSHOT_TOLERANT, buf + 40, id, id + 1), 0);
    ck_assert_uint_eq(s.extra_data_size, 1024);
    ck_assert_str_eq(s.id, "7");
    ck_assert_str_eq(s.name, "big");
    snapshot_entry_release(&s);
}
END_TEST

/* STRICT refuses a NUL inside an id; TOLERANT keeps the bytes and their stored length. */
START_TEST(entry_take_nul_only_tolerated)
{
    const uint8_t id[3] = { 'a', 0, 'b' }, name[1] = { 'n' };
    struct snapshot_entry_layout l = { .id_size = 3, .name_size = 1 };
    struct snapshot s;
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(snapshot_entry_take(&s, &l, SNAPSHOT_STRICT, NULL, id, name), -EINVAL);
    ck_assert_int_eq(snapshot_entry_take(&s, &l, SNAPSHOT_TOLERANT, NULL, id, name), 0);
    ck_assert_uint_eq(s.id_size, 3);
    ck_assert_int_eq(memcmp(s.id, id, 3), 0);
    snapshot_entry_release(&s);
}
END_TEST

/*
 * A rewrite gives every entry QEMU 7.2's 24 bytes of extra data (defaults where the entry
 * had none), keeps unknown bytes past them, and writes the table without the last
 * entry's padding.
 */
START_TEST(complete_extra_and_unpadded_size)
{
    static uint8_t buf[4096];
    uint8_t x[32];
    memset(x, 0x5A, sizeof(x));
    extra_fields(x, 1ull << 33, 0x100000, 9);
    struct sn a = sn("1", "none");
    a.vm_state = 77;
    size_t p = put_entry(buf, 0, &a);
    struct sn b = sn("2", "long");
    b.extra = x;
    b.extra_len = sizeof(x);
    size_t end = put_entry(buf, p, &b);
    struct snapshot_table t;
    expect_parse_ok(buf, end, 2, &t);
    ck_assert_int_eq(snapshot_complete_extra(&t.entries[0], 0x4000000), 0);
    ck_assert_int_eq(snapshot_complete_extra(&t.entries[1], 0x4000000), 0);
    ck_assert_uint_eq(t.entries[0].extra_data_size, 24);
    ck_assert_uint_eq(snapshot_vm_state_size(&t.entries[0]), 77);
    ck_assert_uint_eq(snapshot_disk_size(&t.entries[0], 0), 0x4000000);
    ck_assert(t.entries[0].has_icount && t.entries[0].icount == UINT64_MAX);
    ck_assert_uint_eq(t.entries[1].extra_data_size, 32);
    ck_assert_uint_eq(t.entries[1].extra_data[31], 0x5A);
    /* A VM state over 4 GiB leaves the 32-bit field 0. */
    ck_assert_uint_eq(t.entries[1].vm_state_size, 0);
    ck_assert_uint_eq(snapshot_vm_state_size(&t.entries[1]), 1ull << 33);
    uint64_t padded = snapshot_table_size(&t);
    uint64_t unpadded = snapshot_table_unpadded_size(&t);
    /* 40 + 24 + "1" + "none" = 69, padded to 72; then 40 + 32 + "2" + "long" = 77. */
    ck_assert_uint_eq(unpadded, 72 + 77);
    ck_assert_uint_eq(padded, 72 + 80);
    snapshot_table_release(&t);
}
END_TEST

START_TEST(find_by_id_first_then_name)
{
    struct snapshot_table t;
    build_named_table(&t);
    ck_assert_int_eq(snapshot_find(&t, "2"), 1);        /* id "2", not the one named "2" */
    ck_assert_int_eq(snapshot_find(&t, "1"), 0);
    ck_assert_int_eq(snapshot_find(&t, "10"), 3);
    ck_assert_int_eq(snapshot_find(&t, "x"), 1);        /* first of two with that name */
    ck_assert_int_eq(snapshot_find(&t, "daily"), 3);
    ck_assert_int_eq(snapshot_find(&t, "nope"), -ENOENT);
    ck_assert_int_eq(snapshot_find(&t, "01"), -ENOENT);
    snapshot_table_release(&t);
}
END_TEST

/* QEMU's lookup by id and name: a NULL key matches anything, both given must both match. */
START_TEST(find_by_id_and_or_name)
{
    struct snapshot_table t;
    build_named_table(&t);                  /* ids 1 2 3 10, names "2" "x" "x" "daily" */
    ck_assert_int_eq(snapshot_find_by(&t, "2", NULL), 1);
    ck_assert_int_eq(snapshot_find_by(&t, NULL, "2"), 0);       /* snapshot -d 2: the name */
    ck_assert_int_eq(snapshot_find_by(&t, NULL, "1"), -ENOENT); /* no name "1": not id 1 */
    ck_assert_int_eq(snapshot_find_by(&t, NULL, "x"), 1);       /* first of two */
    ck_assert_int_eq(snapshot_find_by(&t, "3", "x"), 2);        /* both: the second "x" */
    ck_assert_int_eq(snapshot_find_by(&t, "1", "x"), -ENOENT);  /* id 1 is not named "x" */
    ck_assert_int_eq(snapshot_find_by(&t, "10", "daily"), 3);
    ck_assert_int_eq(snapshot_find_by(&t, NULL, NULL), -ENOENT);
    ck_assert_int_eq(snapshot_find_by(&t, "", NULL), -ENOENT);
    snapshot_table_release(&t);
}
END_TEST

/*
 * The public selection API on a real image whose ids and names collide: snapshot
 * "2" is id 1, "1" is id 2, and ids 3 and 4 are both named "dup". Each snapshot holds
 * its id as the first guest byte.
 */
static void build_colliding_image(const char *path)
{
    struct qcow2_create_options co;
    struct qcow2_error err;
    qcow2_create_options_init(&co);
    co.size = 1u << 20;
    co.has_size = true;
    ck_assert_int_eq(qcow2_create(path, &co, &err), 0);
    struct qcow2_open_options rw = { .writable = true };
    struct qcow2_image *img;
    ck_assert_int_eq(qcow2_open(path, &rw, &img, &err), 0);
    static const char *const names[] = { "2", "1", "dup", "dup" };
    for (uint8_t i = 0; i < 4; i++) {
        uint8_t byte = (uint8_t)(i + 1);
        ck_assert_int_eq(qcow2_pwrite(img, &byte, 1, 0, &err), 0);
        ck_assert_int_eq(qcow2_snapshot_create(img, names[i], &err), 0);
    }
    qcow2_close(img);
}

static uint8_t first_byte_of(const char *path, const struct qcow2_open_options *o)
{
    struct qcow2_image *img;
    struct qcow2_error err;
    ck_assert_msg(qcow2_open(path, o, &img, &err) == 0, "%s", err.message);
    uint8_t byte = 0;
    ck_assert_int_eq(qcow2_pread(img, &byte, 1, 0, &err), 0);
    qcow2_close(img);
    return byte;
}

START_TEST(selection_rules_on_a_real_image)
{
    const char *path = test_path("colliding.qcow2");
    build_colliding_image(path);
    struct qcow2_open_options rw = { .writable = true };
    struct qcow2_image *img;
    struct qcow2_error err;
    ck_assert_int_eq(qcow2_open(path, &rw, &img, &err), 0);
    ck_assert_int_eq(qcow2_snapshot_find_key(img, "1", &err), 0);    /* id first */
    ck_assert_int_eq(qcow2_snapshot_find_key(img, "dup", &err), 2);
    ck_assert_int_eq(qcow2_snapshot_find(img, NULL, "1", &err), 1);  /* -d: name only */
    ck_assert_int_eq(qcow2_snapshot_find(img, NULL, "3", &err), -ENOENT);
    ck_assert_str_eq(err.structure, "snapshot table");
    ck_assert_msg(strstr(err.message, "name \"3\""), "%s", err.message);
    ck_assert_int_eq(qcow2_snapshot_find(img, "4", "dup", &err), 3);
    ck_assert_int_eq(qcow2_snapshot_find(img, "1", "1", &err), -ENOENT);

    /* delete_at removes exactly the one found: the first "dup", id 3 */
    ck_assert_int_eq(qcow2_snapshot_delete_at(img, 2, &err), 0);
    ck_assert_uint_eq(qcow2_snapshot_count(img), 3);
    struct qcow2_snapshot_info info;
    ck_assert_int_eq(qcow2_snapshot_get(img, 2, &info), 0);
    ck_assert_str_eq(info.id, "4");
    ck_assert_int_eq(qcow2_snapshot_delete_at(img, 3, &err), -ENOENT);
    ck_assert_int_eq(qcow2_snapshot_apply_at(img, 1, &err), 0);      /* id 2, named "1" */
    uint8_t byte;
    ck_assert_int_eq(qcow2_pread(img, &byte, 1, 0, &err), 0);
    ck_assert_uint_eq(byte, 2);
    qcow2_close(img);

    /* opening a snapshot: a key (id, then name), or id and/or name, all of which must match */
    struct qcow2_open_options by_key = { .snapshot = "1" }, by_name = { .snapshot_name = "1" },
                              by_id = { .snapshot_id = "4" },
                              by_both = { .snapshot_id = "4", .snapshot_name = "dup" },
                              mismatch = { .snapshot_id = "1", .snapshot_name = "1" };
    ck_assert_uint_eq(first_byte_of(path, &by_key), 1);
    ck_assert_uint_eq(first_byte_of(path, &by_name), 2);
    ck_assert_uint_eq(first_byte_of(path, &by_id), 4);
    ck_assert_uint_eq(first_byte_of(path, &by_both), 4);
    ck_assert_int_eq(qcow2_open(path, &mismatch, &img, &err), -ENOENT);
    ck_assert_msg(strstr(err.message, "id \"1\" and name \"1\""), "%s", err.message);
}
END_TEST

START_TEST(disk_size_fallback)
{
    struct snapshot_table t;
    build_named_table(&t);
    ck_assert_uint_eq(snapshot_disk_size(&t.entries[0], 123456), 123456);
    ck_assert_uint_eq(snapshot_disk_size(&t.entries[3], 123456), 5ull << 20);
    snapshot_table_release(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("snapshot");

    TCase *tc = tcase_create("table");
    tcase_add_test(tc, entries_are_8_aligned_and_decoded);
    tcase_add_test(tc, extra_data_sizes);
    tcase_add_test(tc, extra_data_over_1024_refused);
    tcase_add_test(tc, entry_past_buffer_wants_more);
    tcase_add_test(tc, entry_starting_past_buffer_end_is_not_read);
    tcase_add_test(tc, open_refuses_snapshot_table_past_end_of_file);
    tcase_add_test(tc, nul_in_name_or_id_refused);
    tcase_add_test(tc, empty_and_oversized_counts);
    tcase_add_test(tc, entry_decode_strict_and_tolerant);
    tcase_add_test(tc, entry_take_nul_only_tolerated);
    tcase_add_test(tc, complete_extra_and_unpadded_size);
    suite_add_tcase(s, tc);

    tc = tcase_create("limit");
    tcase_add_test(tc, table_over_64_mib_refused);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("lookup");
    tcase_add_test(tc, find_by_id_first_then_name);
    tcase_add_test(tc, find_by_id_and_or_name);
    tcase_add_test(tc, selection_rules_on_a_real_image);
    tcase_add_test(tc, disk_size_fallback);
    suite_add_tcase(s, tc);

    return test_run_suite(s);
}
