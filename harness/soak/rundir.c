/* SPDX-License-Identifier: BSD-2-Clause */
/* Run directories: claiming, locking, numbering, and removing only what qvet wrote. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rundir.h"

/*
 * What a run writes (driver.c, oracle.c, the qemu-img calls, the summary). The large ones
 * go after a run that found nothing; the rest stay as its record.
 */
static const char *const large_files[] = {
    "image.qcow2", "oracle.raw", "base.raw", "mid.qcow2", "backing-view.raw",
    "map-qvet.json", "map-qemu-img.json", "snapshot-list.txt",
};
static const char *const record_files[] = {
    "trace.txt", RUNDIR_SUMMARY_NAME, RUNDIR_SUMMARY_NAME ".tmp", "setup.log", "qemu-img.log",
    "target.log",                   /* the qemu target's qemu-nbd and qemu-img messages */
    "hang-stack.txt",
};

/* Verdicts (summary.json) of runs that found no bug: their directory may be reused. */
static const char *const reusable_verdicts[] = { "passed", "interrupted", "setup-error" };

static bool in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, list[i]))
            return true;
    return false;
}

static bool is_large_file(const char *name)
{
    size_t len = strlen(name);
    /* the oracle's snapshot copies: snap-<id>.raw */
    if (len > 9 && !strncmp(name, "snap-", 5) && !strcmp(name + len - 4, ".raw"))
        return true;
    return in_list(name, large_files, sizeof(large_files) / sizeof(large_files[0]));
}

static bool is_qvet_file(const char *name)
{
    return is_large_file(name) || !strcmp(name, RUNDIR_LOCK_NAME) ||
           in_list(name, record_files, sizeof(record_files) / sizeof(record_files[0]));
}

static int set_error(char *errbuf, size_t errlen, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int set_error(char *errbuf, size_t errlen, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return ret;
}

/*
 * Removes the directory's entries that `pick` selects (none when it is NULL); returns how
 * many entries remain.
 */
static size_t sweep(const char *dir, bool (*pick)(const char *name))
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t left = 0;
    char path[1100];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (!pick || !pick(e->d_name) || unlink(path))
            left++;
    }
    closedir(d);
    return left;
}

static bool is_previous_run_file(const char *name)
{
    return is_qvet_file(name) && strcmp(name, RUNDIR_LOCK_NAME);
}

/* The "verdict" of DIR/summary.json, or "" when there is none. */
static void previous_verdict(const char *dir, char *verdict, size_t cap)
{
    char path[1100], text[4096];
    verdict[0] = '\0';
    snprintf(path, sizeof(path), "%s/%s", dir, RUNDIR_SUMMARY_NAME);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *key = "\"verdict\": \"";
    const char *p = strstr(text, key);
    if (!p)
        return;
    p += strlen(key);
    size_t len = strcspn(p, "\"");
    snprintf(verdict, cap, "%.*s", (int)len, p);
}

/* The pid written in a lock file, or 0. */
static long lock_holder(int fd)
{
    char text[32];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    return strtol(text, NULL, 10);
}

/* With the lock held: a previous run that found nothing is cleared, any other kept. */
static int check_previous_run(struct rundir *rd, char *errbuf, size_t errlen)
{
    char verdict[64];
    previous_verdict(rd->path, verdict, sizeof(verdict));
    bool reusable = in_list(verdict, reusable_verdicts,
                            sizeof(reusable_verdicts) / sizeof(reusable_verdicts[0]));
    if (!reusable) {
        if (sweep(rd->path, NULL) <= 1)
            return 0;               /* only the lock file: nothing ran here yet */
        return set_error(errbuf, errlen, -EEXIST,
                         "%s: holds an earlier run %s%s%s; its evidence is kept: replay it "
                         "with `qvet replay %s/trace.txt`, or remove the directory yourself",
                         rd->path, verdict[0] ? "(verdict " : "that did not finish",
                         verdict, verdict[0] ? ")" : "", rd->path);
    }
    sweep(rd->path, is_previous_run_file);
    return 0;
}

int rundir_claim(struct rundir *rd, const char *name, char *errbuf, size_t errlen)
{
    if (strlen(name) >= sizeof(rd->path) - 32)
        return set_error(errbuf, errlen, -ENAMETOOLONG, "%s: directory name too long", name);
    char dir[sizeof(rd->path)];
    snprintf(dir, sizeof(dir), "%s", name);     /* `name` may be rd->path itself */
    memset(rd, 0, sizeof(*rd));
    rd->lock_fd = -1;
    snprintf(rd->path, sizeof(rd->path), "%s", dir);
    struct stat st;
    if (mkdir(dir, 0755) && errno != EEXIST)
        return set_error(errbuf, errlen, -errno, "%s: cannot create the directory: %s", dir,
                         strerror(errno));
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return set_error(errbuf, errlen, -ENOTDIR, "%s: not a directory", dir);
    char lock[1100];
    snprintf(lock, sizeof(lock), "%s/%s", dir, RUNDIR_LOCK_NAME);
    if (access(lock, F_OK) && sweep(dir, NULL))
        return set_error(errbuf, errlen, -ENOTEMPTY,
                         "%s: not empty, and not a directory qvet made: qvet runs only in a "
                         "new or empty directory (it never deletes what it did not write); "
                         "choose another one", dir);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return set_error(errbuf, errlen, -errno, "%s: cannot create the lock file: %s", lock,
                         strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int ret = -errno;
        long pid = lock_holder(fd);
        close(fd);
        if (ret != -EWOULDBLOCK)
            return set_error(errbuf, errlen, ret, "%s: cannot lock: %s", lock, strerror(-ret));
        return set_error(errbuf, errlen, -EBUSY,
                         "%s: in use by another qvet run (pid %ld, holding %s); wait for it "
                         "to end or choose another directory", dir, pid, RUNDIR_LOCK_NAME);
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)len, 0) != len) {
        int ret = -errno;
        close(fd);
        return set_error(errbuf, errlen, ret, "%s: cannot write the lock file: %s", lock,
                         strerror(-ret));
    }
    rd->lock_fd = fd;
    int ret = check_previous_run(rd, errbuf, errlen);
    if (ret)
        rundir_release(rd);
    return ret;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char p[512];
    if (strlen(path) >= sizeof(p))
        return -ENAMETOOLONG;
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s)
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST)
            return -errno;
        if (!c)
            return 0;
        *s = c;
    }
}

static unsigned highest_run_number(const char *root)
{
    DIR *d = opendir(root);
    unsigned highest = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        unsigned n;
        char tail;
        if (sscanf(e->d_name, "run-%u%c", &n, &tail) == 1 && n > highest)
            highest = n;
    }
    closedir(d);
    return highest;
}

/* ROOT/latest -> run-NNNN, replacing only a symlink (never a file a person put there). */
static void point_latest(const char *root, const char *name)
{
    char latest[1100], tmp[1100];
    struct stat st;
    snprintf(latest, sizeof(latest), "%s/latest", root);
    if (!lstat(latest, &st) && !S_ISLNK(st.st_mode))
        return;
    snprintf(tmp, sizeof(tmp), "%s/.latest.%ld", root, (long)getpid());
    unlink(tmp);
    if (symlink(name, tmp) || rename(tmp, latest))
        unlink(tmp);
}

int rundir_claim_numbered(struct rundir *rd, const char *root, char *errbuf, size_t errlen)
{
    memset(rd, 0, sizeof(*rd));
    rd->lock_fd = -1;
    if (strlen(root) >= sizeof(rd->root) - 32)
        return set_error(errbuf, errlen, -ENAMETOOLONG, "%s: directory name too long", root);
    int ret = make_dirs(root);
    if (ret)
        return set_error(errbuf, errlen, ret, "%s: cannot create the directory: %s", root,
                         strerror(-ret));
    char dir[512], name[32];
    /* mkdir is the arbiter: two runs starting at once get different numbers. */
    for (unsigned n = highest_run_number(root) + 1;; n++) {
        snprintf(name, sizeof(name), "run-%04u", n);
        snprintf(dir, sizeof(dir), "%s/%s", root, name);
        if (!mkdir(dir, 0755))
            break;
        if (errno != EEXIST)
            return set_error(errbuf, errlen, -errno, "%s: cannot create the directory: %s",
                             dir, strerror(errno));
    }
    ret = rundir_claim(rd, dir, errbuf, errlen);
    if (ret)
        return ret;
    snprintf(rd->root, sizeof(rd->root), "%s", root);
    point_latest(root, name);
    return 0;
}

void rundir_remove_large_files(const struct rundir *rd)
{
    sweep(rd->path, is_large_file);
}

void rundir_release(struct rundir *rd)
{
    if (rd->lock_fd >= 0)
        close(rd->lock_fd);
    rd->lock_fd = -1;
}

void rundir_remove(struct rundir *rd)
{
    size_t left = sweep(rd->path, is_qvet_file);
    rundir_release(rd);
    if (left || rmdir(rd->path) || !rd->root[0])
        return;
    char latest[1100], target[64];
    snprintf(latest, sizeof(latest), "%s/latest", rd->root);
    ssize_t n = readlink(latest, target, sizeof(target) - 1);
    const char *name = strrchr(rd->path, '/');
    if (n > 0 && name && (target[n] = '\0', !strcmp(target, name + 1)))
        unlink(latest);
    rmdir(rd->root);
}
