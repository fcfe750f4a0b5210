/*
 * Drives vmon's virtio-rng by hand, as a driver would but without interrupts: finds the device
 * on PCI bus 0 through ports 0xCF8/0xCFC, walks its capabilities, negotiates virtio 1.x, sets
 * up queue 0 in its own memory, asks for random bytes and polls the used ring. Then it hands
 * the device a descriptor pointing outside guest RAM, expects DEVICE_NEEDS_RESET, resets the
 * device and checks it works again. Prints "PASS: ..." per step; any failure triple-faults.
 */
#include "guest.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc
#define STATUS_ACK 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 0x40
#define DESC_F_WRITE 2
#define QSZ 8

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void w8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void w16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline uint8_t r8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t r16(uint64_t a) { return *(volatile uint16_t *)a; }

static uint32_t cfg_read(unsigned int slot, unsigned int reg)
{
	outl(PCI_ADDR, 0x80000000u | slot << 11 | (reg & 0xfc));
	return inl(PCI_DATA);
}

static void cfg_write(unsigned int slot, unsigned int reg, uint32_t v)
{
	outl(PCI_ADDR, 0x80000000u | slot << 11 | (reg & 0xfc));
	outl(PCI_DATA, v);
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static struct desc descs[QSZ] __attribute__((aligned(16)));
static volatile uint16_t avail[2 + QSZ + 1] __attribute__((aligned(2)));
static volatile uint32_t used[1 + 2 * QSZ + 1] __attribute__((aligned(4)));
static uint8_t buf[64];
static uint64_t common, notify;
static uint16_t avail_idx;

/* Common configuration registers (virtio 1.x 4.1.4.3). */
enum { DFSEL = 0x00, DF = 0x04, GFSEL = 0x08, GF = 0x0c, STATUS = 0x14, QSEL = 0x16, QSIZE = 0x18,
       QENABLE = 0x1c, QNOTIFY_OFF = 0x1e, QDESC = 0x20, QDRIVER = 0x28, QDEVICE = 0x30 };

static void set_up_device(void)
{
	w8(common + STATUS, 0);
	w8(common + STATUS, STATUS_ACK | STATUS_DRIVER);
	mmio_write32(common + DFSEL, 1);
	if (!(mmio_read32(common + DF) & 1))
		guest_fail("the device does not offer VIRTIO_F_VERSION_1");
	mmio_write32(common + GFSEL, 0);
	mmio_write32(common + GF, 0);
	mmio_write32(common + GFSEL, 1);
	mmio_write32(common + GF, 1);
	w8(common + STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
	if (!(r8(common + STATUS) & STATUS_FEATURES_OK))
		guest_fail("FEATURES_OK refused");
	w16(common + QSEL, 0);
	if (r16(common + QSIZE) < QSZ)
		guest_fail("queue 0 too small");
	w16(common + QSIZE, QSZ);
	mmio_write32(common + QDESC, (uint32_t)(uintptr_t)descs);
	mmio_write32(common + QDESC + 4, 0);
	mmio_write32(common + QDRIVER, (uint32_t)(uintptr_t)avail);
	mmio_write32(common + QDRIVER + 4, 0);
	mmio_write32(common + QDEVICE, (uint32_t)(uintptr_t)used);
	mmio_write32(common + QDEVICE + 4, 0);
	/* Fresh rings before the device may look at them. */
	for (unsigned int i = 0; i < 2 + QSZ + 1; i++)
		avail[i] = 0;
	for (unsigned int i = 0; i < 1 + 2 * QSZ + 1; i++)
		used[i] = 0;
	avail_idx = 0;
	w16(common + QENABLE, 1);
	w8(common + STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

/* Offers one writable buffer and kicks queue 0. */
static void request(uint64_t addr, uint32_t len)
{
	descs[0] = (struct desc){ .addr = addr, .len = len, .flags = DESC_F_WRITE };
	avail[2 + avail_idx % QSZ] = 0;
	avail_idx++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail[1] = avail_idx;
	w16(notify, 0);
}

static int wait_for(int (*done)(void))
{
	uint64_t start = rdtsc();
	while (!done())
		if (rdtsc() - start > 20000000000ull) /* several seconds on any machine */
			return 0;
	return 1;
}

static int used_one_more(void) { return (uint16_t)(used[0] >> 16) == avail_idx; }
static int needs_reset(void) { return r8(common + STATUS) & STATUS_NEEDS_RESET; }

static void get_random_bytes(const char *what)
{
	for (unsigned int i = 0; i < sizeof(buf); i++)
		buf[i] = 0;
	request((uint64_t)(uintptr_t)buf, sizeof(buf));
	if (!wait_for(used_one_more))
		guest_fail("the device never returned the buffer");
	uint32_t id = used[1 + 2 * ((avail_idx - 1) % QSZ)], len = used[2 + 2 * ((avail_idx - 1) % QSZ)];
	if (id != 0 || len != sizeof(buf))
		guest_fail("wrong used element");
	unsigned int nonzero = 0;
	for (unsigned int i = 0; i < sizeof(buf); i++)
		nonzero += buf[i] != 0;
	if (nonzero < sizeof(buf) / 2)
		guest_fail("the bytes are not random");
	puts("PASS: ");
	puts(what);
	putc('\n');
}

void guest_main(void *boot_params)
{
	(void)boot_params;
	unsigned int slot = 0;
	while (slot < 32 && cfg_read(slot, 0) != (0x1044u << 16 | 0x1af4))
		slot++;
	if (slot == 32)
		guest_fail("no virtio-rng on PCI bus 0");
	uint32_t bar0 = cfg_read(slot, 0x10) & ~0xfu;
	uint32_t notify_mult = 0, notify_off = 0, common_off = ~0u;
	for (unsigned int pos = cfg_read(slot, 0x34) & 0xff, n = 0; pos && n < 48; n++) {
		uint32_t hdr = cfg_read(slot, pos);
		if ((hdr & 0xff) == 0x09) { /* vendor-specific: a virtio_pci_cap */
			unsigned int type = (hdr >> 24) & 0xff;
			uint32_t off = cfg_read(slot, pos + 8);
			if (type == 1)
				common_off = off;
			if (type == 2) {
				notify_off = off;
				notify_mult = cfg_read(slot, pos + 16);
			}
		}
		pos = (hdr >> 8) & 0xfc;
	}
	if (common_off == ~0u || !notify_mult)
		guest_fail("virtio capabilities missing");
	cfg_write(slot, 0x04, 0x2 | 0x4); /* memory decoding, bus mastering */
	common = bar0 + common_off;
	puts("PASS: found virtio-rng and its capabilities\n");

	set_up_device();
	notify = bar0 + notify_off + (uint64_t)r16(common + QNOTIFY_OFF) * notify_mult;
	get_random_bytes("random bytes through the virtqueue");
	get_random_bytes("a second request");

	/* A buffer outside guest RAM: the device must give up on the ring, not vmon. */
	request(0xfffff00000ull, sizeof(buf));
	if (!wait_for(needs_reset))
		guest_fail("no DEVICE_NEEDS_RESET after a descriptor outside RAM");
	puts("PASS: DEVICE_NEEDS_RESET after a descriptor outside RAM\n");
	set_up_device();
	get_random_bytes("the device works again after a reset");
	guest_poweroff();
}
