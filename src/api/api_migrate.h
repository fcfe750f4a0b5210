/*
 * PUT /vm/migrate, GET /vm/migration, DELETE /vm/migration: one pre-copy migration at a time,
 * run by the engine of migration/migrate_source.h on its own thread; the last one's outcome
 * stays readable until the next starts.
 */
#ifndef VMON_API_API_MIGRATE_H
#define VMON_API_API_MIGRATE_H

#include <jansson.h>
#include <pthread.h>

#include "migration/migrate_source.h"
#include "migration/migrate_vm.h"

struct vm;

/* The vmon version the handshake announces; main() sets it to VMON_VERSION. */
extern const char *api_migrate_vmon_version;

struct api_migrate {
	pthread_mutex_t lock;
	struct migrate_source *src; /* the running or the last migration, NULL before the first */
	struct migrate_vm_ctx vm_ctx;
	/* Describes the VM to the engine: migrate_vm_describe by default, a fake VM in tests. */
	void (*describe)(struct api_migrate *m, struct vm *vm, struct migrate_source_vm *out);
	void *opaque; /* for describe */
	/* Starts the engine: migrate_source_start by default; the fuzz target's starts nothing. */
	int (*start)(struct migrate_source **out, const struct migrate_params *p, const struct migrate_source_vm *vm,
		     char *err, size_t errlen);
};

void api_migrate_init(struct api_migrate *m);
/* Cancels a running migration and waits for it. */
void api_migrate_destroy(struct api_migrate *m);
/* method on "/vm/migrate" or "/vm/migration": the HTTP status, *out the JSON reply. */
unsigned int api_migrate_handle(struct api_migrate *m, struct vm *vm, const char *method, const char *body, size_t len,
				json_t **out);
/* True while a migration holds the VM paused for its switch: nobody else may resume it then. */
bool api_migrate_switching(struct api_migrate *m);
/* The progress object of GET /vm/migration. */
json_t *api_migrate_progress_json(const struct migrate_progress *p);

#endif
