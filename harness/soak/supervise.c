/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A supervised soak: the run happens in a child process (the worker), so that when the
 * target crashes the supervisor can still say at which op, cut the trace to its text and
 * report the crash as the bug it is. Signals: the worker stops after its current op on
 * the first SIGINT, SIGTERM or SIGHUP and dies of the second. The worker stays in qvet's
 * process group, so a Ctrl-C on the terminal (and Ctrl-Z) reaches it directly; a signal
 * another process sends to the supervisor alone (kill, timeout) is passed on to it.
 *
 * The supervisor is also the watchdog: an op running longer than hang_seconds (a
 * cross-check six times that) is a hang. The worker then gets SIGQUIT, whose handler
 * writes the stack it was in to DIR/hang-stack.txt before it exits, and the report
 * names the op and shows that stack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
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

#define HANG_STACK_NAME "hang-stack.txt"
#define CHECK_HANG_FACTOR 6
#define STACK_DEPTH 64

static char hang_stack_path[1100];

/* SIGQUIT in the worker: where it is, for the watchdog's report; then it ends. */
static void write_stack(int sig)
{
    (void)sig;
    void *frames[STACK_DEPTH];
    int n = backtrace(frames, STACK_DEPTH);
    int fd = open(hang_stack_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        backtrace_symbols_fd(frames, n, fd);
        close(fd);
    }
    _exit(3);
}

static void watch_for_hangs(const struct soak_config *c)
{
    snprintf(hang_stack_path, sizeof(hang_stack_path), "%s/" HANG_STACK_NAME, c->dir);
    void *frame;
    backtrace(&frame, 1);           /* loads what backtrace needs before a signal does */
    struct sigaction sa = { .sa_handler = write_stack };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGQUIT, &sa, NULL);
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
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

/*
 * Where the worker stopped, from its trace (cut to its text first): "at op N (...)" or
 * "in the cross-check after op N" into `where`, and the failing op into r.
 */
static void locate(const struct soak_config *c, struct soak_result *r, char *trace,
                   size_t trace_cap, char *where, size_t cap)
{
    soak_trace_path(c, trace, trace_cap);
    soak_trace_cut_at_nul(trace);
    struct soak_config tc;
    struct op *ops;
    size_t n;
    char errbuf[256];
    if (soak_trace_load(trace, &tc, &ops, &n, NULL, errbuf, sizeof(errbuf)))
        return;
    const struct op *last = &ops[n - 1];
    char line[160];
    op_format(last, line, sizeof(line));
    if (r->in_cross_check)
        snprintf(where, cap, "in the cross-check after op %" PRIu32, last->n);
    else
        snprintf(where, cap, "at op %" PRIu32 " (%s)", last->n, strchr(line, ' ') + 1);
    r->failing_op = last->n;
    r->failing_kind = r->in_cross_check ? OP_KINDS : last->kind;
    free(ops);
}

/* The worker died without finishing: what, where, and which outcome that is. */
static int report_death(const struct soak_config *c, struct soak_result *r, int wstatus,
                        FILE *out)
{
    char trace[1024], how[160], where[200] = "during setup";
    locate(c, r, trace, sizeof(trace), where, sizeof(where));
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

/* The worker outran the watchdog: the op (or the check after it) and its stack. */
static int report_hang(const struct soak_config *c, struct soak_result *r, double seconds,
                       FILE *out)
{
    char trace[1024], where[240] = "";
    locate(c, r, trace, sizeof(trace), where, sizeof(where));
    r->outcome = SOAK_HUNG;
    snprintf(r->message, sizeof(r->message), "qvet soak: hung %s: still running after %.3g s "
             "(the bound is %.3g s)", where, seconds,
             r->in_cross_check ? c->hang_seconds * CHECK_HANG_FACTOR : c->hang_seconds);
    if (isatty(fileno(out)))
        fputs("\r\033[K", out);
    fprintf(out, "%s\n  where it was (%s):\n", r->message, hang_stack_path);
    FILE *f = fopen(hang_stack_path, "r");
    char frame[512];
    for (int i = 0; f && i < STACK_DEPTH && fgets(frame, sizeof(frame), f); i++)
        fprintf(out, "    %s", frame);
    if (f)
        fclose(f);
    else
        fprintf(out, "    (no stack: the worker did not answer SIGQUIT)\n");
    fprintf(out, "  image, oracle and trace kept in %s\n  replay: qvet replay %s\n", c->dir,
            trace);
    return 1;
}

/*
 * Waits for the worker; when its op or cross-check outruns the bound, stops it with
 * SIGQUIT (SIGKILL if that is not enough) and returns how long it had run (else 0).
 */
static double wait_watching(pid_t pid, const struct soak_config *c, const struct shared *sh,
                            int *wstatus)
{
    double hung = 0, quit_at = 0;
    for (;;) {
        pid_t got = waitpid(pid, wstatus, c->hang_seconds > 0 ? WNOHANG : 0);
        if (got == pid || (got < 0 && errno != EINTR))
            return hung;
        if (got <= 0 && c->hang_seconds > 0) {
            double now = monotonic_seconds(), since = sh->r.busy_since;
            double bound = sh->r.in_cross_check ? c->hang_seconds * CHECK_HANG_FACTOR
                                                : c->hang_seconds;
            if (!hung && since > 0 && now - since > bound) {
                hung = now - since;
                quit_at = now;
                kill(pid, SIGQUIT);
            } else if (hung && now - quit_at > 5) {
                kill(pid, SIGKILL);
            }
            usleep(20000);
        }
    }
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
        watch_for_hangs(c);
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
    snprintf(hang_stack_path, sizeof(hang_stack_path), "%s/" HANG_STACK_NAME, c->dir);
    double hung = wait_watching(pid, c, sh, &wstatus);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &saved[i], NULL);
    worker_pid = 0;
    *r = sh->r;
    int status = sh->finished ? sh->status
                 : hung ? report_hang(c, r, hung, out) : report_death(c, r, wstatus, out);
    munmap(sh, sizeof(*sh));
    return status;
}
