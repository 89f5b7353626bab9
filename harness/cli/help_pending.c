/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Provisional help texts for the subcommands whose own files get theirs from the helpers
 * who own those files. Each text moves into its command's cmd_*.c file (same name) when
 * that lands, and is deleted here: the linker then refuses a name defined twice.
 */
#include "cli.h"

const char cmd_info_help[] =
    "usage: qvet info [-f qcow2] [--output=human|json] IMAGE[@SNAPSHOT]\n"
    "\n"
    "Prints what qemu-img info shows about IMAGE.\n"
    "\n"
    "  --output=FMT   human (the default) or json, in qemu-img info's layouts\n"
    "  -f FMT         image format; only qcow2 (the default) is accepted\n";

const char cmd_cat_help[] =
    "usage: qvet cat [-f qcow2] [-s SNAPSHOT] IMAGE[@SNAPSHOT]\n"
    "\n"
    "Writes the guest-visible bytes of IMAGE to standard output, as qemu-img convert -O raw\n"
    "would write them.\n"
    "\n"
    "  -s, --snapshot SNAPSHOT  an internal snapshot (by id, then name) instead of the\n"
    "                           active state (the default); wins over IMAGE@SNAPSHOT\n"
    "  -f FMT                   image format; only qcow2 (the default) is accepted\n";

const char cmd_check_help[] =
    "usage: qvet check [-r leaks|all] [--output=human|json] IMAGE\n"
    "\n"
    "Recomputes every refcount and compares, as qemu-img check does; the exit status has\n"
    "its meaning (0 clean, 1 check error, 2 corruptions, 3 leaks only).\n"
    "\n"
    "  -r, --repair MODE  leaks: free leaked clusters; all: also fix corruptions\n"
    "                     (default: no repair, the image is opened read-only)\n"
    "  --output=FMT       human (the default) or json\n";

const char cmd_create_help[] =
    "usage: qvet create [-f qcow2] [-q] [-o OPTIONS] [-b BACKING [-F FMT]] IMAGE [SIZE]\n"
    "\n"
    "Creates an empty image, as qemu-img create -f qcow2 does.\n"
    "\n"
    "  -o OPTIONS   comma-separated qemu-img options: size, cluster_size (default 64k),\n"
    "               compat (1.1), refcount_bits (16), lazy_refcounts (off), extended_l2\n"
    "               (off), compression_type (zlib), preallocation (off), backing_file,\n"
    "               backing_fmt; several -o are joined\n"
    "  -b BACKING   the backing file (default: none)\n"
    "  -F FMT       its format, qcow2 or raw (required with -b)\n"
    "  -f FMT       only qcow2 (the default) is accepted\n"
    "  -q           accepted, as qemu-img's quiet flag (qvet prints nothing anyway)\n";

const char cmd_snapshot_help[] =
    "usage: qvet snapshot -l | -c NAME | -a NAME | -d NAME IMAGE\n"
    "\n"
    "Internal snapshots, as qemu-img snapshot handles them; exactly one action:\n"
    "\n"
    "  -l        list the snapshots\n"
    "  -c NAME   create one of the active state\n"
    "  -a NAME   apply one (by id, then name): the active state becomes it\n"
    "  -d NAME   delete one\n";

const char cmd_soak_help[] =
    "usage: qvet soak [OPTIONS]\n"
    "\n"
    "A differential soak: seeded operations on an image, mirrored to a raw oracle, every\n"
    "read compared.\n"
    "\n"
    "  --seed S            the seed (default 1)\n"
    "  --ops N             run N operations (default: run for --seconds)\n"
    "  --seconds T         run for T seconds (default 60)\n"
    "  --size SIZE         the image's virtual size (default 64M)\n"
    "  -o OPTIONS          qvet create options for the image (default: qemu-img's)\n"
    "  --backing KIND      none (default), qcow2, raw or chain\n"
    "  --check-every K     checks every K operations (default 2000)\n"
    "  --dir DIR           where the image, oracle and trace go (default soak-run)\n"
    "  --trace FILE        the trace file (default DIR/trace.txt)\n"
    "  --weights KIND=N,.. the mix of operations (default: the built-in one)\n"
    "  --io-size SIZE      the largest request (1 to 4M; default: the built-in one)\n"
    "  --no-qemu-checks    skip qemu-img check and compare (default: run them)\n";

const char cmd_replay_help[] =
    "usage: qvet replay TRACE\n"
    "\n"
    "Runs a soak trace again, exactly; the results go to TRACE.replay/.\n";

const char cmd_minimize_help[] =
    "usage: qvet minimize TRACE -o OUT\n"
    "\n"
    "Shrinks a failing soak trace by delta debugging to the fewest operations that fail\n"
    "the same way.\n"
    "\n"
    "  -o OUT   where the minimized trace is written (required)\n";
