/* SPDX-License-Identifier: BSD-2-Clause */
#ifndef QVET_ERROR_H
#define QVET_ERROR_H

#include <stdarg.h>

#include "qcow2.h"

/*
 * Fills *err (which may be NULL) and returns `code` so that callers can write
 * `return err_set(...)`. The message becomes "<structure> at offset <o>: <text>", or
 * "<structure>: <text>" when offset is QCOW2_NO_OFFSET.
 */
int err_set(struct qcow2_error *err, int code, const char *file, const char *structure,
            uint64_t offset, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The same with a va_list, for the modules' own shorthands. */
int err_vset(struct qcow2_error *err, int code, const char *file, const char *structure,
             uint64_t offset, const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

#endif
