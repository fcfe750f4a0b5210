/*
 * libFuzzer target: the migration address parser (src/migration/migration_address.c), which takes
 * what a user types for `vmon receive --listen` and PUT /vm/migrate. An accepted address has a
 * host and a port 1-65535, TLS files all or none, and prints back into text that parses to the
 * same; a refused one says so in a sentence that starts with the address.
 * Build and run: make fuzz && build/fuzz/fuzz_migration_address tests/fuzz/corpus_migration_address
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "migration/migration_address.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	fuzz_check(text != NULL, "malloc");
	memcpy(text, data, size);
	text[size] = 0;
	struct mig_address a, b;
	char err[512] = "", again[600];
	if (mig_address_parse(text, &a, err, sizeof(err)) == 0) {
		fuzz_check(a.host[0] != 0 && a.port != 0, "an address without a host or port");
		bool cert = a.tls.cert[0], key = a.tls.key[0], ca = a.tls.ca[0];
		fuzz_check(cert == key && key == ca, "TLS files given in part");
		fuzz_check(mig_address_parse(mig_address_str(&a, again, sizeof(again)), &b, err, sizeof(err)) == 0,
			   "a printed address does not parse");
		fuzz_check(!strcmp(a.host, b.host) && a.port == b.port && a.ipv6 == b.ipv6, "a printed address changed");
	} else {
		fuzz_check(!strncmp(err, "migration address \"", 19), "an error without its prefix");
	}
	free(text);
	return 0;
}
