/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Progress of a run: on a terminal one status line rewritten in place (ops, ops/s, reads
 * compared, checks, time left); elsewhere (a log, CI) a heartbeat line every so often.
 */
#ifndef QVET_PROGRESS_H
#define QVET_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

#include "soak.h"

struct progress {
    FILE *out;                      /* NULL: no progress at all */
    bool terminal;
    double interval;                /* seconds between updates */
    double started, next;           /* wall-clock times */
    bool line_shown;                /* a status line is on the terminal now */
};

/* `heartbeat`: seconds between lines when `out` is not a terminal (0: none). */
void progress_start(struct progress *p, FILE *out, double heartbeat, double now);

/*
 * Shows the run's state if an update is due. `op_seconds`: time spent in operations;
 * `left`: estimated seconds to go (negative: unknown).
 */
void progress_tick(struct progress *p, const struct soak_result *r, double now,
                   double op_seconds, double left);

/* Takes the status line off the terminal, before a report or the summary. */
void progress_clear(struct progress *p);

#endif
