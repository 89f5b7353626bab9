/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A qvet exec adapter in C around libqvet, through its public header qcow2.h only:
 *
 *   qvet soak --target exec:build/qvet-exec-adapter      (a target)
 *   qvet soak --reader exec:build/qvet-exec-adapter      (a reader: opened read-only)
 *
 * It is the example to copy for an engine written in C (or anything with a C ABI): the
 * framing (serve, call) stays, and each handler's one engine call becomes yours. The
 * protocol is in docs/targets.md. Build: cc qvet_adapter.c $(pkg-config --cflags --libs qvet).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"

#define MAGIC "QVX1"
#define STATUS_REFUSED 1
#define MAX_IO (64u << 20)

enum op {
    OP_HELLO, OP_READ, OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH, OP_SNAPSHOT_CREATE,
    OP_SNAPSHOT_APPLY, OP_SNAPSHOT_DELETE, OP_SNAPSHOT_READ, OP_RESIZE, OP_REOPEN, OP_CHECK,
    OP_SIZE, OP_CLOSE,
};

struct request {
    uint32_t op, flags, payload_len;
    uint64_t offset, length;
};

struct adapter {
    char path[1024];
    bool read_only;
    struct qcow2_image *img;
    struct qcow2_error err;
    char check_text[2048];
};

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool read_exactly(void *buf, size_t len)
{
    for (uint8_t *p = buf; len;) {
        ssize_t n = read(0, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool write_exactly(const void *buf, size_t len)
{
    for (const uint8_t *p = buf; len;) {
        ssize_t n = write(1, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool answer(int32_t status, const void *payload, size_t len)
{
    uint8_t h[16];
    memcpy(h, MAGIC, 4);
    put_le(h + 4, (uint32_t)status, 4);
    put_le(h + 8, len, 4);
    put_le(h + 12, 0, 4);
    return write_exactly(h, sizeof(h)) && (!len || write_exactly(payload, len));
}

/* An engine call's result as the answer: 0, or its errno and one-line message. */
static bool answer_result(struct adapter *a, int ret)
{
    if (!ret)
        return answer(0, NULL, 0);
    return answer(ret, a->err.message, strlen(a->err.message));
}

static int open_image(struct adapter *a)
{
    struct qcow2_open_options o = { .writable = !a->read_only, .no_locks = true };
    return qcow2_open(a->path, &o, &a->img, &a->err);
}

/* The hello's "key=value" lines: mode, path, size, options, backing, read_only. */
static bool hello(struct adapter *a, char *text)
{
    char mode[16] = "", options[1024] = "", backing[1024] = "", backing_format[32] = "";
    uint64_t size = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq++ = '\0';
        if (!strcmp(line, "mode"))
            snprintf(mode, sizeof(mode), "%s", eq);
        else if (!strcmp(line, "path"))
            snprintf(a->path, sizeof(a->path), "%s", eq);
        else if (!strcmp(line, "size"))
            size = strtoull(eq, NULL, 10);
        else if (!strcmp(line, "options"))
            snprintf(options, sizeof(options), "%s", eq);
        else if (!strcmp(line, "backing"))
            snprintf(backing, sizeof(backing), "%s", eq);
        else if (!strcmp(line, "backing_format"))
            snprintf(backing_format, sizeof(backing_format), "%s", eq);
        else if (!strcmp(line, "read_only"))
            a->read_only = !strcmp(eq, "1");
    }
    int ret = 0;
    if (!strcmp(mode, "create")) {
        struct qcow2_create_options o;
        qcow2_create_options_init(&o);
        if (options[0])
            ret = qcow2_create_options_parse(&o, options, &a->err);
        o.size = size;
        o.has_size = true;
        if (backing[0]) {
            o.backing_file = backing;
            o.backing_format = backing_format[0] ? backing_format : NULL;
        }
        if (!ret)
            ret = qcow2_create(a->path, &o, &a->err);
    }
    if (ret || (ret = open_image(a)))
        return answer_result(a, ret);
    struct qcow2_info info;
    qcow2_get_info(a->img, &info);
    const struct qcow2_image *b = qcow2_backing_image(a->img);
    char facts[512];
    snprintf(facts, sizeof(facts), "name=qvet-exec-adapter\ncaps=%s\nformat=qcow2\nsize=%"
             PRIu64 "\nqcow2_version=%u\ncluster_size=%u\nsubcluster_size=%u\n"
             "backing_size=%" PRIu64 "\n",
             a->read_only ? "" : "write,zero,discard,flush,snapshot,resize,reopen,check",
             info.virtual_size, info.version, info.cluster_size,
             info.extended_l2 ? info.cluster_size / 32 : info.cluster_size,
             b ? qcow2_virtual_size(b) : 0);
    return answer(0, facts, strlen(facts));
}

static void check_line(void *ctx, const char *line)
{
    struct adapter *a = ctx;
    size_t used = strlen(a->check_text);
    if (used + strlen(line) + 2 < sizeof(a->check_text))
        snprintf(a->check_text + used, sizeof(a->check_text) - used, "%s\n", line);
}

static bool check(struct adapter *a)
{
    struct qcow2_check_result r;
    a->check_text[0] = '\0';
    int ret = qcow2_check(a->img, QCOW2_REPAIR_NONE, &r, check_line, a, &a->err);
    if (ret)
        return answer_result(a, ret);
    char text[2200];
    snprintf(text, sizeof(text), "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n%s", r.corruptions,
             r.leaks, r.check_errors, a->check_text);
    return answer(0, text, strlen(text));
}

/* Runs one request whose payload (NUL-terminated) is in `data`; false: stop serving. */
static bool handle(struct adapter *a, const struct request *q, uint8_t *data)
{
    struct qcow2_error *err = &a->err;
    int ret;
    switch (q->op) {
    case OP_HELLO:
        return hello(a, (char *)data);
    case OP_READ:
        if (q->length > MAX_IO)
            return answer(-EINVAL, "longer than 64 MiB", 18);
        ret = qcow2_pread(a->img, data, q->length, q->offset, err);
        return ret ? answer_result(a, ret) : answer(0, data, q->length);
    case OP_WRITE:
        return answer_result(a, qcow2_pwrite(a->img, data, q->payload_len, q->offset, err));
    case OP_ZERO:
        return answer_result(a, qcow2_pwrite_zeroes(a->img, q->offset, q->length,
                                                    q->flags & 1 ? QCOW2_ZERO_MAY_UNMAP : 0,
                                                    err));
    case OP_DISCARD:
        return answer_result(a, qcow2_discard(a->img, q->offset, q->length, err));
    case OP_FLUSH:
        return answer_result(a, qcow2_flush(a->img, err));
    case OP_SNAPSHOT_CREATE: {
        ret = qcow2_snapshot_create(a->img, (char *)data, err);
        if (ret == -ERANGE || ret == -ENOTSUP)
            return answer(STATUS_REFUSED, err->message, strlen(err->message));
        if (ret)
            return answer_result(a, ret);
        struct qcow2_snapshot_info s;
        qcow2_snapshot_get(a->img, qcow2_snapshot_count(a->img) - 1, &s);
        return answer(0, s.id, strlen(s.id));
    }
    case OP_SNAPSHOT_APPLY:
        ret = qcow2_snapshot_apply(a->img, (char *)data, err);
        if (ret == -ERANGE)
            return answer(STATUS_REFUSED, err->message, strlen(err->message));
        return answer_result(a, ret);
    case OP_SNAPSHOT_DELETE:
        return answer_result(a, qcow2_snapshot_delete(a->img, (char *)data, err));
    case OP_RESIZE:
        ret = qcow2_resize(a->img, q->length, err);
        if (ret == -ENOTSUP)
            return answer(STATUS_REFUSED, err->message, strlen(err->message));
        return answer_result(a, ret);
    case OP_REOPEN:
        qcow2_close(a->img);
        a->img = NULL;
        return answer_result(a, open_image(a));
    case OP_CHECK:
        return check(a);
    case OP_SIZE: {
        uint8_t b[8];
        put_le(b, qcow2_virtual_size(a->img), 8);
        return answer(0, b, sizeof(b));
    }
    case OP_CLOSE:
        answer(0, NULL, 0);
        return false;
    default:
        return answer(-EOPNOTSUPP, "not an operation of this adapter", 32);
    }
}

int main(void)
{
    struct adapter a = { .img = NULL };
    uint8_t *data = malloc(MAX_IO + 1);
    uint8_t h[32];
    while (data && read_exactly(h, sizeof(h))) {
        struct request q = {
            .op = (uint32_t)get_le(h + 4, 4), .offset = get_le(h + 8, 8),
            .length = get_le(h + 16, 8), .flags = (uint32_t)get_le(h + 24, 4),
            .payload_len = (uint32_t)get_le(h + 28, 4),
        };
        if (memcmp(h, MAGIC, 4) || q.payload_len > MAX_IO || !read_exactly(data, q.payload_len))
            break;
        data[q.payload_len] = '\0';
        if ((!a.img && q.op != OP_HELLO) || !handle(&a, &q, data))
            break;
    }
    qcow2_close(a.img);
    free(data);
    return 0;
}
