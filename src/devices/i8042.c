/*
 * i8042 keyboard controller with empty PS/2 ports. Command semantics follow the IBM PC/AT
 * technical reference and what Linux's drivers/input/serio/i8042.c expects during its probe:
 * every command the probe sends gets its answer at once, so no probe step waits for a
 * timeout except the AUX IRQ delivery test (there is no IRQ 12).
 */
#include "devices/i8042.h"

#include <errno.h>
#include <string.h>

#include "lib/log.h"

/* Status register */
#define STR_OBF 0x01
#define STR_IBF 0x02
#define STR_SYS 0x04
#define STR_CMD 0x08     /* last write went to the command port */
#define STR_UNLOCKED 0x10 /* keyboard not inhibited by the key lock */
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40
#define STR_LATCHED (STR_AUXDATA | STR_TIMEOUT | STR_CMD)

/* Command byte (CTR) */
#define CTR_KBDINT 0x01
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40
/* What a PC BIOS leaves: translation on, keyboard interrupt on, self-test passed, no mouse. */
#define CTR_DEFAULT (CTR_XLATE | CTR_AUXDIS | CTR_SYS | CTR_KBDINT)

/* Output port: bit 0 is the CPU reset line (active low), bit 1 the A20 gate. */
#define OUTPORT_RESET_INACTIVE 0x01
#define OUTPORT_A20 0x02
#define OUTPORT_DEFAULT (OUTPORT_RESET_INACTIVE | OUTPORT_A20)

/* Answer from a PS/2 port with no device behind it ("resend", with the timeout status). */
#define NO_DEVICE_REPLY 0xfe

static struct log_ratelimit unknown_cmd_rl;

static int irq_output(const struct i8042 *k)
{
	/* Mouse data would go to IRQ 12, which this machine does not wire. */
	return k->obf && !(k->status_flags & STR_AUXDATA) && (k->ram[0] & CTR_KBDINT);
}

static void update_irq(struct i8042 *k)
{
	int level = irq_output(k);

	if (level != k->irq_level) {
		k->irq_level = level;
		irq_line_set(&k->kbd_irq, level);
	}
}

/* One-byte output buffer, as on the real part: a new byte replaces an unread one. */
static void put_output(struct i8042 *k, uint8_t byte, uint8_t flags)
{
	k->out = byte;
	k->obf = true;
	k->status_flags = (k->status_flags & STR_CMD) | flags;
}

static uint8_t status(const struct i8042 *k)
{
	uint8_t st = STR_UNLOCKED | (k->status_flags & STR_LATCHED);

	if (k->obf)
		st |= STR_OBF;
	if (k->ram[0] & CTR_SYS)
		st |= STR_SYS;
	/* Input is consumed as it is written, so IBF is never set and writers never wait. */
	return st;
}

/* Returns true if the guest asked for a CPU reset. */
static bool write_output_port(struct i8042 *k, uint8_t val)
{
	k->output_port = val;
	/* A20 is always enabled on this machine; the gate bit is stored but has no effect. */
	return !(val & OUTPORT_RESET_INACTIVE);
}

/* Returns true if the guest asked for a CPU reset. */
static bool command(struct i8042 *k, uint8_t cmd)
{
	k->pending_cmd = 0;
	if (cmd >= 0x20 && cmd <= 0x3f) {
		put_output(k, k->ram[cmd & 0x1f], 0);
		return false;
	}
	if ((cmd >= 0x60 && cmd <= 0x7f) || cmd == 0xd1 || cmd == 0xd2 || cmd == 0xd3 || cmd == 0xd4) {
		k->pending_cmd = cmd; /* its parameter follows on the data port */
		return false;
	}
	if (cmd >= 0xf0) /* pulse output lines: a 0 bit in the low nibble pulses that line */
		return !(cmd & 0x01);

	switch (cmd) {
	case 0xa7: /* disable the AUX port */
		k->ram[0] |= CTR_AUXDIS;
		break;
	case 0xa8: /* enable the AUX port */
		k->ram[0] &= ~CTR_AUXDIS;
		break;
	case 0xa9: /* AUX interface test: the lines are fine, nothing is plugged in */
		put_output(k, 0x00, 0);
		break;
	case 0xaa: /* controller self-test */
		k->ram[0] |= CTR_SYS;
		put_output(k, 0x55, 0);
		break;
	case 0xab: /* keyboard interface test */
		put_output(k, 0x00, 0);
		break;
	case 0xad: /* disable the keyboard port */
		k->ram[0] |= CTR_KBDDIS;
		break;
	case 0xae: /* enable the keyboard port */
		k->ram[0] &= ~CTR_KBDDIS;
		break;
	case 0xc0: /* read input port: keyboard not inhibited */
		put_output(k, 0x80, 0);
		break;
	case 0xd0: /* read output port */
		put_output(k, k->output_port, 0);
		break;
	case 0xdd: /* A20 off / on (HP Vectra); A20 stays on */
	case 0xdf:
		break;
	default:
		log_warn_ratelimited(&unknown_cmd_rl, "i8042", "guest sent unknown controller command 0x%02x",
				     cmd);
		break;
	}
	return false;
}

/* Returns true if the guest asked for a CPU reset. */
static bool data_write(struct i8042 *k, uint8_t val)
{
	uint8_t cmd = k->pending_cmd;

	k->pending_cmd = 0;
	if (cmd >= 0x60 && cmd <= 0x7f) {
		k->ram[cmd & 0x1f] = val;
		return false;
	}
	switch (cmd) {
	case 0xd1:
		return write_output_port(k, val);
	case 0xd2: /* as if the keyboard had sent it */
		put_output(k, val, 0);
		return false;
	case 0xd3: /* as if the mouse had sent it */
		put_output(k, val, STR_AUXDATA);
		return false;
	case 0xd4: /* to the mouse, which is absent */
		put_output(k, NO_DEVICE_REPLY, STR_AUXDATA | STR_TIMEOUT);
		return false;
	default: /* to the keyboard, which is absent */
		put_output(k, NO_DEVICE_REPLY, STR_TIMEOUT);
		return false;
	}
}

static void i8042_data_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct i8042 *k = dev;
	(void)offset;

	pthread_mutex_lock(&k->lock);
	/* Reading an empty buffer returns the last byte again, like the real part. */
	uint8_t val = k->out;
	k->obf = false;
	k->status_flags &= ~(STR_AUXDATA | STR_TIMEOUT);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	memset(data, 0xff, len);
	*(uint8_t *)data = val;
}

static void i8042_data_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct i8042 *k = dev;
	(void)offset;
	(void)len;

	pthread_mutex_lock(&k->lock);
	k->status_flags &= ~STR_CMD;
	bool reset = data_write(k, *(const uint8_t *)data);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	/* Outside the lock: the handler may well reset this device. */
	if (reset && k->on_reset)
		k->on_reset(k->opaque);
}

static void i8042_cmd_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct i8042 *k = dev;
	(void)offset;

	pthread_mutex_lock(&k->lock);
	uint8_t st = status(k);
	pthread_mutex_unlock(&k->lock);
	memset(data, 0xff, len);
	*(uint8_t *)data = st;
}

static void i8042_cmd_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct i8042 *k = dev;
	(void)offset;
	(void)len;

	pthread_mutex_lock(&k->lock);
	k->status_flags |= STR_CMD;
	bool reset = command(k, *(const uint8_t *)data);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	if (reset && k->on_reset)
		k->on_reset(k->opaque);
}

static void reset_locked(struct i8042 *k)
{
	memset(k->ram, 0, sizeof(k->ram));
	k->ram[0] = CTR_DEFAULT;
	k->out = 0;
	k->obf = false;
	k->status_flags = 0;
	k->pending_cmd = 0;
	k->output_port = OUTPORT_DEFAULT;
	update_irq(k);
}

static void i8042_reset(void *dev)
{
	struct i8042 *k = dev;

	pthread_mutex_lock(&k->lock);
	reset_locked(k);
	pthread_mutex_unlock(&k->lock);
}

void i8042_init(struct i8042 *k, struct irq_line kbd_irq, void (*on_reset)(void *opaque),
		void *opaque)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->kbd_irq = kbd_irq;
	k->on_reset = on_reset;
	k->opaque = opaque;
	reset_locked(k);
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

/* Snapshot layout, version 1: single bytes only, so no padding or byte order. */
struct i8042_saved {
	uint8_t version;
	uint8_t ram[32];
	uint8_t out, obf, status_flags, pending_cmd, output_port;
};
#define I8042_SAVED_VERSION 1

static long i8042_save(void *dev, void *buf, size_t cap)
{
	struct i8042 *k = dev;
	struct i8042_saved st;

	if (cap < sizeof(st))
		return -ENOSPC;
	pthread_mutex_lock(&k->lock);
	st.version = I8042_SAVED_VERSION;
	memcpy(st.ram, k->ram, sizeof(st.ram));
	st.out = k->out;
	st.obf = k->obf;
	st.status_flags = k->status_flags;
	st.pending_cmd = k->pending_cmd;
	st.output_port = k->output_port;
	pthread_mutex_unlock(&k->lock);
	memcpy(buf, &st, sizeof(st));
	return sizeof(st);
}

static int i8042_load(void *dev, const void *buf, size_t len)
{
	struct i8042 *k = dev;
	struct i8042_saved st;

	if (len != sizeof(st))
		return -EINVAL;
	memcpy(&st, buf, sizeof(st));
	if (st.version != I8042_SAVED_VERSION || st.obf > 1 || (st.status_flags & ~STR_LATCHED))
		return -EINVAL;

	pthread_mutex_lock(&k->lock);
	memcpy(k->ram, st.ram, sizeof(k->ram));
	k->out = st.out;
	k->obf = st.obf;
	k->status_flags = st.status_flags;
	k->pending_cmd = st.pending_cmd;
	k->output_port = st.output_port;
	/* Drive the line to the loaded state whatever it was before. */
	k->irq_level = irq_output(k);
	irq_line_set(&k->kbd_irq, k->irq_level);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* The command port shares the struct; the data port's ops carry the state. */
static void no_reset(void *dev)
{
	(void)dev;
}

static long no_save(void *dev, void *buf, size_t cap)
{
	(void)dev;
	(void)buf;
	(void)cap;
	return 0;
}

static int no_load(void *dev, const void *buf, size_t len)
{
	(void)dev;
	(void)buf;
	return len == 0 ? 0 : -EINVAL;
}

const struct device_ops i8042_ops = {
	.name = "i8042",
	.read = i8042_data_read,
	.write = i8042_data_write,
	.reset = i8042_reset,
	.save = i8042_save,
	.load = i8042_load,
};

const struct device_ops i8042_cmd_ops = {
	.name = "i8042-cmd",
	.read = i8042_cmd_read,
	.write = i8042_cmd_write,
	.reset = no_reset,
	.save = no_save,
	.load = no_load,
};
