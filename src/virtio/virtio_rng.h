/*
 * virtio-rng: an entropy source for the guest (its /dev/hwrng), fed from the host's getrandom().
 *
 * Rate limit: a token bucket of VIRTIO_RNG_RATE bytes per second holding at most
 * VIRTIO_RNG_BURST bytes. A request gets at most what the bucket holds (a short answer is
 * legal: the driver reads the used length); when the bucket is empty, requests wait and a
 * timer retries every VIRTIO_RNG_RETRY_MS. This bounds the host CPU one guest can spend on
 * the device; the guest's kernel only needs a few hundred bytes to seed its own generator.
 */
#ifndef VMON_VIRTIO_VIRTIO_RNG_H
#define VMON_VIRTIO_VIRTIO_RNG_H

#include <stdint.h>

#include "virtio/virtio_pci.h"

#define VIRTIO_RNG_RATE (1024 * 1024) /* bytes per second */
#define VIRTIO_RNG_BURST (256 * 1024) /* bucket size */
#define VIRTIO_RNG_RETRY_MS 10

struct virtio_rng;

/* Creates the device and plugs it into deps->pci. Returns 0 or a negative errno (logged). */
int virtio_rng_create(const struct virtio_pci_deps *deps, struct virtio_rng **out);
void virtio_rng_destroy(struct virtio_rng *rng);

/* Bytes handed to the guest so far (for tests and metrics). */
uint64_t virtio_rng_bytes_served(const struct virtio_rng *rng);

#endif
