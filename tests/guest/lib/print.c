#include "print.h"

#include <stdbool.h>
#include <stdint.h>

#include "cpu.h"
#include "serial.h"

static struct spinlock console_lock;

static void put_digits(print_sink put, void *ctx, unsigned long long v, unsigned base, bool upper,
                       unsigned width, char pad)
{
        const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
        char tmp[24];
        unsigned n = 0;

        do {
                tmp[n++] = digits[v % base];
                v /= base;
        } while (v);
        while (width > n) {
                put(ctx, pad);
                width--;
        }
        while (n)
                put(ctx, tmp[--n]);
}

/* Reads an integer argument of the given length modifier (0: int, 1: long, 2: long long,
 * 3: size_t). */
static unsigned long long arg_unsigned(va_list *ap, int len)
{
        switch (len) {
        case 0:
                return va_arg(*ap, unsigned int);
        case 1:
                return va_arg(*ap, unsigned long);
        case 3:
                return va_arg(*ap, size_t);
        default:
                return va_arg(*ap, unsigned long long);
        }
}

static long long arg_signed(va_list *ap, int len)
{
        switch (len) {
        case 0:
                return va_arg(*ap, int);
        case 1:
                return va_arg(*ap, long);
        case 3:
                return (long long)va_arg(*ap, size_t);
        default:
                return va_arg(*ap, long long);
        }
}

void print_vformat(print_sink put, void *ctx, const char *fmt, va_list ap_in)
{
        va_list ap;

        /* Work on a copy so helpers can take it by address (va_list is an array type). */
        va_copy(ap, ap_in);
        for (; *fmt; fmt++) {
                char pad = ' ';
                unsigned width = 0;
                int len = 0;

                if (*fmt != '%') {
                        put(ctx, *fmt);
                        continue;
                }
                fmt++;
                if (*fmt == '0') {
                        pad = '0';
                        fmt++;
                }
                while (*fmt >= '0' && *fmt <= '9')
                        width = width * 10 + (unsigned)(*fmt++ - '0');
                if (*fmt == 'z') {
                        len = 3;
                        fmt++;
                } else {
                        while (*fmt == 'l' && len < 2) {
                                len++;
                                fmt++;
                        }
                }
                switch (*fmt) {
                case 'd':
                case 'i': {
                        long long v = arg_signed(&ap, len);
                        unsigned long long mag =
                            v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;

                        if (v < 0) {
                                put(ctx, '-');
                                if (width)
                                        width--;
                        }
                        put_digits(put, ctx, mag, 10, false, width, pad);
                        break;
                }
                case 'u':
                        put_digits(put, ctx, arg_unsigned(&ap, len), 10, false, width, pad);
                        break;
                case 'x':
                case 'X':
                        put_digits(put, ctx, arg_unsigned(&ap, len), 16, *fmt == 'X', width, pad);
                        break;
                case 'p':
                        put(ctx, '0');
                        put(ctx, 'x');
                        put_digits(put, ctx, (uintptr_t)va_arg(ap, void *), 16, false, width, pad);
                        break;
                case 'c':
                        put(ctx, (char)va_arg(ap, int));
                        break;
                case 's': {
                        const char *s = va_arg(ap, const char *);

                        for (s = s ? s : "(null)"; *s; s++)
                                put(ctx, *s);
                        break;
                }
                case '%':
                        put(ctx, '%');
                        break;
                case '\0':
                        va_end(ap);
                        return;
                default:
                        put(ctx, '%');
                        put(ctx, '?');
                        break;
                }
        }
        va_end(ap);
}

struct buf_sink {
        char *buf;
        size_t size;
        size_t len;
};

static void buf_put(void *ctx, char c)
{
        struct buf_sink *b = ctx;

        if (b->len + 1 < b->size)
                b->buf[b->len] = c;
        b->len++;
}

size_t print_vbuf(char *buf, size_t size, const char *fmt, va_list ap)
{
        struct buf_sink b = {buf, size, 0};

        print_vformat(buf_put, &b, fmt, ap);
        if (size)
                buf[b.len < size ? b.len : size - 1] = '\0';
        return b.len;
}

static void serial_put(void *ctx, char c)
{
        (void)ctx;
        serial_putc(c);
}

void print_v(const char *fmt, va_list ap)
{
        spin_lock(&console_lock);
        print_vformat(serial_put, NULL, fmt, ap);
        spin_unlock(&console_lock);
}

void print(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        print_v(fmt, ap);
        va_end(ap);
}

void print_unlocked(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        print_vformat(serial_put, NULL, fmt, ap);
        va_end(ap);
}
