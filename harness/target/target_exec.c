/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * exec:COMMAND: an implementation in any language, run as a child process (`sh -c
 * COMMAND`) that speaks qvet's framed protocol on its stdin and stdout (docs/targets.md
 * describes it byte by byte). qvet sends one request and waits for its answer; the
 * child's stderr is left to it (it reaches the soak's output).
 *
 * The child's stdin and stdout are one Unix stream socket, so that a child that dies
 * makes the next request fail with EPIPE instead of killing qvet with SIGPIPE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kinds.h"
#include "target.h"

#define EXEC_MAGIC "QVX1"
#define REQUEST_HEADER 32
#define ANSWER_HEADER 16
#define ANSWER_TEXT_MAX 4096            /* the longest non-data answer qvet accepts */
#define EXEC_ZERO_MAY_UNMAP 1u

enum exec_op {
    EXEC_HELLO, EXEC_READ, EXEC_WRITE, EXEC_ZERO, EXEC_DISCARD, EXEC_FLUSH,
    EXEC_SNAPSHOT_CREATE, EXEC_SNAPSHOT_APPLY, EXEC_SNAPSHOT_DELETE, EXEC_SNAPSHOT_READ,
    EXEC_RESIZE, EXEC_REOPEN, EXEC_CHECK, EXEC_SIZE, EXEC_CLOSE,
};

static const char *const exec_op_names[] = {
    "hello", "read", "write", "zero", "discard", "flush", "snapshot-create",
    "snapshot-apply", "snapshot-delete", "snapshot-read", "resize", "reopen", "check",
    "size", "close",
};

struct exec_target {
    struct target base;
    char name[64];                  /* the adapter's name (hello) */
    pid_t pid;
    int sock;                       /* the child's stdin and stdout */
    struct target_facts facts;
    char text[ANSWER_TEXT_MAX + 1]; /* the last answer's text payload */
};

static struct exec_target *et(struct target *t)
{
    return (struct exec_target *)t;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Sends the `len` bytes at `out`, or (out NULL) receives `len` bytes into `in`, all of
 * them: an adapter that closes the socket midway is -EPIPE.
 */
static int transfer_all(int fd, const uint8_t *out, uint8_t *in, size_t len)
{
    while (len) {
        ssize_t n = out ? send(fd, out, len, MSG_NOSIGNAL) : recv(fd, in, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EPIPE;
        if (out)
            out += n;
        else
            in += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_all(int fd, const void *buf, size_t len)
{
    return transfer_all(fd, buf, NULL, len);
}

static int recv_all(int fd, void *buf, size_t len)
{
    return transfer_all(fd, NULL, buf, len);
}

/* Reads and drops `len` bytes of an answer qvet has no room for. */
static int drain(int fd, size_t len)
{
    uint8_t junk[4096];
    while (len) {
        size_t n = len < sizeof(junk) ? len : sizeof(junk);
        int ret = recv_all(fd, junk, n);
        if (ret)
            return ret;
        len -= n;
    }
    return 0;
}

static int protocol_error(struct exec_target *e, enum exec_op op, const char *what)
{
    snprintf(e->base.message, sizeof(e->base.message), "exec target %s: %s request: %s",
             e->name, exec_op_names[op], what);
    return -EPROTO;
}

/*
 * One request and its answer. `data` (data_len bytes) is the request's payload; a read
 * answer's data goes to `out` (exactly out_len bytes), any other answer's payload to
 * e->text. Returns the answer's status: 0, TARGET_REFUSED or a negative errno (the
 * answer's text in t->message), or -EPIPE/-EPROTO when the child broke the protocol.
 */
static int call(struct exec_target *e, enum exec_op op, uint64_t off, uint64_t len,
                uint32_t flags, const void *data, size_t data_len, void *out, size_t out_len)
{
    uint8_t h[REQUEST_HEADER];
    memcpy(h, EXEC_MAGIC, 4);
    put_le32(h + 4, op);
    put_le64(h + 8, off);
    put_le64(h + 16, len);
    put_le32(h + 24, flags);
    put_le32(h + 28, (uint32_t)data_len);
    e->text[0] = '\0';
    if (send_all(e->sock, h, sizeof(h)) || (data_len && send_all(e->sock, data, data_len)) ||
        recv_all(e->sock, h, ANSWER_HEADER)) {
        int status;
        bool exited = waitpid(e->pid, &status, WNOHANG) == e->pid;
        if (exited)
            e->pid = -1;
        return protocol_error(e, op, exited ? "the adapter exited" : "the adapter closed "
                              "its stdin or stdout");
    }
    if (memcmp(h, EXEC_MAGIC, 4))
        return protocol_error(e, op, "the answer does not start with \"" EXEC_MAGIC "\"");
    int32_t status = (int32_t)get_le32(h + 4);
    uint32_t n = get_le32(h + 8);
    if (status > TARGET_REFUSED)
        return protocol_error(e, op, "a status that is neither 0, 1 nor a negative errno");
    if (status == 0 && out) {
        if (n != out_len)
            return protocol_error(e, op, "the data is not as long as asked");
        return recv_all(e->sock, out, n) ? protocol_error(e, op, "the answer is cut short")
                                         : 0;
    }
    size_t kept = n < ANSWER_TEXT_MAX ? n : ANSWER_TEXT_MAX;
    if (recv_all(e->sock, e->text, kept) || drain(e->sock, n - kept))
        return protocol_error(e, op, "the answer is cut short");
    e->text[kept] = '\0';
    if (status) {
        char *nl = strchr(e->text, '\n');
        if (nl)
            *nl = '\0';
        snprintf(e->base.message, sizeof(e->base.message), "%s: %.2000s", e->name,
                 e->text[0] ? e->text : strerror(-status));
    }
    return status;
}

static int exec_read(struct target *t, void *buf, size_t len, uint64_t off)
{
    return call(et(t), EXEC_READ, off, len, 0, NULL, 0, buf, len);
}

static int exec_write(struct target *t, const void *buf, size_t len, uint64_t off)
{
    return call(et(t), EXEC_WRITE, off, len, 0, buf, len, NULL, 0);
}

static int exec_zero(struct target *t, uint64_t len, uint64_t off, bool unmap)
{
    return call(et(t), EXEC_ZERO, off, len, unmap ? EXEC_ZERO_MAY_UNMAP : 0, NULL, 0, NULL, 0);
}

static int exec_discard(struct target *t, uint64_t len, uint64_t off)
{
    return call(et(t), EXEC_DISCARD, off, len, 0, NULL, 0, NULL, 0);
}

static int exec_flush(struct target *t)
{
    return call(et(t), EXEC_FLUSH, 0, 0, 0, NULL, 0, NULL, 0);
}

/* The disk's size, asked again after an op that may change it. */
static int refresh_size(struct exec_target *e, int ret)
{
    if (ret < 0)
        return ret;
    uint8_t b[8];
    int got = call(e, EXEC_SIZE, 0, 0, 0, NULL, 0, b, sizeof(b));
    if (got)
        return got;
    e->facts.size = 0;
    for (int i = 7; i >= 0; i--)
        e->facts.size = e->facts.size << 8 | b[i];
    return ret;
}

static int exec_snapshot_create(struct target *t, const char *name, char *id)
{
    struct exec_target *e = et(t);
    int ret = call(e, EXEC_SNAPSHOT_CREATE, 0, 0, 0, name, strlen(name), NULL, 0);
    if (ret)
        return ret;
    if (!e->text[0] || strlen(e->text) >= TARGET_ID_MAX || strpbrk(e->text, " \t\n"))
        return protocol_error(e, EXEC_SNAPSHOT_CREATE, "the id is empty, longer than 31 "
                              "bytes or holds white space");
    strcpy(id, e->text);
    return 0;
}

static int exec_snapshot_apply(struct target *t, const char *id)
{
    return refresh_size(et(t), call(et(t), EXEC_SNAPSHOT_APPLY, 0, 0, 0, id, strlen(id),
                                    NULL, 0));
}

static int exec_snapshot_delete(struct target *t, const char *id)
{
    return call(et(t), EXEC_SNAPSHOT_DELETE, 0, 0, 0, id, strlen(id), NULL, 0);
}

static int exec_snapshot_read(struct target *t, const char *id, void *buf, size_t len,
                              uint64_t off)
{
    return call(et(t), EXEC_SNAPSHOT_READ, off, len, 0, id, strlen(id), buf, len);
}

static int exec_resize(struct target *t, uint64_t size)
{
    return refresh_size(et(t), call(et(t), EXEC_RESIZE, 0, size, 0, NULL, 0, NULL, 0));
}

static int exec_reopen(struct target *t)
{
    return refresh_size(et(t), call(et(t), EXEC_REOPEN, 0, 0, 0, NULL, 0, NULL, 0));
}

/* The answer: "CORRUPTIONS LEAKS ERRORS" and, on the lines after it, the findings. */
static int exec_check(struct target *t, struct target_check *r)
{
    struct exec_target *e = et(t);
    int ret = call(e, EXEC_CHECK, 0, 0, 0, NULL, 0, NULL, 0);
    if (ret)
        return ret;
    unsigned long long c, l, x;
    int used;
    if (sscanf(e->text, "%llu %llu %llu%n", &c, &l, &x, &used) != 3)
        return protocol_error(e, EXEC_CHECK, "the answer is not \"CORRUPTIONS LEAKS ERRORS\"");
    *r = (struct target_check){ .corruptions = c, .leaks = l, .check_errors = x };
    const char *rest = e->text + used;
    rest += strspn(rest, "\n");
    snprintf(t->message, sizeof(t->message), "%s", rest);
    return 0;
}

static int exec_facts(struct target *t, struct target_facts *f)
{
    *f = et(t)->facts;
    return 0;
}

static void exec_close(struct target *t)
{
    struct exec_target *e = et(t);
    if (e->pid > 0)
        call(e, EXEC_CLOSE, 0, 0, 0, NULL, 0, NULL, 0);
    close(e->sock);
    if (e->pid > 0) {
        int status;
        while (waitpid(e->pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    free(e);
}

static const struct target_ops exec_ops = {
    .name = "exec",
    .facts = exec_facts,
    .read = exec_read,
    .write = exec_write,
    .zero = exec_zero,
    .discard = exec_discard,
    .flush = exec_flush,
    .snapshot_create = exec_snapshot_create,
    .snapshot_apply = exec_snapshot_apply,
    .snapshot_delete = exec_snapshot_delete,
    .snapshot_read = exec_snapshot_read,
    .resize = exec_resize,
    .reopen = exec_reopen,
    .check = exec_check,
    .close = exec_close,
};

static const struct {
    const char *name;
    unsigned cap;
} cap_names[] = {
    { "write", TARGET_CAN_WRITE }, { "zero", TARGET_CAN_ZERO },
    { "discard", TARGET_CAN_DISCARD }, { "flush", TARGET_CAN_FLUSH },
    { "snapshot", TARGET_CAN_SNAPSHOT }, { "snapshot-read", TARGET_CAN_SNAPSHOT_READ },
    { "resize", TARGET_CAN_RESIZE }, { "reopen", TARGET_CAN_REOPEN },
    { "check", TARGET_CAN_CHECK },
};

static int parse_caps(const char *list, unsigned *caps, char *errbuf, size_t errlen)
{
    *caps = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        size_t i = 0;
        while (i < sizeof(cap_names) / sizeof(cap_names[0]) &&
               (strlen(cap_names[i].name) != n || strncmp(cap_names[i].name, p, n)))
            i++;
        if (i == sizeof(cap_names) / sizeof(cap_names[0])) {
            snprintf(errbuf, errlen, "hello: unknown capability '%.*s'", (int)n, p);
            return -EPROTO;
        }
        *caps |= cap_names[i].cap;
        p += n + (p[n] == ',');
    }
    return 0;
}

/* One "key=value" line of the hello answer into the target. */
static int hello_line(struct exec_target *e, const char *key, const char *value, char *errbuf,
                      size_t errlen)
{
    struct target_facts *f = &e->facts;
    char *end;
    unsigned long long v = strtoull(value, &end, 10);
    bool number = *value && !*end;
    if (!strcmp(key, "name"))
        snprintf(e->name, sizeof(e->name), "%s", value);
    else if (!strcmp(key, "caps"))
        return parse_caps(value, &e->base.caps, errbuf, errlen);
    else if (!strcmp(key, "format"))
        e->base.caps |= !strcmp(value, "qcow2") ? TARGET_QCOW2_FILE : 0;
    else if (number && !strcmp(key, "size"))
        f->size = v;
    else if (number && !strcmp(key, "qcow2_version"))
        f->oracle.version = (uint32_t)v;
    else if (number && !strcmp(key, "cluster_size"))
        f->oracle.cluster_size = (uint32_t)v;
    else if (number && !strcmp(key, "subcluster_size"))
        f->subcluster_size = (uint32_t)v;
    else if (number && !strcmp(key, "backing_size")) {
        f->oracle.backing_size = v;
        f->oracle.has_backing = v != 0;
    } else if (!number && strcmp(key, "name") && strcmp(key, "format")) {
        snprintf(errbuf, errlen, "hello: '%s=%s' is not a number", key, value);
        return -EPROTO;
    }
    /* Keys qvet does not know are for later versions of the protocol: ignored. */
    return 0;
}

static int parse_hello(struct exec_target *e, char *text, char *errbuf, size_t errlen)
{
    e->base.caps = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *eq = strchr(line, '=');
        if (!eq) {
            snprintf(errbuf, errlen, "hello: line '%.60s' is not key=value", line);
            return -EPROTO;
        }
        *eq = '\0';
        int ret = hello_line(e, line, eq + 1, errbuf, errlen);
        if (ret)
            return ret;
    }
    struct target_facts *f = &e->facts;
    uint32_t cs = f->oracle.cluster_size;
    if (!f->size || f->size % 512 || cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
        snprintf(errbuf, errlen, "hello: size (a multiple of 512) and cluster_size (a power "
                 "of two, 512..2M) are required");
        return -EPROTO;
    }
    if (!f->oracle.version)
        f->oracle.version = 3;
    if (!f->subcluster_size)
        f->subcluster_size = cs;
    f->l2_coverage_clusters = cs / 8;
    return 0;
}

static int start_child(struct exec_target *e, const char *command, char *errbuf, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        snprintf(errbuf, errlen, "exec: socketpair: %s", strerror(errno));
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int ret = -errno;
        snprintf(errbuf, errlen, "exec: fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return ret;
    }
    if (pid == 0) {
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    e->sock = sv[0];
    e->pid = pid;
    return 0;
}

static int exec_start(const char *command, bool create, const struct target_params *p,
                      struct target **out, char *errbuf, size_t errlen)
{
    if (!command || !*command) {
        snprintf(errbuf, errlen, "target exec needs a command: exec:COMMAND");
        return -EINVAL;
    }
    struct exec_target *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(errbuf, errlen, "%s: out of memory", p->path);
        return -ENOMEM;
    }
    e->base.ops = &exec_ops;
    snprintf(e->name, sizeof(e->name), "exec:%.58s", command);
    int ret = start_child(e, command, errbuf, errlen);
    if (ret) {
        free(e);
        return ret;
    }
    char hello[2400];
    snprintf(hello, sizeof(hello), "protocol=1\nmode=%s\npath=%s\nsize=%" PRIu64
             "\noptions=%s\nbacking=%s\nbacking_format=%s\nread_only=%d\n",
             create ? "create" : "open", p->path, p->size, p->options ? p->options : "",
             p->backing ? p->backing : "", p->backing_format ? p->backing_format : "",
             p->read_only);
    ret = call(e, EXEC_HELLO, 0, 0, 0, hello, strlen(hello), NULL, 0);
    if (ret == 0)
        ret = parse_hello(e, e->text, errbuf, errlen);
    else
        snprintf(errbuf, errlen, "%s", e->base.message);
    if (ret) {
        exec_close(&e->base);
        return ret < 0 ? ret : -EINVAL;
    }
    *out = &e->base;
    return 0;
}

const struct target_kind target_kind_exec = {
    .name = "exec",
    .start = exec_start,
};
