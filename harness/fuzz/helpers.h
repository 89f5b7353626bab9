/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the fuzz targets that open images share, compiled once (helpers.c) into the helper
 * library every build of the targets links (replay, libFuzzer, AFL++, external). The
 * helpers bound the work an input can ask for, however it lies about sizes; they never
 * touch a file (backing files come from memory or are refused); and they hold the
 * invariants more than one target asserts: what a consistent image must stay after
 * writes, and what the oracle (oracle/, in memory) says the guest must read.
 */
#ifndef QVET_FUZZ_HELPERS_H
#define QVET_FUZZ_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "input.h"
#include "io_fault.h"
#include "oracle.h"
#include "qcow2.h"

/*
 * The name every fuzz image is opened under. Its directory does not exist, so the
 * engine's realpath() calls resolve nothing, and a relative backing name resolves into
 * that same missing directory.
 */
#define FUZZ_IMAGE_NAME "/nonexistent-qvet-fuzz/input.qcow2"

/* Bounds on the work one input may cause. */
#define FUZZ_MAP_CALLS 1024u            /* qcow2_map_status calls per walk */
#define FUZZ_READ_CALLS 1024u           /* qcow2_pread calls per walk */
#define FUZZ_READ_BYTES (2u << 20)      /* guest bytes read per walk */
#define FUZZ_READ_CHUNK (64u << 10)     /* bytes per qcow2_pread */
#define FUZZ_CACHE_BYTES (64u << 10)    /* metadata cache: small, so eviction is exercised */
#define FUZZ_WINDOW_MAX (512u << 10)    /* guest bytes an oracle window may cover */

/* A backing opener that refuses everything: no file is ever opened. */
int fuzz_refuse_backing(void *ctx, const char *path, struct qcow2_backend **out,
                        struct qcow2_error *err);

/*
 * A backing opener that serves an in-memory view of some bytes (the input itself) for the
 * first `uses` requests, then an empty 1 MiB image: a chain of bounded depth, read from
 * memory only.
 */
struct fuzz_backing_ctx {
    const uint8_t *data;
    size_t size;
    unsigned uses;
};
int fuzz_memory_backing(void *ctx, const char *path, struct qcow2_backend **out,
                        struct qcow2_error *err);

/*
 * Opens bytes as an image: read-only opens see the caller's bytes in place (they must
 * outlive the image), writable ones a fresh in-memory copy of at most max_len bytes.
 */
int fuzz_open_mem(const uint8_t *data, size_t size, size_t max_len,
                  const struct qcow2_open_options *opts, struct qcow2_image **img);

/*
 * Opens the image in `inner` through an I/O fault shim (harness/testlib), so that `inner`
 * stays the caller's (its bytes outlive qcow2_close). `fault` may be NULL: no fault.
 */
int fuzz_open_over(struct qcow2_backend *inner, const struct qcow2_open_options *opts,
                   struct io_fault *fault, struct qcow2_image **img);

/*
 * Opens `mem` writable as fuzz_open_over does; when that is refused, without the backing
 * file, and when that is refused too, after repairing as `qemu-img check -r` would (all,
 * or leaks only). *repaired says whether it came to that. Returns 0 or the last error.
 */
int fuzz_open_writable(struct qcow2_backend *mem, struct qcow2_open_options *opts,
                       bool repair_all, struct io_fault *fault, struct qcow2_image **img,
                       bool *repaired);

/* A new image of `size` bytes, made as `qvet create -o options` would, in memory. */
struct qcow2_backend *fuzz_create_mem(const char *options, uint64_t size, size_t max_len);

/* A malloc'd copy of a memory backend's bytes (the caller frees it). */
uint8_t *fuzz_bytes_of(struct qcow2_backend *mem, size_t *len);

/* Touches every string and number qcow2_get_info returns, as a consumer would. */
size_t fuzz_touch_info(const struct qcow2_image *img);

/* Every snapshot's facts; returns how many were listed. */
uint32_t fuzz_list_snapshots(const struct qcow2_image *img, size_t *sum);

/* Lists every persistent bitmap, as `qvet info` does; returns how many. */
uint32_t fuzz_list_bitmaps(const struct qcow2_image *img, size_t *sum);

/*
 * Walks qcow2_map_status from guest offset 0 and reads every run it reports (data,
 * compressed, zero and backing alike), within the FUZZ_* budgets. Returns false once the
 * engine reported an error.
 */
bool fuzz_walk_and_read(struct qcow2_image *img, uint32_t read_budget);

/*
 * Opens the bytes of `img` read-only once more for each of its first snapshots, up to
 * `max` of them (the last listed among them: a bad entry tends to sit at the end), and
 * walks each. Their backing files: a fresh copy of `backing` for each open, or refused.
 */
void fuzz_read_snapshots(const struct qcow2_image *img, const uint8_t *data, size_t size,
                         const struct fuzz_backing_ctx *backing, bool no_backing,
                         unsigned max);

/* Runs qcow2_check and makes sure its result is self-consistent. */
int fuzz_check(struct qcow2_image *img, enum qcow2_repair repair,
               struct qcow2_check_result *res);

/*
 * Whether the image in these bytes is consistent: the check runs and finds neither
 * corruption nor check errors, and it is not marked dirty or corrupt (then its refcounts
 * may rightly be stale). With `leaks`, also how many clusters leak, counting those past
 * the end of the file that writes may grow it over, by up to `headroom` bytes
 * (UINT64_MAX: unknown, or excused by bitmaps a writable open makes stale).
 */
bool fuzz_consistent(const uint8_t *data, size_t size, uint64_t headroom, uint64_t *leaks);

/*
 * After writes (`after` names them in messages): the image in `bytes` opened for check,
 * backing ignored. It must open when `must_open`; when `stays_consistent` (it was
 * consistent before), it must check without corruption unless marked dirty. Returns the
 * check's result, or the open's error; *res and *dirty as found.
 */
int fuzz_recheck(const uint8_t *bytes, size_t len, bool stays_consistent, bool must_open,
                 const char *after, struct qcow2_check_result *res, bool *dirty);

/*
 * An oracle for the disk of `img`: `size` bytes of which the first `known` read as
 * `bytes`, with the facts the rules need taken from the image.
 */
struct oracle *fuzz_oracle(const struct qcow2_image *img, uint64_t size, const void *bytes,
                           uint64_t known);

/*
 * An oracle that starts as the disk reads now, up to `window` bytes (FUZZ_WINDOW_MAX at
 * most): it predicts what later operations do. NULL when those bytes do not read.
 */
struct oracle *fuzz_oracle_now(struct qcow2_image *img, uint64_t window);

/*
 * The disk of `img` against the oracle's state `state` (NULL: its active state): the
 * same size, and its first bytes, as many as the oracle knows (up to `window`), equal.
 * `when` names the moment in the message.
 */
void fuzz_expect_oracle(struct qcow2_image *img, struct oracle *o, const char *state,
                        uint64_t window, const char *when);

/* A small deterministic byte pattern for writes. */
void fuzz_fill(uint8_t *buf, size_t len, uint32_t seed);

/*
 * Reads at the edges: one that straddles clusters at an odd offset (`where`/256 of a
 * cluster plus `shift` bytes, wrapped to the disk), the last byte, one past the end
 * (which must fail) and an empty one at the end (which must succeed).
 */
void fuzz_read_edges(struct qcow2_image *img, uint8_t where, uint8_t shift);

/*
 * Operation `i` of a mix decoded from 4 bytes of `in` (kind, value, flags): a write, a
 * zero write (with or without unmap), a discard, a compressed cluster write or a resize,
 * on the first *window guest bytes (at most FUZZ_WINDOW_MAX; a shrink below it shrinks
 * the window). `o`, unless NULL, is told the same operation and must accept it; a resize
 * must leave the size it reports (the old one after a failure, or the new one after an
 * I/O error that came once the header had it). Returns the engine's error, or 0 (also for
 * a refused compressed write or resize, which change nothing).
 */
int fuzz_window_op(struct qcow2_image *img, struct fuzz_input *in, unsigned i,
                   uint64_t *window, struct oracle *o);

/*
 * Opens image bytes read-only with `opts` at `snapshot` (NULL: the active state),
 * compares them with the oracle's state of that name (unless `o` is NULL) over up to
 * `window` bytes, and walks them. Returns the open's error, or 0.
 */
int fuzz_expect_state(const uint8_t *bytes, size_t len, const struct qcow2_open_options *opts,
                      const char *snapshot, struct oracle *o, uint64_t window, const char *when);

#endif
