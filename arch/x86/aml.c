#include "aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Opcodes and prefixes (ACPI 6.3, 20.2). */
#define AML_ZERO_OP           0x00
#define AML_ONE_OP            0x01
#define AML_NAME_OP           0x08
#define AML_BYTE_PREFIX       0x0a
#define AML_WORD_PREFIX       0x0b
#define AML_DWORD_PREFIX      0x0c
#define AML_STRING_PREFIX     0x0d
#define AML_QWORD_PREFIX      0x0e
#define AML_SCOPE_OP          0x10
#define AML_BUFFER_OP         0x11
#define AML_PACKAGE_OP        0x12
#define AML_METHOD_OP         0x14
#define AML_NOTIFY_OP         0x86
#define AML_DUAL_NAME_PREFIX  0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX     0x5b
#define AML_DEVICE_OP         0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR         0x5c
#define AML_PARENT_PREFIX     0x5e

/* Resource descriptor tags (ACPI 6.3, 6.4). */
#define AML_RES_IRQ_NOFLAGS    0x22 /* small item 0x4, 2 bytes: no information byte */
#define AML_RES_IO             0x47 /* small item 0x8, 7 bytes */
#define AML_RES_END_TAG        0x79 /* small item 0xf, 1 byte */
#define AML_RES_MEMORY32_FIXED 0x86
#define AML_RES_EXT_INTERRUPT  0x89

#define AML_PKGLEN_MAX ((1u << 28) - 1)

void aml_init(struct aml *a)
{
        memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
        free(a->buf);
        aml_init(a);
}

static void aml_fail(struct aml *a, int err)
{
        if (!a->err)
                a->err = err;
}

static bool aml_reserve(struct aml *a, size_t n)
{
        size_t need, cap;
        uint8_t *p;

        if (a->err)
                return false;
        if (__builtin_add_overflow(a->len, n, &need)) {
                aml_fail(a, -E2BIG);
                return false;
        }
        if (need <= a->cap)
                return true;
        cap = a->cap ? a->cap : 256;
        while (cap < need)
                cap *= 2;
        p = realloc(a->buf, cap);
        if (!p) {
                aml_fail(a, -ENOMEM);
                return false;
        }
        a->buf = p;
        a->cap = cap;
        return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
        if (!aml_reserve(a, n))
                return;
        memcpy(a->buf + a->len, p, n);
        a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
        aml_bytes(a, &b, 1);
}

/* Inserts bytes at pos: PkgLength and BufferSize precede contents whose size is only known
 * once they are written. */
static void aml_insert(struct aml *a, size_t pos, const uint8_t *p, size_t n)
{
        if (!aml_reserve(a, n))
                return;
        memmove(a->buf + pos + n, a->buf + pos, a->len - pos);
        memcpy(a->buf + pos, p, n);
        a->len += n;
}

bool aml_name_seg(const char *s, size_t n, char seg[4])
{
        if (n < 1 || n > 4)
                return false;
        for (size_t i = 0; i < 4; i++) {
                char c = i < n ? s[i] : '_';
                bool ok = (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
                if (!ok)
                        return false;
                seg[i] = c;
        }
        return true;
}

void aml_name_string(struct aml *a, const char *path)
{
        char segs[255][4];
        size_t nsegs = 0;
        const char *p = path;

        if (*p == '\\') {
                aml_byte(a, AML_ROOT_CHAR);
                p++;
        } else {
                while (*p == '^') {
                        aml_byte(a, AML_PARENT_PREFIX);
                        p++;
                }
        }
        while (*p) {
                size_t n = strcspn(p, ".");
                if (nsegs == ARRAY_SIZE(segs) || !aml_name_seg(p, n, segs[nsegs])) {
                        aml_fail(a, -EINVAL);
                        return;
                }
                nsegs++;
                p += n;
                if (*p == '.' && !*++p) {
                        aml_fail(a, -EINVAL); /* trailing '.' */
                        return;
                }
        }
        if (nsegs == 0) {
                aml_byte(a, 0x00); /* NullName, e.g. the root itself */
        } else if (nsegs == 2) {
                aml_byte(a, AML_DUAL_NAME_PREFIX);
        } else if (nsegs > 2) {
                aml_byte(a, AML_MULTI_NAME_PREFIX);
                aml_byte(a, (uint8_t)nsegs);
        }
        aml_bytes(a, segs, nsegs * 4);
}

/* Returns the encoded size (at most 9 bytes). */
static size_t aml_encode_integer(uint64_t v, uint8_t out[9])
{
        if (v <= 1) {
                out[0] = v ? AML_ONE_OP : AML_ZERO_OP;
                return 1;
        }
        if (v <= UINT8_MAX) {
                out[0] = AML_BYTE_PREFIX;
                out[1] = (uint8_t)v;
                return 2;
        }
        if (v <= UINT16_MAX) {
                out[0] = AML_WORD_PREFIX;
                put_le16(out + 1, (uint16_t)v);
                return 3;
        }
        if (v <= UINT32_MAX) {
                out[0] = AML_DWORD_PREFIX;
                put_le32(out + 1, (uint32_t)v);
                return 5;
        }
        out[0] = AML_QWORD_PREFIX;
        put_le64(out + 1, v);
        return 9;
}

void aml_integer(struct aml *a, uint64_t v)
{
        uint8_t enc[9];

        aml_bytes(a, enc, aml_encode_integer(v, enc));
}

void aml_string(struct aml *a, const char *s)
{
        for (const char *p = s; *p; p++) {
                if ((unsigned char)*p > 0x7f) {
                        aml_fail(a, -EINVAL);
                        return;
                }
        }
        aml_byte(a, AML_STRING_PREFIX);
        aml_bytes(a, s, strlen(s) + 1);
}

static int aml_hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
        uint32_t v = 0;
        uint8_t enc[5];

        if (strlen(id) != 7) {
                aml_fail(a, -EINVAL);
                return;
        }
        /* Three letters of 5 bits ('A' = 1), then four hex digits: 32 bits, stored in
         * big-endian byte order. */
        for (int i = 0; i < 3; i++) {
                if (id[i] < 'A' || id[i] > 'Z') {
                        aml_fail(a, -EINVAL);
                        return;
                }
                v |= (uint32_t)(id[i] - 0x40) << (26 - 5 * i);
        }
        for (int i = 3; i < 7; i++) {
                int d = aml_hex_digit(id[i]);
                if (d < 0) {
                        aml_fail(a, -EINVAL);
                        return;
                }
                v |= (uint32_t)d << (4 * (6 - i));
        }
        /* Always a DWord, as ASL compilers emit it, even when a shorter encoding exists. */
        enc[0] = AML_DWORD_PREFIX;
        enc[1] = (uint8_t)(v >> 24);
        enc[2] = (uint8_t)(v >> 16);
        enc[3] = (uint8_t)(v >> 8);
        enc[4] = (uint8_t)v;
        aml_bytes(a, enc, sizeof(enc));
}

void aml_name(struct aml *a, const char *path)
{
        aml_byte(a, AML_NAME_OP);
        aml_name_string(a, path);
}

/* PkgLength counts its own bytes: 1 byte up to 63, else a lead byte holding the byte count
 * and the low 4 bits, followed by 1-3 bytes of the remaining bits. */
static void aml_pkg_end(struct aml *a, size_t mark)
{
        uint8_t enc[4];
        size_t content, total, n;

        if (a->err)
                return;
        content = a->len - mark;
        for (n = 1; n <= 4; n++) {
                total = content + n;
                if (n == 1 ? total <= 0x3f : total < (1ull << (4 + 8 * (n - 1))))
                        break;
        }
        if (n > 4 || total > AML_PKGLEN_MAX) {
                aml_fail(a, -E2BIG);
                return;
        }
        if (n == 1) {
                enc[0] = (uint8_t)total;
        } else {
                enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
                for (size_t i = 1; i < n; i++)
                        enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
        }
        aml_insert(a, mark, enc, n);
}

size_t aml_package_begin(struct aml *a, uint8_t nr_elements)
{
        size_t mark;

        aml_byte(a, AML_PACKAGE_OP);
        mark = a->len;
        aml_byte(a, nr_elements);
        return mark;
}

void aml_package_end(struct aml *a, size_t mark)
{
        aml_pkg_end(a, mark);
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
        size_t mark;

        aml_byte(a, AML_SCOPE_OP);
        mark = a->len;
        aml_name_string(a, path);
        return mark;
}

void aml_scope_end(struct aml *a, size_t mark)
{
        aml_pkg_end(a, mark);
}

size_t aml_device_begin(struct aml *a, const char *path)
{
        static const uint8_t op[] = {AML_EXT_OP_PREFIX, AML_DEVICE_OP};
        size_t mark;

        aml_bytes(a, op, sizeof(op));
        mark = a->len;
        aml_name_string(a, path);
        return mark;
}

void aml_device_end(struct aml *a, size_t mark)
{
        aml_pkg_end(a, mark);
}

size_t aml_method_begin(struct aml *a, const char *path, unsigned args)
{
        size_t mark;

        if (args > 7) /* MethodFlags keep the count in 3 bits */
                aml_fail(a, -EINVAL);
        aml_byte(a, AML_METHOD_OP);
        mark = a->len;
        aml_name_string(a, path);
        aml_byte(a, (uint8_t)(args & 7)); /* NotSerialized, SyncLevel 0 */
        return mark;
}

void aml_method_end(struct aml *a, size_t mark)
{
        aml_pkg_end(a, mark);
}

void aml_notify(struct aml *a, const char *path, uint64_t value)
{
        aml_byte(a, AML_NOTIFY_OP);
        aml_name_string(a, path);
        aml_integer(a, value);
}

size_t aml_restemplate_begin(struct aml *a)
{
        aml_byte(a, AML_BUFFER_OP);
        return a->len;
}

void aml_restemplate_end(struct aml *a, size_t mark)
{
        /* A zero checksum means "treat as valid", which is what ASL compilers emit. */
        static const uint8_t end_tag[] = {AML_RES_END_TAG, 0x00};
        uint8_t size[9];

        aml_bytes(a, end_tag, sizeof(end_tag));
        if (a->err)
                return;
        aml_insert(a, mark, size, aml_encode_integer(a->len - mark, size));
        aml_pkg_end(a, mark);
}

void aml_res_io16(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
        uint8_t d[8];

        d[0] = AML_RES_IO;
        d[1] = 0x01; /* decodes 16 address bits */
        put_le16(d + 2, min);
        put_le16(d + 4, max);
        d[6] = align;
        d[7] = len;
        aml_bytes(a, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
        uint8_t d[3];

        if (irq > 15) {
                aml_fail(a, -EINVAL);
                return;
        }
        d[0] = AML_RES_IRQ_NOFLAGS;
        put_le16(d + 1, (uint16_t)(1u << irq));
        aml_bytes(a, d, sizeof(d));
}

void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t len)
{
        uint8_t d[12];

        d[0] = AML_RES_MEMORY32_FIXED;
        put_le16(d + 1, 9);
        d[3] = writable ? 0x01 : 0x00;
        put_le32(d + 4, base);
        put_le32(d + 8, len);
        aml_bytes(a, d, sizeof(d));
}

void aml_res_interrupt(struct aml *a, unsigned flags, uint32_t gsi)
{
        uint8_t d[9];

        d[0] = AML_RES_EXT_INTERRUPT;
        put_le16(d + 1, 6); /* flags, count and one interrupt; no ResourceSource */
        d[3] = (uint8_t)flags;
        d[4] = 1;
        put_le32(d + 5, gsi);
        aml_bytes(a, d, sizeof(d));
}
