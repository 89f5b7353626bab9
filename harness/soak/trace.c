/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The trace: a text file a person can read and edit. A header of "key value" lines
 * (the run's configuration), the line "ops", then one operation a line:
 *   17 write 40960 4096        17 read 0 65536      17 zero 100 7000
 *   17 zero-unmap 0 65536      17 discard 0 131072  17 write-compressed 131072 65536
 *   17 flush                   17 reopen            17 resize 134217728
 *   17 snapshot-create s17     17 snapshot-apply 3  17 snapshot-delete 3
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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
};

/* Default weights: mostly I/O, with the metadata-heavy operations a steady minority. */
static const unsigned default_weights[OP_KINDS] = {
    [OP_READ] = 300, [OP_WRITE] = 300, [OP_ZERO] = 60, [OP_ZERO_UNMAP] = 40,
    [OP_DISCARD] = 80, [OP_WRITE_COMPRESSED] = 50, [OP_FLUSH] = 30,
    [OP_SNAPSHOT_CREATE] = 12, [OP_SNAPSHOT_APPLY] = 8, [OP_SNAPSHOT_DELETE] = 10,
    [OP_REOPEN] = 6, [OP_RESIZE] = 4,
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

void op_format(const struct op *op, char *buf, size_t cap)
{
    const char *name = op_kind_name(op->kind);
    if (has_range(op->kind))
        snprintf(buf, cap, "%" PRIu32 " %s %" PRIu64 " %" PRIu64, op->n, name, op->off, op->len);
    else if (has_snapshot(op->kind))
        snprintf(buf, cap, "%" PRIu32 " %s %s", op->n, name, op->snapshot);
    else if (op->kind == OP_RESIZE)
        snprintf(buf, cap, "%" PRIu32 " %s %" PRIu64, op->n, name, op->len);
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
    } else {
        if (sscanf(line, "%*u %*s %n", &extra) != 0 || line[extra])
            return false;
    }
    return true;
}

void soak_config_defaults(struct soak_config *c)
{
    memset(c, 0, sizeof(*c));
    c->seed = 1;
    c->seconds = 60;
    c->size = 64u << 20;
    c->check_every = 2000;
    c->qemu_checks = true;
    memcpy(c->weights, default_weights, sizeof(default_weights));
    snprintf(c->dir, sizeof(c->dir), "soak-run");
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
        return !*end;
    }
    if (!strcmp(key, "size")) {
        c->size = strtoull(value, &end, 10);
        return !*end && c->size > 0;
    }
    if (!strcmp(key, "check-every")) {
        c->check_every = strtoull(value, &end, 10);
        return !*end;
    }
    if (!strcmp(key, "options")) {
        if (strlen(value) >= sizeof(c->options))
            return false;
        strcpy(c->options, strcmp(value, "-") ? value : "");
        return true;
    }
    if (!strcmp(key, "backing"))
        return soak_backing_parse(value, &c->backing);
    return false;
}

int soak_trace_load(const char *path, struct soak_config *c, struct op **ops, size_t *n,
                    char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -errno;
    }
    soak_config_defaults(c);
    *ops = NULL;
    *n = 0;
    size_t cap = 0, lineno = 0;
    bool in_ops = false;
    char line[1024];
    int ret = 0;
    while (!ret && fgets(line, sizeof(line), f)) {
        lineno++;
        if (!line[0])
            break;                  /* the zero-filled tail of a trace still being written */
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        else if (!feof(f)) {
            snprintf(errbuf, errlen, "%s: line %zu: longer than %zu bytes", path, lineno,
                     sizeof(line) - 2);
            ret = -EINVAL;
            break;
        }
        if (!len || line[0] == '#')
            continue;
        if (!in_ops) {
            if (!strcmp(line, "ops")) {
                in_ops = true;
                continue;
            }
            char *space = strchr(line, ' ');
            if (!space || !parse_config_line(c, (*space = '\0', line), space + 1)) {
                snprintf(errbuf, errlen, "%s: line %zu: not a known \"key value\" setting",
                         path, lineno);
                ret = -EINVAL;
            }
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            struct op *grown = realloc(*ops, cap * sizeof(**ops));
            if (!grown) {
                snprintf(errbuf, errlen, "%s: out of memory", path);
                ret = -ENOMEM;
                break;
            }
            *ops = grown;
        }
        if (!op_parse(line, &(*ops)[*n])) {
            snprintf(errbuf, errlen, "%s: line %zu: not an operation: \"%.60s\"", path, lineno,
                     line);
            ret = -EINVAL;
            break;
        }
        (*n)++;
    }
    fclose(f);
    if (!ret && !in_ops) {
        snprintf(errbuf, errlen, "%s: no \"ops\" line: not a qvet soak trace", path);
        ret = -EINVAL;
    }
    if (ret) {
        free(*ops);
        *ops = NULL;
        *n = 0;
    }
    return ret;
}
