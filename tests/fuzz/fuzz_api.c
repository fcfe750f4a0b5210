/*
 * libFuzzer target: the HTTP API's routes (src/api/api_routes.c) on a VM without KVM
 * (tests/unit/api_fake_vm.h): a method, a path and a body, each request against a fresh VM.
 * Input: [0] method (GET, PUT, HEAD, POST, DELETE), then the path up to a NUL, then the body.
 * PUT /vm/snapshot is answered with its usage only: the target writes no files. PUT /vm/migrate
 * checks its body and address but starts no migration: the target connects nowhere.
 * Build and run: make fuzz && build/fuzz/fuzz_api tests/fuzz/corpus_api
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/api_routes.h"
#include "fuzz_common.h"
#include "lib/log.h"
#include "unit/api_fake_vm.h"
#include "migration/migration_address.h"

static void describe_nothing(struct api_migrate *m, struct vm *vm, struct migrate_source_vm *out)
{
	(void)m, (void)vm;
	memset(out, 0, sizeof(*out));
}

static int start_nothing(struct migrate_source **out, const struct migrate_params *p,
			 const struct migrate_source_vm *vm, char *err, size_t errlen)
{
	(void)vm;
	*out = NULL;
	struct mig_address a;
	int rc = mig_address_parse(p->destination, &a, err, errlen);
	if (!rc)
		snprintf(err, errlen, "the fuzz target starts no migration");
	return rc ? -EINVAL : -ENOSYS;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "PUT", "HEAD", "POST", "DELETE" };
	if (size < 1)
		return 0;
	const char *method = methods[data[0] % 5];
	const char *rest = (const char *)data + 1;
	size_t rest_len = size - 1;
	const char *nul = memchr(rest, 0, rest_len);
	if (!nul)
		return 0;
	char *path = strndup(rest, (size_t)(nul - rest));
	size_t body_len = rest_len - (size_t)(nul - rest) - 1;
	/* The server hands over an exact-size copy; a read past it is caught. */
	char *body = body_len ? malloc(body_len) : NULL;
	fuzz_check(path && (body || !body_len), "malloc");
	if (body_len)
		memcpy(body, nul + 1, body_len);
	if (!strcmp(path, "/vm/snapshot") && !strcmp(method, "PUT")) {
		free(body);
		body = NULL;
		body_len = 0;
	}

	struct fake_vm *f = calloc(1, sizeof(*f));
	fuzz_check(f != NULL, "calloc");
	fake_vm_init(f, 1, true, true);
	struct api_ctx ctx;
	api_ctx_init(&ctx, &f->vm);
	ctx.migrate.describe = describe_nothing;
	ctx.migrate.start = start_nothing;
	struct api_reply r;
	api_handle(&ctx, method, path, body, body_len, body_len > API_MAX_BODY, &r);
	fuzz_check(r.status >= 200 && r.status < 600, "HTTP status");
	fuzz_check(r.body == NULL || strlen(r.body) <= r.len, "reply length");
	free(r.body);
	api_ctx_destroy(&ctx);
	fake_vm_destroy(f);
	free(f);
	free(path);
	free(body);
	return 0;
}
