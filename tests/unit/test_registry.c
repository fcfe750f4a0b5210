/* The runtime registry as `vmon ps` sees it: entries appear, disappear, and stale ones are recognised. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
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

/* vmon ps shows the RAM size of a VM started with --memory SIZE,hugepages=on too. */
static void test_memory_with_settings_is_listed_by_size(void **state)
{
	(void)state;
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.kernel_path = strdup("/k");
	cfg.memory = 1024 * MiB;
	cfg.memory_hugepages = true;
	char path[4096];
	assert_int_equal(registry_register(&cfg, path, sizeof(path)), 0);
	struct registry_entry *list;
	assert_int_equal(registry_list(&list), 1);
	assert_int_equal(list[0].memory, 1024 * MiB);
	free(list);
	registry_unregister(path);
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

static void register_sample(char *path, size_t len, int expect)
{
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.kernel_path = strdup("/k");
	assert_int_equal(registry_register(&cfg, path, len), expect);
	config_free(&cfg);
}

/* The logged messages, as the user sees them, collected through the JSON log file. */
static char *logged(const char *log_path)
{
	log_close_json_file();
	uint8_t *data;
	size_t len;
	assert_int_equal(read_file(log_path, 1 << 20, &data, &len), 0);
	char *text = malloc(len + 1);
	memcpy(text, data, len);
	text[len] = 0;
	free(data);
	return text;
}

/* VMON_RUNTIME_DIR naming a regular file: "is not a directory", not an I/O error. */
static void test_runtime_dir_is_a_file(void **state)
{
	(void)state;
	char file[128], log_path[128];
	snprintf(file, sizeof(file), "%s/notadir", dir);
	snprintf(log_path, sizeof(log_path), "%s/log.json", dir);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	setenv("VMON_RUNTIME_DIR", file, 1);
	assert_int_equal(log_open_json_file(log_path), 0);
	char path[4096];
	register_sample(path, sizeof(path), -ENOTDIR);
	assert_string_equal(path, "");
	struct registry_entry *list;
	assert_int_equal(registry_list(&list), -ENOTDIR);
	char *text = logged(log_path);
	assert_non_null(strstr(text, "notadir is not a directory"));
	assert_null(strstr(text, "Input/output error"));
	free(text);
}

/* The /tmp fallback must be this user's own private directory, not one someone else made. */
static void test_private_dir_checks(void **state)
{
	(void)state;
	char d[128], link[128], file[128];
	snprintf(d, sizeof(d), "%s/priv", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	snprintf(file, sizeof(file), "%s/file", dir);
	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(registry_check_dir(d, true), 0);
	assert_int_equal(chmod(d, 0755), 0);
	assert_int_equal(registry_check_dir(d, true), -EPERM);
	assert_int_equal(registry_check_dir(d, false), 0); /* a directory the user chose may be shared */
	assert_int_equal(chmod(d, 0700), 0);
	assert_int_equal(symlink(d, link), 0);
	assert_int_equal(registry_check_dir(link, true), -ENOTDIR);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(registry_check_dir(file, false), -ENOTDIR);
	if (geteuid() == 0) { /* only root can give a directory away */
		assert_int_equal(chown(d, 65534, 65534), 0);
		assert_int_equal(registry_check_dir(d, true), -EPERM);
	}
}

/* A symlink planted at the old predictable temporary name is neither followed nor replaced. */
static void test_entry_not_written_through_planted_link(void **state)
{
	(void)state;
	char d[256], victim[128], planted[512], path[4096];
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	FILE *f = fopen(victim, "w");
	assert_non_null(f);
	fputs("precious", f);
	fclose(f);
	register_sample(path, sizeof(path), 0); /* creates the directory */
	registry_unregister(path);
	registry_dir(d, sizeof(d));
	snprintf(planted, sizeof(planted), "%s/%d.json.tmp", d, (int)getpid());
	assert_int_equal(symlink(victim, planted), 0);

	register_sample(path, sizeof(path), 0);
	uint8_t *data;
	size_t len;
	assert_int_equal(read_file(victim, 100, &data, &len), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(data, "precious", 8);
	free(data);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	registry_unregister(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register_list_unregister, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_with_settings_is_listed_by_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_entries_are_recognised, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runtime_dir_is_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_private_dir_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_entry_not_written_through_planted_link, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
