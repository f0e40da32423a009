#include "i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Status register */
#define SR_OBF  0x01 /* output buffer full */
#define SR_SYS  0x04 /* system flag: self-test passed */
#define SR_CMD  0x08 /* last write was to the command port */
#define SR_KEYL 0x10 /* keyboard not inhibited */

/* Controller configuration byte */
#define CB_KBD_INT 0x01
#define CB_SYS     0x04
#define CB_KBD_DIS 0x10
#define CB_AUX_DIS 0x20
#define CB_XLATE   0x40

/* Controller commands */
#define CMD_READ_CTR       0x20
#define CMD_WRITE_CTR      0x60
#define CMD_AUX_DIS        0xa7
#define CMD_AUX_EN         0xa8
#define CMD_AUX_TEST       0xa9
#define CMD_SELF_TEST      0xaa
#define CMD_KBD_TEST       0xab
#define CMD_KBD_DIS        0xad
#define CMD_KBD_EN         0xae
#define CMD_READ_OUTP      0xd0
#define CMD_WRITE_OUTP     0xd1
#define CMD_WRITE_KBD      0xd2
#define CMD_WRITE_AUX_OBUF 0xd3
#define CMD_WRITE_AUX      0xd4
#define CMD_RESET_CPU      0xfe

/* Keyboard commands and replies */
#define KBD_SET_LEDS  0xed
#define KBD_ECHO      0xee
#define KBD_SCANSET   0xf0
#define KBD_GET_ID    0xf2
#define KBD_TYPEMATIC 0xf3
#define KBD_ENABLE    0xf4
#define KBD_DISABLE   0xf5
#define KBD_DEFAULTS  0xf6
#define KBD_RESET     0xff
#define KBD_ACK       0xfa
#define KBD_RESEND    0xfe
#define KBD_BAT_OK    0xaa

#define OBUF_SIZE 16

struct i8042 {
        pthread_mutex_t lock;
        struct i8042_config cfg;
        uint8_t ctr;
        uint8_t status;
        uint8_t outp;
        uint8_t pending_cmd;     /* controller command waiting for its data byte */
        uint8_t pending_kbd_cmd; /* keyboard command waiting for its argument */
        uint8_t scanset;
        uint8_t obuf[OBUF_SIZE];
        unsigned ohead, ocount;
        uint64_t resets;
};

int i8042_create(const struct i8042_config *cfg, struct i8042 **out)
{
        struct i8042 *k = calloc(1, sizeof(*k));

        if (!k)
                return -ENOMEM;
        pthread_mutex_init(&k->lock, NULL);
        k->cfg = *cfg;
        /* The state a PC BIOS leaves: keyboard interrupt on, translation to set 1 on. */
        k->ctr = CB_KBD_INT | CB_SYS | CB_XLATE | CB_AUX_DIS;
        k->status = SR_SYS | SR_KEYL;
        k->outp = 0x01; /* reset line not asserted */
        k->scanset = 2;
        *out = k;
        return 0;
}

void i8042_destroy(struct i8042 *k)
{
        if (!k)
                return;
        pthread_mutex_destroy(&k->lock);
        free(k);
}

static unsigned obuf_space(const struct i8042 *k)
{
        return OBUF_SIZE - k->ocount;
}

/* Caller holds the lock; returns true if the guest should get a keyboard interrupt. */
static bool push(struct i8042 *k, uint8_t b)
{
        if (!obuf_space(k))
                return false;
        k->obuf[(k->ohead + k->ocount) % OBUF_SIZE] = b;
        k->ocount++;
        return (k->ctr & CB_KBD_INT) != 0;
}

static bool pop(struct i8042 *k, uint8_t *b)
{
        if (!k->ocount)
                return false;
        *b = k->obuf[k->ohead];
        k->ohead = (k->ohead + 1) % OBUF_SIZE;
        k->ocount--;
        return true;
}

/* What set 1, 2 or 3 looks like after the controller's set-2-to-set-1 translation. */
static uint8_t translated_set(uint8_t set)
{
        return set == 1 ? 0x43 : set == 2 ? 0x41 : 0x3f;
}

/* Returns true when the keyboard queued a reply that should interrupt. */
static bool kbd_command(struct i8042 *k, uint8_t v)
{
        bool irq = false;
        uint8_t arg_of = k->pending_kbd_cmd;

        k->pending_kbd_cmd = 0;
        if (arg_of) {
                if (arg_of == KBD_SCANSET) {
                        irq = push(k, KBD_ACK);
                        /* The set number is a keyboard byte: translated when XLATE is on. */
                        if (v == 0)
                                irq |= push(k, (k->ctr & CB_XLATE) ? translated_set(k->scanset)
                                                                   : k->scanset);
                        else if (v <= 3)
                                k->scanset = v;
                } else {
                        irq = push(k, KBD_ACK); /* LEDs, typematic rate */
                }
                return irq;
        }
        switch (v) {
        case KBD_SET_LEDS:
        case KBD_TYPEMATIC:
        case KBD_SCANSET:
                k->pending_kbd_cmd = v;
                return push(k, KBD_ACK);
        case KBD_ECHO:
                return push(k, KBD_ECHO);
        case KBD_GET_ID:
                irq = push(k, KBD_ACK);
                irq |= push(k, 0xab);
                /* MF2 keyboard; its 0x83 goes through the controller's translation. */
                irq |= push(k, (k->ctr & CB_XLATE) ? 0x41 : 0x83);
                return irq;
        case KBD_ENABLE:
        case KBD_DISABLE:
        case KBD_DEFAULTS:
                return push(k, KBD_ACK);
        case KBD_RESET:
                k->scanset = 2;
                irq = push(k, KBD_ACK);
                irq |= push(k, KBD_BAT_OK);
                return irq;
        default:
                return push(k, KBD_RESEND);
        }
}

/* Handles a write to the command port; returns true for an interrupt, sets *reset. */
static bool controller_command(struct i8042 *k, uint8_t cmd, bool *reset)
{
        switch (cmd) {
        case CMD_READ_CTR:
                return push(k, k->ctr);
        case CMD_WRITE_CTR:
        case CMD_WRITE_OUTP:
        case CMD_WRITE_KBD:
        case CMD_WRITE_AUX_OBUF:
        case CMD_WRITE_AUX:
                k->pending_cmd = cmd;
                return false;
        case CMD_AUX_DIS:
                k->ctr |= CB_AUX_DIS;
                return false;
        case CMD_AUX_EN:
                k->ctr &= (uint8_t)~CB_AUX_DIS;
                return false;
        case CMD_AUX_TEST:
        case CMD_KBD_TEST:
                return push(k, 0x00);
        case CMD_SELF_TEST:
                return push(k, 0x55);
        case CMD_KBD_DIS:
                k->ctr |= CB_KBD_DIS;
                return false;
        case CMD_KBD_EN:
                k->ctr &= (uint8_t)~CB_KBD_DIS;
                return false;
        case CMD_READ_OUTP:
                return push(k, k->outp);
        default:
                /* 0xf0-0xff pulse output lines; bit 0 low pulses the CPU reset line. */
                if ((cmd & 0xf0) == 0xf0 && !(cmd & 0x01))
                        *reset = true;
                return false;
        }
}

static bool data_write(struct i8042 *k, uint8_t v, bool *reset)
{
        uint8_t cmd = k->pending_cmd;

        k->pending_cmd = 0;
        switch (cmd) {
        case CMD_WRITE_CTR:
                k->ctr = v;
                k->status = (uint8_t)((k->status & ~SR_SYS) | (v & CB_SYS));
                return false;
        case CMD_WRITE_OUTP:
                k->outp = v;
                if (!(v & 0x01))
                        *reset = true;
                return false;
        case CMD_WRITE_KBD:
                return push(k, v);
        case CMD_WRITE_AUX_OBUF:
        case CMD_WRITE_AUX:
                return false; /* no mouse attached */
        default:
                return kbd_command(k, v);
        }
}

static void finish(struct i8042 *k, bool irq, bool reset)
{
        if (irq)
                irq_line_pulse(&k->cfg.kbd_irq);
        if (reset) {
                k->resets++;
                pthread_mutex_unlock(&k->lock);
                if (k->cfg.reset)
                        k->cfg.reset(k->cfg.opaque);
                return;
        }
        pthread_mutex_unlock(&k->lock);
}

static void data_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct i8042 *k = opaque;
        bool more;
        uint8_t b = 0;

        (void)off;
        memset(data, 0xff, len);
        pthread_mutex_lock(&k->lock);
        /* Reading with an empty buffer returns the last byte on hardware; 0 is close enough
         * and never looks like a new key. */
        if (!pop(k, &b))
                b = 0;
        data[0] = b;
        more = k->ocount && (k->ctr & CB_KBD_INT);
        finish(k, more, false);
}

static void data_write_op(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct i8042 *k = opaque;
        bool reset = false, irq;

        (void)off;
        (void)len;
        pthread_mutex_lock(&k->lock);
        k->status &= (uint8_t)~SR_CMD;
        irq = data_write(k, data[0], &reset);
        finish(k, irq, reset);
}

static void status_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct i8042 *k = opaque;

        (void)off;
        memset(data, 0xff, len);
        pthread_mutex_lock(&k->lock);
        data[0] = (uint8_t)(k->status | (k->ocount ? SR_OBF : 0));
        pthread_mutex_unlock(&k->lock);
}

static void cmd_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct i8042 *k = opaque;
        bool reset = false, irq;

        (void)off;
        (void)len;
        pthread_mutex_lock(&k->lock);
        k->status |= SR_CMD;
        irq = controller_command(k, data[0], &reset);
        finish(k, irq, reset);
}

const struct bus_ops *i8042_data_ops(void)
{
        static const struct bus_ops ops = {.read = data_read, .write = data_write_op};
        return &ops;
}

const struct bus_ops *i8042_cmd_ops(void)
{
        static const struct bus_ops ops = {.read = status_read, .write = cmd_write};
        return &ops;
}

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
        /* Presses then releases of Left Ctrl, Left Alt and Delete (an extended key). */
        static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
        static const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0,
                                       0x71, 0xf0, 0x11, 0xf0, 0x14};
        const uint8_t *seq;
        size_t n;
        bool irq = false;

        pthread_mutex_lock(&k->lock);
        /* With translation on, the controller turns the keyboard's set 2 into set 1. */
        if ((k->ctr & CB_XLATE) || k->scanset == 1) {
                seq = set1;
                n = sizeof(set1);
        } else {
                seq = set2;
                n = sizeof(set2);
        }
        if (obuf_space(k) < n) {
                pthread_mutex_unlock(&k->lock);
                return -EBUSY;
        }
        for (size_t i = 0; i < n; i++)
                irq |= push(k, seq[i]);
        finish(k, irq, false);
        return 0;
}

uint64_t i8042_reset_count(struct i8042 *k)
{
        uint64_t n;

        pthread_mutex_lock(&k->lock);
        n = k->resets;
        pthread_mutex_unlock(&k->lock);
        return n;
}

/* ---- snapshots ---- */

void i8042_save(struct i8042 *k, struct snapbuf_writer *w)
{
        pthread_mutex_lock(&k->lock);
        snapbuf_put_u8(w, k->ctr);
        snapbuf_put_u8(w, k->status);
        snapbuf_put_u8(w, k->outp);
        snapbuf_put_u8(w, k->pending_cmd);
        snapbuf_put_u8(w, k->pending_kbd_cmd);
        snapbuf_put_u8(w, k->scanset);
        snapbuf_put_u32(w, k->ocount);
        for (unsigned i = 0; i < k->ocount; i++)
                snapbuf_put_u8(w, k->obuf[(k->ohead + i) % OBUF_SIZE]);
        pthread_mutex_unlock(&k->lock);
}

int i8042_restore(struct i8042 *k, struct snapbuf_reader *r)
{
        uint8_t ctr = snapbuf_get_u8(r, "i8042 configuration byte");
        uint8_t status = snapbuf_get_u8(r, "i8042 status");
        uint8_t outp = snapbuf_get_u8(r, "i8042 output port");
        uint8_t cmd = snapbuf_get_u8(r, "i8042 pending command");
        uint8_t kbd_cmd = snapbuf_get_u8(r, "i8042 pending keyboard command");
        uint8_t scanset = snapbuf_get_u8(r, "i8042 scancode set");
        uint32_t n = snapbuf_get_count(r, OBUF_SIZE, "i8042 output buffer");
        uint8_t obuf[OBUF_SIZE];

        snapbuf_get_bytes(r, obuf, n, "i8042 output buffer");
        if (!snapbuf_ok(r))
                return -EINVAL;
        if (scanset < 1 || scanset > 3)
                return snapbuf_fail(r, "i8042", "impossible scancode set"), -EINVAL;
        pthread_mutex_lock(&k->lock);
        k->ctr = ctr;
        k->status = status;
        k->outp = outp;
        k->pending_cmd = cmd;
        k->pending_kbd_cmd = kbd_cmd;
        k->scanset = scanset;
        memcpy(k->obuf, obuf, n);
        k->ohead = 0;
        k->ocount = n;
        pthread_mutex_unlock(&k->lock);
        return 0;
}
