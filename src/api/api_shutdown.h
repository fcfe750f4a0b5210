/*
 * Clean shutdown of a VM without ACPI: type Ctrl-Alt-Del on its keyboard (a Linux guest reboots,
 * which stops the VM), then stop it hard if it is still running after a timeout, as a watchdog
 * thread. Owned by the API; api_shutdown_destroy() joins the watchdog and must run before
 * vm_destroy().
 */
#ifndef VMON_API_API_SHUTDOWN_H
#define VMON_API_API_SHUTDOWN_H

#include <pthread.h>
#include <stdbool.h>

struct vm;

struct api_shutdown {
	struct vm *vm;
	pthread_mutex_t lock; /* serialises start requests */
	bool started;         /* a shutdown is under way (only one per VM) */
	bool cancel;          /* under vm->lock: the watchdog must return now */
	pthread_t watchdog;
	unsigned int timeout_s;
};

void api_shutdown_init(struct api_shutdown *sd, struct vm *vm);
/* Stops and joins the watchdog, if any. */
void api_shutdown_destroy(struct api_shutdown *sd);

/* What api_shutdown_start did. */
enum api_shutdown_result {
	API_SHUTDOWN_SENT,          /* Ctrl-Alt-Del typed; watchdog armed */
	API_SHUTDOWN_NO_KEYBOARD,   /* the guest's keyboard is off or absent; watchdog armed */
	API_SHUTDOWN_ALREADY,       /* a shutdown was already under way; nothing changed */
	API_SHUTDOWN_NOT_RUNNING,   /* the VM has stopped (or never started) */
	API_SHUTDOWN_FAILED,        /* the watchdog thread could not start */
};

/*
 * Starts a shutdown with a hard stop after timeout_s seconds (0: at once). A paused VM is resumed
 * first, since a paused guest cannot react. Safe from any thread but a vCPU's.
 */
enum api_shutdown_result api_shutdown_start(struct api_shutdown *sd, unsigned int timeout_s);

#endif
