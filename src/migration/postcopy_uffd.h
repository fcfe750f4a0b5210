/*
 * userfaultfd as post-copy uses it: the kernel's header, plus Linux 6.6's UFFDIO_POISON for build
 * hosts whose headers predate it (the numbers are the kernel's ABI; the running kernel says
 * whether it has the feature). Shared by postcopy_dest.c and the postcopy role's seccomp filter.
 */
#ifndef VMON_MIGRATION_POSTCOPY_UFFD_H
#define VMON_MIGRATION_POSTCOPY_UFFD_H

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#define _UFFDIO_POISON 0x08
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#endif
