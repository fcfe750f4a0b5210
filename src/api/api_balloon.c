#include "api/api_balloon.h"
#include "api/api_json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/util.h"
#include "virtio/virtio_balloon.h"
#include "vm/platform.h"
#include "vm/vm.h"

#define EXAMPLE "{\"target_mib\": 128}"

/* Rounded up, so actual_mib reaches the target only once the balloon holds all of it. */
static json_int_t mib_up(uint64_t bytes) { return (json_int_t)((bytes + MiB - 1) / MiB); }

static unsigned int get_balloon(struct virtio_balloon *b, json_t **out)
{
	struct virtio_balloon_info in;
	virtio_balloon_get_info(b, &in);
	json_t *stats = json_object();
	for (int s = 0; stats && s < VIRTIO_BALLOON_S_NR; s++)
		if (in.stats_valid & (1u << s))
			json_object_set_new(stats, virtio_balloon_stat_name((enum virtio_balloon_stat)s),
					    json_integer((json_int_t)in.stats[s]));
	*out = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o*}", "target_mib", mib_up(in.target_bytes),
			 "actual_mib", mib_up(in.actual_bytes), "ram_mib", (json_int_t)(in.ram_bytes / MiB),
			 "inflated_pages", (json_int_t)in.inflated_pages, "deflated_pages", (json_int_t)in.deflated_pages,
			 "discarded_bytes", (json_int_t)in.discarded_bytes, "reported_bytes", (json_int_t)in.reported_bytes,
			 "invalid_pfns", (json_int_t)in.invalid_pfns, "stats_updates", (json_int_t)in.stats_updates,
			 "stats", stats);
	return 200;
}

static unsigned int put_balloon(struct virtio_balloon *b, const char *body, size_t len, json_t **out)
{
	json_error_t jerr;
	json_t *o = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr) : NULL;
	if (!o)
		return api_json_error(out, 400, "PUT /balloon needs a JSON object as its body, e.g. %s", EXAMPLE);
	struct virtio_balloon_info in;
	virtio_balloon_get_info(b, &in);
	uint64_t ram_mib = in.ram_bytes / MiB;
	json_t *t = json_object_get(o, "target_mib");
	unsigned int status = 200;
	if (!json_is_object(o) || json_object_size(o) != 1 || !t)
		status = api_json_error(out, 400, "PUT /balloon takes one key, \"target_mib\": send e.g. %s", EXAMPLE);
	else if (!json_is_integer(t))
		status = api_json_error(out, 400, "\"target_mib\" must be a whole number of MiB, the memory the guest is left with");
	else if (json_integer_value(t) < 0)
		status = api_json_error(out, 400, "\"target_mib\" cannot be negative (got %lld)", (long long)json_integer_value(t));
	else if ((uint64_t)json_integer_value(t) > ram_mib)
		status = api_json_error(out, 400, "\"target_mib\" %lld is above the guest's RAM (%llu MiB): give at most %llu",
			       (long long)json_integer_value(t), (unsigned long long)ram_mib, (unsigned long long)ram_mib);
	else if (virtio_balloon_set_target(b, (uint64_t)json_integer_value(t) * MiB))
		status = api_json_error(out, 400, "\"target_mib\" %lld cannot be set", (long long)json_integer_value(t));
	json_decref(o);
	return status == 200 ? get_balloon(b, out) : status;
}

unsigned int api_balloon_handle(struct vm *vm, const char *method, const char *body, size_t len, json_t **out)
{
	struct platform *p = vm->platform;
	struct virtio_balloon *b = p ? p->balloon : NULL;
	if (!b)
		return api_json_error(out, 409, "this VM has no balloon: start it with --balloon (see docs/usage.md)");
	return strcmp(method, "PUT") ? get_balloon(b, out) : put_balloon(b, body, len, out);
}
