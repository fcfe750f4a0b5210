#include "state/clone_identity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config/config_net.h"
#include "config/config_sockets.h"
#include "lib/log.h"
#include "lib/util.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_vsock.h"
#include "vm/platform.h"
#include "vm/registry.h"
#include "vm/vm.h"

#define COMP "identity"

void clone_mac_from_random(const uint8_t rnd[6], uint8_t mac[6])
{
	memcpy(mac, rnd, 6);
	/* Bit 1 of the first byte: locally administered, so it cannot clash with a vendor's address; bit 0: unicast. */
	mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02);
}

static int random_bytes(void *buf, size_t len)
{
	ssize_t n = getrandom(buf, len, 0);
	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

int clone_mac_generate(uint8_t mac[6])
{
	uint8_t rnd[6];
	int rc = random_bytes(rnd, sizeof(rnd));
	if (!rc)
		clone_mac_from_random(rnd, mac);
	return rc;
}

void clone_mac_format(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

char *clone_net_spec_with_mac(const char *spec, const uint8_t mac[6])
{
	size_t len = strlen(spec);
	char *out = malloc(len + sizeof(",mac=") + 18);
	if (!out)
		return NULL;
	size_t used = 0;
	const char *p = spec;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (strncmp(p, "mac=", 4)) {
			if (used)
				out[used++] = ',';
			memcpy(out + used, p, n);
			used += n;
		}
		p += n + (end ? 1 : 0);
	}
	char m[18];
	clone_mac_format(mac, m);
	snprintf(out + used, len + sizeof(",mac=") + 18 - used, ",mac=%s", m);
	return out;
}

static bool cid_used(uint32_t cid, const uint32_t *used, size_t nused)
{
	for (size_t i = 0; i < nused; i++)
		if (used[i] == cid)
			return true;
	return false;
}

uint32_t clone_cid_choose(uint64_t rnd, const uint32_t *used, size_t nused)
{
	const uint64_t span = (uint64_t)CLONE_CID_MAX - CLONE_CID_MIN + 1;
	uint64_t off = rnd % span;
	/* nused is far below span, so a free CID is found within nused + 1 steps. */
	for (size_t step = 0; step <= nused; step++) {
		uint32_t cid = (uint32_t)(CLONE_CID_MIN + (off + step) % span);
		if (!cid_used(cid, used, nused))
			return cid;
	}
	return CLONE_CID_MIN; /* unreachable: more CIDs in use than steps taken */
}

int clone_cids_in_use(uint32_t **out)
{
	*out = NULL;
	struct registry_entry *e = NULL;
	int n = registry_list(&e);
	if (n < 0)
		return n;
	uint32_t *cids = calloc(n ? (size_t)n : 1, sizeof(*cids));
	if (!cids) {
		free(e);
		return -ENOMEM;
	}
	int k = 0;
	for (int i = 0; i < n; i++)
		if (!e[i].stale && e[i].vsock_cid)
			cids[k++] = e[i].vsock_cid;
	free(e);
	*out = cids;
	return k;
}

int clone_cids_pick(uint32_t *cids, size_t n)
{
	uint32_t *inuse;
	int k = clone_cids_in_use(&inuse);
	if (k < 0) {
		log_error(COMP, "cannot read the registry of running VMs to find free vsock CIDs: %s", strerror(-k));
		return k;
	}
	uint32_t *used = realloc(inuse, ((size_t)k + n + 1) * sizeof(*used));
	if (!used) {
		free(inuse);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t rnd;
		int rc = random_bytes(&rnd, sizeof(rnd));
		if (rc) {
			free(used);
			log_error(COMP, "no random bytes to pick a vsock CID: %s", strerror(-rc));
			return rc;
		}
		cids[i] = clone_cid_choose(rnd, used, (size_t)k + i);
		used[(size_t)k + i] = cids[i];
	}
	free(used);
	return 0;
}

static void set_str(char **field, char *value)
{
	free(*field);
	*field = value;
}

static int choose_cid(struct clone_identity *id, struct vm_config *cfg, bool user_cid, char *err, size_t errlen)
{
	struct vsock_spec vs;
	if (config_vsock_parse(cfg->vsock, &vs, err, errlen))
		return -EINVAL;
	if (user_cid) {
		id->cid = vs.cid;
		return 0;
	}
	int rc = clone_cids_pick(&id->cid, 1);
	if (rc)
		return err_fail(err, errlen, rc, "cannot choose a vsock CID for the clone: give one with --vsock cid=N,uds=PATH");
	char spec[CONFIG_MAX_SOCK_PATH + 64];
	int n = snprintf(spec, sizeof(spec), "cid=%u,uds=%s.%u", id->cid, vs.uds, id->cid);
	if (n < 0 || (size_t)n >= sizeof(spec) || strlen(vs.uds) + 11 > CONFIG_MAX_VSOCK_UDS)
		return err_fail(err, errlen, -ENAMETOOLONG,
			    "the snapshot's vsock socket path %s is too long to give the clone its own (PATH.CID): "
			    "give one with --vsock cid=N,uds=PATH",
			    vs.uds);
	char *copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	set_str(&cfg->vsock, copy);
	return 0;
}

int clone_identity_choose(struct clone_identity *id, struct vm_config *cfg, bool clone, const bool *user_mac,
			  bool user_cid, char *err, size_t errlen)
{
	memset(id, 0, sizeof(*id));
	id->clone = clone;
	int rc = vmgenid_generate(id->genid);
	if (rc)
		return err_fail(err, errlen, rc, "no random bytes for the VM generation ID: %s", strerror(-rc));
	if (!clone)
		return 0;
	id->nmacs = cfg->nnets;
	for (unsigned int i = 0; i < cfg->nnets; i++) {
		struct net_spec ns;
		if (config_net_parse(cfg->nets[i], &ns, err, errlen))
			return -EINVAL;
		if (user_mac && user_mac[i] && ns.has_mac) {
			memcpy(id->macs[i], ns.mac, 6);
			continue;
		}
		if ((rc = clone_mac_generate(id->macs[i])))
			return err_fail(err, errlen, rc, "no random bytes for a MAC address: %s", strerror(-rc));
		char *spec = clone_net_spec_with_mac(cfg->nets[i], id->macs[i]);
		if (!spec)
			return -ENOMEM;
		set_str(&cfg->nets[i], spec);
	}
	if (cfg->vsock) {
		id->has_cid = true;
		if ((rc = choose_cid(id, cfg, user_cid, err, errlen)))
			return rc;
	}
	return 0;
}

int clone_identity_apply(struct vm *vm, const struct clone_identity *id)
{
	struct platform *p = vm->platform;
	char genid[VMGENID_STR_LEN];
	vmgenid_format(id->genid, genid);
	int rc = vmgenid_set(&p->vmgenid, &vm->mem, id->genid);
	if (rc == -ENODEV) {
		log_warn(COMP, "the snapshot's guest was booted by a vmon without the VM generation ID device, so it "
			       "cannot be told it was restored (its random number generator is not reseeded)");
	} else if (rc) {
		log_error(COMP, "cannot write the VM generation ID into guest memory at 0x%llx",
			  (unsigned long long)p->vmgenid.gpa);
		return rc;
	} else {
		vmgenid_notify(&p->vmgenid);
		log_info(COMP, "VM generation ID %s", genid);
	}
	if (!id->clone)
		return 0;
	for (unsigned int i = 0; i < id->nmacs && i < p->nnets; i++) {
		char mac[18];
		clone_mac_format(id->macs[i], mac);
		virtio_net_set_mac(p->net[i], id->macs[i], CLONE_LINK_DOWN_MS);
		log_info(COMP, "network card %u: MAC %s", i, mac);
	}
	if (id->has_cid && p->vsock) {
		virtio_vsock_set_cid(p->vsock, id->cid);
		log_info(COMP, "vsock CID %u", id->cid);
	}
	return 0;
}

void vm_identity_read(struct vm *vm, struct vm_identity *out)
{
	memset(out, 0, sizeof(*out));
	struct platform *p = vm->platform;
	if (!p)
		return;
	for (unsigned int i = 0; i < p->nnets && i < CONFIG_MAX_NICS; i++)
		virtio_net_get_mac(p->net[i], out->macs[out->nmacs++]);
	if (p->vsock) {
		out->has_cid = true;
		out->cid = virtio_vsock_cid(p->vsock);
	}
	if (p->vmgenid.present) {
		out->has_genid = true;
		memcpy(out->genid, p->vmgenid.id, VMGENID_LEN);
	}
}
