/* SPDX-License-Identifier: BSD-2-Clause */
#include "backing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


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
