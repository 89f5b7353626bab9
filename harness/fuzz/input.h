/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What every fuzz target needs, engine or not: its input decoded and a way to report a
 * finding. A target never indexes its input: it takes what it needs from a fuzz_input,
 * front to back (integers big-endian), and every take past the end yields zeros, so any
 * input decodes and a short one means "the rest is zero" (as LLVM's FuzzedDataProvider,
 * which takes from the front for bytes too).
 *
 * An engine error return is never a finding. A finding is a crash, a leak, a hang, a
 * sanitizer report, or an invariant a target asserts with fuzz_fail().
 */
#ifndef QVET_FUZZ_INPUT_H
#define QVET_FUZZ_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_input {
    const uint8_t *data;            /* what is still to take */
    size_t left;
    const uint8_t *whole;           /* the input as given */
    size_t size;
};

void fuzz_input_init(struct fuzz_input *in, const uint8_t *data, size_t size);
size_t fuzz_input_left(const struct fuzz_input *in);

uint8_t fuzz_input_u8(struct fuzz_input *in);
uint16_t fuzz_input_u16(struct fuzz_input *in);
uint32_t fuzz_input_u32(struct fuzz_input *in);
uint64_t fuzz_input_u64(struct fuzz_input *in);
bool fuzz_input_bool(struct fuzz_input *in);       /* one byte's lowest bit */
/* A number in [lo, hi], from as few bytes as the range needs. */
uint64_t fuzz_input_range(struct fuzz_input *in, uint64_t lo, uint64_t hi);

/* The next n bytes, or as many as are left (*got); NULL when none are. */
const uint8_t *fuzz_input_bytes(struct fuzz_input *in, size_t n, size_t *got);
/* Everything not taken yet. */
const uint8_t *fuzz_input_rest(struct fuzz_input *in, size_t *len);

/*
 * A copy of the whole input's last n bytes, zeros in front when it is shorter, taking
 * nothing: for an input that is a file with its controls at the end.
 */
void fuzz_input_tail(const struct fuzz_input *in, uint8_t *out, size_t n);

__attribute__((noreturn, format(printf, 1, 2))) void fuzz_fail(const char *fmt, ...);
/* With QVET_FUZZ_DEBUG set, a target narrates what it did (for triage of one input). */
__attribute__((format(printf, 1, 2))) void fuzz_debug(const char *fmt, ...);

#endif
