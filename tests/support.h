/* SPDX-License-Identifier: BSD-2-Clause */
/* Helpers shared by the Check suites: scratch directories, qemu-img, files. */
#ifndef QVET_TEST_SUPPORT_H
#define QVET_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* A fresh scratch directory for this process, removed at exit. */
const char *test_dir(void);

/* test_dir()/name, in a static rotating buffer (valid for the next 8 calls). */
const char *test_path(const char *name);

/* Runs a shell command (printf-style); returns its exit status, or -1. */
int test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file; the caller frees. Returns NULL on failure. */
uint8_t *test_read_file(const char *path, size_t *len);

int test_write_file(const char *path, const void *data, size_t len);

#endif
