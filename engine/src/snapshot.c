/* SPDX-License-Identifier: BSD-2-Clause */
#include "snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "error.h"
#include "header.h"

/* Byte offsets inside one entry. */
enum {
    SN_L1_OFFSET = 0,
    SN_L1_SIZE = 8,
    SN_ID_SIZE = 12,
    SN_NAME_SIZE = 14,
    SN_DATE_SEC = 16,
    SN_DATE_NSEC = 20,
    SN_VM_CLOCK = 24,
    SN_VM_STATE_SIZE = 32,
    SN_EXTRA_SIZE = 36,
};

/* Known fields of the extra data, by their offset inside it. */
enum { EXTRA_VM_STATE_LARGE = 0, EXTRA_DISK_SIZE = 8, EXTRA_ICOUNT = 16 };

static char *copy_string(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void decode_extra(struct snapshot *s, const uint8_t *extra)
{
    s->has_vm_state_size_large = s->extra_data_size >= EXTRA_VM_STATE_LARGE + 8;
    if (s->has_vm_state_size_large)
        s->vm_state_size_large = be64_get(extra + EXTRA_VM_STATE_LARGE);
    s->has_disk_size = s->extra_data_size >= EXTRA_DISK_SIZE + 8;
    if (s->has_disk_size)
        s->disk_size = be64_get(extra + EXTRA_DISK_SIZE);
    s->has_icount = s->extra_data_size >= EXTRA_ICOUNT + 8;
    if (s->has_icount)
        s->icount = be64_get(extra + EXTRA_ICOUNT);
}

int snapshot_entry_decode_fixed(const uint8_t *e, enum snapshot_parse_mode mode,
                                struct snapshot *s, struct snapshot_entry_layout *l)
{
    s->l1_table_offset = be64_get(e + SN_L1_OFFSET);
    s->l1_size = be32_get(e + SN_L1_SIZE);
    l->id_size = be16_get(e + SN_ID_SIZE);
    l->name_size = be16_get(e + SN_NAME_SIZE);
    s->date_sec = be32_get(e + SN_DATE_SEC);
    s->date_nsec = be32_get(e + SN_DATE_NSEC);
    s->vm_clock_nsec = be64_get(e + SN_VM_CLOCK);
    s->vm_state_size = be32_get(e + SN_VM_STATE_SIZE);
    l->stored_extra = be32_get(e + SN_EXTRA_SIZE);
    l->kept_extra = l->stored_extra;
    if (l->stored_extra > SNAPSHOT_MAX_EXTRA_DATA) {
        if (mode == SNAPSHOT_STRICT)
            return -EINVAL;
        l->kept_extra = SNAPSHOT_MAX_EXTRA_DATA;
    }
    return 0;
}

int snapshot_entry_take(struct snapshot *s, const struct snapshot_entry_layout *l,
                        enum snapshot_parse_mode mode, const uint8_t *extra, const uint8_t *id,
                        const uint8_t *name)
{
    if (mode == SNAPSHOT_STRICT && (memchr(id, 0, l->id_size) || memchr(name, 0, l->name_size)))
        return -EINVAL;
    s->extra_data_size = l->kept_extra;
    s->id_size = l->id_size;
    s->name_size = l->name_size;
    decode_extra(s, extra);
    s->extra_data = l->kept_extra ? malloc(l->kept_extra) : NULL;
    s->id = copy_string(id, l->id_size);
    s->name = copy_string(name, l->name_size);
    if ((l->kept_extra && !s->extra_data) || !s->id || !s->name)
        return -ENOMEM;
    if (l->kept_extra)
        memcpy(s->extra_data, extra, l->kept_extra);
    return 0;
}

void snapshot_entry_release(struct snapshot *s)
{
    free(s->extra_data);
    free(s->id);
    free(s->name);
    s->extra_data = NULL;
    s->id = s->name = NULL;
}

static int parse_entry(const uint8_t *buf, uint64_t len, uint64_t pos, uint64_t table_offset,
                       uint32_t index, const char *file, struct snapshot *s, uint64_t *next,
                       struct qcow2_error *err)
{
    uint64_t at = table_offset + pos;
    /* The previous entry's padding may already reach past the buffer: pos > len. */
    if (!span_fits(len, pos, SNAPSHOT_FIXED_BYTES))
        return err_set(err, -ENOBUFS, file, "snapshot table entry", at,
                       "entry %" PRIu32 " (starting %" PRIu64 " bytes into the table) runs "
                       "past the end of the file (%" PRIu64 " bytes of table there)",
                       index, pos, len);
    const uint8_t *e = buf + pos;
    struct snapshot_entry_layout l;
    s->entry_offset = at;
    if (snapshot_entry_decode_fixed(e, SNAPSHOT_STRICT, s, &l))
        return err_set(err, -EINVAL, file, "snapshot table entry", at,
                       "entry %" PRIu32 " has %" PRIu32 " bytes of extra data, more than %u",
                       index, l.stored_extra, SNAPSHOT_MAX_EXTRA_DATA);
    uint64_t body = snapshot_entry_kept_bytes(&l);
    uint64_t end = round_up_u64(pos + body, 8);
    if (end > SNAPSHOT_MAX_TABLE_BYTES)
        return err_set(err, -EFBIG, file, "snapshot table", table_offset,
                       "entry %" PRIu32 " ends at byte %" PRIu64 "; the table may hold at most "
                       "%u bytes",
                       index, end, SNAPSHOT_MAX_TABLE_BYTES);
    if (!span_fits(len, pos, body))
        return err_set(err, -ENOBUFS, file, "snapshot table entry", at,
                       "entry %" PRIu32 " (%" PRIu64 " bytes with its id and name) runs past "
                       "the end of the file",
                       index, body);
    const uint8_t *extra = e + SNAPSHOT_FIXED_BYTES;
    const uint8_t *id = e + snapshot_entry_id_pos(&l);
    int ret = snapshot_entry_take(s, &l, SNAPSHOT_STRICT, extra, id, id + l.id_size);
    if (ret == -EINVAL)
        return err_set(err, -EINVAL, file, "snapshot table entry", at,
                       "entry %" PRIu32 " has a NUL byte inside its id or name", index);
    if (ret)
        return err_set(err, -ENOMEM, file, "snapshot table entry", at, "out of memory");
    *next = end;
    return 0;
}

int snapshot_table_parse(const uint8_t *buf, uint64_t len, uint64_t table_offset,
                         uint32_t count, const char *file, struct snapshot_table *t,
                         struct qcow2_error *err)
{
    memset(t, 0, sizeof(*t));
    if (count == 0)
        return 0;
    if (count > QCOW2_MAX_SNAPSHOTS)
        return err_set(err, -EINVAL, file, "snapshot table", table_offset,
                       "%" PRIu32 " snapshots exceed the limit of %u", count,
                       QCOW2_MAX_SNAPSHOTS);
    t->entries = calloc(count, sizeof(*t->entries));
    if (!t->entries)
        return err_set(err, -ENOMEM, file, "snapshot table", table_offset, "out of memory");
    uint64_t pos = 0;
    for (uint32_t i = 0; i < count; i++) {
        t->count = i + 1;
        int ret = parse_entry(buf, len, pos, table_offset, i, file, &t->entries[i], &pos, err);
        if (ret) {
            t->bytes = pos;
            snapshot_table_release(t);
            return ret;
        }
    }
    t->bytes = pos;
    return 0;
}

void snapshot_table_release(struct snapshot_table *t)
{
    for (uint32_t i = 0; i < t->count; i++)
        snapshot_entry_release(&t->entries[i]);
    free(t->entries);
    t->entries = NULL;
    t->count = 0;
}

int snapshot_set_extra(struct snapshot *s, uint64_t vm_state_size, uint64_t disk_size,
                       uint64_t icount)
{
    uint8_t *extra = calloc(1, EXTRA_ICOUNT + 8);
    if (!extra)
        return -ENOMEM;
    be64_put(extra + EXTRA_VM_STATE_LARGE, vm_state_size);
    be64_put(extra + EXTRA_DISK_SIZE, disk_size);
    be64_put(extra + EXTRA_ICOUNT, icount);
    free(s->extra_data);
    s->extra_data = extra;
    s->extra_data_size = EXTRA_ICOUNT + 8;
    decode_extra(s, extra);
    return 0;
}

int snapshot_complete_extra(struct snapshot *s, uint64_t disk_size)
{
    uint32_t size = QVET_MAX(s->extra_data_size, (uint32_t)(EXTRA_ICOUNT + 8));
    uint8_t *extra = calloc(1, size);
    if (!extra)
        return -ENOMEM;
    if (s->extra_data_size)
        memcpy(extra, s->extra_data, s->extra_data_size);
    uint64_t vm_state = snapshot_vm_state_size(s);
    be64_put(extra + EXTRA_VM_STATE_LARGE, vm_state);
    be64_put(extra + EXTRA_DISK_SIZE, snapshot_disk_size(s, disk_size));
    be64_put(extra + EXTRA_ICOUNT, s->has_icount ? s->icount : UINT64_MAX);
    free(s->extra_data);
    s->extra_data = extra;
    s->extra_data_size = size;
    s->vm_state_size = vm_state <= UINT32_MAX ? (uint32_t)vm_state : 0;
    decode_extra(s, extra);
    return 0;
}

static uint64_t entry_size(const struct snapshot *s)
{
    return round_up_u64(SNAPSHOT_FIXED_BYTES + (uint64_t)s->extra_data_size + strlen(s->id) +
                            strlen(s->name),
                        8);
}

uint64_t snapshot_table_size(const struct snapshot_table *t)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < t->count; i++)
        n += entry_size(&t->entries[i]);
    return n;
}

uint64_t snapshot_table_unpadded_size(const struct snapshot_table *t)
{
    if (!t->count)
        return 0;
    const struct snapshot *last = &t->entries[t->count - 1];
    return snapshot_table_size(t) - entry_size(last) + SNAPSHOT_FIXED_BYTES +
           last->extra_data_size + strlen(last->id) + strlen(last->name);
}

void snapshot_table_encode(const struct snapshot_table *t, uint8_t *buf)
{
    uint64_t pos = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        const struct snapshot *s = &t->entries[i];
        uint8_t *e = buf + pos;
        size_t id_size = strlen(s->id), name_size = strlen(s->name);
        memset(e, 0, entry_size(s));
        be64_put(e + SN_L1_OFFSET, s->l1_table_offset);
        be32_put(e + SN_L1_SIZE, s->l1_size);
        be16_put(e + SN_ID_SIZE, (uint16_t)id_size);
        be16_put(e + SN_NAME_SIZE, (uint16_t)name_size);
        be32_put(e + SN_DATE_SEC, s->date_sec);
        be32_put(e + SN_DATE_NSEC, s->date_nsec);
        be64_put(e + SN_VM_CLOCK, s->vm_clock_nsec);
        be32_put(e + SN_VM_STATE_SIZE, s->vm_state_size);
        be32_put(e + SN_EXTRA_SIZE, s->extra_data_size);
        uint8_t *extra = e + SNAPSHOT_FIXED_BYTES;
        if (s->extra_data_size)
            memcpy(extra, s->extra_data, s->extra_data_size);
        memcpy(extra + s->extra_data_size, s->id, id_size);
        memcpy(extra + s->extra_data_size + id_size, s->name, name_size);
        pos += entry_size(s);
    }
}

int snapshot_find_by(const struct snapshot_table *t, const char *id, const char *name)
{
    if (!id && !name)
        return -ENOENT;
    for (uint32_t i = 0; i < t->count; i++)
        if ((!id || !strcmp(t->entries[i].id, id)) &&
            (!name || !strcmp(t->entries[i].name, name)))
            return (int)i;
    return -ENOENT;
}

int snapshot_find(const struct snapshot_table *t, const char *key)
{
    int i = snapshot_find_by(t, key, NULL);
    return i >= 0 ? i : snapshot_find_by(t, NULL, key);
}

uint64_t snapshot_disk_size(const struct snapshot *s, uint64_t fallback)
{
    return s->has_disk_size ? s->disk_size : fallback;
}

uint64_t snapshot_vm_state_size(const struct snapshot *s)
{
    return s->has_vm_state_size_large ? s->vm_state_size_large : s->vm_state_size;
}
