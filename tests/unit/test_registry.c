/* The runtime registry as `vmon ps` sees it: entries appear, disappear, and stale ones are recognised. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"
#include "vm/registry.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/vmon-registry.XXXXXX");
	assert_non_null(mkdtemp(dir));
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/run/vmon", dir); /* not there yet: registering creates it */
	setenv("VMON_RUNTIME_DIR", sub, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	unsetenv("VMON_RUNTIME_DIR");
	return 0;
}

static void write_file(const char *name, const char *text)
{
	char d[256], path[512];
	registry_dir(d, sizeof(d));
	snprintf(path, sizeof(path), "%s/%s", d, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_register_list_unregister(void **state)
{
	(void)state;
	struct registry_entry *list;
	assert_int_equal(registry_list(&list), 0); /* no directory yet: no VMs */

	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.kernel_path = strdup("/boot/vmlinuz");
	cfg.api_sock = strdup("/tmp/x.sock");
	cfg.name = strdup("db");
	cfg.cpus = 2;
	cfg.memory = 512 * MiB;
	char path[4096];
	assert_int_equal(registry_register(&cfg, path, sizeof(path)), 0);
	assert_int_equal(access(path, F_OK), 0);

	assert_int_equal(registry_list(&list), 1);
	assert_int_equal(list[0].pid, getpid());
	assert_false(list[0].stale);
	assert_string_equal(list[0].name, "db");
	assert_string_equal(list[0].api_sock, "/tmp/x.sock");
	assert_string_equal(list[0].kernel, "/boot/vmlinuz");
	assert_int_equal(list[0].cpus, 2);
	assert_int_equal(list[0].memory, 512 * MiB);
	assert_true(list[0].started_at > 0);
	assert_string_equal(list[0].path, path);
	free(list);

	registry_unregister(path);
	assert_int_equal(registry_list(&list), 0);
	registry_unregister(path); /* twice is harmless */
	config_free(&cfg);
}

static void test_stale_entries_are_recognised(void **state)
{
	(void)state;
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.kernel_path = strdup("/k");
	char path[4096];
	assert_int_equal(registry_register(&cfg, path, sizeof(path)), 0);

	/* A process that has exited. */
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	char name[64], text[256];
	snprintf(name, sizeof(name), "%d.json", (int)child);
	snprintf(text, sizeof(text), "{\"pid\": %d, \"proc_start\": 5, \"config\": {\"cpus\": 1}}", (int)child);
	write_file(name, text);
	/* A pid that now belongs to a different process: this one, but with another start time. */
	unsigned long long mine = registry_proc_start(getpid());
	assert_true(mine > 0);
	snprintf(text, sizeof(text), "{\"pid\": %d, \"proc_start\": %llu, \"config\": {}}", (int)getppid(), 1ULL);
	write_file("reused.json", text);
	/* Garbage is skipped, not fatal. */
	write_file("junk.json", "{not json");
	write_file("nopid.json", "{\"config\": {}}");
	write_file("other.txt", "ignored");

	struct registry_entry *list;
	int n = registry_list(&list);
	assert_int_equal(n, 3);
	int live = 0, stale = 0;
	for (int i = 0; i < n; i++) {
		if (list[i].pid == getpid())
			live++, assert_false(list[i].stale);
		else
			stale++, assert_true(list[i].stale);
	}
	assert_int_equal(live, 1);
	assert_int_equal(stale, 2);
	assert_true(list[0].pid < list[1].pid && list[1].pid < list[2].pid);
	free(list);
	assert_true(registry_process_alive(getpid(), mine));
	assert_false(registry_process_alive(getpid(), mine + 1));
	registry_unregister(path);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register_list_unregister, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_entries_are_recognised, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
