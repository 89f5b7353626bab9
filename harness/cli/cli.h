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
int cmd_triage(int argc, char **argv);
int cmd_crashtest(int argc, char **argv);
int cmd_faultinject(int argc, char **argv);

/*
 * Each subcommand's help for `qvet help CMD` and `qvet CMD --help`: the usage line, then
 * every option with its default. Each text lives in the subcommand's own file.
 */
extern const char cmd_info_help[], cmd_map_help[], cmd_cat_help[], cmd_check_help[],
    cmd_io_help[], cmd_create_help[], cmd_snapshot_help[], cmd_resize_help[], cmd_soak_help[],
    cmd_replay_help[], cmd_minimize_help[], cmd_triage_help[], cmd_crashtest_help[],
    cmd_faultinject_help[];

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;              /* one line, for the list `qvet help` prints */
    const char *help;
};

/* Every subcommand, in the order `qvet help` lists them. */
extern const struct cli_command cli_commands[];
extern const size_t cli_command_count;

/* What `qvet` does with its arguments (main only calls this); returns the exit status. */
int cli_main(int argc, char **argv);

/* Prints "qvet version X.Y.Z" (the project's one version, from CMake). */
void cli_print_version(void);

/*
 * Writes DIR/summary.json for a soak or replay run (soak_summary.c). A run over the
 * configuration matrix also lists the `n_configs` configurations it ran (else NULL, 0);
 * c and r are then those of its last configuration.
 */
struct soak_config;
struct soak_result;
int soak_summary_write(const char *command, const char *dir, const struct soak_config *c,
                       const struct soak_result *r, int exit_status, bool large_files_removed,
                       const char *const *configs, size_t n_configs);


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
 * The arguments of `info` and `map`: [-f qcow2] [-U] [--output=human|json] IMAGE, and
 * --backing-chain where `backing_chain` is not NULL. -U (--force-share) sets
 * *force_share. Returns 1 on a usage error.
 */
int cli_parse_output_and_image(const char *command, int argc, char **argv,
                               enum output_format *fmt, bool *backing_chain,
                               bool *force_share, const char **image);

/* `qvet help CMD` texts of the commands that define one. */
extern const char cmd_info_help[];
extern const char cmd_check_help[];

/*
 * The value of -f/--format: only qcow2 is accepted; anything else is refused with one
 * line naming the command. Returns 0 or 1 (the exit status, the error printed).
 */
int cli_parse_format(const char *command, const char *value);

/* ---- QEMU 7.2's number syntax (qemu_syntax.c) --------------------------------------- */

/*
 * Parses a size as qemu-img and qemu-io do: decimal or 0x hex, an optional fraction
 * ("1.5k"), an optional suffix B K M G T P E (either case). Returns 0, -EINVAL or -ERANGE
 * (past 2^64); *hex_with_suffix tells that QEMU would warn the form is deprecated.
 */
int qemu_parse_size(const char *text, uint64_t *out, bool *hex_with_suffix);

/* qemu-io's number: a size up to INT64_MAX, printing QEMU's deprecation warning as prog. */
int qemu_cvtnum(const char *prog, const char *text, uint64_t *out);

/* qemu-io's "Parsing error: ..." line (stdout) for what qemu_cvtnum returned. */
void qemu_print_cvtnum_error(int ret, const char *text);

/* A byte count as qemu-io shows it: "512 bytes", "1.500 KiB", "64 KiB", "inf EiB". */
void qemu_format_size(double value, char *buf, size_t cap);

/*
 * The commands of `qvet io`, for the test that holds their help to their options: entry
 * i's name, getopt string and help text; false past the last.
 */
bool io_command_help(size_t i, const char **name, const char **options, const char **help);

/* Writes s as a JSON string literal, escaped. */
void json_put_string(FILE *f, const char *s);

/*
 * One member of a JSON object being written line by line (after its first member): the
 * separator and key, then a string or a number value; json_put_key leaves the value to
 * the caller.
 */
void json_put_key(FILE *f, const char *key);
void json_put_member_string(FILE *f, const char *key, const char *value);
void json_put_member_u64(FILE *f, const char *key, uint64_t value);

#endif
