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

/* The --help texts of soak, replay and minimize (cmd_soak.c). */
extern const char soak_help[], replay_help[], minimize_help[];

/* Writes DIR/summary.json for a soak or replay run (soak_summary.c). */
struct soak_config;
struct soak_result;
int soak_summary_write(const char *command, const char *dir, const struct soak_config *c,
                       const struct soak_result *r, int exit_status, bool large_files_removed);


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

/*
 * The same, read-only; with force_share the image may be open for writing elsewhere
 * (qemu-img -U). A snapshot is selected as qemu-img convert -l selects it (see
 * docs/snapshots.md): "snapshot.id=ID,snapshot.name=NAME", or a key that is tried as an
 * id first, then as a name.
 */
int cli_open_image_shared(const char *arg, const char *snapshot, bool force_share,
                          struct qcow2_image **img);

/* QEMU's human size: three significant digits and a binary unit ("1.5 MiB", "0 B"). */
void cli_format_size(char *buf, size_t cap, uint64_t bytes);

/* The snapshot table as qemu-img prints it ("Snapshot list:" ...); nothing if empty. */
void cli_print_snapshot_table(struct qcow2_image *img);

/* `qvet help CMD` texts: every option of the command and its default. */
extern const char cmd_cat_help[];
extern const char cmd_create_help[];
extern const char cmd_snapshot_help[];

enum output_format { OUTPUT_HUMAN, OUTPUT_JSON };

/* Parses the value of --output; returns false when it is neither human nor json. */
bool cli_parse_output(const char *value, enum output_format *out);

/*
 * Readies getopt for a new argument list, silently (errors are reported as one line by
 * the caller). glibc needs optind = 0, not 1, to forget the state of a previous list:
 * `qvet io` parses one per command, and `snapshot -l` hands over to `info`.
 */
void cli_getopt_reset(void);

/* The arguments of `info` and `map`: [--output=human|json] IMAGE. Returns 1 on a usage error. */
int cli_parse_output_and_image(const char *command, int argc, char **argv,
                               enum output_format *fmt, const char **image);

/* Writes s as a JSON string literal, escaped. */
void json_put_string(FILE *f, const char *s);

#endif
