#include "api/api_shutdown.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "vm/platform.h"
#include "vm/vm.h"

void api_shutdown_init(struct api_shutdown *sd, struct vm *vm)
{
	memset(sd, 0, sizeof(*sd));
	sd->vm = vm;
	pthread_mutex_init(&sd->lock, NULL);
}

static void *watchdog_thread(void *arg)
{
	struct api_shutdown *sd = arg;
	struct vm *vm = sd->vm;
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += sd->timeout_s;

	pthread_mutex_lock(&vm->lock);
	int rc = 0;
	while (atomic_load(&vm->state) != VM_STOPPED && !sd->cancel && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	bool expired = atomic_load(&vm->state) != VM_STOPPED && !sd->cancel;
	pthread_mutex_unlock(&vm->lock);
	if (expired) {
		log_warn("api", "the guest did not shut down within %u s of Ctrl-Alt-Del; stopping the VM", sd->timeout_s);
		vm_request_stop(vm, VM_STOP_SIGNAL,
				"stopped through the API: the guest did not shut down within %u s of Ctrl-Alt-Del",
				sd->timeout_s);
	}
	return NULL;
}

enum api_shutdown_result api_shutdown_start(struct api_shutdown *sd, unsigned int timeout_s)
{
	struct vm *vm = sd->vm;
	enum api_shutdown_result res;

	pthread_mutex_lock(&sd->lock);
	if (sd->started) {
		res = API_SHUTDOWN_ALREADY;
		goto out;
	}
	enum vm_state st = (enum vm_state)atomic_load(&vm->state);
	if (st == VM_PAUSED && vm_resume(vm) == 0)
		log_info("api", "resumed the paused VM so that it can shut down");
	st = (enum vm_state)atomic_load(&vm->state);
	if (st != VM_RUNNING) {
		res = API_SHUTDOWN_NOT_RUNNING;
		goto out;
	}

	res = API_SHUTDOWN_NO_KEYBOARD;
	struct platform *p = vm->platform;
	if (p) {
		int rc = i8042_send_ctrl_alt_del(&p->i8042);
		if (rc == 0)
			res = API_SHUTDOWN_SENT;
		else
			log_warn("api", "cannot type Ctrl-Alt-Del: %s", rc == -EAGAIN ? "the guest turned its keyboard off"
											: "the keyboard buffer is full");
	}
	sd->timeout_s = timeout_s;
	sd->cancel = false;
	int rc = pthread_create(&sd->watchdog, NULL, watchdog_thread, sd);
	if (rc) {
		log_error("api", "cannot start the shutdown watchdog thread: %s", strerror(rc));
		res = API_SHUTDOWN_FAILED;
		goto out;
	}
	sd->started = true;
	log_info("api", "shutdown requested: %s; hard stop in %u s if the guest is still running",
		 res == API_SHUTDOWN_SENT ? "Ctrl-Alt-Del sent" : "no keyboard to send Ctrl-Alt-Del to", timeout_s);
out:
	pthread_mutex_unlock(&sd->lock);
	return res;
}

void api_shutdown_destroy(struct api_shutdown *sd)
{
	pthread_mutex_lock(&sd->lock);
	if (sd->started) {
		pthread_mutex_lock(&sd->vm->lock);
		sd->cancel = true;
		pthread_cond_broadcast(&sd->vm->cond);
		pthread_mutex_unlock(&sd->vm->lock);
		pthread_join(sd->watchdog, NULL);
		sd->started = false;
	}
	pthread_mutex_unlock(&sd->lock);
	pthread_mutex_destroy(&sd->lock);
}
