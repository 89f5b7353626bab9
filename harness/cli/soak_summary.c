/* SPDX-License-Identifier: BSD-2-Clause */
/* summary.json: one run's verdict, settings, counts and files, for CI and triage. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "rundir.h"
#include "soak.h"
#include "step.h"

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files in the run directory (the lock aside) and the trace, wherever it is. */
static void put_files(FILE *f, const char *dir, const char *trace)
{
    char *names[256];
    size_t n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && n < 255 && (e = readdir(d));)
        if (e->d_name[0] != '.' && strcmp(e->d_name, RUNDIR_SUMMARY_NAME ".tmp") &&
            (names[n] = strdup(e->d_name)))
            n++;
    if (d)
        closedir(d);
    /* written next, by rename */
    bool summary_listed = false;
    for (size_t i = 0; i < n; i++)
        summary_listed |= !strcmp(names[i], RUNDIR_SUMMARY_NAME);
    if (!summary_listed && (names[n] = strdup(RUNDIR_SUMMARY_NAME)))
        n++;
    qsort(names, n, sizeof(names[0]), compare_names);
    json_put_key(f, "kept_files");
    fputs("[", f);
    bool trace_listed = false;
    char path[1100];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        trace_listed |= !strcmp(path, trace);
        fputs(i ? ", " : "", f);
        json_put_string(f, path);
        free(names[i]);
    }
    if (!trace_listed) {
        fputs(n ? ", " : "", f);
        json_put_string(f, trace);
    }
    fputs("]", f);
}

/*
 * What the run exercised: ops done per kind, and the kinds left out because the target
 * cannot do them (its capabilities; "check" when it has no check of its own).
 */
static void put_exercised(FILE *f, const struct soak_config *c, const struct soak_result *r)
{
    json_put_key(f, "exercised");
    for (int k = 0; k < OP_KINDS; k++) {
        fputs(k ? ", " : "{", f);
        json_put_string(f, op_kind_name((enum op_kind)k));
        fprintf(f, ": %" PRIu64, r->done[k]);
    }
    fputs("}", f);
    json_put_key(f, "left_out");
    fputs("[", f);
    bool first = true;
    for (int k = 0; k < OP_KINDS; k++) {
        if (!c->weights[k] || (r->target_caps & step_needs((enum op_kind)k)) ==
                              step_needs((enum op_kind)k))
            continue;
        fputs(first ? "" : ", ", f);
        json_put_string(f, op_kind_name((enum op_kind)k));
        first = false;
    }
    if (!(r->target_caps & TARGET_CAN_CHECK)) {
        fputs(first ? "" : ", ", f);
        json_put_string(f, "check");
    }
    fputs("]", f);
    json_put_key(f, "qemu_img_checks_run");
    fputs(c->qemu_checks && (r->target_caps & TARGET_QCOW2_FILE) ? "true" : "false", f);
}

/*
 * The fields every tool's summary.json has (the shared convention triage reads; the
 * target and the reproducer's argv are written below with the settings).
 */
static void put_common(FILE *f, const struct soak_config *c, const struct soak_result *r)
{
    json_put_member_string(f, "tool", "soak");
    json_put_member_string(f, "kind", soak_failure_kind(r));
    json_put_member_string(f, "reason", r->outcome == SOAK_PASSED ? "" : r->message);
    char config[700];
    snprintf(config, sizeof(config), "%s%s%s backing=%s size=%" PRIu64 " cache=%zu",
             c->config_name, c->config_name[0] ? ": " : "", c->options[0] ? c->options :
             "(defaults)", soak_backing_name(c->backing), c->size, c->cache_bytes);
    json_put_member_string(f, "config", config);
}

int soak_summary_write(const char *command, const char *dir, const struct soak_config *c,
                       const struct soak_result *r, int exit_status, bool large_files_removed,
                       const char *const *configs, size_t n_configs)
{
    char path[1100], tmp[1110], trace[1024], replay[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, RUNDIR_SUMMARY_NAME);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    soak_trace_path(c, trace, sizeof(trace));
    snprintf(replay, sizeof(replay), "qvet replay %s", trace);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fputs("{\n  \"verdict\": ", f);
    json_put_string(f, soak_outcome_name(r->outcome));
    json_put_key(f, "exit_status");
    fprintf(f, "%d", exit_status);
    json_put_member_string(f, "command", command);
    json_put_member_string(f, "run_directory", dir);
    put_common(f, c, r);
    if (configs) {
        json_put_key(f, "configs");
        for (size_t i = 0; i < n_configs; i++) {
            fputs(i ? ", " : "[", f);
            json_put_string(f, configs[i]);
        }
        fputs(n_configs ? "]" : "[]", f);
    }
    json_put_member_u64(f, "seed", c->seed);
    json_put_member_string(f, "options", c->options);
    json_put_member_string(f, "backing", soak_backing_name(c->backing));
    /* Triage groups runs by target (and reader). */
    json_put_member_string(f, "target", c->target);
    json_put_member_string(f, "reader", c->reader);
    json_put_member_string(f, "payload", c->compressible_payload ? "compressible" : "mixed");
    json_put_member_u64(f, "size", c->size);
    json_put_member_u64(f, "ops_limit", c->ops);
    json_put_key(f, "seconds_limit");
    fprintf(f, "%.3f", c->seconds);
    json_put_member_u64(f, "check_every", c->check_every);
    json_put_member_u64(f, "io_size", c->io_size);
    json_put_key(f, "qemu_checks");
    fputs(c->qemu_checks ? "true" : "false", f);
    json_put_key(f, "weights");
    for (int k = 0; k < OP_KINDS; k++) {
        fputs(k ? ", " : "{", f);
        json_put_string(f, op_kind_name((enum op_kind)k));
        fprintf(f, ": %u", c->weights[k]);
    }
    fputs("}", f);
    put_exercised(f, c, r);
    json_put_member_u64(f, "ops", r->ops_run);
    json_put_key(f, "seconds");
    fprintf(f, "%.3f", r->seconds);
    json_put_key(f, "ops_per_second");
    fprintf(f, "%.1f", r->seconds > 0 ? (double)r->ops_run / r->seconds : 0.0);
    json_put_member_u64(f, "reads_compared", r->reads_compared);
    json_put_member_u64(f, "checks", r->checks_run);
    json_put_member_u64(f, "last_op", r->last_op);
    json_put_key(f, "failure");
    if (r->outcome == SOAK_PASSED || r->outcome == SOAK_INTERRUPTED) {
        fputs("null", f);
    } else {
        fprintf(f, "{\"op\": %" PRIu64 ", \"op_kind\": ", r->failing_op);
        json_put_string(f, op_kind_name(r->failing_kind));
        fputs(", \"sector\": ", f);
        if (r->has_failing_sector)
            fprintf(f, "%" PRIu64, r->failing_sector);
        else
            fputs("null", f);
        fputs(", \"message\": ", f);
        json_put_string(f, r->message);
        fputs("}", f);
    }
    json_put_member_string(f, "replay", replay);
    json_put_member_string(f, "trace", trace);
    /* The shared failure convention's argv (docs/triage.md): this very program. */
    char self[1024];
    ssize_t self_len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (self_len > 0)
        self[self_len] = '\0';
    else
        snprintf(self, sizeof(self), "qvet");
    json_put_key(f, "reproduce");
    fputs("[", f);
    json_put_string(f, self);
    fputs(", \"replay\", ", f);
    json_put_string(f, trace);
    fputs("]", f);
    json_put_key(f, "large_files_removed");
    fputs(large_files_removed ? "true" : "false", f);
    put_files(f, dir, trace);
    fputs("\n}\n", f);
    if (fclose(f))
        return -errno;
    return rename(tmp, path) ? -errno : 0;
}
