/* SPDX-License-Identifier: BSD-2-Clause */
#include <inttypes.h>
#include <unistd.h>

#include "progress.h"

/* A terminal line is cheap and nice to watch; a log wants few lines. */
#define TERMINAL_INTERVAL 0.5

void progress_start(struct progress *p, FILE *out, double heartbeat, double now)
{
    *p = (struct progress){ .out = out, .started = now };
    if (!out)
        return;
    p->terminal = isatty(fileno(out)) == 1;
    p->interval = p->terminal ? TERMINAL_INTERVAL : heartbeat;
    if (p->interval <= 0)
        p->out = NULL;
    p->next = now + p->interval;
}

void progress_tick(struct progress *p, const struct soak_result *r, double now,
                   double op_seconds, double left)
{
    if (!p->out || now < p->next)
        return;
    p->next = now + p->interval;
    char when[32] = "", remaining[32] = "";
    if (!p->terminal)
        snprintf(when, sizeof(when), "after %.0f s: ", now - p->started);
    if (left >= 0)
        snprintf(remaining, sizeof(remaining), ", %.0f s left", left);
    fprintf(p->out, "%ssoak: %s%" PRIu64 " ops, %.0f ops/s, %" PRIu64 " reads compared, %"
            PRIu64 " checks%s%s", p->terminal ? "\r" : "", when, r->ops_run,
            op_seconds > 0 ? (double)r->ops_run / op_seconds : 0.0, r->reads_compared,
            r->checks_run, remaining, p->terminal ? "\033[K" : "\n");
    fflush(p->out);
    p->line_shown = p->terminal;
}

void progress_clear(struct progress *p)
{
    if (!p->line_shown)
        return;
    fputs("\r\033[K", p->out);
    p->line_shown = false;
}
