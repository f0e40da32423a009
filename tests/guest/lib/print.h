/*
 * A small printf: %s %c %d %i %u %x %X %p %%, length modifiers l, ll, z, and for numbers
 * the '0' flag and a field width ("%016llx"). Anything else prints as "%?".
 */
#ifndef PROBE_PRINT_H
#define PROBE_PRINT_H

#include <stdarg.h>
#include <stddef.h>

#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))

/* Casts for passing a uint64_t to %llx / %llu (uint64_t is unsigned long here). */
#define U64(x) ((unsigned long long)(x))

typedef void (*print_sink)(void *ctx, char c);

void print_vformat(print_sink put, void *ctx, const char *fmt, va_list ap);

/* vsnprintf: always NUL-terminates when size > 0; returns the untruncated length. */
size_t print_vbuf(char *buf, size_t size, const char *fmt, va_list ap);

/* Writes to the serial console holding the console lock, so lines from several CPUs never
 * interleave. */
void print(const char *fmt, ...) PRINTF_LIKE(1, 2);
void print_v(const char *fmt, va_list ap);

/* Same without taking the lock: for the fatal-exception path, where the faulting CPU may
 * already hold it. */
void print_unlocked(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
