/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Targets over NBD, through libnbd:
 *
 * qemu[:ARGS]  QEMU itself. qvet creates the image with `qemu-img create` and serves it
 *              with qemu-nbd on a private Unix socket (libnbd's systemd socket
 *              activation: the socket lives in a directory of libnbd's own). I/O is NBD:
 *              read, write, write-zeroes with and without NO_HOLE, trim, flush. What NBD
 *              cannot say runs with qemu-nbd stopped: a reopen is a restart, the check is
 *              `qemu-img check`, snapshots are `qemu-img snapshot`, a resize is `qemu-img
 *              resize`, and a snapshot is read through a second, read-only qemu-nbd.
 *              ARGS (comma-separated): cache=MODE, aio=MODE (qemu-nbd's --cache and
 *              --aio), discard=unmap|ignore (qemu-nbd's --discard, default unmap), and
 *              filter=DRIVER: the image is opened with --image-opts under that QEMU
 *              filter driver (compress: every write compressed).
 * nbd:URI      any NBD server (nbdkit, an engine behind its own server). The export is
 *              zeroed when a soak starts on it; its size is the disk's. Ops the server does
 *              not advertise are left out, and so is trim unless -o trim=on says what a
 *              trimmed range reads as (NBD leaves it unspecified): whole clusters of -o
 *              cluster_size=SIZE (default 64k) inside the range read as zeros.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kinds.h"
#include "qcow2.h"
#include "target.h"

#define SNAPSHOTS_MAX 64
#define NAME_MAX_LEN 64

struct snapshot_name {
    char id[TARGET_ID_MAX];
    char name[NAME_MAX_LEN];
};

struct nbd_target {
    struct target base;
    struct nbd_handle *h;           /* NULL while detached */
    struct target_facts facts;
    /* qemu only */
    char *path;
    bool read_only;                 /* a reader: qemu-nbd --read-only --force-share */
    char cache[32], aio[32], discard[16], filter[32];
    struct nbd_handle *snap_h;      /* a read-only qemu-nbd on snapshot snap_id */
    char snap_id[TARGET_ID_MAX];
    struct snapshot_name snapshots[SNAPSHOTS_MAX];
    unsigned n_snapshots;
};

static struct nbd_target *nt(struct target *t)
{
    return (struct nbd_target *)t;
}

/* libnbd's error as the target's; its errno (EIO when it has none). */
static int nbd_failed(struct target *t, const char *what)
{
    int err = nbd_get_errno();
    snprintf(t->message, sizeof(t->message), "%s: %s", what, nbd_get_error());
    return err ? -err : -EIO;
}

/* ---- running QEMU's tools ---------------------------------------------------------- */

/*
 * Runs argv, its stdout and stderr collected into `out` (the first cap - 1 bytes, NUL
 * terminated); returns its exit status, or -errno when it could not be started.
 */
static int run_collect(char *const argv[], char *out, size_t cap)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int ret = -errno;
        close(fds[0]);
        close(fds[1]);
        return ret;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    for (ssize_t n; (n = read(fds[0], out + used, cap - 1 - used)) != 0;) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        used += (size_t)n;
        if (used == cap - 1) {
            char junk[4096];
            while (read(fds[0], junk, sizeof(junk)) > 0)
                ;
            break;
        }
    }
    out[used] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A tool the target runs: its status; on failure t->message says what it printed. */
static int tool(struct target *t, char *const argv[])
{
    char out[2048];
    int ret = run_collect(argv, out, sizeof(out));
    if (ret) {
        for (char *p = out; *p; p++)
            if (*p == '\n')
                *p = p[1] ? ' ' : '\0';
        snprintf(t->message, sizeof(t->message), "`%s %s` %s %d: %s", argv[0], argv[1],
                 ret < 0 ? "could not start, errno" : "exited", ret < 0 ? -ret : ret, out);
    }
    return ret;
}

/* ---- the qemu-nbd server ----------------------------------------------------------- */

/*
 * The --image-opts value: the image under the filter driver, or (shared) the image with
 * QEMU's file locks off, so that a reader can open it beside the running qemu-nbd. The
 * file name's commas are doubled.
 */
static void image_opts(const struct nbd_target *q, bool shared, char *buf, size_t cap)
{
    int n = shared ? snprintf(buf, cap, "driver=qcow2,file.driver=file,file.locking=off,"
                              "file.filename=")
                   : snprintf(buf, cap, "driver=%s,file.driver=qcow2,file.file.driver=file,"
                              "file.file.filename=", q->filter);
    size_t used = n < 0 ? 0 : (size_t)n;
    for (const char *p = q->path; *p && used + 3 < cap; p++) {
        buf[used++] = *p;
        if (*p == ',')
            buf[used++] = ',';
    }
    buf[used] = '\0';
}

/*
 * A new handle connected to a qemu-nbd of its own on the image: the active disk, or
 * (snapshot not NULL) that internal snapshot, read-only and sharing the image.
 */
static int serve(struct nbd_target *q, const char *snapshot, struct nbd_handle **out)
{
    char cache[48], aio[48], discard[48], load[64], opts[1400];
    char *argv[16];
    int n = 0;
    argv[n++] = "qemu-nbd";
    bool shared = snapshot || q->read_only;
    if (shared)
        argv[n++] = "--read-only";
    if (snapshot) {
        snprintf(load, sizeof(load), "--load-snapshot=snapshot.id=%s", snapshot);
        argv[n++] = load;
    } else {
        snprintf(discard, sizeof(discard), "--discard=%s", q->discard);
        argv[n++] = discard;
    }
    if (q->cache[0]) {
        snprintf(cache, sizeof(cache), "--cache=%s", q->cache);
        argv[n++] = cache;
    }
    if (q->aio[0]) {
        snprintf(aio, sizeof(aio), "--aio=%s", q->aio);
        argv[n++] = aio;
    }
    if (q->filter[0] || shared) {
        image_opts(q, shared, opts, sizeof(opts));
        argv[n++] = "--image-opts";
        argv[n++] = opts;
    } else {
        argv[n++] = "--format=qcow2";
        argv[n++] = q->path;
    }
    argv[n] = NULL;
    struct nbd_handle *h = nbd_create();
    if (!h)
        return nbd_failed(&q->base, "libnbd");
    if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        nbd_connect_systemd_socket_activation(h, argv) < 0) {
        int ret = nbd_failed(&q->base, "starting qemu-nbd");
        nbd_close(h);
        return ret;
    }
    *out = h;
    return 0;
}

/* Disconnects; a qemu-nbd ends with its only client, and nbd_close waits for it. */
static void unserve(struct nbd_handle **h)
{
    if (!*h)
        return;
    nbd_shutdown(*h, 0);
    nbd_close(*h);
    *h = NULL;
}

static int size_from_server(struct nbd_target *q)
{
    int64_t size = nbd_get_size(q->h);
    if (size < 0)
        return nbd_failed(&q->base, "the export's size");
    q->facts.size = (uint64_t)size;
    return 0;
}

static int qemu_attach(struct target *t)
{
    struct nbd_target *q = nt(t);
    if (q->h)
        return 0;
    int ret = serve(q, NULL, &q->h);
    return ret ? ret : size_from_server(q);
}

/* Before anything that changes the image: the snapshot reader goes (it would go stale). */
static void changing(struct nbd_target *q)
{
    unserve(&q->snap_h);
}

static int qemu_detach(struct target *t)
{
    struct nbd_target *q = nt(t);
    changing(q);
    if (q->h && nbd_flush(q->h, 0) < 0)
        return nbd_failed(t, "flush");
    unserve(&q->h);
    return 0;
}

/*
 * Runs a QEMU tool on the image with qemu-nbd stopped, then serves it again. Returns the
 * tool's status (t->message: what it printed) or the restart's negative errno.
 */
static int offline(struct target *t, char *const argv[])
{
    struct nbd_target *q = nt(t);
    bool was_attached = q->h != NULL;
    int ret = qemu_detach(t);
    if (ret)
        return ret;
    int status = argv ? tool(t, argv) : 0;
    if (was_attached && (ret = qemu_attach(t)))
        return ret;
    return status;
}

/* ---- operations -------------------------------------------------------------------- */

static int nbd_t_facts(struct target *t, struct target_facts *f)
{
    *f = nt(t)->facts;
    return 0;
}

static int nbd_t_read(struct target *t, void *buf, size_t len, uint64_t off)
{
    return nbd_pread(nt(t)->h, buf, len, off, 0) < 0 ? nbd_failed(t, "read") : 0;
}

/* Block status: whether any of the range is allocated (not an NBD hole). */
static int extent_allocated(void *ctx, const char *context, uint64_t off, uint32_t *entries,
                            size_t n, int *error)
{
    (void)off;
    (void)error;
    bool *allocated = ctx;
    if (!strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION))
        for (size_t i = 0; i + 1 < n; i += 2)
            *allocated |= !(entries[i + 1] & LIBNBD_STATE_HOLE);
    return 0;
}

/*
 * Under QEMU's compress filter a write fails with EIO when qcow2 cannot write a
 * compressed cluster over an allocated one: the documented refusal, nothing changed. An
 * EIO where nothing was allocated is a failure.
 */
static int nbd_t_write(struct target *t, const void *buf, size_t len, uint64_t off)
{
    struct nbd_target *q = nt(t);
    changing(q);
    bool allocated = false;
    bool compress = !strcmp(q->filter, "compress");
    if (compress && nbd_block_status(q->h, len, off, (nbd_extent_callback){
            .callback = extent_allocated, .user_data = &allocated }, 0) < 0)
        return nbd_failed(t, "block status");
    if (nbd_pwrite(q->h, buf, len, off, 0) == 0)
        return 0;
    int ret = nbd_failed(t, "write");
    if (ret != -EIO || !compress || !allocated)
        return ret;
    snprintf(t->message, sizeof(t->message), "QEMU's compress filter cannot overwrite an "
             "allocated cluster (EIO)");
    return TARGET_REFUSED;
}

static int nbd_t_zero(struct target *t, uint64_t len, uint64_t off, bool unmap)
{
    changing(nt(t));
    uint32_t flags = unmap ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
    return nbd_zero(nt(t)->h, len, off, flags) < 0 ? nbd_failed(t, "write zeroes") : 0;
}

static int nbd_t_discard(struct target *t, uint64_t len, uint64_t off)
{
    changing(nt(t));
    return nbd_trim(nt(t)->h, len, off, 0) < 0 ? nbd_failed(t, "trim") : 0;
}

static int nbd_t_flush(struct target *t)
{
    return nbd_flush(nt(t)->h, 0) < 0 ? nbd_failed(t, "flush") : 0;
}

static void nbd_t_close(struct target *t)
{
    struct nbd_target *q = nt(t);
    unserve(&q->snap_h);
    if (q->h)
        nbd_flush(q->h, 0);
    unserve(&q->h);
    free(q->path);
    free(q);
}

/* The snapshot's id `qemu-img snapshot -l` shows for the one named `name`. */
static int snapshot_id_of(struct target *t, const char *name, char *id)
{
    char out[16384];
    char *argv[] = { "qemu-img", "snapshot", "-U", "-l", nt(t)->path, NULL };
    int ret = run_collect(argv, out, sizeof(out));
    if (ret) {
        snprintf(t->message, sizeof(t->message), "qemu-img snapshot -l exited %d", ret);
        return -EIO;
    }
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char got_id[TARGET_ID_MAX], tag[NAME_MAX_LEN];
        if (sscanf(line, "%31s %63s", got_id, tag) == 2 && !strcmp(tag, name)) {
            strcpy(id, got_id);
            return 0;
        }
    }
    snprintf(t->message, sizeof(t->message), "qemu-img snapshot -l does not list '%s' after "
             "creating it", name);
    return -EIO;
}

static struct snapshot_name *find_snapshot(struct nbd_target *q, const char *id)
{
    for (unsigned i = 0; i < q->n_snapshots; i++)
        if (!strcmp(q->snapshots[i].id, id))
            return &q->snapshots[i];
    return NULL;
}

static int qemu_snapshot_create(struct target *t, const char *name, char *id)
{
    struct nbd_target *q = nt(t);
    if (q->n_snapshots == SNAPSHOTS_MAX || strlen(name) >= NAME_MAX_LEN) {
        snprintf(t->message, sizeof(t->message), "the qemu target keeps at most %d snapshots "
                 "with names under %d bytes", SNAPSHOTS_MAX, NAME_MAX_LEN);
        return TARGET_REFUSED;
    }
    /* qemu-img snapshot -d finds a snapshot by name: two of one name could not be told apart. */
    for (unsigned i = 0; i < q->n_snapshots; i++) {
        if (!strcmp(q->snapshots[i].name, name)) {
            snprintf(t->message, sizeof(t->message), "the qemu target keeps snapshot names "
                     "unique (qemu-img snapshot -d takes a name): '%s' exists", name);
            return TARGET_REFUSED;
        }
    }
    char *argv[] = { "qemu-img", "snapshot", "-c", (char *)name, q->path, NULL };
    int ret = offline(t, argv);
    if (ret)
        return ret < 0 ? ret : -EIO;
    if ((ret = snapshot_id_of(t, name, id)))
        return ret;
    struct snapshot_name *s = &q->snapshots[q->n_snapshots++];
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->name, sizeof(s->name), "%s", name);
    return 0;
}

static int qemu_snapshot_apply(struct target *t, const char *id)
{
    char *argv[] = { "qemu-img", "snapshot", "-a", (char *)id, nt(t)->path, NULL };
    int ret = offline(t, argv);
    return ret < 0 ? ret : ret ? -EIO : 0;
}

/* qemu-img snapshot -d takes a name, never an id: the name this target gave it. */
static int qemu_snapshot_delete(struct target *t, const char *id)
{
    struct nbd_target *q = nt(t);
    struct snapshot_name *s = find_snapshot(q, id);
    if (!s) {
        snprintf(t->message, sizeof(t->message), "no snapshot with id %s was made here", id);
        return -ENOENT;
    }
    char *argv[] = { "qemu-img", "snapshot", "-d", s->name, q->path, NULL };
    int ret = offline(t, argv);
    if (ret)
        return ret < 0 ? ret : -EIO;
    *s = q->snapshots[--q->n_snapshots];
    return 0;
}

static int qemu_snapshot_read(struct target *t, const char *id, void *buf, size_t len,
                              uint64_t off)
{
    struct nbd_target *q = nt(t);
    if (!q->snap_h || strcmp(q->snap_id, id)) {
        unserve(&q->snap_h);
        if (nbd_flush(q->h, 0) < 0)
            return nbd_failed(t, "flush");
        int ret = serve(q, id, &q->snap_h);
        if (ret)
            return ret;
        snprintf(q->snap_id, sizeof(q->snap_id), "%s", id);
    }
    return nbd_pread(q->snap_h, buf, len, off, 0) < 0 ? nbd_failed(t, "snapshot read") : 0;
}

/* QEMU's refusals (a shrink it cannot do, a v2 image with snapshots) leave the disk as it was. */
static int qemu_resize(struct target *t, uint64_t size)
{
    struct nbd_target *q = nt(t);
    char text[32];
    snprintf(text, sizeof(text), "%" PRIu64, size);
    char *argv[] = { "qemu-img", "resize", "-q", "-f", "qcow2", "--shrink", q->path, text,
                     NULL };
    int ret = offline(t, argv);
    return ret < 0 ? ret : ret ? TARGET_REFUSED : 0;
}

static int qemu_reopen(struct target *t)
{
    return offline(t, NULL);
}

/* qemu-img check's exit status: 0 clean, 2 corruptions, 3 leaks; others: it could not. */
static int qemu_check(struct target *t, struct target_check *r)
{
    struct nbd_target *q = nt(t);
    char *argv[] = { "qemu-img", "check", "-q", "-f", "qcow2", q->path, NULL };
    t->message[0] = '\0';
    int ret = offline(t, argv);
    *r = (struct target_check){ .corruptions = ret == 2, .leaks = ret == 3 };
    if (ret < 0 || (ret && ret != 2 && ret != 3))
        return ret < 0 ? ret : -EIO;
    return 0;
}

static const struct target_ops qemu_ops = {
    .name = "qemu",
    .facts = nbd_t_facts,
    .read = nbd_t_read,
    .write = nbd_t_write,
    .zero = nbd_t_zero,
    .discard = nbd_t_discard,
    .flush = nbd_t_flush,
    .snapshot_create = qemu_snapshot_create,
    .snapshot_apply = qemu_snapshot_apply,
    .snapshot_delete = qemu_snapshot_delete,
    .snapshot_read = qemu_snapshot_read,
    .resize = qemu_resize,
    .reopen = qemu_reopen,
    .check = qemu_check,
    .detach = qemu_detach,
    .attach = qemu_attach,
    .close = nbd_t_close,
};

static const struct target_ops nbd_ops = {
    .name = "nbd",
    .facts = nbd_t_facts,
    .read = nbd_t_read,
    .write = nbd_t_write,
    .zero = nbd_t_zero,
    .discard = nbd_t_discard,
    .flush = nbd_t_flush,
    .close = nbd_t_close,
};

/* ---- the qemu kind ----------------------------------------------------------------- */

static uint64_t be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

/* The backing file's virtual size: a qcow2 header's, or a raw file's length. */
static uint64_t backing_size(const char *image, const char *name)
{
    char path[2200];
    const char *slash = strrchr(image, '/');
    if (name[0] == '/' || !slash)
        snprintf(path, sizeof(path), "%s", name);
    else
        snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - image), image, name);
    uint8_t h[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return 0;
    ssize_t n = pread(fd, h, sizeof(h), 0);
    uint64_t size = n == (ssize_t)sizeof(h) && !memcmp(h, "QFI\xfb", 4) ? be(h + 24, 8)
                    : fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    close(fd);
    return size;
}

/* The oracle's facts from the image's qcow2 header (the image is closed). */
static int header_facts(struct nbd_target *q, char *errbuf, size_t errlen)
{
    uint8_t h[112] = { 0 };
    int fd = open(q->path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, h, sizeof(h), 0);
    char name[1024] = "";
    uint64_t name_off = be(h + 8, 8);
    uint32_t name_len = (uint32_t)be(h + 16, 4);
    if (n >= 72 && name_off && name_len && name_len < sizeof(name) &&
        pread(fd, name, name_len, (off_t)name_off) == (ssize_t)name_len)
        name[name_len] = '\0';
    if (fd >= 0)
        close(fd);
    if (n < 72 || memcmp(h, "QFI\xfb", 4)) {
        snprintf(errbuf, errlen, "%s: qemu-img create did not make a qcow2 image", q->path);
        return -EIO;
    }
    struct target_facts *f = &q->facts;
    f->oracle.version = (uint32_t)be(h + 4, 4);
    f->oracle.cluster_size = 1u << be(h + 20, 4);
    bool extended_l2 = f->oracle.version >= 3 && n >= 104 && (be(h + 72, 8) & 16);
    f->subcluster_size = f->oracle.cluster_size / (extended_l2 ? 32 : 1);
    f->l2_coverage_clusters = f->oracle.cluster_size / (extended_l2 ? 16 : 8);
    f->oracle.has_backing = name[0] != '\0';
    f->oracle.backing_size = name[0] ? backing_size(q->path, name) : 0;
    return 0;
}

/* ARGS: cache=MODE,aio=MODE,discard=MODE,filter=DRIVER. */
static int parse_qemu_args(struct nbd_target *q, const char *arg, char *errbuf, size_t errlen)
{
    snprintf(q->discard, sizeof(q->discard), "unmap");
    char copy[256];
    if (!arg)
        return 0;
    if (strlen(arg) >= sizeof(copy)) {
        snprintf(errbuf, errlen, "target qemu: arguments too long");
        return -EINVAL;
    }
    strcpy(copy, arg);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        char *eq = strchr(item, '=');
        char *slot = NULL;
        size_t cap = 0;
        if (eq) {
            *eq = '\0';
            if (!strcmp(item, "cache"))
                slot = q->cache, cap = sizeof(q->cache);
            else if (!strcmp(item, "aio"))
                slot = q->aio, cap = sizeof(q->aio);
            else if (!strcmp(item, "discard"))
                slot = q->discard, cap = sizeof(q->discard);
            else if (!strcmp(item, "filter"))
                slot = q->filter, cap = sizeof(q->filter);
        }
        if (!slot || !eq[1] || strlen(eq + 1) >= cap) {
            snprintf(errbuf, errlen, "target qemu: '%s%s%s' is not cache=MODE, aio=MODE, "
                     "discard=unmap|ignore or filter=DRIVER", item, eq ? "=" : "",
                     eq ? eq + 1 : "");
            return -EINVAL;
        }
        snprintf(slot, cap, "%s", eq + 1);
    }
    return 0;
}

static int qemu_start(const char *arg, bool create, const struct target_params *p,
                      struct target **out, char *errbuf, size_t errlen)
{
    struct nbd_target *q = calloc(1, sizeof(*q));
    if (!q || !(q->path = strdup(p->path))) {
        free(q);
        snprintf(errbuf, errlen, "%s: out of memory", p->path);
        return -ENOMEM;
    }
    q->read_only = p->read_only;
    q->base.ops = &qemu_ops;
    q->base.caps = TARGET_CAN_WRITE | TARGET_CAN_ZERO | TARGET_CAN_DISCARD | TARGET_CAN_FLUSH |
                   TARGET_CAN_SNAPSHOT | TARGET_CAN_SNAPSHOT_READ | TARGET_CAN_RESIZE |
                   TARGET_CAN_REOPEN | TARGET_CAN_CHECK | TARGET_QCOW2_FILE;
    int ret = parse_qemu_args(q, arg, errbuf, errlen);
    if (!ret && create) {
        char size[32];
        snprintf(size, sizeof(size), "%" PRIu64, p->size);
        char *argv[16];
        int n = 0;
        argv[n++] = "qemu-img";
        argv[n++] = "create";
        argv[n++] = "-q";
        argv[n++] = "-f";
        argv[n++] = "qcow2";
        if (p->options && p->options[0]) {
            argv[n++] = "-o";
            argv[n++] = (char *)p->options;
        }
        if (p->backing) {
            argv[n++] = "-b";
            argv[n++] = (char *)p->backing;
            argv[n++] = "-F";
            argv[n++] = (char *)(p->backing_format ? p->backing_format : "raw");
        }
        argv[n++] = q->path;
        argv[n++] = size;
        argv[n] = NULL;
        if ((ret = tool(&q->base, argv)))
            snprintf(errbuf, errlen, "%s", q->base.message);
    }
    if (!ret)
        ret = header_facts(q, errbuf, errlen);
    if (!ret && (ret = qemu_attach(&q->base)))
        snprintf(errbuf, errlen, "%s", q->base.message);
    if (ret) {
        nbd_t_close(&q->base);
        return ret < 0 ? ret : -EIO;
    }
    if (p->read_only)
        q->base.caps = 0;
    *out = &q->base;
    return 0;
}

const struct target_kind target_kind_qemu = {
    .name = "qemu",
    .start = qemu_start,
};

/* ---- the nbd kind ------------------------------------------------------------------ */

#define NBD_DEFAULT_CLUSTER 65536u

/* -o for nbd: cluster_size=SIZE, trim=on|off. */
static int parse_nbd_options(const char *options, uint32_t *cluster, bool *trim, char *errbuf,
                             size_t errlen)
{
    *cluster = NBD_DEFAULT_CLUSTER;
    *trim = false;
    char copy[512];
    if (!options || !options[0])
        return 0;
    snprintf(copy, sizeof(copy), "%s", options);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        char *eq = strchr(item, '=');
        uint64_t v = 0;
        bool ok = eq != NULL;
        if (ok)
            *eq = '\0';
        if (ok && !strcmp(item, "cluster_size"))
            ok = qcow2_parse_size(eq + 1, &v) && v >= 512 && v <= (2u << 20) && !(v & (v - 1));
        else if (ok && !strcmp(item, "trim"))
            ok = !strcmp(eq + 1, "on") || !strcmp(eq + 1, "off");
        else
            ok = false;
        if (!ok) {
            snprintf(errbuf, errlen, "image options: the nbd target takes cluster_size=SIZE "
                     "(a power of two, 512..2M) and trim=on|off, not '%s%s%s'", item,
                     eq ? "=" : "", eq ? eq + 1 : "");
            return -EINVAL;
        }
        if (!strcmp(item, "cluster_size"))
            *cluster = (uint32_t)v;
        else
            *trim = !strcmp(eq + 1, "on");
    }
    return 0;
}

static int check_nbd_options(const char *options, char *errbuf, size_t errlen)
{
    uint32_t cluster;
    bool trim;
    return parse_nbd_options(options, &cluster, &trim, errbuf, errlen);
}

/* A soak starts on zeros: the whole export is zeroed. */
static int zero_export(struct nbd_target *q)
{
    const uint64_t chunk = 1u << 30;
    static const uint8_t zeros[1u << 20];
    for (uint64_t off = 0; off < q->facts.size;) {
        uint64_t left = q->facts.size - off;
        int ret;
        if (q->base.caps & TARGET_CAN_ZERO) {
            uint64_t n = left < chunk ? left : chunk;
            ret = nbd_zero(q->h, n, off, LIBNBD_CMD_FLAG_NO_HOLE);
            off += n;
        } else {
            size_t n = left < sizeof(zeros) ? (size_t)left : sizeof(zeros);
            ret = nbd_pwrite(q->h, zeros, n, off, 0);
            off += n;
        }
        if (ret < 0)
            return nbd_failed(&q->base, "zeroing the export");
    }
    return nbd_flush(q->h, 0) < 0 ? nbd_failed(&q->base, "flush") : 0;
}

static int nbd_start(const char *uri, bool create, const struct target_params *p,
                     struct target **out, char *errbuf, size_t errlen)
{
    uint32_t cluster;
    bool trim;
    int ret = parse_nbd_options(p->options, &cluster, &trim, errbuf, errlen);
    if (ret)
        return ret;
    if (!uri || !*uri) {
        snprintf(errbuf, errlen, "target nbd needs a URI: nbd:nbd+unix:///?socket=PATH");
        return -EINVAL;
    }
    struct nbd_target *q = calloc(1, sizeof(*q));
    if (!q || !(q->h = nbd_create())) {
        free(q);
        snprintf(errbuf, errlen, "nbd: out of memory");
        return -ENOMEM;
    }
    q->base.ops = &nbd_ops;
    if (nbd_connect_uri(q->h, uri) < 0 || size_from_server(q)) {
        ret = nbd_failed(&q->base, uri);
        snprintf(errbuf, errlen, "%s", q->base.message);
        nbd_t_close(&q->base);
        return ret;
    }
    bool writable = !p->read_only && nbd_is_read_only(q->h) == 0;
    q->base.caps = (writable ? TARGET_CAN_WRITE : 0) |
                   (writable && nbd_can_zero(q->h) == 1 ? TARGET_CAN_ZERO : 0) |
                   (writable && trim && nbd_can_trim(q->h) == 1 ? TARGET_CAN_DISCARD : 0) |
                   (nbd_can_flush(q->h) == 1 ? TARGET_CAN_FLUSH : 0);
    q->facts.oracle = (struct oracle_facts){ .version = 3, .cluster_size = cluster };
    q->facts.subcluster_size = cluster;
    q->facts.l2_coverage_clusters = cluster / 8;
    if (create && !writable) {
        snprintf(errbuf, errlen, "%s: the export is read-only: it can be a --reader only", uri);
        nbd_t_close(&q->base);
        return -EROFS;
    }
    if (create && (ret = zero_export(q))) {
        snprintf(errbuf, errlen, "%s", q->base.message);
        nbd_t_close(&q->base);
        return ret;
    }
    *out = &q->base;
    return 0;
}

const struct target_kind target_kind_nbd = {
    .name = "nbd",
    .check_options = check_nbd_options,
    .start = nbd_start,
};
