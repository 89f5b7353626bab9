/* SPDX-License-Identifier: BSD-2-Clause */
/* The qvet command: one file per subcommand, shared helpers here. */
#ifndef QVET_CLI_H
#define QVET_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qcow2.h"

/* Every subcommand: parses its own options, returns the process exit status. */
int cmd_info(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_io(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_soak(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_minimize(int argc, char **argv);


/* Prints "qvet: <file>: <message>" (one line) and returns 1. */
int cli_fail(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints an engine error as one line and returns 1. */
int cli_fail_engine(const struct qcow2_error *err);

/* Prints the subcommand's usage error as one line and returns 1. */
int cli_usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Opens IMAGE, where "IMAGE@SNAPSHOT" names a snapshot when no file IMAGE@SNAPSHOT
 * exists; `snapshot` (from -s) wins over the @ form. Prints the error itself.
 */
int cli_open_image(const char *arg, const char *snapshot, struct qcow2_image **img);

/* The same with open options (their snapshot, if any, wins over the @ form). */
int cli_open_image_with(const char *arg, const struct qcow2_open_options *opts,
                        struct qcow2_image **img);

/*
 * For qcow2_open_options.bitmaps_invalidated: prints the one warning line
 * "qvet: FILE: warning: persistent bitmaps b1, b2 will be invalidated (...)" on stderr.
 * Every command that opens an image writable sets it.
 */
void cli_warn_bitmaps_invalidated(void *ctx, const char *file, const char *const *names,
                                  uint32_t count);

enum output_format { OUTPUT_HUMAN, OUTPUT_JSON };

/* Parses the value of --output; returns false when it is neither human nor json. */
bool cli_parse_output(const char *value, enum output_format *out);

/*
 * Readies getopt for a new argument list, silently (errors are reported as one line by
 * the caller). glibc needs optind = 0, not 1, to forget the state of a previous list:
 * `qvet io` parses one per command, and `snapshot -l` hands over to `info`.
 */
void cli_getopt_reset(void);

/*
 * The arguments of `info` and `map`: [--output=human|json] IMAGE, and --backing-chain
 * where `backing_chain` is not NULL. Returns 1 on a usage error.
 */
int cli_parse_output_and_image(const char *command, int argc, char **argv,
                               enum output_format *fmt, bool *backing_chain,
                               const char **image);

/* `qvet help CMD` texts of the commands that define one. */
extern const char cmd_info_help[];
extern const char cmd_check_help[];

/* Writes s as a JSON string literal, escaped. */
void json_put_string(FILE *f, const char *s);

#endif
