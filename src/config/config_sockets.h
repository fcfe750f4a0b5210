/*
 * The options whose host side is a socket or file next to the VM:
 *
 *   --console2 socket=PATH | file=PATH[,max_size=SIZE]   ("console2" in the JSON config, the same string)
 *       the virtio-console (the guest's /dev/hvc0): vmon listens on the Unix socket PATH (one
 *       client at a time, bytes both ways), or appends the guest's output to the file PATH,
 *       which never grows past SIZE (default 64M; output beyond it is dropped and counted).
 *   --vsock cid=N,uds=PATH                 ("vsock" in the JSON config, the same string)
 *       virtio-vsock with guest CID N (3 to 4294967294); host programs reach guest port P by
 *       connecting to PATH and writing "CONNECT P\n"; the guest reaches host port P at
 *       CID 2, which vmon connects to the Unix socket PATH_P.
 */
#ifndef VMON_CONFIG_CONFIG_SOCKETS_H
#define VMON_CONFIG_CONFIG_SOCKETS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Room for "_4294967295" after the vsock socket path, inside a sockaddr_un. */
#define CONFIG_MAX_VSOCK_UDS (CONFIG_MAX_SOCK_PATH - 1 - 11)

#define CONSOLE2_DEFAULT_MAX_SIZE (64ull << 20)

struct console2_spec {
	bool is_file;           /* file=PATH; otherwise socket=PATH */
	char path[PATH_MAX];
	uint64_t max_size;      /* file=: the file's size limit in bytes */
};

struct vsock_spec {
	uint32_t cid;
	char uds[CONFIG_MAX_SOCK_PATH];
};

/* Parse one option value. On error: one sentence naming the option in err, and -EINVAL. */
int config_console2_parse(const char *spec, struct console2_spec *out, char *err, size_t errlen);
int config_vsock_parse(const char *spec, struct vsock_spec *out, char *err, size_t errlen);

#endif
