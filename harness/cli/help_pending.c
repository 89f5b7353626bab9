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

const char cmd_check_help[] =
    "usage: qvet check [-r leaks|all] [--output=human|json] IMAGE\n"
    "\n"
    "Recomputes every refcount and compares, as qemu-img check does; the exit status has\n"
    "its meaning (0 clean, 1 check error, 2 corruptions, 3 leaks only).\n"
    "\n"
    "  -r, --repair MODE  leaks: free leaked clusters; all: also fix corruptions\n"
    "                     (default: no repair, the image is opened read-only)\n"
    "  --output=FMT       human (the default) or json\n";

