/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The qvet engine as a target: each op is one call of the public API. The image lives in
 * a file, or (in_memory) in a memory backend that the target keeps and every open of the
 * image (the first, a reopen, a snapshot read) sees through a forwarding shim, as the
 * opens of a file see the same file; no file is ever touched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io_fault.h"
#include "io_forward.h"
#include "kinds.h"
#include "qcow2.h"
#include "target.h"

struct qvet_target {
    struct target base;
    char *path;                     /* in memory: the name in messages */
    bool in_memory;
    size_t cache_bytes;
    struct target_hooks hooks;
    struct qcow2_image *img;
    struct qcow2_backend *mem;      /* in memory: the image's file (the target owns it) */
    bool crash_ops;
    struct io_fault fault;          /* crash_ops: holds the writes since the last flush */
};

static struct qvet_target *qt(struct target *t)
{
    return (struct qvet_target *)t;
}

/* Records the engine's message; maps the documented refusals to TARGET_REFUSED. */
static int result(struct target *t, int ret, const struct qcow2_error *err)
{
    if (!ret)
        return 0;
    snprintf(t->message, sizeof(t->message), "%s: %s", err->file, err->message);
    return ret;
}

/* In memory: a handle on the target's file, which outlives the image opened over it. */
static int lend_file(struct qvet_target *q, struct qcow2_backend **out,
                     struct qcow2_error *err)
{
    if ((*out = io_forward_new(sizeof(struct io_forward), q->mem, false)))
        return 0;
    snprintf(err->file, sizeof(err->file), "%s", q->path);
    snprintf(err->message, sizeof(err->message), "out of memory for a handle on the image");
    return -ENOMEM;
}

/*
 * The image's file, for writing. The soak runs qemu-img check and compare on the image
 * while this target holds it open, on purpose: the target takes no locks on it (QEMU's
 * locking=off), or QEMU's tools would rightly refuse an image open for writing elsewhere.
 */
static int open_file(struct qvet_target *q, struct qcow2_backend **out,
                     struct qcow2_error *err)
{
    struct qcow2_fd_options fo = qcow2_fd_options_for(QCOW2_FORMAT_QCOW2, true, false);
    fo.no_locks = true;
    return qcow2_backend_fd_open_with(q->path, &fo, out, err);
}

static int open_image(struct qvet_target *q, struct qcow2_error *err)
{
    struct qcow2_backend *file;
    int ret = q->in_memory ? lend_file(q, &file, err) : open_file(q, &file, err);
    if (ret)
        return ret;
    if (q->crash_ops) {
        struct qcow2_backend *shim = io_fault_wrap(file, true, &q->fault);
        if (!shim) {
            qcow2_backend_destroy(file);
            snprintf(err->file, sizeof(err->file), "%s", q->path);
            snprintf(err->message, sizeof(err->message), "out of memory for the crash shim");
            return -ENOMEM;
        }
        file = shim;
    }
    if (q->hooks.hook)
        file = q->hooks.hook(file, q->hooks.hook_ctx);
    struct qcow2_open_options o = { .writable = true, .cache_bytes = q->cache_bytes };
    return qcow2_open_backend(file, q->path, &o, &q->img, err);
}

static int qvet_facts(struct target *t, struct target_facts *f)
{
    struct qcow2_info info;
    qcow2_get_info(qt(t)->img, &info);
    const struct qcow2_image *backing = qcow2_backing_image(qt(t)->img);
    uint32_t entry = info.extended_l2 ? 16 : 8;
    *f = (struct target_facts){
        .size = info.virtual_size,
        .oracle = {
            .version = info.version,
            .cluster_size = info.cluster_size,
            .has_backing = backing != NULL,
            .backing_size = backing ? qcow2_virtual_size(backing) : 0,
        },
        .subcluster_size = info.extended_l2 ? info.cluster_size / 32 : info.cluster_size,
        .l2_coverage_clusters = info.cluster_size / entry,
    };
    return 0;
}

static int qvet_read(struct target *t, void *buf, size_t len, uint64_t off)
{
    struct qcow2_error err;
    return result(t, qcow2_pread(qt(t)->img, buf, len, off, &err), &err);
}

static int qvet_write(struct target *t, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_error err;
    return result(t, qcow2_pwrite(qt(t)->img, buf, len, off, &err), &err);
}

static int qvet_zero(struct target *t, uint64_t len, uint64_t off, bool unmap)
{
    struct qcow2_error err;
    return result(t, qcow2_pwrite_zeroes(qt(t)->img, off, len,
                                         unmap ? QCOW2_ZERO_MAY_UNMAP : 0, &err), &err);
}

static int qvet_discard(struct target *t, uint64_t len, uint64_t off)
{
    struct qcow2_error err;
    return result(t, qcow2_discard(qt(t)->img, off, len, &err), &err);
}

static int qvet_write_compressed(struct target *t, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_error err;
    int ret = qcow2_pwrite_compressed(qt(t)->img, buf, len, off, &err);
    result(t, ret, &err);
    return ret == -EEXIST ? TARGET_REFUSED : ret;
}

static int qvet_flush(struct target *t)
{
    struct qcow2_error err;
    return result(t, qcow2_flush(qt(t)->img, &err), &err);
}

static int qvet_snapshot_create(struct target *t, const char *name, char *id)
{
    struct qcow2_error err;
    struct qcow2_image *img = qt(t)->img;
    int ret = qcow2_snapshot_create(img, name, &err);
    if (ret == -ERANGE || ret == -ENOTSUP) {
        result(t, ret, &err);
        return TARGET_REFUSED;          /* a refcount at its maximum, or 1-bit refcounts */
    }
    if (ret)
        return result(t, ret, &err);
    struct qcow2_snapshot_info s;
    qcow2_snapshot_get(img, qcow2_snapshot_count(img) - 1, &s);
    snprintf(id, TARGET_ID_MAX, "%s", s.id);
    return 0;
}

static int qvet_snapshot_apply(struct target *t, const char *id)
{
    struct qcow2_error err;
    int ret = qcow2_snapshot_apply(qt(t)->img, id, &err);
    result(t, ret, &err);
    return ret == -ERANGE ? TARGET_REFUSED : ret;   /* a refcount at its width's maximum */
}

static int qvet_snapshot_delete(struct target *t, const char *id)
{
    struct qcow2_error err;
    return result(t, qcow2_snapshot_delete(qt(t)->img, id, &err), &err);
}

/* A snapshot is read through a second, read-only handle on the same file. */
static int qvet_snapshot_read(struct target *t, const char *id, void *buf, size_t len,
                              uint64_t off)
{
    struct qvet_target *q = qt(t);
    struct qcow2_error err;
    int ret = qcow2_flush(q->img, &err);
    if (ret)
        return result(t, ret, &err);
    struct qcow2_open_options o = { .snapshot = id, .no_locks = true,
                                    .cache_bytes = q->cache_bytes };
    struct qcow2_image *snap;
    struct qcow2_backend *file;
    if (!q->in_memory)
        ret = qcow2_open(q->path, &o, &snap, &err);
    else if (!(ret = lend_file(q, &file, &err)))
        ret = qcow2_open_backend(file, q->path, &o, &snap, &err);
    if (ret)
        return result(t, ret, &err);
    ret = qcow2_pread(snap, buf, len, off, &err);
    result(t, ret, &err);
    qcow2_close(snap);
    return ret;
}

static int qvet_resize(struct target *t, uint64_t size)
{
    struct qcow2_error err;
    int ret = qcow2_resize(qt(t)->img, size, &err);
    result(t, ret, &err);
    return ret == -ENOTSUP ? TARGET_REFUSED : ret;
}

static int qvet_reopen(struct target *t)
{
    struct qvet_target *q = qt(t);
    struct qcow2_error err;
    /*
     * A clean close writes the metadata cache back, but cannot say that it failed: the
     * flush first reports it.
     */
    int ret = qcow2_flush(q->img, &err);
    if (ret)
        return result(t, ret, &err);
    qcow2_close(q->img);
    q->img = NULL;
    return result(t, open_image(q, &err), &err);
}

static int qvet_check(struct target *t, struct target_check *r);

/*
 * How far past the end of the file a crash may leave refcounts: a refcount block landed
 * and the new tables it counts, allocated at the end of the file, did not. Far more than
 * the tables of one flush's worth of writes can need.
 */
#define CRASH_LEAK_REACH (64u << 20)

/*
 * After a crash: the leaks it left are repaired through a handle opened for the check.
 * A check counts only the clusters the file holds (as QEMU's does), so a refcount left
 * past its end would show as a leak only once a later write grows the file over it: the
 * repair handle sees the file longer, zeros past its end, by CRASH_LEAK_REACH.
 */
static int repair_leaks(struct qvet_target *q, struct qcow2_error *err)
{
    qcow2_close(q->img);
    q->img = NULL;
    struct qcow2_backend *file, *padded = NULL;
    struct io_fault pad;
    io_fault_init(&pad);
    uint64_t size;
    int ret = open_file(q, &file, err);
    if (!ret && (ret = file->ops->size(file, &size)))
        qcow2_backend_destroy(file);
    if (!ret) {
        pad.pad_to = size + CRASH_LEAK_REACH;
        if (!(padded = io_fault_wrap(file, true, &pad))) {
            qcow2_backend_destroy(file);
            ret = -ENOMEM;
        }
    }
    struct qcow2_open_options o = { .writable = true, .for_check = true, .no_locks = true };
    struct qcow2_image *img;
    if (!ret && !(ret = qcow2_open_backend(padded, q->path, &o, &img, err))) {
        struct qcow2_check_result c;
        ret = qcow2_check(img, QCOW2_REPAIR_LEAKS, &c, NULL, NULL, err);
        qcow2_close(img);
    }
    io_fault_fini(&pad);
    int reopened = open_image(q, err);
    return ret ? ret : reopened;
}

static int qvet_crash_reopen(struct target *t, enum target_crash how, uint64_t seed,
                             struct target_check *after)
{
    struct qvet_target *q = qt(t);
    struct qcow2_error err;
    static const enum io_fault_crash modes[] = {
        [TARGET_CRASH_DROP] = IO_FAULT_CRASH_DROP,
        [TARGET_CRASH_TEAR] = IO_FAULT_CRASH_TEAR,
        [TARGET_CRASH_KEEP] = IO_FAULT_CRASH_KEEP,
    };
    q->fault.crash = modes[how];
    q->fault.seed = seed;
    io_fault_crash_now(&q->fault);
    /* Every I/O fails from the crash on: the close frees the image and writes nothing. */
    qcow2_close(q->img);
    q->img = NULL;
    io_fault_fini(&q->fault);
    io_fault_init(&q->fault);
    q->fault.crash = IO_FAULT_CRASH_DROP;
    int ret = open_image(q, &err);
    if (ret)
        return result(t, ret, &err);
    if ((ret = qvet_check(t, after)))
        return ret;
    if (!after->corruptions && !after->check_errors)
        return result(t, repair_leaks(q, &err), &err);
    return 0;
}

static int qvet_crash_arm(struct target *t, uint64_t seed, unsigned host_flushes)
{
    struct qvet_target *q = qt(t);
    q->fault.crash = IO_FAULT_CRASH_TEAR;
    q->fault.seed = seed;
    q->fault.mask = IO_FAULT_FLUSH;
    q->fault.countdown = host_flushes;
    q->fault.armed = true;
    return 0;
}

static int qvet_snapshot_list(struct target *t, struct target_snapshot *out, unsigned cap,
                              unsigned *n)
{
    struct qcow2_image *img = qt(t)->img;
    *n = qcow2_snapshot_count(img);
    for (uint32_t i = 0; i < *n && i < cap; i++) {
        struct qcow2_snapshot_info info;
        qcow2_snapshot_get(img, i, &info);
        snprintf(out[i].id, sizeof(out[i].id), "%s", info.id);
        snprintf(out[i].name, sizeof(out[i].name), "%s", info.name);
        out[i].disk_size = info.disk_size;
    }
    return 0;
}

#define CHECK_LINES_KEPT 12

/* Collects the check's first findings into t->message, one indented line each. */
static void check_line(void *ctx, const char *line)
{
    struct target *t = ctx;
    size_t used = strlen(t->message), room = sizeof(t->message) - used, lines = 0;
    for (const char *p = t->message; used && (p = strchr(p, '\n')); p++)
        lines++;
    if (used && lines + 1 >= CHECK_LINES_KEPT) {
        if (lines + 1 == CHECK_LINES_KEPT && room > 10)
            snprintf(t->message + used, room, "\n    ...");
        return;
    }
    if (room > strlen(line) + 6)
        snprintf(t->message + used, room, "%s%s", used ? "\n    " : "", line);
}

static int qvet_check(struct target *t, struct target_check *r)
{
    struct qcow2_error err;
    struct qcow2_check_result c;
    t->message[0] = '\0';
    int ret = qcow2_check(qt(t)->img, QCOW2_REPAIR_NONE, &c, check_line, t, &err);
    if (ret)
        return result(t, ret, &err);
    *r = (struct target_check){
        .corruptions = c.corruptions, .leaks = c.leaks, .check_errors = c.check_errors,
    };
    return 0;
}

static void qvet_close(struct target *t)
{
    struct qvet_target *q = qt(t);
    qcow2_close(q->img);
    qcow2_backend_destroy(q->mem);
    io_fault_fini(&q->fault);
    free(q->path);
    free(q);
}

static const struct target_ops qvet_ops = {
    .name = "qvet",
    .facts = qvet_facts,
    .read = qvet_read,
    .write = qvet_write,
    .zero = qvet_zero,
    .discard = qvet_discard,
    .write_compressed = qvet_write_compressed,
    .flush = qvet_flush,
    .snapshot_create = qvet_snapshot_create,
    .snapshot_apply = qvet_snapshot_apply,
    .snapshot_delete = qvet_snapshot_delete,
    .snapshot_read = qvet_snapshot_read,
    .resize = qvet_resize,
    .reopen = qvet_reopen,
    .check = qvet_check,
    .crash_reopen = qvet_crash_reopen,
    .crash_arm = qvet_crash_arm,
    .snapshot_list = qvet_snapshot_list,
    .close = qvet_close,
};

#define OPTIONS_MAX 1024

/*
 * qemu-img's -o options (NULL or "": the defaults) into o, parsed in `copy`
 * (OPTIONS_MAX bytes), which its strings then point into.
 */
static int parse_options(const char *options, struct qcow2_create_options *o, char *copy,
                         char *errbuf, size_t errlen)
{
    qcow2_create_options_init(o);
    if (!options || !options[0])
        return 0;
    if (strlen(options) >= OPTIONS_MAX) {
        snprintf(errbuf, errlen, "image options: too long");
        return -EINVAL;
    }
    strcpy(copy, options);
    struct qcow2_error err;
    int ret = qcow2_create_options_parse(o, copy, &err);
    if (ret)
        snprintf(errbuf, errlen, "image options: %s", err.message);
    return ret;
}

static int check_options(const char *options, char *errbuf, size_t errlen)
{
    struct qcow2_create_options o;
    char copy[OPTIONS_MAX];
    return parse_options(options, &o, copy, errbuf, errlen);
}

static int no_argument(const char *arg, char *errbuf, size_t errlen)
{
    if (!arg)
        return 0;
    snprintf(errbuf, errlen, "target qvet takes no argument (got 'qvet:%s')", arg);
    return -EINVAL;
}

/* The target over the image at p->path, or (in memory) in `mem`, which it then owns. */
static int qvet_open_with(const struct target_params *p, struct qcow2_backend *mem,
                          struct target **out, char *errbuf, size_t errlen)
{
    struct qvet_target *q = calloc(1, sizeof(*q));
    if (!q || !(q->path = strdup(p->path))) {
        free(q);
        qcow2_backend_destroy(mem);
        snprintf(errbuf, errlen, "%s: out of memory", p->path);
        return -ENOMEM;
    }
    q->base.ops = &qvet_ops;
    q->base.caps = TARGET_CAN_WRITE | TARGET_CAN_ZERO | TARGET_QCOW2_FILE | TARGET_CAN_DISCARD |
                   TARGET_CAN_WRITE_COMPRESSED |
                   TARGET_CAN_FLUSH | TARGET_CAN_SNAPSHOT | TARGET_CAN_SNAPSHOT_READ |
                   TARGET_CAN_RESIZE | TARGET_CAN_REOPEN | TARGET_CAN_CHECK |
                   TARGET_CAN_SNAPSHOT_LIST;
    q->in_memory = p->in_memory;
    /* In memory a reopen already starts from a copy: only files get the crash shim. */
    q->crash_ops = p->crash_ops && !p->in_memory;
    if (q->crash_ops)
        q->base.caps |= TARGET_CAN_CRASH;
    io_fault_init(&q->fault);
    q->fault.crash = IO_FAULT_CRASH_DROP;
    q->mem = mem;
    q->cache_bytes = p->cache_bytes;
    if (p->hooks)
        q->hooks = *p->hooks;
    struct qcow2_error err;
    int ret = open_image(q, &err);
    if (ret) {
        snprintf(errbuf, errlen, "opening the image: %s: %s", err.file, err.message);
        qcow2_backend_destroy(mem);
        free(q->path);
        free(q);
        return ret;
    }
    *out = &q->base;
    return 0;
}

/*
 * In memory a create depends on nothing but its name, options, size and room, and the
 * fuzzers make one per input, thousands a second: the last CREATED_KEPT images made (per
 * thread) are kept, and a create like one of them starts from a copy of its bytes.
 * Enough to hold every configuration of a fuzz corpus; their zeros at the end are not
 * kept.
 */
#define CREATED_KEPT 128u

struct created_image {
    char *path, *options;           /* as given, options "" for none */
    uint64_t size, max_file;
    uint8_t *bytes;                 /* the file up to its last nonzero byte */
    size_t used, len;               /* len: the file's length */
};

static _Thread_local struct created_image created[CREATED_KEPT];
static _Thread_local unsigned created_next;

static const struct created_image *created_find(const struct target_params *p)
{
    const char *options = p->options ? p->options : "";
    for (unsigned i = 0; i < CREATED_KEPT; i++) {
        const struct created_image *c = &created[i];
        if (c->bytes && c->size == p->size && c->max_file == p->max_file &&
            !strcmp(c->options, options) && !strcmp(c->path, p->path))
            return c;
    }
    return NULL;
}

/* How many of the bytes come before their trailing zeros (a block at a time: most are). */
static size_t before_trailing_zeros(const uint8_t *bytes, size_t len)
{
    static const uint8_t zeros[4096];
    while (len >= sizeof(zeros) && !memcmp(bytes + len - sizeof(zeros), zeros, sizeof(zeros)))
        len -= sizeof(zeros);
    while (len && !bytes[len - 1])
        len--;
    return len;
}

static void created_forget(struct created_image *c)
{
    free(c->path);
    free(c->options);
    free(c->bytes);
    *c = (struct created_image){ 0 };
}

/* Out of memory, nothing is kept: the next create like it makes it again. */
static void created_keep(const struct target_params *p, struct qcow2_backend *mem)
{
    size_t len;
    const uint8_t *bytes = qcow2_backend_mem_data(mem, &len);
    size_t used = before_trailing_zeros(bytes, len);
    struct created_image *c = &created[created_next++ % CREATED_KEPT];
    created_forget(c);
    *c = (struct created_image){
        .path = strdup(p->path), .options = strdup(p->options ? p->options : ""),
        .size = p->size, .max_file = p->max_file, .bytes = malloc(used ? used : 1),
        .used = used, .len = len,
    };
    if (c->path && c->options && c->bytes)
        memcpy(c->bytes, bytes, used);
    else
        created_forget(c);
}

/* A new image, or an existing one; in memory there is none to open, only to create. */
static int qvet_start(const char *arg, bool create, const struct target_params *p,
                      struct target **out, char *errbuf, size_t errlen)
{
    struct qcow2_create_options o;
    char copy[OPTIONS_MAX];
    int ret = no_argument(arg, errbuf, errlen);
    if (!ret && !create && p->in_memory) {
        snprintf(errbuf, errlen, "%s: an image in memory can only be created", p->path);
        ret = -EINVAL;
    }
    if (ret || !create)
        return ret ? ret : qvet_open_with(p, NULL, out, errbuf, errlen);
    if ((ret = parse_options(p->options, &o, copy, errbuf, errlen)))
        return ret;
    o.size = p->size;
    o.has_size = true;
    if (p->backing) {
        o.backing_file = p->backing;
        o.backing_format = p->backing_format;
    }
    struct qcow2_backend *mem = NULL;
    if (p->in_memory && o.backing_file) {
        snprintf(errbuf, errlen, "%s: an image in memory has no backing file", p->path);
        return -EINVAL;
    }
    const struct created_image *made = p->in_memory ? created_find(p) : NULL;
    if (p->in_memory && qcow2_backend_mem_new(made ? made->bytes : NULL, made ? made->used : 0,
                                              p->max_file, &mem)) {
        snprintf(errbuf, errlen, "%s: out of memory", p->path);
        return -ENOMEM;
    }
    if (made) {
        /* The file grows over its kept zeros, within the room it had when made. */
        if ((ret = mem->ops->truncate(mem, made->len))) {
            qcow2_backend_destroy(mem);
            snprintf(errbuf, errlen, "%s: a copy of the new image: %s", p->path,
                     strerror(-ret));
            return ret;
        }
        return qvet_open_with(p, mem, out, errbuf, errlen);
    }
    struct qcow2_error err;
    ret = mem ? qcow2_create_backend(mem, p->path, &o, &err) : qcow2_create(p->path, &o, &err);
    if (ret) {
        snprintf(errbuf, errlen, "creating the image: %s", err.message);
        qcow2_backend_destroy(mem);
        return ret;
    }
    if (mem)
        created_keep(p, mem);
    return qvet_open_with(p, mem, out, errbuf, errlen);
}

const struct target_kind target_kind_qvet = {
    .name = "qvet",
    .check_options = check_options,
    .start = qvet_start,
};
