/* The API's error replies for route handlers that build their own JSON. */
#ifndef VMON_API_API_JSON_H
#define VMON_API_API_JSON_H

#include <jansson.h>

/* *out = {"error": "<the sentence>"}; returns status, so a handler can `return api_json_error(...)`. */
unsigned int api_json_error(json_t **out, unsigned int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
