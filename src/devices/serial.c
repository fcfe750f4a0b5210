/*
 * 16550A UART emulation. Register semantics follow the National Semiconductor PC16550D data
 * sheet; where a driver depends on a detail (Linux's 8250 autoconfig and its THRE re-assert
 * test), the comment says so.
 */
#include "devices/serial.h"

#include <errno.h>
#include <string.h>

/* IER bits */
#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* transmitter holding register empty */
#define IER_ELSI 0x04  /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK 0x0f

/* IIR values (interrupt source in bits 0-3) */
#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFOS_ENABLED 0xc0

/* FCR bits */
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04
#define FCR_KEPT 0xc9 /* enable, DMA mode, RX trigger level */

#define LCR_DLAB 0x80

/* MCR bits */
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

/* LSR bits */
#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

/* MSR bits */
#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80
#define MSR_DELTAS 0x0f

/* Outside loopback the line looks connected: a driver waiting for carrier or CTS proceeds. */
#define MSR_CONNECTED (MSR_DCD | MSR_DSR | MSR_CTS)

static const uint8_t rx_trigger_levels[4] = { 1, 4, 8, 14 };

static bool fifo_enabled(const struct serial *s)
{
	return s->fcr & FCR_ENABLE;
}

static unsigned int rx_capacity(const struct serial *s)
{
	return fifo_enabled(s) ? SERIAL_FIFO_SIZE : 1;
}

static uint8_t modem_status_lines(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return MSR_CONNECTED;
	/* Loopback wires the modem control outputs back to the status inputs. */
	uint8_t st = 0;
	if (s->mcr & MCR_RTS)
		st |= MSR_CTS;
	if (s->mcr & MCR_DTR)
		st |= MSR_DSR;
	if (s->mcr & MCR_OUT1)
		st |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		st |= MSR_DCD;
	return st;
}

/* Recomputes the MSR status bits after an MCR change, latching the delta bits. */
static void update_modem_status(struct serial *s)
{
	uint8_t old = s->msr & 0xf0, now = modem_status_lines(s);
	uint8_t changed = old ^ now;
	uint8_t deltas = 0;

	if (changed & MSR_CTS)
		deltas |= MSR_DCTS;
	if (changed & MSR_DSR)
		deltas |= MSR_DDSR;
	if ((old & MSR_RI) && !(now & MSR_RI)) /* trailing edge only */
		deltas |= MSR_TERI;
	if (changed & MSR_DCD)
		deltas |= MSR_DDCD;
	s->msr = now | (s->msr & MSR_DELTAS) | deltas;
}

/* The highest-priority pending interrupt source, as IIR bits 0-3. */
static uint8_t interrupt_source(const struct serial *s)
{
	if ((s->ier & IER_ELSI) && (s->lsr_errors & LSR_OE))
		return IIR_RLSI;
	if ((s->ier & IER_ERBFI) && s->rx_count > 0) {
		/*
		 * Below the trigger level real hardware waits four character times before
		 * signalling a timeout; there is no line timing here, so it is signalled at once.
		 */
		if (fifo_enabled(s) && s->rx_count < rx_trigger_levels[s->fcr >> 6])
			return IIR_TIMEOUT;
		return IIR_RDI;
	}
	if ((s->ier & IER_ETBEI) && s->thre_pending)
		return IIR_THRI;
	if ((s->ier & IER_EDSSI) && (s->msr & MSR_DELTAS))
		return IIR_MSI;
	return IIR_NO_INT;
}

static int irq_output(const struct serial *s)
{
	/* PC boards route the interrupt through OUT2, which loopback mode forces inactive. */
	bool gate = (s->mcr & MCR_OUT2) && !(s->mcr & MCR_LOOP);
	return gate && interrupt_source(s) != IIR_NO_INT;
}

static void update_irq(struct serial *s)
{
	int level = irq_output(s);

	if (level != s->irq_level) {
		s->irq_level = level;
		irq_line_set(&s->irq, level);
	}
}

static void rx_clear(struct serial *s)
{
	s->rx_head = 0;
	s->rx_count = 0;
}

static bool rx_push(struct serial *s, uint8_t byte)
{
	if (s->rx_count >= rx_capacity(s))
		return false;
	s->rx_fifo[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = byte;
	s->rx_count++;
	return true;
}

static void notify_rx_ready(struct serial *s)
{
	if (s->rx_ready_wanted && s->rx_count == 0) {
		s->rx_ready_wanted = false;
		if (s->rx_ready)
			s->rx_ready(s->rx_ready_opaque);
	}
}

static uint8_t rx_pop(struct serial *s)
{
	if (s->rx_count == 0)
		return 0;
	uint8_t byte = s->rx_fifo[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
	s->rx_count--;
	atomic_fetch_add_explicit(&s->rx_bytes, 1, memory_order_relaxed);
	notify_rx_ready(s);
	return byte;
}

static void transmit(struct serial *s, uint8_t byte)
{
	if (s->mcr & MCR_LOOP) {
		/* A byte that finds the receiver full is lost, which is what OE reports. */
		if (!rx_push(s, byte)) {
			s->lsr_errors |= LSR_OE;
			atomic_fetch_add_explicit(&s->overruns, 1, memory_order_relaxed);
		}
	} else {
		if (s->out)
			s->out(s->out_opaque, &byte, 1);
		atomic_fetch_add_explicit(&s->tx_bytes, 1, memory_order_relaxed);
	}
	/* The byte left THR at once, so THR is empty again and THRE re-asserts. */
	s->thre_pending = true;
}

static void write_fcr(struct serial *s, uint8_t val)
{
	/* Toggling the FIFO enable resets both FIFOs. */
	if ((val ^ s->fcr) & FCR_ENABLE)
		rx_clear(s);
	if (!(val & FCR_ENABLE)) {
		/* The other FCR bits are only programmed while the enable bit is written as 1. */
		s->fcr = 0;
	} else {
		if (val & FCR_CLEAR_RX)
			rx_clear(s);
		s->fcr = val & FCR_KEPT;
	}
	notify_rx_ready(s);
}

static void write_reg(struct serial *s, unsigned int reg, uint8_t val)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case SERIAL_REG_RBR_THR:
		if (dlab)
			s->dll = val;
		else
			transmit(s, val);
		break;
	case SERIAL_REG_IER:
		if (dlab) {
			s->dlm = val;
		} else {
			uint8_t old = s->ier;
			s->ier = val & IER_MASK;
			/*
			 * Enabling ETBEI while THR is empty raises a THRE interrupt at once;
			 * Linux's startup test (UART_BUG_THRE) depends on it being re-raised
			 * each time the bit goes from 0 to 1.
			 */
			if ((s->ier & IER_ETBEI) && !(old & IER_ETBEI))
				s->thre_pending = true;
		}
		break;
	case SERIAL_REG_IIR_FCR:
		write_fcr(s, val);
		break;
	case SERIAL_REG_LCR:
		s->lcr = val;
		break;
	case SERIAL_REG_MCR:
		s->mcr = val & MCR_MASK;
		update_modem_status(s);
		break;
	case SERIAL_REG_LSR:
	case SERIAL_REG_MSR:
		break; /* read-only (factory test registers on real parts) */
	case SERIAL_REG_SCR:
		s->scr = val;
		break;
	}
}

static uint8_t read_reg(struct serial *s, unsigned int reg)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t val = 0;

	switch (reg) {
	case SERIAL_REG_RBR_THR:
		val = dlab ? s->dll : rx_pop(s);
		break;
	case SERIAL_REG_IER:
		val = dlab ? s->dlm : s->ier;
		break;
	case SERIAL_REG_IIR_FCR: {
		uint8_t src = interrupt_source(s);
		/* Reading IIR acknowledges a THRE interrupt when it is the one reported. */
		if (src == IIR_THRI)
			s->thre_pending = false;
		val = src | (fifo_enabled(s) ? IIR_FIFOS_ENABLED : 0);
		break;
	}
	case SERIAL_REG_LCR:
		val = s->lcr;
		break;
	case SERIAL_REG_MCR:
		val = s->mcr;
		break;
	case SERIAL_REG_LSR:
		val = LSR_THRE | LSR_TEMT | s->lsr_errors | (s->rx_count ? LSR_DR : 0);
		s->lsr_errors = 0;
		break;
	case SERIAL_REG_MSR:
		val = s->msr;
		s->msr &= ~MSR_DELTAS;
		break;
	case SERIAL_REG_SCR:
		val = s->scr;
		break;
	}
	return val;
}

static void serial_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct serial *s = dev;
	uint8_t *out = data;

	pthread_mutex_lock(&s->lock);
	/* Wider accesses act as consecutive byte accesses; bytes past the device read as open bus. */
	for (uint32_t i = 0; i < len; i++)
		out[i] = offset + i < SERIAL_NUM_REGS ? read_reg(s, (unsigned int)(offset + i)) : 0xff;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add_explicit(&s->accesses, 1, memory_order_relaxed);
}

static void serial_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct serial *s = dev;
	const uint8_t *in = data;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len && offset + i < SERIAL_NUM_REGS; i++)
		write_reg(s, (unsigned int)(offset + i), in[i]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add_explicit(&s->accesses, 1, memory_order_relaxed);
}

/* Power-on register values; the divisor is left at 9600 baud like QEMU and most firmware. */
static void reset_locked(struct serial *s)
{
	s->ier = 0;
	s->lcr = 0;
	s->mcr = 0;
	s->lsr_errors = 0;
	s->msr = modem_status_lines(s);
	s->scr = 0;
	s->dll = 12;
	s->dlm = 0;
	s->fcr = 0;
	s->thre_pending = false;
	rx_clear(s);
	notify_rx_ready(s);
	update_irq(s);
}

static void serial_reset(void *dev)
{
	struct serial *s = dev;

	pthread_mutex_lock(&s->lock);
	reset_locked(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_init(struct serial *s, struct irq_line irq,
		 void (*out)(void *opaque, const uint8_t *buf, size_t len), void *out_opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->irq = irq;
	s->out = out;
	s->out_opaque = out_opaque;
	reset_locked(s);
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && rx_push(s, buf[n]))
		n++;
	if (n < len)
		s->rx_ready_wanted = true;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_set_rx_ready_cb(struct serial *s, void (*rx_ready)(void *opaque), void *opaque)
{
	pthread_mutex_lock(&s->lock);
	s->rx_ready = rx_ready;
	s->rx_ready_opaque = opaque;
	pthread_mutex_unlock(&s->lock);
}

/* Snapshot layout, version 1: all single bytes, so it has no padding or byte order. */
struct serial_saved {
	uint8_t version;
	uint8_t ier, lcr, mcr, lsr_errors, msr, scr, dll, dlm, fcr;
	uint8_t thre_pending;
	uint8_t rx_count;
	uint8_t rx_fifo[SERIAL_FIFO_SIZE]; /* oldest byte first */
};
#define SERIAL_SAVED_VERSION 1

static long serial_save(void *dev, void *buf, size_t cap)
{
	struct serial *s = dev;
	struct serial_saved st;

	if (cap < sizeof(st))
		return -ENOSPC;
	memset(&st, 0, sizeof(st));
	pthread_mutex_lock(&s->lock);
	st.version = SERIAL_SAVED_VERSION;
	st.ier = s->ier;
	st.lcr = s->lcr;
	st.mcr = s->mcr;
	st.lsr_errors = s->lsr_errors;
	st.msr = s->msr;
	st.scr = s->scr;
	st.dll = s->dll;
	st.dlm = s->dlm;
	st.fcr = s->fcr;
	st.thre_pending = s->thre_pending;
	st.rx_count = s->rx_count;
	for (unsigned int i = 0; i < s->rx_count; i++)
		st.rx_fifo[i] = s->rx_fifo[(s->rx_head + i) % SERIAL_FIFO_SIZE];
	pthread_mutex_unlock(&s->lock);
	memcpy(buf, &st, sizeof(st));
	return sizeof(st);
}

static int serial_load(void *dev, const void *buf, size_t len)
{
	struct serial *s = dev;
	struct serial_saved st;

	if (len != sizeof(st))
		return -EINVAL;
	memcpy(&st, buf, sizeof(st));
	if (st.version != SERIAL_SAVED_VERSION || st.thre_pending > 1 ||
	    (st.ier & ~IER_MASK) || (st.mcr & ~MCR_MASK) || (st.fcr & ~FCR_KEPT) ||
	    (st.lsr_errors & ~LSR_OE) || st.rx_count > ((st.fcr & FCR_ENABLE) ? SERIAL_FIFO_SIZE : 1))
		return -EINVAL;

	pthread_mutex_lock(&s->lock);
	s->ier = st.ier;
	s->lcr = st.lcr;
	s->mcr = st.mcr;
	s->lsr_errors = st.lsr_errors;
	/* The status half of MSR follows MCR; only the latched deltas come from the blob. */
	s->msr = modem_status_lines(s) | (st.msr & MSR_DELTAS);
	s->scr = st.scr;
	s->dll = st.dll;
	s->dlm = st.dlm;
	s->fcr = st.fcr;
	s->thre_pending = st.thre_pending;
	s->rx_head = 0;
	s->rx_count = st.rx_count;
	memcpy(s->rx_fifo, st.rx_fifo, sizeof(s->rx_fifo));
	/* The line's previous level belongs to the old machine: drive it to the loaded state. */
	s->irq_level = irq_output(s);
	irq_line_set(&s->irq, s->irq_level);
	notify_rx_ready(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const struct device_ops serial_ops = {
	.name = "serial",
	.read = serial_read,
	.write = serial_write,
	.reset = serial_reset,
	.save = serial_save,
	.load = serial_load,
};

void serial_get_stats(struct serial *s, struct serial_stats *out)
{
	out->accesses = atomic_load_explicit(&s->accesses, memory_order_relaxed);
	out->tx_bytes = atomic_load_explicit(&s->tx_bytes, memory_order_relaxed);
	out->rx_bytes = atomic_load_explicit(&s->rx_bytes, memory_order_relaxed);
	out->overruns = atomic_load_explicit(&s->overruns, memory_order_relaxed);
}
