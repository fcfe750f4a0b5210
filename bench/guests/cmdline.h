/* The kernel command line of a benchmark guest, whichever way it was booted:
 * vmon (Linux boot protocol, RDI = boot_params) or QEMU (PVH, hvm_start_info). */
#ifndef VMON_BENCH_CMDLINE_H
#define VMON_BENCH_CMDLINE_H

#include <stdint.h>

/* Set by pvh.S when QEMU entered through the PVH note; 0 when vmon entered at _start. */
extern uint64_t pvh_start_info;

#define BOOT_PARAMS_CMD_LINE_PTR 0x228 /* struct boot_params: hdr.cmd_line_ptr */
#define PVH_START_INFO_MAGIC 0x336ec578u
#define PVH_CMDLINE_PADDR 24 /* struct hvm_start_info: cmdline_paddr */
#define CMDLINE_MAX 4096

static inline const char *bench_cmdline(void *boot_params)
{
	uint64_t addr = 0;
	if (pvh_start_info) {
		const uint8_t *si = (const uint8_t *)pvh_start_info;
		if (*(const uint32_t *)si == PVH_START_INFO_MAGIC)
			addr = *(const uint64_t *)(si + PVH_CMDLINE_PADDR);
	} else if (boot_params) {
		addr = *(const uint32_t *)((const uint8_t *)boot_params + BOOT_PARAMS_CMD_LINE_PTR);
	}
	/* Everything is identity-mapped below 4 GiB; anything else is not a command line. */
	if (addr == 0 || addr >= 0x100000000ull - CMDLINE_MAX)
		return "";
	return (const char *)addr;
}

/* Value of "key=NUMBER" on the command line, or def when absent or malformed. */
static inline uint64_t bench_cmdline_u64(const char *cmdline, const char *key, uint64_t def)
{
	for (const char *p = cmdline; *p && p < cmdline + CMDLINE_MAX; p++) {
		if (p != cmdline && p[-1] != ' ')
			continue;
		const char *k = key, *q = p;
		while (*k && *q == *k)
			k++, q++;
		if (*k || *q != '=')
			continue;
		q++;
		if (*q < '0' || *q > '9')
			return def;
		uint64_t v = 0;
		while (*q >= '0' && *q <= '9' && v < (1ull << 40))
			v = v * 10 + (uint64_t)(*q++ - '0');
		return v;
	}
	return def;
}

#endif
