/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The images fuzz_snapshot lays its inputs over, and the snapshot operations it runs on
 * them, each with the oracle's prediction (snapshots.c).
 */
#ifndef QVET_FUZZ_SNAPSHOTS_H
#define QVET_FUZZ_SNAPSHOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "helpers.h"

/* How many base layouts there are (an input's first byte picks one with its bits 0-1). */
#define FUZZ_SNAPSHOT_LAYOUTS 4u
/* Guest bytes the snapshot oracle tracks. */
#define FUZZ_SNAPSHOT_WINDOW (256u << 10)

/*
 * Builds the base images once (each with its own valid snapshot table, dates fixed so
 * that an input means the same from run to run). With QVET_FUZZ_SNAPSHOT_SEEDS=<dir>
 * the first call also writes one seed per layout and operation mix into <dir>.
 */
void fuzz_snapshot_bases_init(void);

/*
 * The base image of `layout` with the rest of `in` over its snapshot table: its next byte
 * becomes nb_snapshots, the bytes after it are written from the table's offset on. One
 * buffer is reused for every input; NULL when it cannot grow. QVET_FUZZ_DUMP=<file>
 * saves the image, for triage.
 */
const uint8_t *fuzz_snapshot_patched_image(struct fuzz_input *in, unsigned layout,
                                           size_t *len);

/*
 * Applies one snapshot, chosen by `ops`: the active state then reads as the snapshot's
 * view of `image` did (when the key names one snapshot only and was viewed; not on a
 * `repaired` image), and diverges from it by a write. Returns what the active state
 * must read from then on (or NULL); a refused operation clears *all_ok.
 */
struct oracle *fuzz_snapshot_apply_one(struct qcow2_image *img, const uint8_t *image,
                                       size_t len, uint8_t ops, bool repaired, bool *all_ok);

/* Deletes one snapshot chosen by `ops` (possibly the one just applied). */
void fuzz_snapshot_delete_one(struct qcow2_image *img, uint8_t ops, bool *all_ok);

/*
 * Creates "fz", which holds the active state (the oracle takes it too, unless NULL);
 * returns its id (malloc'd) when it can be told apart from every other snapshot.
 */
char *fuzz_snapshot_create_one(struct qcow2_image *img, struct oracle *model, bool *all_ok);

#endif
