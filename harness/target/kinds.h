/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The kinds of target the factory (target.c) knows, each defined in the file that
 * implements it. Only the factory reaches them: everything else names a target by spec.
 */
#ifndef QVET_TARGET_KINDS_H
#define QVET_TARGET_KINDS_H

#include "target.h"

extern const struct target_kind target_kind_qvet;
extern const struct target_kind target_kind_exec;      /* target_exec.c */
#ifdef QVET_HAVE_LIBNBD
extern const struct target_kind target_kind_qemu;      /* target_nbd.c */
extern const struct target_kind target_kind_nbd;
#endif
#ifdef QVET_HAVE_LIBQCOW
extern const struct target_kind target_kind_libqcow;   /* target_libqcow.c */
#endif

#endif
