#include "api/api_metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "arch/x86/vcpu_arch.h"
#include "lib/util.h"
#include "memory/ksm.h"
#include "virtio/virtio_balloon.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_vsock.h"
#include "vm/platform.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

unsigned long long api_metrics_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	if (!f)
		return 0;
	unsigned long long size, resident;
	int n = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	return n == 2 ? resident * (unsigned long long)sysconf(_SC_PAGESIZE) : 0;
}

static void header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static double seconds(uint64_t ns) { return (double)ns / 1e9; }

static void vm_metrics(FILE *f, struct vm *vm)
{
	enum vm_state st = (enum vm_state)atomic_load(&vm->state);
	header(f, "vmon_vm_state", "gauge", "1 for the state the VM is in.");
	for (int s = VM_CREATED; s <= VM_STOPPED; s++)
		fprintf(f, "vmon_vm_state{state=\"%s\"} %d\n", vm_state_name((enum vm_state)s), s == (int)st);
	header(f, "vmon_vm_uptime_seconds", "gauge", "Time since the vCPUs started.");
	fprintf(f, "vmon_vm_uptime_seconds %.3f\n", vm->started_ns ? seconds(monotonic_ns() - vm->started_ns) : 0.0);
	header(f, "vmon_vcpus", "gauge", "Number of vCPUs.");
	fprintf(f, "vmon_vcpus %u\n", vm->ncpus);
	header(f, "vmon_guest_memory_bytes", "gauge", "Guest RAM size.");
	fprintf(f, "vmon_guest_memory_bytes %llu\n", (unsigned long long)(vm->cfg ? vm->cfg->memory : 0));
	header(f, "vmon_process_resident_memory_bytes", "gauge", "Resident memory of the vmon process, guest RAM it touched included.");
	fprintf(f, "vmon_process_resident_memory_bytes %llu\n", api_metrics_rss_bytes());
}

static void memory_metrics(FILE *f, struct vm *vm)
{
	header(f, "vmon_guest_memory_page_bytes", "gauge", "Host page size behind guest RAM: 4096, or 2097152 with hugepages=on.");
	fprintf(f, "vmon_guest_memory_page_bytes %llu\n", (unsigned long long)guest_mem_page_size(&vm->mem));
	struct ksm_stats k;
	if (!vm->mem.mergeable || ksm_read_stats(&k))
		return;
	header(f, "vmon_ksm_merging_pages", "gauge",
	       "Pages of guest RAM the host's KSM maps to a page shared with identical ones (merge=on).");
	fprintf(f, "vmon_ksm_merging_pages %llu\n", (unsigned long long)k.merging_pages);
	if (!k.have_stat)
		return;
	header(f, "vmon_ksm_zero_pages", "gauge", "Empty pages of guest RAM KSM mapped to the zero page (use_zero_pages).");
	fprintf(f, "vmon_ksm_zero_pages %llu\n", (unsigned long long)k.zero_pages);
	header(f, "vmon_ksm_profit_bytes", "gauge", "Memory KSM saves in this VM minus what its bookkeeping costs; may be negative.");
	fprintf(f, "vmon_ksm_profit_bytes %lld\n", (long long)k.profit_bytes);
	header(f, "vmon_ksm_rmap_items", "gauge", "KSM's bookkeeping entries for this VM's pages.");
	fprintf(f, "vmon_ksm_rmap_items %llu\n", (unsigned long long)k.rmap_items);
}

static void vcpu_metrics(FILE *f, struct vm *vm)
{
	header(f, "vmon_vcpu_exits_total", "counter", "VM exits by vCPU and reason.");
	for (unsigned int i = 0; i < vm->ncpus; i++)
		for (int k = 0; k < VCPU_EXIT_KIND_COUNT; k++)
			fprintf(f, "vmon_vcpu_exits_total{vcpu=\"%u\",reason=\"%s\"} %llu\n", i,
				vcpu_exit_kind_name((enum vcpu_exit_kind)k),
				(unsigned long long)atomic_load(&vm->vcpus[i]->exits[k]));

	header(f, "vmon_vcpu_run_seconds_total", "counter", "Wall time each vCPU spent inside KVM_RUN.");
	for (unsigned int i = 0; i < vm->ncpus; i++)
		fprintf(f, "vmon_vcpu_run_seconds_total{vcpu=\"%u\"} %.9f\n", i, seconds(atomic_load(&vm->vcpus[i]->run_ns)));

	header(f, "vmon_vcpu_throttle_seconds_total", "counter",
	       "Wall time each vCPU was held out of the guest by the throttle (live migration's auto-converge).");
	for (unsigned int i = 0; i < vm->ncpus; i++)
		fprintf(f, "vmon_vcpu_throttle_seconds_total{vcpu=\"%u\"} %.9f\n", i,
			seconds(atomic_load(&vm->vcpus[i]->throttle.held_ns)));
	header(f, "vmon_vcpu_throttle_percent", "gauge",
	       "Share of wall time the vCPUs are held out of the guest now: 0, or what auto-converge set.");
	fprintf(f, "vmon_vcpu_throttle_percent %u\n", throttle_get(&vm->throttle));

	header(f, "vmon_exit_handling_seconds", "histogram", "Time vmon took to handle each VM exit, by vCPU.");
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		uint64_t cumulative = 0;
		for (unsigned int b = 0; b < VCPU_HIST_BUCKETS; b++) {
			cumulative += atomic_load(&v->handle_hist[b]);
			uint64_t le = vcpu_hist_bucket_le_ns(b);
			if (le == UINT64_MAX)
				fprintf(f, "vmon_exit_handling_seconds_bucket{vcpu=\"%u\",le=\"+Inf\"} %llu\n", i,
					(unsigned long long)cumulative);
			else
				fprintf(f, "vmon_exit_handling_seconds_bucket{vcpu=\"%u\",le=\"%g\"} %llu\n", i, seconds(le),
					(unsigned long long)cumulative);
		}
		fprintf(f, "vmon_exit_handling_seconds_sum{vcpu=\"%u\"} %.9f\n", i, seconds(atomic_load(&v->handle_ns)));
		fprintf(f, "vmon_exit_handling_seconds_count{vcpu=\"%u\"} %llu\n", i, (unsigned long long)cumulative);
	}

	header(f, "vmon_emulated_instructions_total", "counter",
	       "Instructions vmon handled after the host's KVM could not emulate them, by vCPU and outcome.");
	for (unsigned int i = 0; i < vm->ncpus; i++)
		for (int k = 0; k < X86_EMUL_KIND_COUNT; k++)
			fprintf(f, "vmon_emulated_instructions_total{vcpu=\"%u\",kind=\"%s\"} %llu\n", i,
				x86_emul_kind_name((enum x86_emul_kind)k),
				(unsigned long long)x86_emul_get(vm->vcpus[i], (enum x86_emul_kind)k));
}

static void device_metrics(FILE *f, struct vm *vm)
{
	struct platform *p = vm->platform;
	if (!p)
		return;
	struct serial_stats ss;
	serial_get_stats(&p->com1, &ss);
	uint64_t kbd_accesses = atomic_load(&p->i8042.accesses);
	uint64_t kbd_keys = atomic_load(&p->i8042.keys_injected);
	uint64_t kbd_errors = atomic_load(&p->i8042.errors);
	struct virtio_blk_stats bs[ARRAY_SIZE(p->blk)];
	unsigned int nblks = MIN(p->nblks, (unsigned int)ARRAY_SIZE(p->blk));
	for (unsigned int i = 0; i < nblks; i++)
		virtio_blk_get_stats(p->blk[i], &bs[i]);
	struct virtio_console_stats cs = { 0 };
	struct virtio_vsock_stats vss = { 0 };
	if (p->console2)
		virtio_console_get_stats(p->console2, &cs);
	if (p->vsock)
		virtio_vsock_get_stats(p->vsock, &vss);
	struct virtio_net_stats ns[ARRAY_SIZE(p->net)];
	unsigned int nnets = MIN(p->nnets, (unsigned int)ARRAY_SIZE(p->net));
	for (unsigned int i = 0; i < nnets; i++)
		virtio_net_get_stats(p->net[i], &ns[i]);

	header(f, "vmon_device_requests_total", "counter", "Guest register accesses per device.");
	fprintf(f, "vmon_device_requests_total{device=\"serial0\"} %llu\n", (unsigned long long)ss.accesses);
	fprintf(f, "vmon_device_requests_total{device=\"i8042\"} %llu\n", (unsigned long long)kbd_accesses);
	for (unsigned int i = 0; i < nblks; i++)
		fprintf(f, "vmon_device_requests_total{device=\"blk%u\"} %llu\n", i, (unsigned long long)bs[i].requests);
	if (p->vsock) /* packets from the guest */
		fprintf(f, "vmon_device_requests_total{device=\"vsock\"} %llu\n", (unsigned long long)vss.tx_packets);
	for (unsigned int i = 0; i < nnets; i++) /* frames from the guest */
		fprintf(f, "vmon_device_requests_total{device=\"net%u\"} %llu\n", i, (unsigned long long)ns[i].tx_packets);
	header(f, "vmon_device_bytes_total", "counter", "Data bytes moved per device and direction (tx: from the guest).");
	fprintf(f, "vmon_device_bytes_total{device=\"serial0\",direction=\"tx\"} %llu\n", (unsigned long long)ss.tx_bytes);
	fprintf(f, "vmon_device_bytes_total{device=\"serial0\",direction=\"rx\"} %llu\n", (unsigned long long)ss.rx_bytes);
	fprintf(f, "vmon_device_bytes_total{device=\"i8042\",direction=\"rx\"} %llu\n", (unsigned long long)kbd_keys);
	for (unsigned int i = 0; i < nblks; i++) {
		fprintf(f, "vmon_device_bytes_total{device=\"blk%u\",direction=\"tx\"} %llu\n", i,
			(unsigned long long)bs[i].write_bytes);
		fprintf(f, "vmon_device_bytes_total{device=\"blk%u\",direction=\"rx\"} %llu\n", i,
			(unsigned long long)bs[i].read_bytes);
	}
	if (p->console2) {
		fprintf(f, "vmon_device_bytes_total{device=\"console2\",direction=\"tx\"} %llu\n", (unsigned long long)cs.tx_bytes);
		fprintf(f, "vmon_device_bytes_total{device=\"console2\",direction=\"rx\"} %llu\n", (unsigned long long)cs.rx_bytes);
	}
	if (p->vsock) {
		fprintf(f, "vmon_device_bytes_total{device=\"vsock\",direction=\"tx\"} %llu\n", (unsigned long long)vss.tx_bytes);
		fprintf(f, "vmon_device_bytes_total{device=\"vsock\",direction=\"rx\"} %llu\n", (unsigned long long)vss.rx_bytes);
	}
	for (unsigned int i = 0; i < nnets; i++) {
		fprintf(f, "vmon_device_bytes_total{device=\"net%u\",direction=\"tx\"} %llu\n", i,
			(unsigned long long)ns[i].tx_bytes);
		fprintf(f, "vmon_device_bytes_total{device=\"net%u\",direction=\"rx\"} %llu\n", i,
			(unsigned long long)ns[i].rx_bytes);
	}
	header(f, "vmon_device_errors_total", "counter",
	       "Errors per device (serial: receiver overruns; i8042: unknown commands, keys that did not fit).");
	fprintf(f, "vmon_device_errors_total{device=\"serial0\"} %llu\n", (unsigned long long)ss.overruns);
	fprintf(f, "vmon_device_errors_total{device=\"i8042\"} %llu\n", (unsigned long long)kbd_errors);
	for (unsigned int i = 0; i < nblks; i++)
		fprintf(f, "vmon_device_errors_total{device=\"blk%u\"} %llu\n", i, (unsigned long long)bs[i].errors);
	if (p->console2)
		fprintf(f, "vmon_device_errors_total{device=\"console2\"} %llu\n", (unsigned long long)cs.errors);
	if (p->vsock)
		fprintf(f, "vmon_device_errors_total{device=\"vsock\"} %llu\n", (unsigned long long)vss.errors);
	for (unsigned int i = 0; i < nnets; i++) /* malformed chains and headers */
		fprintf(f, "vmon_device_errors_total{device=\"net%u\"} %llu\n", i,
			(unsigned long long)(ns[i].tx_errors + ns[i].rx_errors));
	if (nnets) {
		header(f, "vmon_net_packets_total", "counter", "Frames per network card and direction (tx: from the guest).");
		for (unsigned int i = 0; i < nnets; i++) {
			fprintf(f, "vmon_net_packets_total{device=\"net%u\",direction=\"tx\"} %llu\n", i,
				(unsigned long long)ns[i].tx_packets);
			fprintf(f, "vmon_net_packets_total{device=\"net%u\",direction=\"rx\"} %llu\n", i,
				(unsigned long long)ns[i].rx_packets);
		}
		header(f, "vmon_net_dropped_packets_total", "counter",
		       "Frames dropped per network card (rx: no guest buffer, queue full or too big; tx: refused by the backend).");
		for (unsigned int i = 0; i < nnets; i++) {
			fprintf(f, "vmon_net_dropped_packets_total{device=\"net%u\",direction=\"tx\"} %llu\n", i,
				(unsigned long long)ns[i].tx_dropped);
			fprintf(f, "vmon_net_dropped_packets_total{device=\"net%u\",direction=\"rx\"} %llu\n", i,
				(unsigned long long)ns[i].rx_dropped);
		}
	}
	if (p->console2) {
		header(f, "vmon_console2_dropped_bytes_total", "counter",
		       "Guest output on the second console discarded because no client was connected.");
		fprintf(f, "vmon_console2_dropped_bytes_total %llu\n", (unsigned long long)cs.dropped_bytes);
	}
	if (p->vsock) {
		header(f, "vmon_vsock_connections_total", "counter", "vsock connections established, both directions.");
		fprintf(f, "vmon_vsock_connections_total %llu\n", (unsigned long long)vss.connections);
		header(f, "vmon_vsock_resets_total", "counter", "RST packets vmon sent the guest.");
		fprintf(f, "vmon_vsock_resets_total %llu\n", (unsigned long long)vss.resets);
	}
	if (nblks) {
		header(f, "vmon_blk_flushes_total", "counter", "Flush requests per disk (blkN is --disk number N, from 0).");
		for (unsigned int i = 0; i < nblks; i++)
			fprintf(f, "vmon_blk_flushes_total{device=\"blk%u\"} %llu\n", i, (unsigned long long)bs[i].flushes);
		header(f, "vmon_blk_discards_total", "counter", "Discard requests per disk.");
		for (unsigned int i = 0; i < nblks; i++)
			fprintf(f, "vmon_blk_discards_total{device=\"blk%u\"} %llu\n", i, (unsigned long long)bs[i].discards);
	}
}

static void balloon_metrics(FILE *f, struct vm *vm)
{
	struct platform *p = vm->platform;
	struct virtio_balloon *b = p ? p->balloon : NULL;
	if (!b)
		return;
	struct virtio_balloon_info in;
	virtio_balloon_get_info(b, &in);
	header(f, "vmon_balloon_target_bytes", "gauge", "Memory the balloon should leave the guest (PUT /balloon).");
	fprintf(f, "vmon_balloon_target_bytes %llu\n", (unsigned long long)in.target_bytes);
	header(f, "vmon_balloon_actual_bytes", "gauge", "Memory the balloon leaves the guest, as its driver reports it.");
	fprintf(f, "vmon_balloon_actual_bytes %llu\n", (unsigned long long)in.actual_bytes);
	header(f, "vmon_balloon_reported_bytes_total", "counter", "Free guest memory the guest reported (free page reporting).");
	fprintf(f, "vmon_balloon_reported_bytes_total %llu\n", (unsigned long long)in.reported_bytes);
	header(f, "vmon_balloon_discarded_bytes_total", "counter",
	       "Guest memory returned to the host: inflated pages and reported free ranges.");
	fprintf(f, "vmon_balloon_discarded_bytes_total %llu\n", (unsigned long long)in.discarded_bytes);
	header(f, "vmon_balloon_invalid_pfns_total", "counter", "Pages or ranges outside guest RAM the guest gave, ignored.");
	fprintf(f, "vmon_balloon_invalid_pfns_total %llu\n", (unsigned long long)in.invalid_pfns);
	header(f, "vmon_balloon_guest_stat", "gauge",
	       "The guest's memory statistics (virtio-balloon tags; _bytes in bytes, the others counts).");
	for (int s = 0; s < VIRTIO_BALLOON_S_NR; s++)
		if (in.stats_valid & (1u << s))
			fprintf(f, "vmon_balloon_guest_stat{stat=\"%s\"} %llu\n",
				virtio_balloon_stat_name((enum virtio_balloon_stat)s), (unsigned long long)in.stats[s]);
}

char *api_metrics_render(struct vm *vm, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	vm_metrics(f, vm);
	memory_metrics(f, vm);
	vcpu_metrics(f, vm);
	device_metrics(f, vm);
	balloon_metrics(f, vm);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}
