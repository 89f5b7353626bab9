/* SPDX-License-Identifier: BSD-2-Clause */
/* The snapshot table as `qemu-img snapshot -l` (and `qemu-img info`) print it. */
#include <inttypes.h>
#include <time.h>

#include "cli.h"

void cli_format_size(char *buf, size_t cap, uint64_t bytes)
{
    /* QEMU's rule: three significant digits; the next unit once the value reaches 1000. */
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    const size_t last = sizeof(units) / sizeof(units[0]) - 1;
    double value = (double)bytes;
    size_t unit = 0;
    for (; value >= 1000.0 && unit < last; unit++)
        value /= 1024.0;
    snprintf(buf, cap, "%0.3g %s", value, units[unit]);
}

/* "HH:MM:SS.mmm" of the guest clock; hours are not wrapped at 24. */
static void format_vm_clock(char *buf, size_t cap, uint64_t nsec)
{
    uint64_t secs = nsec / 1000000000u;
    snprintf(buf, cap, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64, secs / 3600u,
             secs / 60u % 60u, secs % 60u, nsec / 1000000u % 1000u);
}

void cli_print_snapshot_table(struct qcow2_image *img)
{
    uint32_t count = qcow2_snapshot_count(img);
    if (!count)
        return;
    printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
           "VM CLOCK", "ICOUNT");
    for (uint32_t i = 0; i < count; i++) {
        struct qcow2_snapshot_info s;
        if (qcow2_snapshot_get(img, i, &s))
            return;
        char vm_size[32], date[32] = "", clock[48], icount[32] = "";
        cli_format_size(vm_size, sizeof(vm_size), s.vm_state_size);
        /* The date in local time, as QEMU prints it; TZ decides the zone for both. */
        time_t when = (time_t)s.date_sec;
        struct tm local;
        if (localtime_r(&when, &local))
            strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &local);
        format_vm_clock(clock, sizeof(clock), s.vm_clock_nsec);
        /* An instruction count of all ones means "not recorded": the column stays empty. */
        if (s.has_icount && s.icount != UINT64_MAX)
            snprintf(icount, sizeof(icount), "%" PRIu64, s.icount);
        printf("%-9s %-16s %8s%20s%13s%11s\n", s.id, s.name, vm_size, date, clock, icount);
    }
}
