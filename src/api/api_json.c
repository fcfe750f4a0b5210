#include "api/api_json.h"

#include <stdarg.h>
#include <stdio.h>

unsigned int api_json_error(json_t **out, unsigned int status, const char *fmt, ...)
{
	char msg[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	*out = json_pack("{s:s}", "error", msg);
	return status;
}
