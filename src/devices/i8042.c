/*
 * i8042 keyboard controller with a minimal keyboard and an empty AUX port. Command semantics
 * follow the IBM PC/AT technical reference and what Linux's drivers/input/serio/i8042.c and
 * atkbd.c expect during their probes: every command gets its answer at once, so no probe step
 * waits for a timeout except the AUX IRQ delivery test (there is no IRQ 12).
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

/* Keyboard replies */
#define KBD_ACK 0xfa
#define KBD_RESEND 0xfe
#define KBD_BAT_OK 0xaa
#define KBD_ECHO 0xee
#define KBD_ID0 0xab
#define KBD_ID1 0x83 /* 0x41 once the controller translates it */

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

static void kbd_queue_clear(struct i8042 *k)
{
	k->kbd_head = 0;
	k->kbd_count = 0;
}

static bool kbd_queue_push(struct i8042 *k, uint8_t byte)
{
	if (k->kbd_count >= I8042_KBD_QUEUE)
		return false;
	k->kbd_queue[(k->kbd_head + k->kbd_count) % I8042_KBD_QUEUE] = byte;
	k->kbd_count++;
	return true;
}

/* Moves the next keyboard byte into the output buffer when it is free and the port enabled. */
static void kbd_deliver(struct i8042 *k)
{
	if (k->obf || !k->kbd_count || (k->ram[0] & CTR_KBDDIS))
		return;
	uint8_t byte = k->kbd_queue[k->kbd_head];
	k->kbd_head = (uint8_t)((k->kbd_head + 1) % I8042_KBD_QUEUE);
	k->kbd_count--;
	put_output(k, byte, 0);
}

static void kbd_reply(struct i8042 *k, const uint8_t *bytes, size_t n)
{
	/* A keyboard drops what it had not sent yet when it gets a command. */
	kbd_queue_clear(k);
	for (size_t i = 0; i < n; i++)
		kbd_queue_push(k, bytes[i]);
}

/* A byte written to the keyboard: a command, or the parameter of the previous one. */
static void kbd_write(struct i8042 *k, uint8_t val)
{
	uint8_t cmd = k->kbd_pending_cmd;
	k->kbd_pending_cmd = 0;
	if (cmd == 0xf0) { /* scancode set: 0 asks which one */
		if (val == 0) {
			/* The controller translates the answer like any other byte (1->0x43, 2->0x41, 3->0x3f). */
			static const uint8_t xlated[4] = { 0, 0x43, 0x41, 0x3f };
			uint8_t r[2] = { KBD_ACK, (k->ram[0] & CTR_XLATE) ? xlated[k->kbd_set] : k->kbd_set };
			kbd_reply(k, r, 2);
		} else if (val <= 3) {
			k->kbd_set = val;
			kbd_reply(k, (const uint8_t[]){ KBD_ACK }, 1);
		} else {
			kbd_reply(k, (const uint8_t[]){ KBD_RESEND }, 1);
		}
		return;
	}
	if (cmd == 0xed || cmd == 0xf3) { /* LEDs, typematic rate: accepted, no effect */
		kbd_reply(k, (const uint8_t[]){ KBD_ACK }, 1);
		return;
	}
	switch (val) {
	case 0xff: /* reset and self-test */
		k->kbd_set = 2;
		k->kbd_scanning = true;
		kbd_reply(k, (const uint8_t[]){ KBD_ACK, KBD_BAT_OK }, 2);
		break;
	case 0xf2: { /* identify */
		uint8_t r[3] = { KBD_ACK, KBD_ID0, (k->ram[0] & CTR_XLATE) ? 0x41 : KBD_ID1 };
		kbd_reply(k, r, 3);
		break;
	}
	case 0xed:
	case 0xf3:
	case 0xf0:
		k->kbd_pending_cmd = val;
		kbd_reply(k, (const uint8_t[]){ KBD_ACK }, 1);
		break;
	case 0xf4: /* enable scanning */
		k->kbd_scanning = true;
		kbd_reply(k, (const uint8_t[]){ KBD_ACK }, 1);
		break;
	case 0xf5: /* defaults, scanning off */
		k->kbd_scanning = false;
		k->kbd_set = 2;
		kbd_reply(k, (const uint8_t[]){ KBD_ACK }, 1);
		break;
	case 0xf6: /* defaults */
		k->kbd_set = 2;
		kbd_reply(k, (const uint8_t[]){ KBD_ACK }, 1);
		break;
	case 0xee:
		kbd_reply(k, (const uint8_t[]){ KBD_ECHO }, 1);
		break;
	case 0xf7: case 0xf8: case 0xf9: case 0xfa: case 0xfb: case 0xfc: case 0xfd:
		/* set-3 key attributes: accepted, no effect */
		kbd_reply(k, (const uint8_t[]){ KBD_ACK }, 1);
		break;
	default:
		atomic_fetch_add(&k->errors, 1);
		kbd_reply(k, (const uint8_t[]){ KBD_RESEND }, 1);
		break;
	}
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
		atomic_fetch_add(&k->errors, 1);
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
	default: /* to the keyboard */
		kbd_write(k, val);
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
	/* The next keyboard byte gets its own edge on IRQ 1, as the guest takes one byte per interrupt. */
	kbd_deliver(k);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	atomic_fetch_add_explicit(&k->accesses, 1, memory_order_relaxed);
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
	kbd_deliver(k);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	atomic_fetch_add_explicit(&k->accesses, 1, memory_order_relaxed);
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
	atomic_fetch_add_explicit(&k->accesses, 1, memory_order_relaxed);
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
	kbd_deliver(k);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	atomic_fetch_add_explicit(&k->accesses, 1, memory_order_relaxed);
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
	kbd_queue_clear(k);
	k->kbd_pending_cmd = 0;
	k->kbd_set = 2;
	k->kbd_scanning = true;
	update_irq(k);
}

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
	/* Ctrl, Alt, Delete pressed, then released in reverse order. */
	static const uint8_t set1[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	static const uint8_t set2[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14 };
	int rc = 0;

	pthread_mutex_lock(&k->lock);
	bool xlate = k->ram[0] & CTR_XLATE;
	const uint8_t *codes = xlate ? set1 : set2;
	size_t n = xlate ? sizeof(set1) : sizeof(set2);
	if (!k->kbd_scanning)
		rc = -EAGAIN;
	else if (k->kbd_count + n > I8042_KBD_QUEUE)
		rc = -ENOSPC;
	if (rc == 0) {
		for (size_t i = 0; i < n; i++)
			kbd_queue_push(k, codes[i]);
		kbd_deliver(k);
		update_irq(k);
	}
	pthread_mutex_unlock(&k->lock);
	if (rc == 0)
		atomic_fetch_add(&k->keys_injected, n);
	else
		atomic_fetch_add(&k->errors, 1);
	return rc;
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
	uint8_t kbd_queue[I8042_KBD_QUEUE];
	uint8_t kbd_head, kbd_count, kbd_pending_cmd, kbd_set, kbd_scanning;
};
#define I8042_SAVED_VERSION 2

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
	memcpy(st.kbd_queue, k->kbd_queue, sizeof(st.kbd_queue));
	st.kbd_head = k->kbd_head;
	st.kbd_count = k->kbd_count;
	st.kbd_pending_cmd = k->kbd_pending_cmd;
	st.kbd_set = k->kbd_set;
	st.kbd_scanning = k->kbd_scanning;
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
	if (st.version != I8042_SAVED_VERSION || st.obf > 1 || (st.status_flags & ~STR_LATCHED) ||
	    st.kbd_head >= I8042_KBD_QUEUE || st.kbd_count > I8042_KBD_QUEUE || st.kbd_set < 1 || st.kbd_set > 3 ||
	    st.kbd_scanning > 1 ||
	    (st.kbd_pending_cmd && st.kbd_pending_cmd != 0xed && st.kbd_pending_cmd != 0xf3 && st.kbd_pending_cmd != 0xf0))
		return -EINVAL;

	pthread_mutex_lock(&k->lock);
	memcpy(k->ram, st.ram, sizeof(k->ram));
	k->out = st.out;
	k->obf = st.obf;
	k->status_flags = st.status_flags;
	k->pending_cmd = st.pending_cmd;
	k->output_port = st.output_port;
	memcpy(k->kbd_queue, st.kbd_queue, sizeof(k->kbd_queue));
	k->kbd_head = st.kbd_head;
	k->kbd_count = st.kbd_count;
	k->kbd_pending_cmd = st.kbd_pending_cmd;
	k->kbd_set = st.kbd_set;
	k->kbd_scanning = st.kbd_scanning;
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
