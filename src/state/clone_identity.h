/*
 * The identity a restored VM gets (vmon restore, vmon restore --clone, vmon clone): every
 * restore gets a new VM generation ID; a clone also gets a new MAC address per network card and,
 * when it has vsock, a new guest CID. The identity is chosen before the VM is built (its new
 * MACs and CID are written into the configuration, so `vmon ps`, the registry and GET /vm show
 * them) and applied to the devices after their state was loaded from the snapshot and before
 * the vCPUs run.
 */
#ifndef VMON_STATE_CLONE_IDENTITY_H
#define VMON_STATE_CLONE_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "devices/vmgenid.h"

/* Generated CIDs stay at or above this: the CIDs below it are left to users who pick their own. */
#define CLONE_CID_MIN 65536u
#define CLONE_CID_MAX 0xfffffffeu
/* How long a clone's network cards show the link down after the restore, so DHCP runs again. */
#define CLONE_LINK_DOWN_MS 500

struct vm;

struct clone_identity {
	bool clone;                           /* new MACs and CID, not only a new generation ID */
	unsigned int nmacs;
	uint8_t macs[CONFIG_MAX_NICS][6];
	bool has_cid;
	uint32_t cid;
	uint8_t genid[VMGENID_LEN];
};

/* A locally administered unicast MAC made of random bytes: rnd with the two low bits of byte 0 set to 1 0. */
void clone_mac_from_random(const uint8_t rnd[6], uint8_t mac[6]);
/* A new random MAC (getrandom). 0 or -errno. */
int clone_mac_generate(uint8_t mac[6]);
/* "02:1a:..." (18 bytes with the NUL). */
void clone_mac_format(const uint8_t mac[6], char out[18]);

/*
 * A --net value with its MAC replaced by mac (any mac= it had is dropped). NULL when out of
 * memory; free() it.
 */
char *clone_net_spec_with_mac(const char *spec, const uint8_t mac[6]);

/*
 * A guest CID in [CLONE_CID_MIN, CLONE_CID_MAX] not in used[0..nused): the one rnd points at,
 * or the next free one above it (wrapping). Pure, so tests can drive it.
 */
uint32_t clone_cid_choose(uint64_t rnd, const uint32_t *used, size_t nused);
/*
 * The vsock CIDs of the VMs running on this host, from the registry (vm/registry.h): *out is
 * malloc'ed (NULL when none). Returns how many, or a negative errno.
 */
int clone_cids_in_use(uint32_t **out);
/*
 * Picks n CIDs that no running VM has and that differ from each other. 0 or a negative errno
 * (the reason logged).
 */
int clone_cids_pick(uint32_t *cids, size_t n);

/*
 * Chooses the identity for a restore of the VM described by cfg (the snapshot's configuration,
 * with the user's --net/--vsock replacements applied). clone: new MACs for the cards whose
 * replacement --net gave none (user_mac[i] false) and a new CID unless user_cid; cfg->nets and
 * cfg->vsock are rewritten to carry them, and a vsock socket path the user did not give gets the
 * CID appended ("PATH.CID") so clones do not fight over one socket. Returns 0 or -errno with
 * one sentence in err.
 */
int clone_identity_choose(struct clone_identity *id, struct vm_config *cfg, bool clone, const bool *user_mac,
			  bool user_cid, char *err, size_t errlen);

/*
 * Applies the identity to the restored VM's devices (after snapshot_restore(), before the vCPUs
 * run): MACs and CID into the network cards and vsock device, with a link bounce on each card
 * of a clone; the generation ID into guest memory, with its notification. Logs what it did.
 * 0 or a negative errno (logged).
 */
int clone_identity_apply(struct vm *vm, const struct clone_identity *id);

/* What a VM's devices show now, for GET /vm. */
struct vm_identity {
	unsigned int nmacs;
	uint8_t macs[CONFIG_MAX_NICS][6];
	bool has_cid;
	uint32_t cid;
	bool has_genid;
	uint8_t genid[VMGENID_LEN];
};
void vm_identity_read(struct vm *vm, struct vm_identity *out);

#endif
