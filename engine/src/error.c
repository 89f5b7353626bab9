/* SPDX-License-Identifier: BSD-2-Clause */
#include "error.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void copy_bounded(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

int err_vset(struct qcow2_error *err, int code, const char *file, const char *structure,
             uint64_t offset, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    err->offset = offset;
    copy_bounded(err->structure, sizeof(err->structure), structure);
    copy_bounded(err->file, sizeof(err->file), file);

    char text[768];
    vsnprintf(text, sizeof(text), fmt, ap);
    if (offset == QCOW2_NO_OFFSET)
        snprintf(err->message, sizeof(err->message), "%s: %s", structure, text);
    else
        snprintf(err->message, sizeof(err->message), "%s at offset %" PRIu64 ": %s",
                 structure, offset, text);
    return code;
}

int err_set(struct qcow2_error *err, int code, const char *file, const char *structure,
            uint64_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = err_vset(err, code, file, structure, offset, fmt, ap);
    va_end(ap);
    return ret;
}
