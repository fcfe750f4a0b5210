/* The Prometheus metrics as a scraper reads them: well-formed lines, counters that follow the VM. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>

#include "api/api_metrics.h"
#include "api_fake_vm.h"

/* The value of the sample whose name-and-labels is exactly series, or -1. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

/* Every line is a comment or `name{label="v",...} number` (the text format's grammar, simplified). */
static void assert_well_formed(const char *text)
{
	const char *p = text;
	while (*p) {
		const char *eol = strchr(p, '\n');
		assert_non_null(eol);
		if (*p != '#') {
			const char *q = p;
			while (isalnum((unsigned char)*q) || *q == '_')
				q++;
			assert_true(q > p);
			if (*q == '{') {
				const char *close = memchr(q, '}', (size_t)(eol - q));
				assert_non_null(close);
				q = close + 1;
			}
			assert_int_equal(*q, ' ');
			char *end;
			strtod(q + 1, &end);
			assert_ptr_equal(end, eol);
		} else {
			assert_true(!strncmp(p, "# HELP ", 7) || !strncmp(p, "# TYPE ", 7));
		}
		p = eol + 1;
	}
}

static void test_counters_and_histogram(void **state)
{
	(void)state;
	struct fake_vm f;
	fake_vm_init(&f, 2, true, false);
	struct vcpu *v1 = f.vm.vcpus[1];
	atomic_store(&v1->exits[VCPU_EXIT_IO], 7);
	atomic_store(&v1->exits[VCPU_EXIT_HLT], 3);
	atomic_store(&v1->run_ns, 1500000000);
	atomic_store(&v1->handle_hist[0], 1);
	atomic_store(&v1->handle_hist[3], 2);
	atomic_store(&v1->handle_hist[VCPU_HIST_BUCKETS - 1], 1);
	atomic_store(&v1->handle_ns, 2000);

	size_t len;
	char *text = api_metrics_render(&f.vm, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_well_formed(text);

	assert_true(sample(text, "vmon_vcpu_exits_total{vcpu=\"1\",reason=\"io\"}") == 7);
	assert_true(sample(text, "vmon_vcpu_exits_total{vcpu=\"1\",reason=\"hlt\"}") == 3);
	assert_true(sample(text, "vmon_vcpu_exits_total{vcpu=\"0\",reason=\"io\"}") == 0);
	assert_true(sample(text, "vmon_vcpu_run_seconds_total{vcpu=\"1\"}") == 1.5);
	/* Cumulative buckets: 1 below 250 ns, 3 below 2 us, all 4 at +Inf. */
	assert_true(sample(text, "vmon_exit_handling_seconds_bucket{vcpu=\"1\",le=\"2.5e-07\"}") == 1);
	assert_true(sample(text, "vmon_exit_handling_seconds_bucket{vcpu=\"1\",le=\"1e-06\"}") == 1);
	assert_true(sample(text, "vmon_exit_handling_seconds_bucket{vcpu=\"1\",le=\"2e-06\"}") == 3);
	assert_true(sample(text, "vmon_exit_handling_seconds_bucket{vcpu=\"1\",le=\"+Inf\"}") == 4);
	assert_true(sample(text, "vmon_exit_handling_seconds_count{vcpu=\"1\"}") == 4);
	assert_true(sample(text, "vmon_exit_handling_seconds_sum{vcpu=\"1\"}") == 2e-6);
	assert_true(sample(text, "vmon_guest_memory_bytes") == 64.0 * 1024 * 1024);
	assert_true(sample(text, "vmon_vcpus") == 2);
	assert_true(sample(text, "vmon_vm_state{state=\"running\"}") == 1);
	assert_true(sample(text, "vmon_vm_state{state=\"paused\"}") == 0);
	assert_true(sample(text, "vmon_process_resident_memory_bytes") > 0);
	assert_true(sample(text, "vmon_emulated_instructions_total{vcpu=\"0\",kind=\"int3\"}") == 0);
	assert_non_null(strstr(text, "# TYPE vmon_exit_handling_seconds histogram\n"));
	free(text);
	fake_vm_destroy(&f);
}

static void test_device_counters_follow_the_guest(void **state)
{
	(void)state;
	struct fake_vm f;
	fake_vm_init(&f, 1, true, false);
	struct platform *p = f.vm.platform;
	/* The guest sends "hi" to the UART and reads the i8042 status once. */
	for (const char *s = "hi"; *s; s++)
		serial_ops.write(&p->com1, 0, s, 1);
	uint8_t st;
	i8042_cmd_ops.read(&p->i8042, 0, &st, 1);
	i8042_send_ctrl_alt_del(&p->i8042);

	size_t len;
	char *text = api_metrics_render(&f.vm, &len);
	assert_true(sample(text, "vmon_device_bytes_total{device=\"serial0\",direction=\"tx\"}") == 2);
	assert_true(sample(text, "vmon_device_requests_total{device=\"serial0\"}") == 2);
	assert_true(sample(text, "vmon_device_requests_total{device=\"i8042\"}") == 1);
	assert_true(sample(text, "vmon_device_bytes_total{device=\"i8042\",direction=\"rx\"}") == 8);
	assert_true(sample(text, "vmon_device_errors_total{device=\"serial0\"}") == 0);
	free(text);
	fake_vm_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_and_histogram),
		cmocka_unit_test(test_device_counters_follow_the_guest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
