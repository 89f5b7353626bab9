/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Run directories: where one soak (or replay, or minimization) keeps its image, oracle,
 * trace and summary. qvet only ever works in a directory it made or found empty, marks it
 * with a lock file, and deletes nothing it did not write there.
 *
 * The lock is flock(2) on DIR/.qvet-soak.lock, which also holds the holder's pid for the
 * message a second run prints. The kernel drops the lock when its holder dies, so a lock
 * file left by a dead process never blocks anyone: the next run takes it over.
 */
#ifndef QVET_RUNDIR_H
#define QVET_RUNDIR_H

#include <stdbool.h>
#include <stddef.h>

#define RUNDIR_LOCK_NAME ".qvet-soak.lock"
#define RUNDIR_SUMMARY_NAME "summary.json"

struct rundir {
    char path[512];
    char root[512];                 /* of a numbered directory, else "" */
    int lock_fd;                    /* holds the flock; -1 when released */
};

/*
 * Claims `dir` for one run: creates it if missing, and locks it. Refuses a directory that
 * is not empty unless qvet made it; refuses one locked by a live run (-EBUSY, naming its
 * pid); refuses one holding the evidence of a run that failed or did not finish (-EEXIST).
 * A previous run that found no bug (passed, interrupted, environment failure) is cleared
 * first: its files, never anything else. On failure, errbuf holds a one-line reason.
 */
int rundir_claim(struct rundir *rd, const char *dir, char *errbuf, size_t errlen);

/*
 * Claims a new numbered directory ROOT/run-0001, run-0002, ... (creating ROOT) and points
 * the symlink ROOT/latest at it (unless ROOT/latest is something other than a symlink).
 */
int rundir_claim_numbered(struct rundir *rd, const char *root, char *errbuf, size_t errlen);

/* Deletes the large files of a run: the image, its backing files, the oracle's copies. */
void rundir_remove_large_files(const struct rundir *rd);

/*
 * Deletes everything qvet wrote in the directory, then the directory itself (kept if it
 * holds anything else), and releases it. A numbered directory also leaves its root's
 * `latest` link (if it pointed here) and the root itself when that is then empty.
 */
void rundir_remove(struct rundir *rd);

/* Drops the lock (the lock file stays: it marks the directory as qvet's). */
void rundir_release(struct rundir *rd);

#endif
