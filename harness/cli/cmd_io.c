/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * qvet io: qemu-io 7.2's command language on a qcow2 image. Every line a command prints
 * is qemu-io's, on the same stream, so a qemu-iotests style golden output (after the
 * usual filter of the timing numbers) is the same for both tools; commands qemu-io has
 * and qvet does not are refused by name. As in qemu-io, every -c command runs even after
 * one failed (up to `quit`), and the exit status is 1 when any failed. Without -c the
 * commands come from standard input, one a line, each after qemu-io's prompt.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define IO_PROG "qvet io"
/* qemu-io's prompt, printed as it is so that the iotests filter that removes it applies. */
#define IO_PROMPT "qemu-io> "
/* The block layer's limit on one request (BDRV_REQUEST_MAX_BYTES). */
#define IO_MAX_REQUEST 2147483136ull
#define IO_DEFAULT_WRITE_PATTERN 0xcd

const char cmd_io_help[] =
    "usage: qvet io [-r] [-f qcow2] [-U] [-c COMMAND]... [IMAGE]\n"
    "\n"
    "Runs qemu-io commands on a qcow2 image, printing what qemu-io 7.2 prints.\n"
    "\n"
    "  -c, --cmd COMMAND    run COMMAND; repeat for several, run in order. Default: none,\n"
    "                       read commands from standard input, one a line, each after\n"
    "                       the prompt 'qemu-io> '\n"
    "  -r, --read-only      open IMAGE read-only (default: read-write)\n"
    "  -f, --format FMT     image format; only qcow2 (the default) is accepted\n"
    "  -U, --force-share    open even while another program holds the image for writing\n"
    "                       (read-only opens only, as in qemu-io; default: refuse)\n"
    "  -h, --help           this help\n"
    "  -V, --version        qvet's version\n"
    "  -q                   not a qemu-io option (refused): quiet is per command, 'read -q'\n"
    "  -s, -n, -C, -m, -k, -i, -t, -d, -T, --snapshot, --nocache, --copy-on-read,\n"
    "  --misalign, --native-aio, --aio, --cache, --discard, --trace, --object,\n"
    "  --image-opts         qemu-io options qvet does not support: refused by name\n"
    "\n"
    "IMAGE is optional: without it, use the 'open' command. Every command runs even\n"
    "after one failed ('quit' stops); the exit status is 1 when any failed, else 0.\n"
    "Numbers take qemu-io's forms: 4096, 0x1000, 4k, 1.5M (suffixes B k M G T P E).\n"
    "'help' lists the commands, 'help COMMAND' explains one.\n";

struct io_state {
    struct qcow2_image *img;        /* NULL while no image is open */
    bool read_only;
    bool quit;
};

struct io_command {
    const char *name, *altname;
    int (*run)(struct io_state *s, int argc, char **argv);
    int argmin, argmax;             /* arguments after the name; argmax -1 = no limit */
    bool needs_image, writes;
    const char *args, *oneline;
    const char *options;            /* the getopt string, "" for none */
    const char *help;               /* after the usage line of 'help COMMAND', or NULL */
};

static const struct io_command *find_io_command(const char *name);

/* qemu-io's usage line, which it also prints for a malformed command. */
static int usage_of(const struct io_command *c)
{
    printf("%s %s -- %s\n", c->name, c->args, c->oneline);
    return -1;
}

/* getopt's complaint in glibc's words (it prints none with opterr = 0), then the usage. */
static int option_error(const struct io_command *c, char **argv)
{
    if (strchr(c->options, optopt))
        fprintf(stderr, "%s: option requires an argument -- '%c'\n", argv[0], optopt);
    else
        fprintf(stderr, "%s: invalid option -- '%c'\n", argv[0], optopt);
    return usage_of(c);
}

static int not_supported(const char *what)
{
    fprintf(stderr, IO_PROG ": %s is not supported\n", what);
    return -1;
}

static int number_arg(const char *text, uint64_t *out)
{
    int ret = qemu_cvtnum(IO_PROG, text, out);
    if (ret)
        qemu_print_cvtnum_error(ret, text);
    return ret ? -1 : 0;
}

/* A request length: a number within the block layer's limit. */
static int length_arg(const char *text, uint64_t *out, const char *limit_note)
{
    if (number_arg(text, out))
        return -1;
    if (*out > IO_MAX_REQUEST) {
        printf("length cannot exceed %llu%s, given %s\n", IO_MAX_REQUEST, limit_note, text);
        return -1;
    }
    return 0;
}

/* -P PATTERN: a byte value (0x.., 0.., decimal); notes that it was given. */
static int pattern_arg(const char *text, int *out, bool *given)
{
    char *end;
    long v = strtol(text, &end, 0);
    if (v < 0 || v > 255 || *end) {
        printf("%s is not a valid pattern byte\n", text);
        return -1;
    }
    *out = (int)v;
    *given = true;
    return 0;
}

static int sector_aligned(uint64_t off, uint64_t count)
{
    if (off % 512) {
        printf("%" PRIu64 " is not a sector-aligned value for 'offset'\n", off);
        return -1;
    }
    if (count % 512) {
        printf("%" PRIu64 " is not a sector-aligned value for 'count'\n", count);
        return -1;
    }
    return 0;
}

/* The block layer refuses a request that reaches past the end of the disk with EIO. */
static bool past_end(const struct io_state *s, uint64_t off, uint64_t count)
{
    uint64_t size = qcow2_virtual_size(s->img);
    return off > size || count > size - off;
}

/*
 * "read failed: <errno text>", as qemu-io says it. Requests QEMU refuses before any I/O
 * (misaligned compressed writes; compressed writes onto allocated clusters, which QEMU
 * reports as EIO) get that line alone; any other engine error also gets qvet's line.
 */
static int io_failed(const char *op, int ret, const struct qcow2_error *err)
{
    printf("%s failed: %s\n", op, strerror(ret == -EEXIST ? EIO : -ret));
    if (err && ret != -EEXIST && ret != -EINVAL) {
        fflush(stdout);
        cli_fail_engine(err);
    }
    return -1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* qemu-io's statistics: two lines, or with -C one machine-readable line. */
static void report(const char *op, double started, uint64_t off, uint64_t count, bool terse)
{
    /* qemu-io measures in microseconds; so does this. */
    uint64_t usec = (uint64_t)((now_seconds() - started) * 1e6);
    /* A request always takes some time; a zero would make the rates nan and inf. */
    usec = usec ? usec : 1;
    unsigned secs = (unsigned)(usec / 1000000), centis = (unsigned)(usec % 1000000 / 10000);
    double elapsed = (double)usec / 1e6;
    char when[64];
    if (secs || terse)
        snprintf(when, sizeof(when), "%u:%02u:%02u.%02u", secs / 3600, secs / 60 % 60, secs % 60,
                 centis);
    else
        snprintf(when, sizeof(when), "00.%02u sec", centis);
    if (terse) {
        printf("%" PRIu64 ",1,%s,%.3f,%.3f\n", count, when, (double)count / elapsed,
               1.0 / elapsed);
        return;
    }
    char total[64], rate[64];
    qemu_format_size((double)count, total, sizeof(total));
    qemu_format_size((double)count / elapsed, rate, sizeof(rate));
    printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", op, count, count, off);
    printf("%s, 1 ops; %s (%s/sec and %.4f ops/sec)\n", total, when, rate, 1.0 / elapsed);
}

/* qemu-io's -v dump: 16 bytes a line, letters and digits shown, the rest as dots. */
static void hexdump(const uint8_t *buf, uint64_t len, uint64_t base)
{
    for (uint64_t i = 0; i < len; i += 16) {
        uint64_t n = len - i < 16 ? len - i : 16;
        printf("%08" PRIx64 ":  ", base + i);
        for (uint64_t j = 0; j < n; j++)
            printf("%02x ", buf[i + j]);
        putchar(' ');
        for (uint64_t j = 0; j < n; j++) {
            unsigned char ch = buf[i + j];
            putchar((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')
                        ? ch : '.');
        }
        putchar('\n');
    }
}

/* ---- read, write, discard ------------------------------------------------------------ */

static int io_read(struct io_state *s, int argc, char **argv)
{
    const struct io_command *cmd = find_io_command("read");
    bool terse = false, quiet = false, verbose = false, pattern_given = false;
    bool start_given = false, length_given = false;
    int pattern = 0, c;
    uint64_t pattern_start = 0, pattern_len = 0;
    while ((c = getopt(argc, argv, cmd->options)) != -1) {
        switch (c) {
        case 'b': return not_supported("read -b (the VM state area)");
        case 'C': terse = true; break;
        case 'l':                       /* the verified range's length and start */
        case 's':
            if (number_arg(optarg, c == 'l' ? &pattern_len : &pattern_start))
                return -1;
            *(c == 'l' ? &length_given : &start_given) = true;
            break;
        case 'p': break;                /* ignored by qemu-io too */
        case 'P':
            if (pattern_arg(optarg, &pattern, &pattern_given))
                return -1;
            break;
        case 'q': quiet = true; break;
        case 'v': verbose = true; break;
        default: return option_error(cmd, argv);
        }
    }
    if (optind != argc - 2)
        return usage_of(cmd);
    uint64_t off, count;
    if (number_arg(argv[optind], &off) || length_arg(argv[optind + 1], &count, ""))
        return -1;
    if (!pattern_given && (start_given || length_given))
        return usage_of(cmd);
    if (!length_given)
        pattern_len = count - pattern_start;
    if (pattern_start > count || pattern_len > count - pattern_start) {
        printf("pattern verification range exceeds end of read data\n");
        return -1;
    }
    if (past_end(s, off, count))
        return io_failed("read", -EIO, NULL);
    uint8_t *buf = malloc(count ? count : 1);
    if (!buf)
        return io_failed("read", -ENOMEM, NULL);
    struct qcow2_error err;
    double started = now_seconds();
    int ret = count ? qcow2_pread(s->img, buf, count, off, &err) : 0;
    int status = 0;
    if (ret) {
        status = io_failed("read", ret, &err);
    } else {
        for (uint64_t i = pattern_start; pattern_given && i < pattern_start + pattern_len; i++) {
            if (buf[i] != pattern) {
                printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
                       off + pattern_start, pattern_len);
                status = -1;
                break;
            }
        }
        if (!quiet && verbose)
            hexdump(buf, count, off);
        if (!quiet)
            report("read", started, off, count, terse);
    }
    free(buf);
    return status;
}

/* The write buffer from -s FILE: the file's bytes, repeated to fill `count`. */
static uint8_t *buffer_from_file(const char *path, uint64_t count)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = malloc(count ? count : 1);
    size_t got = buf ? fread(buf, 1, count, f) : 0;
    bool failed = !buf || ferror(f);
    fclose(f);
    if (failed || (!got && count)) {
        fprintf(stderr, "%s: %s\n", path, failed ? strerror(errno ? errno : ENOMEM)
                                                 : "file is empty");
        free(buf);
        return NULL;
    }
    for (size_t i = got; i < count; i++)
        buf[i] = buf[i - got];
    return buf;
}

static int io_write(struct io_state *s, int argc, char **argv)
{
    const struct io_command *cmd = find_io_command("write");
    bool compressed = false, terse = false, fua = false, pattern_given = false;
    bool quiet = false, unmap = false, zero = false;
    const char *source = NULL;
    int pattern = IO_DEFAULT_WRITE_PATTERN, c;
    while ((c = getopt(argc, argv, cmd->options)) != -1) {
        switch (c) {
        case 'b': return not_supported("write -b (the VM state area)");
        case 'c': compressed = true; break;
        case 'C': terse = true; break;
        case 'f': fua = true; break;
        case 'n': return not_supported("write -n (zero writes without slow fallback)");
        case 'p': break;                /* ignored by qemu-io too */
        case 'P':
            if (pattern_arg(optarg, &pattern, &pattern_given))
                return -1;
            break;
        case 'q': quiet = true; break;
        case 's': source = optarg; break;
        case 'u': unmap = true; break;
        case 'z': zero = true; break;
        default: return option_error(cmd, argv);
        }
    }
    if (optind != argc - 2)
        return usage_of(cmd);
    if (fua && compressed) {
        printf("-f and -b or -c cannot be specified at the same time\n");
        return -1;
    }
    if (unmap && !zero) {
        printf("-u requires -z to be specified\n");
        return -1;
    }
    if (zero + pattern_given + (source != NULL) > 1) {
        printf("Only one of -z, -P, and -s can be specified at the same time\n");
        return -1;
    }
    uint64_t off, count;
    if (number_arg(argv[optind], &off) || length_arg(argv[optind + 1], &count, " without -n"))
        return -1;
    /* With -z, -c is ignored, as qemu-io ignores it. */
    compressed = compressed && !zero;
    if (compressed && sector_aligned(off, count))
        return -1;
    uint8_t *buf = NULL;
    if (source && !(buf = buffer_from_file(source, count)))
        return -1;
    if (!zero && !source && (buf = malloc(count ? count : 1)))
        memset(buf, pattern, count);
    if (!zero && !buf)
        return io_failed("write", -ENOMEM, NULL);
    if (past_end(s, off, count)) {
        free(buf);
        return io_failed("write", -EIO, NULL);
    }
    struct qcow2_error err;
    double started = now_seconds();
    int ret;
    if (zero)
        ret = qcow2_pwrite_zeroes(s->img, off, count, unmap ? QCOW2_ZERO_MAY_UNMAP : 0, &err);
    else if (compressed)
        ret = qcow2_pwrite_compressed(s->img, buf, count, off, &err);
    else
        ret = qcow2_pwrite(s->img, buf, count, off, &err);
    /* Force Unit Access: the data is on stable storage when the write completes. */
    if (!ret && fua)
        ret = qcow2_flush(s->img, &err);
    free(buf);
    if (ret)
        return io_failed("write", ret, &err);
    if (!quiet)
        report("wrote", started, off, count, terse);
    return 0;
}

static int io_discard(struct io_state *s, int argc, char **argv)
{
    const struct io_command *cmd = find_io_command("discard");
    bool terse = false, quiet = false;
    int c;
    while ((c = getopt(argc, argv, cmd->options)) != -1) {
        if (c == 'C')
            terse = true;
        else if (c == 'q')
            quiet = true;
        else
            return option_error(cmd, argv);
    }
    if (optind != argc - 2)
        return usage_of(cmd);
    uint64_t off, count;
    if (number_arg(argv[optind], &off) || length_arg(argv[optind + 1], &count, ""))
        return -1;
    if (past_end(s, off, count))
        return io_failed("discard", -EIO, NULL);
    struct qcow2_error err;
    double started = now_seconds();
    int ret = qcow2_discard(s->img, off, count, &err);
    if (ret)
        return io_failed("discard", ret, &err);
    if (!quiet)
        report("discard", started, off, count, terse);
    return 0;
}

/* ---- allocation: alloc, map ----------------------------------------------------------- */

/* Whether the image itself (not a backing file) defines the run at `off`, and its length. */
static int allocated_run(struct io_state *s, uint64_t off, uint64_t len, bool *allocated,
                         uint64_t *run)
{
    struct qcow2_map_entry e;
    struct qcow2_error err;
    if (qcow2_map_status(s->img, off, len, &e, &err)) {
        cli_fail_engine(&err);
        return -1;
    }
    *allocated = e.present && e.depth == 0;
    *run = e.start + e.length - off;
    return 0;
}

static int io_alloc(struct io_state *s, int argc, char **argv)
{
    uint64_t off, count = 512;
    if (number_arg(argv[1], &off) || (argc == 3 && number_arg(argv[2], &count)))
        return -1;
    uint64_t size = qcow2_virtual_size(s->img);
    /* What lies past the end of the disk is neither counted nor allocated. */
    count = off < size ? (count < size - off ? count : size - off) : 0;
    uint64_t allocated_bytes = 0;
    for (uint64_t at = off; at < off + count;) {
        bool allocated;
        uint64_t run;
        if (allocated_run(s, at, off + count - at, &allocated, &run))
            return -1;
        run = run < off + count - at ? run : off + count - at;
        allocated_bytes += allocated ? run : 0;
        at += run;
    }
    char where[64];
    qemu_format_size((double)off, where, sizeof(where));
    printf("%" PRIu64 "/%" PRIu64 " bytes allocated at offset %s\n", allocated_bytes, count,
           where);
    return 0;
}

static int io_map(struct io_state *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uint64_t size = qcow2_virtual_size(s->img);
    for (uint64_t off = 0; off < size;) {
        bool allocated, next_allocated;
        uint64_t run, more;
        if (allocated_run(s, off, size - off, &allocated, &run))
            return -1;
        while (off + run < size) {
            if (allocated_run(s, off + run, size - off - run, &next_allocated, &more))
                return -1;
            if (next_allocated != allocated)
                break;
            run += more;
        }
        char length[64], where[64];
        qemu_format_size((double)run, length, sizeof(length));
        qemu_format_size((double)off, where, sizeof(where));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", length, run,
               allocated ? "    allocated" : "not allocated", where, off);
        off += run;
    }
    return 0;
}

/* ---- the image: length, info, truncate, flush, open, close ---------------------------- */

static int io_length(struct io_state *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char text[64];
    qemu_format_size((double)qcow2_virtual_size(s->img), text, sizeof(text));
    printf("%s\n", text);
    return 0;
}

static const char *true_false(bool b)
{
    return b ? "true" : "false";
}

static int io_info(struct io_state *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct qcow2_info info;
    qcow2_get_info(s->img, &info);
    /* The VM state area starts where the L1 table's reach, rounded up, ends. */
    uint64_t entry_bytes = info.extended_l2 ? 16 : 8;
    uint64_t reach = (uint64_t)info.cluster_size * (info.cluster_size / entry_bytes);
    uint64_t vm_state = (info.virtual_size + reach - 1) / reach * reach;
    char cluster[64], vm[64];
    qemu_format_size(info.cluster_size, cluster, sizeof(cluster));
    qemu_format_size((double)vm_state, vm, sizeof(vm));
    printf("format name: qcow2\ncluster size: %s\nvm state offset: %s\n", cluster, vm);
    printf("Format specific information:\n    compat: %s\n    compression type: %s\n",
           info.version == 2 ? "0.10" : "1.1",
           info.compression == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    bool v3 = info.version >= 3;
    if (v3)
        printf("    lazy refcounts: %s\n",
               true_false(info.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
    printf("    refcount bits: %" PRIu32 "\n", info.refcount_bits);
    if (v3)
        printf("    corrupt: %s\n    extended l2: %s\n",
               true_false(info.incompatible_features & QCOW2_INCOMPAT_CORRUPT),
               true_false(info.extended_l2));
    return 0;
}

static int io_truncate(struct io_state *s, int argc, char **argv)
{
    const struct io_command *cmd = find_io_command("truncate");
    int c;
    while ((c = getopt(argc, argv, cmd->options)) != -1) {
        if (c != 'm')
            return option_error(cmd, argv);
        if (!strcmp(optarg, "metadata") || !strcmp(optarg, "falloc") || !strcmp(optarg, "full"))
            return not_supported("truncate -m metadata, falloc or full (only off)");
        if (strcmp(optarg, "off")) {
            fprintf(stderr, IO_PROG ": Invalid preallocation mode '%s'\n", optarg);
            return -1;
        }
    }
    if (optind >= argc)
        return usage_of(cmd);
    uint64_t size;
    if (number_arg(argv[optind], &size))
        return -1;
    if (size % 512) {
        fprintf(stderr, IO_PROG ": The new size must be a multiple of 512\n");
        return -1;
    }
    struct qcow2_error err;
    if (qcow2_resize(s->img, size, &err)) {
        cli_fail_engine(&err);
        return -1;
    }
    return 0;
}

static int io_flush(struct io_state *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct qcow2_error err;
    if (qcow2_flush(s->img, &err)) {
        cli_fail_engine(&err);
        return -1;
    }
    return 0;
}

static int open_image(struct io_state *s, const char *path, bool read_only, bool force_share)
{
    struct qcow2_open_options opts = {
        .writable = !read_only,
        .force_share = force_share,
        .bitmaps_invalidated = cli_warn_bitmaps_invalidated,
    };
    struct qcow2_error err;
    if (qcow2_open(path, &opts, &s->img, &err)) {
        s->img = NULL;
        /* A file that cannot be opened at all is said in QEMU's words. */
        if (!strcmp(err.structure, "file") && (err.code == -ENOENT || err.code == -EACCES))
            fprintf(stderr, IO_PROG ": can't open device %s: Could not open '%s': %s\n", path,
                    path, strerror(-err.code));
        else
            fprintf(stderr, IO_PROG ": can't open device %s: %s\n", path, err.message);
        return -1;
    }
    s->read_only = read_only;
    return 0;
}

static int io_open(struct io_state *s, int argc, char **argv)
{
    const struct io_command *cmd = find_io_command("open");
    bool read_only = false, force_share = false;
    int c;
    while ((c = getopt(argc, argv, cmd->options)) != -1) {
        switch (c) {
        case 'r': read_only = true; break;
        case 'U': force_share = true; break;
        case 's': case 'C': case 'n': case 'k': case 'i': case 't': case 'd': case 'o': {
            char what[64];
            snprintf(what, sizeof(what), "open -%c", c);
            return not_supported(what);
        }
        default: return option_error(cmd, argv);
        }
    }
    if (optind != argc - 1)
        return usage_of(cmd);
    if (s->img) {
        fprintf(stderr, IO_PROG ": file open already, try 'help close'\n");
        return -1;
    }
    return open_image(s, argv[optind], read_only, force_share);
}

static int close_image(struct io_state *s)
{
    if (!s->img)
        return 0;
    struct qcow2_error err;
    int ret = s->read_only ? 0 : qcow2_flush(s->img, &err);
    if (ret)
        cli_fail_engine(&err);
    qcow2_close(s->img);
    s->img = NULL;
    return ret ? -1 : 0;
}

static int io_close(struct io_state *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return close_image(s);
}

static int io_quit(struct io_state *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    s->quit = true;
    return 0;
}

static int io_help(struct io_state *s, int argc, char **argv);

/* ---- the command table ---------------------------------------------------------------- */

static const char read_help[] =
    " Reads LEN bytes at offset OFF of the disk and reports it as qemu-io does.\n"
    " -C  statistics as one line: bytes,ops,time,bytes/s,ops/s\n"
    " -P  verify that the bytes equal PATTERN (a byte value, e.g. 0xab); a mismatch is\n"
    "     reported and fails the command\n"
    " -s  with -P: verify from this offset into the data read (default 0)\n"
    " -l  with -P: verify this many bytes (default: up to the end of the data)\n"
    " -q  print nothing on success (no statistics, no dump)\n"
    " -v  dump the data: offset, 16 bytes in hex, letters and digits\n"
    " -p  ignored, as in qemu-io\n"
    " -b  (the VM state area) is not supported\n";

static const char write_help[] =
    " Writes LEN bytes at offset OFF of the disk, filled with 0xcd unless told otherwise.\n"
    " -P  fill with PATTERN (a byte value)\n"
    " -s  fill with the bytes of SOURCE_FILE, repeated as needed\n"
    " -z  write zeros (zero flags where whole clusters are covered)\n"
    " -u  with -z: clusters wholly covered may be freed\n"
    " -c  write compressed (whole clusters, sector-aligned; unallocated clusters only)\n"
    " -f  Force Unit Access: the image is flushed before the command completes\n"
    " -C  statistics as one line; -q  print nothing on success\n"
    " -p  ignored, as in qemu-io\n"
    " -b  (the VM state area) and -n (no slow fallback) are not supported\n";

static const char discard_help[] =
    " Discards LEN bytes at offset OFF: clusters wholly inside read as zeros afterwards.\n"
    " -C  statistics as one line; -q  print nothing on success\n";

static const char alloc_help[] =
    " Counts the bytes of [OFFSET, OFFSET+COUNT) (COUNT default 512) that this image,\n"
    " not its backing file, defines: data, or zeros it stores.\n";

static const char map_help[] =
    " Lists the disk as runs allocated in this image and runs that are not.\n";

static const char truncate_help[] =
    " Sets the disk size to OFF (a multiple of 512); shrinking drops the data past it.\n"
    " -m  preallocation mode: off (default; metadata, falloc and full are not supported)\n";

static const char open_help[] =
    " Opens PATH (qcow2) for the commands that follow; one image at a time.\n"
    " -r  read-only (default: read-write)\n"
    " -U  share: open even while another program writes the image (with -r only)\n"
    " -s, -C, -n, -k, -i, -t, -d, -o  qemu-io options qvet does not support\n";

static const struct io_command io_commands[] = {
    { "alloc", "a", io_alloc, 1, 2, true, false, "offset [count]",
      "checks if offset is allocated in the file", "", alloc_help },
    { "close", "c", io_close, 0, 0, true, false, "", "close the current open file", "", NULL },
    { "discard", "d", io_discard, 2, -1, true, true, "[-Cq] off len",
      "discards a number of bytes at a specified offset", "Cq", discard_help },
    { "flush", "f", io_flush, 0, 0, true, false, "", "flush all in-core file state to disk", "",
      NULL },
    { "help", "?", io_help, 0, 1, false, false, "[command]",
      "help for one or all commands", "", NULL },
    { "info", "i", io_info, 0, 0, true, false, "", "prints information about the current file",
      "", NULL },
    { "length", "l", io_length, 0, 0, true, false, "", "gets the length of the current file", "",
      NULL },
    { "map", NULL, io_map, 0, 0, true, false, "", "prints the allocated areas of a file", "",
      map_help },
    { "open", "o", io_open, 1, -1, false, false, "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
      "open the file specified by path", "rsCnkUi:t:d:o:", open_help },
    { "quit", "q", io_quit, 0, 0, false, false, "", "exit the program", "", NULL },
    { "read", "r", io_read, 2, -1, true, false, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
      "reads a number of bytes at a specified offset", "bCl:pP:qs:v", read_help },
    { "truncate", "t", io_truncate, 1, 3, true, true, "[-m prealloc_mode] off",
      "truncates the current file at the given offset", "m:", truncate_help },
    { "write", "w", io_write, 2, -1, true, true,
      "[-bcCfnquz] [-P pattern | -s source_file] off len",
      "writes a number of bytes at a specified offset", "bcCfnpP:qs:uz", write_help },
};

/* qemu-io's other commands: named, so that they are refused as unsupported, not unknown. */
static const char *const unsupported_commands[] = {
    "abort", "aio_flush", "aio_read", "aio_write", "break", "readv", "remove_break",
    "reopen", "resume", "sigraise", "sleep", "wait_break", "writev",
};

#define N_IO_COMMANDS (sizeof(io_commands) / sizeof(io_commands[0]))

static const struct io_command *find_io_command(const char *name)
{
    for (size_t i = 0; i < N_IO_COMMANDS; i++)
        if (!strcmp(io_commands[i].name, name) ||
            (io_commands[i].altname && !strcmp(io_commands[i].altname, name)))
            return &io_commands[i];
    return NULL;
}

static bool is_unsupported(const char *name)
{
    for (size_t i = 0; i < sizeof(unsupported_commands) / sizeof(unsupported_commands[0]); i++)
        if (!strcmp(unsupported_commands[i], name))
            return true;
    return false;
}

static int refuse_unsupported(const char *name)
{
    fprintf(stderr, IO_PROG ": command \"%s\" is not supported\n", name);
    return -1;
}

static int io_help(struct io_state *s, int argc, char **argv)
{
    (void)s;
    if (argc == 1) {
        for (size_t i = 0; i < N_IO_COMMANDS; i++)
            printf("%s %s -- %s\n", io_commands[i].name, io_commands[i].args,
                   io_commands[i].oneline);
        printf("\n'help COMMAND' explains one command and its options.\n");
        return 0;
    }
    const struct io_command *c = find_io_command(argv[1]);
    if (!c) {
        if (is_unsupported(argv[1]))
            return refuse_unsupported(argv[1]);
        printf("command %s not found\n", argv[1]);
        return -1;
    }
    printf("%s %s -- %s\n", c->name, c->args, c->oneline);
    if (c->help)
        printf("\n%s\n", c->help);
    return 0;
}

bool io_command_help(size_t i, const char **name, const char **options, const char **help)
{
    if (i >= N_IO_COMMANDS)
        return false;
    *name = io_commands[i].name;
    *options = io_commands[i].options;
    *help = io_commands[i].help ? io_commands[i].help : "";
    return true;
}

/* Splits on spaces, as qemu-io does (tabs belong to the words). */
static char **split_words(char *line, int *argc)
{
    char **argv = calloc(strlen(line) / 2 + 2, sizeof(*argv));
    *argc = 0;
    if (!argv)
        return NULL;
    for (char *word = line; word;) {
        char *space = strchr(word, ' ');
        if (space)
            *space++ = '\0';
        if (*word)
            argv[(*argc)++] = word;
        word = space;
    }
    return argv;
}

/* Runs one command line; returns -1 when it failed. */
static int run_line(struct io_state *s, const char *text)
{
    char *line = strdup(text);
    int argc;
    char **argv = line ? split_words(line, &argc) : NULL;
    if (!argv) {
        free(line);
        fprintf(stderr, IO_PROG ": out of memory\n");
        return -1;
    }
    int status = 0;
    const struct io_command *c = argc ? find_io_command(argv[0]) : NULL;
    int args = argc - 1;
    if (!argc) {
        status = 0;
    } else if (!c && is_unsupported(argv[0])) {
        status = refuse_unsupported(argv[0]);
    } else if (!c) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        status = -1;
    } else if (c->needs_image && !s->img) {
        fprintf(stderr, "no file open, try 'help open'\n");
        status = -1;
    } else if (args < c->argmin || (c->argmax >= 0 && args > c->argmax)) {
        if (c->argmax < 0)
            fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n",
                    args, argv[0], c->argmin);
        else if (c->argmin == c->argmax)
            fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n", args,
                    argv[0], c->argmin);
        else
            fprintf(stderr, "bad argument count %d to %s, expected between %d and %d "
                    "arguments\n", args, argv[0], c->argmin, c->argmax);
        status = -1;
    } else if (c->writes && s->read_only) {
        fprintf(stderr, IO_PROG ": Block node is read-only\n");
        status = -1;
    } else {
        cli_getopt_reset();
        status = c->run(s, argc, argv);
    }
    free(argv);
    free(line);
    return status;
}

/* Commands from standard input, each after the prompt; a last line may lack its newline. */
static bool run_stdin(struct io_state *s)
{
    bool failed = false;
    char *line = NULL;
    size_t cap = 0;
    while (!s->quit) {
        fputs(IO_PROMPT, stdout);
        fflush(stdout);
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        if (n && line[n - 1] == '\n')
            line[n - 1] = '\0';
        failed |= run_line(s, line) != 0;
    }
    free(line);
    return failed;
}

static int refuse_option(int c, const struct option *longopts, int index)
{
    if (index >= 0)
        return cli_usage("io", "option --%s is not supported", longopts[index].name);
    for (const struct option *o = longopts; o->name; o++)
        if (o->val == c)
            return cli_usage("io", "option -%c (--%s) is not supported", c, o->name);
    return cli_usage("io", "option -%c is not supported", c);
}

int cmd_io(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "cmd", required_argument, NULL, 'c' },
        { "read-only", no_argument, NULL, 'r' },
        { "format", required_argument, NULL, 'f' },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "snapshot", no_argument, NULL, 's' },
        { "nocache", no_argument, NULL, 'n' },
        { "copy-on-read", no_argument, NULL, 'C' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "aio", required_argument, NULL, 'i' },
        { "cache", required_argument, NULL, 't' },
        { "discard", required_argument, NULL, 'd' },
        { "trace", required_argument, NULL, 'T' },
        { "object", required_argument, NULL, 'O' },
        { "image-opts", no_argument, NULL, 'I' },
        { NULL, 0, NULL, 0 },
    };
    int c, index = -1;
    bool read_only = false, force_share = false, done = false;
    /* Every -c, in order (argv outlives them); no more than there are arguments. */
    int ncmds = 0;
    const char **cmds = calloc((size_t)argc + 1, sizeof(*cmds));
    if (!cmds)
        return cli_fail("io", "out of memory");
    int status = 0;
    cli_getopt_reset();
    while (!status && !done && (c = getopt_long(argc, argv, "c:rf:UhVqsnCmki:t:d:T:", longopts,
                                                &index)) != -1) {
        switch (c) {
        case 'c': cmds[ncmds++] = optarg; break;
        case 'r': read_only = true; break;
        case 'f': status = cli_parse_format("io", optarg); break;
        case 'U': force_share = true; break;
        case 'h': fputs(cmd_io_help, stdout); done = true; break;
        case 'V': cli_print_version(); done = true; break;
        case 'q':
            status = cli_usage("io", "-q is not a qemu-io option; quiet is per command "
                                     "('read -q', 'write -q')");
            break;
        case '?':
            status = cli_usage("io", "unknown option or missing value: '%s'", argv[optind - 1]);
            break;
        default: status = refuse_option(c, longopts, index); break;
        }
        index = -1;
    }
    if (status || done) {
        free(cmds);
        return status;
    }
    if (optind < argc - 1) {
        free(cmds);
        return cli_usage("io", "expected at most one IMAGE");
    }
    struct io_state s = { 0 };
    if (optind == argc - 1 && open_image(&s, argv[optind], read_only, force_share)) {
        free(cmds);
        return 1;
    }
    bool failed = false;
    if (ncmds)
        for (int i = 0; i < ncmds && !s.quit; i++)
            failed |= run_line(&s, cmds[i]) != 0;
    else
        failed = run_stdin(&s);
    failed |= close_image(&s) != 0;
    free(cmds);
    return failed ? 1 : 0;
}
