/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The oracle (see oracle.h): a flat raw sparse file for the active state, one sparse copy
 * per internal snapshot, and an in-memory array holding, for every 512-byte sector, the
 * number of the operation that last wrote it.
 *
 * Nothing here is clever on purpose. Reads and writes are one pread/pwrite each (looped
 * only for short transfers) plus an O(sectors) provenance update; copies between the
 * active file and snapshot files walk the data regions (SEEK_DATA/SEEK_HOLE) and leave
 * holes as holes. After a failed call the oracle's state is unspecified: the soak stops
 * at the first error anyway.
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
#define COPY_CHUNK (1u << 20)
#define ZERO_CHUNK (64u * 1024u)

struct snap {
    char *id;
    char *path;
    uint64_t size;
    uint32_t *prov;             /* size / 512 entries */
    uint64_t serial;            /* unique for the oracle's lifetime, never reused */
};

struct oracle {
    char *dir;
    char *path;                 /* dir/oracle.raw */
    int fd;
    uint64_t size;
    uint32_t *prov;             /* size / 512 entries in use ... */
    uint64_t prov_cap;          /* ... out of prov_cap allocated */
    bool no_punch;              /* fallocate(PUNCH_HOLE) is unsupported here */

    struct snap **snaps;        /* individually allocated, so pointers stay valid */
    uint32_t nsnaps;
    uint32_t snaps_cap;

    uint64_t next_serial;
    int snap_fd;                /* one snapshot file kept open for oracle_snapshot_read, */
    uint64_t snap_fd_serial;    /* that of the snapshot with this serial (0: none) */
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

/*
 * Copies bytes [0, len) of src into dst, which must read as zeros over that range (a
 * fresh or freshly truncated file). Only src's data regions (SEEK_DATA/SEEK_HOLE) are
 * read, and chunks that are all zeros are not written, so holes stay holes. Without
 * SEEK_DATA everything is read, and the zero chunks still become holes. Returns 0 or a
 * negative errno.
 */
static int copy_sparse(int src, int dst, uint64_t len)
{
    uint8_t *buf = malloc(COPY_CHUNK);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    uint64_t off = 0;
    while (off < len) {
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
        if (hole > len)
            hole = len;
        for (uint64_t at = data; at < hole;) {
            size_t n = hole - at < COPY_CHUNK ? (size_t)(hole - at) : COPY_CHUNK;
            ret = pread_full(src, buf, n, at);
            if (ret == 0 && !all_zero(buf, n))
                ret = pwrite_full(dst, buf, n, at);
            if (ret < 0)
                break;
            at += n;
        }
        if (ret < 0)
            break;
        off = hole > data ? hole : data + 1;
    }
    free(buf);
    return ret;
}

/* Makes room for `sectors` provenance entries (the contents of new room are undefined). */
static int prov_reserve(struct oracle *o, uint64_t sectors)
{
    if (sectors <= o->prov_cap)
        return 0;
    if (sectors > SIZE_MAX / sizeof(uint32_t))
        return -EFBIG;
    uint32_t *p = realloc(o->prov, (size_t)sectors * sizeof(uint32_t));
    if (!p)
        return -ENOMEM;
    o->prov = p;
    o->prov_cap = sectors;
    return 0;
}

/* Sets the provenance of every sector [off, off+len) touches to op; len > 0. */
static void prov_mark(struct oracle *o, uint64_t len, uint64_t off, uint32_t op)
{
    uint64_t first = off / ORACLE_SECTOR;
    uint64_t end = (off + len - 1) / ORACLE_SECTOR + 1;
    uint32_t *p = o->prov;
    for (uint64_t s = first; s < end; s++)
        p[s] = op;
}

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

static void free_snap(struct snap *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->path);
    free(s->prov);
    free(s);
}

static void drop_snap_fd(struct oracle *o)
{
    if (o->snap_fd >= 0)
        close(o->snap_fd);
    o->snap_fd = -1;
    o->snap_fd_serial = 0;
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

/* ---- the active state --------------------------------------------------------------- */

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
        uint64_t n = (uint64_t)st.st_size < o->size ? (uint64_t)st.st_size : o->size;
        ret = copy_sparse(src, o->fd, n);
        if (ret < 0)
            set_err(errbuf, errlen, "cannot copy initial raw image %s into %s: %s",
                    initial_raw, o->path, strerror(-ret));
    }
    close(src);
    return ret;
}

int oracle_create(const char *dir, uint64_t size, const char *initial_raw, struct oracle **out,
                  char *errbuf, size_t errlen)
{
    *out = NULL;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!dir || !*dir) {
        set_err(errbuf, errlen, "oracle: no directory given");
        return -EINVAL;
    }
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

    struct oracle *o = calloc(1, sizeof(*o));
    if (!o) {
        set_err(errbuf, errlen, "oracle: out of memory");
        return -ENOMEM;
    }
    o->fd = -1;
    o->snap_fd = -1;
    o->next_serial = 1;
    int ret;
    o->dir = dup_string(dir);
    o->path = join_path(dir, ACTIVE_NAME);
    if (!o->dir || !o->path) {
        set_err(errbuf, errlen, "oracle: out of memory");
        ret = -ENOMEM;
        goto fail;
    }
    uint64_t sectors = size / ORACLE_SECTOR;
    if (sectors > SIZE_MAX / sizeof(uint32_t)) {
        set_err(errbuf, errlen, "oracle: disk size %llu is too large for the provenance map",
                (unsigned long long)size);
        ret = -EFBIG;
        goto fail;
    }
    /* calloc: every sector starts as ORACLE_NO_OP (0), and untouched pages stay lazy. */
    o->prov = calloc(sectors ? (size_t)sectors : 1, sizeof(uint32_t));
    if (!o->prov) {
        set_err(errbuf, errlen, "oracle: out of memory for %llu provenance entries",
                (unsigned long long)sectors);
        ret = -ENOMEM;
        goto fail;
    }
    o->prov_cap = sectors ? sectors : 1;
    o->size = size;

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

void oracle_close(struct oracle *o)
{
    if (!o)
        return;
    drop_snap_fd(o);
    if (o->fd >= 0)
        close(o->fd);
    for (uint32_t i = 0; i < o->nsnaps; i++)
        free_snap(o->snaps[i]);
    free(o->snaps);
    free(o->prov);
    free(o->path);
    free(o->dir);
    free(o);
}

uint64_t oracle_size(const struct oracle *o)
{
    return o->size;
}

const char *oracle_path(const struct oracle *o)
{
    return o->path;
}

int oracle_read(struct oracle *o, void *buf, size_t len, uint64_t off)
{
    if (!in_range(o->size, len, off))
        return -EINVAL;
    return pread_full(o->fd, buf, len, off);
}

int oracle_write(struct oracle *o, const void *buf, size_t len, uint64_t off, uint32_t op)
{
    if (!in_range(o->size, len, off))
        return -EINVAL;
    if (len == 0)
        return 0;
    int ret = pwrite_full(o->fd, buf, len, off);
    if (ret < 0)
        return ret;
    prov_mark(o, len, off, op);
    return 0;
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

int oracle_zero(struct oracle *o, uint64_t len, uint64_t off, uint32_t op)
{
    if (!in_range(o->size, len, off))
        return -EINVAL;
    if (len == 0)
        return 0;
    int ret = -EOPNOTSUPP;
#ifdef FALLOC_FL_PUNCH_HOLE
    if (!o->no_punch) {
        /* Partial blocks at either end are zeroed, whole ones deallocated. */
        if (fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                      (off_t)len) == 0) {
            ret = 0;
        } else if (errno == EOPNOTSUPP || errno == ENOSYS) {
            o->no_punch = true;
        } else {
            return -errno;
        }
    }
#endif
    if (ret < 0) {
        ret = write_zeros(o->fd, len, off);
        if (ret < 0)
            return ret;
    }
    prov_mark(o, len, off, op);
    return 0;
}

int oracle_resize(struct oracle *o, uint64_t new_size, uint32_t op)
{
    if (new_size % ORACLE_SECTOR != 0)
        return -EINVAL;
    if (new_size > (uint64_t)INT64_MAX)
        return -EFBIG;
    uint64_t old_sectors = o->size / ORACLE_SECTOR;
    uint64_t new_sectors = new_size / ORACLE_SECTOR;
    int ret = prov_reserve(o, new_sectors);
    if (ret < 0)
        return ret;
    /* Shrinking drops the tail's data, so a later grow exposes zeros again. */
    if (ftruncate(o->fd, (off_t)new_size) < 0)
        return -errno;
    for (uint64_t s = old_sectors; s < new_sectors; s++)
        o->prov[s] = op;
    o->size = new_size;
    return 0;
}

uint32_t oracle_sector_author(const struct oracle *o, uint64_t sector)
{
    if (sector >= o->size / ORACLE_SECTOR)
        return ORACLE_NO_OP;
    return o->prov[sector];
}

/* ---- snapshots ---------------------------------------------------------------------- */

int oracle_snapshot_create(struct oracle *o, const char *id)
{
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
    int ret = -ENOMEM;
    char *name = snapshot_file_name(id);
    if (!name) {
        ret = -errno;
        goto fail;
    }
    s->path = join_path(o->dir, name);
    free(name);
    s->id = dup_string(id);
    uint64_t sectors = o->size / ORACLE_SECTOR;
    s->prov = malloc(sectors ? (size_t)sectors * sizeof(uint32_t) : 1);
    if (!s->path || !s->id || !s->prov)
        goto fail;
    memcpy(s->prov, o->prov, (size_t)sectors * sizeof(uint32_t));
    s->size = o->size;

    int fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        goto fail;
    }
    ret = copy_sparse(o->fd, fd, o->size);
    if (ret == 0 && ftruncate(fd, (off_t)o->size) < 0)
        ret = -errno;
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    if (ret < 0) {
        unlink(s->path);
        goto fail;
    }
    s->serial = o->next_serial++;
    o->snaps[o->nsnaps++] = s;
    return 0;

fail:
    free_snap(s);
    return ret;
}

int oracle_snapshot_apply(struct oracle *o, const char *id)
{
    struct snap *s = find_snap(o, id, NULL);
    if (!s)
        return -ENOENT;
    uint64_t sectors = s->size / ORACLE_SECTOR;
    int ret = prov_reserve(o, sectors);
    if (ret < 0)
        return ret;
    int src = open(s->path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return -errno;
    /* Empty the active file first: copy_sparse writes only the snapshot's data. */
    if (ftruncate(o->fd, 0) < 0 || ftruncate(o->fd, (off_t)s->size) < 0)
        ret = -errno;
    else
        ret = copy_sparse(src, o->fd, s->size);
    close(src);
    if (ret < 0)
        return ret;
    memcpy(o->prov, s->prov, (size_t)sectors * sizeof(uint32_t));
    o->size = s->size;
    return 0;
}

int oracle_snapshot_delete(struct oracle *o, const char *id)
{
    uint32_t i;
    struct snap *s = find_snap(o, id, &i);
    if (!s)
        return -ENOENT;
    if (o->snap_fd_serial == s->serial)
        drop_snap_fd(o);            /* the file is going away */
    int ret = 0;
    if (unlink(s->path) < 0 && errno != ENOENT)
        ret = -errno;
    free_snap(s);
    memmove(&o->snaps[i], &o->snaps[i + 1], (o->nsnaps - i - 1) * sizeof(o->snaps[0]));
    o->nsnaps--;
    return ret;
}

int oracle_snapshot_read(struct oracle *o, const char *id, void *buf, size_t len,
                         uint64_t off)
{
    const struct snap *s = find_snap(o, id, NULL);
    if (!s)
        return -ENOENT;
    if (!in_range(s->size, len, off))
        return -EINVAL;
    if (o->snap_fd_serial != s->serial) {
        drop_snap_fd(o);
        o->snap_fd = open(s->path, O_RDONLY | O_CLOEXEC);
        if (o->snap_fd < 0)
            return -errno;
        o->snap_fd_serial = s->serial;
    }
    return pread_full(o->snap_fd, buf, len, off);
}

uint64_t oracle_snapshot_size(const struct oracle *o, const char *id)
{
    const struct snap *s = find_snap(o, id, NULL);
    return s ? s->size : 0;
}

const char *oracle_snapshot_path(const struct oracle *o, const char *id)
{
    const struct snap *s = find_snap(o, id, NULL);
    return s ? s->path : NULL;
}

uint32_t oracle_snapshot_count(const struct oracle *o)
{
    return o->nsnaps;
}

/* ---- comparison --------------------------------------------------------------------- */

bool oracle_first_mismatch(const uint8_t *got, const uint8_t *want, size_t len, uint64_t off,
                           uint64_t *sector)
{
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
