#include "aml.h"

#include "str.h"

#define SDT_HEADER_LEN 36

#define OP_ZERO      0x00
#define OP_ONE       0x01
#define OP_ALIAS     0x06
#define OP_NAME      0x08
#define OP_BYTE      0x0a
#define OP_WORD      0x0b
#define OP_DWORD     0x0c
#define OP_STRING    0x0d
#define OP_QWORD     0x0e
#define OP_SCOPE     0x10
#define OP_BUFFER    0x11
#define OP_PACKAGE   0x12
#define OP_VARPKG    0x13
#define OP_METHOD    0x14
#define OP_EXTERNAL  0x15
#define OP_EXT       0x5b
#define OP_IF        0xa0
#define OP_ELSE      0xa1
#define OP_WHILE     0xa2
#define OP_ONES      0xff
#define EXT_MUTEX    0x01
#define EXT_EVENT    0x02
#define EXT_REVISION 0x30
#define EXT_REGION   0x80
#define EXT_FIELD    0x81
#define EXT_DEVICE   0x82
#define EXT_PROC     0x83
#define EXT_POWER    0x84
#define EXT_THERMAL  0x85
#define EXT_IDXFIELD 0x86
#define EXT_BNKFIELD 0x87

#define RES_END_TAG      0x0f /* small item type */
#define RES_IRQ          0x04 /* small item type */
#define RES_MEMORY32     0x85
#define RES_MEMORY32_FIX 0x86
#define RES_EXT_IRQ      0x89

struct cursor {
        const uint8_t *p, *end;
        bool bad;
};

/* The _HID the walk collects (aml_find_hid). */
static const char *want_hid = "LNRO0005";

/* What a Name declaration held, for the names we look at. */
struct value {
        enum { V_NONE, V_INT, V_STRING, V_BUFFER, V_PACKAGE } kind;
        uint64_t i;
        uint64_t pkg[2];     /* V_PACKAGE: its first integers (len says how many) */
        const uint8_t *data; /* string (NUL-terminated) or buffer bytes */
        uint32_t len;
};

static bool take(struct cursor *c, uint32_t n)
{
        if (c->bad || (uint64_t)(c->end - c->p) < n) {
                c->bad = true;
                return false;
        }
        c->p += n;
        return true;
}

/* PkgLength: returns the end of the package (the length counts its own bytes). */
static const uint8_t *pkg_end(struct cursor *c)
{
        const uint8_t *start = c->p;
        uint32_t lead, len, extra;

        if (!take(c, 1))
                return c->end;
        lead = start[0];
        extra = lead >> 6;
        if (!extra) {
                len = lead & 0x3f;
        } else {
                if (!take(c, extra))
                        return c->end;
                len = lead & 0x0f;
                for (uint32_t i = 0; i < extra; i++)
                        len |= (uint32_t)start[1 + i] << (4 + 8 * i);
        }
        if (len < 1 + extra || len > (uint64_t)(c->end - start)) {
                c->bad = true;
                return c->end;
        }
        return start + len;
}

static bool name_char(uint8_t ch, bool first)
{
        return ch == '_' || (ch >= 'A' && ch <= 'Z') || (!first && ch >= '0' && ch <= '9');
}

/* NameString; copies its last NameSeg to seg (or "" for NullName). */
static void name_string(struct cursor *c, char seg[5])
{
        uint32_t segs = 1;

        seg[0] = '\0';
        if (c->p < c->end && *c->p == '\\')
                take(c, 1);
        else
                while (c->p < c->end && *c->p == '^')
                        take(c, 1);
        if (c->p >= c->end) {
                c->bad = true;
                return;
        }
        if (*c->p == 0x00) {
                take(c, 1);
                return;
        }
        if (*c->p == 0x2e) {
                take(c, 1);
                segs = 2;
        } else if (*c->p == 0x2f) {
                if (!take(c, 2))
                        return;
                segs = c->p[-1];
        }
        for (uint32_t i = 0; i < segs && !c->bad; i++) {
                const uint8_t *s = c->p;

                if (!take(c, 4))
                        return;
                for (int k = 0; k < 4; k++) {
                        if (!name_char(s[k], k == 0)) {
                                c->bad = true;
                                return;
                        }
                        seg[k] = (char)s[k];
                }
                seg[4] = '\0';
        }
}

/* A constant integer (the only TermArgs this walker evaluates). */
static bool integer(struct cursor *c, uint64_t *v)
{
        const uint8_t *p = c->p;
        uint32_t n = 0;

        if (!take(c, 1))
                return false;
        switch (p[0]) {
        case OP_ZERO:
                *v = 0;
                return true;
        case OP_ONE:
                *v = 1;
                return true;
        case OP_ONES:
                *v = ~0ull;
                return true;
        case OP_BYTE:
                n = 1;
                break;
        case OP_WORD:
                n = 2;
                break;
        case OP_DWORD:
                n = 4;
                break;
        case OP_QWORD:
                n = 8;
                break;
        case OP_EXT:
                if (take(c, 1) && p[1] == EXT_REVISION) {
                        *v = 0;
                        return true;
                }
                c->bad = true;
                return false;
        default:
                c->bad = true;
                return false;
        }
        if (!take(c, n))
                return false;
        *v = 0;
        for (uint32_t i = 0; i < n; i++)
                *v |= (uint64_t)p[1 + i] << (8 * i);
        return true;
}

/* DataRefObject of a Name declaration. */
static void data_object(struct cursor *c, struct value *v)
{
        const uint8_t *end;

        v->kind = V_NONE;
        if (c->p >= c->end) {
                c->bad = true;
                return;
        }
        switch (*c->p) {
        case OP_STRING:
                take(c, 1);
                v->data = c->p;
                while (c->p < c->end && *c->p)
                        c->p++;
                v->len = (uint32_t)(c->p - v->data);
                if (take(c, 1))
                        v->kind = V_STRING;
                return;
        case OP_BUFFER: {
                uint64_t size;
                struct cursor in;

                take(c, 1);
                end = pkg_end(c);
                in = (struct cursor){c->p, end, false};
                if (!c->bad && integer(&in, &size)) {
                        v->kind = V_BUFFER;
                        v->data = in.p;
                        v->len = (uint32_t)(end - in.p);
                        if (size < v->len)
                                v->len = (uint32_t)size;
                }
                c->p = end;
                return;
        }
        case OP_PACKAGE: {
                struct cursor in;

                take(c, 1);
                end = pkg_end(c);
                in = (struct cursor){c->p, end, false};
                if (!c->bad && take(&in, 1)) { /* NumElements */
                        v->kind = V_PACKAGE;
                        v->len = 0;
                        while (v->len < 2 && integer(&in, &v->pkg[v->len]))
                                v->len++;
                }
                c->p = end;
                return;
        }
        case OP_VARPKG:
                take(c, 1);
                c->p = pkg_end(c);
                return;
        default:
                if (integer(c, &v->i))
                        v->kind = V_INT;
                return;
        }
}

static uint32_t le32(const uint8_t *p)
{
        return load_le32(p);
}

/* Reads the window and the first interrupt from a resource template. */
static bool parse_crs(const struct value *crs, struct aml_virtio *d)
{
        const uint8_t *p = crs->data, *end = crs->data + crs->len;
        bool window = false;

        while (p < end) {
                uint8_t tag = p[0];
                uint32_t len;
                const uint8_t *data;

                if (tag & 0x80) {
                        if (end - p < 3)
                                break;
                        len = load_le16(p + 1);
                        data = p + 3;
                } else {
                        len = tag & 7u;
                        data = p + 1;
                        if (((tag >> 3) & 0x0f) == RES_END_TAG)
                                break;
                }
                if ((uint64_t)(end - data) < len)
                        break;
                if (tag == RES_MEMORY32_FIX && len >= 9 && !window) {
                        d->base = le32(data + 1);
                        d->size = le32(data + 5);
                        window = true;
                } else if (tag == RES_MEMORY32 && len >= 17 && !window) {
                        d->base = le32(data + 1);  /* minimum */
                        d->size = le32(data + 13); /* length */
                        window = true;
                } else if (tag == RES_EXT_IRQ && len >= 6 && data[1] >= 1 && !d->has_irq) {
                        d->gsi = le32(data + 2);
                        d->level = !(data[0] & 2);
                        d->active_low = data[0] & 4;
                        d->has_irq = true;
                } else if (!(tag & 0x80) && ((tag >> 3) & 0x0f) == RES_IRQ && len >= 2 &&
                           !d->has_irq) {
                        uint16_t mask = load_le16(data);

                        for (uint32_t i = 0; i < 16; i++) {
                                if (mask & (1u << i)) {
                                        d->gsi = i;
                                        d->has_irq = true;
                                        break;
                                }
                        }
                        /* Without the flags byte: edge, active high. */
                        d->level = len >= 3 && !(data[2] & 1);
                        d->active_low = len >= 3 && (data[2] & 8);
                }
                p = data + len;
        }
        return window;
}

static void term_list(struct cursor *c, struct aml_result *r, unsigned depth, const char *dev,
                      const uint8_t *table);

/* A Device's body: its own _HID/_CRS, and nested objects. */
static void device(struct cursor *c, struct aml_result *r, unsigned depth, const uint8_t *table)
{
        const uint8_t *end = pkg_end(c);
        char seg[5];
        struct cursor body;

        name_string(c, seg);
        if (c->bad)
                return;
        r->devices++;
        body = (struct cursor){c->p, end, false};
        term_list(&body, r, depth + 1, seg, table);
        c->p = end;
}

struct dev_names {
        bool hid_lnro;
        bool has_crs;
        struct value crs;
        bool hid_ged, cid_vmgenid;
        struct value addr;
};

static void skip_pkg(struct cursor *c)
{
        c->p = pkg_end(c);
}

static void term_list(struct cursor *c, struct aml_result *r, unsigned depth, const char *dev,
                      const uint8_t *table)
{
        struct dev_names names = {0};
        char seg[5];

        if (depth > AML_MAX_DEPTH)
                return;
        while (c->p < c->end && !c->bad) {
                const uint8_t *at = c->p;
                uint8_t op = *c->p;
                uint64_t ignored;

                take(c, 1);
                switch (op) {
                case OP_SCOPE: {
                        const uint8_t *end = pkg_end(c);
                        struct cursor body;

                        name_string(c, seg);
                        if (c->bad)
                                break;
                        body = (struct cursor){c->p, end, false};
                        term_list(&body, r, depth + 1, NULL, table);
                        c->p = end;
                        break;
                }
                case OP_NAME: {
                        struct value v;

                        name_string(c, seg);
                        data_object(c, &v);
                        if (c->bad || !dev)
                                break;
                        if (str_eq(seg, "_HID")) {
                                names.hid_lnro =
                                    v.kind == V_STRING && str_eq((const char *)v.data, want_hid);
                                names.hid_ged =
                                    v.kind == V_STRING && str_eq((const char *)v.data, "ACPI0013");
                        } else if (str_eq(seg, "_CID"))
                                names.cid_vmgenid = v.kind == V_STRING &&
                                                    str_eq((const char *)v.data, "VM_Gen_Counter");
                        else if (str_eq(seg, "ADDR"))
                                names.addr = v;
                        else if (str_eq(seg, "_CRS") && v.kind == V_BUFFER) {
                                names.has_crs = true;
                                names.crs = v;
                        }
                        break;
                }
                case OP_METHOD:
                case OP_IF:
                case OP_ELSE:
                case OP_WHILE:
                        skip_pkg(c);
                        break;
                case OP_ALIAS:
                        name_string(c, seg);
                        name_string(c, seg);
                        break;
                case OP_EXTERNAL:
                        name_string(c, seg);
                        take(c, 2);
                        break;
                case OP_EXT: {
                        uint8_t ext = c->p < c->end ? *c->p : 0;

                        take(c, 1);
                        switch (ext) {
                        case EXT_DEVICE:
                                device(c, r, depth, table);
                                break;
                        case EXT_FIELD:
                        case EXT_IDXFIELD:
                        case EXT_BNKFIELD:
                        case EXT_PROC:
                        case EXT_POWER:
                        case EXT_THERMAL:
                                skip_pkg(c);
                                break;
                        case EXT_REGION:
                                name_string(c, seg);
                                take(c, 1);
                                integer(c, &ignored);
                                integer(c, &ignored);
                                break;
                        case EXT_MUTEX:
                                name_string(c, seg);
                                take(c, 1);
                                break;
                        case EXT_EVENT:
                                name_string(c, seg);
                                break;
                        default:
                                c->bad = true;
                                break;
                        }
                        break;
                }
                default:
                        c->bad = true;
                        break;
                }
                if (c->bad && !r->stopped) {
                        r->stopped = (uint32_t)(at - table);
                        r->stopped_op = *at;
                }
        }
        if (dev && names.cid_vmgenid && names.addr.kind == V_PACKAGE && names.addr.len == 2 &&
            !r->vmgenid) {
                r->vmgenid = true;
                r->vmgenid_addr = (names.addr.pkg[0] & 0xffffffffu) | names.addr.pkg[1] << 32;
        }
        if (dev && names.hid_ged && names.has_crs && !r->ged) {
                memcpy(r->ged_irq.name, dev, 5);
                parse_crs(&names.crs, &r->ged_irq); /* an interrupt, no window */
                r->ged = r->ged_irq.has_irq;
        }
        if (dev && names.hid_lnro) {
                struct aml_virtio d = {0};

                memcpy(d.name, dev, 5);
                if (names.has_crs && parse_crs(&names.crs, &d)) {
                        if (r->count < AML_MAX_DEVICES)
                                r->dev[r->count] = d;
                        r->count++;
                } else {
                        r->bad_crs++;
                }
        }
}

void aml_find_hid(uint64_t table, const char *hid, struct aml_result *out)
{
        const uint8_t *t = (const uint8_t *)(uintptr_t)table;
        struct cursor c = {t + SDT_HEADER_LEN, t + load_le32(t + 4), false};

        memset(out, 0, sizeof(*out));
        want_hid = hid;
        term_list(&c, out, 0, NULL, t);
        want_hid = "LNRO0005";
}

void aml_find_virtio(uint64_t table, struct aml_result *out)
{
        aml_find_hid(table, "LNRO0005", out);
}
