/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qvet-bench: the engine's side of `make bench` (scripts/bench.sh runs it, and
 * `qemu-img bench` for QEMU's side, on the same files). Each mode prints one line of
 * key=value numbers and nothing else on success.
 *
 *   qvet-bench io IMAGE qcow2|raw read|write SIZE STEP COUNT [CACHE]
 *       COUNT requests of SIZE bytes at queue depth 1, as `qemu-img bench` issues them:
 *       the first at offset 0, each next one STEP further, wrapping at the end of the
 *       disk. qcow2 goes through the engine (writes end with a flush, counted in the
 *       time); raw is plain pread/pwrite on the file (the limit). Prints ops= seconds=.
 *   qvet-bench memory IMAGE CACHE READS
 *       opens read-only with a metadata cache of CACHE bytes, makes READS 4 KiB reads
 *       at seeded random offsets over the disk; prints seconds= and peak_rss_kib=.
 *   qvet-bench scale IMAGE
 *       times the open, a read of the whole disk (512 KiB requests) and qcow2_check;
 *       prints open= read= check= (seconds) and clusters= (allocated, per the check).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qcow2.h"

#define BENCH_ALIGN 4096u
#define SCALE_CHUNK (512u << 10)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(void)
{
    fprintf(stderr, "usage: qvet-bench io IMAGE qcow2|raw read|write SIZE STEP COUNT [CACHE]\n"
                    "       qvet-bench memory IMAGE CACHE READS\n"
                    "       qvet-bench scale IMAGE\n");
    return 2;
}

static bool number(const char *s, uint64_t *out)
{
    uint64_t v;
    if (!qcow2_parse_size(s, &v))
        return false;
    *out = v;
    return true;
}

/* One request: the engine's or the file's. */
struct device {
    struct qcow2_image *img;        /* NULL: raw file */
    int fd;
    uint64_t size;
    struct qcow2_error err;
};

static int device_open(struct device *d, const char *path, bool qcow2, bool writable,
                       uint64_t cache)
{
    memset(d, 0, sizeof(*d));
    d->fd = -1;
    if (qcow2) {
        struct qcow2_open_options o = { .writable = writable, .cache_bytes = (size_t)cache };
        int ret = qcow2_open(path, &o, &d->img, &d->err);
        if (ret) {
            fprintf(stderr, "qvet-bench: %s\n", d->err.message);
            return ret;
        }
        d->size = qcow2_virtual_size(d->img);
        return 0;
    }
    d->fd = open(path, writable ? O_RDWR : O_RDONLY);
    struct stat st;
    if (d->fd < 0 || fstat(d->fd, &st) < 0) {
        fprintf(stderr, "qvet-bench: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    d->size = (uint64_t)st.st_size;
    return 0;
}

static int device_io(struct device *d, bool write, void *buf, size_t len, uint64_t off)
{
    if (d->img)
        return write ? qcow2_pwrite(d->img, buf, len, off, &d->err)
                     : qcow2_pread(d->img, buf, len, off, &d->err);
    ssize_t n = write ? pwrite(d->fd, buf, len, (off_t)off) : pread(d->fd, buf, len, (off_t)off);
    return n == (ssize_t)len ? 0 : -EIO;
}

static int device_close(struct device *d, bool flush)
{
    int ret = 0;
    if (d->img) {
        if (flush)
            ret = qcow2_flush(d->img, &d->err);
        qcow2_close(d->img);
    } else {
        if (flush && fdatasync(d->fd) < 0)
            ret = -errno;
        close(d->fd);
    }
    return ret;
}

static int run_io(int argc, char **argv)
{
    uint64_t size, step, count, cache = 0;
    if (argc < 8 || argc > 9 || !number(argv[5], &size) || !number(argv[6], &step) ||
        !number(argv[7], &count) || (argc == 9 && !number(argv[8], &cache)) || !size)
        return usage();
    bool qcow2 = !strcmp(argv[3], "qcow2"), write = !strcmp(argv[4], "write");
    if ((!qcow2 && strcmp(argv[3], "raw")) || (!write && strcmp(argv[4], "read")))
        return usage();
    struct device d;
    if (device_open(&d, argv[2], qcow2, write, cache))
        return 1;
    if (size > d.size) {
        fprintf(stderr, "qvet-bench: %s: requests of %" PRIu64 " bytes exceed the disk\n",
                argv[2], size);
        return 1;
    }
    uint8_t *buf = aligned_alloc(BENCH_ALIGN, (size + BENCH_ALIGN - 1) / BENCH_ALIGN * BENCH_ALIGN);
    if (!buf)
        return 1;
    memset(buf, 0x5a, size);        /* as qemu-img bench --pattern=0x5a */
    double t0 = now();
    uint64_t off = 0;
    int ret = 0;
    for (uint64_t i = 0; i < count && !ret; i++) {
        ret = device_io(&d, write, buf, size, off);
        off += step;
        if (off + size > d.size)
            off = 0;
    }
    int closed = device_close(&d, write && !ret);
    double t = now() - t0;
    free(buf);
    if (ret || closed) {
        fprintf(stderr, "qvet-bench: %s: %s failed: %s\n", argv[2], argv[4],
                qcow2 ? d.err.message : strerror(EIO));
        return 1;
    }
    printf("ops=%" PRIu64 " seconds=%.6f\n", count, t);
    return 0;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int run_memory(int argc, char **argv)
{
    uint64_t cache, reads;
    if (argc != 5 || !number(argv[3], &cache) || !number(argv[4], &reads))
        return usage();
    struct device d;
    if (device_open(&d, argv[2], true, false, cache))
        return 1;
    uint8_t buf[4096];
    uint64_t seed = 1, blocks = d.size / sizeof(buf);
    double t0 = now();
    int ret = 0;
    for (uint64_t i = 0; i < reads && !ret && blocks; i++)
        ret = device_io(&d, false, buf, sizeof(buf), splitmix(&seed) % blocks * sizeof(buf));
    double t = now() - t0;
    device_close(&d, false);
    if (ret) {
        fprintf(stderr, "qvet-bench: %s: read failed: %s\n", argv[2], d.err.message);
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("seconds=%.6f peak_rss_kib=%ld\n", t, ru.ru_maxrss);
    return 0;
}

static int run_scale(int argc, char **argv)
{
    if (argc != 3)
        return usage();
    struct device d;
    double t0 = now();
    if (device_open(&d, argv[2], true, false, 0))
        return 1;
    double opened = now();
    uint8_t *buf = malloc(SCALE_CHUNK);
    int ret = buf ? 0 : -ENOMEM;
    for (uint64_t off = 0; off < d.size && !ret; off += SCALE_CHUNK) {
        size_t n = d.size - off < SCALE_CHUNK ? (size_t)(d.size - off) : SCALE_CHUNK;
        ret = device_io(&d, false, buf, n, off);
    }
    free(buf);
    double read = now();
    struct qcow2_check_result res;
    if (!ret)
        ret = qcow2_check(d.img, QCOW2_REPAIR_NONE, &res, NULL, NULL, &d.err);
    double checked = now();
    device_close(&d, false);
    if (ret || res.corruptions || res.check_errors) {
        fprintf(stderr, "qvet-bench: %s: read or check failed: %s\n", argv[2], d.err.message);
        return 1;
    }
    printf("open=%.6f read=%.6f check=%.6f clusters=%" PRIu64 "\n", opened - t0,
           read - opened, checked - read, res.allocated_clusters);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "io"))
        return run_io(argc, argv);
    if (!strcmp(argv[1], "memory"))
        return run_memory(argc, argv);
    if (!strcmp(argv[1], "scale"))
        return run_scale(argc, argv);
    return usage();
}
