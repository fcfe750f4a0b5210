/* qcow2: a small least-recently-used cache of cluster-sized tables. Writes go through at once
 * (the caller updates the cached copy and writes the changed entry), so nothing is ever dirty. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backends/qcow2_internal.h"

int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, bool fresh, uint8_t **table)
{
	int victim = 0;
	for (int i = 0; i < QCOW2_CACHE_SLOTS; i++) {
		if (c->off[i] == off && c->data[i]) {
			c->used[i] = ++c->clock;
			if (fresh)
				memset(c->data[i], 0, q->cluster_size);
			*table = c->data[i];
			return 0;
		}
		if (c->used[i] < c->used[victim])
			victim = i;
	}
	if (!c->data[victim] && !(c->data[victim] = malloc(q->cluster_size)))
		return -ENOMEM;
	c->off[victim] = 0;
	int rc = 0;
	if (fresh)
		memset(c->data[victim], 0, q->cluster_size);
	else
		rc = qcow2_pread(q, off, c->data[victim], q->cluster_size);
	if (rc)
		return rc;
	c->off[victim] = off;
	c->used[victim] = ++c->clock;
	*table = c->data[victim];
	return 0;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
	for (int i = 0; i < QCOW2_CACHE_SLOTS; i++)
		free(c->data[i]);
	memset(c, 0, sizeof(*c));
}
