/*
 * libFuzzer target: the JSON configuration (--config FILE, and what `vmon ps` reads back):
 * applied over the defaults, validated, dumped, and the dump applied again must give the same
 * dump.
 * Build and run: make fuzz && build/fuzz/fuzz_config_json tests/fuzz/corpus_config_json
 */
#include <jansson.h>
#include <string.h>

#include "config/config.h"
#include "config/config_json.h"
#include "fuzz_common.h"
#include "lib/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

static char *dump_text(const struct vm_config *cfg)
{
	json_t *j = config_json_dump(cfg);
	fuzz_check(j != NULL, "config_json_dump");
	char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(j);
	fuzz_check(s != NULL, "json_dumps");
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	fuzz_check(text != NULL, "malloc");
	memcpy(text, data, size);
	text[size] = 0;
	struct vm_config cfg;
	char err[512];
	config_init_defaults(&cfg);
	if (config_json_apply_text(&cfg, text, "fuzz.json", err, sizeof(err)) == 0 &&
	    config_validate(&cfg, err, sizeof(err)) == 0) {
		char *first = dump_text(&cfg);
		struct vm_config again;
		config_init_defaults(&again);
		fuzz_check(config_json_apply_text(&again, first, "dump", err, sizeof(err)) == 0, "a dump does not load back");
		char *second = dump_text(&again);
		fuzz_check(!strcmp(first, second), "a dump loads back differently");
		free(first);
		free(second);
		config_free(&again);
	}
	config_free(&cfg);
	free(text);
	return 0;
}
