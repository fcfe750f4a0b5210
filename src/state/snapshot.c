#include "state/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/guest_walk.h"
#include "arch/x86/vcpu_arch.h"
#include "config/config_disk.h"
#include "config/config_json.h"
#include "lib/log.h"
#include "sandbox/landlock.h"
#include "lib/util.h"
#include "state/cpu_compat.h"
#include "state/device_state.h"
#include "state/mem_state.h"
#include "state/vcpu_state.h"
#include "state/vm_state.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

#define STATE_FILE "state"
#define MEM_PREFIX "memory-"

/* The "x86" section: the SYSCALL fix's patch in guest memory (docs/host-quirks.md). */
struct x86_section {
	uint32_t fixup_state;
	uint8_t slot[3];
	uint8_t pad;
	uint64_t patch_gva;
	uint64_t patch_gpa; /* where the int3 is, so a host without the fix can take it out */
};

/* The "disks" section: one entry per disk image, in configuration order. */
struct disk_identity {
	uint64_t size;
	uint64_t dev, ino;
	int64_t mtime_sec, mtime_nsec;
};

/* Settings of the vmon process rather than of the VM: a snapshot leaves them out. */
static const char *const process_keys[] = { "log_level", "log_file", "api_sock", "name" };

/* ---- saving ---- */

/* The VM's configuration as JSON, without the settings of the vmon process that ran it. */
static int add_config(const struct vm *vm, struct snap_writer *w)
{
	json_t *o = config_json_dump(vm->cfg);
	if (!o)
		return -ENOMEM;
	/* A disk an earlier snapshot switched onto an overlay continues there, not at its configured path. */
	json_t *disks = json_object_get(o, "disks");
	for (unsigned int i = 0; i < vm->cfg->ndisks && json_array_size(disks) == vm->cfg->ndisks; i++) {
		json_t *d = json_array_get(disks, i);
		if (strcmp(snapshot_disks_live_path(vm, i), vm->cfg->disks[i].path) &&
		    (json_object_set_new(d, "path", json_string(snapshot_disks_live_path(vm, i))) ||
		     json_object_set_new(d, "format", json_string(config_disk_format_name(snapshot_disks_live_format(vm, i)))))) {
			json_decref(o);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(process_keys); i++)
		json_object_del(o, process_keys[i]);
	const char *key;
	void *tmp;
	json_t *v;
	json_object_foreach_safe(o, tmp, key, v) {
		if (json_is_null(v))
			json_object_del(o, key);
	}
	char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!text)
		return -ENOMEM;
	int rc = snap_writer_add(w, "config", text, strlen(text));
	free(text);
	return rc;
}

static int add_cpuid(const struct vm *vm, struct snap_writer *w)
{
	size_t len = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(vm->cpuid->entries[0]);
	return snap_writer_add(w, "cpuid", vm->cpuid, len);
}

static int add_x86(struct vm *vm, struct snap_writer *w)
{
	struct x86_vm_arch *va = vm->arch;
	struct x86_section s;
	memset(&s, 0, sizeof(s));
	if (va) {
		pthread_mutex_lock(&va->lock);
		s.fixup_state = (uint32_t)atomic_load(&va->fixup_state);
		memcpy(s.slot, va->slot, sizeof(s.slot));
		s.patch_gva = va->patch_gva;
		pthread_mutex_unlock(&va->lock);
	}
	if (s.fixup_state == SYSCALL_FIXUP_ARMED) {
		struct kvm_sregs sregs;
		if (ioctl(vm->vcpus[0]->fd, KVM_GET_SREGS, &sregs) < 0)
			return -errno;
		struct guest_paging pg = { .cr0 = sregs.cr0, .cr3 = sregs.cr3, .cr4 = sregs.cr4, .efer = sregs.efer };
		if (guest_walk(&vm->mem, &pg, s.patch_gva, GUEST_ACCESS_FETCH, &s.patch_gpa, NULL))
			s.patch_gpa = UINT64_MAX;
	}
	return snap_writer_add(w, "x86", &s, sizeof(s));
}

/*
 * Which disk images the VM had, as the files were when the snapshot was taken: their paths are
 * in the configuration, their identity here, so a restore can tell a resized image or one
 * written since.
 */
static int add_disks(const struct vm *vm, struct snap_writer *w)
{
	unsigned int n = vm->cfg->ndisks;
	struct disk_identity *ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		struct stat st;
		if (stat(snapshot_disks_live_path(vm, i), &st) == 0)
			ids[i] = (struct disk_identity){ .size = (uint64_t)st.st_size, .dev = st.st_dev, .ino = st.st_ino,
							 .mtime_sec = st.st_mtim.tv_sec, .mtime_nsec = st.st_mtim.tv_nsec };
	}
	int rc = snap_writer_add(w, "disks", ids, n * sizeof(*ids));
	free(ids);
	return rc;
}

static uint64_t new_snapshot_id(void)
{
	uint64_t id = 0;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id) || id == 0)
		id = monotonic_ns() ^ ((uint64_t)getpid() << 32);
	return id;
}

static int build_state(struct vm *vm, uint64_t id, const char *mem_file, const struct disk_plan *plan, uint8_t **out,
		       size_t *outlen, char *err, size_t errlen)
{
	return snapshot_build_state(vm, id, mem_file, plan, out, outlen, err, errlen);
}

int snapshot_build_state(struct vm *vm, uint64_t id, const char *mem_file, const struct disk_plan *plan, uint8_t **out,
			 size_t *outlen, char *err, size_t errlen)
{
	struct snap_writer w;
	snap_writer_init(&w);
	int rc;
	struct mem_section ms;
	memset(&ms, 0, sizeof(ms));
	ms.ram_size = vm->mem.ram_size;
	snprintf(ms.file, sizeof(ms.file), "%s", mem_file);
	if ((rc = add_config(vm, &w)) || (rc = add_cpuid(vm, &w)) || (rc = snap_writer_add(&w, "memory", &ms, sizeof(ms))) ||
	    (rc = add_x86(vm, &w)) || (rc = add_disks(vm, &w)) || (rc = snapshot_disks_add_section(plan, &w))) {
		err_fail(err, errlen, rc, "cannot save the VM's configuration: %s", strerror(-rc));
		goto out;
	}
	if ((rc = vm_state_save(vm, &w, err, errlen)))
		goto out;
	for (unsigned int i = 0; i < vm->ncpus && !rc; i++)
		rc = vcpu_state_save(vm->vcpus[i], vm->kvm_fd, &w, err, errlen);
	if (rc || (rc = device_state_save(vm, &w, err, errlen)))
		goto out;
	struct snap_cpu cpu;
	cpu_compat_describe(&cpu, vm->cpuid, &vm->host);
	if ((rc = snap_writer_build(&w, id, &cpu, out, outlen)))
		err_fail(err, errlen, rc, "out of memory building the state file");
out:
	snap_writer_free(&w);
	return rc;
}

static int write_file_fully(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Removes the memory files of earlier snapshots in dir, once the new state file is in place. */
static void remove_old_memory_files(const char *dir, const char *keep)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, MEM_PREFIX, strlen(MEM_PREFIX)) || !strcmp(e->d_name, keep))
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
			unlink(path);
	}
	closedir(d);
}

/*
 * Takes the snapshot directory for this writer (flock on the directory, held until unlock_dir):
 * two vmon processes never write into one directory at once, and a temporary file found while
 * holding the lock was left by a writer that died (SIGKILL, power loss), so it is removed.
 * Returns the directory's fd or -errno (message in err).
 */
static int lock_dir(const char *dir, char *err, size_t errlen)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return err_fail(err, errlen, -errno, "cannot open the snapshot directory %s: %s", dir, strerror(errno));
	if (flock(dfd, LOCK_EX | LOCK_NB) < 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(dfd);
		return rc == -EBUSY ? err_fail(err, errlen, rc,
					   "another vmon is writing a snapshot into %s right now: wait for it or use another "
					   "directory",
					   dir)
				    : err_fail(err, errlen, rc, "cannot lock the snapshot directory %s: %s", dir, strerror(-rc));
	}
	DIR *d = fdopendir(dup(dfd));
	if (!d)
		return dfd;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, ".tmp-memory-", 12) && strncmp(e->d_name, ".tmp-state-", 11))
			continue;
		if (unlinkat(dfd, e->d_name, 0) == 0)
			log_info("snapshot", "removed %s/%s, left by a snapshot that was interrupted", dir, e->d_name);
	}
	closedir(d);
	return dfd;
}

static void unlock_dir(int dfd)
{
	fsync(dfd);
	close(dfd); /* releases the flock */
}

static int make_tmp(const char *dir, const char *what, char *path, size_t len)
{
	if (snprintf(path, len, "%s/.tmp-%s-XXXXXX", dir, what) >= (int)len)
		return -ENAMETOOLONG;
	int fd = mkostemp(path, O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int write_locked(struct vm *vm, const char *dir, uint64_t id, const char *mem_file, const uint8_t *state,
			size_t state_len, char *err, size_t errlen);

/*
 * Writes both files under temporary names, then renames memory and state into place. Disks to
 * freeze switch onto their overlays first (the VM is paused), so the layers hold exactly what
 * the saved memory knows.
 */
static int write_snapshot(struct vm *vm, const char *dir, enum snapshot_disks disks, char *err, size_t errlen)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		int e = errno;
		char dirs[512];
		if (e == EACCES && landlock_snapshot_dirs(dirs, sizeof(dirs)))
			return err_fail(err, errlen, -e, "cannot create the snapshot directory %s: vmon writes snapshots only "
						     "beneath %s; start it with --snapshot-dir to choose another place",
				    dir, dirs);
		return err_fail(err, errlen, -e, "cannot create the snapshot directory %s: %s", dir, strerror(e));
	}
	uint64_t id = new_snapshot_id();
	char mem_file[48];
	snprintf(mem_file, sizeof(mem_file), MEM_PREFIX "%016" PRIx64, id);

	uint8_t *state = NULL;
	size_t state_len = 0;
	struct disk_plan plan;
	int rc = snapshot_disks_plan(vm, disks, &plan, err, errlen);
	if (rc)
		return rc;
	rc = build_state(vm, id, mem_file, &plan, &state, &state_len, err, errlen);
	int dfd = rc ? rc : lock_dir(dir, err, errlen);
	if (dfd < 0) {
		snapshot_disks_plan_free(&plan);
		free(state);
		return dfd;
	}
	rc = snapshot_disks_freeze(vm, &plan, dir, id, err, errlen);
	if (!rc)
		rc = write_locked(vm, dir, id, mem_file, state, state_len, err, errlen);
	unlock_dir(dfd);
	snapshot_disks_plan_free(&plan);
	free(state);
	return rc;
}

static int write_locked(struct vm *vm, const char *dir, uint64_t id, const char *mem_file, const uint8_t *state,
			size_t state_len, char *err, size_t errlen)
{
	int rc;
	char mem_tmp[PATH_MAX], state_tmp[PATH_MAX], mem_final[PATH_MAX], state_final[PATH_MAX];
	mem_tmp[0] = state_tmp[0] = 0;
	if (snprintf(mem_final, sizeof(mem_final), "%s/%s", dir, mem_file) >= (int)sizeof(mem_final) ||
	    snprintf(state_final, sizeof(state_final), "%s/" STATE_FILE, dir) >= (int)sizeof(state_final))
		return err_fail(err, errlen, -ENAMETOOLONG, "the snapshot directory's path is too long");
	int mfd = make_tmp(dir, "memory", mem_tmp, sizeof(mem_tmp));
	if (mfd < 0)
		return err_fail(err, errlen, mfd, "cannot create a file in %s: %s", dir, strerror(-mfd));
	uint64_t t0 = monotonic_ns();
	rc = mem_state_write(&vm->mem, mfd, id, err, errlen);
	if (!rc && fsync(mfd) < 0)
		rc = err_fail(err, errlen, -errno, "cannot flush the memory file to disk: %s", strerror(errno));
	close(mfd);
	int sfd = -1;
	if (!rc) {
		sfd = make_tmp(dir, "state", state_tmp, sizeof(state_tmp));
		if (sfd < 0)
			rc = err_fail(err, errlen, sfd, "cannot create a file in %s: %s", dir, strerror(-sfd));
	}
	if (!rc && (rc = write_file_fully(sfd, state, state_len)))
		err_fail(err, errlen, rc, "cannot write the state file: %s", strerror(-rc));
	if (!rc && fsync(sfd) < 0)
		rc = err_fail(err, errlen, -errno, "cannot flush the state file to disk: %s", strerror(errno));
	if (sfd >= 0)
		close(sfd);
	/* The new memory file gets its final name first: until state is renamed, the old snapshot stands. */
	if (!rc && rename(mem_tmp, mem_final) < 0)
		rc = err_fail(err, errlen, -errno, "cannot rename the memory file into place: %s", strerror(errno));
	else if (!rc)
		mem_tmp[0] = 0;
	if (!rc && rename(state_tmp, state_final) < 0) {
		rc = err_fail(err, errlen, -errno, "cannot rename the state file into place: %s", strerror(errno));
		unlink(mem_final);
	} else if (!rc) {
		state_tmp[0] = 0;
	}
	if (mem_tmp[0])
		unlink(mem_tmp);
	if (state_tmp[0])
		unlink(state_tmp);
	if (rc)
		return rc;
	remove_old_memory_files(dir, mem_file);
	log_info("snapshot", "wrote %s (%zu KiB of state, %llu MiB of RAM) in %llu ms", dir, state_len / 1024,
		 (unsigned long long)(vm->mem.ram_size / MiB), (unsigned long long)((monotonic_ns() - t0) / 1000000));
	return 0;
}

int vmon_snapshot_save(struct vm *vm, const char *dir, bool keep_running, enum snapshot_disks disks, char *err,
		       size_t errlen)
{
	if (!dir || !*dir)
		return err_fail(err, errlen, -EINVAL, "no snapshot directory given");
	bool paused_here = false;
	int rc = vm_pause(vm);
	if (rc == 0) {
		paused_here = true;
	} else if (rc == -EALREADY) {
		rc = 0;
	} else if (rc == -ETIMEDOUT) {
		return err_fail(err, errlen, rc, "the VM could not be paused (a vCPU did not stop in time); it keeps running");
	} else {
		return err_fail(err, errlen, -EBUSY, "the VM is %s: only a running or paused VM can be snapshotted",
			    vm_state_name((enum vm_state)atomic_load(&vm->state)));
	}
	/* No other pause, resume or snapshot may run while the state is being read. */
	pthread_mutex_lock(&vm->control_lock);
	if (atomic_load(&vm->state) != VM_PAUSED)
		rc = err_fail(err, errlen, -EAGAIN, "the VM was resumed or stopped while the snapshot started; try again");
	for (unsigned int i = 0; i < vm->ncpus && !rc; i++) {
		rc = vcpu_state_settle(vm->vcpus[i]);
		if (rc)
			err_fail(err, errlen, rc, "vCPU %u could not finish its pending I/O: %s", i, strerror(-rc));
	}
	if (!rc)
		rc = write_snapshot(vm, dir, disks, err, errlen);
	pthread_mutex_unlock(&vm->control_lock);
	if (paused_here && (keep_running || rc))
		vm_resume(vm);
	return rc;
}

/* ---- restoring ---- */

/*
 * A configuration that carries a per-process setting (an API socket, a log file) would make the
 * restoring vmon act on a path the snapshot's author chose: vmon never writes one, so refuse it.
 */
static int check_no_process_keys(const char *text, size_t len, const char *state_path, char *err, size_t errlen)
{
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	int rc = 0;
	if (!o || !json_is_object(o))
		rc = err_fail(err, errlen, -EINVAL, "%s has a configuration section that is not a JSON object", state_path);
	for (size_t i = 0; i < ARRAY_SIZE(process_keys) && !rc; i++)
		if (json_object_get(o, process_keys[i]))
			rc = err_fail(err, errlen, -EINVAL,
				  "%s has \"%s\" in its configuration section, a setting of the vmon process that "
				  "snapshots never hold: the file was not written by vmon (give it on the vmon restore "
				  "command line instead)",
				  state_path, process_keys[i]);
	json_decref(o);
	return rc;
}

/*
 * The configuration and memory sections of img->f (read from img->state_path, or received):
 * sets cfg and img->ram_size. mem_file: whether the state must name a memory file (a
 * snapshot's) or must not (a migration's, whose RAM travels in the stream).
 */
static int load_config(struct snapshot_image *img, struct vm_config *cfg, bool mem_file, char *err, size_t errlen)
{
	size_t len;
	struct mem_section ms;
	const void *m = snap_file_section(&img->f, "memory", &len);
	if (!m || len != sizeof(ms))
		return err_fail(err, errlen, -EINVAL, "%s has no valid memory section: it is incomplete", img->state_path);
	memcpy(&ms, m, sizeof(ms));
	ms.file[sizeof(ms.file) - 1] = 0;
	if (mem_file && (strncmp(ms.file, MEM_PREFIX, strlen(MEM_PREFIX)) || strchr(ms.file, '/')))
		return err_fail(err, errlen, -EINVAL, "%s names an invalid memory file", img->state_path);
	if (!mem_file && ms.file[0])
		return err_fail(err, errlen, -EINVAL, "%s names a memory file, which a migration's state never does",
				img->state_path);
	img->ram_size = ms.ram_size;
	const char *text = snap_file_section(&img->f, "config", &len);
	if (!text)
		return err_fail(err, errlen, -EINVAL, "%s has no configuration section: it is incomplete", img->state_path);
	int rc = check_no_process_keys(text, len, img->state_path, err, errlen);
	if (rc)
		return rc;
	char *copy = strndup(text, len);
	if (!copy)
		return -ENOMEM;
	rc = config_json_apply_text(cfg, copy, "the snapshot's configuration", err, errlen);
	free(copy);
	if (rc)
		return rc;
	if (cfg->memory != img->ram_size)
		return err_fail(err, errlen, -EINVAL, "%s is inconsistent: its configuration and memory sections disagree",
				img->state_path);
	return 0;
}

int snapshot_open(struct snapshot_image *img, const char *dir, struct vm_config *cfg, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	if (snprintf(img->state_path, sizeof(img->state_path), "%s/" STATE_FILE, dir) >= (int)sizeof(img->state_path))
		return err_fail(err, errlen, -ENAMETOOLONG, "the snapshot directory's path is too long");
	struct stat st;
	if (stat(dir, &st) < 0)
		return err_fail(err, errlen, -errno, "cannot open the snapshot directory %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return err_fail(err, errlen, -ENOTDIR, "%s is not a directory: give the directory vmon ctl snapshot wrote", dir);
	char inner[400];
	int rc = snap_file_read(&img->f, img->state_path, inner, sizeof(inner));
	if (rc)
		return err_fail(err, errlen, rc, "%s: %s", img->state_path, inner);
	if ((rc = load_config(img, cfg, true, err, errlen)))
		goto bad;
	const struct mem_section *ms = snap_file_section(&img->f, "memory", NULL);
	char file[sizeof(ms->file)];
	memcpy(file, ms->file, sizeof(file));
	file[sizeof(file) - 1] = 0;
	snprintf(img->mem_path, sizeof(img->mem_path), "%s/%s", dir, file);
	if ((rc = mem_state_check(img->mem_path, img->ram_size, img->f.hdr.snapshot_id, err, errlen)) ||
	    (rc = snapshot_disks_load(img, cfg->ndisks, err, errlen)))
		goto bad;
	return 0;
bad:
	snapshot_close(img);
	return rc;
}

int snapshot_open_received(struct snapshot_image *img, struct snap_file *state, struct guest_mem *ram,
			   struct vm_config *cfg, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	img->f = *state;
	memset(state, 0, sizeof(*state));
	img->ram = ram;
	snprintf(img->state_path, sizeof(img->state_path), "the migration stream's state record");
	int rc = load_config(img, cfg, false, err, errlen);
	if (!rc && img->ram_size != ram->ram_size)
		rc = err_fail(err, errlen, -EINVAL,
			      "the migration stream's state record gives the guest %llu bytes of RAM and the stream "
			      "carried %llu",
			      (unsigned long long)img->ram_size, (unsigned long long)ram->ram_size);
	if (!rc && snap_file_section(&img->f, SNAPSHOT_DISK_LAYERS, NULL))
		rc = err_fail(err, errlen, -EINVAL,
			      "the migration stream's state record names snapshot disk layers, which a migration never "
			      "has");
	if (rc)
		snapshot_close(img);
	return rc;
}

bool snapshot_has_rng(const struct snapshot_image *img)
{
	return device_state_has_pci(&img->f, "rng");
}

void snapshot_close(struct snapshot_image *img)
{
	snap_file_free(&img->f);
	for (unsigned int i = 0; i < CONFIG_MAX_DISKS; i++) {
		free(img->layers[i]);
		img->layers[i] = NULL;
	}
}

static int check_host_cpu(struct vm *vm, const struct snapshot_image *img, char *err, size_t errlen)
{
	struct snap_cpu host;
	int rc = cpu_compat_describe_host(&host, vm->kvm_fd, &vm->host);
	if (rc)
		return err_fail(err, errlen, rc, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(-rc));
	return snap_cpu_check(&img->f.cpu, &host, err, errlen);
}

/* The guest keeps the CPUID it booted with, not the one this host would give a new VM. */
static int restore_cpuid(struct vm *vm, const struct snapshot_image *img, char *err, size_t errlen)
{
	size_t len;
	const struct kvm_cpuid2 *saved = snap_file_section(&img->f, "cpuid", &len);
	if (!saved || len < sizeof(*saved))
		return err_fail(err, errlen, -EINVAL, "the snapshot has no CPUID section: it is incomplete");
	struct kvm_cpuid2 hdr;
	memcpy(&hdr, saved, sizeof(hdr));
	if (hdr.nent > 4096 || len != sizeof(hdr) + hdr.nent * sizeof(struct kvm_cpuid_entry2))
		return err_fail(err, errlen, -EINVAL, "the snapshot's CPUID section is malformed");
	struct kvm_cpuid2 *policy = malloc(len);
	if (!policy)
		return -ENOMEM;
	memcpy(policy, saved, len);
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		int rc = cpuid_apply_to_vcpu(vm->vcpus[i]->fd, policy, i, vm->ncpus);
		if (rc) {
			free(policy);
			return err_fail(err, errlen, rc,
				    "KVM on this host refused the snapshot's CPUID for vCPU %u (%s): the host's CPU or KVM "
				    "lacks features the guest uses",
				    i, strerror(-rc));
		}
	}
	free(vm->cpuid);
	vm->cpuid = policy;
	return 0;
}

static int restore_x86(struct vm *vm, const struct snapshot_image *img, char *err, size_t errlen)
{
	size_t len;
	const void *p = snap_file_section(&img->f, "x86", &len);
	struct x86_section s;
	if (!p || len != sizeof(s))
		return err_fail(err, errlen, -EINVAL, "the snapshot has no valid x86 section: it is incomplete");
	memcpy(&s, p, sizeof(s));
	struct x86_vm_arch *va = vm->arch;
	if (s.fixup_state != SYSCALL_FIXUP_ARMED || !va)
		return 0;
	if (atomic_load(&va->fixup_state) != SYSCALL_FIXUP_OFF) {
		/* This host needs the fix too: the int3 in guest memory stays, and vmon knows where it is. */
		pthread_mutex_lock(&va->lock);
		memcpy(va->slot, s.slot, sizeof(va->slot));
		va->patch_gva = s.patch_gva;
		atomic_store(&va->fixup_state, SYSCALL_FIXUP_ARMED);
		pthread_mutex_unlock(&va->lock);
		return 0;
	}
	/* This host's SYSCALL works: put the guest's own instruction back over the int3. */
	uint8_t *b = s.patch_gpa == UINT64_MAX ? NULL : gpa_to_host_write(&vm->mem, s.patch_gpa, 1);
	if (!b || *b != 0xcc)
		return err_fail(err, errlen, -EINVAL,
			    "the snapshot was taken on a host that needed vmon's SYSCALL fix and the patched byte "
			    "cannot be found to undo it here: restore it on a host of the same kind");
	*b = s.slot[0];
	guest_mem_wrote(&vm->mem, b, 1);
	log_info("snapshot", "this host runs SYSCALL itself: removed the SYSCALL fix's int3 from the guest kernel");
	return 0;
}

/*
 * The guest's page cache and file systems describe the disk images as they were at the
 * snapshot. A different size is refused; the very same file written since is only warned about
 * (its modification time also moves for harmless reasons), as vmon cannot tell what changed.
 */
static int check_disks(const struct vm *vm, const struct snapshot_image *img, char *err, size_t errlen)
{
	size_t len = 0;
	const void *p = snap_file_section(&img->f, "disks", &len);
	if (!p)
		return 0; /* no disks section: a snapshot of a VM without disks support */
	unsigned int n = vm->cfg->ndisks;
	if (len != n * sizeof(struct disk_identity))
		return err_fail(err, errlen, -EINVAL, "the snapshot's disk list does not match its configuration");
	for (unsigned int i = 0; i < n; i++) {
		struct disk_identity id;
		memcpy(&id, (const uint8_t *)p + i * sizeof(id), sizeof(id));
		const struct disk_config *d = &vm->cfg->disks[i];
		/* On a new overlay, the layer below is the file the snapshot knew. */
		const char *path = img->on_layer[i] ? img->layers[i] : d->path;
		struct stat st;
		if (stat(path, &st) < 0)
			return err_fail(err, errlen, -errno, "disk %u (%s) cannot be opened: %s", i, path, strerror(errno));
		if ((uint64_t)st.st_size != id.size)
			return err_fail(err, errlen, -EINVAL,
				    "disk %u (%s) has %lld bytes and the snapshot's guest knew it with %llu: restore with the "
				    "image the VM had when the snapshot was taken",
				    i, path, (long long)st.st_size, (unsigned long long)id.size);
		if (!d->readonly && st.st_dev == id.dev && st.st_ino == id.ino &&
		    (st.st_mtim.tv_sec != id.mtime_sec || st.st_mtim.tv_nsec != id.mtime_nsec))
			log_warn("snapshot",
				 "disk %u (%s) was modified after the snapshot was taken (for example by the VM that kept "
				 "running): the guest may find its file system inconsistent; restore with a copy of the "
				 "image taken together with the snapshot",
				 i, path);
	}
	return 0;
}

int snapshot_restore(struct vm *vm, const struct snapshot_image *img, char *err, size_t errlen)
{
	int rc;
	if ((rc = check_disks(vm, img, err, errlen)))
		return rc;
	if ((rc = check_host_cpu(vm, img, err, errlen)))
		return rc;
	if (vm->mem.ram_size != img->ram_size)
		return err_fail(err, errlen, -EINVAL, "the VM's memory size does not match the snapshot's");
	/* A migration's RAM is taken over here, or was already (post-copy registers it first). */
	if (img->ram)
		rc = mem_state_adopt(vm, img->ram, err, errlen);
	else if (img->mem_path[0])
		rc = mem_state_map(vm, img->mem_path, err, errlen);
	if (rc)
		return rc;
	uint64_t advanced_ns = 0;
	if ((rc = restore_cpuid(vm, img, err, errlen)) || (rc = vm_state_restore(vm, &img->f, err, errlen)) ||
	    (rc = vm_clock_restore(vm, &img->f, img->clock, &advanced_ns, err, errlen)))
		return rc;
	for (unsigned int i = 0; i < vm->ncpus; i++)
		if ((rc = vcpu_state_restore(vm->vcpus[i], vm->kvm_fd, &img->f, err, errlen)) ||
		    (advanced_ns && (rc = vcpu_state_advance_tsc(vm->vcpus[i], advanced_ns, err, errlen))))
			return rc;
	char name[SNAP_NAME_MAX];
	snprintf(name, sizeof(name), "vcpu.%u.regs", vm->ncpus);
	if (snap_file_section(&img->f, name, NULL))
		return err_fail(err, errlen, -EINVAL, "the snapshot has more vCPUs than its configuration says");
	if ((rc = device_state_restore(vm, &img->f, err, errlen)) || (rc = restore_x86(vm, img, err, errlen)))
		return rc;
	return 0;
}
