/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The trace: a text file a person can read and edit. A header of "key value" lines
 * (the run's configuration), the line "ops", then one operation a line:
 *   17 write 40960 4096        17 read 0 65536      17 zero 100 7000
 *   17 zero-unmap 0 65536      17 discard 0 131072  17 write-compressed 131072 65536
 *   17 flush                   17 reopen            17 resize 134217728
 *   17 snapshot-create s17     17 snapshot-apply 3  17 snapshot-delete 3
 *   17 power-cut               17 dirty-reopen      17 torn-power-cut
 *   17 torn-power-cut compare 3/8   (after the reopen only the disk's third eighth is
 *                                    compared, besides the sectors written since the flush)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soak.h"

static const char *const kind_names[OP_KINDS] = {
    [OP_READ] = "read",
    [OP_WRITE] = "write",
    [OP_ZERO] = "zero",
    [OP_ZERO_UNMAP] = "zero-unmap",
    [OP_DISCARD] = "discard",
    [OP_WRITE_COMPRESSED] = "write-compressed",
    [OP_FLUSH] = "flush",
    [OP_SNAPSHOT_CREATE] = "snapshot-create",
    [OP_SNAPSHOT_APPLY] = "snapshot-apply",
    [OP_SNAPSHOT_DELETE] = "snapshot-delete",
    [OP_REOPEN] = "reopen",
    [OP_RESIZE] = "resize",
    [OP_POWER_CUT] = "power-cut",
    [OP_DIRTY_REOPEN] = "dirty-reopen",
    [OP_TORN_POWER_CUT] = "torn-power-cut",
};

/* Default weights: mostly I/O, with the metadata-heavy operations a steady minority. */
static const unsigned default_weights[OP_KINDS] = {
    [OP_READ] = 300, [OP_WRITE] = 300, [OP_ZERO] = 60, [OP_ZERO_UNMAP] = 40,
    [OP_DISCARD] = 80, [OP_WRITE_COMPRESSED] = 50, [OP_FLUSH] = 30,
    [OP_SNAPSHOT_CREATE] = 12, [OP_SNAPSHOT_APPLY] = 8, [OP_SNAPSHOT_DELETE] = 10,
    [OP_REOPEN] = 6, [OP_RESIZE] = 10, [OP_POWER_CUT] = 3,
    [OP_DIRTY_REOPEN] = 3, [OP_TORN_POWER_CUT] = 6,
};

const char *op_kind_name(enum op_kind k)
{
    return k < OP_KINDS ? kind_names[k] : "check";
}

bool op_kind_parse(const char *name, enum op_kind *k)
{
    for (int i = 0; i < OP_KINDS; i++) {
        if (!strcmp(name, kind_names[i])) {
            *k = (enum op_kind)i;
            return true;
        }
    }
    return false;
}

static bool has_range(enum op_kind k)
{
    return k == OP_READ || k == OP_WRITE || k == OP_ZERO || k == OP_ZERO_UNMAP ||
           k == OP_DISCARD || k == OP_WRITE_COMPRESSED;
}

static bool has_snapshot(enum op_kind k)
{
    return k == OP_SNAPSHOT_CREATE || k == OP_SNAPSHOT_APPLY || k == OP_SNAPSHOT_DELETE;
}

bool op_kind_is_crash(enum op_kind k)
{
    return k == OP_POWER_CUT || k == OP_DIRTY_REOPEN || k == OP_TORN_POWER_CUT;
}

void op_format(const struct op *op, char *buf, size_t cap)
{
    const char *name = op_kind_name(op->kind);
    if (has_range(op->kind))
        snprintf(buf, cap, "%" PRIu32 " %s %" PRIu64 " %" PRIu64, op->n, name, op->off, op->len);
    else if (has_snapshot(op->kind))
        snprintf(buf, cap, "%" PRIu32 " %s %s", op->n, name, op->snapshot);
    else if (op->kind == OP_RESIZE)
        snprintf(buf, cap, "%" PRIu32 " %s %" PRIu64, op->n, name, op->len);
    else if (op_kind_is_crash(op->kind) && op->compare_parts)
        snprintf(buf, cap, "%" PRIu32 " %s compare %" PRIu32 "/%" PRIu32, op->n, name,
                 op->compare_part, op->compare_parts);
    else
        snprintf(buf, cap, "%" PRIu32 " %s", op->n, name);
}

bool op_parse(const char *line, struct op *op)
{
    char name[32], arg[TARGET_ID_MAX + 1];
    unsigned long long a, b;
    unsigned n;
    memset(op, 0, sizeof(*op));
    if (sscanf(line, "%u %31s", &n, name) != 2 || !op_kind_parse(name, &op->kind))
        return false;
    op->n = n;
    int extra;
    if (has_range(op->kind)) {
        if (sscanf(line, "%*u %*s %llu %llu %n", &a, &b, &extra) != 2 || line[extra])
            return false;
        op->off = a;
        op->len = b;
    } else if (has_snapshot(op->kind)) {
        if (sscanf(line, "%*u %*s %32s %n", arg, &extra) != 1 || line[extra] ||
            strlen(arg) >= TARGET_ID_MAX)
            return false;
        strcpy(op->snapshot, arg);
    } else if (op->kind == OP_RESIZE) {
        if (sscanf(line, "%*u %*s %llu %n", &a, &extra) != 1 || line[extra])
            return false;
        op->len = a;
    } else if (op_kind_is_crash(op->kind) && strstr(line, " compare ")) {
        /* Without it (a trace of an older qvet, or written by hand) the compare is whole. */
        unsigned part, parts;
        if (sscanf(line, "%*u %*s compare %u/%u %n", &part, &parts, &extra) != 2 ||
            line[extra] || !part || part > parts || parts > 1024)
            return false;
        op->compare_part = part;
        op->compare_parts = parts;
    } else {
        if (sscanf(line, "%*u %*s %n", &extra) != 0 || line[extra])
            return false;
    }
    return true;
}

const struct target_hooks *soak_process_hooks;
static char qvet_command[512];

void soak_set_qvet_command(const char *path)
{
    snprintf(qvet_command, sizeof(qvet_command), "%s", path);
}

void soak_config_defaults(struct soak_config *c)
{
    memset(c, 0, sizeof(*c));
    c->seed = 1;
    c->seconds = 60;
    c->size = 64u << 20;
    c->check_every = 2000;
    c->qemu_checks = true;
    c->heartbeat = 10;
    c->hang_seconds = 10;
    snprintf(c->qvet_binary, sizeof(c->qvet_binary), "%s", qvet_command);
    memcpy(c->weights, default_weights, sizeof(default_weights));
    snprintf(c->target, sizeof(c->target), "qvet");
    snprintf(c->dir, sizeof(c->dir), "soak-run");
    c->hooks = soak_process_hooks;
}

void soak_trace_header(const struct soak_config *c, const char *path, const char *note,
                       char *buf, size_t cap)
{
    char settings[80] = "";     /* the optional ones: the cache, the fill */
    if (c->cache_bytes)
        snprintf(settings, sizeof(settings), "cache %zu\n", c->cache_bytes);
    /* A replay checks where the run checked: right after the fill (soak_config.fill). */
    if (c->fill)
        snprintf(settings + strlen(settings), sizeof(settings) - strlen(settings),
                 "fill %" PRIu64 "\n", c->fill);
    snprintf(buf, cap, "# qvet soak trace 1%s: replay with `qvet replay %s`\ntarget %s\n%s%s%s"
             "%sseed %" PRIu64 "\nsize %" PRIu64 "\noptions %s\nbacking %s\ncheck-every %" PRIu64
             "\n%sops\n", note, path, c->target, c->reader[0] ? "reader " : "", c->reader,
             c->reader[0] ? "\n" : "", c->compressible_payload ? "payload compressible\n" : "",
             c->seed, c->size, c->options[0] ? c->options : "-", soak_backing_name(c->backing),
             c->check_every, settings);
}

void soak_trace_path(const struct soak_config *c, char *buf, size_t cap)
{
    if (c->trace[0])
        snprintf(buf, cap, "%s", c->trace);
    else
        snprintf(buf, cap, "%s/trace.txt", c->dir);
}

static const char *const backing_names[] = { "none", "qcow2", "raw", "chain" };

bool soak_backing_parse(const char *s, enum soak_backing *b)
{
    for (int i = 0; i < 4; i++) {
        if (!strcmp(s, backing_names[i])) {
            *b = (enum soak_backing)i;
            return true;
        }
    }
    return false;
}

const char *soak_backing_name(enum soak_backing b)
{
    return backing_names[b];
}

bool soak_weights_parse(struct soak_config *c, const char *text)
{
    char *copy = strdup(text);
    if (!copy)
        return false;
    bool ok = true;
    for (char *item = strtok(copy, ","); item && ok; item = strtok(NULL, ",")) {
        char *eq = strchr(item, '=');
        enum op_kind k;
        char *end;
        if (!eq) {
            ok = false;
            break;
        }
        *eq = '\0';
        unsigned long v = strtoul(eq + 1, &end, 10);
        ok = op_kind_parse(item, &k) && !*end && end != eq + 1 && v <= 100000;
        if (ok)
            c->weights[k] = (unsigned)v;
    }
    free(copy);
    return ok;
}

/* One "key value" header line into the config. */
static bool parse_config_line(struct soak_config *c, const char *key, const char *value)
{
    char *end;
    if (!strcmp(key, "seed")) {
        c->seed = strtoull(value, &end, 10);
        return *value && !*end;
    }
    if (!strcmp(key, "size")) {
        c->size = strtoull(value, &end, 10);
        return *value && !*end && c->size >= 4096 && c->size % 512 == 0;
    }
    if (!strcmp(key, "check-every")) {
        c->check_every = strtoull(value, &end, 10);
        return *value && !*end;
    }
    if (!strcmp(key, "options")) {
        if (strlen(value) >= sizeof(c->options))
            return false;
        strcpy(c->options, strcmp(value, "-") ? value : "");
        char why[256];
        return target_check_options(c->target, c->options, why, sizeof(why)) == 0;
    }
    if (!strcmp(key, "backing"))
        return soak_backing_parse(value, &c->backing);
    if (!strcmp(key, "payload")) {
        c->compressible_payload = !strcmp(value, "compressible");
        return c->compressible_payload || !strcmp(value, "mixed");
    }
    /* Before "options" in a trace: the options are the target kind's. */
    if (!strcmp(key, "target") || !strcmp(key, "reader")) {
        char *slot = key[0] == 't' ? c->target : c->reader;
        if (!*value || strlen(value) >= sizeof(c->target))
            return false;
        strcpy(slot, value);
        return true;
    }
    if (!strcmp(key, "cache")) {
        unsigned long long v = strtoull(value, &end, 10);
        c->cache_bytes = (size_t)v;
        return *value && !*end;
    }
    if (!strcmp(key, "fill")) {
        c->fill = strtoull(value, &end, 10);
        return *value && !*end;
    }
    return false;
}

/*
 * Why an operation cannot be replayed on a disk that is at most `max_size` bytes (the
 * largest the trace makes it), or NULL when it can.
 */
static const char *op_misfit(const struct op *op, uint64_t max_size)
{
    if (!op->n)
        return "operation number 0 (they count from 1)";
    if (op->kind == OP_RESIZE)
        return op->len && op->len % 512 == 0 ? NULL : "a size that is not a positive "
               "multiple of 512";
    if (!has_range(op->kind))
        return NULL;
    if (!op->len)
        return "an empty range";
    if (op->len > SOAK_MAX_IO)
        return "longer than the soak's 16 MiB limit for one operation";
    if (op->off >= max_size || op->len > max_size - op->off)
        return "outside the disk";
    return NULL;
}

struct trace_reader {
    const char *path;
    FILE *f;
    char *line;
    size_t cap, lineno;
    size_t nul_line;
    char *errbuf;
    size_t errlen;
};

static int reader_error(struct trace_reader *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int reader_error(struct trace_reader *t, const char *fmt, ...)
{
    int n = snprintf(t->errbuf, t->errlen, "%s: line %zu: ", t->path, t->lineno);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < t->errlen)
        vsnprintf(t->errbuf + n, t->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/*
 * The next line, without its newline; NULL at the end of the file or at the first NUL
 * byte (the unwritten tail of a trace whose writer was killed).
 */
static const char *next_line(struct trace_reader *t)
{
    if (t->nul_line)
        return NULL;
    ssize_t len = getline(&t->line, &t->cap, t->f);
    if (len < 0)
        return NULL;
    t->lineno++;
    if (memchr(t->line, '\0', (size_t)len)) {
        t->nul_line = t->lineno;
        return NULL;
    }
    if (len && t->line[len - 1] == '\n')
        t->line[len - 1] = '\0';
    return t->line;
}

static int read_trace(struct trace_reader *t, struct soak_config *c, struct op **ops,
                      size_t *n)
{
    size_t cap = 0, ops_line = 0;
    uint64_t max_size = 0;
    for (const char *line; (line = next_line(t));) {
        if (!line[0] || line[0] == '#')
            continue;
        if (!ops_line) {
            if (!strcmp(line, "ops")) {
                ops_line = t->lineno;
                max_size = c->size;
                continue;
            }
            char key[32];
            const char *space = strchr(line, ' ');
            size_t key_len = space ? (size_t)(space - line) : sizeof(key);
            if (key_len < sizeof(key)) {
                memcpy(key, line, key_len);
                key[key_len] = '\0';
            }
            if (key_len >= sizeof(key) || !parse_config_line(c, key, space + 1))
                return reader_error(t, "not a valid \"key value\" setting: \"%.60s\"", line);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            struct op *grown = realloc(*ops, cap * sizeof(**ops));
            if (!grown)
                return reader_error(t, "out of memory");
            *ops = grown;
        }
        struct op *op = &(*ops)[*n];
        if (!op_parse(line, op))
            return reader_error(t, "not an operation: \"%.60s\"", line);
        const char *misfit = op_misfit(op, max_size);
        if (misfit)
            return reader_error(t, "op %" PRIu32 " (%.60s): %s (the disk reaches at most %"
                                PRIu64 " bytes)", op->n, line, misfit, max_size);
        if (op->kind == OP_RESIZE && op->len > max_size)
            max_size = op->len;
        (*n)++;
    }
    if (ferror(t->f))
        return reader_error(t, "read error: %s", strerror(errno));
    if (!ops_line) {
        snprintf(t->errbuf, t->errlen, "%s: no \"ops\" line: not a qvet soak trace", t->path);
        return -EINVAL;
    }
    if (!*n) {
        t->lineno = ops_line;
        return reader_error(t, "no operations after the \"ops\" line%s",
                            t->nul_line ? " (only NUL bytes: its writer was killed)" : "");
    }
    return 0;
}

int soak_trace_load(const char *path, struct soak_config *c, struct op **ops, size_t *n,
                    size_t *nul_line, char *errbuf, size_t errlen)
{
    struct trace_reader t = { .path = path, .errbuf = errbuf, .errlen = errlen };
    soak_config_defaults(c);
    *ops = NULL;
    *n = 0;
    t.f = fopen(path, "r");
    if (!t.f) {
        int ret = -errno;
        snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
        return ret;
    }
    int ret = read_trace(&t, c, ops, n);
    fclose(t.f);
    free(t.line);
    if (nul_line)
        *nul_line = t.nul_line;
    if (ret) {
        free(*ops);
        *ops = NULL;
        *n = 0;
    }
    return ret;
}

int soak_trace_cut_at_nul(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[65536];
    off_t at = 0;
    int ret = 0;
    for (ssize_t got; (got = pread(fd, buf, sizeof(buf), at)) != 0; at += got) {
        if (got < 0) {
            ret = -errno;
            break;
        }
        const char *nul = memchr(buf, '\0', (size_t)got);
        if (nul) {
            if (ftruncate(fd, at + (nul - buf)))
                ret = -errno;
            break;
        }
    }
    close(fd);
    return ret;
}
