/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A supervised soak: the run happens in a child process (the worker), so that when the
 * target crashes the supervisor can still say at which op, cut the trace to its text and
 * report the crash as the bug it is. Signals: the worker stops after its current op on
 * the first SIGINT, SIGTERM or SIGHUP and dies of the second. The worker stays in qvet's
 * process group, so a Ctrl-C on the terminal (and Ctrl-Z) reaches it directly; a signal
 * another process sends to the supervisor alone (kill, timeout) is passed on to it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "soak.h"

/*
 * gcc --coverage's counter flush; _exit skips it, so a coverage build calls it (weak:
 * absent, and never called, in every other build).
 */
extern void __gcov_dump(void) __attribute__((weak));

static volatile sig_atomic_t stop_signal;
static volatile pid_t worker_pid;

static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define N_STOP_SIGNALS (sizeof(stop_signals) / sizeof(stop_signals[0]))

static void request_stop(int sig)
{
    stop_signal = sig;
}

const volatile sig_atomic_t *soak_stop_on_signals(void)
{
    struct sigaction sa = { .sa_handler = request_stop, .sa_flags = SA_RESETHAND };
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &sa, NULL);
    return &stop_signal;
}

/* The terminal signals the whole group itself; what a process sent only reached us. */
static void pass_on(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (info->si_code <= 0 && worker_pid > 0)
        kill(worker_pid, sig);
}

/* What the worker leaves for the supervisor (shared memory). */
struct shared {
    struct soak_result r;
    int status;
    bool finished;
};

static void describe_signal(int wstatus, char *buf, size_t cap)
{
    if (WIFSIGNALED(wstatus))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
    else
        snprintf(buf, cap, "exited with status %d before finishing (a sanitizer's report "
                 "would be above)", WEXITSTATUS(wstatus));
}

/* The worker died without finishing: what, where, and which outcome that is. */
static int report_death(const struct soak_config *c, struct soak_result *r, int wstatus,
                        FILE *out)
{
    char trace[1024], how[160], where[200] = "during setup";
    soak_trace_path(c, trace, sizeof(trace));
    soak_trace_cut_at_nul(trace);
    struct soak_config tc;
    struct op *ops;
    size_t n;
    char errbuf[256];
    if (!soak_trace_load(trace, &tc, &ops, &n, NULL, errbuf, sizeof(errbuf))) {
        const struct op *last = &ops[n - 1];
        char line[160];
        op_format(last, line, sizeof(line));
        if (r->in_cross_check)
            snprintf(where, sizeof(where), "in the cross-check after op %" PRIu32, last->n);
        else
            snprintf(where, sizeof(where), "at op %" PRIu32 " (%s)", last->n,
                     strchr(line, ' ') + 1);
        r->failing_op = last->n;
        r->failing_kind = r->in_cross_check ? OP_KINDS : last->kind;
        free(ops);
    }
    describe_signal(wstatus, how, sizeof(how));
    int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    r->signal_number = sig;
    int status;
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
        r->outcome = SOAK_INTERRUPTED;
        snprintf(r->message, sizeof(r->message), "qvet soak: stopped %s: %s", where, how);
        status = -1;
    } else if (sig == SIGKILL) {
        r->outcome = SOAK_KILLED;
        snprintf(r->message, sizeof(r->message), "qvet soak: the soak process was %s %s "
                 "(out of memory?): not necessarily a bug", how, where);
        status = -1;
    } else {
        r->outcome = SOAK_CRASHED;
        snprintf(r->message, sizeof(r->message), "qvet soak: the target crashed %s: the soak "
                 "process %s", where, how);
        status = 1;
    }
    if (isatty(fileno(out)))
        fputs("\r\033[K", out);     /* the worker's status line */
    fprintf(out, "%s\n  image, oracle and trace kept in %s\n  replay: qvet replay %s\n",
            r->message, c->dir, trace);
    return status;
}

int soak_run_supervised(const struct soak_config *c, const struct op *replay, size_t n_replay,
                        struct soak_result *r, FILE *out)
{
    struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return soak_run(c, replay, n_replay, r, out);
    memset(sh, 0, sizeof(*sh));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        munmap(sh, sizeof(*sh));
        return soak_run(c, replay, n_replay, r, out);
    }
    if (pid == 0) {
        struct soak_config worker = *c;
        worker.stop = soak_stop_on_signals();
        sh->status = soak_run(&worker, replay, n_replay, &sh->r, out);
        sh->finished = true;
        fflush(NULL);
        if (__gcov_dump)
            __gcov_dump();
        _exit(0);
    }
    worker_pid = pid;
    struct sigaction sa = { .sa_sigaction = pass_on, .sa_flags = SA_SIGINFO | SA_RESTART };
    struct sigaction saved[N_STOP_SIGNALS];
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &sa, &saved[i]);
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        continue;
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &saved[i], NULL);
    worker_pid = 0;
    *r = sh->r;
    int status = sh->finished ? sh->status : report_death(c, r, wstatus, out);
    munmap(sh, sizeof(*sh));
    return status;
}
