/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The target seam: the only way the soak driver reaches the implementation under test.
 * The qvet engine is the first target; QEMU (through qemu-nbd or qemu-io) or another
 * engine plugs in by filling the same table, without the driver or the oracle changing.
 *
 * Every operation returns 0 or a negative errno and leaves a one-line reason in
 * t->message. TARGET_REFUSED (a positive code) means the target declined the operation
 * for a documented reason (a compressed write onto an allocated cluster, a shrink over
 * allocated clusters): the guest-visible state must then be unchanged.
 */
#ifndef QVET_TARGET_H
#define QVET_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oracle.h"

#define TARGET_REFUSED 1
#define TARGET_ID_MAX 32

struct target;

/* What the driver must know about the image under test. */
struct target_facts {
    uint64_t size;                  /* current virtual size */
    struct oracle_facts oracle;     /* what the oracle's rules need to predict the guest */
    uint32_t subcluster_size;       /* = cluster size without extended L2 */
    uint32_t l2_coverage_clusters;  /* clusters one L2 table maps */
};

struct target_check {
    uint64_t corruptions, leaks, check_errors;
};

struct target_ops {
    const char *name;
    int (*facts)(struct target *t, struct target_facts *f);
    int (*read)(struct target *t, void *buf, size_t len, uint64_t off);
    int (*write)(struct target *t, const void *buf, size_t len, uint64_t off);
    int (*zero)(struct target *t, uint64_t len, uint64_t off, bool unmap);
    int (*discard)(struct target *t, uint64_t len, uint64_t off);
    int (*write_compressed)(struct target *t, const void *buf, size_t len, uint64_t off);
    int (*flush)(struct target *t);
    /* Creates a snapshot and returns the id it got (NUL-terminated, < TARGET_ID_MAX). */
    int (*snapshot_create)(struct target *t, const char *name, char *id);
    int (*snapshot_apply)(struct target *t, const char *id);
    int (*snapshot_delete)(struct target *t, const char *id);
    int (*snapshot_read)(struct target *t, const char *id, void *buf, size_t len, uint64_t off);
    int (*resize)(struct target *t, uint64_t size);
    /* Closes and opens the image again, as after a clean shutdown. */
    int (*reopen)(struct target *t);
    /* The implementation's own consistency check; t->message: its first findings. */
    int (*check)(struct target *t, struct target_check *result);
    void (*close)(struct target *t);
};

struct target {
    const struct target_ops *ops;
    char message[2200];             /* room for an engine error's file and message */
};

/*
 * A hook between the qvet engine and its host file: given the file backend, returns the
 * backend the engine should use (the same, or a wrapper that records, delays or damages
 * I/O). Called at every open and reopen. NULL means no hook.
 */
struct qcow2_backend;
typedef struct qcow2_backend *(*target_backend_hook)(struct qcow2_backend *file, void *ctx);

/*
 * A wrapper around the whole target, for the driver's own tests (a target that lies about
 * an operation): given the opened target, returns the one the driver should use, which
 * owns `inner` from then on (its close closes inner). NULL from the hook: out of memory.
 */
typedef struct target *(*target_wrap_hook)(struct target *inner, void *ctx);

struct target_qvet_options {
    target_backend_hook hook;
    void *hook_ctx;
    target_wrap_hook wrap;          /* NULL means no wrapper */
    void *wrap_ctx;
};

/* The qvet engine on the image at `path` (which must exist). */
int target_qvet_open(const char *path, const struct target_qvet_options *opts,
                     struct target **out, char *errbuf, size_t errlen);

#endif
