/*
 * Shared pieces of the libFuzzer targets (tests/fuzz/README.md): a reader that turns the
 * fuzzer's bytes into typed values (never failing: past the end it yields zeros), a quiet
 * log sink, and a filesystem sandbox for targets whose inputs name host paths.
 *
 * Every target defines LLVMFuzzerTestOneInput and may define LLVMFuzzerInitialize. The same
 * sources link either with libFuzzer (-DVMM_FUZZ=ON, clang) or with standalone_main.c, which
 * replays files (the corpus as regression tests in the ordinary builds).
 */
#ifndef TESTS_FUZZ_FUZZ_COMMON_H
#define TESTS_FUZZ_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct fz {
        const uint8_t *p;
        size_t n;
};

static inline void fz_init(struct fz *f, const uint8_t *data, size_t size)
{
        f->p = data;
        f->n = size;
}

static inline bool fz_empty(const struct fz *f)
{
        return f->n == 0;
}

uint8_t fz_u8(struct fz *f);
uint16_t fz_u16(struct fz *f);
uint32_t fz_u32(struct fz *f);
uint64_t fz_u64(struct fz *f);
static inline bool fz_bool(struct fz *f)
{
        return fz_u8(f) & 1;
}
/* A value in [0, n) (0 when n is 0). */
uint32_t fz_below(struct fz *f, uint32_t n);
/* Up to max bytes, the count taken from the input (1 byte when max < 256, else 2). Returns a
 * pointer into the input (no copy) and the length. */
const uint8_t *fz_bytes(struct fz *f, size_t max, size_t *len);
/* Exactly len bytes into out (zero padded past the end of the input). */
void fz_copy(struct fz *f, void *out, size_t len);

/* Log lines are formatted (the format code runs) and dropped. */
void fz_quiet_log(void);

/*
 * For targets whose input names host paths (the API, the config file): confines the process
 * so that files can only be created or written beneath a fresh scratch directory (which
 * becomes the working directory), the corpus directories and the artifact prefix named on
 * the command line (made absolute here). Reads stay allowed. Uses Landlock; without it the
 * process exits unless VMM_FUZZ_UNSANDBOXED=1. Returns the scratch directory.
 */
const char *fz_sandbox(int *argc, char ***argv);
/* Empties the scratch directory (files the last input made the VMM create). */
void fz_scratch_clean(void);

#endif
