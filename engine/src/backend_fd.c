/* SPDX-License-Identifier: BSD-2-Clause */
/* The default backend: a host file through a file descriptor. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "qcow2.h"

struct fd_backend {
    struct qcow2_backend base;
    int fd;
};

static int fd_of(struct qcow2_backend *b)
{
    return ((struct fd_backend *)b)->fd;
}

static int fd_read(struct qcow2_backend *b, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd_of(b), p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) {
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int fd_write(struct qcow2_backend *b, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd_of(b), p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int fd_flush(struct qcow2_backend *b)
{
    return fdatasync(fd_of(b)) ? -errno : 0;
}

static int fd_truncate(struct qcow2_backend *b, uint64_t size)
{
    return ftruncate(fd_of(b), (off_t)size) ? -errno : 0;
}

static int fd_size(struct qcow2_backend *b, uint64_t *size)
{
    struct stat st;
    if (fstat(fd_of(b), &st))
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* SEEK_DATA/SEEK_HOLE, as QEMU's file driver asks the host for holes. */
static int fd_block_status(struct qcow2_backend *b, uint64_t off, uint64_t len,
                           uint64_t *pnum, bool *is_hole)
{
    int fd = fd_of(b);
    off_t data = lseek(fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {           /* at or past the last data: a trailing hole */
            *pnum = len;
            *is_hole = true;
            return 0;
        }
        *pnum = len;                    /* no information: everything is data */
        *is_hole = false;
        return 0;
    }
    if ((uint64_t)data > off) {
        *is_hole = true;
        *pnum = (uint64_t)data - off;
    } else {
        off_t hole = lseek(fd, (off_t)off, SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole <= off) {
            *pnum = len;
            *is_hole = false;
            return 0;
        }
        *is_hole = false;
        *pnum = (uint64_t)hole - off;
    }
    if (*pnum > len)
        *pnum = len;
    return 0;
}

static int fd_allocated_size(struct qcow2_backend *b, uint64_t *bytes)
{
    struct stat st;
    if (fstat(fd_of(b), &st))
        return -errno;
    *bytes = (uint64_t)st.st_blocks * 512u;
    return 0;
}

static void fd_destroy(struct qcow2_backend *b)
{
    close(fd_of(b));
    free(b);
}

static const struct qcow2_backend_ops fd_ops = {
    .read = fd_read,
    .write = fd_write,
    .flush = fd_flush,
    .truncate = fd_truncate,
    .size = fd_size,
    .block_status = fd_block_status,
    .allocated_size = fd_allocated_size,
    .destroy = fd_destroy,
};

/* ---- QEMU's permission locks ------------------------------------------------------ */

#define LOCK_PERM_BASE 100      /* byte 100+i: "I hold permission i" */
#define LOCK_SHARED_BASE 200    /* byte 200+i: "nobody else may take permission i" */
#define PERM_COUNT 4

/* Open-file-description locks belong to this open, not to the process, as in QEMU. */
#ifdef F_OFD_SETLK
#define LOCK_SET F_OFD_SETLK
#define LOCK_GET F_OFD_GETLK
#else
#define LOCK_SET F_SETLK
#define LOCK_GET F_GETLK
#endif

/* QEMU's names of its permissions, and what a holder of each may do to the image. */
static const char *const perm_names[PERM_COUNT] = { "consistent read", "write",
                                                    "write unchanged", "resize" };
static const char *const perm_verbs[PERM_COUNT] = { "read", "write",
                                                    "write unchanged data to", "resize" };

/* One lock request on one byte: `cmd` LOCK_SET to place `type`, LOCK_GET to ask about it. */
static int lock_request(int fd, int cmd, short type, unsigned byte, short *found)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)byte;
    fl.l_len = 1;
    if (fcntl(fd, cmd, &fl))
        return -errno;
    if (found)
        *found = fl.l_type;
    return 0;
}

static int lock_byte(int fd, unsigned byte)
{
    return lock_request(fd, LOCK_SET, F_RDLCK, byte, NULL);
}

/*
 * Whether another open file holds a lock on `byte` (QEMU's test: could it be taken
 * exclusively?).
 */
static int byte_held_elsewhere(int fd, unsigned byte, bool *held)
{
    short found = F_UNLCK;
    int ret = lock_request(fd, LOCK_GET, F_WRLCK, byte, &found);
    *held = !ret && found != F_UNLCK;
    return ret;
}

static int lock_conflict(const char *path, unsigned byte, const struct qcow2_fd_options *o,
                         struct qcow2_error *err)
{
    unsigned i = byte % 100u;
    if (byte >= LOCK_SHARED_BASE)
        return err_set(err, -EAGAIN, path, "file lock", byte,
                       "locked by another process (QEMU's \"%s\" sharing lock: it lets "
                       "nobody else %s the image): is a VM or another QEMU tool using it?",
                       perm_names[i], perm_verbs[i]);
    return err_set(err, -EAGAIN, path, "file lock", byte,
                   "locked by another process (QEMU's \"%s\" lock: it may %s the image): "
                   "is a VM using it?%s",
                   perm_names[i], perm_verbs[i],
                   o->writable ? "" : " use -U (force_share) for read-only access");
}

/*
 * QEMU's order: first take this open's own locks, then look for conflicting ones, so
 * that of two programs opening at once at least one sees the other.
 */
static int take_locks(int fd, const char *path, const struct qcow2_fd_options *o,
                      struct qcow2_error *err)
{
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i, bytes[2], n = 0;
        if (o->perm & bit)
            bytes[n++] = LOCK_PERM_BASE + i;
        if (!(o->shared & bit))
            bytes[n++] = LOCK_SHARED_BASE + i;
        for (unsigned k = 0; k < n; k++) {
            int ret = lock_byte(fd, bytes[k]);
            if (ret == -EAGAIN || ret == -EACCES)
                return lock_conflict(path, bytes[k], o, err);
            if (ret)
                return err_set(err, ret, path, "file lock", bytes[k],
                               "cannot lock byte %u: %s", bytes[k], strerror(-ret));
        }
    }
    for (unsigned pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < PERM_COUNT; i++) {
            unsigned bit = 1u << i;
            bool wanted = pass == 0 ? (o->perm & bit) != 0 : !(o->shared & bit);
            unsigned byte = pass == 0 ? LOCK_SHARED_BASE + i : LOCK_PERM_BASE + i;
            bool held = false;
            int ret = wanted ? byte_held_elsewhere(fd, byte, &held) : 0;
            if (ret)
                return err_set(err, ret, path, "file lock", byte,
                               "cannot test byte %u: %s", byte, strerror(-ret));
            if (held)
                return lock_conflict(path, byte, o, err);
        }
    }
    return 0;
}

struct qcow2_fd_options qcow2_fd_options_for(enum qcow2_format format, bool writable,
                                             bool force_share)
{
    struct qcow2_fd_options o;
    memset(&o, 0, sizeof(o));
    o.writable = writable;
    o.perm = QCOW2_PERM_CONSISTENT_READ;
    o.shared = QCOW2_PERM_ALL;
    if (writable)
        o.perm |= QCOW2_PERM_WRITE | QCOW2_PERM_RESIZE;
    /* The qcow2 driver owns its metadata: nobody else may write or resize under it. */
    if (format == QCOW2_FORMAT_QCOW2 && !force_share)
        o.shared &= ~(QCOW2_PERM_WRITE | QCOW2_PERM_RESIZE);
    return o;
}

int qcow2_backend_fd_open_with(const char *path, const struct qcow2_fd_options *o,
                               struct qcow2_backend **out, struct qcow2_error *err)
{
    int flags = (o->writable ? O_RDWR : O_RDONLY) | (o->create ? O_CREAT : 0) | O_CLOEXEC;
    int fd = open(path, flags, 0644);
    if (fd < 0) {
        int e = errno;
        return err_set(err, -e, path, "file", QCOW2_NO_OFFSET, "cannot %s: %s",
                       o->create ? "create or open" : "open", strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(err, -EISDIR, path, "file", QCOW2_NO_OFFSET,
                       "is a directory, not an image");
    }
    int ret = o->no_locks ? 0 : take_locks(fd, path, o, err);
    if (ret) {
        close(fd);          /* which also drops whatever locks this open took */
        return ret;
    }
    struct fd_backend *b = calloc(1, sizeof(*b));
    if (!b) {
        close(fd);
        return err_set(err, -ENOMEM, path, "file", QCOW2_NO_OFFSET, "out of memory");
    }
    b->base.ops = &fd_ops;
    b->fd = fd;
    *out = &b->base;
    return 0;
}

int qcow2_backend_fd_open(const char *path, bool writable, struct qcow2_backend **out,
                          struct qcow2_error *err)
{
    struct qcow2_fd_options o = qcow2_fd_options_for(QCOW2_FORMAT_QCOW2, writable, false);
    return qcow2_backend_fd_open_with(path, &o, out, err);
}

void qcow2_backend_destroy(struct qcow2_backend *b)
{
    if (b)
        b->ops->destroy(b);
}
