/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The qvet command over a target that lies, for the triage and nightly tests only: a
 * read overlapping the last plain write returns that write's first byte flipped, so a
 * soak of reads and writes diverges at the first read of written data, always in a data
 * cluster reached through an L2 entry. Everything else is the real qvet.
 */
#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "soak.h"
#include "target.h"

static const struct target_ops *honest;
static struct target_ops lying;
static uint64_t written_off, written_len;

static int noting_write(struct target *t, const void *buf, size_t len, uint64_t off)
{
    int ret = honest->write(t, buf, len, off);
    if (!ret) {
        written_off = off;
        written_len = len;
    }
    return ret;
}

static int lying_read(struct target *t, void *buf, size_t len, uint64_t off)
{
    int ret = honest->read(t, buf, len, off);
    if (ret || !written_len || off + len <= written_off || written_off + written_len <= off)
        return ret;
    uint64_t first = off > written_off ? off : written_off;
    ((uint8_t *)buf)[first - off] ^= 0x5a;
    return 0;
}

static struct target *lie(struct target *inner, void *ctx)
{
    (void)ctx;
    /* A new target forgets the last one's write (qvet minimize runs many in a process). */
    written_len = 0;
    honest = inner->ops;
    lying = *honest;
    lying.write = noting_write;
    lying.read = lying_read;
    inner->ops = &lying;
    return inner;
}

static const struct target_hooks liar_hooks = { .wrap = lie };

int main(int argc, char **argv)
{
    soak_process_hooks = &liar_hooks;
    return cli_main(argc, argv);
}
