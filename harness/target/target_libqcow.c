/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libqcow (Joachim Metz's libqcow, Debian's libqcow-dev) as a reader: a second, read-only
 * qcow2 implementation the soak holds to the oracle at every cross-check. libqcow does
 * not open backing files itself: a qcow2 backing chain is opened here, file by file, and
 * given to it with libqcow_file_set_parent_file; a raw backing file it cannot take, nor
 * (it hangs) a backing file shorter than the image.
 */
#include <errno.h>
#include <libqcow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "target.h"

#define CHAIN_MAX 16

struct libqcow_target {
    struct target base;
    libqcow_file_t *files[CHAIN_MAX];   /* [0] the image, then its backing files */
    int n_files;
    uint64_t size;
};

static struct libqcow_target *lt(struct target *t)
{
    return (struct libqcow_target *)t;
}

/* libqcow's error into buf (one line), and frees it. */
static void describe(libqcow_error_t **error, const char *what, char *buf, size_t cap)
{
    char text[1024] = "";
    if (*error)
        libqcow_error_sprint(*error, text, sizeof(text));
    libqcow_error_free(error);
    for (char *p = text; *p; p++)
        if (*p == '\n')
            *p = ' ';
    snprintf(buf, cap, "libqcow: %s: %s", what, text);
}

static int libqcow_facts(struct target *t, struct target_facts *f)
{
    *f = (struct target_facts){ .size = lt(t)->size };
    return 0;
}

static int libqcow_read(struct target *t, void *buf, size_t len, uint64_t off)
{
    libqcow_error_t *error = NULL;
    ssize_t n = libqcow_file_read_buffer_at_offset(lt(t)->files[0], buf, len, (off64_t)off,
                                                   &error);
    if (n == (ssize_t)len)
        return 0;
    if (n >= 0) {
        libqcow_error_free(&error);
        snprintf(t->message, sizeof(t->message), "libqcow: read of %zu bytes at %llu "
                 "returned %zd", len, (unsigned long long)off, n);
    } else {
        describe(&error, "read", t->message, sizeof(t->message));
    }
    return -EIO;
}

static void libqcow_close(struct target *t)
{
    struct libqcow_target *l = lt(t);
    for (int i = 0; i < l->n_files; i++) {
        libqcow_file_close(l->files[i], NULL);
        libqcow_file_free(&l->files[i], NULL);
    }
    free(l);
}

static const struct target_ops libqcow_ops = {
    .name = "libqcow",
    .facts = libqcow_facts,
    .read = libqcow_read,
    .close = libqcow_close,
};

static bool is_qcow2(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[4] = "";
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "QFI\xfb", 4);
    if (f)
        fclose(f);
    return yes;
}

/* Opens `path` as files[n_files]; *backing gets its backing file's path ("" for none). */
static int open_one(struct libqcow_target *l, const char *path, char *backing, size_t cap,
                    char *errbuf, size_t errlen)
{
    libqcow_error_t *error = NULL;
    libqcow_file_t **f = &l->files[l->n_files];
    if (libqcow_file_initialize(f, &error) != 1) {
        describe(&error, "initialize", errbuf, errlen);
        return -ENOMEM;
    }
    l->n_files++;
    if (libqcow_file_open(*f, path, LIBQCOW_OPEN_READ, &error) != 1) {
        char what[1100];
        snprintf(what, sizeof(what), "opening %.1000s", path);
        describe(&error, what, errbuf, errlen);
        libqcow_file_free(f, NULL);
        l->n_files--;
        return -EIO;
    }
    size_t name_size = 0;
    uint8_t name[1024];
    backing[0] = '\0';
    if (libqcow_file_get_utf8_backing_filename_size(*f, &name_size, &error) == 1 &&
        name_size > 1 && name_size <= sizeof(name) &&
        libqcow_file_get_utf8_backing_filename(*f, name, sizeof(name), &error) == 1) {
        const char *slash = strrchr(path, '/');
        if (name[0] == '/' || !slash)
            snprintf(backing, cap, "%s", (char *)name);
        else
            snprintf(backing, cap, "%.*s/%s", (int)(slash - path), path, (char *)name);
    }
    libqcow_error_free(&error);
    return 0;
}

/* The factory never asks a reader to create (reads_only), so `create` is always false. */
static int libqcow_start(const char *arg, bool create, const struct target_params *p,
                        struct target **out, char *errbuf, size_t errlen)
{
    (void)create;
    if (arg) {
        snprintf(errbuf, errlen, "reader libqcow takes no argument (got 'libqcow:%s')", arg);
        return -EINVAL;
    }
    struct libqcow_target *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(errbuf, errlen, "%s: out of memory", p->path);
        return -ENOMEM;
    }
    l->base.ops = &libqcow_ops;
    char path[2200], backing[2200];
    snprintf(path, sizeof(path), "%s", p->path);
    int ret = 0;
    while (!ret) {
        if ((ret = open_one(l, path, backing, sizeof(backing), errbuf, errlen)) || !backing[0])
            break;
        if (l->n_files == CHAIN_MAX || !is_qcow2(backing)) {
            snprintf(errbuf, errlen, "libqcow: %s: %s", backing, l->n_files == CHAIN_MAX ?
                     "backing chain too long" : "a backing file that is not qcow2, which "
                     "libqcow cannot take as a parent");
            ret = -ENOTSUP;
            break;
        }
        snprintf(path, sizeof(path), "%s", backing);
    }
    libqcow_error_t *error = NULL;
    for (int i = l->n_files - 1; !ret && i > 0; i--)
        if (libqcow_file_set_parent_file(l->files[i - 1], l->files[i], &error) != 1) {
            describe(&error, "set_parent_file", errbuf, errlen);
            ret = -EIO;
        }
    size64_t size = 0, parent_size;
    if (!ret && libqcow_file_get_media_size(l->files[0], &size, &error) != 1) {
        describe(&error, "media size", errbuf, errlen);
        ret = -EIO;
    }
    /* libqcow 20201213 never returns from a read past the end of a shorter parent. */
    for (int i = 1; !ret && i < l->n_files; i++)
        if (libqcow_file_get_media_size(l->files[i], &parent_size, &error) == 1 &&
            parent_size < size) {
            snprintf(errbuf, errlen, "libqcow: the backing file is shorter than the image "
                     "(%llu < %llu bytes): libqcow 20201213 hangs reading past its end "
                     "(docs/targets.md)", (unsigned long long)parent_size,
                     (unsigned long long)size);
            ret = -ENOTSUP;
        }
    libqcow_error_free(&error);
    if (ret) {
        libqcow_close(&l->base);
        return ret;
    }
    l->size = size;
    *out = &l->base;
    return 0;
}

const struct target_kind target_kind_libqcow = {
    .name = "libqcow",
    .reads_only = true,
    .start = libqcow_start,
};
