/* A guest that crashes: vmon must report the triple fault and exit non-zero. */
#include "guest.h"

void guest_main(void *boot_params)
{
	(void)boot_params;
	puts("about to triple-fault\n");
	guest_fail_triple_fault();
}
