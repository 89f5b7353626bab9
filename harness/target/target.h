/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The target seam: the only way the soak driver, replay, minimization and the fuzz_ops
 * target reach the implementation under test. A target is made by the factory below from
 * a spec ("qvet", "qemu[:ARGS]", "nbd:URI", "exec:COMMAND", and the read-only "libqcow")
 * and says what it can do (TARGET_CAN_*): an operation outside that set is never
 * generated, and one a trace holds is skipped, so a target that cannot resize or snapshot
 * still runs the rest. docs/targets.md describes each kind.
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

/* What a crash does to the writes since the last flush. */
enum target_crash {
    TARGET_CRASH_DROP,              /* a power cut: none of them lands */
    TARGET_CRASH_TEAR,              /* each lands whole, not at all or in part (from a seed) */
    TARGET_CRASH_KEEP,              /* a killed process: all land, but no clean close */
};

/* A snapshot as the image's table records it. */
struct target_snapshot {
    char id[TARGET_ID_MAX];
    char name[TARGET_ID_MAX * 4];
    uint64_t disk_size;
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
    /*
     * Optional (NULL: not needed): lets other programs open the image file (flushed, and
     * closed by whatever holds its locks, as qemu-nbd does), and takes it back. Between
     * the two only check and close are called.
     */
    int (*detach)(struct target *t);
    int (*attach)(struct target *t);
    /*
     * A crash, then an open of what it left (see enum target_crash). `after` is the check
     * of the reopened image; its leaks (expected after a crash) are then repaired, with
     * any refcount left past the end of the file (which no check counts until the file
     * grows over it), so that later checks start clean.
     */
    int (*crash_reopen)(struct target *t, enum target_crash how, uint64_t seed,
                        struct target_check *after);
    /*
     * Optional (NULL: cuts only between requests): the power is to fail during the next
     * requests, at the `host_flushes`-th host flush they make (0: the first), between the
     * implementation's own ordering points: the writes since the host flush before land
     * as TARGET_CRASH_TEAR says (from `seed`) and every later I/O fails. crash_reopen
     * (TARGET_CRASH_TEAR, the same seed) then opens what the cut left, cutting the power
     * itself when the requests made fewer host flushes.
     */
    int (*crash_arm)(struct target *t, uint64_t seed, unsigned host_flushes);
    /* The snapshot table: up to `cap` entries into `out`, their count into *n. */
    int (*snapshot_list)(struct target *t, struct target_snapshot *out, unsigned cap,
                         unsigned *n);
    void (*close)(struct target *t);
};

/* What a target can do besides reading (struct target.caps). */
#define TARGET_CAN_WRITE 0x001u
#define TARGET_CAN_DISCARD 0x002u
#define TARGET_CAN_WRITE_COMPRESSED 0x004u
#define TARGET_CAN_FLUSH 0x008u
#define TARGET_CAN_SNAPSHOT 0x010u         /* create, apply and delete */
#define TARGET_CAN_SNAPSHOT_READ 0x020u
#define TARGET_CAN_RESIZE 0x040u
#define TARGET_CAN_REOPEN 0x080u
#define TARGET_CAN_CHECK 0x100u            /* its own consistency check */
#define TARGET_CAN_ZERO 0x200u             /* zero write, with and without unmap */
/* The image is a qcow2 file at params.path that QEMU's tools may read (after detach). */
#define TARGET_QCOW2_FILE 0x400u
#define TARGET_CAN_CRASH 0x800u            /* crash_reopen (when made with crash_ops) */
#define TARGET_CAN_SNAPSHOT_LIST 0x1000u

struct target {
    const struct target_ops *ops;   /* an op outside caps may be NULL */
    unsigned caps;
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

/* The test hooks a target is made with (all NULL: none). */
struct target_hooks {
    target_backend_hook hook;       /* targets over libqvet's backend interface only */
    void *hook_ctx;
    target_wrap_hook wrap;          /* any target */
    void *wrap_ctx;
};

/* What a target is made from; a kind ignores what it has no use for. */
struct target_params {
    const char *path;               /* the image file; in memory, its name in messages */
    bool in_memory;                 /* no file is touched (the fuzz targets) */
    uint64_t max_file;              /* in memory: the most bytes the image file may hold */
    uint64_t size;                  /* create: the virtual size in bytes */
    const char *options;            /* create: qemu-img's -o options (NULL or "": defaults) */
    const char *backing;            /* create: the backing file as the image names it */
    const char *backing_format;
    size_t cache_bytes;             /* the metadata cache (0: the implementation's default) */
    bool read_only;                 /* open: a reader, which never changes the image */
    /* Keep the writes since the last flush apart, so that crash_reopen can lose them. */
    bool crash_ops;
    const struct target_hooks *hooks;
};

/*
 * A kind of target: how one is made. A target is named by a spec, "KIND" or "KIND:ARG"
 * (a URI, a command), and `arg` is what follows the colon (NULL without one). start
 * makes a new image and opens it (`create`) or opens an existing one; it returns 0 or a
 * negative errno with a one-line reason in errbuf. check_options says whether `options`
 * would be accepted by a create (a trace is refused before its run when they would not).
 * A kind that only reads (a reader) is never asked to create.
 */
struct target_kind {
    const char *name;
    bool reads_only;
    int (*check_options)(const char *options, char *errbuf, size_t errlen);
    int (*start)(const char *arg, bool create, const struct target_params *p,
                 struct target **out, char *errbuf, size_t errlen);
};

/* The factory: the only way to a target. spec "qvet" is the qvet engine. */
int target_create(const char *spec, const struct target_params *p, struct target **out,
                  char *errbuf, size_t errlen);
int target_open(const char *spec, const struct target_params *p, struct target **out,
                char *errbuf, size_t errlen);
int target_check_options(const char *spec, const char *options, char *errbuf,
                         size_t errlen);

/* Whether the target can do everything in `caps` (TARGET_CAN_*). */
bool target_can(const struct target *t, unsigned caps);

#endif
