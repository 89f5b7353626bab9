/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * How QEMU 7.2's tools read and print numbers, so that scripts written for qemu-io and
 * qemu-img mean the same to qvet: sizes with suffixes, fractions and hex; sizes shown as
 * "1.500 KiB"; qemu-io's timing line.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The multiplier of a size suffix (either case), 0 when `c` is none. */
static uint64_t suffix_multiplier(char c)
{
    static const char suffixes[] = "BKMGTPE";
    const char *p = c ? strchr(suffixes, toupper((unsigned char)c)) : NULL;
    return p ? 1ull << (10 * (p - suffixes)) : 0;
}

int qemu_parse_size(const char *text, uint64_t *out, bool *hex_with_suffix)
{
    *hex_with_suffix = false;
    char *end;
    errno = 0;
    uint64_t whole = strtoull(text, &end, 10);
    /* strtoull takes leading blanks and a sign; QEMU refuses only the minus. */
    if (end == text || memchr(text, '-', (size_t)(end - text)))
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    bool hex = false;
    double fraction = 0;
    if (whole == 0 && (*end == 'x' || *end == 'X')) {
        errno = 0;
        whole = strtoull(text, &end, 16);
        if (errno == ERANGE)
            return -ERANGE;
        if (*end == '.')
            return -EINVAL;
        hex = true;
    } else if (*end == '.') {
        const char *dot = end;
        char *after;
        fraction = strtod(dot, &after);
        if (after == dot) {
            end++;                      /* "5." and "5.k": no fraction digits */
        } else {
            if (memchr(dot, 'e', (size_t)(after - dot)) || memchr(dot, 'E', (size_t)(after - dot)))
                return -EINVAL;
            end = after;
        }
    }
    uint64_t mul = suffix_multiplier(*end);
    if (mul) {
        *hex_with_suffix = hex;
        end++;
    } else {
        mul = 1;
    }
    if (*end)
        return -EINVAL;
    /*
     * QEMU keeps the fraction as a 64-bit binary fraction; one that rounds up to 1.0
     * there becomes 0 (so "1.99999999999999999k" is 1024): the same here.
     */
    uint64_t frac64 = fraction < 1.0 ? (uint64_t)ldexp(fraction, 64) : 0;
    if (mul == 1)
        return frac64 ? -EINVAL : (*out = whole, 0);
    unsigned __int128 v = (unsigned __int128)whole * mul;
    unsigned __int128 f = (unsigned __int128)frac64 * mul;
    v += (f >> 64) + ((f >> 63) & 1);   /* the fraction's bytes, half a byte rounded up */
    if (v >> 64)
        return -ERANGE;
    *out = (uint64_t)v;
    return 0;
}

int qemu_cvtnum(const char *prog, const char *text, uint64_t *out)
{
    bool hex_with_suffix;
    int ret = qemu_parse_size(text, out, &hex_with_suffix);
    if (!ret && *out > INT64_MAX)
        ret = -ERANGE;
    if (!ret && hex_with_suffix)
        fprintf(stderr, "%s: warning: Using a multiplier suffix on hex numbers is deprecated: %s\n",
                prog, text);
    return ret;
}

void qemu_print_cvtnum_error(int ret, const char *text)
{
    if (ret == -ERANGE)
        printf("Parsing error: argument too large -- %s\n", text);
    else
        printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n",
               text);
}

void qemu_format_size(double value, char *buf, size_t cap)
{
    static const char *const units[] = { " EiB", " PiB", " TiB", " GiB", " MiB", " KiB" };
    const char *unit = " bytes";
    for (int i = 0; i < 6; i++) {
        double scale = ldexp(1.0, 10 * (6 - i));
        if (value >= scale) {
            unit = units[i];
            snprintf(buf, cap, "%.3f", value / scale);
            break;
        }
    }
    if (!strcmp(unit, " bytes"))
        snprintf(buf, cap, "%f", value);
    /* A whole number loses its zero decimals ("1.000" -> "1"). */
    char *zeros = strstr(buf, ".000");
    if (zeros)
        *zeros = '\0';
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "%s", unit);
}
