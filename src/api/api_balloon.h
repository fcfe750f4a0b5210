/*
 * The balloon's routes (docs/api.md):
 *   GET /balloon                      {"target_mib", "actual_mib", "ram_mib", ..., "stats": {...}}
 *   PUT /balloon {"target_mib": N}    the memory the guest is left with (QEMU's convention)
 * Errors are {"error": "one sentence"} with a 4xx status: no balloon, not JSON, unknown keys,
 * a target that is not a whole number, negative or above the guest's RAM.
 */
#ifndef VMON_API_API_BALLOON_H
#define VMON_API_API_BALLOON_H

#include <jansson.h>
#include <stddef.h>

struct vm;

/* Handles one request on /balloon (method GET or PUT); returns the HTTP status and the reply in *out. */
unsigned int api_balloon_handle(struct vm *vm, const char *method, const char *body, size_t len, json_t **out);

#endif
