/* SPDX-License-Identifier: BSD-2-Clause */
/* The qvet program: everything it does is in the CLI library (main.c and the cmd_ files). */
#include "cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
