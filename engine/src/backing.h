/* SPDX-License-Identifier: BSD-2-Clause */
/* Backing file names: resolving the stored name and its format (opening is qcow2.c's). */
#ifndef QVET_BACKING_H
#define QVET_BACKING_H

#include <stdbool.h>

#include "qcow2.h"

/* True when `name` starts with "proto:" (QEMU protocol syntax, json: included). */
bool backing_name_has_protocol(const char *name);

/*
 * Resolves a backing name the way QEMU does: absolute names as they are, relative ones
 * against the directory of `image_path` (the image that stores the name). The result
 * is malloc'd.
 */
int backing_resolve(const char *image_path, const char *name, char **out);

/* Maps a backing-format name to a format, or returns -ENOTSUP. */
int backing_format_parse(const char *name, enum qcow2_format *format);

#endif
