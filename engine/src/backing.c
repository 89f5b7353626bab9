/* SPDX-License-Identifier: BSD-2-Clause */
#include "backing.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

bool backing_name_has_protocol(const char *name)
{
    /* QEMU's rule: a ':' before any '/' makes the name "protocol:rest". */
    size_t n = strcspn(name, ":/");
    return name[n] == ':';
}

int backing_resolve(const char *image_path, const char *name, char **out)
{
    const char *slash = strrchr(image_path, '/');
    size_t dir_len = (name[0] == '/' || !slash) ? 0 : (size_t)(slash - image_path) + 1;
    size_t name_len = strlen(name);
    char *p = malloc(dir_len + name_len + 1);
    if (!p)
        return -ENOMEM;
    memcpy(p, image_path, dir_len);
    memcpy(p + dir_len, name, name_len + 1);
    *out = p;
    return 0;
}

int backing_format_parse(const char *name, enum qcow2_format *format)
{
    if (!strcmp(name, "qcow2"))
        *format = QCOW2_FORMAT_QCOW2;
    else if (!strcmp(name, "raw"))
        *format = QCOW2_FORMAT_RAW;
    else
        return -ENOTSUP;
    return 0;
}

/* True when `real` names an image already above img in the chain (or img itself). */
static bool chain_contains(const struct qcow2_image *img, const char *real)
{
    for (; img; img = img->parent)
        if (img->real_path && !strcmp(img->real_path, real))
            return true;
    return false;
}

int backing_open(struct qcow2_image *img, const struct qcow2_open_options *opts,
                 unsigned depth, struct qcow2_error *err)
{
    const struct header *h = &img->hdr;
    const char *name = h->backing_name;
    if (backing_name_has_protocol(name))
        return image_error(img, err, -ENOTSUP, "backing file name", h->backing_file_offset,
                           "\"%s\" uses a protocol prefix (or json:); only plain file names "
                           "are supported",
                           name);
    if (!h->has_backing_format)
        return image_error(img, err, -ENOTSUP, "backing file name", h->backing_file_offset,
                           "\"%s\" has no recorded format (backing format extension "
                           "0xE2792ACA); qvet does not probe formats",
                           name);
    enum qcow2_format format;
    if (backing_format_parse(h->backing_format, &format))
        return image_error(img, err, -ENOTSUP, "backing format extension", QCOW2_NO_OFFSET,
                           "format \"%s\" of backing file \"%s\" is not supported (qcow2 or "
                           "raw)",
                           h->backing_format, name);
    if (depth + 1 >= QCOW2_MAX_BACKING_DEPTH)
        return image_error(img, err, -ELOOP, "backing file name", h->backing_file_offset,
                           "backing chain deeper than %u images", QCOW2_MAX_BACKING_DEPTH);
    char *real = realpath(img->backing_path, NULL);
    if (real && chain_contains(img, real)) {
        free(real);
        return image_error(img, err, -ELOOP, "backing file name", h->backing_file_offset,
                           "backing chain loops: \"%s\" is already in the chain",
                           img->backing_path);
    }
    free(real);

    struct qcow2_backend *backend;
    struct qcow2_error open_err;
    /* Backing files are only read, and locked as QEMU locks them for a reader. */
    struct qcow2_fd_options fo = qcow2_fd_options_for(format, false, opts->force_share);
    fo.no_locks = opts->no_locks;
    int ret = opts->open_backing
                  ? opts->open_backing(opts->opener_ctx, img->backing_path, &backend, &open_err)
                  : qcow2_backend_fd_open_with(img->backing_path, &fo, &backend, &open_err);
    if (ret)
        return image_error(img, err, ret, "backing file name", h->backing_file_offset,
                           "cannot open backing file \"%s\": %s", img->backing_path,
                           open_err.message);
    struct qcow2_open_options child = *opts;
    child.format = format;
    child.snapshot = child.snapshot_id = child.snapshot_name = NULL;
    child.writable = false;
    return image_open(backend, img->backing_path, &child, img, depth + 1, &img->backing,
                      err);
}
