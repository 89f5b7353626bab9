/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The oracle (see oracle.h and docs/oracle.md). Each state (the active disk or a
 * snapshot) is its known guest bytes, held in a raw sparse file or in memory, the bytes
 * its last cluster holds past the end of the disk (the tail), and an array holding, for
 * every known 512-byte sector, the number of the operation that last wrote it.
 *
 * Nothing here is clever on purpose. File reads and writes are one pread/pwrite each
 * (looped only for short transfers) plus an O(sectors) provenance update; copies between
 * the active file and snapshot files walk the data regions (SEEK_DATA/SEEK_HOLE) and
 * leave holes as holes. A file is always as long as its disk; the bytes past a known
 * prefix are zeros there and never read. After a failed call the oracle's state is
 * unspecified: its users stop at the first error anyway.
 */
#define _GNU_SOURCE
#include "oracle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACTIVE_NAME "oracle.raw"
#define CHUNK (64u * 1024u)
#define CHUNK_SECTORS (CHUNK / ORACLE_SECTOR)
#define ZERO_CHUNK (64u * 1024u)
#define MIN_CLUSTER 512u
#define MAX_CLUSTER (2u << 20)

/* CHUNK bytes of guest data, shared by `refs` states. */
struct chunk {
    uint32_t refs;
    uint8_t bytes[CHUNK];
};

/* The authors of the CHUNK_SECTORS sectors of one chunk, shared by `refs` states. */
struct authors {
    uint32_t refs;
    uint32_t op[CHUNK_SECTORS];
};

/* One chunk's worth of a state. */
struct slot {
    struct chunk *data;         /* NULL: zeros */
    struct authors *by;         /* NULL: every sector was last written by `author` */
    uint32_t author;
};

/* The guest's view of one disk state. */
struct state {
    uint64_t size;              /* the disk's size */
    uint64_t known;             /* bytes [0, known) are predicted; known <= size */
    bool tail_known;            /* with known == size: the tail bytes are predicted */
    uint8_t *tail;              /* what the last cluster holds past `size`; NULL: zeros */
    struct slot *slots;         /* one per chunk of the known prefix */
    uint64_t nslots;
    uint64_t slots_cap;
};

struct snap {
    char *id;
    char *path;                 /* a file oracle's file for the contents */
    bool file_written;          /* the file holds them (a snapshot never changes) */
    struct state st;
};

struct oracle {
    struct oracle_facts facts;
    bool in_memory;
    char *dir;
    char *path;                 /* dir/oracle.raw */
    int fd;
    bool no_punch;              /* fallocate(PUNCH_HOLE) is unsupported here */
    struct state active;
    uint8_t *scratch;           /* cluster_size bytes */

    struct snap **snaps;        /* individually allocated, so pointers stay valid */
    uint32_t nsnaps;
    uint32_t snaps_cap;
};

static const uint8_t zeros[ZERO_CHUNK];

/* ---- small helpers ------------------------------------------------------------------ */

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + 1 + b + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/*
 * "snap-<id>.raw" with every byte of the id outside [A-Za-z0-9._-] written as %XX, so
 * the name never holds a '/' (it stays inside the directory) and distinct ids get
 * distinct names. Returns NULL with errno set.
 */
static char *snapshot_file_name(const char *id)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(id);
    if (n == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (n > NAME_MAX) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    char *name = malloc(5 + 3 * n + 4 + 1);
    if (!name)
        return NULL;
    char *p = name;
    memcpy(p, "snap-", 5);
    p += 5;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    memcpy(p, ".raw", 5);
    if (strlen(name) > NAME_MAX) {
        free(name);
        errno = ENAMETOOLONG;
        return NULL;
    }
    return name;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;        /* the file is shorter than the disk: someone cut it */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* Is [off, off+len) inside a disk of `size` bytes (without overflowing)? */
static bool in_range(uint64_t size, uint64_t len, uint64_t off)
{
    return off <= size && len <= size - off;
}

static uint64_t round_up(uint64_t x, uint64_t unit)
{
    return (x + unit - 1) / unit * unit;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static int write_zeros(int fd, uint64_t len, uint64_t off)
{
    while (len > 0) {
        size_t n = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
        int ret = pwrite_full(fd, zeros, n, off);
        if (ret < 0)
            return ret;
        len -= n;
        off += n;
    }
    return 0;
}

/* ---- chunks and states -------------------------------------------------------------- */

/*
 * Makes the array *buf of *cap elements of `elem` bytes hold at least `count`, doubling
 * (the contents of new room are undefined).
 */
static int reserve(void **buf, uint64_t *cap, uint64_t count, size_t elem)
{
    if (count <= *cap && *buf)
        return 0;
    uint64_t n = *cap * 2 > count ? *cap * 2 : count;
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / elem)
        return -EFBIG;
    void *p = realloc(*buf, (size_t)n * elem);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

static void chunk_put(struct chunk *c)
{
    if (c && --c->refs == 0)
        free(c);
}

static void authors_put(struct authors *a)
{
    if (a && --a->refs == 0)
        free(a);
}

/* Forgets a slot's bytes (zeros from now on). */
static void slot_drop_data(struct slot *sl)
{
    chunk_put(sl->data);
    sl->data = NULL;
}

/* Every sector of the slot is now `op`'s. */
static void slot_set_author(struct slot *sl, uint32_t op)
{
    authors_put(sl->by);
    sl->by = NULL;
    sl->author = op;
}

/*
 * The slot's bytes, for this state alone to change: a shared chunk is copied first, a
 * missing one made of zeros. With `overwrite` the caller replaces every byte, so the old
 * ones are not copied. NULL when out of memory.
 */
static struct chunk *slot_own_data(struct slot *sl, bool overwrite)
{
    struct chunk *c = sl->data;
    if (c && c->refs == 1)
        return c;
    struct chunk *mine = malloc(sizeof(*mine));
    if (!mine)
        return NULL;
    mine->refs = 1;
    if (c && !overwrite)
        memcpy(mine->bytes, c->bytes, CHUNK);
    else if (!overwrite)
        memset(mine->bytes, 0, CHUNK);
    chunk_put(c);
    sl->data = mine;
    return mine;
}

/* The slot's authors, for this state alone to change (as slot_own_data). */
static struct authors *slot_own_authors(struct slot *sl)
{
    struct authors *a = sl->by;
    if (a && a->refs == 1)
        return a;
    struct authors *mine = malloc(sizeof(*mine));
    if (!mine)
        return NULL;
    mine->refs = 1;
    if (a) {
        memcpy(mine->op, a->op, sizeof(mine->op));
    } else {
        for (unsigned i = 0; i < CHUNK_SECTORS; i++)
            mine->op[i] = sl->author;
    }
    authors_put(a);
    sl->by = mine;
    return mine;
}

static uint64_t slots_for(uint64_t known)
{
    return (known + CHUNK - 1) / CHUNK;
}

/* Gives the state n slots: new ones are zeros by ORACLE_NO_OP, dropped ones released. */
static int slots_resize(struct state *st, uint64_t n)
{
    for (uint64_t i = n; i < st->nslots; i++) {
        slot_drop_data(&st->slots[i]);
        slot_set_author(&st->slots[i], ORACLE_NO_OP);
    }
    if (n > st->nslots) {
        void *p = st->slots;
        int ret = reserve(&p, &st->slots_cap, n, sizeof(struct slot));
        st->slots = p;
        if (ret < 0)
            return ret;
        memset(st->slots + st->nslots, 0, (size_t)(n - st->nslots) * sizeof(struct slot));
    }
    st->nslots = n;
    return 0;
}

/* A state of `size` bytes of which `known` are predicted: zeros, by ORACLE_NO_OP. */
static int state_init(struct state *st, uint64_t size, uint64_t known)
{
    st->size = size;
    st->known = known;
    return slots_resize(st, slots_for(known));
}

static void state_free(struct state *st)
{
    slots_resize(st, 0);
    free(st->slots);
    free(st->tail);
}

/* dst becomes what src is, sharing its chunks: O(chunks), whatever they hold. */
static int state_share(struct state *dst, const struct state *src, uint32_t cluster_size)
{
    if (src->tail && !dst->tail && !(dst->tail = malloc(cluster_size)))
        return -ENOMEM;
    int ret = slots_resize(dst, 0);
    if (!ret)
        ret = slots_resize(dst, src->nslots);
    if (ret < 0)
        return ret;
    for (uint64_t i = 0; i < src->nslots; i++) {
        struct slot sl = src->slots[i];
        if (sl.data)
            sl.data->refs++;
        if (sl.by)
            sl.by->refs++;
        dst->slots[i] = sl;
    }
    if (src->tail) {
        memcpy(dst->tail, src->tail, cluster_size);
    } else {
        free(dst->tail);
        dst->tail = NULL;
    }
    dst->size = src->size;
    dst->known = src->known;
    dst->tail_known = src->tail_known;
    return 0;
}

/* Where guest byte `off` lies: its slot and the offset in the chunk. */
#define SLOT_OF(off) ((off) / CHUNK)
#define IN_CHUNK(off) ((size_t)((off) % CHUNK))

/* How much of [off, end) lies in off's chunk. */
static size_t piece(uint64_t off, uint64_t end)
{
    uint64_t room = CHUNK - IN_CHUNK(off);
    return end - off < room ? (size_t)(end - off) : (size_t)room;
}

/*
 * Whether the piece [off, off+n) covers all that its chunk holds of the known prefix:
 * then the chunk can be replaced as a whole.
 */
static bool whole_piece(const struct state *st, uint64_t off, size_t n)
{
    uint64_t start = off - IN_CHUNK(off);
    return off == start && (n == CHUNK || off + n >= st->known);
}

/* Reads known bytes [off, off+len). */
static void state_read(const struct state *st, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    for (uint64_t end = off + len; off < end;) {
        size_t n = piece(off, end);
        const struct chunk *c = st->slots[SLOT_OF(off)].data;
        if (c)
            memcpy(p, c->bytes + IN_CHUNK(off), n);
        else
            memset(p, 0, n);
        p += n;
        off += n;
    }
}

/*
 * Whether `got` differs from known bytes [off, off+len), compared in place: *sector the
 * first sector that does.
 */
static bool state_differs(const struct state *st, const uint8_t *got, size_t len,
                          uint64_t off, uint64_t *sector)
{
    for (uint64_t end = off + len; off < end;) {
        size_t n = piece(off, end);
        const struct chunk *c = st->slots[SLOT_OF(off)].data;
        if (oracle_first_mismatch(got, c ? c->bytes + IN_CHUNK(off) : zeros, n, off, sector))
            return true;
        got += n;
        off += n;
    }
    return false;
}

/* Writes known bytes [off, off+len). */
static int state_write(struct state *st, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    for (uint64_t end = off + len; off < end;) {
        size_t n = piece(off, end);
        struct chunk *c = slot_own_data(&st->slots[SLOT_OF(off)], n == CHUNK);
        if (!c)
            return -ENOMEM;
        memcpy(c->bytes + IN_CHUNK(off), p, n);
        p += n;
        off += n;
    }
    return 0;
}

/* Zeros over known bytes [off, off+len): whole chunks are dropped. */
static int state_zero(struct state *st, uint64_t len, uint64_t off)
{
    for (uint64_t end = off + len; off < end;) {
        size_t n = piece(off, end);
        struct slot *sl = &st->slots[SLOT_OF(off)];
        if (whole_piece(st, off, n)) {
            slot_drop_data(sl);
        } else if (sl->data) {
            struct chunk *c = slot_own_data(sl, false);
            if (!c)
                return -ENOMEM;
            memset(c->bytes + IN_CHUNK(off), 0, n);
        }
        off += n;
    }
    return 0;
}

/* Stores the known bytes [0, len) of a fresh state, leaving chunks of zeros out. */
static int state_load(struct state *st, const uint8_t *bytes, uint64_t len)
{
    for (uint64_t off = 0; off < len;) {
        size_t n = piece(off, len);
        if (!all_zero(bytes + off, n)) {
            int ret = state_write(st, bytes + off, n, off);
            if (ret < 0)
                return ret;
        }
        off += n;
    }
    return 0;
}

/* Sets the author of every known sector [off, off+len) touches to op. */
static int prov_mark(struct state *st, uint64_t len, uint64_t off, uint32_t op)
{
    uint64_t end = off + len < st->known ? off + len : st->known;
    if (end <= off)
        return 0;
    /* Whole sectors: from the one holding off to the one holding end - 1. */
    off -= off % ORACLE_SECTOR;
    end = round_up(end, ORACLE_SECTOR);
    while (off < end) {
        size_t n = piece(off, end);
        struct slot *sl = &st->slots[SLOT_OF(off)];
        if (whole_piece(st, off, n)) {
            slot_set_author(sl, op);
        } else {
            struct authors *a = slot_own_authors(sl);
            if (!a)
                return -ENOMEM;
            size_t first = IN_CHUNK(off) / ORACLE_SECTOR;
            for (size_t s = first; s < first + n / ORACLE_SECTOR; s++)
                a->op[s] = op;
        }
        off += n;
    }
    return 0;
}

static uint32_t state_author(const struct state *st, uint64_t sector)
{
    const struct slot *sl = &st->slots[sector / CHUNK_SECTORS];
    return sl->by ? sl->by->op[sector % CHUNK_SECTORS] : sl->author;
}

/*
 * Writes a state into a new file at `path`: its chunks that hold data, the rest holes.
 * Returns 0 or a negative errno (and leaves no file).
 */
static int state_write_file(const struct state *st, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int ret = 0;
    for (uint64_t i = 0; i < st->nslots && !ret; i++) {
        const struct chunk *c = st->slots[i].data;
        uint64_t off = i * CHUNK;
        size_t n = piece(off, st->known);
        if (c && !all_zero(c->bytes, n))
            ret = pwrite_full(fd, c->bytes, n, off);
    }
    if (ret == 0 && ftruncate(fd, (off_t)st->size) < 0)
        ret = -errno;
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    if (ret < 0)
        unlink(path);
    return ret;
}

/* ---- the active contents ------------------------------------------------------------ */

/* How many of the bytes [off, off+len) lie in the known prefix. */
static uint64_t known_part(const struct oracle *o, uint64_t len, uint64_t off)
{
    return off >= o->active.known ? 0 : min_u64(len, o->active.known - off);
}

/* Zeros over [off, off+len) of the active file. */
static int file_zero(struct oracle *o, uint64_t len, uint64_t off)
{
#ifdef FALLOC_FL_PUNCH_HOLE
    if (!o->no_punch) {
        /* Partial blocks at either end are zeroed, whole ones deallocated. */
        if (fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                      (off_t)len) == 0)
            return 0;
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            return -errno;
        o->no_punch = true;
    }
#endif
    return write_zeros(o->fd, len, off);
}

/* Writes known bytes. */
static int active_write(struct oracle *o, const void *buf, size_t len, uint64_t off)
{
    int ret = o->in_memory || !len ? 0 : pwrite_full(o->fd, buf, len, off);
    return ret ? ret : state_write(&o->active, buf, len, off);
}

static int active_zero(struct oracle *o, uint64_t len, uint64_t off)
{
    int ret = o->in_memory || !len ? 0 : file_zero(o, len, off);
    return ret ? ret : state_zero(&o->active, len, off);
}

/*
 * Gives the active state a known prefix of `known` bytes and a size of `size`: bytes
 * past the old prefix read as zeros, authored by op. A file stays as long as the disk.
 */
static int active_reshape(struct oracle *o, uint64_t known, uint64_t size, uint32_t op)
{
    struct state *a = &o->active;
    uint64_t old_known = a->known;
    int ret = 0;
    if (known < old_known)
        ret = state_zero(a, old_known - known, known);  /* the chunks' invariant */
    if (!ret)
        ret = slots_resize(a, slots_for(known));
    if (ret < 0)
        return ret;
    /* The first cut drops what lay past the prefix, so a later grow exposes zeros. */
    if (!o->in_memory && (ftruncate(o->fd, (off_t)known) < 0 ||
                          ftruncate(o->fd, (off_t)size) < 0))
        return -errno;
    a->known = known;
    a->size = size;
    return known > old_known ? prov_mark(a, known - old_known, old_known, op) : 0;
}

/* Zeros over the known part of [off, off+len), authored by op. */
static int zero_range(struct oracle *o, uint64_t len, uint64_t off, uint32_t op)
{
    uint64_t n = known_part(o, len, off);
    if (!n)
        return 0;
    int ret = active_zero(o, n, off);
    return ret ? ret : prov_mark(&o->active, n, off, op);
}

/*
 * Makes the active file hold state s (the active state still describes what it holds):
 * only the chunks the two do not share are written.
 */
static int file_become(struct oracle *o, const struct state *s)
{
    const struct state *a = &o->active;
    /* Past `cut` the file reads as zeros once cut there; before it, it holds a's bytes. */
    uint64_t cut = min_u64(a->known, s->known);
    if (ftruncate(o->fd, (off_t)cut) < 0 || ftruncate(o->fd, (off_t)s->size) < 0)
        return -errno;
    int ret = 0;
    for (uint64_t i = 0; i < s->nslots && !ret; i++) {
        const struct chunk *want = s->slots[i].data;
        const struct chunk *have = i < a->nslots ? a->slots[i].data : NULL;
        uint64_t start = i * CHUNK, end = start + piece(start, s->known);
        uint64_t mid = cut < start ? start : cut < end ? cut : end;
        if (mid > start && want != have)
            ret = want ? pwrite_full(o->fd, want->bytes, (size_t)(mid - start), start)
                       : file_zero(o, mid - start, start);
        if (!ret && end > mid && want)
            ret = pwrite_full(o->fd, want->bytes + (mid - start), (size_t)(end - mid), mid);
    }
    return ret;
}

/* ---- creating ----------------------------------------------------------------------- */

static int check_facts(const struct oracle_facts *f, char *errbuf, size_t errlen)
{
    if (!f) {
        set_err(errbuf, errlen, "oracle: no image facts given");
        return -EINVAL;
    }
    if (f->version != 2 && f->version != 3) {
        set_err(errbuf, errlen, "oracle: qcow2 version %u: expected 2 or 3", f->version);
        return -EINVAL;
    }
    if (f->cluster_size < MIN_CLUSTER || f->cluster_size > MAX_CLUSTER ||
        (f->cluster_size & (f->cluster_size - 1))) {
        set_err(errbuf, errlen, "oracle: cluster size %u is not a power of two from %u to %u",
                f->cluster_size, MIN_CLUSTER, MAX_CLUSTER);
        return -EINVAL;
    }
    return 0;
}

static int check_disk_size(uint64_t size, char *errbuf, size_t errlen)
{
    if (size % ORACLE_SECTOR != 0) {
        set_err(errbuf, errlen, "oracle: disk size %llu is not a multiple of %u",
                (unsigned long long)size, ORACLE_SECTOR);
        return -EINVAL;
    }
    if (size > (uint64_t)INT64_MAX) {
        set_err(errbuf, errlen, "oracle: disk size %llu is too large",
                (unsigned long long)size);
        return -EFBIG;
    }
    return 0;
}

/* A new oracle whose active state has `known` of `size` bytes predicted (no contents). */
static int oracle_new(const struct oracle_facts *facts, uint64_t size, uint64_t known,
                      struct oracle **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    int ret = check_facts(facts, errbuf, errlen);
    if (!ret)
        ret = check_disk_size(size, errbuf, errlen);
    if (ret)
        return ret;
    struct oracle *o = calloc(1, sizeof(*o));
    if (!o) {
        set_err(errbuf, errlen, "oracle: out of memory");
        return -ENOMEM;
    }
    o->facts = *facts;
    o->fd = -1;
    o->scratch = malloc(facts->cluster_size);
    ret = o->scratch ? state_init(&o->active, size, known) : -ENOMEM;
    if (ret) {
        set_err(errbuf, errlen, "oracle: no memory for the chunk table of %llu bytes",
                (unsigned long long)known);
        oracle_close(o);
        return ret;
    }
    *out = o;
    return 0;
}

/*
 * Copies the first `len` bytes of file src into the active state (file and chunks),
 * reading only its data regions (SEEK_DATA/SEEK_HOLE) and skipping chunks of zeros, so
 * holes stay holes. Without SEEK_DATA everything is read. Returns 0 or a negative errno.
 */
static int load_sparse(struct oracle *o, int src, uint64_t len)
{
    uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    uint64_t off = 0;
    while (off < len && !ret) {
        uint64_t data, hole;
        off_t d = lseek(src, (off_t)off, SEEK_DATA);
        if (d < 0) {
            if (errno == ENXIO)
                break;                  /* no data from off on */
            if (errno != EINVAL && errno != EOPNOTSUPP) {
                ret = -errno;
                break;
            }
            data = off;                 /* no SEEK_DATA here: everything is data */
            hole = len;
        } else {
            data = (uint64_t)d;
            off_t h = lseek(src, d, SEEK_HOLE);
            hole = h < 0 ? len : (uint64_t)h;
        }
        if (data >= len)
            break;
        hole = min_u64(hole, len);
        for (uint64_t at = data; at < hole && !ret;) {
            size_t n = piece(at, hole);
            ret = pread_full(src, buf, n, at);
            if (ret == 0 && !all_zero(buf, n))
                ret = active_write(o, buf, n, at);
            at += n;
        }
        off = hole > data ? hole : data + 1;
    }
    free(buf);
    return ret;
}

static int load_initial(struct oracle *o, const char *initial_raw, char *errbuf,
                        size_t errlen)
{
    int src = open(initial_raw, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        int e = errno;
        set_err(errbuf, errlen, "cannot open initial raw image %s: %s", initial_raw,
                strerror(e));
        return -e;
    }
    struct stat st;
    int ret = 0;
    if (fstat(src, &st) < 0) {
        ret = -errno;
        set_err(errbuf, errlen, "cannot stat initial raw image %s: %s", initial_raw,
                strerror(-ret));
    } else if (!S_ISREG(st.st_mode)) {
        ret = -EINVAL;
        set_err(errbuf, errlen, "initial raw image %s is not a regular file", initial_raw);
    } else {
        uint64_t size = o->active.size;
        uint64_t n = (uint64_t)st.st_size < size ? (uint64_t)st.st_size : size;
        ret = load_sparse(o, src, n);
        if (ret < 0)
            set_err(errbuf, errlen, "cannot copy initial raw image %s into %s: %s",
                    initial_raw, o->path, strerror(-ret));
    }
    close(src);
    return ret;
}

int oracle_create(const char *dir, uint64_t size, const char *initial_raw,
                  const struct oracle_facts *facts, struct oracle **out, char *errbuf,
                  size_t errlen)
{
    *out = NULL;
    if (!dir || !*dir) {
        set_err(errbuf, errlen, "oracle: no directory given");
        return -EINVAL;
    }
    struct oracle *o;
    int ret = oracle_new(facts, size, size, &o, errbuf, errlen);
    if (ret)
        return ret;
    /*
     * A new image's last cluster holds nothing past the end of the disk (backing file
     * bytes there are never seen: see grow()), so the tail is known: zeros.
     */
    o->active.tail_known = true;
    o->dir = dup_string(dir);
    o->path = join_path(dir, ACTIVE_NAME);
    if (!o->dir || !o->path) {
        set_err(errbuf, errlen, "oracle: out of memory");
        ret = -ENOMEM;
        goto fail;
    }
    o->fd = open(o->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        ret = -errno;
        set_err(errbuf, errlen, "cannot create %s: %s", o->path, strerror(-ret));
        goto fail;
    }
    if (initial_raw) {
        ret = load_initial(o, initial_raw, errbuf, errlen);
        if (ret < 0)
            goto fail;
    }
    if (ftruncate(o->fd, (off_t)size) < 0) {
        ret = -errno;
        set_err(errbuf, errlen, "cannot size %s to %llu bytes: %s", o->path,
                (unsigned long long)size, strerror(-ret));
        goto fail;
    }
    *out = o;
    return 0;

fail:
    oracle_close(o);
    return ret;
}

int oracle_create_mem(uint64_t size, const void *initial, uint64_t initial_len,
                      const struct oracle_facts *facts, struct oracle **out, char *errbuf,
                      size_t errlen)
{
    *out = NULL;
    if (initial ? initial_len % ORACLE_SECTOR || initial_len > size : initial_len != 0) {
        set_err(errbuf, errlen, "oracle: %llu initial bytes for a disk of %llu: expected a "
                "multiple of %u, at most the disk", (unsigned long long)initial_len,
                (unsigned long long)size, ORACLE_SECTOR);
        return -EINVAL;
    }
    uint64_t known = initial ? initial_len : size;
    struct oracle *o;
    int ret = oracle_new(facts, size, known, &o, errbuf, errlen);
    if (ret)
        return ret;
    o->in_memory = true;
    /* Past the end of an existing image, its last cluster may hold anything. */
    o->active.tail_known = !initial || size % facts->cluster_size == 0;
    if (initial && (ret = state_load(&o->active, initial, known)) < 0) {
        set_err(errbuf, errlen, "oracle: no memory for %llu bytes of disk",
                (unsigned long long)known);
        oracle_close(o);
        return ret;
    }
    *out = o;
    return 0;
}

static void free_snap(struct snap *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->path);
    state_free(&s->st);
    free(s);
}

/* A file snapshot's file, written once: a snapshot never changes. */
static int snap_write_file(struct snap *s)
{
    if (!s->path || s->file_written)
        return 0;
    int ret = state_write_file(&s->st, s->path);
    s->file_written = ret == 0;
    return ret;
}

void oracle_close(struct oracle *o)
{
    if (!o)
        return;
    if (o->fd >= 0)
        close(o->fd);
    for (uint32_t i = 0; i < o->nsnaps; i++) {
        snap_write_file(o->snaps[i]);   /* they stay for the report; best effort */
        free_snap(o->snaps[i]);
    }
    free(o->snaps);
    state_free(&o->active);
    free(o->scratch);
    free(o->path);
    free(o->dir);
    free(o);
}

uint64_t oracle_size(const struct oracle *o)
{
    return o->active.size;
}

uint64_t oracle_known(const struct oracle *o)
{
    return o->active.known;
}

const char *oracle_path(const struct oracle *o)
{
    return o->path;
}

static int read_known(const struct oracle *o, const char *id, void *buf, size_t len,
                      uint64_t off);

int oracle_read(struct oracle *o, void *buf, size_t len, uint64_t off)
{
    return read_known(o, NULL, buf, len, off);
}

uint32_t oracle_sector_author(const struct oracle *o, uint64_t sector)
{
    if (sector >= o->active.known / ORACLE_SECTOR)
        return ORACLE_NO_OP;
    return state_author(&o->active, sector);
}

/* ---- the rules ---------------------------------------------------------------------- */

/*
 * Whether [off, off+len) covers the whole of a partial last cluster: an operation that
 * then rewrites the cluster as a whole (a zero flag, a discard, a compressed cluster)
 * also decides what it holds past the end of the disk.
 */
static bool covers_partial_last_cluster(const struct oracle *o, uint64_t len, uint64_t off)
{
    uint64_t size = o->active.size, cs = o->facts.cluster_size;
    return size % cs && len && off + len == size && off <= size / cs * cs;
}

static void tail_zero(struct oracle *o)
{
    free(o->active.tail);
    o->active.tail = NULL;
    o->active.tail_known = true;
}

/* v2 has no zero flag: what a v2 image with a backing file cannot do without data. */
static bool v2_over_backing(const struct oracle *o)
{
    return o->facts.version < 3 && o->facts.has_backing;
}

int oracle_write(struct oracle *o, const void *buf, size_t len, uint64_t off, uint32_t op)
{
    if (!in_range(o->active.size, len, off))
        return -EINVAL;
    uint64_t n = known_part(o, len, off);
    if (!n)
        return 0;
    int ret = active_write(o, buf, (size_t)n, off);
    return ret ? ret : prov_mark(&o->active, n, off, op);
}

int oracle_zero(struct oracle *o, uint64_t len, uint64_t off, uint32_t op)
{
    if (!in_range(o->active.size, len, off))
        return -EINVAL;
    int ret = zero_range(o, len, off, op);
    /*
     * The whole last cluster gets a zero flag (v3) or is freed (v2 without a backing
     * file), its tail with it. On v2 over a backing file only the bytes are written.
     */
    if (!ret && covers_partial_last_cluster(o, len, off) && !v2_over_backing(o))
        tail_zero(o);
    return ret;
}

int oracle_discard(struct oracle *o, uint64_t len, uint64_t off, uint32_t op)
{
    if (!in_range(o->active.size, len, off))
        return -EINVAL;
    /*
     * A discarded v2 cluster would show the backing file's stale data, so QEMU ignores
     * the discard altogether (and so does the engine).
     */
    if (v2_over_backing(o))
        return 0;
    /* Whole clusters only, subclusters or not; a partial last cluster counts whole. */
    uint64_t cs = o->facts.cluster_size, size = o->active.size;
    uint64_t start = round_up(off, cs);
    uint64_t end = off + len == size ? size : (off + len) / cs * cs;
    if (end <= start)
        return 0;
    /* What is discarded reads as zeros: a zero flag, or no cluster and no backing file. */
    int ret = zero_range(o, end - start, start, op);
    if (!ret && covers_partial_last_cluster(o, end - start, start))
        tail_zero(o);
    return ret;
}

bool oracle_compressed_whole(const struct oracle *o, uint64_t len, uint64_t off)
{
    uint64_t cs = o->facts.cluster_size, size = o->active.size;
    return len && in_range(size, len, off) && off % cs == 0 &&
           (len % cs == 0 || off + len == size);
}

int oracle_write_compressed(struct oracle *o, const void *buf, size_t len, uint64_t off,
                            uint32_t op)
{
    if (!oracle_compressed_whole(o, len, off))
        return -EINVAL;
    int ret = oracle_write(o, buf, len, off, op);
    if (!ret && covers_partial_last_cluster(o, len, off))
        tail_zero(o);               /* compressed whole, padded with zeros */
    return ret;
}

/*
 * The new last cluster keeps what lies past the new end: those bytes become the tail,
 * known when they were.
 */
static int shrink(struct oracle *o, uint64_t new_size)
{
    struct state *a = &o->active;
    uint64_t old = a->size;
    uint64_t cluster_end = round_up(new_size, o->facts.cluster_size);
    uint64_t from_disk = min_u64(old, cluster_end) - new_size;
    bool knows = a->known >= new_size + from_disk && (cluster_end <= old || a->tail_known);
    if (knows && cluster_end > new_size) {
        state_read(a, o->scratch, (size_t)from_disk, new_size);
        if (cluster_end > old && a->tail)
            memcpy(o->scratch + from_disk, a->tail, (size_t)(cluster_end - old));
        else if (cluster_end > old)
            memset(o->scratch + from_disk, 0, (size_t)(cluster_end - old));
        if (!a->tail && !(a->tail = malloc(o->facts.cluster_size)))
            return -ENOMEM;
        memcpy(a->tail, o->scratch, (size_t)(cluster_end - new_size));
    }
    a->tail_known = knows;
    return active_reshape(o, min_u64(a->known, new_size), new_size, ORACLE_NO_OP);
}

/*
 * Growing exposes zeros, but for two things. Over a backing file longer than the old
 * disk, QEMU zeroes the whole new area (so neither the backing file's data nor stale
 * bytes show). Otherwise the old last cluster, when partial, shows again what it held
 * past the old end (a shrink into the middle of a cluster leaves it there).
 */
static int grow(struct oracle *o, uint64_t new_size, uint32_t op)
{
    struct state *a = &o->active;
    uint64_t old = a->size, cs = o->facts.cluster_size;
    if (a->known < old)
        return active_reshape(o, a->known, new_size, op);   /* still known up to there */
    bool zeroed = o->facts.has_backing && o->facts.backing_size > old;
    uint64_t old_cluster_end = round_up(old, cs);
    uint64_t stale_end = zeroed ? old : min_u64(new_size, old_cluster_end);
    if (stale_end > old && !a->tail_known)
        return active_reshape(o, old, new_size, op);        /* the prefix ends at them */
    int ret = active_reshape(o, new_size, new_size, op);
    if (!ret && stale_end > old && a->tail)
        ret = active_write(o, a->tail, (size_t)(stale_end - old), old);
    if (round_up(new_size, cs) == old_cluster_end) {
        if (a->tail)
            memmove(a->tail, a->tail + (new_size - old), (size_t)(old_cluster_end - new_size));
    } else {
        /* A cluster past the old last one was never allocated: it holds nothing. */
        tail_zero(o);
    }
    return ret;
}

int oracle_resize(struct oracle *o, uint64_t new_size, uint32_t op)
{
    if (new_size % ORACLE_SECTOR != 0)
        return -EINVAL;
    if (new_size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (new_size < o->active.size)
        return shrink(o, new_size);
    if (new_size > o->active.size)
        return grow(o, new_size, op);
    return 0;
}

/* ---- snapshots ---------------------------------------------------------------------- */
/* ---- snapshots ---------------------------------------------------------------------- */

static struct snap *find_snap(const struct oracle *o, const char *id, uint32_t *index)
{
    if (!id)
        return NULL;
    for (uint32_t i = 0; i < o->nsnaps; i++) {
        if (strcmp(o->snaps[i]->id, id) == 0) {
            if (index)
                *index = i;
            return o->snaps[i];
        }
    }
    return NULL;
}

/* A new, empty snapshot entry for `id` (not yet listed); a file oracle's gets a path. */
static int snap_begin(struct oracle *o, const char *id, struct snap **out)
{
    *out = NULL;
    if (!id)
        return -EINVAL;
    if (find_snap(o, id, NULL))
        return -EEXIST;
    if (o->nsnaps == o->snaps_cap) {
        uint32_t cap = o->snaps_cap ? o->snaps_cap * 2 : 8;
        struct snap **p = realloc(o->snaps, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        o->snaps = p;
        o->snaps_cap = cap;
    }
    struct snap *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int ret = 0;
    if (!o->in_memory) {
        char *name = snapshot_file_name(id);
        if (!name)
            ret = -errno;
        else if (!(s->path = join_path(o->dir, name)))
            ret = -ENOMEM;
        free(name);
    }
    if (!ret && !(s->id = dup_string(id)))
        ret = -ENOMEM;
    if (ret) {
        free_snap(s);
        return ret;
    }
    *out = s;
    return 0;
}

static void snap_list(struct oracle *o, struct snap *s)
{
    o->snaps[o->nsnaps++] = s;
}

int oracle_snapshot_create(struct oracle *o, const char *id)
{
    struct snap *s;
    int ret = snap_begin(o, id, &s);
    if (ret)
        return ret;
    if ((ret = state_share(&s->st, &o->active, o->facts.cluster_size)) < 0) {
        free_snap(s);
        return ret;
    }
    snap_list(o, s);
    return 0;
}

int oracle_snapshot_import(struct oracle *o, const char *id, uint64_t size, const void *bytes,
                           uint64_t known_len)
{
    if (size % ORACLE_SECTOR || size > (uint64_t)INT64_MAX || known_len % ORACLE_SECTOR ||
        known_len > size || (known_len && !bytes))
        return -EINVAL;
    struct snap *s;
    int ret = snap_begin(o, id, &s);
    if (ret)
        return ret;
    /* Past the end of an existing snapshot's disk, its last cluster may hold anything. */
    s->st.tail_known = size % o->facts.cluster_size == 0;
    ret = state_init(&s->st, size, known_len);
    if (!ret)
        ret = state_load(&s->st, bytes, known_len);
    if (ret < 0) {
        free_snap(s);
        return ret;
    }
    snap_list(o, s);
    return 0;
}

int oracle_snapshot_apply(struct oracle *o, const char *id)
{
    struct snap *s = find_snap(o, id, NULL);
    if (!s)
        return -ENOENT;
    int ret = o->in_memory ? 0 : file_become(o, &s->st);
    return ret ? ret : state_share(&o->active, &s->st, o->facts.cluster_size);
}

int oracle_snapshot_delete(struct oracle *o, const char *id)
{
    uint32_t i;
    struct snap *s = find_snap(o, id, &i);
    if (!s)
        return -ENOENT;
    int ret = 0;
    if (s->file_written && unlink(s->path) < 0 && errno != ENOENT)
        ret = -errno;
    free_snap(s);
    memmove(&o->snaps[i], &o->snaps[i + 1], (o->nsnaps - i - 1) * sizeof(o->snaps[0]));
    o->nsnaps--;
    return ret;
}

/* The active state (id NULL) or snapshot id's, if [off, off+len) is known there. */
static int known_state(const struct oracle *o, const char *id, size_t len, uint64_t off,
                       const struct state **out)
{
    const struct snap *s = id ? find_snap(o, id, NULL) : NULL;
    if (id && !s)
        return -ENOENT;
    const struct state *st = s ? &s->st : &o->active;
    if (!in_range(st->size, len, off))
        return -EINVAL;
    if (!in_range(st->known, len, off))
        return -ENODATA;
    *out = st;
    return 0;
}

static int read_known(const struct oracle *o, const char *id, void *buf, size_t len,
                      uint64_t off)
{
    const struct state *st;
    int ret = known_state(o, id, len, off, &st);
    if (!ret)
        state_read(st, buf, len, off);
    return ret;
}

int oracle_snapshot_read(struct oracle *o, const char *id, void *buf, size_t len,
                         uint64_t off)
{
    return id ? read_known(o, id, buf, len, off) : -ENOENT;
}

int oracle_compare(const struct oracle *o, const char *id, const void *got, size_t len,
                   uint64_t off, uint64_t *sector)
{
    const struct state *st;
    int ret = known_state(o, id, len, off, &st);
    return ret ? ret : state_differs(st, got, len, off, sector);
}

uint64_t oracle_snapshot_size(const struct oracle *o, const char *id)
{
    const struct snap *s = find_snap(o, id, NULL);
    return s ? s->st.size : 0;
}

const char *oracle_snapshot_path(struct oracle *o, const char *id)
{
    struct snap *s = find_snap(o, id, NULL);
    if (!s || !s->path)
        return NULL;
    int ret = snap_write_file(s);
    if (ret < 0) {
        errno = -ret;
        return NULL;
    }
    return s->path;
}

uint32_t oracle_snapshot_count(const struct oracle *o)
{
    return o->nsnaps;
}

const char *oracle_snapshot_id(const struct oracle *o, uint32_t i)
{
    return i < o->nsnaps ? o->snaps[i]->id : NULL;
}

/* ---- comparison --------------------------------------------------------------------- */

bool oracle_first_mismatch(const uint8_t *got, const uint8_t *want, size_t len, uint64_t off,
                           uint64_t *sector)
{
    if (!memcmp(got, want, len))
        return false;
    size_t at = 0;
    while (at < len) {
        /* From here to the end of the sector holding guest byte off + at. */
        uint64_t abs = off + at;
        size_t n = ORACLE_SECTOR - (size_t)(abs % ORACLE_SECTOR);
        if (n > len - at)
            n = len - at;
        if (memcmp(got + at, want + at, n) != 0) {
            if (sector)
                *sector = abs / ORACLE_SECTOR;
            return true;
        }
        at += n;
    }
    return false;
}
