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

int qcow2_backend_fd_open(const char *path, bool writable, struct qcow2_backend **out,
                          struct qcow2_error *err)
{
    int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(err, -e, path, "file", QCOW2_NO_OFFSET, "cannot open: %s",
                       strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(err, -EISDIR, path, "file", QCOW2_NO_OFFSET,
                       "is a directory, not an image");
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

void qcow2_backend_destroy(struct qcow2_backend *b)
{
    if (b)
        b->ops->destroy(b);
}
